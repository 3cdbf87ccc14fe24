// The legacy socket's per-request cost side by side with the Python baseline, in one run on this machine
// (it is shared: figures from different runs do not compare). The baseline is py-baseline.py, a minimal
// asyncio NDJSON server over a Unix socket (the old Python service's runtime, answers from fixed data). Ours
// is a SocketServer serving a stand-in service in its own process, run with the unit's node flags (read from
// systemd/openauto-system.service's ExecStart, so --jitless --lite-mode as shipped); the stand-in keeps the
// health text once per change and builds a ~2 KB status per call, as the Daemon does.
//
// Each round runs, for both servers in turn (the order alternates between rounds):
//   - throughput: 32 connections, each sending get_health and waiting for the answer, 500 times;
//   - sequential: 10,000 mixed requests (get_health, get_status, ping in turn) on one connection, wall time;
// and for each the server's CPU time (utime + stime of /proc/PID/stat) per request: what the request path
// costs, whatever else the machine is doing. Prints the median of the rounds and the ratios to the
// baseline, writes bench/results/socket-python.json. About 20 s with the defaults.
//
//   node dist/bench/socket-python.js [--rounds 3] [--clients 32] [--per-client 500] [--sequential 10000]
// Environment: PY_BASELINE (default: ../shared/bench/py-baseline.py next to the checkout),
// BENCH_SERVER_NODE_ARGS (our server's node flags instead of the unit's; "" for none), BENCH_CPU_PROF=DIR
// (our server writes a --cpu-prof profile there).
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HealthMap } from '../src/health/states.js';
import { SocketServer } from '../src/ipc/index.js';
import type { ApplyResult, Json, SystemService } from '../src/service.js';
import { baselinePath, unitNodeFlags } from './baseline.js';
import { LineClient } from './socket-client.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CLK_TCK = 100; // Linux's USER_HZ: /proc/PID/stat counts CPU time in 1/100 s

/** Stands in for the Daemon: health text made once per change, the status built and serialised per call. */
class BenchService extends EventEmitter implements SystemService {
  private readonly health: HealthMap = { hostapd: 'active', networkd: 'active', bluetooth: 'active' };
  private healthText: string | undefined;
  private readonly started = Date.now();
  getHealth(): HealthMap {
    return this.health;
  }
  healthJson(): string {
    this.healthText ??= JSON.stringify(this.health);
    return this.healthText;
  }
  getStatus(): { [key: string]: Json } {
    const svc = (unit: string, detail: string): { [key: string]: Json } => ({
      unit,
      state: 'active',
      active_state: 'active',
      sub_state: 'running',
      functional_ok: true,
      functional_detail: detail,
      retries: 0,
      recovery_mode: 'none',
      next_attempt: null,
      last_change: '2026-12-01T00:00:00.000Z',
    });
    const profile = (uuid: string, name: string, path: string): { [key: string]: Json } => ({
      uuid,
      name,
      object_path: path,
      registered: true,
      state: 'registered',
      conflict: false,
      last_error: null,
      failures: 0,
      next_attempt: null,
      claimed: false,
      claimant: null,
      handler: null,
      forwarded: 0,
      rejected: 0,
    });
    return {
      services: {
        hostapd: svc('hostapd.service', 'wlan0 has 10.0.0.1'),
        networkd: svc(
          'systemd-networkd.service',
          'wlan0 configured by networkd with 10.0.0.1 and its DHCP server',
        ),
        bluetooth: svc('bluetooth.service', 'hci0 is powered'),
      },
      config: {
        wifi: { ssid: 'OpenAutoProdigy', password: '(set)', channel: 36, band: 'a', country_code: 'US' },
        network: {
          interface: 'wlan0',
          ap_ip: '10.0.0.1',
          dhcp_range_start: '10.0.0.10',
          dhcp_range_end: '10.0.0.50',
        },
      },
      profiles: {
        aa: profile(
          '4de17a00-52cb-11e6-bdf4-0800200c9a66',
          'OpenAuto Android Auto Wireless',
          '/org/openauto/System/bluez/android_auto',
        ),
        'hfp-ag': profile(
          '0000111f-0000-1000-8000-00805f9b34fb',
          'OpenAuto HFP Audio Gateway',
          '/org/openauto/System/bluez/hfp_ag',
        ),
        'hsp-hs': profile(
          '00001108-0000-1000-8000-00805f9b34fb',
          'OpenAuto HSP Headset',
          '/org/openauto/System/bluez/hsp_hs',
        ),
      },
      uptime: Math.floor((Date.now() - this.started) / 1000),
      version: 'bench',
    };
  }
  async applyConfig(): Promise<ApplyResult> {
    return { changed: false, restarted: [] };
  }
  async restartService(): Promise<void> {}
  async claimProfile(): Promise<void> {}
  async releaseProfile(): Promise<void> {}
}

async function serve(path: string): Promise<void> {
  const server = new SocketServer(new BenchService(), { path, group: 'openauto', maxClients: 256 });
  await server.start();
  process.on('message', async (m: { cmd: string }) => {
    if (m.cmd === 'close') {
      await server.close();
      process.exit(0);
    }
  });
  process.send?.({ ready: true });
}

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : Number(process.argv[i + 1]);
}

/** CPU seconds (user + system, every thread) the process has used, and the system part of it. */
function cpuSeconds(pid: number): number {
  return cpuTimes(pid).reduce((a, b) => a + b);
}
function cpuTimes(pid: number): [number, number] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 (utime, stime); f[0] is field 3.
  return [Number(f[11]) / CLK_TCK, Number(f[12]) / CLK_TCK];
}

interface Server {
  name: string;
  pid: number;
  path: string;
  stop(): Promise<void>;
}

async function startNode(dir: string, nodeArgs: string[]): Promise<Server> {
  const path = join(dir, 'node.sock');
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ['--server', path], {
    execArgv: nodeArgs,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, OPENAUTO_LOG_STDERR: '1' },
  });
  await new Promise((r) => child.once('message', r));
  return {
    name: 'node',
    pid: child.pid as number,
    path,
    stop: async () => {
      child.send({ cmd: 'close' });
      await new Promise((r) => child.once('exit', r));
    },
  };
}

async function startPython(dir: string, script: string): Promise<Server> {
  const path = join(dir, 'py.sock');
  const child = spawn('python3', [script, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((ok, fail) => {
    child.once('exit', (code) => fail(new Error(`py-baseline exited (${code})`)));
    child.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) ok();
    });
  });
  child.removeAllListeners('exit');
  return {
    name: 'python',
    pid: child.pid as number,
    path,
    stop: async () => {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

interface Figures {
  concurrent_req_s: number;
  concurrent_cpu_us: number;
  /** The kernel's part of concurrent_cpu_us. */
  concurrent_sys_us: number;
  /** The concurrent load from the lean client. */
  lean_req_s: number;
  lean_cpu_us: number;
  sequential_s: number;
  sequential_cpu_us: number;
}

/** `clients` connections, each sending get_health and sending the next as soon as its answer is in, until
 * each has had `perClient` answers; resolves with the seconds taken. */
function leanConcurrent(path: string, clients: number, perClient: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let open = clients;
    let t0 = 0n;
    let connected = 0;
    const starts: (() => void)[] = [];
    for (let ci = 0; ci < clients; ci++) {
      const sock = net.connect(path);
      let answered = 0;
      let sent = 0;
      const request = Buffer.from(`{"id":"${ci}","method":"get_health"}\n`);
      const send = () => {
        sent++;
        sock.write(request);
      };
      starts.push(send);
      sock.on('error', reject);
      sock.on('connect', () => {
        if (++connected < clients) return;
        t0 = process.hrtime.bigint();
        for (const go of starts) go();
      });
      sock.on('data', (d: Buffer) => {
        for (let i = d.indexOf(0x0a); i !== -1; i = d.indexOf(0x0a, i + 1)) answered++;
        if (answered < sent) return;
        if (sent < perClient) return send();
        sock.destroy();
        if (--open === 0) resolve(Number(process.hrtime.bigint() - t0) / 1e9);
      });
    }
  });
}

const HEALTH = '{"hostapd":"active","networkd":"active","bluetooth":"active"}';
const MIXED = ['get_health', 'get_status', 'ping'] as const;

async function measure(s: Server, clients: number, perClient: number, sequential: number): Promise<Figures> {
  const conns = await Promise.all(Array.from({ length: clients }, () => LineClient.connect(s.path)));
  // Warm-up, and a check that the answers are the same on both sides.
  for (const k of conns) {
    const a = await k.call('{"id":"w","method":"get_health"}\n');
    if (a !== `{"id":"w","result":${HEALTH}}`) throw new Error(`${s.name}: unexpected answer ${a}`);
  }
  const sys0 = cpuTimes(s.pid)[1];
  let cpu0 = cpuSeconds(s.pid);
  let t0 = process.hrtime.bigint();
  await Promise.all(
    conns.map(async (k, ci) => {
      for (let i = 0; i < perClient; i++) await k.call(`{"id":"${ci}-${i}","method":"get_health"}\n`);
    }),
  );
  const concS = Number(process.hrtime.bigint() - t0) / 1e9;
  const concCpu = cpuSeconds(s.pid) - cpu0;
  const concSys = cpuTimes(s.pid)[1] - sys0;
  for (const k of conns) k.close();

  // The same load from a lean client (no promise or string handling per answer): the client process costs
  // less per request than either server, so the figure is the server's, not the load generator's.
  cpu0 = cpuSeconds(s.pid);
  const leanS = await leanConcurrent(s.path, clients, perClient);
  const leanCpu = cpuSeconds(s.pid) - cpu0;

  const c = await LineClient.connect(s.path);
  for (let i = 0; i < 300; i++) await c.call(`{"id":${i},"method":"${MIXED[i % 3]}"}\n`);
  cpu0 = cpuSeconds(s.pid);
  t0 = process.hrtime.bigint();
  for (let i = 0; i < sequential; i++) {
    const a = await c.call(`{"id":${i},"method":"${MIXED[i % 3]}"}\n`);
    if (!a.startsWith(`{"id":${i},"result":`)) throw new Error(`${s.name}: unexpected answer ${a}`);
  }
  const seqS = Number(process.hrtime.bigint() - t0) / 1e9;
  const seqCpu = cpuSeconds(s.pid) - cpu0;
  c.close();
  const n = clients * perClient;
  return {
    concurrent_req_s: Math.round(n / concS),
    concurrent_cpu_us: Math.round((concCpu / n) * 1e7) / 10,
    concurrent_sys_us: Math.round((concSys / n) * 1e7) / 10,
    lean_req_s: Math.round(n / leanS),
    lean_cpu_us: Math.round((leanCpu / n) * 1e7) / 10,
    sequential_s: Math.round(seqS * 1000) / 1000,
    sequential_cpu_us: Math.round((seqCpu / sequential) * 1e7) / 10,
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

function medianFigures(runs: Figures[]): Figures {
  const k = (f: keyof Figures) => median(runs.map((r) => r[f]));
  return {
    concurrent_req_s: k('concurrent_req_s'),
    concurrent_cpu_us: k('concurrent_cpu_us'),
    concurrent_sys_us: k('concurrent_sys_us'),
    lean_req_s: k('lean_req_s'),
    lean_cpu_us: k('lean_cpu_us'),
    sequential_s: k('sequential_s'),
    sequential_cpu_us: k('sequential_cpu_us'),
  };
}

const r2 = (x: number) => Math.round(x * 100) / 100;

async function main(): Promise<void> {
  const rounds = arg('rounds', 3);
  const clients = arg('clients', 32);
  const perClient = arg('per-client', 500);
  const sequential = arg('sequential', 10_000);
  const env = process.env.BENCH_SERVER_NODE_ARGS;
  const nodeArgs = env === undefined ? unitNodeFlags() : env.split(' ').filter(Boolean);
  if (process.env.BENCH_CPU_PROF) nodeArgs.push('--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`);
  const dir = mkdtempSync(join(tmpdir(), 'oas-socket-python-'));
  const node = await startNode(dir, nodeArgs);
  const py = await startPython(dir, baselinePath());
  const runs: Record<string, Figures[]> = { node: [], python: [] };
  try {
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? [node, py] : [py, node];
      for (const s of order) {
        const f = await measure(s, clients, perClient, sequential);
        runs[s.name]?.push(f);
        process.stderr.write(`round ${r + 1} ${s.name}: ${JSON.stringify(f)}\n`);
      }
    }
  } finally {
    await node.stop();
    await py.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const n = medianFigures(runs.node as Figures[]);
  const p = medianFigures(runs.python as Figures[]);
  const ratios = {
    // > 1: ours is better.
    concurrent_throughput: r2(n.concurrent_req_s / p.concurrent_req_s),
    concurrent_cpu: r2(p.concurrent_cpu_us / n.concurrent_cpu_us),
    lean_throughput: r2(n.lean_req_s / p.lean_req_s),
    lean_cpu: r2(p.lean_cpu_us / n.lean_cpu_us),
    sequential_wall: r2(p.sequential_s / n.sequential_s),
    sequential_cpu: r2(p.sequential_cpu_us / n.sequential_cpu_us),
  };
  const result = {
    benchmark: 'legacy socket per request, side by side with py-baseline',
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpu_model: cpus()[0]?.model ?? 'unknown',
    server_node_args: nodeArgs,
    rounds,
    clients,
    per_client: perClient,
    sequential,
    node_server: n,
    python_baseline: p,
    ratios_better_than_python: ratios,
    runs,
  };
  const outDir = join(REPO, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'socket-python.json'), `${JSON.stringify(result, null, 2)}\n`);
  const row = (what: string, a: number | string, b: number | string, ratio: number) =>
    `${what.padEnd(46)} ${String(a).padStart(10)} ${String(b).padStart(10)} ${`${ratio}×`.padStart(7)}`;
  process.stdout.write(
    [
      `legacy socket, median of ${rounds} alternating rounds; ours with: ${nodeArgs.join(' ') || '(no flags)'}`,
      `${''.padEnd(46)} ${'ours'.padStart(10)} ${'python'.padStart(10)} ${'better'.padStart(7)}`,
      row(
        `${clients} clients × ${perClient} get_health, req/s`,
        n.concurrent_req_s,
        p.concurrent_req_s,
        ratios.concurrent_throughput,
      ),
      row('  server CPU µs/request', n.concurrent_cpu_us, p.concurrent_cpu_us, ratios.concurrent_cpu),
      row(
        `${clients} clients × ${perClient}, lean client, req/s`,
        n.lean_req_s,
        p.lean_req_s,
        ratios.lean_throughput,
      ),
      row('  server CPU µs/request', n.lean_cpu_us, p.lean_cpu_us, ratios.lean_cpu),
      row(
        '    of it in the kernel (LineClient load)',
        n.concurrent_sys_us,
        p.concurrent_sys_us,
        r2(p.concurrent_sys_us / n.concurrent_sys_us),
      ),
      row(`${sequential} sequential mixed, wall s`, n.sequential_s, p.sequential_s, ratios.sequential_wall),
      row('  server CPU µs/request', n.sequential_cpu_us, p.sequential_cpu_us, ratios.sequential_cpu),
      `written to ${join('bench', 'results', 'socket-python.json')}`,
      '',
    ].join('\n'),
  );
}

if (process.argv[2] === '--server') {
  serve(process.argv[3] as string).catch((err: unknown) => {
    process.stderr.write(`bench server failed: ${String(err)}\n`);
    process.exit(1);
  });
} else {
  main().catch((err: unknown) => {
    process.stderr.write(`socket-python bench failed: ${String(err)}\n`);
    process.exit(1);
  });
}
