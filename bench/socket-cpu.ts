// The installed daemon's socket CPU per request beside py-baseline's, in one sandbox: what each server's
// process spends (utime + stime of /proc/PID/stat) per request, which moves far less than wall time with the
// other work on a shared machine. Loads come from bench/agent.ts's `sockload` (the same in-container client
// bench/versus.ts uses), alternating which server goes first:
//   - 32 clients × 1000 get_health, each waiting for its answer;
//   - 12,000 sequential mixed requests (get_health, get_status, ping in turn) on one connection, from
//     loadgen and again from node where loadgen was built (the CPU figure covers both);
// then the daemon alone, 5000 sequential requests per method (ping, get_health, get_status), to show what
// each costs. About two minutes. Prints a table and writes bench/results/socket-cpu.json.
//
//   PY_BASELINE=path/to/py-baseline.py node dist/bench/socket-cpu.js     (as root; the daemon must be built)
// Environment: PY_BASELINE (default: ../shared/bench/py-baseline.py next to the checkout), SOCKET_CPU_ROUNDS
// (2).
import { readFileSync } from 'node:fs';
import { Sandbox } from '../test/sandbox/harness.js';
import { mainPid, procStat } from '../test/sandbox/helpers-health.js';
import { baselinePath } from './baseline.js';
import { buildLoadgen, DAEMON_UNIT, log, printTable, round, runAgent, runMain, writeResult } from './lib.js';

const PY_SOCKET = '/run/py-baseline.sock';
const PY_SCRIPT = '/run/py-baseline.py';
const DAEMON_SOCKET = '/run/openauto/system.sock';
const CLK_TCK = 100; // USER_HZ

/** One method, `n` times, one after another on one connection (inside the container, as the app user). */
const METHOD_CLIENT = `
const net = require('node:net');
const [socket, method, n] = [process.argv[1], process.argv[2], Number(process.argv[3])];
const s = net.connect(socket);
let buf = '', i = 0;
s.on('connect', () => s.write('{"id":0,"method":"' + method + '"}\\n'));
s.on('data', (d) => {
  buf += d;
  for (let nl = buf.indexOf('\\n'); nl !== -1; nl = buf.indexOf('\\n')) {
    buf = buf.slice(nl + 1);
    if (++i >= n) { s.destroy(); return; }
    s.write('{"id":' + i + ',"method":"' + method + '"}\\n');
  }
});
`;

interface SockLoad {
  requests_sent: number;
  requests_per_s: number;
  sequential: { seconds: number };
}

async function main(): Promise<number> {
  const rounds = Number(process.env.SOCKET_CPU_ROUNDS ?? 2);
  const script = baselinePath();
  log('booting a sandbox...');
  buildLoadgen();
  const sb = await Sandbox.start({ name: 'bench-socket-cpu' });
  try {
    await sb.waitFor(async () => (await sb.unitState(DAEMON_UNIT)) === 'active', 30_000);
    await sb.writeFile(PY_SCRIPT, readFileSync(script));
    await runAgent(sb, 'pyboot', { script: PY_SCRIPT, socket: PY_SOCKET, n: 1, quota: '' });
    const pyUnit = (await sb.execOk(['sh', '-c', "systemctl list-units --plain --no-legend 'py-baseline-*'"]))
      .trim()
      .split(/\s+/)[0] as string;
    const servers = {
      python: { pid: await mainPid(sb, pyUnit), socket: PY_SOCKET },
      daemon: { pid: await mainPid(sb, DAEMON_UNIT), socket: DAEMON_SOCKET },
    };
    const cpuS = (pid: number) => {
      const f = procStat(sb, pid);
      return (Number(f[13]) + Number(f[14])) / CLK_TCK;
    };
    type Who = keyof typeof servers;
    const runs: Record<Who, { conc_req_s: number[]; conc_us: number[]; seq_s: number[]; seq_us: number[] }> =
      {
        python: { conc_req_s: [], conc_us: [], seq_s: [], seq_us: [] },
        daemon: { conc_req_s: [], conc_us: [], seq_s: [], seq_us: [] },
      };
    for (let r = 0; r < rounds * 2; r++) {
      const concurrent = r % 2 === 0;
      const order: Who[] = Math.floor(r / 2) % 2 === 0 ? ['python', 'daemon'] : ['daemon', 'python'];
      for (const who of order) {
        const s = servers[who];
        const c0 = cpuS(s.pid);
        // Every request sockload sent counts (its warm-up and first pings too): it says how many.
        const opts = concurrent
          ? { socket: s.socket, perClient: 1000, sequential: 1 }
          : { socket: s.socket, perClient: 1, sequential: 12_000 };
        const l = await runAgent<SockLoad>(sb, 'sockload', opts, { user: 'appuser', timeoutMs: 300_000 });
        const n = l.requests_sent;
        const us = ((cpuS(s.pid) - c0) / n) * 1e6;
        if (concurrent) {
          runs[who].conc_req_s.push(l.requests_per_s);
          runs[who].conc_us.push(round(us));
        } else {
          runs[who].seq_s.push(round(l.sequential.seconds, 3));
          runs[who].seq_us.push(round(us));
        }
        log(`${who} ${concurrent ? '32 clients' : 'sequential'}: ${round(us)} µs of CPU per request`);
      }
    }
    const perMethod: Record<string, number> = {};
    for (const m of ['ping', 'get_health', 'get_status']) {
      const c0 = cpuS(servers.daemon.pid);
      await sb.execOk(['node', '-e', METHOD_CLIENT, DAEMON_SOCKET, m, '5000'], {
        user: 'appuser',
        timeoutMs: 120_000,
      });
      perMethod[m] = round(((cpuS(servers.daemon.pid) - c0) / 5000) * 1e6);
    }
    const med = (xs: number[]) => {
      const s = [...xs].sort((a, b) => a - b);
      const m = s.length >> 1;
      return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
    };
    const m = (who: Who, k: keyof (typeof runs)['python']) => med(runs[who][k]);
    const ratio = (a: number, b: number) => `${round(a / b, 2)}×`;
    printTable(`socket CPU per request in one sandbox, median of ${rounds} alternating rounds`, [
      ['figure', 'python', 'daemon', 'daemon better by'],
      [
        '32 clients get_health, req/s',
        m('python', 'conc_req_s'),
        m('daemon', 'conc_req_s'),
        ratio(m('daemon', 'conc_req_s'), m('python', 'conc_req_s')),
      ],
      [
        '… server CPU µs/request',
        m('python', 'conc_us'),
        m('daemon', 'conc_us'),
        ratio(m('python', 'conc_us'), m('daemon', 'conc_us')),
      ],
      [
        '12000 sequential mixed, wall s',
        m('python', 'seq_s'),
        m('daemon', 'seq_s'),
        ratio(m('python', 'seq_s'), m('daemon', 'seq_s')),
      ],
      [
        '… server CPU µs/request',
        m('python', 'seq_us'),
        m('daemon', 'seq_us'),
        ratio(m('python', 'seq_us'), m('daemon', 'seq_us')),
      ],
      [
        'daemon alone, sequential: ping / get_health / get_status, CPU µs/request',
        '',
        Object.values(perMethod).join(' / '),
        '',
      ],
    ]);
    log(`wrote ${writeResult('socket-cpu', { rounds, runs, daemon_per_method_us: perMethod })}`);
    return 0;
  } finally {
    await sb.stop();
  }
}

runMain('socket-cpu', main);
