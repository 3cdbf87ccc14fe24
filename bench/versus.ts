// The daemon side by side with a Python baseline in one sandbox and one run, every figure printed as a ratio
// to the baseline (the machine is shared: figures from different runs do not compare). The baseline is
// py-baseline.py, a minimal asyncio NDJSON server over a Unix socket (the old Python service's runtime, no
// D-Bus, answers from fixed data): a floor for a Python service, not a copy of one.
//   1. start-up: exec (systemd's ExecMainStartTimestamp) → bus name owned (claimed after the first full
//      health check; the activation runs check that the first answer is all active), limited to 25% of a
//      core (a slow-CPU stand-in for a Pi, see Throttle) and not, in three variants taking turns start by
//      start: as shipped (the bundle compiled with its code cache), with the start-up snapshot (which the
//      administrator may turn on) and with neither; the baseline: exec → its first get_health answer,
//      throttled and not. For every start also the CPU time the process had used when it answered
//      (schedstat): start-up's cost whatever the load of the machine, where the wall times move with the other
//      work on it; and where the daemon's start-up went (the ready entry's STARTUP_MS marks);
//   2. memory when idle (30 s after the daemon's last start; Pss_Anon of smaps_rollup, VmRSS beside it);
//   3. 32 socket clients sending get_health one after another (throughput; from bench/loadgen.c, a small C
//      client, where a C compiler built it: a node client costs as much CPU as the servers), then 10,000
//      sequential mixed requests (get_health, get_status, ping) on one connection (wall time; from loadgen
//      and from the node client), as the app user; then the sequential run again with the client and the
//      server's main thread on one CPU, three times per server in turns (median): see pinnedSequential;
//      then the floor, bench/floor-server.c (fixed answers in C), under the same run placed freely and on
//      one CPU: what a round trip costs that no server can remove; memory 31 s after the load (after the
//      heap trimmer's next check);
//   4. the same load and memory with the JIT on (no --lite-mode/--jitless, MemoryDenyWriteExecute off, a
//      drop-in), for the trade-off, with VERSUS_JIT=1 (another minute or so).
// Prints a table and writes bench/results/versus.json. About eight minutes: the start-ups one or two, the idle
// memory with and without the snapshot three (31 s per start), the load part four (three rounds per server,
// the pinned runs, the floor), much of that waiting for the heap trimmer's check before reading memory (the
// readings are meant to be what a quiet daemon holds).
//
//   PY_BASELINE=path/to/py-baseline.py node dist/bench/versus.js     (as root; the daemon must be built)
// Environment: PY_BASELINE (default: ../shared/bench/py-baseline.py next to the checkout), VERSUS_BOOT_RUNS
// (starts per way and variant, default 3), VERSUS_PER_CLIENT (500), VERSUS_SEQUENTIAL (10000),
// VERSUS_LOAD_ROUNDS (3: the load runs per server, in turns; the table shows medians), VERSUS_JIT (0),
// VERSUS_PARTS (boot,bootmem,load: the parts to run; bootmem: idle memory with and without the start-up
// snapshot, VERSUS_BOOT_RUNS starts each, half a minute per start; load includes the other memory readings),
// VERSUS_BOOT_ALT (DIR[,DIR...]: other builds' dist/bin started in turns with the installed one, an A/B of a
// change), VERSUS_BOOT_ONLY (NAME[,NAME...]: only these of snapshot, codeCache, neither).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Sandbox, sandboxUnavailable } from '../test/sandbox/harness.js';
import { daemonJournal, mainPid, procDir } from '../test/sandbox/helpers-health.js';
import { baselinePath, unitNodeFlags } from './baseline.js';
import {
  allActiveWithin,
  buildLoadgen,
  DAEMON_UNIT,
  log,
  nowMs,
  printTable,
  round,
  runAgent,
  runMain,
  setting,
  sleep,
  summary,
  writeResult,
} from './lib.js';

const PY_SOCKET = '/run/py-baseline.sock';
const PY_SCRIPT = '/run/py-baseline.py';
const CODE_CACHE = '/usr/lib/openauto-system/dist/bin/openauto-system-main.cache';
/** The daemon's own code cache, written a few seconds after a start that had none (src/code-cache.ts). */
const OWN_CACHE_DIR = '/var/cache/openauto-system';
// Read by the unit after everything else: OPENAUTO_SNAPSHOT=--snapshot-blob=… turns the start-up snapshot on
// (off as shipped), OPENAUTO_SNAPSHOT= off.
const SNAPSHOT_SWITCH = '/run/openauto/snapshot.env';
const SNAPSHOT_ON =
  'OPENAUTO_SNAPSHOT=--snapshot-blob=/usr/lib/openauto-system/dist/bin/openauto-system.blob\n';
const BASELINE = 'py-baseline.py (asyncio NDJSON over a Unix socket, fixed answers)';
const DROPIN = '/run/systemd/system/openauto-system.service.d/bench-versus.conf';

/** Anonymous memory (Pss_Anon) and VmRSS of a container process, in MB. */
function memory(sb: Sandbox, pid: number): { anonMb: number; rssMb: number } {
  const rollup = readFileSync(join(procDir(sb, pid), 'smaps_rollup'), 'utf8');
  const status = readFileSync(join(procDir(sb, pid), 'status'), 'utf8');
  const kb = (text: string, key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text)?.[1]);
  return { anonMb: round(kb(rollup, 'Pss_Anon') / 1024, 2), rssMb: round(kb(status, 'VmRSS') / 1024, 1) };
}

interface StartRun {
  mode: string;
  execToNameMs: number;
  cpuMs: number;
  healthAllActive?: boolean;
}

interface Load {
  requests_per_s: number;
  concurrent?: { client?: string; open_seconds?: number };
  sequential: { seconds: number; mean_answer_bytes: number; client?: string; node_client_seconds?: number };
}

/**
 * A slow-CPU stand-in: 25% of one core for what the container's systemd starts from now on. On a cgroup v1
 * host (the container's systemd has no cpu controller there) the container's PID 1 goes into a cpu cgroup of
 * the host with that quota, and every process it forks inherits it (the bus daemon, already running, and the
 * client do not); on cgroup v2 the units get CPUQuota=25% (set-property, systemd-run -p).
 */
class Throttle {
  private readonly v1 = existsSync('/sys/fs/cgroup/cpu/cpu.cfs_quota_us');
  private readonly dir = `/sys/fs/cgroup/cpu/oas-bench-versus-${process.pid}`;
  constructor(private readonly sb: Sandbox) {}

  /** The CPUQuota= value units need themselves (empty on v1, where the cgroup does it). */
  get unitQuota(): string {
    return this.v1 ? '' : '25%';
  }

  async on(): Promise<void> {
    if (!this.v1) return;
    mkdirSync(this.dir, { recursive: true });
    writeFileSync(join(this.dir, 'cpu.cfs_period_us'), '100000');
    writeFileSync(join(this.dir, 'cpu.cfs_quota_us'), '25000');
    writeFileSync(join(this.dir, 'cgroup.procs'), String(this.sb.leader));
  }

  /** Back to the root cpu cgroup: PID 1 and whatever it started meanwhile; the cgroup is removed. */
  off(): void {
    if (!this.v1 || !existsSync(this.dir)) return;
    for (const pid of readFileSync(join(this.dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
      try {
        writeFileSync('/sys/fs/cgroup/cpu/cgroup.procs', pid);
      } catch {
        // exited meanwhile
      }
    }
    rmdirSync(this.dir);
  }
}

/** Milliseconds node takes to require a few of its own modules, without flags and with the unit's. */
function builtinCost(): { plain: number; unitFlags: number } {
  const flags = unitNodeFlags();
  const code =
    "const t = performance.now(); for (const m of ['net', 'crypto', 'stream', 'fs/promises', 'child_process']) " +
    'require(m); console.log(performance.now() - t);';
  const time = (f: string[]) =>
    round(
      summary(
        Array.from({ length: 7 }, () =>
          Number(execFileSync(process.execPath, [...f, '-e', code], { encoding: 'utf8', stdio: 'pipe' })),
        ),
      ).median,
    );
  return { plain: time([]), unitFlags: time(flags) };
}

type Variant = { name: string; label: string; snapshot: boolean; cache: boolean; alt?: string };
/** The daemon's start-up variants: as shipped (code cache), with the start-up snapshot, with neither. */
const VARIANTS: Variant[] = [
  {
    name: 'snapshot',
    label: 'with the start-up snapshot (turned on by the administrator)',
    snapshot: true,
    cache: true,
  },
  { name: 'codeCache', label: 'as shipped (the code cache)', snapshot: false, cache: true },
  { name: 'neither', label: 'without the snapshot and the code cache', snapshot: false, cache: false },
];
const INSTALLED_BIN = '/usr/lib/openauto-system/dist/bin';

/** The variants this run starts: VERSUS_BOOT_ALT=DIR[,DIR...] adds other builds' dist/bin (an A/B of a change);
 * VERSUS_BOOT_ONLY=NAME[,NAME...] keeps only these of the built-in variants (snapshot, codeCache, neither). */
function variants(): Variant[] {
  const only = process.env.VERSUS_BOOT_ONLY?.split(',');
  const alts = (process.env.VERSUS_BOOT_ALT ?? '').split(',').filter(Boolean);
  return [
    ...VARIANTS.filter((v) => !only || only.includes(v.name)),
    ...alts.map((alt, i) => ({
      name: i === 0 ? 'alt' : `alt${i + 1}`,
      label: `as shipped, the build in ${alt}`,
      snapshot: false,
      cache: true,
      alt,
    })),
  ];
}

/** Runs fn with the daemon's start-up snapshot turned off and/or its code cache moved aside, as `v` says. The
 * daemon's own cache (CacheDirectory=, src/code-cache.ts) serves only the installed build with its cache. */
async function withVariant<T>(sb: Sandbox, v: Variant, fn: () => Promise<T>): Promise<T> {
  await sb.writeFile(SNAPSHOT_SWITCH, v.snapshot ? SNAPSHOT_ON : 'OPENAUTO_SNAPSHOT=\n');
  if (!v.cache) await sb.execOk(['mv', CODE_CACHE, `${CODE_CACHE}.off`]);
  const hideOwn = !v.cache || v.alt !== undefined;
  if (hideOwn)
    await sb.execOk(['sh', '-c', `rm -rf ${OWN_CACHE_DIR}.off; mv ${OWN_CACHE_DIR} ${OWN_CACHE_DIR}.off`]);
  if (v.alt) {
    await sb.execOk(['cp', '-a', INSTALLED_BIN, `${INSTALLED_BIN}.orig`]);
    await sb.execOk(['sh', '-c', `rm -rf ${INSTALLED_BIN}/* && cp ${resolve(v.alt)}/* ${INSTALLED_BIN}/`]);
  }
  try {
    return await fn();
  } finally {
    if (v.alt)
      await sb.execOk(['sh', '-c', `rm -rf ${INSTALLED_BIN} && mv ${INSTALLED_BIN}.orig ${INSTALLED_BIN}`]);
    if (!v.cache) await sb.execOk(['mv', `${CODE_CACHE}.off`, CODE_CACHE]);
    if (hideOwn)
      await sb.execOk(['sh', '-c', `rm -rf ${OWN_CACHE_DIR} && mv ${OWN_CACHE_DIR}.off ${OWN_CACHE_DIR}`]);
    await sb.execOk(['rm', '-f', SNAPSHOT_SWITCH]);
  }
}

interface Boots {
  ms: number[];
  cpuMs: number[];
  firstAnswerNotAllActive: number;
  /** The ready entries' STARTUP_MS marks of these starts: ms since the process started (main), then since main. */
  marks: Record<string, number>[];
}

async function daemonBoot(sb: Sandbox, n: number, quota: string, into: Boots): Promise<void> {
  await sb.execOk(['systemctl', 'set-property', '--runtime', DAEMON_UNIT, `CPUQuota=${quota}`]);
  const since = nowMs();
  const r = await runAgent<{ runs: StartRun[] }>(sb, 'startup', { n }, { timeoutMs: 60_000 + n * 30_000 });
  into.ms.push(...r.runs.map((x) => x.execToNameMs));
  into.cpuMs.push(...r.runs.map((x) => x.cpuMs).filter((x) => Number.isFinite(x)));
  into.firstAnswerNotAllActive += r.runs.filter((x) => x.healthAllActive === false).length;
  const ready = (await daemonJournal(sb)).filter((e) => e.t >= since && e.fields.STARTUP_MS !== undefined);
  for (const e of ready) into.marks.push(JSON.parse(String(e.fields.STARTUP_MS)) as Record<string, number>);
}

const boots = (r: Record<string, Boots>, name: string): Boots => r[name] as Boots;

/** Every variant `n` times (two starts each: activation, StartUnit), taking turns, under `quota`. */
async function bootVariants(sb: Sandbox, n: number, quota: string): Promise<Record<string, Boots>> {
  const out = Object.fromEntries(
    variants().map((v) => [v.name, { ms: [], cpuMs: [], firstAnswerNotAllActive: 0, marks: [] } as Boots]),
  ) as Record<string, Boots>;
  for (let i = 0; i < n; i++) {
    for (const v of variants()) await withVariant(sb, v, () => daemonBoot(sb, 1, quota, boots(out, v.name)));
  }
  return out;
}

/** The daemon's start-up boot part: the table, and what goes into versus.json. */
async function bootPart(sb: Sandbox, n: number) {
  // As on a device after its first boot: the daemon has run long enough once to write its own code cache.
  await sb.execOk(['systemctl', 'restart', DAEMON_UNIT], { timeoutMs: 30_000 });
  const own = `ls ${OWN_CACHE_DIR} | grep -q '^openauto-system-main\\..*\\.cache$'`;
  for (let i = 0; i < 150 && (await sb.exec(['sh', '-c', own])).code !== 0; i++) await sleep(100);
  if ((await sb.exec(['sh', '-c', own])).code !== 0)
    log('WARNING: the daemon wrote no code cache of its own');
  log('start-up under 25% of a core, then as shipped...');
  const throttle = new Throttle(sb);
  let quota: Record<string, Boots>;
  let pyQuota: { ms: number[]; cpuMs: number[] };
  try {
    await throttle.on();
    quota = await bootVariants(sb, n, throttle.unitQuota);
    pyQuota = await runAgent<{ ms: number[]; cpuMs: number[] }>(sb, 'pyboot', {
      script: PY_SCRIPT,
      socket: PY_SOCKET,
      n: n * 2,
      quota: throttle.unitQuota,
    });
    await sb.exec(['sh', '-c', 'systemctl stop "py-baseline-*"']);
  } finally {
    throttle.off();
  }
  const plain = await bootVariants(sb, n, '');
  const py = await runAgent<{ ms: number[]; cpuMs: number[] }>(sb, 'pyboot', {
    script: PY_SCRIPT,
    socket: PY_SOCKET,
    n: n * 2,
    quota: '',
  });
  const med = (xs: number[]) => summary(xs).median;
  const x = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
  const rows: (string | number)[][] = [
    ['exec → answering, median ms (daemon: bus name owned)', 'python', 'daemon', 'daemon / python'],
  ];
  for (const [label, runs, pyRuns] of [
    ['', plain, py],
    ['under CPUQuota=25%, ', quota, pyQuota],
  ] as const) {
    for (const v of variants()) {
      rows.push([
        `${label}${v.label}`,
        round(med(pyRuns.ms)),
        round(med(boots(runs, v.name).ms)),
        x(med(boots(runs, v.name).ms), med(pyRuns.ms)),
      ]);
    }
  }
  for (const v of variants()) {
    const cpu = [...boots(plain, v.name).cpuMs, ...boots(quota, v.name).cpuMs];
    rows.push([
      `CPU time at the first answer, ${v.label}`,
      round(med(py.cpuMs)),
      round(med(cpu)),
      x(med(cpu), med(py.cpuMs)),
    ]);
  }
  printTable(
    `start-up, ${n * 2} starts per variant and quota (activation and StartUnit, variants taking turns)`,
    rows,
  );
  // Where the time went, unthrottled: node's own start and loading the daemon (main), then each step since.
  const steps = ['main', 'bus', 'systemd', 'applies', 'proxy', 'export', 'health', 'socket', 'name'];
  const marks: (string | number)[][] = [['ms (medians)', ...steps]];
  for (const [label, runs] of [
    ['', plain],
    ['25%: ', quota],
  ] as const) {
    for (const v of variants()) {
      marks.push([
        `${label}${v.name}`,
        ...steps.map((k) => round(med(boots(runs, v.name).marks.map((m) => m[k] ?? Number.NaN)))),
      ]);
    }
  }
  printTable(
    "start-up marks: main = ms from the process start to the daemon's main; the others, ms after main",
    marks,
  );
  const wrong = variants().reduce(
    (a, v) => a + boots(plain, v.name).firstAnswerNotAllActive + boots(quota, v.name).firstAnswerNotAllActive,
    0,
  );
  console.log(`\nfirst activation answers not all active: ${wrong}`);
  // p99s for every variant this run started.
  for (const v of variants())
    console.log(
      `daemon start-up p99, ${v.name}: ${round(summary(boots(plain, v.name).ms).p99)} ms, under CPUQuota=25% ${round(summary(boots(quota, v.name).ms).p99)} ms`,
    );
  if (variants().some((v) => v.name === 'snapshot') && variants().some((v) => v.name === 'codeCache'))
    console.log(
      `daemon start-up p99: ${round(summary(boots(plain, 'snapshot').ms).p99)} ms, without the snapshot ${round(summary(boots(plain, 'codeCache').ms).p99)} ms, under CPUQuota=25%: ${round(summary(boots(quota, 'snapshot').ms).p99)} ms` +
        `\nwith / without the snapshot (median): ${x(med(boots(plain, 'snapshot').ms), med(boots(plain, 'codeCache').ms))}, under CPUQuota=25% ${x(med(boots(quota, 'snapshot').ms), med(boots(quota, 'codeCache').ms))}`,
    );
  const sum = (r: Record<string, Boots>) =>
    Object.fromEntries(
      variants().map((v) => [
        v.name,
        {
          ms: summary(boots(r, v.name).ms),
          cpuMs: summary(boots(r, v.name).cpuMs),
          raw: boots(r, v.name).ms,
          marks: boots(r, v.name).marks,
        },
      ]),
    );
  return {
    wrong,
    result: {
      daemon: sum(plain),
      daemonQuota25: sum(quota),
      python: summary(py.ms),
      pythonQuota25: summary(pyQuota.ms),
      pythonCpuMs: summary([...py.cpuMs, ...pyQuota.cpuMs]),
      raw: { python: py.ms, pythonQuota: pyQuota.ms },
    },
  };
}

/** Idle memory (31 s after the start: after the heap trimmer's first check) with and without the snapshot,
 * `n` starts each in turns: what the snapshot costs (node keeps the snapshot's data for the process's life). */
async function snapshotMemory(sb: Sandbox, n: number) {
  const out: Record<string, ReturnType<typeof memory>[]> = { snapshot: [], codeCache: [] };
  for (let i = 0; i < n; i++) {
    for (const v of VARIANTS.slice(0, 2)) {
      await withVariant(sb, v, () => sb.execOk(['systemctl', 'restart', DAEMON_UNIT], { timeoutMs: 30_000 }));
      const pid = await mainPid(sb, DAEMON_UNIT);
      await sleep(31_000);
      out[v.name]?.push(memory(sb, pid));
    }
  }
  const med = (xs: number[]) => round(summary(xs).median, 2);
  const rows: (string | number)[][] = [[`idle, median of ${n}`, 'Pss_Anon MB', 'VmRSS MB']];
  for (const v of VARIANTS.slice(0, 2)) {
    const m = out[v.name] ?? [];
    rows.push([v.label, med(m.map((x) => x.anonMb)), med(m.map((x) => x.rssMb))]);
  }
  printTable('memory with and without the start-up snapshot (starts in turns)', rows);
  return out;
}

/** The median of each figure over runs (runs[0]'s other fields), with every run's figures beside it. */
function medianLoad(
  runs: Load[],
): Load & { runs: { requests_per_s: number[]; sequential_seconds: number[] } } {
  const first = runs[0] as Load;
  const med = (f: (l: Load) => number | undefined) => {
    const v = runs.map(f).filter((n): n is number => n !== undefined);
    return v.length > 0 ? summary(v).median : undefined;
  };
  return {
    ...first,
    requests_per_s: med((l) => l.requests_per_s) as number,
    concurrent: first.concurrent && {
      ...first.concurrent,
      open_seconds: med((l) => l.concurrent?.open_seconds),
    },
    sequential: {
      ...first.sequential,
      seconds: med((l) => l.sequential.seconds) as number,
      node_client_seconds: med((l) => l.sequential.node_client_seconds),
    },
    runs: {
      requests_per_s: runs.map((l) => l.requests_per_s),
      sequential_seconds: runs.map((l) => l.sequential.seconds),
    },
  };
}

/**
 * The sequential run with the client (loadgen) and each server's main thread on one CPU, the servers in
 * turns, `rounds` times; the medians, [python, daemon]. Why: on an idle VM a round trip between two CPUs
 * waits for the hypervisor to wake the other, halted vCPU, for either server alike (a C server that answers
 * in 3 µs of CPU took 30–38 µs a round trip across CPUs and 12 µs on one), and that wait, not the server,
 * then makes most of the wall time. The unpinned run stays in the table beside it. The server's affinity
 * is put back after each run. Needs loadgen (buildLoadgen).
 */
async function pinnedSequential(
  sb: Sandbox,
  servers: { socket: string; pid: number }[],
  sequential: number,
  rounds = 3,
): Promise<{ cpu: number; rounds: number; seconds: number[]; runs: number[][] }> {
  const cpu = 0;
  const runs = servers.map(() => [] as number[]);
  for (let r = 0; r < rounds; r++) {
    for (const [i, s] of servers.entries()) {
      // "pid 12's current affinity list: 0,1"
      const was = (await sb.execOk(['taskset', '-pc', String(s.pid)])).trim().split(/\s+/).pop() as string;
      await sb.execOk(['taskset', '-pc', String(cpu), String(s.pid)]);
      try {
        const res = await runAgent<{ seconds: number }>(
          sb,
          'seq',
          { socket: s.socket, sequential, cpu },
          { user: 'appuser', timeoutMs: 120_000 },
        );
        runs[i]?.push(res.seconds);
      } finally {
        await sb.execOk(['taskset', '-pc', was, String(s.pid)]);
      }
    }
  }
  return {
    cpu,
    rounds,
    seconds: runs.map((t) => summary(t).median),
    runs,
  };
}

async function main(): Promise<number> {
  const why = sandboxUnavailable();
  if (why) {
    log(`bench/versus: ${why}`);
    return 2;
  }
  const script = baselinePath();
  const n = setting('VERSUS_BOOT_RUNS', 3, 2);
  const perClient = setting('VERSUS_PER_CLIENT', 500, 100);
  const sequential = setting('VERSUS_SEQUENTIAL', 10_000, 2000);
  const loadRounds = setting('VERSUS_LOAD_ROUNDS', 3, 1);
  const jit = process.env.VERSUS_JIT === '1';
  const parts = new Set((process.env.VERSUS_PARTS || 'boot,bootmem,load').split(','));
  log('booting a sandbox...');
  const haveLoadgen = buildLoadgen();
  const sb = await Sandbox.start({ name: 'bench-versus' });
  try {
    await allActiveWithin(sb, 30_000);
    await sb.writeFile(PY_SCRIPT, readFileSync(script));
    const boot = parts.has('boot') ? await bootPart(sb, n) : undefined;
    const snapMem = parts.has('bootmem') ? await snapshotMemory(sb, n) : undefined;
    if (!parts.has('load')) {
      if (boot || snapMem)
        writeResult('versus', {
          baseline: BASELINE,
          boot: boot?.result,
          snapshotMemory: snapMem,
          firstAnswerNotAllActive: boot?.wrong,
        });
      return boot?.wrong ? 1 : 0;
    }
    // The baseline's last start (the boot part's) serves the load part.
    if (!boot) await runAgent(sb, 'pyboot', { script: PY_SCRIPT, socket: PY_SOCKET, n: 1, quota: '' });
    const daemonStarted = nowMs();
    const pyUnit = (await sb.execOk(['sh', '-c', "systemctl list-units --plain --no-legend 'py-baseline-*'"]))
      .trim()
      .split(/\s+/)[0] as string;
    const pyPid = await mainPid(sb, pyUnit);
    const load = (socket: string) =>
      runAgent<Load>(
        sb,
        'sockload',
        { socket, perClient, sequential },
        { user: 'appuser', timeoutMs: 300_000 },
      );

    // Idle: the daemon 30 s after its last start (its heap trimmer's first check is one interval after ready).
    await sleep(Math.max(0, 30_000 - (nowMs() - daemonStarted)));
    const pid = await mainPid(sb, DAEMON_UNIT);
    const idle = { daemon: memory(sb, pid), python: memory(sb, pyPid) };
    log('load: the baseline, the daemon...');
    // In turns, `rounds` times; medians (one run of 16,000 requests is a fifth of a second: one GC or a
    // neighbour's burst moves it by a tenth).
    const pyRuns: Load[] = [];
    const dRuns: Load[] = [];
    for (let r = 0; r < loadRounds; r++) {
      pyRuns.push(await load(PY_SOCKET));
      dRuns.push(await load('/run/openauto/system.sock'));
    }
    const pyLoad = medianLoad(pyRuns);
    const dLoad = medianLoad(dRuns);
    const pinned = haveLoadgen
      ? await pinnedSequential(
          sb,
          [
            { socket: PY_SOCKET, pid: pyPid },
            { socket: '/run/openauto/system.sock', pid },
          ],
          sequential,
        )
      : undefined;
    const floor = pinned
      ? await runAgent<{ free: number; pinned: number; cpu: number }>(
          sb,
          'floor',
          { sequential, rounds: loadRounds },
          { user: 'appuser', timeoutMs: 300_000 },
        )
      : undefined;
    // After the heap trimmer's next check (every 30 s).
    await sleep(31_000);
    const after = { daemon: memory(sb, pid), python: memory(sb, pyPid) };

    let jitRes: { load: Load; idle: ReturnType<typeof memory>; after: ReturnType<typeof memory> } | undefined;
    if (jit) {
      log('the JIT variant (drop-in)...');
      const unit = await sb.execOk(['systemctl', 'cat', DAEMON_UNIT]);
      const exec = /^ExecStart=(.*)$/m.exec(unit)?.[1] ?? '';
      const jitExec = exec.replace(/ --lite-mode| --jitless| --no-expose-wasm/g, '');
      await sb.execOk(['mkdir', '-p', dirname(DROPIN)]);
      await sb.writeFile(DROPIN, `[Service]\nExecStart=\nExecStart=${jitExec}\nMemoryDenyWriteExecute=no\n`);
      await sb.execOk(['systemctl', 'daemon-reload']);
      await sb.execOk(['systemctl', 'restart', DAEMON_UNIT]);
      await allActiveWithin(sb, 30_000);
      const jpid = await mainPid(sb, DAEMON_UNIT);
      await sleep(30_000);
      const jIdle = memory(sb, jpid);
      const jRuns: Load[] = [];
      for (let r = 0; r < loadRounds; r++) jRuns.push(await load('/run/openauto/system.sock'));
      const jLoad = medianLoad(jRuns);
      await sleep(31_000);
      jitRes = { load: jLoad, idle: jIdle, after: memory(sb, jpid) };
      await sb.exec(['rm', '-f', DROPIN]);
    }

    const x = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
    const rows: (string | number)[][] = [
      ['figure', 'python', 'daemon', 'daemon / python', ...(jitRes ? ['daemon, JIT', 'JIT / python'] : [])],
      [
        `32 clients get_health, req/s (client: ${pyLoad.concurrent?.client ?? 'node'}; median of ${loadRounds})`,
        pyLoad.requests_per_s,
        dLoad.requests_per_s,
        x(dLoad.requests_per_s, pyLoad.requests_per_s),
        ...(jitRes ? [jitRes.load.requests_per_s, x(jitRes.load.requests_per_s, pyLoad.requests_per_s)] : []),
      ],
      [
        `${sequential} sequential mixed requests, wall s (client: ${pyLoad.sequential.client ?? 'node'}; median of ${loadRounds})`,
        round(pyLoad.sequential.seconds, 2),
        round(dLoad.sequential.seconds, 2),
        x(dLoad.sequential.seconds, pyLoad.sequential.seconds),
        ...(jitRes
          ? [
              round(jitRes.load.sequential.seconds, 2),
              x(jitRes.load.sequential.seconds, pyLoad.sequential.seconds),
            ]
          : []),
      ],
    ];
    const openMs = (l: Load) => (l.concurrent?.open_seconds ?? Number.NaN) * 1000;
    if (pyLoad.concurrent?.open_seconds !== undefined)
      rows.splice(2, 0, [
        '32 connections opened, each answered one ping (before the clock above), ms',
        round(openMs(pyLoad), 1),
        round(openMs(dLoad), 1),
        x(openMs(dLoad), openMs(pyLoad)),
        ...(jitRes ? [round(openMs(jitRes.load), 1), x(openMs(jitRes.load), openMs(pyLoad))] : []),
      ]);
    if (pinned)
      rows.push([
        `${sequential} sequential mixed requests, wall s (loadgen and server on CPU ${pinned.cpu}, median of ${pinned.rounds})`,
        round(pinned.seconds[0] as number, 3),
        round(pinned.seconds[1] as number, 3),
        x(pinned.seconds[1] as number, pinned.seconds[0] as number),
        ...(jitRes ? ['', ''] : []),
      ]);
    // The same run from the node client, where loadgen took the figure above: its own cost per round trip
    // is in both servers' times.
    const nodeSeq = (l: Load) => l.sequential.node_client_seconds ?? l.sequential.seconds;
    if (pyLoad.sequential.client && pyLoad.sequential.client !== 'node')
      rows.push([
        `${sequential} sequential mixed requests, wall s (client: node)`,
        round(nodeSeq(pyLoad), 2),
        round(nodeSeq(dLoad), 2),
        x(nodeSeq(dLoad), nodeSeq(pyLoad)),
        ...(jitRes ? [round(nodeSeq(jitRes.load), 2), x(nodeSeq(jitRes.load), nodeSeq(pyLoad))] : []),
      ]);
    for (const [label, k] of [
      ['idle', 'idle'],
      ['after the load', 'after'],
    ] as const) {
      const p = k === 'idle' ? idle : after;
      const j = jitRes?.[k];
      rows.push([
        `anonymous memory (Pss_Anon) ${label}, MB`,
        p.python.anonMb,
        p.daemon.anonMb,
        x(p.daemon.anonMb, p.python.anonMb),
        ...(j ? [j.anonMb, x(j.anonMb, p.python.anonMb)] : []),
      ]);
      rows.push([
        `VmRSS ${label}, MB`,
        p.python.rssMb,
        p.daemon.rssMb,
        x(p.daemon.rssMb, p.python.rssMb),
        ...(j ? [j.rssMb, x(j.rssMb, p.python.rssMb)] : []),
      ]);
    }
    printTable('openauto-system against the Python baseline, one sandbox, one run', rows);
    if (floor) {
      const us = (s: number) => Math.round((s / sequential) * 1e6);
      console.log(
        `\nThe floor: bench/floor-server.c, fixed answers in C, takes ${round(floor.free, 3)} s for the ` +
          `${sequential} sequential requests placed freely and ${round(floor.pinned, 3)} s on one CPU ` +
          `(${us(floor.free)} against ${us(floor.pinned)} µs a round trip, medians of ${loadRounds}). ` +
          `No server removes the first figure; between two CPUs it is mostly waking the other one.`,
      );
    }
    const builtins = builtinCost();
    console.log(
      `\nnode requiring net, crypto, stream, fs/promises, child_process (host, median of 7): ` +
        `${builtins.plain} ms plain, ${builtins.unitFlags} ms with the unit's V8 flags ` +
        `(any V8 flag makes node set aside its built-in code cache for its own modules)`,
    );
    const wrong = boot?.wrong ?? 0;
    const file = writeResult('versus', {
      baseline: BASELINE,
      boot: boot?.result,
      firstAnswerNotAllActive: wrong,
      builtinRequireMs: builtins,
      load: { python: pyLoad, daemon: dLoad, daemonJit: jitRes?.load, pinnedSequential: pinned, floor },
      memory: { idle, after, jit: jitRes && { idle: jitRes.idle, after: jitRes.after } },
      snapshotMemory: snapMem,
    });
    console.log(`wrote ${file}`);
    return wrong === 0 ? 0 : 1;
  } finally {
    await sb.stop();
  }
}

runMain('versus', main);
