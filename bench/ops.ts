// What the soak and the chaos run do to a sandbox, and how they check it afterwards: the app's config.yaml
// with one of two SSIDs (so every apply writes), ApplyConfig/RestartService as the app user over D-Bus or
// the socket (through agent.ts), temp files left by writes, and systemd's own journal of unit jobs, read
// for restarts of one unit that overlapped.
import { chown, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { APP_CONFIG, APP_USER, type Sandbox } from '../test/sandbox/harness.js';
import { runAgent } from './lib.js';

export const HOSTAPD_CONF = '/etc/hostapd/hostapd.conf';
export const NETWORK_DIR = '/etc/systemd/network';
export const SSIDS = ['Prodigy_bench_A', 'Prodigy_bench_B'] as const;

/** The app's config.yaml in the container, rewritten (atomically, owned by the app user) with another SSID. */
export class AppConfig {
  private constructor(
    private readonly sb: Sandbox,
    private readonly original: string,
  ) {}

  static async open(sb: Sandbox): Promise<AppConfig> {
    return new AppConfig(sb, await sb.readFile(APP_CONFIG));
  }

  async writeSsid(ssid: string): Promise<void> {
    const text = this.original.replace(/(wifi_ap: \{[^}]*\bssid: )[^,}\n]+/, `$1${ssid}`);
    if (!text.includes(`ssid: ${ssid},`)) throw new Error('config.yaml: no wifi_ap ssid to replace');
    const file = join(this.sb.root, APP_CONFIG);
    const tmp = `${file}.bench-tmp`;
    const st = await stat(file);
    await writeFile(tmp, text, { mode: 0o600 });
    await chown(tmp, st.uid, st.gid);
    await rename(tmp, file);
  }
}

export type Transport = 'dbus' | 'socket';
export type Method = 'ApplyConfig' | 'RestartService';

export interface OpResult {
  ok: boolean;
  result?: unknown;
  error?: string;
  message?: string;
  ms: number;
}

/** One ApplyConfig or RestartService as the app user (polkit rules grant it to group openauto). */
export function operation(sb: Sandbox, transport: Transport, method: Method, arg: string): Promise<OpResult> {
  return runAgent<OpResult>(
    sb,
    'call',
    { transport, method, arg, timeoutMs: 60_000 },
    { user: APP_USER, timeoutMs: 90_000 },
  );
}

/** Temp files of interrupted atomic writes (`.NAME.openauto-tmp-…`) in the directories the daemon writes. */
export async function tempFiles(sb: Sandbox): Promise<string[]> {
  const out: string[] = [];
  for (const dir of ['/etc/hostapd', NETWORK_DIR]) {
    for (const f of await readdir(join(sb.root, dir)).catch(() => [] as string[]))
      if (f.includes('.openauto-tmp-')) out.push(join(dir, f));
  }
  return out;
}

/** hostapd.conf read from the host side (no process in the container). */
export function readHostapdConf(sb: Sandbox): Promise<string> {
  return readFile(join(sb.root, HOSTAPD_CONF), 'utf8');
}

// ---- systemd's journal of jobs ---------------------------------------------------------------------------

const STARTING = '7d4958e842da4a758f6c1cdc7b36dcc5';
const STOPPING = 'de5b426a63be47a7b6ac3eaac82e2f6f';

/** One of PID 1's job messages for a unit ("Starting…", "Started…", "Stopping…", "Stopped…", "Failed…"). */
export interface JobEntry {
  t: number;
  unit: string;
  jobId: string;
  jobType: string;
  jobResult: string | undefined;
  messageId: string;
  message: string;
}

export interface JobOverlap {
  unit: string;
  /** The job that was still running. */
  open: JobEntry;
  /** A message of another job for the same unit, before the first one finished. */
  other: JobEntry;
}

/** PID 1's messages that carry a JOB_ID for the given units, since sinceMs (wall clock), oldest first. */
export async function jobEntries(sb: Sandbox, units: string[], sinceMs: number): Promise<JobEntry[]> {
  const r = await sb.exec(
    ['journalctl', '--no-pager', '-o', 'json', '_PID=1', `--since=@${(sinceMs / 1000).toFixed(3)}`],
    { timeoutMs: 60_000 },
  );
  if (r.code !== 0) throw new Error(`journalctl: ${r.stderr}`);
  const out: JobEntry[] = [];
  for (const line of r.stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    const e = JSON.parse(line) as Record<string, unknown>;
    if (e.JOB_ID === undefined || !units.includes(String(e.UNIT))) continue;
    out.push({
      t: Number(e.__REALTIME_TIMESTAMP) / 1000,
      unit: String(e.UNIT),
      jobId: String(e.JOB_ID),
      jobType: String(e.JOB_TYPE ?? ''),
      jobResult: e.JOB_RESULT === undefined ? undefined : String(e.JOB_RESULT),
      messageId: String(e.MESSAGE_ID ?? ''),
      message: String(e.MESSAGE ?? ''),
    });
  }
  return out.sort((a, b) => a.t - b.t);
}

/**
 * Restarts of one unit that overlapped, from PID 1's job messages. A job's start phase begins with
 * "Starting…" and must end with that start's result (JOB_TYPE=start with a JOB_RESULT: "Started", "Failed to
 * start", …); its stop phase begins with "Stopping…" and ends with "Stopped" (of a stop or of a restart,
 * which then starts). Anything else for the unit in between means a second request cut in: another job's
 * message, or the same job stopping again mid-start (systemd merges a second restart into a running one and
 * starts over: "Starting…", "Stopped", "Starting…").
 */
export function jobOverlaps(entries: JobEntry[]): JobOverlap[] {
  const open = new Map<string, { phase: 'start' | 'stop'; entry: JobEntry }>();
  const out: JobOverlap[] = [];
  for (const e of entries) {
    const begins = e.messageId === STARTING ? 'start' : e.messageId === STOPPING ? 'stop' : undefined;
    const cur = open.get(e.unit);
    if (cur) {
      open.delete(e.unit);
      const ends =
        cur.entry.jobId === e.jobId &&
        e.jobResult !== undefined &&
        (cur.phase === 'start' ? e.jobType === 'start' : e.jobType === 'stop' || e.jobType === 'restart');
      if (ends) continue;
      out.push({ unit: e.unit, open: cur.entry, other: e });
    }
    if (begins) open.set(e.unit, { phase: begins, entry: e });
  }
  return out;
}
