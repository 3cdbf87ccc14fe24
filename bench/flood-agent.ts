// A flooding caller and a latency probe, run inside the sandbox next to the daemon (the attack test and
// bench/flood.ts start several as separate processes, as the users they pretend to be):
//   node /usr/src/openauto-system/dist/bench/flood-agent.js flood '{"method":"RestartService","rate":150,"seconds":20}'
//   node /usr/src/openauto-system/dist/bench/flood-agent.js probe '{"intervalMs":50,"seconds":20}'
// flood: calls METHOD at RATE per second for SECONDS without waiting for answers (open loop, as an attacker
// would), each call bounded at 30 s; prints {sent, answered, errors: {NAME: n}, unanswered}.
// probe: GetHealth every INTERVAL ms, one at a time, each bounded at 10 s, each followed by the bus daemon's
// own GetId (the same trip without our daemon: what the load does to the bus and the machine alone); prints
// {latenciesMs, busLatenciesMs, failures}.
// The last line on stdout is the JSON result; nothing else is printed there.
import dbus from 'dbus-next';

type Msg = InstanceType<typeof dbus.Message>;

const NAME = 'org.openauto.System';
const PATH = '/org/openauto/System';
const IFACE = 'org.openauto.System1';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function call(bus: dbus.MessageBus, member: string, signature = '', body: unknown[] = []): Promise<Msg> {
  const msg = new dbus.Message({ destination: NAME, path: PATH, interface: IFACE, member, signature, body });
  return bus.call(msg) as Promise<Msg>;
}

function bounded<T>(p: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

async function flood(bus: dbus.MessageBus, o: { method: string; rate: number; seconds: number }) {
  const errors: Record<string, number> = {};
  let sent = 0;
  let answered = 0;
  let unanswered = 0;
  const pending = new Set<Promise<unknown>>();
  const t0 = performance.now();
  const end = t0 + o.seconds * 1000;
  const args: [string, unknown[]] = o.method === 'RestartService' ? ['s', ['hostapd']] : ['', []];
  while (performance.now() < end) {
    // Paced by the clock, not by answers: the number due by now, sent at once.
    const due = Math.floor(((performance.now() - t0) / 1000) * o.rate);
    while (sent < due) {
      sent++;
      const p = bounded(call(bus, o.method, ...args), 30_000).then(
        (r) => {
          if (r === 'timeout') unanswered++;
          else answered++;
        },
        (err: unknown) => {
          answered++;
          const name = err instanceof dbus.DBusError ? err.type : 'other';
          errors[name] = (errors[name] ?? 0) + 1;
        },
      );
      pending.add(p);
      void p.finally(() => pending.delete(p));
    }
    await sleep(5);
  }
  await Promise.all(pending);
  return { method: o.method, rate: o.rate, seconds: o.seconds, sent, answered, unanswered, errors };
}

async function probe(bus: dbus.MessageBus, o: { intervalMs: number; seconds: number }) {
  const latenciesMs: number[] = [];
  const busLatenciesMs: number[] = [];
  let failures = 0;
  const end = performance.now() + o.seconds * 1000;
  while (performance.now() < end) {
    const t = performance.now();
    try {
      const r = await bounded(call(bus, 'GetHealth'), 10_000);
      if (r === 'timeout') failures++;
      else latenciesMs.push(performance.now() - t);
    } catch {
      failures++;
    }
    const tb = performance.now();
    const getId = new dbus.Message({
      destination: 'org.freedesktop.DBus',
      path: '/org/freedesktop/DBus',
      interface: 'org.freedesktop.DBus',
      member: 'GetId',
    });
    if ((await bounded(bus.call(getId), 10_000).catch(() => 'timeout')) !== 'timeout')
      busLatenciesMs.push(performance.now() - tb);
    const left = o.intervalMs - (performance.now() - t);
    if (left > 0) await sleep(left);
  }
  return { latenciesMs, busLatenciesMs, failures };
}

async function main(): Promise<void> {
  const [mode, json] = process.argv.slice(2);
  const opts = JSON.parse(json ?? '{}');
  const bus = dbus.systemBus();
  bus.on('error', () => {});
  let result: unknown;
  if (mode === 'flood') result = await flood(bus, opts);
  else if (mode === 'probe') result = await probe(bus, opts);
  else throw new Error(`unknown mode ${mode}`);
  process.stdout.write(`${JSON.stringify(result)}\n`);
  bus.disconnect();
  process.exit(0);
}

main().catch((err: unknown) => {
  process.stderr.write(`flood-agent: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
