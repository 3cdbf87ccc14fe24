// The legacy socket under real systemd: openauto-system.socket holds /run/openauto/system.sock, hands it to
// the daemon, starts the daemon on a connection, and keeps accepting while the daemon restarts, so the Qt
// app never sees a refused connection.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { APP_USER, daemonSuiteSkip, Sandbox } from './harness.js';
import { mainPid } from './helpers-health.js';

const skip = daemonSuiteSkip();
const SOCKET = '/run/openauto/system.sock';

/**
 * Inside the container: connects `count` times, `gapMs` apart, sending get_health on each connection and
 * printing one JSON line per attempt: {ok, code?, ms}.
 */
const PROBE = `
const net = require('node:net');
const [count, gapMs] = process.argv.slice(1).map(Number);
const one = () => new Promise((resolve) => {
  const t0 = Date.now();
  const s = net.connect(${JSON.stringify(SOCKET)});
  let buf = '';
  const done = (r) => { s.destroy(); resolve({ ...r, ms: Date.now() - t0 }); };
  s.setTimeout(15000, () => done({ ok: false, code: 'TIMEOUT' }));
  s.on('error', (e) => done({ ok: false, code: e.code }));
  s.on('connect', () => s.write('{"id":"h","method":"get_health"}\\n'));
  s.on('data', (d) => { buf += d; if (buf.includes('\\n')) done({ ok: /"id":"h","result":/.test(buf) }); });
});
(async () => {
  for (let i = 0; i < count; i++) {
    console.log(JSON.stringify(await one()));
    await new Promise((r) => setTimeout(r, gapMs));
  }
})();
`;

describe('openauto-system.socket', { skip }, () => {
  let sb: Sandbox;
  const probe = async (count: number, gapMs: number) =>
    (
      await sb.execOk(['node', '-e', PROBE, String(count), String(gapMs)], {
        user: APP_USER,
        timeoutMs: 120_000,
      })
    )
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { ok: boolean; code?: string; ms: number });

  before(async () => {
    sb = await Sandbox.start({ name: 'socket' });
    await sb.waitFor(async () => (await sb.unitState('openauto-system.service')) === 'active', 15_000);
  });
  after(async () => {
    await sb?.stop();
  });

  it('systemd holds the socket with mode 0660 root:openauto and the daemon serves it', async () => {
    assert.equal(await sb.unitState('openauto-system.socket'), 'active');
    assert.equal((await sb.execOk(['stat', '-c', '%a %U %G', SOCKET])).trim(), '660 root openauto');
    const [r] = await probe(1, 0);
    assert.ok(r?.ok, JSON.stringify(r));
  });

  it('the installed daemon moves its connections through the native transport addon', async () => {
    const pid = await mainPid(sb, 'openauto-system.service');
    const maps = await sb.execOk(['cat', `/proc/${pid}/maps`]);
    assert.match(maps, /\/usr\/lib\/openauto-system\/node_modules\/openauto-transport\/.*transport\.node/);
    const [r] = await probe(1, 0);
    assert.equal(r?.ok, true);
  });

  it('a connection to the socket starts a stopped daemon', async () => {
    await sb.execOk(['systemctl', 'stop', 'openauto-system.service']);
    assert.equal(await sb.unitState('openauto-system.service'), 'inactive');
    assert.equal(await sb.unitState('openauto-system.socket'), 'active');
    const [r] = await probe(1, 0);
    assert.ok(r?.ok, JSON.stringify(r));
    assert.equal(await sb.unitState('openauto-system.service'), 'active');
  });

  it('clients are never refused while the daemon is killed and restarted', async () => {
    const running = probe(40, 100);
    await new Promise((r) => setTimeout(r, 500));
    await sb.execOk(['systemctl', 'kill', '--kill-whom=main', '-s', 'KILL', 'openauto-system.service']);
    const results = await running;
    const failed = results.filter((r) => !r.ok);
    assert.deepEqual(failed, [], 'every connection was answered');
    // The restart (RestartSec=2) really happened in the middle: some answers waited for it.
    assert.ok(
      results.some((r) => r.ms > 1000),
      `no answer waited for the restart: ${results.map((r) => r.ms).join(',')}`,
    );
  });
});
