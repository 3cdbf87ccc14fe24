// What the unit files promise under real systemd: the service pulls its socket in whoever starts it (bus
// activation included), and systemd's watchdog restarts a daemon whose event loop no longer runs.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { APP_USER, BUS_NAME, daemonSuiteSkip, INTERFACE, OBJECT_PATH, Sandbox } from './harness.js';

const skip = daemonSuiteSkip();
const SERVICE = 'openauto-system.service';
const SOCKET_UNIT = 'openauto-system.socket';
const SOCKET = '/run/openauto/system.sock';
/** Inside the container: one get_health on a new connection; prints the answer line. */
const ASK = `
const s = require('node:net').connect(${JSON.stringify(SOCKET)});
let buf = '';
s.setTimeout(8000, () => process.exit(3));
s.on('error', () => process.exit(2));
s.on('connect', () => s.write('{"id":"1","method":"get_health"}\\n'));
s.on('data', (d) => { buf += d; if (buf.includes('\\n')) { console.log(buf.trim()); process.exit(0); } });
`;

describe('openauto-system units under real systemd', { skip }, () => {
  let sb: Sandbox;
  const show = async (prop: string, unit = SERVICE) =>
    (await sb.execOk(['systemctl', 'show', '-P', prop, unit])).trim();
  /** One get_health over the legacy socket as the app user: true when answered. */
  const socketAnswers = async () => {
    const r = await sb.exec(['node', '-e', ASK], { user: APP_USER, timeoutMs: 10_000 });
    return r.code === 0 && /"id":"1","result":/.test(r.stdout);
  };
  const getHealth = () => sb.call(BUS_NAME, OBJECT_PATH, INTERFACE, 'GetHealth');

  before(async () => {
    sb = await Sandbox.start({ name: 'rel-units' });
    await sb.waitFor(async () => (await sb.unitState(SERVICE)) === 'active', 15_000);
  });
  after(async () => {
    await sb?.stop();
  });

  it('a D-Bus activation with both units stopped starts the socket unit too, and the daemon serves its fd', async () => {
    await sb.execOk(['systemctl', 'stop', SERVICE, SOCKET_UNIT]);
    assert.equal(await sb.unitState(SOCKET_UNIT), 'inactive');
    assert.equal(await sb.unitState(SERVICE), 'inactive');
    const [health] = await getHealth();
    assert.ok(health && typeof health === 'object');
    assert.equal(await sb.unitState(SERVICE), 'active');
    assert.equal(await sb.unitState(SOCKET_UNIT), 'active', 'the socket unit was pulled in');
    // The daemon was handed systemd's listening socket (LISTEN_FDS), rather than binding the path itself.
    const pid = await show('MainPID');
    const environ = (await sb.execOk(['cat', `/proc/${pid}/environ`])).split('\0');
    assert.ok(
      environ.includes('LISTEN_FDS=1'),
      `daemon environment: ${environ.filter((e) => e.startsWith('LISTEN'))}`,
    );
    assert.ok(await socketAnswers(), 'the socket answers');
    // And it stays systemd's across a restart of the daemon: still answering.
    await sb.execOk(['systemctl', 'restart', SERVICE]);
    assert.equal(await sb.unitState(SOCKET_UNIT), 'active');
    assert.ok(await socketAnswers(), 'the socket answers after a restart');
  });

  it('systemctl start of the service alone starts the socket unit too', async () => {
    await sb.execOk(['systemctl', 'stop', SERVICE, SOCKET_UNIT]);
    await sb.execOk(['systemctl', 'start', SERVICE]);
    assert.equal(await sb.unitState(SOCKET_UNIT), 'active');
    assert.ok(await socketAnswers(), 'the socket answers');
  });

  it('a hung daemon (SIGSTOP) is killed by the watchdog and restarted, and clients are served again', async () => {
    assert.equal(await show('WatchdogUSec'), '10s');
    assert.equal(await show('NotifyAccess'), 'main');
    const pid = await show('MainPID');
    const t0 = Date.now();
    await sb.execOk(['systemctl', 'kill', '-s', 'STOP', '--kill-whom=main', SERVICE]);
    await sb.waitFor(
      async () => (await show('MainPID')) !== pid && (await sb.unitState(SERVICE)) === 'active',
      40_000,
      200,
    );
    const took = Date.now() - t0;
    console.log(`# SIGSTOP -> a new daemon active in ${took} ms (WatchdogSec=10, RestartSec=2)`);
    // Killed by the watchdog: not before its last ping had expired (pings every 5 s), and within
    // WatchdogSec + RestartSec + a margin.
    assert.ok(took >= 7000, `restarted after ${took} ms: too early for the watchdog`);
    assert.ok(took < 10_000 + 2000 + 6000, `restarted after ${took} ms`);
    const said = await sb.journalMessages(SERVICE, { unit: true });
    assert.ok(
      said.some((m) => /[Ww]atchdog timeout/.test(m)),
      'systemd logged the watchdog timeout',
    );
    const [health] = await getHealth();
    assert.ok(health && typeof health === 'object');
    assert.ok(await socketAnswers(), 'the socket answers');
  });
});
