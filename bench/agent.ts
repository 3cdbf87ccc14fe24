// The benchmarks' client inside the sandbox: it runs next to the daemon (same bus, same socket), so what it
// measures is the daemon and the bus, not nsenter. The host starts it with
//   node /usr/src/openauto-system/dist/bench/agent.js MODE 'JSON options'
// (the source tree is bound read-only there, with its node_modules), reads progress on stderr and one JSON
// result line on stdout. Modes:
//   latency      GetHealth vs Peer.Ping on one connection; socket get_health sequential and N concurrent
//   mixed        N mixed requests (D-Bus GetHealth/GetStatus, socket get_health/get_status)
//   load         paced mixed clients for S seconds, with connection churn and subscribers (soak, chaos)
//   startup      N starts of the daemon: D-Bus activation end to end, and StartUnit → NameOwnerChanged
//   sockload     32 socket clients' throughput (loadgen), then 10,000 sequential mixed requests (loadgen and node)
//   seq          10,000 sequential mixed requests from loadgen pinned to one CPU (versus.ts pins the server too)
//   floor        the same sequential run against bench/floor-server.c (fixed answers, in C), free and on one CPU
//   pyboot       starts of the Python baseline as a transient unit
//   call         one ApplyConfig or RestartService over D-Bus or the socket: {ok, result} or {ok: false,
//                error (the D-Bus error name or socket:CODE), message}; never fails itself
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import dbus from 'dbus-next';
import { LineClient, SocketClosedError, SocketError } from './socket-client.js';

type Msg = InstanceType<typeof dbus.Message>;

const SOCKET = process.env.OPENAUTO_SOCKET ?? '/run/openauto/system.sock';
const NAME = 'org.openauto.System';
const PATH = '/org/openauto/System';
const IFACE = 'org.openauto.System1';
const SYSTEMD = 'org.freedesktop.systemd1';
const SD_PATH = '/org/freedesktop/systemd1';
const SD_MANAGER = 'org.freedesktop.systemd1.Manager';
const UNIT = 'openauto-system.service';

const wallMs = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const progress = (s: string) => process.stderr.write(`${s}\n`);

class TimeoutError extends Error {
  constructor(what: string, ms: number) {
    super(`${what}: no answer within ${ms} ms`);
    this.name = 'TimeoutError';
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TimeoutError(what, ms)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The name of an error as the benchmarks count it: the D-Bus error name, the socket's code, or a class. */
export function errorName(err: unknown): string {
  if (err instanceof dbus.DBusError) return err.type;
  if (err instanceof SocketError) return `socket:${err.code}`;
  if (err instanceof SocketClosedError) return 'socket:closed';
  if (err instanceof TimeoutError) return 'timeout';
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code) return `errno:${code}`;
  return err instanceof Error ? err.name : 'unknown';
}

/** One connection to the system bus; calls are bounded. */
class BusClient {
  private closed = false;
  private constructor(readonly bus: dbus.MessageBus) {
    bus.on('error', () => {
      this.closed = true;
    });
  }

  static async connect(): Promise<BusClient> {
    const c = new BusClient(dbus.systemBus());
    // The first call waits for Hello.
    await c.call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'GetId');
    return c;
  }

  get uniqueName(): string {
    return (this.bus as unknown as { name: string }).name;
  }

  async call(
    destination: string,
    path: string,
    iface: string,
    member: string,
    signature = '',
    body: unknown[] = [],
    timeoutMs = 30_000,
  ): Promise<Msg> {
    if (this.closed) throw new Error('bus connection closed');
    const msg = new dbus.Message({ destination, path, interface: iface, member, signature, body });
    const reply = await withTimeout(this.bus.call(msg), timeoutMs, `${iface}.${member}`);
    return reply as Msg;
  }

  addMatch(rule: string): Promise<Msg> {
    return this.call(
      'org.freedesktop.DBus',
      '/org/freedesktop/DBus',
      'org.freedesktop.DBus',
      'AddMatch',
      's',
      [rule],
    );
  }

  close(): void {
    this.closed = true;
    try {
      this.bus.disconnect();
    } catch {
      // already gone
    }
  }
}

const getHealth = (c: BusClient) => c.call(NAME, PATH, IFACE, 'GetHealth');
const getStatus = (c: BusClient) => c.call(NAME, PATH, IFACE, 'GetStatus');
const peerPing = (c: BusClient) => c.call(NAME, PATH, 'org.freedesktop.DBus.Peer', 'Ping');
// The bus daemon answering itself (its Peer.Ping is refused to non-root callers by the system bus policy).
const busGetId = (c: BusClient) =>
  c.call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'GetId');

/** Latencies in µs, and what they summarise to. */
function stats(us: number[]) {
  const s = Float64Array.from(us).sort();
  const q = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] ?? Number.NaN;
  const mean = s.reduce((a, b) => a + b, 0) / (s.length || 1);
  const r = (x: number) => Math.round(x * 10) / 10;
  return {
    n: s.length,
    min_us: r(s[0] ?? Number.NaN),
    median_us: r(q(0.5)),
    p99_us: r(q(0.99)),
    max_us: r(s[s.length - 1] ?? Number.NaN),
    mean_us: r(mean),
  };
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) * 1000;
}

// ---- latency -----------------------------------------------------------------------------------------

interface LatencyOpts {
  n: number;
  block: number;
  socketN: number;
  clients: number;
  perClient: number;
}

async function latency(o: LatencyOpts) {
  const c = await BusClient.connect();
  // Warm both paths (JIT on both sides, the bus's caches).
  for (let i = 0; i < 500; i++) {
    await getHealth(c);
    await peerPing(c);
  }
  // Interleaved blocks, so drift (another process waking up) hits both alike.
  const gh: number[] = [];
  const ping: number[] = [];
  const busFloor: number[] = [];
  const status: number[] = [];
  for (let done = 0; done < o.n; done += o.block) {
    for (let i = 0; i < o.block; i++) gh.push(await timed(() => getHealth(c)));
    for (let i = 0; i < o.block; i++) ping.push(await timed(() => peerPing(c)));
    for (let i = 0; i < o.block / 4; i++) busFloor.push(await timed(() => busGetId(c)));
    for (let i = 0; i < o.block / 4; i++) status.push(await timed(() => getStatus(c)));
  }
  c.close();
  progress(`D-Bus: ${gh.length} GetHealth, ${ping.length} Peer.Ping done`);

  const s = await LineClient.connect(SOCKET);
  for (let i = 0; i < 1000; i++) await s.call(`{"id":"w${i}","method":"get_health"}`);
  const seq: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < o.socketN; i++)
    seq.push(await timed(() => s.call(`{"id":${i},"method":"get_health"}`)));
  const seqS = (performance.now() - t0) / 1000;
  s.close();
  progress(`socket: ${o.socketN} sequential get_health done`);

  const conns = await Promise.all(Array.from({ length: o.clients }, () => LineClient.connect(SOCKET)));
  for (const k of conns) await k.call('{"id":"w","method":"get_health"}');
  const conc: number[] = [];
  const t1 = performance.now();
  await Promise.all(
    conns.map(async (k, ci) => {
      for (let i = 0; i < o.perClient; i++)
        conc.push(await timed(() => k.call(`{"id":"${ci}-${i}","method":"get_health"}`)));
    }),
  );
  const concS = (performance.now() - t1) / 1000;
  for (const k of conns) k.close();
  progress(`socket: ${o.clients} concurrent clients done`);

  return {
    dbus: {
      getHealth: stats(gh),
      peerPing: stats(ping),
      busDaemonGetId: stats(busFloor),
      getStatus: stats(status),
    },
    socket: {
      sequential: { ...stats(seq), seconds: seqS, requests_per_s: Math.round(o.socketN / seqS) },
      concurrent: {
        ...stats(conc),
        clients: o.clients,
        seconds: concS,
        requests_per_s: Math.round((o.clients * o.perClient) / concS),
      },
    },
  };
}

// ---- mixed and load ----------------------------------------------------------------------------------

type Kind = 'dbus:GetHealth' | 'dbus:GetStatus' | 'socket:get_health' | 'socket:get_status' | 'socket:ping';

class Tally {
  readonly ok: Record<string, number> = {};
  readonly errors: Record<string, Record<string, number>> = {};
  readonly lat: Record<string, number[]> = {};
  /** The first few error messages, for the report. */
  readonly examples: string[] = [];

  record(kind: string, us: number): void {
    this.ok[kind] = (this.ok[kind] ?? 0) + 1;
    const l = this.lat[kind] ?? [];
    this.lat[kind] = l;
    // Bounded: enough for a p99 of a long soak without growing without bound.
    if (l.length < 200_000) l.push(us);
  }

  fail(kind: string, err: unknown): void {
    const name = errorName(err);
    const e = this.errors[kind] ?? {};
    this.errors[kind] = e;
    e[name] = (e[name] ?? 0) + 1;
    if (this.examples.length < 10)
      this.examples.push(`${kind}: ${name}: ${err instanceof Error ? err.message : String(err)}`);
  }

  summary() {
    const kinds = new Set([...Object.keys(this.ok), ...Object.keys(this.errors)]);
    const out: Record<string, unknown> = {};
    for (const k of kinds)
      out[k] = { ok: this.ok[k] ?? 0, errors: this.errors[k] ?? {}, latency: stats(this.lat[k] ?? []) };
    const totalOk = Object.values(this.ok).reduce((a, b) => a + b, 0);
    const totalErr = Object.values(this.errors)
      .flatMap((e) => Object.values(e))
      .reduce((a, b) => a + b, 0);
    return { total_ok: totalOk, total_errors: totalErr, kinds: out, examples: this.examples };
  }
}

async function callKind(kind: Kind, bus: BusClient | undefined, sock: LineClient | undefined, id: number) {
  switch (kind) {
    case 'dbus:GetHealth':
      return getHealth(bus as BusClient);
    case 'dbus:GetStatus':
      return getStatus(bus as BusClient);
    case 'socket:get_health':
      return (sock as LineClient).request('get_health', undefined, id);
    case 'socket:get_status':
      return (sock as LineClient).request('get_status', undefined, id);
    case 'socket:ping':
      return (sock as LineClient).request('ping', undefined, id);
  }
}

interface MixedOpts {
  n: number;
  concurrency: number;
}

async function mixed(o: MixedOpts) {
  const tally = new Tally();
  const kinds: Kind[] = ['dbus:GetHealth', 'socket:get_health', 'dbus:GetStatus', 'socket:get_status'];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: o.concurrency }, async () => {
      const bus = await BusClient.connect();
      const sock = await LineClient.connect(SOCKET);
      for (let i = next++; i < o.n; i = next++) {
        const kind = kinds[i % kinds.length] as Kind;
        const s = performance.now();
        try {
          await callKind(kind, bus, sock, i);
          tally.record(kind, (performance.now() - s) * 1000);
        } catch (err) {
          tally.fail(kind, err);
        }
      }
      bus.close();
      sock.close();
    }),
  );
  return { seconds: (performance.now() - t0) / 1000, ...tally.summary() };
}

interface LoadOpts {
  seconds: number;
  dbusWorkers: number;
  socketWorkers: number;
  /** Pause between two requests of one worker. */
  paceMs: number;
  /** Each worker closes its connection and opens a new one after this many requests. */
  churnEvery: number;
}

/** A worker that keeps one connection (reopened on churn or loss) and sends paced requests until stop. */
async function loadWorker(
  transport: 'dbus' | 'socket',
  o: LoadOpts,
  tally: Tally,
  stop: () => boolean,
  counters: { reconnects: number },
): Promise<void> {
  const kinds: Kind[] =
    transport === 'dbus'
      ? ['dbus:GetHealth', 'dbus:GetHealth', 'dbus:GetStatus']
      : ['socket:get_health', 'socket:get_health', 'socket:get_status', 'socket:ping'];
  let bus: BusClient | undefined;
  let sock: LineClient | undefined;
  let sinceConnect = 0;
  let id = 0;
  while (!stop()) {
    try {
      if (transport === 'dbus' && !bus) {
        bus = await BusClient.connect();
        sinceConnect = 0;
      }
      if (transport === 'socket' && (!sock || sock.isClosed)) {
        sock = await LineClient.connect(SOCKET);
        sinceConnect = 0;
      }
    } catch (err) {
      tally.fail(`${transport}:connect`, err);
      await sleep(200);
      continue;
    }
    const kind = kinds[id % kinds.length] as Kind;
    const s = performance.now();
    try {
      await callKind(kind, bus, sock, id);
      tally.record(kind, (performance.now() - s) * 1000);
    } catch (err) {
      tally.fail(kind, err);
      if (err instanceof SocketClosedError) await sleep(100);
    }
    id++;
    if (++sinceConnect >= o.churnEvery) {
      bus?.close();
      sock?.close();
      bus = undefined;
      sock = undefined;
      counters.reconnects++;
    }
    await sleep(o.paceMs);
  }
  bus?.close();
  sock?.close();
}

/** Counts HealthChanged signals on one D-Bus connection and health_changed events on one socket client. */
async function subscribers(stop: () => boolean, tally: Tally) {
  const counts = { dbus_signals: 0, socket_events: 0, socket_resubscribes: 0 };
  const bus = await BusClient.connect();
  bus.bus.on('message', (m: Msg) => {
    if (m.type === dbus.MessageType.SIGNAL && m.member === 'HealthChanged') counts.dbus_signals++;
  });
  await bus.addMatch(`type='signal',interface='${IFACE}',member='HealthChanged',path='${PATH}'`);
  const socketLoop = (async () => {
    while (!stop()) {
      let c: LineClient;
      try {
        c = await LineClient.connect(SOCKET);
        c.onEvent = () => counts.socket_events++;
        await c.request('subscribe');
        counts.socket_resubscribes++;
      } catch (err) {
        tally.fail('socket:subscribe', err);
        await sleep(200);
        continue;
      }
      while (!stop() && !c.isClosed) await sleep(100);
      c.close();
    }
  })();
  return async () => {
    await socketLoop;
    bus.close();
    return counts;
  };
}

async function load(o: LoadOpts) {
  const tally = new Tally();
  const deadline = performance.now() + o.seconds * 1000;
  const stop = () => performance.now() >= deadline;
  const counters = { reconnects: 0 };
  const endSubs = await subscribers(stop, tally);
  const t0 = performance.now();
  let beat = 0;
  const heartbeat = setInterval(() => {
    beat++;
    const s = tally.summary();
    progress(`load: ${beat * 10} s, ${s.total_ok} answers, ${s.total_errors} errors`);
  }, 10_000);
  await Promise.all([
    ...Array.from({ length: o.dbusWorkers }, () => loadWorker('dbus', o, tally, stop, counters)),
    ...Array.from({ length: o.socketWorkers }, () => loadWorker('socket', o, tally, stop, counters)),
  ]);
  clearInterval(heartbeat);
  const subs = await endSubs();
  return {
    seconds: (performance.now() - t0) / 1000,
    reconnects: counters.reconnects,
    ...subs,
    ...tally.summary(),
  };
}

// ---- startup -----------------------------------------------------------------------------------------

interface StartupOpts {
  n: number;
}

/** Unit properties of the daemon's unit (timestamps in wall-clock µs, as numbers). */
async function unitInfo(c: BusClient, unitPath: string) {
  const get = async (iface: string, prop: string) => {
    const r = await c.call(SYSTEMD, unitPath, 'org.freedesktop.DBus.Properties', 'Get', 'ss', [iface, prop]);
    return Number((r.body[0] as { value: unknown }).value);
  };
  return {
    mainPid: await get('org.freedesktop.systemd1.Service', 'MainPID'),
    execMainStartUs: await get('org.freedesktop.systemd1.Service', 'ExecMainStartTimestamp'),
    activeEnterUs: await get('org.freedesktop.systemd1.Unit', 'ActiveEnterTimestamp'),
  };
}

async function startup(o: StartupOpts) {
  const c = await BusClient.connect();
  // NameOwnerChanged of our name: when it is taken (t, ms wall clock), and when it is dropped.
  const owned: number[] = [];
  const dropped: number[] = [];
  const jobs = new Map<string, (result: string) => void>();
  const jobResults = new Map<string, string>();
  c.bus.on('message', (m: Msg) => {
    if (m.type !== dbus.MessageType.SIGNAL) return;
    if (m.member === 'NameOwnerChanged' && m.body[0] === NAME) {
      if (m.body[2] !== '') owned.push(wallMs());
      else dropped.push(wallMs());
    }
    if (m.member === 'JobRemoved' && m.interface === SD_MANAGER) {
      const job = String(m.body[1]);
      const r = String(m.body[3]);
      const w = jobs.get(job);
      if (w) w(r);
      else jobResults.set(job, r);
    }
  });
  await c.addMatch(
    `type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='${NAME}'`,
  );
  await c.addMatch(`type='signal',sender='${SYSTEMD}',interface='${SD_MANAGER}',member='JobRemoved'`);
  await c.call(SYSTEMD, SD_PATH, SD_MANAGER, 'Subscribe');
  const unitPath = String((await c.call(SYSTEMD, SD_PATH, SD_MANAGER, 'LoadUnit', 's', [UNIT])).body[0]);

  const job = async (method: string): Promise<string> => {
    const path = String(
      (await c.call(SYSTEMD, SD_PATH, SD_MANAGER, method, 'ss', [UNIT, 'replace'])).body[0],
    );
    const early = jobResults.get(path);
    if (early !== undefined) return early;
    return withTimeout(
      new Promise<string>((resolve) => jobs.set(path, resolve)),
      30_000,
      `${method} job`,
    ).finally(() => jobs.delete(path));
  };
  const hasOwner = async () =>
    (
      await c.call(
        'org.freedesktop.DBus',
        '/org/freedesktop/DBus',
        'org.freedesktop.DBus',
        'NameHasOwner',
        's',
        [NAME],
      )
    ).body[0] === true;

  const runs: Record<string, unknown>[] = [];
  for (let i = 0; i < o.n * 2; i++) {
    const mode = i % 2 === 0 ? 'activation' : 'start';
    const stopped = await job('StopUnit');
    if (stopped !== 'done') throw new Error(`StopUnit: ${stopped}`);
    for (let k = 0; k < 100 && (await hasOwner()); k++) await sleep(10);
    // Let the exit settle (journal, cgroup), with jitter.
    await sleep(300 + Math.random() * 200);
    const before = owned.length;
    const t0 = wallMs();
    let answeredMs = Number.NaN;
    let jobMs = Number.NaN;
    let healthAllActive: boolean | undefined;
    if (mode === 'activation') {
      const reply = await getHealth(c);
      answeredMs = wallMs() - t0;
      // The first answer must already be the real one (the name is claimed after the first health check).
      healthAllActive = Object.values(reply.body[0] as Record<string, string>).every((v) => v === 'active');
    } else {
      const r = await job('StartUnit');
      jobMs = wallMs() - t0;
      if (r !== 'done') throw new Error(`StartUnit: ${r}`);
    }
    for (let k = 0; k < 200 && owned.length === before; k++) await sleep(5);
    const ownedAt = owned[before] ?? Number.NaN;
    const info = await unitInfo(c, unitPath);
    const cpuMs = onCpuMs(info.mainPid);
    runs.push({
      mode,
      t0,
      answeredMs,
      jobMs,
      nameOwnedMs: ownedAt - t0,
      execToNameMs: ownedAt - info.execMainStartUs / 1000,
      execToActiveMs: (info.activeEnterUs - info.execMainStartUs) / 1000,
      callToExecMs: info.execMainStartUs / 1000 - t0,
      execMainStartUs: info.execMainStartUs,
      mainPid: info.mainPid,
      healthAllActive,
      cpuMs,
    });
    progress(
      `start ${i + 1}/${o.n * 2} (${mode}): exec → name ${(ownedAt - info.execMainStartUs / 1000).toFixed(1)} ms, ${mode === 'activation' ? `call → answer ${answeredMs.toFixed(1)}` : `StartUnit → name ${(ownedAt - t0).toFixed(1)}`} ms`,
    );
  }
  // The Node runtime's own floor: exec of `node -e 0` (no modules).
  const { execFileSync } = await import('node:child_process');
  const nodeFloor: number[] = [];
  for (let i = 0; i < 10; i++) {
    const t = performance.now();
    execFileSync(process.execPath, ['-e', '0']);
    nodeFloor.push(performance.now() - t);
  }
  c.close();
  return { runs, nodeFloorMs: nodeFloor };
}

// ---- versus: the Python baseline side by side ----------------------------------------------------------

interface SockLoadOpts {
  socket: string;
  clients: number;
  perClient: number;
  sequential: number;
}

/** bench/loadgen.c, built next to this file by lib.ts's buildLoadgen(); undefined where it was not built. */
function loadgenPath(): string | undefined {
  const path = fileURLToPath(new URL('./loadgen', import.meta.url));
  return existsSync(path) ? path : undefined;
}

/** Throughput of `clients` connections each sending get_health one after another (from loadgen, a small C
 * client, when built: node's streams would cost the client as much as the server), then the wall time of
 * `sequential` mixed requests (get_health, get_status, ping in turn) on one connection. */
async function sockLoad(o: SockLoadOpts) {
  const conns = await Promise.all(Array.from({ length: o.clients }, () => LineClient.connect(o.socket)));
  for (const k of conns) for (let i = 0; i < 20; i++) await k.call(`{"id":"w${i}","method":"get_status"}`);
  const loadgen = loadgenPath();
  let concS: number;
  let openS: number | undefined;
  if (loadgen) {
    for (const k of conns) k.close();
    const r = await runLoadgen(loadgen, o.socket, o.clients, o.perClient, 'get_health');
    concS = r.seconds;
    openS = r.open_seconds;
  } else {
    const t0 = performance.now();
    await Promise.all(
      conns.map(async (k, ci) => {
        for (let i = 0; i < o.perClient; i++) await k.call(`{"id":"${ci}-${i}","method":"get_health"}`);
      }),
    );
    concS = (performance.now() - t0) / 1000;
    for (const k of conns) k.close();
  }
  // The sequential run: from loadgen too where it was built (the node client's own cost per round trip is
  // the same for both servers and dilutes the ratio); the node client's figure is kept beside it.
  const s = await LineClient.connect(o.socket);
  const methods = ['get_health', 'get_status', 'ping'];
  let bytes = 0;
  const t1 = performance.now();
  for (let i = 0; i < o.sequential; i++)
    bytes += (await s.call(`{"id":${i},"method":"${methods[i % 3]}"}`)).length;
  const nodeSeqS = (performance.now() - t1) / 1000;
  s.close();
  let seqS = nodeSeqS;
  if (loadgen) {
    const r = await runLoadgen(loadgen, o.socket, 1, o.sequential, 'mixed');
    seqS = r.seconds;
  }
  // Every request this run sent (warm-up, loadgen's first pings, both sequential runs): socket-cpu.ts divides
  // the server's CPU time by it.
  const requestsSent =
    o.clients * 20 + o.clients * o.perClient + o.sequential + (loadgen ? o.clients + 1 + o.sequential : 0);
  return {
    requests_sent: requestsSent,
    concurrent: {
      clients: o.clients,
      requests: o.clients * o.perClient,
      seconds: concS,
      client: loadgen ? 'loadgen (C)' : 'node',
      // loadgen: the connections opened and each answered one ping, before the clock starts.
      open_seconds: openS,
    },
    requests_per_s: Math.round((o.clients * o.perClient) / concS),
    sequential: {
      requests: o.sequential,
      seconds: seqS,
      client: loadgen ? 'loadgen (C)' : 'node',
      node_client_seconds: nodeSeqS,
      mean_answer_bytes: Math.round(bytes / o.sequential),
    },
  };
}

/** `sequential` mixed requests on one connection from loadgen, which runs on CPU `cpu` (taskset): versus.ts
 * puts the server's main thread there too, so a round trip has no wake-up of another CPU in it. */
async function sequentialOnCpu(o: { socket: string; sequential: number; cpu: number }) {
  const loadgen = loadgenPath();
  if (!loadgen) throw new Error('the pinned sequential run needs bench/loadgen.c built');
  await runLoadgen(loadgen, o.socket, 1, 300, 'mixed', o.cpu);
  const r = await runLoadgen(loadgen, o.socket, 1, o.sequential, 'mixed', o.cpu);
  return { seconds: r.seconds, requests: o.sequential, cpu: o.cpu };
}

/**
 * The floor (bench/floor-server.c, a C server answering fixed bytes) under the same sequential run, `rounds`
 * times placed freely, then `rounds` times with the server and loadgen on CPU `cpu`: medians. What a round
 * trip to it costs no server can remove.
 */
async function floorSequential(o: { sequential: number; cpu: number; rounds: number }) {
  const loadgen = loadgenPath();
  const floor = fileURLToPath(new URL('./floor-server', import.meta.url));
  if (!loadgen || !existsSync(floor))
    throw new Error('the floor needs bench/loadgen.c and bench/floor-server.c built');
  const { spawn, execFileSync } = await import('node:child_process');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(`${tmpdir()}/floor-`);
  const socket = `${dir}/floor.sock`;
  const server = spawn(floor, [socket], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.once('exit', (code) => reject(new Error(`floor-server exited (${code})`)));
      server.stdout.once('data', () => resolve());
    });
    const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] as number;
    const runs = async (cpu?: number) => {
      await runLoadgen(loadgen, socket, 1, 300, 'mixed', cpu);
      const t: number[] = [];
      for (let i = 0; i < o.rounds; i++)
        t.push((await runLoadgen(loadgen, socket, 1, o.sequential, 'mixed', cpu)).seconds);
      return t;
    };
    const free = await runs();
    execFileSync('taskset', ['-pc', String(o.cpu), String(server.pid)], { stdio: 'ignore' });
    const pinned = await runs(o.cpu);
    return { free: median(free), pinned: median(pinned), runs: { free, pinned }, cpu: o.cpu };
  } finally {
    server.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs bench/loadgen.c (on CPU `cpu` when given); fails on any error answer or a missing one. */
async function runLoadgen(
  loadgen: string,
  socket: string,
  clients: number,
  perClient: number,
  method: string,
  cpu?: number,
) {
  const { execFileSync } = await import('node:child_process');
  const args = [loadgen, socket, String(clients), String(perClient), method];
  const [file, ...argv] = cpu === undefined ? args : ['taskset', '-c', String(cpu), ...args];
  const out = execFileSync(file as string, argv, {
    encoding: 'utf8',
    timeout: 120_000,
  });
  const r = JSON.parse(out) as {
    open_seconds: number;
    seconds: number;
    answers: number;
    errors: number;
    bytes: number;
  };
  if (r.errors > 0 || r.answers !== clients * perClient)
    throw new Error(`loadgen: ${r.answers} answers, ${r.errors} of them errors`);
  return r;
}

interface PyBootOpts {
  script: string;
  socket: string;
  n: number;
  /** systemd's CPUQuota= for the transient unit, e.g. "25%"; empty: none. */
  quota: string;
}

/** Starts the Python baseline as a transient unit n times: exec (systemd's ExecMainStartTimestamp) → the
 * first get_health answered on its socket (polled every millisecond). */
async function pyBoot(o: PyBootOpts) {
  const { execFileSync } = await import('node:child_process');
  const c = await BusClient.connect();
  const ms: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < o.n; i++) {
    const unit = `py-baseline-${process.pid}-${i}.service`;
    const props = ['--collect', '--quiet', `--unit=${unit}`];
    if (o.quota) props.push('-p', `CPUQuota=${o.quota}`);
    execFileSync('systemd-run', [...props, '/usr/bin/python3', o.script, o.socket]);
    let answeredAt = Number.NaN;
    for (let k = 0; k < 10_000 && Number.isNaN(answeredAt); k++) {
      try {
        const s = await LineClient.connect(o.socket);
        try {
          await withTimeout(s.request('get_health'), 5000, 'get_health');
          answeredAt = wallMs();
        } finally {
          s.close();
        }
      } catch {
        await sleep(1);
      }
    }
    const unitPath = String((await c.call(SYSTEMD, SD_PATH, SD_MANAGER, 'LoadUnit', 's', [unit])).body[0]);
    const info = await unitInfo(c, unitPath);
    ms.push(answeredAt - info.execMainStartUs / 1000);
    cpu.push(onCpuMs(info.mainPid));
    progress(
      `python start ${i + 1}/${o.n}${o.quota ? ` (CPUQuota=${o.quota})` : ''}: ${ms.at(-1)?.toFixed(1)} ms`,
    );
    if (i < o.n - 1) {
      execFileSync('systemctl', ['stop', unit]);
      await sleep(200);
    } else {
      progress(`python baseline left running as ${unit}`);
    }
  }
  c.close();
  return { ms, cpuMs: cpu };
}

/** CPU time a process has run so far (the kernel's schedstat, ns precision), in ms; NaN once it is gone.
 * Read just after it answered, it is its start-up's CPU cost whatever else the machine was doing. */
function onCpuMs(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return Number.NaN;
  }
}

// ---- one operation ----------------------------------------------------------------------------------

interface CallOpts {
  transport: 'dbus' | 'socket';
  method: 'ApplyConfig' | 'RestartService';
  arg: string;
  timeoutMs?: number;
}

async function oneCall(o: CallOpts) {
  const timeoutMs = o.timeoutMs ?? 60_000;
  const t0 = performance.now();
  try {
    let result: unknown;
    if (o.transport === 'dbus') {
      const c = await BusClient.connect();
      try {
        const reply = await c.call(NAME, PATH, IFACE, o.method, 's', [o.arg], timeoutMs);
        result = reply.body;
      } finally {
        c.close();
      }
    } else {
      const c = await LineClient.connect(SOCKET);
      try {
        const [method, params] =
          o.method === 'ApplyConfig'
            ? ['apply_config', { section: o.arg }]
            : ['restart_service', { name: o.arg }];
        result = await withTimeout(c.request(method, params), timeoutMs, method);
      } finally {
        c.close();
      }
    }
    return { ok: true, result, ms: performance.now() - t0 };
  } catch (err) {
    return {
      ok: false,
      error: errorName(err),
      message: err instanceof Error ? err.message : String(err),
      ms: performance.now() - t0,
    };
  }
}

// ---- main --------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const [mode, json] = process.argv.slice(2);
  const opts = JSON.parse(json ?? '{}');
  let result: unknown;
  switch (mode) {
    case 'latency':
      result = await latency({ n: 5000, block: 100, socketN: 20_000, clients: 64, perClient: 500, ...opts });
      break;
    case 'mixed':
      result = await mixed({ n: 10_000, concurrency: 4, ...opts });
      break;
    case 'load':
      result = await load({
        seconds: 60,
        dbusWorkers: 2,
        socketWorkers: 2,
        paceMs: 20,
        churnEvery: 500,
        ...opts,
      });
      break;
    case 'startup':
      result = await startup({ n: 20, ...opts });
      break;
    case 'call':
      result = await oneCall(opts);
      break;
    case 'sockload':
      result = await sockLoad({ socket: SOCKET, clients: 32, perClient: 500, sequential: 10_000, ...opts });
      break;
    case 'seq':
      result = await sequentialOnCpu({ socket: SOCKET, sequential: 10_000, cpu: 0, ...opts });
      break;
    case 'floor':
      result = await floorSequential({ sequential: 10_000, cpu: 0, rounds: 3, ...opts });
      break;
    case 'pyboot':
      result = await pyBoot(opts);
      break;
    default:
      throw new Error(`unknown mode ${mode}`);
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`agent: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
