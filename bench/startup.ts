// Start-up of the real daemon in a sandbox: from exec to the bus name being owned (the moment D-Bus
// activation can answer: the daemon claims the name last, after exporting, one full health check and
// opening the socket). A client inside the container (agent.ts, as root) stops the unit and starts it again,
// alternating two ways:
//   - activation: it calls GetHealth on the unowned name; dbus-daemon asks systemd to start the unit and
//     delivers the call once the name is owned: call → answer, end to end;
//   - start: StartUnit (what `systemctl start` sends) → NameOwnerChanged at the client, and → the job done.
// For every start: exec (systemd's ExecMainStartTimestamp) → NameOwnerChanged at the client, exec → unit
// active (systemd's ActiveEnterTimestamp), exec → the daemon's "ready" journal entry, and RSS 3 s after the
// last start. For reference, exec of `node -e 0` (the runtime's own start) inside the container.
// Prints a table and writes bench/results/startup.json.
//
//   node dist/bench/startup.js        (as root; the daemon must be built)
// Environment: STARTUP_RUNS (starts per way, default 20); BENCH_QUICK=1 makes it 5.
import { Sandbox, sandboxUnavailable } from '../test/sandbox/harness.js';
import { daemonJournal } from '../test/sandbox/helpers-health.js';
import {
  allActiveWithin,
  log,
  mb,
  printTable,
  readDaemon,
  runAgent,
  runMain,
  type Summary,
  setting,
  sleep,
  summary,
  writeResult,
} from './lib.js';

interface Run {
  mode: 'activation' | 'start';
  t0: number;
  answeredMs: number;
  jobMs: number;
  nameOwnedMs: number;
  execToNameMs: number;
  execToActiveMs: number;
  callToExecMs: number;
  execMainStartUs: number;
  mainPid: number;
  execToReadyLogMs?: number;
}

async function main(): Promise<number> {
  const why = sandboxUnavailable();
  if (why) {
    log(`bench/startup: ${why}`);
    return 2;
  }
  const n = setting('STARTUP_RUNS', 20, 5);
  log('booting a sandbox (daemon with its default timings)...');
  const sb = await Sandbox.start({ name: 'bench-startup' });
  try {
    await allActiveWithin(sb, 30_000);
    await sleep(1000);
    const r = await runAgent<{ runs: Run[]; nodeFloorMs: number[] }>(
      sb,
      'startup',
      { n },
      { timeoutMs: 60_000 + n * 2 * 15_000 },
    );
    await allActiveWithin(sb, 30_000);
    await sleep(3000);
    const rss = await readDaemon(sb);

    // The daemon's own "ready" entry (logged just after the name was granted), matched by PID.
    const ready = (await daemonJournal(sb)).filter((e) => /ready$/.test(e.message));
    for (const run of r.runs) {
      const e = ready.find((x) => Number(x.fields._PID) === run.mainPid && x.t >= run.execMainStartUs / 1000);
      if (e) run.execToReadyLogMs = e.t - run.execMainStartUs / 1000;
    }
    const by = (mode: Run['mode'], f: (x: Run) => number | undefined) =>
      summary(
        r.runs
          .filter((x) => x.mode === mode)
          .map(f)
          .filter((x): x is number => x !== undefined && Number.isFinite(x)),
      );
    const all = (f: (x: Run) => number | undefined) =>
      summary(r.runs.map(f).filter((x): x is number => x !== undefined && Number.isFinite(x)));
    const res = {
      execToName: all((x) => x.execToNameMs),
      execToActive: all((x) => x.execToActiveMs),
      execToReadyLog: all((x) => x.execToReadyLogMs),
      activationCallToAnswer: by('activation', (x) => x.answeredMs),
      activationCallToExec: by('activation', (x) => x.callToExecMs),
      startUnitToName: by('start', (x) => x.nameOwnedMs),
      startUnitToJobDone: by('start', (x) => x.jobMs),
      startUnitToExec: by('start', (x) => x.callToExecMs),
      nodeFloor: summary(r.nodeFloorMs),
    };
    const row = (label: string, s: Summary) => [label, s.n, s.median, s.p99, s.min, s.max];
    printTable(`openauto-system start-up, ${n} starts each way (ms)`, [
      ['', 'n', 'median', 'p99', 'min', 'max'],
      row('exec → bus name owned (NameOwnerChanged)', res.execToName),
      row('exec → unit active (systemd)', res.execToActive),
      row('exec → "ready" journal entry', res.execToReadyLog),
      row('activation: GetHealth call → answer', res.activationCallToAnswer),
      row('activation: call → exec', res.activationCallToExec),
      row('StartUnit → bus name owned', res.startUnitToName),
      row('StartUnit → job done', res.startUnitToJobDone),
      row('StartUnit → exec', res.startUnitToExec),
      row('reference: exec of `node -e 0`', res.nodeFloor),
    ]);
    console.log(
      `\ntarget: ready under 400 ms (exec → name owned: median ${res.execToName.median.toFixed(1)} ms)` +
        `; RSS 3 s after the last start: ${mb(rss.rssKb)} MB (anon ${mb(rss.rssAnonKb)} MB)`,
    );
    const file = writeResult('startup', {
      runsPerWay: n,
      daemonSettings: 'defaults',
      ...res,
      rssAfterStartKb: rss.rssKb,
      rssAnonAfterStartKb: rss.rssAnonKb,
      target: { readyMs: 400 },
      runs: r.runs,
      nodeFloorMs: r.nodeFloorMs,
    });
    console.log(`wrote ${file}`);
    return 0;
  } finally {
    await sb.stop();
  }
}

runMain('startup', main);
