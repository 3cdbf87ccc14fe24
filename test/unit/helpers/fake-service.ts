// A scriptable SystemService for tests of the faces (socket shim, D-Bus), plus a child-process runner that
// serves it on a socket so a test can crash, restart or measure the daemon side separately.
//
//   node dist/test/unit/helpers/fake-service.js <socket path> ['<SocketServerOptions JSON>']
// prints nothing; talks over the fork IPC channel: sends {ready:true, …} once listening; answers
// {cmd:'rss'} with {rss} (after full collections and the daemon's heap trimmer's), {cmd:'health', health} emits healthChanged,
// {cmd:'close'} closes the server and exits.

import { EventEmitter } from 'node:events';
import { fileURLToPath } from 'node:url';
import { ServiceError } from '../../../src/errors.js';
import type { HealthMap } from '../../../src/health/states.js';
import { resolveServiceName } from '../../../src/health/states.js';
import type { ApplyResult, Caller, Json, SystemService } from '../../../src/service.js';
import { sleep } from '../../helpers/common.js';

export interface Call {
  method: 'applyConfig' | 'restartService';
  arg: string;
  caller: Caller;
}

export class FakeService extends EventEmitter implements SystemService {
  health: HealthMap = { hostapd: 'active', networkd: 'active', bluetooth: 'active' };
  status: { [key: string]: Json } = {
    services: {
      hostapd: { state: 'active', active_state: 'active', sub_state: 'running', retries: 0 },
    },
    config: { wifi: { ssid: 'Prodigy_3fa9', channel: 36, band: 'a' } },
    uptime: 12,
    version: '0.1.0',
  };
  readonly calls: Call[] = [];
  /** Milliseconds applyConfig / restartService take. */
  delayMs = 0;
  /** Replace to script failures or results. */
  applyImpl: (section: string) => ApplyResult | Promise<ApplyResult> = (section) => {
    switch (section) {
      case 'wifi':
        return { changed: true, restarted: ['hostapd'] };
      case 'network':
        return { changed: true, restarted: ['networkd'] };
      case 'bluetooth':
      case 'time':
        return { changed: false, restarted: [] };
      default:
        throw new ServiceError(
          'UnknownSection',
          `unknown section; the sections are wifi, network, bluetooth, time`,
        );
    }
  };
  restartImpl: (name: string) => void | Promise<void> = (name) => {
    if (resolveServiceName(name) === undefined) {
      throw new ServiceError(
        'UnknownService',
        'unknown service; the services are hostapd, networkd, bluetooth',
      );
    }
  };
  getHealthImpl: () => HealthMap = () => this.health;

  getHealth(): HealthMap {
    return this.getHealthImpl();
  }

  getStatus(): { [key: string]: Json } {
    return this.status;
  }

  async applyConfig(section: string, caller: Caller): Promise<ApplyResult> {
    this.calls.push({ method: 'applyConfig', arg: section, caller });
    if (this.delayMs > 0) await sleep(this.delayMs);
    return this.applyImpl(section);
  }

  async restartService(name: string, caller: Caller): Promise<void> {
    this.calls.push({ method: 'restartService', arg: name, caller });
    if (this.delayMs > 0) await sleep(this.delayMs);
    await this.restartImpl(name);
  }

  // The faces under test here do not manage Bluetooth profiles: answered as the daemon does without them.
  async claimProfile(_uuid: string, _handler: string, _caller: Caller): Promise<void> {
    throw new ServiceError('InvalidArgs', 'no Bluetooth profiles are managed here');
  }

  async releaseProfile(_uuid: string, _caller: Caller): Promise<void> {
    throw new ServiceError('InvalidArgs', 'no Bluetooth profiles are managed here');
  }

  setHealth(health: HealthMap): void {
    this.health = health;
    this.emit('healthChanged', health);
  }
}

export { sleep };

/** A message the child runner sends. */
export type ChildMessage = {
  ready?: boolean;
  pid?: number;
  listenFds?: number[];
  envLeft?: string[];
  rss?: number;
  mem?: NodeJS.MemoryUsage;
  spaces?: Record<string, number>;
};

/** The fake service served from a child process (see the header of this file). */
export class ChildServer {
  private inbox: ChildMessage[] = [];
  private waiting: ((m: ChildMessage) => void)[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  ready: ChildMessage = {};

  private constructor(readonly proc: import('node:child_process').ChildProcess) {
    proc.on('message', (m: ChildMessage) => {
      const w = this.waiting.shift();
      if (w) w(m);
      else this.inbox.push(m);
    });
    this.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  }

  /** Starts the runner on `path`. With `activationFd`, the runner gets that fd as fd 3 with LISTEN_PID and
   * LISTEN_FDS set the way systemd does, and must adopt it. */
  static async start(
    path: string,
    options: Record<string, unknown> = {},
    activationFd?: number,
    node: { execArgv?: string[]; env?: NodeJS.ProcessEnv } = {},
  ): Promise<ChildServer> {
    const { fork, spawn } = await import('node:child_process');
    const script = fileURLToPath(import.meta.url);
    const args = [path, JSON.stringify(options)];
    const proc =
      activationFd === undefined
        ? fork(script, args, {
            stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
            execArgv: node.execArgv ?? [],
            env: { ...process.env, ...node.env },
          })
        : spawn(
            '/bin/sh',
            [
              '-c',
              'LISTEN_PID=$$ LISTEN_FDS=1 FAKE_SERVICE_ACTIVATION=1 exec "$0" "$@"',
              process.execPath,
              script,
              ...args,
            ],
            { stdio: ['ignore', 'inherit', 'inherit', activationFd, 'ipc'] },
          );
    const child = new ChildServer(proc);
    const first = await Promise.race([
      child.next(),
      child.exited.then((e) => {
        throw new Error(`fake service child exited early: ${JSON.stringify(e)}`);
      }),
    ]);
    child.ready = first;
    return child;
  }

  next(): Promise<ChildMessage> {
    const m = this.inbox.shift();
    if (m) return Promise.resolve(m);
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  async ask(msg: { cmd: 'rss' | 'health' | 'close'; health?: HealthMap }): Promise<ChildMessage> {
    this.proc.send(msg);
    return this.next();
  }

  /** Closes the server in the child and waits for it to exit. */
  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.send({ cmd: 'close' });
    await this.exited;
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    this.proc.kill(signal);
    await this.exited;
  }
}

async function runChild(): Promise<void> {
  const { SocketServer } = await import('../../../src/ipc/socket-server.js');
  const { listenFdsFromEnv } = await import('../../../src/ipc/socket-file.js');
  const { defaultCollect } = await import('../../../src/memory/heap-trim.js');
  // What the daemon's heap trimmer does once a burst has grown its memory (V8's low-memory collection, then
  // malloc_trim for the connections' buffers freed off V8's heap): RSS is read after it, as in the daemon.
  const trim = defaultCollect();
  // Socket activation: FAKE_SERVICE_ACTIVATION=1 makes the child take fd 3 the way the daemon does.
  const fds = process.env.FAKE_SERVICE_ACTIVATION === '1' ? listenFdsFromEnv() : [];
  const envLeft = ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES'].filter((k) => k in process.env);
  const { runInNewContext } = await import('node:vm');
  const v8 = await import('node:v8');
  v8.setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const path = process.argv[2];
  if (!path) throw new Error('usage: fake-service.js <socket path> [options JSON]');
  const extra = JSON.parse(process.argv[3] ?? '{}') as Record<string, unknown>;
  const service = new FakeService();
  const server = new SocketServer(service, {
    path,
    group: 'no-such-group-here',
    ...extra,
    ...(fds[0] !== undefined ? { listenFd: fds[0] } : {}),
  });
  await server.start();
  const send = (m: unknown) => process.send?.(m);
  process.on('message', async (m: { cmd: string; health?: HealthMap }) => {
    if (m.cmd === 'rss') {
      for (let i = 0; i < 3; i++) {
        gc();
        await sleep(50);
      }
      trim?.();
      const mem = process.memoryUsage();
      const spaces = Object.fromEntries(
        v8.getHeapSpaceStatistics().map((s) => [s.space_name, Math.round(s.space_size / 1024)]),
      );
      send({ rss: mem.rss, mem, spaces, clients: server.clientCount });
    } else if (m.cmd === 'health' && m.health) {
      service.setHealth(m.health);
      send({ ok: true });
    } else if (m.cmd === 'close') {
      await server.close();
      process.exit(0);
    }
  });
  send({ ready: true, pid: process.pid, listenFds: fds, envLeft });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  runChild().catch((err: unknown) => {
    process.stderr.write(`fake-service child failed: ${String(err)}\n`);
    process.exit(1);
  });
}

/** A raw NDJSON client for tests: collects every line it receives. */
export class LineClient {
  readonly lines: string[] = [];
  ended = false;
  error: Error | undefined;
  private buf = '';
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: import('node:net').Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      this.buf += d;
      let nl = this.buf.indexOf('\n');
      while (nl !== -1) {
        this.lines.push(this.buf.slice(0, nl));
        this.buf = this.buf.slice(nl + 1);
        nl = this.buf.indexOf('\n');
      }
      this.wake();
    });
    socket.on('error', (err) => {
      this.error = err;
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
  }

  static async connect(path: string): Promise<LineClient> {
    const net = await import('node:net');
    return new Promise((resolve, reject) => {
      const s = net.connect(path);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(new LineClient(s));
      });
      s.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Resolves when `pred` holds, checked after every received chunk and on close. */
  async until(pred: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`timed out waiting for ${what}; got ${this.lines.length} lines, ended=${this.ended}`);
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  async waitLines(n: number, timeoutMs = 5000): Promise<string[]> {
    await this.until(() => this.lines.length >= n, timeoutMs, `${n} lines`);
    return this.lines.slice(0, n);
  }

  async waitClosed(timeoutMs = 5000): Promise<void> {
    await this.until(() => this.ended, timeoutMs, 'close');
  }

  /** Sends `text` followed by a newline. */
  send(text: string | Buffer): void {
    this.socket.write(text);
    this.socket.write('\n');
  }

  /** Sends one request and returns the next line received. */
  async call(text: string, timeoutMs = 5000): Promise<string> {
    const n = this.lines.length + 1;
    this.send(text);
    await this.waitLines(n, timeoutMs);
    return this.lines[n - 1] as string;
  }

  close(): void {
    this.socket.destroy();
  }
}
