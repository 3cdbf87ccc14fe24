// Detection benchmark, against real systemd in a sandbox, with the daemon's shipped timings:
//   - kill → HealthChanged: hostapd's main process is SIGKILLed from the host (exact time), a separate client
//     inside the container timestamps the first HealthChanged that shows hostapd not active;
//   - kill → active again: systemd's own ActiveEnterTimestamp of the restarted unit;
//   - the daemon's CPU time over an idle period (utime+stime from /proc/PID/stat, and the threads' schedstat).
// Prints a table and writes bench/results/detection.json.
//
//   node dist/bench/detection.js        (as root; the daemon must be built)
// Environment: BENCH_KILLS (default 40), BENCH_IDLE_SECONDS (default 60), BENCH_SANDBOX (container name).
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, Sandbox, sandboxUnavailable } from '../test/sandbox/harness.js';
import {
  getHealth,
  HealthWatcher,
  hostPidOf,
  mainPid,
  procStat,
  quantile,
  schedCpuNs,
  sleep,
  unitTimestampUs,
  waitAllActive,
} from '../test/sandbox/helpers-health.js';

const KILLS = Number(process.env.BENCH_KILLS ?? 40);
const IDLE_SECONDS = Number(process.env.BENCH_IDLE_SECONDS ?? 60);
const NAME = process.env.BENCH_SANDBOX ?? 'bench-detect';
const HOSTAPD = 'hostapd.service';

const nowMs = () => performance.timeOrigin + performance.now();

interface Sample {
  /** kill → first HealthChanged showing hostapd not active, at the client. */
  detectMs: number;
  /** The state that HealthChanged carried. */
  state: string;
  /** kill → systemd's ActiveEnterTimestamp of the restarted unit. */
  activeMs: number;
  /** kill → HealthChanged showing hostapd active again, at the client. */
  activeSeenMs: number;
}

function summary(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  return {
    n: s.length,
    min: s[0] ?? Number.NaN,
    median: quantile(s, 0.5),
    p99: quantile(s, 0.99),
    max: s.at(-1) ?? Number.NaN,
  };
}

async function main(): Promise<number> {
  const why = sandboxUnavailable();
  if (why) {
    console.error(`bench/detection: ${why}`);
    return 2;
  }
  if (!Number.isInteger(KILLS) || KILLS < 1 || !(IDLE_SECONDS > 0)) {
    console.error('bench/detection: BENCH_KILLS must be >= 1 and BENCH_IDLE_SECONDS > 0');
    return 2;
  }
  const clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  console.error(`booting sandbox ${NAME} (daemon with its default timings)...`);
  const sb = await Sandbox.start({ name: NAME });
  try {
    await waitAllActive(sb);
    const watcher = await HealthWatcher.start(sb, 'bench-watch');
    const samples: Sample[] = [];
    for (let i = 0; i < KILLS; i++) {
      await waitAllActive(sb);
      // Settle, with jitter so kills do not line up with the daemon's 5 s safety-net poll.
      await sleep(300 + Math.random() * 300);
      const hostPid = hostPidOf(sb, await mainPid(sb, HOSTAPD));
      const t0 = nowMs();
      process.kill(hostPid, 'SIGKILL');
      const down = await watcher.waitForEvent((e) => e.health.hostapd !== 'active', t0, 20_000);
      const up = await watcher.waitForEvent((e) => e.health.hostapd === 'active', down.t, 20_000);
      const activeEnter = (await unitTimestampUs(sb, HOSTAPD, 'ActiveEnterTimestamp')) / 1000;
      samples.push({
        detectMs: down.t - t0,
        state: String(down.health.hostapd),
        activeMs: activeEnter - t0,
        activeSeenMs: up.t - t0,
      });
      process.stderr.write(
        `kill ${i + 1}/${KILLS}: HealthChanged(${down.health.hostapd}) after ${(down.t - t0).toFixed(1)} ms, active after ${(activeEnter - t0).toFixed(1)} ms\n`,
      );
    }
    await watcher.stop();

    // Idle: nothing but the daemon's own safety-net poll and whatever the system does on its own.
    await waitAllActive(sb);
    await sleep(2000);
    const pid = await mainPid(sb, 'openauto-system.service');
    const ticks = (st: string[]) => Number(st[13]) + Number(st[14]);
    const stat0 = procStat(sb, pid);
    const sched0 = schedCpuNs(sb, pid);
    const w0 = nowMs();
    console.error(`idle for ${IDLE_SECONDS} s...`);
    await sleep(IDLE_SECONDS * 1000);
    const stat1 = procStat(sb, pid);
    const sched1 = schedCpuNs(sb, pid);
    const wall = (nowMs() - w0) / 1000;
    const health = await getHealth(sb);

    const statCpuS = (ticks(stat1) - ticks(stat0)) / clkTck;
    const schedCpuS = (sched1 - sched0) / 1e9;
    const detect = summary(samples.map((s) => s.detectMs));
    const active = summary(samples.map((s) => s.activeMs));
    const activeSeen = summary(samples.map((s) => s.activeSeenMs));
    const states: Record<string, number> = {};
    for (const s of samples) states[s.state] = (states[s.state] ?? 0) + 1;

    const f = (x: number) => x.toFixed(1).padStart(8);
    const row = (label: string, s: ReturnType<typeof summary>) =>
      `${label.padEnd(40)}${f(s.median)}${f(s.p99)}${f(s.min)}${f(s.max)}`;
    console.log(`\nhostapd killed ${KILLS} times (SIGKILL of the main process), ms:`);
    console.log(
      `${''.padEnd(40)}${'median'.padStart(8)}${'p99'.padStart(8)}${'min'.padStart(8)}${'max'.padStart(8)}`,
    );
    console.log(row('kill → HealthChanged at a client', detect));
    console.log(row('kill → unit active (systemd timestamp)', active));
    console.log(row('kill → HealthChanged active at a client', activeSeen));
    console.log(
      `first state seen: ${Object.entries(states)
        .map(([k, v]) => `${k} ×${v}`)
        .join(', ')}`,
    );
    console.log(`\ndaemon CPU over ${wall.toFixed(1)} s idle (shipped timings, 5 s poll):`);
    console.log(
      `  /proc/PID/stat utime+stime: ${statCpuS.toFixed(3)} s  (${((statCpuS / wall) * 100).toFixed(3)} % of a core; resolution ${1 / clkTck} s)`,
    );
    console.log(
      `  threads' schedstat:         ${schedCpuS.toFixed(3)} s  (${((schedCpuS / wall) * 100).toFixed(3)} % of a core)`,
    );
    console.log(`health at the end: ${JSON.stringify(health)}`);

    const result = {
      date: new Date().toISOString(),
      machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', kernel: release() },
      sandbox: { bootMs: sb.bootMs },
      daemonSettings: 'defaults (poll 5 s, fast retry 5 s, slow retry 60 s)',
      kills: KILLS,
      detectionMs: detect,
      activeAgainMs: active,
      activeSeenMs: activeSeen,
      firstStateSeen: states,
      idle: {
        seconds: wall,
        cpuSecondsStat: statCpuS,
        cpuSecondsSchedstat: schedCpuS,
        percentOfCoreStat: (statCpuS / wall) * 100,
        percentOfCoreSchedstat: (schedCpuS / wall) * 100,
        clkTck,
      },
      samples,
    };
    const dir = join(REPO_ROOT, 'bench', 'results');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'detection.json'), `${JSON.stringify(result, null, 2)}\n`);
    console.log(`\nwrote ${join('bench', 'results', 'detection.json')}`);
    return Object.values(health).every((s) => s === 'active') ? 0 : 1;
  } finally {
    await sb.stop();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
    process.exitCode = 1;
  },
);
