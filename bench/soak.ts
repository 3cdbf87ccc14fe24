// Soak: the real daemon in a sandbox (shipped timings) under mixed clients for SOAK_MINUTES, with config
// applies and restarts, then checked for errors and leaks.
//   - clients (agent.ts `load`, as the app user): 2 D-Bus and 2 socket workers sending GetHealth/GetStatus
//     (get_health/get_status/ping) every 20 ms each, each reopening its connection every 500 requests, plus a
//     D-Bus HealthChanged subscriber and a socket `subscribe` client;
//   - every SOAK_OPS_SECONDS one operation, in turn: ApplyConfig wifi after rewriting config.yaml with the
//     other of two SSIDs (so every apply writes hostapd.conf and restarts hostapd), and RestartService of
//     hostapd, networkd, bluetooth in rotation; alternately over D-Bus and the socket, as the app user;
//   - every SOAK_SAMPLE_SECONDS: RSS, descriptors, threads, and the bus's count of the daemon's match rules
//     (org.freedesktop.DBus.Debug.Stats.GetConnectionStats).
// A warm-up (the same load, two applies and a restart of each service) comes first; the leak checks
// compare quiet moments (no client connected, all services active, 35 s settled) before and after.
// Checks: no error answer at all; every operation succeeded as expected; the daemon never restarted; RSS
// grew less than 2 MB and its anonymous part less than 1 MB; the same descriptors and match rules; every service active and both faces answering
// at the end. Prints a table; exits 1 when a check failed.
//
//   node dist/bench/soak.js        (as root; the daemon must be built)
// Environment: SOAK_MINUTES (30), SOAK_OPS_SECONDS (10), SOAK_SAMPLE_SECONDS (30), SOAK_WARMUP_SECONDS (60);
// BENCH_QUICK=1 makes them 1, 5, 10, 15. SOAK_NODE_OPTIONS: NODE_OPTIONS for the daemon (e.g.
// --max-old-space-size=32: with V8's heap capped, a leak cannot hide in the slack V8 leaves before it
// collects; the result is then written to soak-<options>.json).
import { APP_USER, Sandbox, sandboxUnavailable } from '../test/sandbox/harness.js';
import { getHealth } from '../test/sandbox/helpers-health.js';
import {
  allActiveWithin,
  type DaemonReading,
  log,
  mb,
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
import { AppConfig, type OpResult, operation, readHostapdConf, SSIDS, type Transport } from './ops.js';

const MINUTES = setting('SOAK_MINUTES', 30, 1);
const OPS_SECONDS = setting('SOAK_OPS_SECONDS', 10, 5);
const SAMPLE_SECONDS = setting('SOAK_SAMPLE_SECONDS', 30, 10);
const WARMUP_SECONDS = setting('SOAK_WARMUP_SECONDS', 60, 15);
const LOAD = { dbusWorkers: 2, socketWorkers: 2, paceMs: 20, churnEvery: 500 };
const RSS_GROWTH_LIMIT_MB = 2;
const ANON_GROWTH_LIMIT_MB = 1;
const SERVICES = ['hostapd', 'networkd', 'bluetooth'] as const;
const NODE_OPTIONS = process.env.SOAK_NODE_OPTIONS ?? '';

interface LoadResult {
  seconds: number;
  reconnects: number;
  dbus_signals: number;
  socket_events: number;
  socket_resubscribes: number;
  total_ok: number;
  total_errors: number;
  kinds: Record<
    string,
    {
      ok: number;
      errors: Record<string, number>;
      latency: { median_us: number; p99_us: number; max_us: number };
    }
  >;
  examples: string[];
}

interface OpRecord extends OpResult {
  t: number;
  what: string;
  transport: Transport;
  /** Why the result is not the one expected, if it is not. */
  problem?: string;
}

/** Runs the k-th operation of the rotation and checks its result. */
class Operations {
  readonly done: OpRecord[] = [];
  private k = 0;
  private applies = 0;
  constructor(
    private readonly sb: Sandbox,
    private readonly cfg: AppConfig,
  ) {}

  async next(): Promise<OpRecord> {
    const k = this.k++;
    const transport: Transport = Math.floor(k / 2) % 2 === 0 ? 'dbus' : 'socket';
    let rec: OpRecord;
    if (k % 2 === 0) {
      const ssid = SSIDS[this.applies++ % 2] as string;
      await this.cfg.writeSsid(ssid);
      const t = nowMs();
      const r = await operation(this.sb, transport, 'ApplyConfig', 'wifi');
      rec = { ...r, t, what: `apply wifi (ssid ${ssid})`, transport };
      if (!r.ok) rec.problem = `${r.error}: ${r.message}`;
      else {
        const changed =
          transport === 'dbus' ? (r.result as unknown[])[0] : (r.result as { changed: boolean }).changed;
        const conf = await readHostapdConf(this.sb);
        if (changed !== true) rec.problem = `changed=${String(changed)}`;
        else if (!conf.split('\n').includes(`ssid=${ssid}`))
          rec.problem = 'hostapd.conf does not hold the new SSID';
      }
    } else {
      const service = SERVICES[Math.floor(k / 2) % SERVICES.length] as string;
      const t = nowMs();
      const r = await operation(this.sb, transport, 'RestartService', service);
      rec = { ...r, t, what: `restart ${service}`, transport };
      if (!r.ok) rec.problem = `${r.error}: ${r.message}`;
    }
    this.done.push(rec);
    return rec;
  }
}

/** Settle before a quiet reading: past one check of the daemon's heap trimmer (every 30 s), so both readings
 * see the heap after the trimmer, not wherever the last burst left it. */
const QUIET_SETTLE_MS = 35_000;

async function quietReading(sb: Sandbox): Promise<{ reading: DaemonReading; recoveryMs: number }> {
  const recoveryMs = await allActiveWithin(sb, 60_000);
  await sleep(QUIET_SETTLE_MS);
  return { reading: await readDaemon(sb), recoveryMs };
}

async function main(): Promise<number> {
  const why = sandboxUnavailable();
  if (why) {
    log(`bench/soak: ${why}`);
    return 2;
  }
  log(
    `booting a sandbox (daemon with its default timings${NODE_OPTIONS ? `, NODE_OPTIONS=${NODE_OPTIONS}` : ''}); soak of ${MINUTES} min...`,
  );
  const sb = await Sandbox.start({ name: 'bench-soak', env: NODE_OPTIONS ? { NODE_OPTIONS } : {} });
  try {
    await allActiveWithin(sb, 30_000);
    const start = await readDaemon(sb);
    const cfg = await AppConfig.open(sb);
    const ops = new Operations(sb, cfg);

    log(`warm-up: ${WARMUP_SECONDS} s of load, 2 applies, a restart of each service...`);
    const warmLoad = runAgent<LoadResult>(
      sb,
      'load',
      { ...LOAD, seconds: WARMUP_SECONDS },
      { user: APP_USER, timeoutMs: WARMUP_SECONDS * 1000 + 120_000 },
    );
    for (let i = 0; i < 6; i++) await ops.next();
    const warm = await warmLoad;
    const before = await quietReading(sb);
    log(
      `baseline: RSS ${mb(before.reading.rssKb)} MB, ${before.reading.fds} fds, ${before.reading.matchRules} match rules`,
    );

    log(`soak: ${MINUTES} min...`);
    const t0 = nowMs();
    const deadline = t0 + MINUTES * 60_000;
    const load = runAgent<LoadResult>(
      sb,
      'load',
      { ...LOAD, seconds: MINUTES * 60 },
      { user: APP_USER, timeoutMs: MINUTES * 60_000 + 120_000 },
    );
    const samples: DaemonReading[] = [];
    const sampling = (async () => {
      while (nowMs() < deadline) {
        await sleep(Math.min(SAMPLE_SECONDS * 1000, Math.max(0, deadline - nowMs())));
        try {
          samples.push(await readDaemon(sb));
        } catch (err) {
          log(`sample failed: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    })();
    const firstSoakOp = ops.done.length;
    while (nowMs() + OPS_SECONDS * 1000 < deadline) {
      const next = nowMs() + OPS_SECONDS * 1000;
      const r = await ops.next();
      if (r.problem) log(`operation ${r.what} over ${r.transport}: ${r.problem}`);
      await sleep(Math.max(0, next - nowMs()));
    }
    const loadResult = await load;
    await sampling;
    const after = await quietReading(sb);
    const soakSeconds = (nowMs() - t0) / 1000;

    // Both faces answer at the end.
    const health = await getHealth(sb);
    const answering = await runAgent<{ total_ok: number; total_errors: number }>(
      sb,
      'mixed',
      { n: 40, concurrency: 1 },
      { user: APP_USER },
    );
    const ping = await sb.busctl(
      ['call', 'org.openauto.System', '/org/openauto/System', 'org.freedesktop.DBus.Peer', 'Ping'],
      {
        user: APP_USER,
      },
    );

    const soakOps = ops.done.slice(firstSoakOp);
    const badOps = ops.done.filter((o) => o.problem);
    const b = before.reading;
    const a = after.reading;
    const rssGrowthMb = mb(a.rssKb - b.rssKb);
    const anonGrowthMb = mb(a.rssAnonKb - b.rssAnonKb);
    const maxRss = Math.max(...samples.map((s) => s.rssKb), a.rssKb);
    const restarted = a.pid !== start.pid || a.uniqueName !== start.uniqueName;
    const checks: { name: string; value: string; ok: boolean }[] = [
      {
        name: 'error answers to the clients',
        value: `${loadResult.total_errors} of ${loadResult.total_ok + loadResult.total_errors} (warm-up: ${warm.total_errors})`,
        ok: loadResult.total_errors === 0 && warm.total_errors === 0,
      },
      {
        name: 'operations not as expected',
        value: `${badOps.length} of ${ops.done.length}`,
        ok: badOps.length === 0,
      },
      { name: 'daemon restarted', value: restarted ? 'yes' : 'no', ok: !restarted },
      {
        name: `RSS growth (quiet, before → after) < ${RSS_GROWTH_LIMIT_MB} MB`,
        value: `${mb(b.rssKb)} → ${mb(a.rssKb)} MB (${rssGrowthMb >= 0 ? '+' : ''}${rssGrowthMb})`,
        ok: rssGrowthMb < RSS_GROWTH_LIMIT_MB,
      },
      {
        // The issue's figure: anonymous memory (the heap and malloc's arenas; RSS also holds node's mapped
        // binary and libraries, which a leak does not grow).
        name: `anonymous memory growth (RssAnon, quiet, before → after) < ${ANON_GROWTH_LIMIT_MB} MB`,
        value: `${mb(b.rssAnonKb)} → ${mb(a.rssAnonKb)} MB (${anonGrowthMb >= 0 ? '+' : ''}${anonGrowthMb})`,
        ok: anonGrowthMb < ANON_GROWTH_LIMIT_MB,
      },
      { name: 'open descriptors (quiet)', value: `${b.fds} → ${a.fds}`, ok: a.fds <= b.fds },
      {
        name: 'match rules on the bus',
        value: `${b.matchRules} → ${a.matchRules} (peak ${a.peakMatchRules})`,
        ok: a.matchRules === b.matchRules,
      },
      { name: 'threads', value: `${b.threads} → ${a.threads}`, ok: a.threads <= b.threads },
      {
        name: 'all services active at the end',
        value: `${JSON.stringify(health)} after ${round(after.recoveryMs / 1000)} s`,
        ok: Object.values(health).every((s) => s === 'active'),
      },
      {
        name: 'D-Bus and socket answering at the end',
        value: `${answering.total_ok} answers, ${answering.total_errors} errors; Peer.Ping exit ${ping.code}`,
        ok: answering.total_errors === 0 && answering.total_ok === 40 && ping.code === 0,
      },
    ];

    printTable(
      `soak: ${round(soakSeconds / 60)} min, shipped timings${NODE_OPTIONS ? `, NODE_OPTIONS=${NODE_OPTIONS}` : ''}`,
      [['check', 'value', 'result'], ...checks.map((c) => [c.name, c.value, c.ok ? 'PASS' : 'FAIL'])],
    );
    const kindRows = Object.entries(loadResult.kinds).map(([k, v]) => [
      k,
      v.ok,
      Object.values(v.errors).reduce((x, y) => x + y, 0),
      v.latency.median_us,
      v.latency.p99_us,
      v.latency.max_us,
    ]);
    printTable('client requests during the soak (latency µs)', [
      ['', 'answers', 'errors', 'median', 'p99', 'max'],
      ...kindRows,
    ]);
    const opMs = soakOps.map((o) => o.ms).sort((x, y) => x - y);
    console.log(
      `\n${soakOps.length} operations during the soak (applies and restarts, D-Bus and socket), median ${round(opMs[Math.floor(opMs.length / 2)] ?? Number.NaN)} ms, max ${round(opMs.at(-1) ?? Number.NaN)} ms; ` +
        `${loadResult.dbus_signals} HealthChanged signals and ${loadResult.socket_events} socket events seen; ${loadResult.reconnects} reconnects`,
    );
    console.log(
      `RSS: ${mb(start.rssKb)} MB after start, ${mb(b.rssKb)} MB after warm-up, at most ${mb(maxRss)} MB during the soak, ${mb(a.rssKb)} MB at the end (target: under 50 MB)`,
    );
    console.log(
      `RSS every ${SAMPLE_SECONDS} s during the soak (MB): ${samples.map((x) => mb(x.rssKb)).join(' ')}`,
    );
    for (const o of badOps) console.log(`  operation ${o.what} over ${o.transport}: ${o.problem}`);
    for (const e of [...warm.examples, ...loadResult.examples]) console.log(`  client error: ${e}`);

    const failed = checks.filter((c) => !c.ok);
    const name = NODE_OPTIONS
      ? `soak-${NODE_OPTIONS.replace(/[^A-Za-z0-9=]+/g, '-').replace(/^-+|-+$/g, '')}`
      : 'soak';
    const file = writeResult(name, {
      minutes: MINUTES,
      nodeOptions: NODE_OPTIONS,
      settings: {
        opsSeconds: OPS_SECONDS,
        sampleSeconds: SAMPLE_SECONDS,
        warmupSeconds: WARMUP_SECONDS,
        load: LOAD,
      },
      daemonSettings: 'defaults',
      checks,
      passed: failed.length === 0,
      readings: { afterStart: start, beforeSoak: b, afterSoak: a },
      rssGrowthMb,
      maxRssKb: maxRss,
      load: loadResult,
      warmup: warm,
      operations: ops.done,
      samples: samples.map((s) => ({
        t: s.t,
        rssKb: s.rssKb,
        rssAnonKb: s.rssAnonKb,
        fds: s.fds,
        matchRules: s.matchRules,
      })),
      targets: { rssMb: 50, growthMb: RSS_GROWTH_LIMIT_MB, anonGrowthMb: ANON_GROWTH_LIMIT_MB },
    });
    console.log(`\nwrote ${file}`);
    if (failed.length) console.log(`FAILED: ${failed.map((c) => c.name).join('; ')}`);
    return failed.length ? 1 : 0;
  } finally {
    await sb.stop();
  }
}

runMain('soak', main);
