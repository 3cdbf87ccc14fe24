// A booted head unit for node:test: real systemd, dbus, journald, networkd, polkitd and timedated in a
// systemd-nspawn container over an in-memory overlay of the host's root, with openauto-system installed by
// scripts/install.sh (see scripts/sandbox.sh for everything the container holds).
//
//   const sb = await Sandbox.start({ name: 'recovery', env: { OPENAUTO_FAST_RETRY_MS: 500 } });
//   const r = await sb.exec(['busctl', 'call', ...], { user: 'appuser' });
//   await sb.waitFor(async () => (await sb.systemctl(['is-active', 'hostapd'])).stdout.trim() === 'active');
//   await sb.stop();
//
// Needs root. Each container is independent; give each a distinct name.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file runs from dist/test/sandbox/). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const SANDBOX_SH = join(REPO_ROOT, 'scripts', 'sandbox.sh');
const STATE_BASE = process.env.SANDBOX_STATE_BASE ?? '/run/openauto-sandbox';

/** The app account (in group openauto, owner of ~/.openauto/config.yaml) and an unprivileged outsider. */
export const APP_USER = 'appuser';
export const OTHER_USER = 'stranger';
export const APP_CONFIG = `/home/${APP_USER}/.openauto/config.yaml`;

export const BUS_NAME = 'org.openauto.System';
export const OBJECT_PATH = '/org/openauto/System';
export const INTERFACE = 'org.openauto.System1';

/** Whether the daemon has been built (tests of the daemon itself skip without it). */
export const daemonBuilt = existsSync(join(REPO_ROOT, 'dist', 'bin', 'openauto-system.js'));

/** Why sandbox tests cannot run here, or undefined when they can. Use as node:test's `skip` option. */
export function sandboxUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'sandbox tests need root (systemd-nspawn, mount namespaces)';
  if (!existsSync('/usr/bin/systemd-nspawn'))
    return 'systemd-nspawn is missing (apt-get install systemd-container)';
  return undefined;
}

/** Why a suite of the installed daemon cannot run here (no sandbox, or nothing built), or undefined. */
export function daemonSuiteSkip(): string | undefined {
  return sandboxUnavailable() ?? (daemonBuilt ? undefined : 'the daemon is not built (npm run build)');
}

export interface StartOptions {
  /**
   * Letters, digits, . _ - (at most 40). The container is named `${name}-${process.pid}` (Sandbox.name), so
   * the same test file run twice at once does not collide.
   */
  name: string;
  /** Extra environment for openauto-system.service (appended to /etc/default/openauto-system). */
  env?: Record<string, string | number | boolean>;
  /** false: install the daemon but do not start it at boot (default true). */
  daemon?: boolean;
  /** false: do not install the daemon at all (it is installed some other way, e.g. the .deb); default true. */
  install?: boolean;
  /** Boot timeout (default 60 s). */
  bootTimeoutMs?: number;
}

export interface ExecOptions {
  /** 'root' (default), 'appuser', 'stranger' or any user of the container. */
  user?: string;
  /** Written to the command's stdin (otherwise stdin is /dev/null). */
  input?: string | Buffer;
  /** Kill the command after this long (default 30 s); the result then has code 124 or a signal. */
  timeoutMs?: number;
  /** Working directory inside the container (default /). */
  cwd?: string;
  /** Extra environment variables for the command. */
  env?: Record<string, string>;
}

export interface ExecResult {
  /** Exit status; 124 when timeoutMs expired; null if killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** One journal entry as `journalctl -o json` prints it (MESSAGE, PRIORITY, _PID, custom fields...). */
export type JournalEntry = Record<string, string | number | (string | number)[] | null>;

export interface JournalOptions {
  /** `journalctl -u identifier` (the unit's processes and systemd's messages about it) instead of SYSLOG_IDENTIFIER. */
  unit?: boolean;
  /** Only entries since this journalctl --since expression (e.g. '-10s', '@1700000000'). */
  since?: string;
  /** Extra journalctl field matches, e.g. { SERVICE: 'hostapd' }. */
  match?: Record<string, string>;
}

const live = new Set<Sandbox>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // A test that crashes must not leave containers behind.
  const stopAll = () => {
    for (const sb of live)
      spawnSync('bash', [SANDBOX_SH, 'stop', sb.name], { stdio: 'ignore', timeout: 15_000 });
    live.clear();
  };
  process.on('exit', stopAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      stopAll();
      process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
    });
  }
}

function run(
  argv: string[],
  input: string | Buffer | undefined,
  timeoutMs: number,
  extraEnv: Record<string, string> = {},
): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv as [string, ...string[]];
    const child = spawn(cmd, args, {
      stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...extraEnv },
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    // Backstop: the command already runs under timeout(1) inside; this catches a wedged nsenter.
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs + 5000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    if (input !== undefined && child.stdin) {
      child.stdin.on('error', () => {}); // the command may exit without reading
      child.stdin.end(input);
    }
  });
}

export class Sandbox {
  /** Host PID of the container's systemd (PID 1 inside). */
  readonly leader: number;
  /** The container's file system seen from the host (/proc/LEADER/root). */
  readonly root: string;
  /** Milliseconds from "start" to a booted system (overlay, install and boot). */
  readonly bootMs: number;
  private stopped = false;

  private constructor(
    readonly name: string,
    leader: number,
    bootMs: number,
  ) {
    this.leader = leader;
    this.root = `/proc/${leader}/root`;
    this.bootMs = bootMs;
  }

  /** Boots a container named `${opts.name}-${process.pid}`. */
  static async start(opts: StartOptions): Promise<Sandbox> {
    const why = sandboxUnavailable();
    if (why) throw new Error(why);
    installExitHook();
    const env: Record<string, string> = {};
    const pairs = Object.entries(opts.env ?? {}).map(([k, v]) => {
      const s = typeof v === 'boolean' ? (v ? '1' : '0') : String(v);
      if (!/^[A-Z_][A-Z0-9_]*$/.test(k) || /[\s'"\\$`]/.test(s)) throw new Error(`unsupported env ${k}=${s}`);
      return `${k}=${s}`;
    });
    env.SANDBOX_DAEMON_ENV = pairs.join(' ');
    if (opts.daemon === false) env.SANDBOX_NO_DAEMON = '1';
    if (opts.install === false) env.SANDBOX_NO_INSTALL = '1';
    const timeoutMs = opts.bootTimeoutMs ?? 60_000;
    env.SANDBOX_BOOT_TIMEOUT = String(Math.ceil(timeoutMs / 1000));
    // A crashed (SIGKILLed) test file cannot stop its containers; the next start collects them.
    env.SANDBOX_OWNER_PID = String(process.pid);
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$/.test(opts.name))
      throw new Error(`bad sandbox name ${opts.name}`);
    const name = `${opts.name}-${process.pid}`;

    const r = await run(['bash', SANDBOX_SH, 'start', name], undefined, timeoutMs + 10_000, env);
    if (r.code !== 0) {
      throw new Error(`sandbox ${name} failed to start (exit ${r.code}):\n${r.stderr}${r.stdout}`);
    }
    const leader = Number.parseInt(r.stdout.trim().split('\n').pop() ?? '', 10);
    if (!Number.isInteger(leader) || leader <= 1)
      throw new Error(`sandbox ${name}: no leader PID in ${r.stdout}`);
    let bootMs = Number.NaN;
    try {
      bootMs = Number.parseInt(readFileSync(join(STATE_BASE, name, 'boot-ms'), 'utf8'), 10);
    } catch {
      // informational only
    }
    const sb = new Sandbox(name, leader, bootMs);
    live.add(sb);
    return sb;
  }

  /** Runs argv inside the container (all of its namespaces), as root or as opts.user, with a clean environment. */
  exec(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    if (argv.length === 0) throw new Error('exec: empty command');
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const args = ['bash', SANDBOX_SH, 'exec', this.name];
    if (opts.user && opts.user !== 'root') args.push('--user', opts.user);
    if (opts.cwd) args.push('--cwd', opts.cwd);
    args.push('--');
    const envv = Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`);
    if (envv.length) args.push('env', ...envv);
    args.push('timeout', '--kill-after=2', `${Math.max(timeoutMs, 1) / 1000}s`, ...argv);
    return run(args, opts.input, timeoutMs);
  }

  /** exec, but throws (with stderr) unless the exit status is 0; returns stdout. */
  async execOk(argv: string[], opts: ExecOptions = {}): Promise<string> {
    const r = await this.exec(argv, opts);
    if (r.code !== 0) {
      throw new Error(
        `${argv.join(' ')} (as ${opts.user ?? 'root'}) exited ${r.code ?? r.signal}: ${r.stderr}${r.stdout}`,
      );
    }
    return r.stdout;
  }

  /** `busctl --system ARGS...` inside the container. */
  busctl(args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    return this.exec(['busctl', '--system', ...args], opts);
  }

  /**
   * `busctl --json=short call DEST PATH IFACE METHOD [SIG ARGS...]`, parsed: the reply's `data` array.
   * Throws with busctl's message (e.g. the D-Bus error name) on failure.
   */
  async call(
    dest: string,
    path: string,
    iface: string,
    method: string,
    sigAndArgs: (string | number)[] = [],
    opts: ExecOptions = {},
  ): Promise<unknown[]> {
    const r = await this.busctl(
      ['--json=short', 'call', dest, path, iface, method, ...sigAndArgs.map(String)],
      opts,
    );
    if (r.code !== 0) throw new Error(r.stderr.trim() || `busctl call ${method} exited ${r.code}`);
    const out = r.stdout.trim();
    if (out === '') return [];
    return (JSON.parse(out) as { data: unknown[] }).data;
  }

  /** `systemctl ARGS...` inside the container. */
  systemctl(args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    return this.exec(['systemctl', '--no-pager', ...args], opts);
  }

  /** ActiveState of a unit (active, inactive, failed, activating, ...). */
  async unitState(unit: string): Promise<string> {
    const r = await this.systemctl(['show', '-P', 'ActiveState', unit]);
    return r.stdout.trim();
  }

  /**
   * Polls pred until it returns a truthy value, which is returned. Exceptions count as "not yet".
   * Throws after timeoutMs, with the last exception or value in the message.
   */
  async waitFor<T>(
    pred: () => T | Promise<T>,
    timeoutMs = 10_000,
    intervalMs = 100,
  ): Promise<NonNullable<T>> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      try {
        const v = await pred();
        if (v) return v as NonNullable<T>;
        last = v;
      } catch (e) {
        last = e;
      }
      if (Date.now() >= deadline) {
        const detail = last instanceof Error ? last.message : JSON.stringify(last);
        throw new Error(`waitFor timed out after ${timeoutMs} ms (last: ${detail})`);
      }
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  }

  /** Journal entries with SYSLOG_IDENTIFIER=identifier (or of unit `identifier` with {unit: true}), oldest first. */
  async journal(identifier: string, opts: JournalOptions = {}): Promise<JournalEntry[]> {
    const args = ['journalctl', '--no-pager', '-o', 'json'];
    args.push(...(opts.unit ? ['-u', identifier] : [`SYSLOG_IDENTIFIER=${identifier}`]));
    for (const [k, v] of Object.entries(opts.match ?? {})) args.push(`${k}=${v}`);
    if (opts.since) args.push(`--since=${opts.since}`);
    const r = await this.exec(args);
    if (r.code !== 0) throw new Error(`journalctl failed: ${r.stderr}`);
    return r.stdout
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as JournalEntry);
  }

  /** The MESSAGE fields of journal(identifier, opts), as text. */
  async journalMessages(identifier: string, opts: JournalOptions = {}): Promise<string[]> {
    return (await this.journal(identifier, opts)).map((e) => {
      const m = e.MESSAGE;
      return Array.isArray(m) ? Buffer.from(m as number[]).toString('utf8') : String(m ?? '');
    });
  }

  /** Reads a file of the container (from the host side, through /proc/LEADER/root). */
  readFile(path: string): Promise<string> {
    return readFile(join(this.root, path), 'utf8');
  }

  /** Writes a file of the container (owned by root; mode applied). Parent directories must exist. */
  async writeFile(path: string, content: string | Buffer, mode = 0o644): Promise<void> {
    const hostPath = join(this.root, path);
    await writeFile(hostPath, content, { mode });
    await chmod(hostPath, mode);
  }

  /** Powers the container off and forgets it. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    live.delete(this);
    await run(['bash', SANDBOX_SH, 'stop', this.name], undefined, 30_000);
  }
}
