// Unprivileged callers flooding the real daemon in a sandbox (the attack of test/sandbox/attack-flood.test.ts,
// at a fixed rate): 4 processes of the user `stranger`, 2 calling RestartService at 150/s (each call is an
// authorization the daemon must refuse) and 2 calling GetStatus at 50/s, for 20 s. Measured next to a quiet
// phase of the same run: the app user's GetHealth (one call every 20 ms, from inside the container), the time
// from SIGKILL of hostapd's main process to systemd's ActiveEnterTimestamp of the unit restarted by the
// daemon, and the warnings or errors the daemon logged (a failed monitor call shows there).
// Targets: GetHealth p99 under the flood ≤ 2 × quiet p99 + 20 ms, hostapd active again within 2 s, no
// failed monitor call. Prints a table and writes bench/results/flood.json; exit status 1 when a target is
// missed.
//
//   node dist/bench/flood.js        (as root; the daemon must be built)
// Environment: FLOOD_SECONDS (20), FLOOD_QUIET_SECONDS (10), FLOOD_RESTART_RATE (150 per process),
// FLOOD_STATUS_RATE (50 per process); BENCH_QUICK=1 runs 8 s and 5 s.
import { Sandbox, sandboxUnavailable } from '../test/sandbox/harness.js';
import {
  daemonJournal,
  hostPidOf,
  mainPid,
  schedCpuNs,
  unitTimestampUs,
  waitAllActive,
} from '../test/sandbox/helpers-health.js';
import { log, printTable, round, runMain, setting, sleep, summary, writeResult } from './lib.js';

const AGENT = '/usr/src/openauto-system/dist/bench/flood-agent.js';
const PROBE_INTERVAL_MS = 20;

interface FloodResult {
  method: string;
  sent: number;
  answered: number;
  unanswered: number;
  errors: Record<string, number>;
}
interface ProbeResult {
  latenciesMs: number[];
  busLatenciesMs: number[];
  failures: number;
}

async function agent<T>(sb: Sandbox, user: string, mode: string, opts: object, seconds: number): Promise<T> {
  const r = await sb.exec(['/usr/bin/node', AGENT, mode, JSON.stringify(opts)], {
    user,
    timeoutMs: (seconds + 45) * 1000,
  });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  if (r.code !== 0 || !last.startsWith('{'))
    throw new Error(`flood-agent ${mode} failed (exit ${r.code ?? r.signal}): ${r.stderr}`);
  return JSON.parse(last) as T;
}

/** SIGKILLs hostapd's main process from the host; resolves with ms until systemd saw the unit active again. */
async function killAndTime(sb: Sandbox): Promise<number> {
  const hostPid = hostPidOf(sb, await mainPid(sb, 'hostapd.service'));
  const before = await unitTimestampUs(sb, 'hostapd.service', 'ActiveEnterTimestamp');
  const t0 = Date.now();
  process.kill(hostPid, 'SIGKILL');
  const at = await sb.waitFor(
    async () => {
      const t = await unitTimestampUs(sb, 'hostapd.service', 'ActiveEnterTimestamp');
      return t > before ? t / 1000 : 0;
    },
    30_000,
    50,
  );
  return at - t0;
}

async function main(): Promise<number> {
  const why = sandboxUnavailable();
  if (why) {
    log(`bench/flood: ${why}`);
    return 2;
  }
  const seconds = setting('FLOOD_SECONDS', 20, 8);
  const quietSeconds = setting('FLOOD_QUIET_SECONDS', 10, 5);
  const restartRate = setting('FLOOD_RESTART_RATE', 150, 150);
  const statusRate = setting('FLOOD_STATUS_RATE', 50, 50);
  log('booting a sandbox (daemon with its default timings)...');
  const sb = await Sandbox.start({ name: 'bench-flood' });
  try {
    await waitAllActive(sb, 30_000);
    await sleep(1000);

    log(`quiet: GetHealth every ${PROBE_INTERVAL_MS} ms for ${quietSeconds} s, then one kill of hostapd`);
    const quiet = await agent<ProbeResult>(
      sb,
      'appuser',
      'probe',
      { intervalMs: PROBE_INTERVAL_MS, seconds: quietSeconds },
      quietSeconds,
    );
    const quietRecoveryMs = await killAndTime(sb);
    await waitAllActive(sb, 30_000);
    await sleep(1000);

    log(
      `flood: 2 × RestartService at ${restartRate}/s and 2 × GetStatus at ${statusRate}/s as stranger for ${seconds} s`,
    );
    const since = Date.now();
    const daemonPid = await mainPid(sb, 'openauto-system.service');
    const cpu0 = schedCpuNs(sb, daemonPid);
    const floods = [
      ...[1, 2].map(() =>
        agent<FloodResult>(
          sb,
          'stranger',
          'flood',
          { method: 'RestartService', rate: restartRate, seconds },
          seconds,
        ),
      ),
      ...[1, 2].map(() =>
        agent<FloodResult>(
          sb,
          'stranger',
          'flood',
          { method: 'GetStatus', rate: statusRate, seconds },
          seconds,
        ),
      ),
    ];
    const probe = agent<ProbeResult>(
      sb,
      'appuser',
      'probe',
      { intervalMs: PROBE_INTERVAL_MS, seconds },
      seconds,
    );
    await sleep((seconds * 1000) / 2);
    const floodRecoveryMs = await killAndTime(sb);
    const results = await Promise.all(floods);
    const loud = await probe;
    const cpuShare = (schedCpuNs(sb, daemonPid) - cpu0) / 1e6 / (Date.now() - since);
    const failedCalls = (await daemonJournal(sb))
      .filter((e) => e.t >= since && Number(e.fields.PRIORITY) <= 4)
      .filter((e) => !/^hostapd\.service is failed, was active/.test(e.message))
      .map((e) => e.message);

    const q = summary(quiet.latenciesMs);
    const f = summary(loud.latenciesMs);
    const qb = summary(quiet.busLatenciesMs);
    const fb = summary(loud.busLatenciesMs);
    const p99Target = 2 * q.p99 + 20;
    const errors: Record<string, number> = {};
    for (const r of results)
      for (const [k, v] of Object.entries(r.errors))
        errors[`${r.method}: ${k}`] = (errors[`${r.method}: ${k}`] ?? 0) + v;
    printTable(`appuser's GetHealth (ms), one call every ${PROBE_INTERVAL_MS} ms`, [
      ['', 'n', 'median', 'p99', 'max', 'failed'],
      ['quiet', q.n, round(q.median, 2), round(q.p99, 2), round(q.max, 1), quiet.failures],
      ['under the flood', f.n, round(f.median, 2), round(f.p99, 2), round(f.max, 1), loud.failures],
      ['bus GetId (no daemon), quiet', qb.n, round(qb.median, 2), round(qb.p99, 2), round(qb.max, 1), ''],
      ['bus GetId, under the flood', fb.n, round(fb.median, 2), round(fb.p99, 2), round(fb.max, 1), ''],
    ]);
    const sent = results.reduce((a, r) => a + r.sent, 0);
    console.log(
      `\nflood: ${sent} calls sent (${results.map((r) => `${r.method} ${r.sent}`).join(', ')}), answers: ${JSON.stringify(errors)}, unanswered ${results.reduce((a, r) => a + r.unanswered, 0)}`,
    );
    console.log(`daemon CPU during the flood: ${(cpuShare * 100).toFixed(0)}% of a core`);
    console.log(
      `GetHealth p99: ${round(f.p99, 2)} ms under the flood vs ${round(q.p99, 2)} ms quiet (${round(f.p99 / q.p99, 2)}×; target ≤ ${round(p99Target, 1)} ms)`,
    );
    console.log(
      `kill → hostapd active again: ${quietRecoveryMs.toFixed(0)} ms quiet, ${floodRecoveryMs.toFixed(0)} ms under the flood (target < 2000)`,
    );
    console.log(`warnings/errors the daemon logged during the flood: ${failedCalls.length}`);
    for (const m of failedCalls.slice(0, 5)) console.log(`  ${m}`);

    const met = {
      getHealthP99: f.p99 <= p99Target && loud.failures === 0,
      recovery: floodRecoveryMs < 2000,
      noFailedCalls: failedCalls.length === 0,
    };
    const file = writeResult('flood', {
      settings: { seconds, quietSeconds, restartRate, statusRate, probeIntervalMs: PROBE_INTERVAL_MS },
      load: `4 stranger processes: 2 × RestartService at ${restartRate}/s, 2 × GetStatus at ${statusRate}/s, ${seconds} s`,
      quiet: { ...q, failures: quiet.failures, recoveryMs: quietRecoveryMs, busGetId: qb },
      flood: {
        ...f,
        failures: loud.failures,
        recoveryMs: floodRecoveryMs,
        sent,
        errors,
        cpuShare,
        busGetId: fb,
      },
      ratioP99: f.p99 / q.p99,
      p99TargetMs: p99Target,
      failedCalls: failedCalls.length,
      met,
    });
    console.log(`wrote ${file}`);
    return Object.values(met).every(Boolean) ? 0 : 1;
  } finally {
    await sb.stop();
  }
}

runMain('flood', main);
