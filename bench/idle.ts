// Idle CPU of the real daemon in a sandbox (shipped unit and timings, no clients): the CPU time of all its
// threads (schedstat) over an idle window, as CPU seconds per minute and percent of a core, and its wake-ups
// (voluntary context switches). Target: < 0.1% of a core (issue 18's regression guard).
// With BENCH_IDLE_BASELINE=DIR (a checkout of another version, built: DIR/dist/bin/openauto-system.js), that
// build is installed next to this one in the same sandbox and the two take turns (baseline first), each
// started afresh and measured after the same settling time, so both see the same machine.
// Prints a table and writes bench/results/idle.json.
//
//   node dist/bench/idle.js        (as root; the daemon must be built)
// Environment: BENCH_IDLE_SECONDS (window, default 60), BENCH_IDLE_SETTLE (seconds from start to the window,
// default 35: past the heap trimmer's first collection at 30 s), BENCH_IDLE_ROUNDS (turns per build, default
// 1), BENCH_QUICK=1 (20 s window, 5 s settle).
import { copyFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Sandbox, sandboxUnavailable } from '../test/sandbox/harness.js';
import { getHealth, mainPid, procDir, schedCpuNs } from '../test/sandbox/helpers-health.js';
import { log, printTable, round, runMain, setting, sleep, writeResult } from './lib.js';

const SECONDS = setting('BENCH_IDLE_SECONDS', 60, 20);
const SETTLE = setting('BENCH_IDLE_SETTLE', 35, 5);
const ROUNDS = setting('BENCH_IDLE_ROUNDS', 1, 1);
const BASELINE = process.env.BENCH_IDLE_BASELINE;
const UNIT = 'openauto-system.service';
const INSTALLED = '/usr/lib/openauto-system/dist';
/** The baseline's bundle goes next to the installed one: same node_modules (native addons) above it. */
const BASELINE_BIN = `${INSTALLED}/bin-baseline`;
const DROPIN = `/etc/systemd/system/${UNIT}.d/bench-idle.conf`;
const BUNDLE_FILES = ['openauto-system.js', 'openauto-system-main.cjs', 'openauto-system-main.cache'];

interface Reading {
  build: string;
  round: number;
  seconds: number;
  cpuMs: number;
  cpuSecondsPerMinute: number;
  percentOfCore: number;
  wakeups: number;
}

/** Voluntary context switches of all the process's threads: how often it went to sleep, i.e. woke up. */
function wakeups(root: string): number {
  let sum = 0;
  for (const tid of readdirSync(join(root, 'task'))) {
    try {
      const m = /^voluntary_ctxt_switches:\s+(\d+)/m.exec(
        readFileSync(join(root, 'task', tid, 'status'), 'utf8'),
      );
      sum += Number(m?.[1] ?? 0);
    } catch {
      // the thread just ended
    }
  }
  return sum;
}

/** The unit's ExecStart with the bundle in `bin` (the shipped line, only the script's directory changed). */
function execStartFor(unitText: string, bin: string): string {
  const line = /^ExecStart=(.*)$/m.exec(unitText)?.[1];
  if (!line) throw new Error('no ExecStart in the installed unit');
  return line.replace(`${INSTALLED}/bin/`, `${bin}/`);
}

async function useBuild(sb: Sandbox, build: 'current' | 'baseline', unitText: string): Promise<void> {
  if (build === 'baseline') {
    await sb.writeFile(DROPIN, `[Service]\nExecStart=\nExecStart=${execStartFor(unitText, BASELINE_BIN)}\n`);
  } else {
    await sb.execOk(['rm', '-f', DROPIN]);
  }
  await sb.execOk(['systemctl', 'daemon-reload']);
  await sb.execOk(['systemctl', 'restart', UNIT]);
}

async function measure(sb: Sandbox, build: string, round: number): Promise<Reading> {
  const pid = await mainPid(sb, UNIT);
  const health = await getHealth(sb);
  if (!Object.values(health).every((s) => s === 'active'))
    throw new Error(`not all active: ${JSON.stringify(health)}`);
  log(`${build} #${round}: settling ${SETTLE} s, then idle for ${SECONDS} s...`);
  await sleep(SETTLE * 1000);
  const dir = procDir(sb, pid);
  const cpu0 = schedCpuNs(sb, pid);
  const wake0 = wakeups(dir);
  const t0 = performance.now();
  await sleep(SECONDS * 1000);
  const cpu1 = schedCpuNs(sb, pid);
  const wake1 = wakeups(dir);
  const seconds = (performance.now() - t0) / 1000;
  if ((await mainPid(sb, UNIT)) !== pid) throw new Error(`${build}: the daemon restarted during the window`);
  const cpuS = (cpu1 - cpu0) / 1e9;
  const r = {
    build,
    round,
    seconds: round3(seconds),
    cpuMs: round3(cpuS * 1000),
    cpuSecondsPerMinute: round3((cpuS / seconds) * 60, 4),
    percentOfCore: round3((cpuS / seconds) * 100, 4),
    wakeups: wake1 - wake0,
  };
  log(`  ${r.cpuSecondsPerMinute} CPU s per minute (${r.percentOfCore}% of a core), ${r.wakeups} wake-ups`);
  return r;
}

const round3 = (x: number, d = 3) => round(x, d);

async function main(): Promise<number> {
  const why = sandboxUnavailable();
  if (why) {
    console.error(`bench/idle: ${why}`);
    return 2;
  }
  if (BASELINE && !existsSync(join(BASELINE, 'dist', 'bin', 'openauto-system.js'))) {
    console.error(`bench/idle: no built baseline at ${BASELINE} (dist/bin/openauto-system.js)`);
    return 2;
  }
  const sb = await Sandbox.start({ name: 'bench-idle' });
  try {
    const unitText = await sb.readFile(`/usr/lib/systemd/system/${UNIT}`);
    const builds: ('current' | 'baseline')[] = BASELINE ? ['baseline', 'current'] : ['current'];
    if (BASELINE) {
      await sb.execOk(['mkdir', '-p', BASELINE_BIN, `/etc/systemd/system/${UNIT}.d`]);
      for (const f of BUNDLE_FILES) {
        const from = join(BASELINE, 'dist', 'bin', f);
        if (existsSync(from)) copyFileSync(from, join(sb.root, BASELINE_BIN, f));
      }
    }
    const readings: Reading[] = [];
    for (let r = 1; r <= ROUNDS; r++) {
      for (const build of builds) {
        await useBuild(sb, build, unitText);
        readings.push(await measure(sb, build, r));
      }
    }
    const rows: (string | number)[][] = [
      ['build', 'round', 'window s', 'CPU ms', 'CPU s/min', '% of a core', 'wake-ups/min'],
    ];
    for (const x of readings) {
      rows.push([
        x.build,
        x.round,
        x.seconds.toFixed(1),
        x.cpuMs.toFixed(1),
        x.cpuSecondsPerMinute.toFixed(4),
        x.percentOfCore.toFixed(3),
        ((x.wakeups / x.seconds) * 60).toFixed(1),
      ]);
    }
    const mean = (b: string, k: 'percentOfCore' | 'cpuSecondsPerMinute') => {
      const xs = readings.filter((x) => x.build === b).map((x) => x[k]);
      return xs.reduce((a, c) => a + c, 0) / xs.length;
    };
    for (const b of builds)
      rows.push([
        `${b} (mean)`,
        '',
        '',
        '',
        mean(b, 'cpuSecondsPerMinute').toFixed(4),
        mean(b, 'percentOfCore').toFixed(3),
        '',
      ]);
    printTable(`daemon idle CPU (all threads, schedstat), ${SETTLE} s after each start:`, rows);
    const current = mean('current', 'percentOfCore');
    console.log(`\ntarget < 0.1% of a core: ${current < 0.1 ? 'met' : 'missed'} (${round3(current, 4)}%)`);
    if (BASELINE)
      console.log(`current / baseline: ${round3(current / mean('baseline', 'percentOfCore'), 2)}x`);
    console.log(
      `wrote ${writeResult('idle', { settleSeconds: SETTLE, windowSeconds: SECONDS, baseline: BASELINE ?? null, readings, target: { percentOfCore: 0.1 } })}`,
    );
    return 0;
  } finally {
    await sb.stop();
  }
}

runMain('idle', main);
