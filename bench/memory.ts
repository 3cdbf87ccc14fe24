// Memory of the real daemon in a sandbox: RSS (and its anonymous part), descriptors, threads and the bus's
// match-rule count for its connection, read from the host (the container's /proc, Debug.Stats)
//   1. after start (shipped timings; all services active): 3 s later, and 30 s later, once V8's memory
//      reducer has given back what start-up left behind (it runs ~10 s after the last burst of allocation);
//   2. after 10,000 mixed requests from inside the container (D-Bus GetHealth and GetStatus, socket
//      get_health and get_status, 4 concurrent clients, as the app user): 5 s and 30 s later;
//   3. simulated monitoring: the daemon is then restarted with OPENAUTO_POLL_MS=10 instead of 5000 (added to
//      /etc/default/openauto-system), so each second holds many safety-net poll cycles; after a 10 s warm-up
//      it is read, runs MEMORY_SIM_SECONDS, and is read again: the growth is between those two readings of
//      that process. A bus monitor counts the calls the daemon sends meanwhile, per member: one
//      ListUnitsByNames per poll cycle; 720 cycles are one hour of the shipped 5 s poll. (The poll's deeper
//      bus-backed checks of healthy services run once a minute of wall-clock time, so the simulation holds
//      fewer of those than the hours it stands for: their count is in the JSON, DescribeLink/Get.)
// For reference it also measures a bare `node`, node with the daemon's dependencies imported, and node with
// all of the daemon's modules imported (not started), on the host (same node binary).
// Prints a table and writes bench/results/memory.json.
//
//   node dist/bench/memory.js        (as root; the daemon must be built)
// Everything is measured twice: as shipped, and with V8's JIT (no --lite-mode, no --jitless; the heap trimmer
// still runs), for comparison; MEMORY_VARIANT=0 skips the second.
// Environment: MEMORY_REQUESTS (10000), MEMORY_SIM_SECONDS (180); BENCH_QUICK=1 shortens both.
import { execFileSync } from 'node:child_process';
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT, Sandbox, sandboxUnavailable } from '../test/sandbox/harness.js';
import { BusMonitor } from '../test/sandbox/helpers-health.js';
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

const POLL_MS = 10;
const SHIPPED_POLL_MS = 5000;

interface MixedResult {
  seconds: number;
  total_ok: number;
  total_errors: number;
  kinds: Record<string, unknown>;
  examples: string[];
}

/** RSS of a node process on the host after running `code` (ESM) and settling. */
function referenceRss(code: string): { rssKb: number; anonKb: number } {
  const script = `${code}
await new Promise((r) => setTimeout(r, 1000));
const s = (await import('node:fs')).readFileSync('/proc/self/status', 'utf8');
const kb = (k) => Number(new RegExp('^' + k + ':\\\\s+(\\\\d+)', 'm').exec(s)[1]);
console.log(JSON.stringify({ rssKb: kb('VmRSS'), anonKb: kb('RssAnon') }));
process.exit(0);`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    env: { ...process.env, OPENAUTO_LOG_STDERR: '1' },
  });
  return JSON.parse(out.trim().split('\n').pop() as string);
}

/** Method calls the daemon sends, per member, seen by a bus monitor (busctl) writing one JSON line each. */
async function startCallCounter(
  sb: Sandbox,
  uniqueName: string,
): Promise<() => Promise<Record<string, number>>> {
  const mon = await BusMonitor.start(sb, [`type='method_call',sender='${uniqueName}'`], 'bench-calls');
  return async () => {
    await mon.stop();
    const r = await sb.execOk(
      ['sh', '-c', `grep -o '"member":"[A-Za-z0-9_]*"' ${mon.file} | sort | uniq -c`],
      { timeoutMs: 60_000 },
    );
    const counts: Record<string, number> = {};
    for (const line of r.split('\n')) {
      const m = /^\s*(\d+) "member":"([^"]+)"/.exec(line);
      if (m) counts[m[2] as string] = Number(m[1]);
    }
    return counts;
  };
}

/**
 * Poll cycles from the daemon's calls: its safety-net poll sends one ListUnitsByNames per cycle (an earlier
 * version sent a GetAll per unit instead: three per cycle).
 */
function cyclesFrom(calls: Record<string, number>): number {
  return calls.ListUnitsByNames ?? Math.round((calls.GetAll ?? 0) / 3);
}

async function main(): Promise<number> {
  const why = sandboxUnavailable();
  if (why) {
    log(`bench/memory: ${why}`);
    return 2;
  }
  const requests = setting('MEMORY_REQUESTS', 10_000, 2000);
  const simSeconds = setting('MEMORY_SIM_SECONDS', 180, 30);

  log('reference processes on the host...');
  const ref = {
    bareNode: referenceRss(''),
    nodeWithDependencies: referenceRss(
      "await import('dbus-next'); await import('zod'); await import('yaml'); await import('systemd-journald');",
    ),
    nodeWithDaemonModules: referenceRss(
      [
        'daemon.js',
        'bus/system1.js',
        'bus/polkit.js',
        'config/applier.js',
        'health/monitor.js',
        'bluez/profiles.js',
        'ipc/index.js',
        'systemd/timedate.js',
      ]
        .map((m) => `await import('./dist/src/${m}');`)
        .join(' '),
    ),
  };

  const variants: Variant[] = [{ name: 'shipped' }];
  if (process.env.MEMORY_VARIANT !== '0') variants.push(WITHOUT_LITE_MODE);
  const results: MeasureResult[] = [];
  for (const v of variants) results.push(await measure(v, requests, simSeconds));

  const row = (label: string, r: DaemonReading) => [
    label,
    mb(r.rssKb),
    mb(r.rssAnonKb),
    mb(r.hwmKb),
    r.fds,
    r.threads,
    r.matchRules,
  ];
  for (const m of results) {
    printTable(
      `openauto-system memory (MB), ${m.variant.name}${m.variant.nodeFlags ? ` (node ${m.variant.nodeFlags})` : ''}`,
      [
        ['', 'RSS', 'anon', 'peak RSS', 'fds', 'threads', 'match rules'],
        row('after start, 3 s', m.readings.afterStart),
        row('after start, 30 s', m.readings.afterStartSettled),
        row(`after ${requests} mixed requests, 5 s`, m.readings.afterRequests),
        row(`after ${requests} mixed requests, 30 s`, m.readings.afterRequestsSettled),
        row('restarted with poll 10 ms, after 10 s', m.readings.simulationStart),
        row(
          `after ${m.simulation.pollCycles} poll cycles (${m.simulation.equivalentHoursAtShippedPoll} h at 5 s)`,
          m.readings.afterSimulation,
        ),
      ],
    );
    const rss = m.samples.map((x) => x.rssKb);
    console.log(
      `growth: ${m.growthMb.requests} MB over the requests (${m.growthMb.requestsSettled} MB between the 30 s readings); ${m.growthMb.simulation} MB over the simulated monitoring ` +
        `(samples every 10 s: ${mb(Math.min(...rss))}–${mb(Math.max(...rss))} MB)`,
    );
    console.log(
      `requests: ${m.requests.total_ok} answered, ${m.requests.total_errors} errors, in ${m.requests.seconds.toFixed(1)} s; ` +
        `monitoring: ${m.simulation.pollCycles} cycles in ${simSeconds} s (calls sent: ${JSON.stringify(m.simulation.callsByMember)}); daemon ${m.restarted ? 'RESTARTED' : 'not restarted'}`,
    );
  }
  printTable('reference processes on the host (MB)', [
    ['', 'RSS', 'anon'],
    ['node (nothing loaded)', mb(ref.bareNode.rssKb), mb(ref.bareNode.anonKb)],
    [
      'node + dbus-next, zod, yaml, systemd-journald',
      mb(ref.nodeWithDependencies.rssKb),
      mb(ref.nodeWithDependencies.anonKb),
    ],
    [
      "node + all of the daemon's modules, unbundled (not started)",
      mb(ref.nodeWithDaemonModules.rssKb),
      mb(ref.nodeWithDaemonModules.anonKb),
    ],
  ]);
  console.log('\ntargets: RSS under 50 MB; growth under 2 MB');
  const file = writeResult('memory', {
    requests,
    simSeconds,
    shipped: results[0],
    variants: results.slice(1),
    reference: ref,
    targets: { rssMb: 50, growthMb: 2 },
  });
  console.log(`wrote ${file}`);
  return results.every((m) => m.requests.total_errors === 0 && !m.restarted) ? 0 : 1;
}

interface Variant {
  name: string;
  /** node's flags in place of the unit's (a drop-in replaces ExecStart); the shipped unit's when absent. */
  nodeFlags?: string;
}

const WITHOUT_LITE_MODE: Variant = {
  name: 'with the JIT (without --lite-mode and --jitless)',
  nodeFlags: '--no-expose-wasm',
};
const DAEMON_JS = '/usr/lib/openauto-system/dist/bin/openauto-system.js';

type MeasureResult = Awaited<ReturnType<typeof measure>>;

async function measure(variant: Variant, requests: number, simSeconds: number) {
  log(`booting a sandbox (daemon with its default timings, ${variant.name})...`);
  const sb = await Sandbox.start({ name: 'bench-memory' });
  try {
    await allActiveWithin(sb, 30_000);
    if (variant.nodeFlags) {
      const dir = join(sb.root, '/run/systemd/system/openauto-system.service.d');
      await mkdir(dir, { recursive: true });
      await writeFile(
        join(dir, 'bench-memory.conf'),
        // Without --jitless, V8's JIT needs executable memory: the unit's MemoryDenyWriteExecute must go too.
        `[Service]\nExecStart=\nExecStart=/usr/bin/node ${variant.nodeFlags} ${DAEMON_JS}\nMemoryDenyWriteExecute=no\n`,
      );
      await sb.execOk(['systemctl', 'daemon-reload']);
      await sb.execOk(['systemctl', 'restart', 'openauto-system.service']);
      await allActiveWithin(sb, 30_000);
    }
    await sleep(3000);
    const afterStart = await readDaemon(sb);
    await sleep(27_000);
    const afterStartSettled = await readDaemon(sb);
    log(`after start: RSS ${mb(afterStart.rssKb)} MB, 30 s: ${mb(afterStartSettled.rssKb)} MB`);

    log(`${requests} mixed requests...`);
    const mixed = await runAgent<MixedResult>(
      sb,
      'mixed',
      { n: requests, concurrency: 4 },
      { user: 'appuser', timeoutMs: 900_000 },
    );
    await sleep(5000);
    const afterRequests = await readDaemon(sb);
    await sleep(25_000);
    const afterRequestsSettled = await readDaemon(sb);
    log(
      `after requests: RSS ${mb(afterRequests.rssKb)} MB, 30 s: ${mb(afterRequestsSettled.rssKb)} MB (${mixed.total_errors} errors)`,
    );

    log(
      `restarting the daemon with OPENAUTO_POLL_MS=${POLL_MS}; simulated monitoring for ${simSeconds} s...`,
    );
    await appendFile(join(sb.root, '/etc/default/openauto-system'), `OPENAUTO_POLL_MS=${POLL_MS}\n`);
    await sb.execOk(['systemctl', 'restart', 'openauto-system.service']);
    await allActiveWithin(sb, 30_000);
    await sleep(10_000);
    const simulationStart = await readDaemon(sb);
    const stopCounter = await startCallCounter(sb, simulationStart.uniqueName);
    const simStart = nowMs();
    const samples: DaemonReading[] = [simulationStart];
    while (nowMs() - simStart < simSeconds * 1000) {
      await sleep(Math.min(10_000, simStart + simSeconds * 1000 - nowMs()));
      samples.push(await readDaemon(sb));
    }
    const afterSim = samples.at(-1) as DaemonReading;
    const calls = await stopCounter();
    const cycles = cyclesFrom(calls);
    const simHours = (cycles * SHIPPED_POLL_MS) / 3_600_000;
    return {
      variant,
      daemonSettings: {
        requests: 'defaults',
        simulation: { OPENAUTO_POLL_MS: POLL_MS },
        nodeFlags: variant.nodeFlags ?? 'as the unit',
      },
      requests: mixed,
      simulation: {
        seconds: simSeconds,
        pollCycles: cycles,
        equivalentHoursAtShippedPoll: round(simHours, 2),
        callsByMember: calls,
        method:
          'daemon restarted with poll 10 ms; growth between a reading 10 s after that start and the end; cycles = the ListUnitsByNames calls it sent, seen by a bus monitor',
      },
      readings: {
        afterStart,
        afterStartSettled,
        afterRequests,
        afterRequestsSettled,
        simulationStart,
        afterSimulation: afterSim,
      },
      growthMb: {
        requests: mb(afterRequests.rssKb - afterStart.rssKb),
        requestsSettled: mb(afterRequestsSettled.rssKb - afterStartSettled.rssKb),
        simulation: mb(afterSim.rssKb - simulationStart.rssKb),
      },
      samples: samples.map((x) => ({ t: x.t, rssKb: x.rssKb, rssAnonKb: x.rssAnonKb, fds: x.fds })),
      restarted: afterStart.pid !== afterRequestsSettled.pid || simulationStart.pid !== afterSim.pid,
    };
  } finally {
    await sb.stop();
  }
}

runMain('memory', main);
