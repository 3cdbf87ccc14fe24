// Latency of the real daemon in a sandbox, measured by a client inside the container (agent.ts, as the app
// user): D-Bus GetHealth next to org.freedesktop.DBus.Peer.Ping answered by the same daemon (the same bus
// hops and the same dbus-next stack on both ends, without our handler: the floor), in interleaved blocks on
// one connection; the bus daemon answering GetId itself for reference; the legacy socket's get_health
// sequentially on one connection and with 64 concurrent clients (the socket's limit).
// Prints a table and writes bench/results/latency.json.
//
//   node dist/bench/latency.js        (as root; the daemon must be built)
// Environment: LATENCY_CALLS (D-Bus calls per method, default 5000), LATENCY_SOCKET_CALLS (20000),
// LATENCY_CLIENTS (64), LATENCY_PER_CLIENT (500); BENCH_QUICK=1 shortens all of them.
import { Sandbox, sandboxUnavailable } from '../test/sandbox/harness.js';
import { allActiveWithin, log, printTable, runAgent, runMain, setting, sleep, writeResult } from './lib.js';

interface Stats {
  n: number;
  min_us: number;
  median_us: number;
  p99_us: number;
  max_us: number;
  mean_us: number;
}
interface LatencyResult {
  dbus: { getHealth: Stats; peerPing: Stats; busDaemonGetId: Stats; getStatus: Stats };
  socket: {
    sequential: Stats & { seconds: number; requests_per_s: number };
    concurrent: Stats & { clients: number; seconds: number; requests_per_s: number };
  };
}

async function main(): Promise<number> {
  const why = sandboxUnavailable();
  if (why) {
    log(`bench/latency: ${why}`);
    return 2;
  }
  const opts = {
    n: setting('LATENCY_CALLS', 5000, 1000),
    block: 100,
    socketN: setting('LATENCY_SOCKET_CALLS', 20_000, 2000),
    clients: setting('LATENCY_CLIENTS', 64, 64),
    perClient: setting('LATENCY_PER_CLIENT', 500, 100),
  };
  log('booting a sandbox (daemon with its default timings)...');
  const sb = await Sandbox.start({ name: 'bench-latency' });
  try {
    await allActiveWithin(sb, 30_000);
    await sleep(1000);
    const r = await runAgent<LatencyResult>(sb, 'latency', opts, { user: 'appuser', timeoutMs: 600_000 });
    const d = r.dbus;
    const ratioMedian = d.getHealth.median_us / d.peerPing.median_us;
    const ratioP99 = d.getHealth.p99_us / d.peerPing.p99_us;
    const row = (label: string, s: Stats, extra = '') => [
      label,
      s.n,
      s.median_us,
      s.p99_us,
      s.mean_us,
      s.min_us,
      s.max_us,
      extra,
    ];
    printTable('Round trips to the real daemon, from a client inside the sandbox (µs)', [
      ['', 'n', 'median', 'p99', 'mean', 'min', 'max', ''],
      row('D-Bus GetHealth', d.getHealth),
      row('D-Bus Peer.Ping (same daemon: the floor)', d.peerPing),
      row('D-Bus GetStatus', d.getStatus),
      row('bus daemon GetId (bus alone)', d.busDaemonGetId),
      row(
        'socket get_health, sequential',
        r.socket.sequential,
        `${r.socket.sequential.requests_per_s} req/s`,
      ),
      row(
        `socket get_health, ${r.socket.concurrent.clients} clients`,
        r.socket.concurrent,
        `${r.socket.concurrent.requests_per_s} req/s`,
      ),
    ]);
    console.log(
      `\nGetHealth / Peer.Ping: median ${ratioMedian.toFixed(2)}×, p99 ${ratioP99.toFixed(2)}× (target: within 1.5×)`,
    );
    const file = writeResult('latency', {
      settings: opts,
      daemonSettings: 'defaults',
      ratio: { median: ratioMedian, p99: ratioP99, target: 1.5 },
      ...r,
    });
    console.log(`wrote ${file}`);
    return 0;
  } finally {
    await sb.stop();
  }
}

runMain('latency', main);
