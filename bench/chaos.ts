// Chaos: the real daemon in a sandbox (shipped timings) for CHAOS_MINUTES while, every 0.3–2.5 s at random,
// one of: SIGKILL of hostapd's, bluetoothd's or networkd's main process (the stand-ins; networkd also has
// systemd's own Restart=on-failure), `systemctl restart bluetooth` (out of band, as a package upgrade
// would), ApplyConfig wifi after rewriting config.yaml with the other of two SSIDs (D-Bus or socket, as the
// app user), and `systemctl kill -s KILL --kill-whom=main openauto-system` (Restart=always brings it back, or D-Bus
// activation by a client). A light client load (agent.ts `load`) runs throughout; its errors while the
// daemon is down are expected and only reported. hostapd.conf is read from the host every 5 ms.
// Afterwards:
//   - every service healthy: GetHealth all active within CHAOS_SETTLE_SECONDS;
//   - no two restarts of one unit overlapped: PID 1's journal messages carry JOB_ID, and after a job's
//     "Starting…" or "Stopping…" the next message for that unit must be that phase's result; another job, or
//     the same job stopping again mid-start (a second restart merged into a running one), is an overlap
//     (see jobOverlaps in ops.ts). Overlaps that involve this run's own `systemctl restart bluetooth` are
//     counted apart: the daemon cannot coordinate with a restart it never sees;
//   - no torn file: every read of hostapd.conf was one of its known renderings (the installed file and the
//     daemon's rendering for each SSID, captured before the chaos), it never went missing, and no temp file
//     of an interrupted write is left.
// Prints a table; exits 1 when a check failed.
//
//   node dist/bench/chaos.js        (as root; the daemon must be built)
// Environment: CHAOS_MINUTES (10), CHAOS_SETTLE_SECONDS (90), CHAOS_SEED (random); BENCH_QUICK=1: 1 minute.
import { APP_USER, Sandbox, sandboxUnavailable } from '../test/sandbox/harness.js';
import { getHealth } from '../test/sandbox/helpers-health.js';
import {
  allActiveWithin,
  log,
  nowMs,
  printTable,
  readDaemon,
  round,
  runAgent,
  runMain,
  setting,
  sleep,
  writeResult,
} from './lib.js';
import {
  AppConfig,
  type JobEntry,
  jobEntries,
  jobOverlaps,
  operation,
  readHostapdConf,
  SSIDS,
  type Transport,
  tempFiles,
} from './ops.js';

const MINUTES = setting('CHAOS_MINUTES', 10, 1);
const SETTLE_SECONDS = setting('CHAOS_SETTLE_SECONDS', 90, 90);
const SEED = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));
const UNITS = ['hostapd.service', 'bluetooth.service', 'systemd-networkd.service'];

/** mulberry32: a small seeded generator, so a run can be repeated (CHAOS_SEED). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Action =
  | 'kill hostapd'
  | 'kill bluetooth'
  | 'kill networkd'
  | 'systemctl restart bluetooth'
  | 'apply wifi'
  | 'kill the daemon';

const WEIGHTS: [Action, number][] = [
  ['kill hostapd', 3],
  ['kill bluetooth', 2],
  ['kill networkd', 2],
  ['systemctl restart bluetooth', 2],
  ['apply wifi', 3],
  ['kill the daemon', 1],
];

interface ActionRecord {
  action: Action;
  t: number;
  end?: number;
  outcome: string;
}

/** Reads hostapd.conf from the host every 5 ms and checks it against the known renderings. */
class TornFileWatch {
  reads = 0;
  missing = 0;
  unknown = 0;
  readonly examples: string[] = [];
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly sb: Sandbox,
    private readonly known: Set<string>,
  ) {}

  start(): void {
    this.loop = (async () => {
      while (!this.stopped) {
        try {
          const text = await readHostapdConf(this.sb);
          this.reads++;
          if (!this.known.has(text)) {
            this.unknown++;
            if (this.examples.length < 3) this.examples.push(text);
          }
        } catch {
          this.missing++;
        }
        await sleep(5);
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }
}

async function main(): Promise<number> {
  const why = sandboxUnavailable();
  if (why) {
    log(`bench/chaos: ${why}`);
    return 2;
  }
  const random = rng(SEED);
  log(`booting a sandbox (daemon with its default timings); chaos for ${MINUTES} min, seed ${SEED}...`);
  const sb = await Sandbox.start({ name: 'bench-chaos' });
  try {
    await allActiveWithin(sb, 30_000);
    const cfg = await AppConfig.open(sb);

    // The known renderings: the installed file, and the daemon's own for each SSID.
    const known = new Set<string>([await readHostapdConf(sb)]);
    for (const ssid of SSIDS) {
      await cfg.writeSsid(ssid);
      const r = await operation(sb, 'dbus', 'ApplyConfig', 'wifi');
      if (!r.ok) throw new Error(`priming apply failed: ${r.error}: ${r.message}`);
      known.add(await readHostapdConf(sb));
    }
    await allActiveWithin(sb, 30_000);
    const firstDaemon = await readDaemon(sb);
    const watch = new TornFileWatch(sb, known);
    watch.start();

    const t0 = nowMs();
    const deadline = t0 + MINUTES * 60_000;
    const load = runAgent<{
      total_ok: number;
      total_errors: number;
      kinds: Record<string, { errors: Record<string, number> }>;
    }>(
      sb,
      'load',
      { seconds: MINUTES * 60, dbusWorkers: 1, socketWorkers: 1, paceMs: 50, churnEvery: 200 },
      { user: APP_USER, timeoutMs: MINUTES * 60_000 + 180_000 },
    );

    const records: ActionRecord[] = [];
    const inFlight = new Map<Action, Promise<void>>();
    let applies = 0;
    const total = WEIGHTS.reduce((s, [, w]) => s + w, 0);
    const pick = (): Action => {
      let x = random() * total;
      for (const [a, w] of WEIGHTS) {
        x -= w;
        if (x < 0) return a;
      }
      return 'apply wifi';
    };
    const kill = async (unit: string): Promise<string> => {
      const r = await sb.systemctl(['kill', '-s', 'KILL', '--kill-whom=main', unit]);
      return r.code === 0 ? 'killed' : `not killed (${r.stderr.trim().split('\n')[0]})`;
    };
    const run = async (action: Action): Promise<string> => {
      switch (action) {
        case 'kill hostapd':
          return kill('hostapd.service');
        case 'kill bluetooth':
          return kill('bluetooth.service');
        case 'kill networkd':
          return kill('systemd-networkd.service');
        case 'systemctl restart bluetooth': {
          const r = await sb.systemctl(['restart', 'bluetooth.service'], { timeoutMs: 60_000 });
          return r.code === 0 ? 'restarted' : `exit ${r.code}`;
        }
        case 'kill the daemon': {
          // The daemon is one process; the whole-cgroup kill reports EIO for the container's cgroup.
          const r = await sb.systemctl(['kill', '-s', 'KILL', '--kill-whom=main', 'openauto-system.service']);
          return r.code === 0 ? 'killed' : `not killed (${r.stderr.trim().split('\n')[0]})`;
        }
        case 'apply wifi': {
          const transport: Transport = applies % 2 === 0 ? 'dbus' : 'socket';
          const ssid = SSIDS[applies++ % 2] as string;
          await cfg.writeSsid(ssid);
          const r = await operation(sb, transport, 'ApplyConfig', 'wifi');
          return r.ok ? `ok over ${transport}` : `${r.error} over ${transport}`;
        }
      }
    };

    log('chaos...');
    let lastBeat = t0;
    while (nowMs() < deadline) {
      const action = pick();
      if (!inFlight.has(action)) {
        const rec: ActionRecord = { action, t: nowMs(), outcome: '' };
        records.push(rec);
        inFlight.set(
          action,
          run(action)
            .then(
              (o) => {
                rec.outcome = o;
              },
              (err: unknown) => {
                rec.outcome = `error: ${err instanceof Error ? err.message : String(err)}`;
              },
            )
            .finally(() => {
              rec.end = nowMs();
              inFlight.delete(action);
            }),
        );
      }
      if (nowMs() - lastBeat > 30_000) {
        lastBeat = nowMs();
        log(`  ${round((lastBeat - t0) / 1000, 0)} s: ${records.length} actions`);
      }
      await sleep(300 + random() * 2200);
    }
    await Promise.all(inFlight.values());
    const chaosSeconds = (nowMs() - t0) / 1000;
    log(
      `chaos over after ${round(chaosSeconds)} s (${records.length} actions); waiting for every service...`,
    );

    // Every service healthy within the bound.
    const settleStart = nowMs();
    let recoveredMs = Number.NaN;
    let health: Record<string, string> = {};
    try {
      recoveredMs = await allActiveWithin(sb, SETTLE_SECONDS * 1000);
    } catch {
      // reported below
    }
    try {
      health = await getHealth(sb);
    } catch (err) {
      health = { error: err instanceof Error ? err.message : String(err) };
    }
    const unitStates: Record<string, string> = {};
    for (const u of [...UNITS, 'openauto-system.service']) unitStates[u] = await sb.unitState(u);
    const loadResult = await load;
    await watch.stop();
    const leftovers = await tempFiles(sb);
    const lastDaemon = await readDaemon(sb).catch(() => undefined);

    // Jobs that overlapped, from PID 1's journal.
    const entries = await jobEntries(sb, UNITS, t0 - 1000);
    const overlaps = jobOverlaps(entries);
    const ours = records.filter((r) => r.action === 'systemctl restart bluetooth');
    const external = (e: JobEntry) =>
      e.unit === 'bluetooth.service' && ours.some((r) => e.t >= r.t - 50 && e.t <= (r.end ?? nowMs()) + 50);
    const daemonOverlaps = overlaps.filter((o) => !external(o.open) && !external(o.other));
    const externalOverlaps = overlaps.length - daemonOverlaps.length;

    const counts = new Map<string, number>();
    for (const r of records) {
      const key = `${r.action}: ${r.outcome.replace(/ \(.*$/, '')}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    const loadErrors: Record<string, number> = {};
    for (const [kind, v] of Object.entries(loadResult.kinds))
      for (const [name, n] of Object.entries(v.errors)) loadErrors[`${kind} ${name}`] = n;

    const allActive = Object.values(health).every((s) => s === 'active') && Object.keys(health).length === 3;
    const checks = [
      {
        name: `every service active within ${SETTLE_SECONDS} s`,
        value: `${JSON.stringify(health)}${Number.isFinite(recoveredMs) ? ` after ${round(recoveredMs / 1000)} s` : ''}`,
        ok: allActive && Number.isFinite(recoveredMs),
      },
      {
        name: 'units active (systemd)',
        value: Object.entries(unitStates)
          .map(([u, s]) => `${u.replace('.service', '')} ${s}`)
          .join(', '),
        ok: Object.values(unitStates).every((s) => s === 'active'),
      },
      {
        name: 'overlapping restarts of one unit',
        value: `${daemonOverlaps.length} (and ${externalOverlaps} with our own systemctl restart) in ${entries.length} job messages`,
        ok: daemonOverlaps.length === 0,
      },
      {
        name: 'hostapd.conf reads not a known rendering',
        value: `${watch.unknown} of ${watch.reads} (${known.size} known renderings)`,
        ok: watch.unknown === 0 && watch.reads > 0,
      },
      { name: 'hostapd.conf missing when read', value: String(watch.missing), ok: watch.missing === 0 },
      {
        name: 'temp files left',
        value: leftovers.length ? leftovers.join(' ') : 'none',
        ok: leftovers.length === 0,
      },
    ];

    printTable(`chaos: ${round(chaosSeconds / 60)} min, ${records.length} actions, seed ${SEED}`, [
      ['check', 'value', 'result'],
      ...checks.map((c) => [c.name, c.value, c.ok ? 'PASS' : 'FAIL']),
    ]);
    printTable('actions', [
      ['action: outcome', 'count'],
      ...[...counts.entries()].sort().map(([k, v]) => [k, v]),
    ]);
    console.log(
      `\nclient load: ${loadResult.total_ok} answers, ${loadResult.total_errors} errors (expected while the daemon is down): ${JSON.stringify(loadErrors)}`,
    );
    console.log(
      `daemon: PID ${firstDaemon.pid} → ${lastDaemon?.pid ?? 'none'} (${records.filter((r) => r.action === 'kill the daemon').length} kills), settle took ${round((nowMs() - settleStart) / 1000)} s`,
    );
    for (const o of overlaps.slice(0, 10))
      console.log(
        `  overlap ${o.unit}: job ${o.open.jobId} (${o.open.message}) then job ${o.other.jobId} (${o.other.message}) after ${round(o.other.t - o.open.t)} ms${external(o.open) || external(o.other) ? ' [our systemctl restart]' : ''}`,
      );
    for (const x of watch.examples) console.log(`  unknown hostapd.conf content:\n${x}`);

    const failed = checks.filter((c) => !c.ok);
    const file = writeResult('chaos', {
      minutes: MINUTES,
      seed: SEED,
      settleBoundSeconds: SETTLE_SECONDS,
      daemonSettings: 'defaults',
      checks,
      passed: failed.length === 0,
      recoveredMs,
      actions: Object.fromEntries(counts),
      load: loadResult,
      tornFile: { reads: watch.reads, unknown: watch.unknown, missing: watch.missing, known: known.size },
      jobMessages: entries.length,
      overlaps,
      externalOverlaps,
      records,
    });
    console.log(`\nwrote ${file}`);
    if (failed.length) console.log(`FAILED: ${failed.map((c) => c.name).join('; ')}`);
    return failed.length ? 1 : 0;
  } finally {
    await sb.stop();
  }
}

runMain('chaos', main);
