// Attacks on the daemon's capacity, performed against the real daemon in the sandbox:
// - unprivileged local users flooding RestartService (every call costs a polkit check) and GetStatus while
//   hostapd is killed: the monitor must still repair it within 2 s without a single failed call, and the
//   app's account must keep getting GetHealth answered;
// - one process of the openauto group holding the legacy socket's connections open with a byte a second
//   (slowloris): the app must still connect and be answered.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { APP_USER, daemonSuiteSkip, OTHER_USER, Sandbox } from './harness.js';
import {
  daemonJournal,
  hostPidOf,
  mainPid,
  schedCpuNs,
  sleep,
  unitTimestampUs,
  waitAllActive,
} from './helpers-health.js';

const skip = daemonSuiteSkip();
const AGENT = '/usr/src/openauto-system/dist/bench/flood-agent.js';
const SOCKET = '/run/openauto/system.sock';

interface FloodResult {
  sent: number;
  answered: number;
  unanswered: number;
  errors: Record<string, number>;
}
interface ProbeResult {
  latenciesMs: number[];
  failures: number;
}

async function agent<T>(sb: Sandbox, user: string, mode: string, opts: object, seconds: number): Promise<T> {
  const r = await sb.exec(['/usr/bin/node', AGENT, mode, JSON.stringify(opts)], {
    user,
    timeoutMs: (seconds + 45) * 1000,
  });
  const last = r.stdout.trim().split('\n').pop() ?? '';
  if (r.code !== 0 || !last.startsWith('{'))
    throw new Error(`flood-agent ${mode} as ${user} failed (exit ${r.code ?? r.signal}): ${r.stderr}`);
  return JSON.parse(last) as T;
}

/** Opens `count` connections from one process and sends one byte a second on each, never a whole line.
 * Prints, at the end, how many the daemon closed and after how long (ms since each connected). */
const SLOWLORIS = `
const net = require('node:net');
const [count, seconds] = process.argv.slice(1).map(Number);
const closedAfter = [], refused = [];
let open = 0;
for (let i = 0; i < count; i++) {
  const s = net.connect(${JSON.stringify(SOCKET)});
  let t0 = 0, buf = '';
  s.on('connect', () => { t0 = Date.now(); open++; });
  s.on('data', (d) => { buf += d; });
  s.on('error', () => {});
  s.on('close', () => { if (buf.includes('too many')) refused.push(i); else if (t0) closedAfter.push(Date.now() - t0); });
  const timer = setInterval(() => { if (!s.destroyed) s.write(' '); }, 1000);
  setTimeout(() => { clearInterval(timer); s.destroy(); }, seconds * 1000);
}
setTimeout(() => { console.log(JSON.stringify({ open, refused: refused.length, closedAfter })); process.exit(0); }, seconds * 1000 - 200);
`;

/** The app's client: connects, asks get_health, prints the answer line (or what went wrong). */
const APP_CLIENT = `
const net = require('node:net');
const s = net.connect(${JSON.stringify(SOCKET)});
let buf = '';
s.on('error', (e) => { console.log('ERROR ' + e.code); process.exit(0); });
s.on('connect', () => s.write('{"id":"1","method":"get_health"}\\n'));
s.on('data', (d) => { buf += d; const i = buf.indexOf('\\n'); if (i >= 0) { console.log(buf.slice(0, i)); process.exit(0); } });
s.on('close', () => { console.log('CLOSED ' + buf); process.exit(0); });
setTimeout(() => { console.log('TIMEOUT'); process.exit(0); }, 5000);
`;

describe('attack: flooding the daemon', { skip }, () => {
  let sb: Sandbox;

  before(async () => {
    sb = await Sandbox.start({ name: 'attack-flood' });
    await waitAllActive(sb);
  });

  after(async () => {
    await sb?.stop();
  });

  it('strangers flooding RestartService and GetStatus: a killed hostapd is active again within 2 s, the monitor logs no failed call, GetHealth keeps being answered', async () => {
    const seconds = 12;
    const since = Date.now();
    const daemonPid = await mainPid(sb, 'openauto-system.service');
    const cpu0 = schedCpuNs(sb, daemonPid);
    const floods = [
      ...Array.from({ length: 8 }, () =>
        agent<FloodResult>(
          sb,
          OTHER_USER,
          'flood',
          { method: 'RestartService', rate: 150, seconds },
          seconds,
        ),
      ),
      ...Array.from({ length: 2 }, () =>
        agent<FloodResult>(sb, OTHER_USER, 'flood', { method: 'GetStatus', rate: 50, seconds }, seconds),
      ),
    ];
    const probe = agent<ProbeResult>(sb, APP_USER, 'probe', { intervalMs: 50, seconds }, seconds);

    // Let the flood build up, then kill hostapd's main process from the host (an exact time).
    await sleep(5000);
    const hostPid = hostPidOf(sb, await mainPid(sb, 'hostapd.service'));
    const before = await unitTimestampUs(sb, 'hostapd.service', 'ActiveEnterTimestamp');
    const t0 = Date.now();
    process.kill(hostPid, 'SIGKILL');
    const activeAt = await sb.waitFor(
      async () => {
        const t = await unitTimestampUs(sb, 'hostapd.service', 'ActiveEnterTimestamp');
        return t > before ? t / 1000 : 0;
      },
      20_000,
      50,
    );
    const recoveryMs = activeAt - t0;

    const results = await Promise.all(floods);
    const p = await probe;
    const cpuShare = (schedCpuNs(sb, daemonPid) - cpu0) / 1e6 / (Date.now() - since);
    const restartFloods = results.slice(0, 8);
    // The flood really happened and every call of it was answered (refused), none left hanging.
    const sent = restartFloods.reduce((a, r) => a + r.sent, 0);
    const unanswered = results.reduce((a, r) => a + r.unanswered, 0);
    const succeeded = restartFloods.reduce((a, r) => a + (r.answered - sumErrors(r)), 0);
    const errNames = new Set(restartFloods.flatMap((r) => Object.keys(r.errors)));

    const bad = (await daemonJournal(sb))
      // The kill itself is reported as a warning; anything else at warning or above is a failure.
      .filter((e) => e.t >= since && Number(e.fields.PRIORITY) <= 4)
      .filter((e) => !/^hostapd\.service is failed, was active/.test(e.message))
      .map((e) => e.message);
    const lat = [...p.latenciesMs].sort((a, b) => a - b);
    const p99 = lat[Math.floor(0.99 * (lat.length - 1))] ?? Number.NaN;
    console.log(
      `flood: ${sent} RestartService sent, errors ${JSON.stringify([...errNames])}; hostapd active again after ${recoveryMs.toFixed(0)} ms; ` +
        `GetHealth: ${lat.length} answered, ${p.failures} failed, p99 ${p99.toFixed(1)} ms; warnings/errors logged: ${bad.length}; ` +
        `daemon CPU ${(cpuShare * 100).toFixed(0)}% of a core`,
    );

    assert.ok(sent > 8 * 150 * (seconds - 2), `the flood sent ${sent} calls`);
    assert.equal(succeeded, 0, 'no stranger restart succeeded');
    // LimitsExceeded comes from the bus itself: a flooder's own connection may wait for 128 replies at most.
    const allowed = [
      'org.freedesktop.DBus.Error.AccessDenied',
      'org.openauto.System1.Error.Busy',
      'org.freedesktop.DBus.Error.LimitsExceeded',
    ];
    assert.deepEqual(
      [...errNames].filter((n) => !allowed.includes(n)),
      [],
      'refusals are AccessDenied or Busy',
    );
    assert.equal(unanswered, 0, 'every flooding call was answered within 30 s');
    for (const r of results.slice(8)) assert.deepEqual(r.errors, {}, 'every GetStatus was answered');
    assert.ok(recoveryMs < 2000, `hostapd active again after ${recoveryMs} ms (want < 2000)`);
    assert.deepEqual(bad.slice(0, 5), [], 'no warning or error logged by the daemon during the flood');
    assert.equal(p.failures, 0, 'every GetHealth of the app was answered');
    // Generous bounds (the figures under the bench's load are in the README); before the fix: 5 answers in
    // 12 s, p99 3.5 s.
    assert.ok(lat.length >= 2 * seconds, `GetHealth answered ${lat.length} times in ${seconds} s`);
    assert.ok(p99 < 1500, `GetHealth p99 ${p99} ms under the flood`);
    await waitAllActive(sb);
  });

  it('70 slowloris connections from one openauto process: the app still connects and get_health is answered; the slow ones are closed', async () => {
    const seconds = 18;
    const loris = sb.exec(['/usr/bin/node', '-e', SLOWLORIS, '70', String(seconds)], {
      user: APP_USER,
      timeoutMs: (seconds + 10) * 1000,
    });
    await sleep(2000);
    const app = await sb.execOk(['/usr/bin/node', '-e', APP_CLIENT], { user: APP_USER });
    const answer = JSON.parse(app.trim()) as { id: string; result?: Record<string, string> };
    assert.equal(answer.id, '1', app);
    assert.equal(answer.result?.hostapd, 'active', app);

    const r = await loris;
    const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as {
      open: number;
      refused: number;
      closedAfter: number[];
    };
    console.log(`slowloris: ${JSON.stringify({ ...out, closedAfter: out.closedAfter.length })}`);
    // Every connection the daemon accepted was closed for not completing its first line in time, though it
    // kept sending a byte a second.
    assert.ok(out.closedAfter.length > 0, 'some slow connections were accepted');
    assert.equal(out.closedAfter.length + out.refused, 70, JSON.stringify(out));
    for (const ms of out.closedAfter) assert.ok(ms < 15_000, `a slow connection stayed ${ms} ms`);
  });
});

function sumErrors(r: FloodResult): number {
  return Object.values(r.errors).reduce((a, b) => a + b, 0);
}
