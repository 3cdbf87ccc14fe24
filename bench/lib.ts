// Shared pieces of the sandbox benchmarks (host side): settings with a quick mode, summaries and tables,
// the result files, readings of the daemon taken from the host (/proc of the container, the bus's
// Debug.Stats), and the in-sandbox client (agent.ts).
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ExecOptions, REPO_ROOT, type Sandbox } from '../test/sandbox/harness.js';
import { getHealth, mainPid, procDir, quantile } from '../test/sandbox/helpers-health.js';

export { quantile };

/** BENCH_QUICK=1: every benchmark runs a shortened version (for a smoke run, not for figures). */
export const QUICK = process.env.BENCH_QUICK === '1';

/** A positive number from the environment, else the full or quick default. */
export function setting(name: string, full: number, quick: number): number {
  const raw = process.env[name];
  const v = raw === undefined || raw === '' ? (QUICK ? quick : full) : Number(raw);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} must be a positive number, got '${raw}'`);
  return v;
}

export const nowMs = () => performance.timeOrigin + performance.now();
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
export const log = (s: string) => process.stderr.write(`${s}\n`);

export interface Summary {
  n: number;
  min: number;
  median: number;
  p99: number;
  max: number;
}

export function summary(xs: number[]): Summary {
  const s = [...xs].sort((a, b) => a - b);
  return {
    n: s.length,
    min: s[0] ?? Number.NaN,
    median: quantile(s, 0.5),
    p99: quantile(s, 0.99),
    max: s.at(-1) ?? Number.NaN,
  };
}

export const round = (x: number, digits = 1) => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};

/** Prints a table: first row is the header; numbers right-aligned. */
export function printTable(title: string, rows: (string | number)[][]): void {
  const cells = rows.map((r) => r.map((c) => (typeof c === 'number' ? fmtNum(c) : c)));
  const widths: number[] = [];
  for (const r of cells) for (const [i, c] of r.entries()) widths[i] = Math.max(widths[i] ?? 0, c.length);
  console.log(`\n${title}`);
  cells.forEach((r, ri) => {
    const line = r.map((c, i) => {
      const w = widths[i] ?? 0;
      // Numbers right-aligned, and the header above a column of numbers.
      const numeric = rows.slice(1).some((x) => typeof x[i] === 'number');
      return numeric && i > 0 ? c.padStart(w) : c.padEnd(w);
    });
    console.log(line.join('  ').trimEnd());
    if (ri === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  });
}

function fmtNum(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (Number.isInteger(x)) return String(x);
  return Math.abs(x) >= 100 ? x.toFixed(0) : Math.abs(x) >= 10 ? x.toFixed(1) : x.toFixed(2);
}

export function machine() {
  return {
    cpus: cpus().length,
    model: cpus()[0]?.model ?? 'unknown',
    kernel: release(),
    memGiB: round(totalmem() / 2 ** 30),
    node: process.version,
    /** Load when the benchmark started: other work on the machine skews every timing. */
    loadavg: loadavg().map((x) => round(x, 2)),
  };
}

/** Writes bench/results/NAME.json (with the date, the machine and QUICK) and returns its repo-relative path. */
export function writeResult(name: string, data: Record<string, unknown>): string {
  const dir = join(REPO_ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.json`);
  writeFileSync(
    file,
    `${JSON.stringify({ benchmark: name, date: new Date().toISOString(), quick: QUICK, machine: machine(), ...data }, null, 2)}\n`,
  );
  return join('bench', 'results', `${name}.json`);
}

// ---- the daemon, seen from the host --------------------------------------------------------------------

export const DAEMON_UNIT = 'openauto-system.service';

/** Memory, descriptors and threads of a process of the container, from its /proc (nothing runs inside). */
export function procReading(sb: Sandbox, pid: number) {
  const status = readFileSync(join(procDir(sb, pid), 'status'), 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? Number.NaN);
  return {
    pid,
    rssKb: kb('VmRSS'),
    rssAnonKb: kb('RssAnon'),
    rssFileKb: kb('RssFile'),
    hwmKb: kb('VmHWM'),
    threads: kb('Threads'),
    fds: readdirSync(join(procDir(sb, pid), 'fd')).length,
  };
}

/** The bus's view of a connection (org.freedesktop.DBus.Debug.Stats.GetConnectionStats). */
export async function connectionStats(
  sb: Sandbox,
  uniqueName: string,
): Promise<Record<string, number | string>> {
  const [stats] = (await sb.call(
    'org.freedesktop.DBus',
    '/org/freedesktop/DBus',
    'org.freedesktop.DBus.Debug.Stats',
    'GetConnectionStats',
    ['s', uniqueName],
  )) as [Record<string, { data: number | string }>];
  const out: Record<string, number | string> = {};
  for (const [k, v] of Object.entries(stats)) out[k] = v.data;
  return out;
}

export async function nameOwner(sb: Sandbox, name = 'org.openauto.System'): Promise<string> {
  const [owner] = (await sb.call(
    'org.freedesktop.DBus',
    '/org/freedesktop/DBus',
    'org.freedesktop.DBus',
    'GetNameOwner',
    ['s', name],
  )) as [string];
  return owner;
}

export interface DaemonReading extends ReturnType<typeof procReading> {
  t: number;
  uniqueName: string;
  matchRules: number;
  peakMatchRules: number;
  busNames: number;
}

/** Process, descriptors and the bus's connection stats of the running daemon. */
export async function readDaemon(sb: Sandbox): Promise<DaemonReading> {
  const pid = await mainPid(sb, DAEMON_UNIT);
  if (!pid) throw new Error('openauto-system is not running');
  const uniqueName = await nameOwner(sb);
  const st = await connectionStats(sb, uniqueName);
  return {
    t: nowMs(),
    ...procReading(sb, pid),
    uniqueName,
    matchRules: Number(st.MatchRules),
    peakMatchRules: Number(st.PeakMatchRules),
    busNames: Number(st.BusNames),
  };
}

export const mb = (kb: number) => round(kb / 1024, 1);

/** Waits until GetHealth reports every service active; resolves with how long that took (ms). */
export async function allActiveWithin(sb: Sandbox, timeoutMs: number): Promise<number> {
  const t0 = nowMs();
  await sb.waitFor(
    async () => Object.values(await getHealth(sb)).every((s) => s === 'active'),
    timeoutMs,
    100,
  );
  return nowMs() - t0;
}

// ---- the in-sandbox client -----------------------------------------------------------------------------

/** Where the container sees this checkout (scripts/sandbox.sh binds it read-only). */
const AGENT = '/usr/src/openauto-system/dist/bench/agent.js';

/** Runs agent.ts MODE inside the container and returns its JSON result; its progress goes to our stderr. */
export async function runAgent<T>(
  sb: Sandbox,
  mode: string,
  opts: object,
  exec: ExecOptions = {},
): Promise<T> {
  const r = await sb.exec(['/usr/bin/node', AGENT, mode, JSON.stringify(opts)], {
    timeoutMs: 120_000,
    ...exec,
  });
  if (r.stderr.trim() !== '')
    process.stderr.write(r.stderr.replace(/^/gm, `  [agent ${mode}] `).replace(/ $/, ''));
  const last = r.stdout.trim().split('\n').pop() ?? '';
  if (r.code !== 0 || !last.startsWith('{'))
    throw new Error(`agent ${mode} failed (exit ${r.code ?? r.signal})`);
  return JSON.parse(last) as T;
}

/**
 * Builds bench/loadgen.c into dist/bench/loadgen, the concurrent socket load's client (agent.ts `sockload`),
 * and bench/floor-server.c into dist/bench/floor-server (agent.ts `floor`), before a sandbox starts (it sees
 * the checkout read-only). False, logged, where no C compiler can: the agent then drives the load from node,
 * which costs the client as much CPU as the server, and there is no floor figure.
 */
export function buildLoadgen(): boolean {
  for (const name of ['loadgen', 'floor-server']) {
    const src = fileURLToPath(new URL(`../../bench/${name}.c`, import.meta.url));
    const out = fileURLToPath(new URL(`./${name}`, import.meta.url));
    try {
      execFileSync('cc', ['-O2', '-Wall', '-o', out, src], { stdio: 'pipe' });
    } catch (err) {
      rmSync(out, { force: true });
      log(`${name} not built (${(err as Error).message.split('\n')[0]}): the load comes from node`);
      return false;
    }
  }
  return true;
}

/** Kernel clock ticks per second (for /proc/PID/stat times). */
export function clockTicks(): number {
  return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
}

/** Runs a benchmark's main and sets the exit code: its return value, 1 on an exception. */
export function runMain(name: string, main: () => Promise<number>): void {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      console.error(`bench/${name}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      process.exitCode = 1;
    },
  );
}
