// Detection benchmark, against real systemd in a sandbox, with the daemon's shipped timings:
//   - kill → HealthChanged: hostapd's main process is SIGKILLed from the host (exact time), a separate client
//     inside the container timestamps the first HealthChanged that shows hostapd not active;
//   - kill → active again: systemd's own ActiveEnterTimestamp of the restarted unit;
//   - steady state over an idle period: the daemon's CPU time (utime+stime from /proc/PID/stat, and the
//     threads' schedstat), as CPU seconds per minute; and child processes: every process created in the
//     container at all (its PID namespace's ns_last_pid, read before and after; nothing else runs there
//     meanwhile), the daemon's children sampled every 20 ms (/proc/PID/task/*/children) and the CPU time of
//     its reaped children (cutime+cstime).
// Prints a table and writes bench/results/detection.json.
//
//   node dist/bench/detection.js        (as root; the daemon must be built)
// Environment: BENCH_KILLS (default 40), BENCH_IDLE_SECONDS (default 60), BENCH_SETTLE_SECONDS (quiet time
// before the idle window, default 30), BENCH_SANDBOX (container name);
// BENCH_QUICK=1 makes them 10 and 20.
import { execFileSync } from 'node:child_process';
import { Sandbox, sandboxUnavailable } from '../test/sandbox/harness.js';
import {
  childrenOf,
  explainVanished,
  getHealth,
  HealthWatcher,
  hostPidOf,
  mainPid,
  procStat,
  schedCpuNs,
  sleep,
  unitTimestampUs,
  waitAllActive,
} from '../test/sandbox/helpers-health.js';
import { nowMs, runMain, setting, summary, writeResult } from './lib.js';

const KILLS = setting('BENCH_KILLS', 40, 10);
const IDLE_SECONDS = setting('BENCH_IDLE_SECONDS', 60, 20);
const SETTLE_SECONDS = setting('BENCH_SETTLE_SECONDS', 30, 5);
const NAME = process.env.BENCH_SANDBOX ?? 'bench-detect';
const HOSTAPD = 'hostapd.service';

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

/** The last PID allocated in the container's PID namespace (reading it creates one process there: `cat`). */
async function lastPid(sb: Sandbox): Promise<number> {
  return Number((await sb.execOk(['cat', '/proc/sys/kernel/ns_last_pid'])).trim());
}

async function main(): Promise<number> {
  const why = sandboxUnavailable();
  if (why) {
    console.error(`bench/detection: ${why}`);
    return 2;
  }
  if (!Number.isInteger(KILLS)) {
    console.error('bench/detection: BENCH_KILLS must be a whole number');
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
    // After the kills, V8 spends a while compiling and shrinking its heap (the memory reducer's GCs): that
    // is the aftermath of the activity, not the cost of idle monitoring. Let it settle first.
    console.error(`settling for ${SETTLE_SECONDS} s...`);
    await new Promise((r) => setTimeout(r, SETTLE_SECONDS * 1000));
    const ticks = (st: string[]) => Number(st[13]) + Number(st[14]);
    const childTicks = (st: string[]) => Number(st[15]) + Number(st[16]);
    // What one reading of ns_last_pid itself costs in PIDs (calibrated: readings back to back).
    const pidA = await lastPid(sb);
    const pidA2 = await lastPid(sb);
    const pidB = await lastPid(sb);
    const perReading = Math.min(pidA2 - pidA, pidB - pidA2);
    const stat0 = procStat(sb, pid);
    const sched0 = schedCpuNs(sb, pid);
    const w0 = nowMs();
    console.error(`idle for ${IDLE_SECONDS} s...`);
    const seenChildren = new Set<number>();
    let childSamples = 0;
    while (nowMs() - w0 < IDLE_SECONDS * 1000) {
      let children: number[];
      try {
        children = childrenOf(sb, pid);
      } catch (err) {
        throw new Error(`idle measurement broken: ${String(err)}: ${await explainVanished(sb, pid)}`);
      }
      for (const c of children) seenChildren.add(c);
      childSamples++;
      await sleep(20);
    }
    const stat1 = procStat(sb, pid);
    const sched1 = schedCpuNs(sb, pid);
    const wall = (nowMs() - w0) / 1000;
    const pidC = await lastPid(sb);
    const containerForks = pidC - pidB - perReading;
    const health = await getHealth(sb);

    const statCpuS = (ticks(stat1) - ticks(stat0)) / clkTck;
    const schedCpuS = (sched1 - sched0) / 1e9;
    const childCpuS = (childTicks(stat1) - childTicks(stat0)) / clkTck;
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
    console.log(
      `  = ${((schedCpuS / wall) * 60).toFixed(3)} CPU seconds per minute (schedstat), ${((statCpuS / wall) * 60).toFixed(3)} (stat)`,
    );
    console.log(`\nchild processes over the idle period (target: zero):`);
    console.log(
      `  processes created anywhere in the container: ${containerForks} (ns_last_pid; one reading costs ${perReading})`,
    );
    console.log(`  children of the daemon seen in ${childSamples} samples: ${seenChildren.size}`);
    console.log(`  CPU time of reaped children (cutime+cstime): ${childCpuS.toFixed(2)} s`);
    console.log(`health at the end: ${JSON.stringify(health)}`);

    const result = {
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
        cpuSecondsPerMinuteSchedstat: (schedCpuS / wall) * 60,
        cpuSecondsPerMinuteStat: (statCpuS / wall) * 60,
        percentOfCoreStat: (statCpuS / wall) * 100,
        percentOfCoreSchedstat: (schedCpuS / wall) * 100,
        clkTck,
        containerProcessesCreated: containerForks,
        daemonChildrenSeen: seenChildren.size,
        childSamples,
        reapedChildrenCpuSeconds: childCpuS,
      },
      targets: { detectionP99Ms: 100, idleChildren: 0 },
      samples,
    };
    console.log(`\nwrote ${writeResult('detection', result)}`);
    return Object.values(health).every((s) => s === 'active') ? 0 : 1;
  } finally {
    await sb.stop();
  }
}

runMain('detection', main);
