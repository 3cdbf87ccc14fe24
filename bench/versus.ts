// The daemon side by side with a Python baseline in one sandbox and one run, every figure printed as a ratio
// to the baseline (the machine is shared: figures from different runs do not compare). The baseline is
// py-baseline.py, a minimal asyncio NDJSON server over a Unix socket (the old Python service's runtime, no
// D-Bus, answers from fixed data): a floor for a Python service, not a copy of one.
//   1. start-up: exec (systemd's ExecMainStartTimestamp) → bus name owned (claimed after the first full
//      health check; the activation runs check that the first answer is all active), limited to 25% of a
//      core (a slow-CPU stand-in for a Pi, see Throttle) and not, each with and without the code cache (the
//      old variant); the baseline: exec → its first get_health answer, throttled and not. For every start
//      also the CPU time the process had used when it answered (schedstat): start-up's cost whatever the
//      load of the machine, where the wall times move with the other work on it;
//   2. memory when idle (30 s after the daemon's last start; Pss_Anon of smaps_rollup, VmRSS beside it);
//   3. 32 socket clients sending get_health one after another (throughput), then 10,000 sequential mixed
//      requests (get_health, get_status, ping) on one connection (wall time), as the app user; memory 31 s
//      after that (after the heap trimmer's next check);
//   4. the same load and memory with the JIT on (no --lite-mode/--jitless, MemoryDenyWriteExecute off, a
//      drop-in), for the trade-off, with VERSUS_JIT=1 (another minute or so).
// Prints a table and writes bench/results/versus.json. About two minutes, a minute of it the two waits for the
// heap trimmer's check before reading memory (the readings are meant to be what a quiet daemon holds).
//
//   PY_BASELINE=path/to/py-baseline.py node dist/bench/versus.js     (as root; the daemon must be built)
// Environment: PY_BASELINE (default: ../shared/bench/py-baseline.py next to the checkout), VERSUS_BOOT_RUNS
// (starts per way and variant, default 3), VERSUS_PER_CLIENT (500), VERSUS_SEQUENTIAL (10000), VERSUS_JIT (0).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { REPO_ROOT, Sandbox, sandboxUnavailable } from '../test/sandbox/harness.js';
import { mainPid, procDir } from '../test/sandbox/helpers-health.js';
import {
  allActiveWithin,
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
const DROPIN = '/run/systemd/system/openauto-system.service.d/bench-versus.conf';

function baselinePath(): string {
  const candidates = process.env.PY_BASELINE
    ? [process.env.PY_BASELINE]
    : [
        join(REPO_ROOT, '..', 'shared', 'bench', 'py-baseline.py'),
        join(REPO_ROOT, '..', '..', 'shared', 'bench', 'py-baseline.py'),
      ];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`no Python baseline at ${candidates.join(' or ')}: set PY_BASELINE`);
  return resolve(found);
}

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
  sequential: { seconds: number; mean_answer_bytes: number };
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
  const unit = readFileSync(join(REPO_ROOT, 'systemd', 'openauto-system.service'), 'utf8');
  const flags = (/^ExecStart=(.*)$/m.exec(unit)?.[1] ?? '').split(' ').filter((f) => f.startsWith('--'));
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

/** Runs fn with the daemon's code cache moved aside (the bundle then compiles as before the cache). */
async function withoutCodeCache<T>(sb: Sandbox, fn: () => Promise<T>): Promise<T> {
  await sb.execOk(['mv', CODE_CACHE, `${CODE_CACHE}.off`]);
  try {
    return await fn();
  } finally {
    await sb.execOk(['mv', `${CODE_CACHE}.off`, CODE_CACHE]);
  }
}

async function daemonBoot(sb: Sandbox, n: number, quota: string) {
  await sb.execOk(['systemctl', 'set-property', '--runtime', DAEMON_UNIT, `CPUQuota=${quota}`]);
  const r = await runAgent<{ runs: StartRun[] }>(sb, 'startup', { n }, { timeoutMs: 60_000 + n * 30_000 });
  const wrong = r.runs.filter((x) => x.healthAllActive === false).length;
  return {
    ms: r.runs.map((x) => x.execToNameMs),
    cpuMs: r.runs.map((x) => x.cpuMs).filter((x) => Number.isFinite(x)),
    firstAnswerNotAllActive: wrong,
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
  const jit = process.env.VERSUS_JIT === '1';
  log('booting a sandbox...');
  const sb = await Sandbox.start({ name: 'bench-versus' });
  try {
    await allActiveWithin(sb, 30_000);
    await sb.writeFile(PY_SCRIPT, readFileSync(script));
    log('start-up under 25% of a core, then as shipped...');
    const throttle = new Throttle(sb);
    let bootQuota: Awaited<ReturnType<typeof daemonBoot>>;
    let bootQuotaNoCache: Awaited<ReturnType<typeof daemonBoot>>;
    let pyQuota: { ms: number[]; cpuMs: number[] };
    try {
      await throttle.on();
      bootQuota = await daemonBoot(sb, n, throttle.unitQuota);
      bootQuotaNoCache = await withoutCodeCache(sb, () => daemonBoot(sb, n, throttle.unitQuota));
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
    // The old variant in the same run: the bundle compiled without its code cache.
    const bootNoCache = await withoutCodeCache(sb, () => daemonBoot(sb, n, ''));
    const boot = await daemonBoot(sb, n, '');
    const daemonStarted = nowMs();
    const py = await runAgent<{ ms: number[]; cpuMs: number[] }>(sb, 'pyboot', {
      script: PY_SCRIPT,
      socket: PY_SOCKET,
      n: n * 2,
      quota: '',
    });
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
    const pyLoad = await load(PY_SOCKET);
    const dLoad = await load('/run/openauto/system.sock');
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
      const jLoad = await load('/run/openauto/system.sock');
      await sleep(31_000);
      jitRes = { load: jLoad, idle: jIdle, after: memory(sb, jpid) };
      await sb.exec(['rm', '-f', DROPIN]);
    }

    const med = (xs: number[]) => summary(xs).median;
    const x = (a: number, b: number) => `${(a / b).toFixed(2)}×`;
    const rows: (string | number)[][] = [
      ['figure', 'python', 'daemon', 'daemon / python', ...(jitRes ? ['daemon, JIT', 'JIT / python'] : [])],
      [
        'exec → answering, median ms (daemon: bus name owned)',
        round(med(py.ms)),
        round(med(boot.ms)),
        x(med(boot.ms), med(py.ms)),
      ],
      [
        '… without the code cache (the old variant), median ms',
        round(med(py.ms)),
        round(med(bootNoCache.ms)),
        x(med(bootNoCache.ms), med(py.ms)),
      ],
      [
        '… under CPUQuota=25%, median ms',
        round(med(pyQuota.ms)),
        round(med(bootQuota.ms)),
        x(med(bootQuota.ms), med(pyQuota.ms)),
      ],
      [
        '… under CPUQuota=25% without the code cache, median ms',
        round(med(pyQuota.ms)),
        round(med(bootQuotaNoCache.ms)),
        x(med(bootQuotaNoCache.ms), med(pyQuota.ms)),
      ],
      [
        'CPU time of the process at its first answer, median ms',
        round(med(py.cpuMs)),
        round(med([...boot.cpuMs, ...bootQuota.cpuMs])),
        x(med([...boot.cpuMs, ...bootQuota.cpuMs]), med(py.cpuMs)),
      ],
      [
        '… without the code cache, median ms',
        round(med(py.cpuMs)),
        round(med([...bootNoCache.cpuMs, ...bootQuotaNoCache.cpuMs])),
        x(med([...bootNoCache.cpuMs, ...bootQuotaNoCache.cpuMs]), med(py.cpuMs)),
      ],
      [
        '32 clients get_health, req/s',
        pyLoad.requests_per_s,
        dLoad.requests_per_s,
        x(dLoad.requests_per_s, pyLoad.requests_per_s),
        ...(jitRes ? [jitRes.load.requests_per_s, x(jitRes.load.requests_per_s, pyLoad.requests_per_s)] : []),
      ],
      [
        `${sequential} sequential mixed requests, wall s`,
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
    const builtins = builtinCost();
    console.log(
      `\nnode requiring net, crypto, stream, fs/promises, child_process (host, median of 7): ` +
        `${builtins.plain} ms plain, ${builtins.unitFlags} ms with the unit's V8 flags ` +
        `(any V8 flag makes node set aside its built-in code cache for its own modules)`,
    );
    const wrong =
      boot.firstAnswerNotAllActive +
      bootQuota.firstAnswerNotAllActive +
      bootNoCache.firstAnswerNotAllActive +
      bootQuotaNoCache.firstAnswerNotAllActive;
    console.log(
      `\nstarts: ${n} per way (activation, StartUnit) and variant; baseline ${n * 2}; ` +
        `first activation answers not all active: ${wrong}` +
        `\ndaemon start-up p99: ${round(summary(boot.ms).p99)} ms, without the code cache ${round(summary(bootNoCache.ms).p99)} ms, under CPUQuota=25%: ${round(summary(bootQuota.ms).p99)} ms` +
        `\nwith / without the code cache (median): ${x(med(boot.ms), med(bootNoCache.ms))}, under CPUQuota=25% ${x(med(bootQuota.ms), med(bootQuotaNoCache.ms))}`,
    );
    const file = writeResult('versus', {
      baseline: 'py-baseline.py (asyncio NDJSON over a Unix socket, fixed answers)',
      boot: {
        daemon: summary(boot.ms),
        daemonNoCodeCache: summary(bootNoCache.ms),
        daemonQuota25: summary(bootQuota.ms),
        daemonQuota25NoCodeCache: summary(bootQuotaNoCache.ms),
        cpuMs: {
          daemon: summary([...boot.cpuMs, ...bootQuota.cpuMs]),
          daemonNoCodeCache: summary([...bootNoCache.cpuMs, ...bootQuotaNoCache.cpuMs]),
          python: summary([...py.cpuMs, ...pyQuota.cpuMs]),
        },
        python: summary(py.ms),
        pythonQuota25: summary(pyQuota.ms),
      },
      firstAnswerNotAllActive: wrong,
      builtinRequireMs: builtins,
      load: { python: pyLoad, daemon: dLoad, daemonJit: jitRes?.load },
      memory: { idle, after, jit: jitRes && { idle: jitRes.idle, after: jitRes.after } },
      raw: {
        boot: boot.ms,
        bootNoCodeCache: bootNoCache.ms,
        bootQuota: bootQuota.ms,
        python: py.ms,
        pythonQuota: pyQuota.ms,
      },
    });
    console.log(`wrote ${file}`);
    return wrong === 0 ? 0 : 1;
  } finally {
    await sb.stop();
  }
}

runMain('versus', main);
