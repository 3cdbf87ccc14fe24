// Helpers for the health-monitor sandbox tests and the detection benchmark: a HealthChanged client and a bus
// monitor running inside the container (as transient units, writing JSON lines to a file), the daemon's
// structured journal entries, unit properties, GetStatus, and /proc readings of the daemon taken from the
// host side (so that reading them spawns nothing inside the container).
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { JournalEntry, Sandbox } from './harness.js';

export type HealthMapJson = Record<string, string>;

/** One HealthChanged seen by the client: wall-clock ms (sub-ms precision) when it arrived, and the map. */
export interface HealthEvent {
  t: number;
  health: HealthMapJson;
}

const LIB = '/usr/local/lib/openauto-sandbox';

// A separate client of org.openauto.System1: adds its match rule, says "ready", then prints every
// HealthChanged with the time it arrived (CLOCK_REALTIME, same clock as the host and systemd's timestamps).
const WATCHER = `
import { createRequire } from 'node:module';
// dbus-next lives inside the installed bundle, not on its own: the checkout's copy (bound in read-only).
const require = createRequire('/usr/src/openauto-system/package.json');
const dbus = require('dbus-next');
const now = () => performance.timeOrigin + performance.now();
const bus = dbus.systemBus();
bus.on('error', (e) => { console.error(String(e)); process.exit(1); });
bus.on('message', (msg) => {
  if (msg.type === dbus.MessageType.SIGNAL && msg.interface === 'org.openauto.System1' &&
      msg.member === 'HealthChanged' && msg.path === '/org/openauto/System') {
    console.log(JSON.stringify({ t: now(), health: msg.body[0] }));
  }
});
await bus.call(new dbus.Message({
  destination: 'org.freedesktop.DBus', path: '/org/freedesktop/DBus', interface: 'org.freedesktop.DBus',
  member: 'AddMatch', signature: 's',
  body: ["type='signal',interface='org.openauto.System1',member='HealthChanged',path='/org/openauto/System'"],
}));
console.log(JSON.stringify({ ready: true, t: now() }));
process.on('SIGTERM', () => process.exit(0));
`;

/** Runs argv inside the container as a transient service whose stdout goes to outFile. */
async function runTransient(sb: Sandbox, unit: string, outFile: string, argv: string[]): Promise<void> {
  await sb.exec(['systemctl', 'stop', unit]);
  await sb.exec(['systemctl', 'reset-failed', unit]);
  await sb.execOk(['rm', '-f', outFile]);
  await sb.execOk([
    'systemd-run',
    '--quiet',
    `--unit=${unit}`,
    '--service-type=exec',
    `--property=StandardOutput=truncate:${outFile}`,
    '--property=StandardError=journal',
    ...argv,
  ]);
}

function jsonLines(text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a line still being written
    }
  }
  return out;
}

export class HealthWatcher {
  private constructor(
    private readonly sb: Sandbox,
    readonly unit: string,
    readonly file: string,
  ) {}

  /** Starts the client inside the container and waits until its match rule is in place. */
  static async start(sb: Sandbox, unit = 'health-watch'): Promise<HealthWatcher> {
    await sb.writeFile(`${LIB}/health-watch.mjs`, WATCHER);
    const file = `/run/${unit}.jsonl`;
    await runTransient(sb, unit, file, ['/usr/bin/node', `${LIB}/health-watch.mjs`]);
    const w = new HealthWatcher(sb, unit, file);
    await sb.waitFor(async () => (await w.lines()).some((l) => l.ready === true), 15_000, 50);
    return w;
  }

  private async lines(): Promise<Record<string, unknown>[]> {
    try {
      return jsonLines(await this.sb.readFile(this.file));
    } catch {
      return [];
    }
  }

  /** Every HealthChanged seen so far, oldest first. */
  async events(): Promise<HealthEvent[]> {
    return (await this.lines())
      .filter((l) => l.health !== undefined)
      .map((l) => ({ t: Number(l.t), health: l.health as HealthMapJson }));
  }

  /** Waits for the first event after `since` (ms) matching pred, and returns it. */
  async waitForEvent(pred: (e: HealthEvent) => boolean, since = 0, timeoutMs = 15_000): Promise<HealthEvent> {
    return this.sb.waitFor(
      async () => (await this.events()).find((e) => e.t >= since && pred(e)),
      timeoutMs,
      25,
    );
  }

  async stop(): Promise<void> {
    await this.sb.exec(['systemctl', 'stop', this.unit]);
  }
}

/** The successive states of one service in a list of HealthChanged events (repeats collapsed). */
export function transitions(events: HealthEvent[], service: string): { t: number; state: string }[] {
  const out: { t: number; state: string }[] = [];
  for (const e of events) {
    const state = e.health[service];
    if (state === undefined) continue;
    if (out.at(-1)?.state !== state) out.push({ t: e.t, state });
  }
  return out;
}

/** One message of `busctl monitor --json=short`. */
export interface BusMessage {
  type: string;
  cookie?: number;
  reply_cookie?: number;
  sender?: string;
  destination?: string;
  path?: string;
  interface?: string;
  member?: string;
  'timestamp-realtime'?: number;
  payload?: { type: string; data: unknown[] };
}

/** `busctl monitor` inside the container (as root it becomes a bus monitor: it sees method calls too). */
export class BusMonitor {
  private constructor(
    private readonly sb: Sandbox,
    readonly unit: string,
    readonly file: string,
  ) {}

  static async start(sb: Sandbox, matches: string[], unit = 'bus-monitor'): Promise<BusMonitor> {
    const file = `/run/${unit}.jsonl`;
    await runTransient(sb, unit, file, [
      'busctl',
      'monitor',
      '--json=short',
      ...matches.map((m) => `--match=${m}`),
    ]);
    const m = new BusMonitor(sb, unit, file);
    // busctl prints nothing when it is ready; BecomeMonitor is done once its connection shows up as a
    // monitor. A probe message that matches proves it end to end: the test passes its own probe match.
    await sb.waitFor(async () => (await sb.unitState(`${unit}.service`)) === 'active', 10_000, 50);
    return m;
  }

  async messages(): Promise<BusMessage[]> {
    let text = '';
    try {
      text = await this.sb.readFile(this.file);
    } catch {
      return [];
    }
    return jsonLines(text) as unknown as BusMessage[];
  }

  async stop(): Promise<void> {
    await this.sb.exec(['systemctl', 'stop', this.unit]);
  }
}

/** A journal entry of the daemon with the fields the tests use, parsed. */
export interface DaemonEntry {
  /** __REALTIME_TIMESTAMP in ms. */
  t: number;
  message: string;
  fields: JournalEntry;
}

function text(v: JournalEntry[string] | undefined): string {
  if (Array.isArray(v)) return Buffer.from(v as number[]).toString('utf8');
  return v === null || v === undefined ? '' : String(v);
}

/** The daemon's journal entries (SYSLOG_IDENTIFIER=openauto-system), optionally filtered by fields. */
export async function daemonJournal(sb: Sandbox, match: Record<string, string> = {}): Promise<DaemonEntry[]> {
  const entries = await sb.journal('openauto-system', { match });
  return entries.map((e) => ({
    t: Number(text(e.__REALTIME_TIMESTAMP)) / 1000,
    message: text(e.MESSAGE),
    fields: e,
  }));
}

/** The monitor's restart attempts ("... restarting it (...)") for one service, oldest first. */
export async function restartAttempts(
  sb: Sandbox,
  service: string,
  sinceMs = 0,
): Promise<{ t: number; attempt: number; message: string }[]> {
  const entries = await daemonJournal(sb, { SERVICE: service, ACTION: 'restart' });
  return entries
    .filter((e) => e.t >= sinceMs && e.fields.RESULT === undefined && /restarting it/.test(e.message))
    .map((e) => ({ t: e.t, attempt: Number(text(e.fields.ATTEMPT)), message: e.message }));
}

/** `systemctl show` properties of a unit as strings. */
export async function unitProps(sb: Sandbox, unit: string, props: string[]): Promise<Record<string, string>> {
  const out = await sb.execOk(['systemctl', 'show', ...props.flatMap((p) => ['-p', p]), unit]);
  const r: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) r[line.slice(0, i)] = line.slice(i + 1);
  }
  return r;
}

/** A loaded unit's object path (systemd's GetUnit). */
export async function unitObjectPath(sb: Sandbox, unit: string): Promise<string> {
  const [path] = (await sb.call(
    'org.freedesktop.systemd1',
    '/org/freedesktop/systemd1',
    'org.freedesktop.systemd1.Manager',
    'GetUnit',
    ['s', unit],
  )) as [string];
  return path;
}

/** A timestamp property of a unit (e.g. InactiveExitTimestamp) in wall-clock µs, read over the bus. */
export async function unitTimestampUs(sb: Sandbox, unit: string, prop: string): Promise<number> {
  const path = await unitObjectPath(sb, unit);
  const r = (await sb.call('org.freedesktop.systemd1', path, 'org.freedesktop.DBus.Properties', 'Get', [
    'ss',
    'org.freedesktop.systemd1.Unit',
    prop,
  ])) as [{ type: string; data: number }];
  return Number(r[0].data);
}

/** The daemon's GetStatus, as openautoctl --json prints it (plain JSON). */
export async function getStatus(
  sb: Sandbox,
): Promise<Record<string, Record<string, Record<string, unknown>>>> {
  return JSON.parse(await sb.execOk(['openautoctl', '--json', 'status']));
}

/** GetHealth through openautoctl. */
export async function getHealth(sb: Sandbox): Promise<HealthMapJson> {
  const r = await sb.exec(['openautoctl', '--json', 'health']);
  if (r.stdout.trim() === '') throw new Error(`openautoctl health: ${r.stderr}`);
  return JSON.parse(r.stdout) as HealthMapJson;
}

export async function waitAllActive(sb: Sandbox, timeoutMs = 20_000): Promise<void> {
  await sb.waitFor(
    async () => Object.values(await getHealth(sb)).every((s) => s === 'active'),
    timeoutMs,
    100,
  );
}

/** Lines in the hostapd stand-in's start log (one per start attempt of hostapd.service). */
export async function hostapdStarts(sb: Sandbox): Promise<number> {
  try {
    return (await sb.readFile('/run/openauto-sandbox/hostapd.starts')).split('\n').filter((l) => l !== '')
      .length;
  } catch {
    return 0;
  }
}

/** MainPID of a unit inside the container (0 when none). */
export async function mainPid(sb: Sandbox, unit: string): Promise<number> {
  return Number((await sb.execOk(['systemctl', 'show', '-P', 'MainPID', unit])).trim());
}

/** The container's procfs, read from the host (no process is started inside for it). */
export function procDir(sb: Sandbox, pid: number): string {
  return join(sb.root, 'proc', String(pid));
}

/** Fields of /proc/PID/stat (index 0 = pid; 13/14 = utime/stime, 9/11 = minflt/majflt, 10/12/15/16 = c*). */
export function procStat(sb: Sandbox, pid: number): string[] {
  const raw = readFileSync(join(procDir(sb, pid), 'stat'), 'utf8');
  const close = raw.lastIndexOf(')');
  // Fields after the command name start at index 2 (state).
  return [
    raw.slice(0, raw.indexOf(' ')),
    raw.slice(raw.indexOf('(') + 1, close),
    ...raw
      .slice(close + 2)
      .trim()
      .split(' '),
  ];
}

/** The pids listed in /proc/PID/task/*\/children (children of any of the process's threads). */
export function childrenOf(sb: Sandbox, pid: number): number[] {
  const dir = join(procDir(sb, pid), 'task');
  const out: number[] = [];
  for (const tid of readdirSync(dir)) {
    let s = '';
    try {
      s = readFileSync(join(dir, tid, 'children'), 'utf8');
    } catch {
      continue; // the thread just ended
    }
    for (const p of s.trim().split(/\s+/)) if (p !== '') out.push(Number(p));
  }
  return out;
}

/**
 * Why a process of the container could not be read any more: the container gone, or the daemon restarted
 * (with the journal's last entries about it). For error messages.
 */
export async function explainVanished(sb: Sandbox, pid: number): Promise<string> {
  if (!existsSync(`/proc/${sb.leader}`)) return `the container (leader ${sb.leader}) is gone`;
  const now = await sb.exec([
    'systemctl',
    'show',
    '-p',
    'MainPID',
    '-p',
    'NRestarts',
    '-p',
    'Result',
    'openauto-system',
  ]);
  const tail = await sb.exec(['journalctl', '-n', '25', '--no-pager', '-u', 'openauto-system.service']);
  return `PID ${pid} is gone; openauto-system.service now: ${now.stdout.trim().replace(/\n/g, ' ')}\n${tail.stdout}`;
}

/** Sum of the process's threads' CPU time in ns (from schedstat; finer than stat's clock ticks). */
export function schedCpuNs(sb: Sandbox, pid: number): number {
  const dir = join(procDir(sb, pid), 'task');
  let sum = 0;
  for (const tid of readdirSync(dir)) {
    try {
      sum += Number(readFileSync(join(dir, tid, 'schedstat'), 'utf8').split(' ')[0]);
    } catch {
      // the thread just ended
    }
  }
  return sum;
}

/** The host's PID for a process of the container (to signal it from the host, with an exact time). */
export function hostPidOf(sb: Sandbox, containerPid: number): number {
  const ns = readlinkSafe(`/proc/${sb.leader}/ns/pid`);
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const status = readFileSync(`/proc/${d}/status`, 'utf8');
      const m = /^NSpid:\s+(.+)$/m.exec(status);
      if (!m?.[1]) continue;
      const ids = m[1].trim().split(/\s+/).map(Number);
      if (ids.length < 2 || ids.at(-1) !== containerPid) continue;
      if (readlinkSafe(`/proc/${d}/ns/pid`) === ns) return Number(d);
    } catch {
      // gone
    }
  }
  throw new Error(`no host process for container pid ${containerPid}`);
}

function readlinkSafe(p: string): string {
  try {
    return readlinkSync(p);
  } catch {
    return '';
  }
}

export { sleep } from '../helpers/common.js';

export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] as number;
}
