// The proxy route with real packets: inside the sandbox the test makes a "phone" network namespace on the far
// end of wlan0 (the veth peer moved into it, 10.0.0.31) running a real SOCKS5 server with user and password
// (microsocks), and behind the phone a "web" namespace (203.0.113.10, a documentation test-net reachable only
// through the phone) with an HTTP server that answers with the client address it sees. From the head unit
// (the container) curl reaches the web server only while the route is on, through redsocks, the nftables
// table and the default route the daemon's units set up.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  APP_USER,
  BUS_NAME,
  daemonSuiteSkip,
  INTERFACE,
  OBJECT_PATH,
  OTHER_USER,
  Sandbox,
} from './harness.js';
import { SOCKET_LINES_CLIENT } from './helpers-socket.js';

const skip = daemonSuiteSkip();

const PHONE = '10.0.0.31';
const WEB = '203.0.113.10';
const PASSWORD = 'Ph0ne-S3cret-4711';
const URL = `http://${WEB}/`;

/** The web server: / answers "client=<address>"; /slow streams 40 chunks of 1 KiB, one every 150 ms. */
const WEB_SERVER = `
require('http').createServer((q, s) => {
  if (q.url === '/slow') {
    let n = 0;
    const t = setInterval(() => { s.write('x'.repeat(1024)); if (++n === 40) { clearInterval(t); s.end(); } }, 150);
    q.on('close', () => clearInterval(t));
    return;
  }
  s.end('client=' + q.socket.remoteAddress + '\\n');
}).listen(80, ${JSON.stringify(WEB)});
`;

/** Subscriber: subscribes, creates argv[2] once subscribed, prints every line for argv[1] seconds. */
const SUBSCRIBER = `
const s = require('node:net').connect('/run/openauto/system.sock');
let buf = '';
s.on('connect', () => s.write('{"id":"s","method":"subscribe"}\\n'));
s.on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\\n')) >= 0) {
    console.log(buf.slice(0, i));
    buf = buf.slice(i + 1);
    if (!require('node:fs').existsSync(process.argv[2])) require('node:fs').writeFileSync(process.argv[2], '');
  }
});
setTimeout(() => process.exit(0), Number(process.argv[1]) * 1000);
`;

interface Status {
  ok: boolean;
  state: string;
  checks: { listener: boolean; iptables: boolean; upstream: boolean };
  error_code: string | null;
  error: string | null;
}

describe('proxy route (real packets through a phone namespace)', { skip }, () => {
  let sb: Sandbox;
  let baseline: { nft: string; routes: string };

  const sh = (script: string) => sb.execOk(['sh', '-c', script]);
  const socketLines = async (user: string, ...requests: unknown[]): Promise<string[]> =>
    (
      await sb.execOk(
        [
          'node',
          '-e',
          SOCKET_LINES_CLIENT,
          ...requests.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))),
        ],
        { user, timeoutMs: 30_000 },
      )
    )
      .trim()
      .split('\n');
  const setRoute = async (params: Record<string, unknown>, user = APP_USER): Promise<Status> => {
    const [line] = await socketLines(user, { id: '1', method: 'set_proxy_route', params });
    return (JSON.parse(line ?? '') as { result: Status }).result;
  };
  const status = async (verify = false): Promise<Status> => {
    const [line] = await socketLines(APP_USER, { id: 's', method: 'get_proxy_status', params: { verify } });
    return (JSON.parse(line ?? '') as { result: Status }).result;
  };
  const on = () => setRoute({ active: true, host: PHONE, port: 1080, user: 'oap', password: PASSWORD });
  const curl = (path = '', maxS = 5) =>
    sb.exec(['curl', '-sS', '-m', String(maxS), `${URL}${path}`], { timeoutMs: (maxS + 5) * 1000 });
  const gdbus = (method: string, args: string[], user?: string) =>
    sb.exec(
      [
        'gdbus',
        'call',
        '--system',
        '-d',
        BUS_NAME,
        '-o',
        OBJECT_PATH,
        '-m',
        `${INTERFACE}.${method}`,
        ...args,
      ],
      user ? { user } : {},
    );
  const snapshot = async () => ({
    nft: await sb.execOk(['nft', 'list', 'ruleset']),
    routes: await sb.execOk(['ip', 'route']),
    files: (await sb.execOk(['ls', '-A', '/run/openauto'])).trim(),
    units: (await sb.systemctl(['show', '-P', 'ActiveState,MainPID', 'openauto-proxy.service'])).stdout,
    redsocks: await sb.readFile('/run/openauto/redsocks.conf').catch(() => ''),
  });
  const startSocks = (unit: string) =>
    sb.execOk([
      'systemd-run',
      `--unit=${unit}`,
      '--description=the phone: SOCKS5 server',
      '-p',
      'NetworkNamespacePath=/run/netns/phone',
      '/usr/bin/microsocks',
      '-i',
      PHONE,
      '-p',
      '1080',
      '-u',
      'oap',
      '-P',
      PASSWORD,
    ]);

  before(async () => {
    sb = await Sandbox.start({ name: 'proxy' });
    await sb.waitFor(async () => (await sb.unitState('openauto-system.service')) === 'active', 15_000);
    await sh(
      [
        'ip netns add phone',
        'ip netns add web',
        'ip link set wlan0-peer netns phone',
        `ip -n phone addr add ${PHONE}/24 dev wlan0-peer`,
        'ip -n phone link set wlan0-peer up',
        'ip -n phone link set lo up',
        'ip link add web0 type veth peer name web0-peer',
        'ip link set web0 netns phone',
        'ip link set web0-peer netns web',
        'ip -n phone addr add 203.0.113.1/24 dev web0',
        'ip -n phone link set web0 up',
        `ip -n web addr add ${WEB}/24 dev web0-peer`,
        'ip -n web link set web0-peer up',
        'ip -n web link set lo up',
      ].join(' && '),
    );
    await startSocks('phone-socks');
    await sb.execOk([
      'systemd-run',
      '--unit=web-http',
      '-p',
      'NetworkNamespacePath=/run/netns/web',
      '/usr/bin/node',
      '-e',
      WEB_SERVER,
    ]);
    // The web server is up (seen from the phone) before anything is judged from the head unit.
    await sb.waitFor(
      async () => (await sb.exec(['ip', 'netns', 'exec', 'phone', 'curl', '-sS', '-m', '2', URL])).code === 0,
      10_000,
    );
    baseline = { nft: await sb.execOk(['nft', 'list', 'ruleset']), routes: await sb.execOk(['ip', 'route']) };
  });
  after(async () => {
    await sb?.stop();
  });

  it('before set_proxy_route the web server is unreachable; stranger is denied; bad input starts nothing', async () => {
    assert.notEqual((await curl()).code, 0, 'reachable without the route');
    assert.equal((await status()).state, 'disabled');
    const before = await snapshot();
    const denied = await gdbus('SetProxyRoute', ['true', PHONE, '1080', 'oap', PASSWORD], OTHER_USER);
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /org\.freedesktop\.DBus\.Error\.AccessDenied/);
    const noSocket = await socketLines(OTHER_USER, {
      id: '1',
      method: 'set_proxy_route',
      params: { active: true },
    });
    assert.deepEqual(noSocket, ['ERROR EACCES']);
    const bad = await gdbus('SetProxyRoute', ['true', 'phone.local', '1080', 'oap', PASSWORD]);
    assert.match(bad.stderr, /org\.freedesktop\.DBus\.Error\.InvalidArgs: host: /);
    const refused = await setRoute({ active: true, host: PHONE, port: 1080, user: 'oap', password: 'a"b' });
    assert.equal(refused.ok, false);
    assert.equal(refused.state, 'disabled');
    assert.match(String(refused.error), /^password: /);
    assert.deepEqual(await snapshot(), before, 'nothing written, nothing started');
  });

  it('set_proxy_route (as the app) → active; the web server answers and sees the phone', async () => {
    const t0 = Date.now();
    const r = await on();
    const ms = Date.now() - t0;
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.state, 'active', JSON.stringify(r));
    assert.deepEqual(r.checks, { listener: true, iptables: true, upstream: true });
    console.log(`# set_proxy_route → active answered in ${ms} ms`);
    const got = await curl();
    assert.equal(got.code, 0, got.stderr);
    assert.equal(got.stdout.trim(), 'client=203.0.113.1', 'the web server sees the phone');
    const prop = await sb.call(BUS_NAME, OBJECT_PATH, 'org.freedesktop.DBus.Properties', 'Get', [
      'ss',
      INTERFACE,
      'ProxyState',
    ]);
    assert.deepEqual(prop, [{ type: 's', data: 'active' }]);
    assert.equal(
      (await sb.execOk(['stat', '-c', '%a %U %G', '/run/openauto/redsocks.conf'])).trim(),
      '640 root redsocks',
    );
    assert.equal(
      (await sb.execOk(['systemctl', 'show', '-P', 'User', 'openauto-proxy.service'])).trim(),
      'redsocks',
    );
    // The same request again changes nothing (no restart of redsocks).
    const pid = (await snapshot()).units;
    assert.equal((await on()).state, 'active');
    assert.equal((await snapshot()).units, pid);
  });

  it('bad input while the route is on: a clear error, nothing written, the route keeps working', async () => {
    const before = await snapshot();
    const big = 'p'.repeat(60 * 1024);
    const good = { active: true, host: PHONE, port: 1080, user: 'oap', password: PASSWORD };
    const table: [Record<string, unknown>, string][] = [
      [{ host: `${PHONE}\n` }, 'host'],
      [{ host: `${PHONE}"` }, 'host'],
      [{ host: `${PHONE}}` }, 'host'],
      [{ host: `${PHONE} ` }, 'host'],
      [{ host: 'phone.local' }, 'host'],
      [{ port: 0 }, 'port'],
      [{ port: 65536 }, 'port'],
      [{ port: '1080' }, 'port'],
      [{ password: 'a"b' }, 'password'],
      [{ password: 'a;b' }, 'password'],
      [{ password: 'a}b' }, 'password'],
      [{ password: 'a\nb' }, 'password'],
      [{ user: 'o"ap' }, 'user'],
      [{ user: 'o;ap' }, 'user'],
      [{ user: 'o}ap' }, 'user'],
      [{ user: 'o\nap' }, 'user'],
      [{ password: '' }, 'password'],
      [{ host: '' }, 'host'],
      [{ host: 7 }, 'host'],
      [{ password: big }, 'password'],
      [{ user: big }, 'user'],
    ];
    const lines = await socketLines(
      APP_USER,
      ...table.map(([change], i) => ({ id: i, method: 'set_proxy_route', params: { ...good, ...change } })),
    );
    assert.equal(lines.length, table.length);
    lines.forEach((line, i) => {
      const r = JSON.parse(line) as { result?: Status };
      assert.equal(r.result?.ok, false, line.slice(0, 200));
      assert.equal(r.result?.state, 'active');
      assert.match(String(r.result?.error), new RegExp(`^${table[i]?.[1]}: `));
    });
    // D-Bus: the same rules; 100 KB strings; port is a uint16 there, so 0 is the out-of-range case.
    const dbusTable: [string[], string][] = [
      [['true', `${PHONE};`, '1080', 'oap', PASSWORD], 'host'],
      [['true', PHONE, '0', 'oap', PASSWORD], 'port'],
      [['true', PHONE, '1080', 'oap', 'x";}'], 'password'],
      [['true', PHONE, '1080', 'o\nap', PASSWORD], 'user'],
      [['true', PHONE, '1080', 'oap', 'q'.repeat(100_000)], 'password'],
      [['true', 'h'.repeat(100_000), '1080', 'oap', PASSWORD], 'host'],
    ];
    for (const [args, field] of dbusTable) {
      const r = await gdbus('SetProxyRoute', args);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, new RegExp(`org\\.freedesktop\\.DBus\\.Error\\.InvalidArgs: ${field}: `));
      assert.ok(r.stderr.length < 2000, 'the value is not echoed');
    }
    const wrongType = await sb.busctl([
      'call',
      BUS_NAME,
      OBJECT_PATH,
      INTERFACE,
      'SetProxyRoute',
      'bsuss',
      'true',
      PHONE,
      '1080',
      'oap',
      PASSWORD,
    ]);
    assert.notEqual(wrongType.code, 0);
    assert.deepEqual(await snapshot(), before, 'nothing written, nothing restarted');
    assert.equal((await curl()).stdout.trim(), 'client=203.0.113.1');
    assert.equal((await status(true)).state, 'active');
  });

  it('kill redsocks → failed → restarted → active, seen by a socket subscriber and on D-Bus', async () => {
    const sub = sb.exec(['node', '-e', SUBSCRIBER, '10', '/tmp/proxy-subscribed'], {
      user: APP_USER,
      timeoutMs: 30_000,
    });
    const mon = sb.exec(['timeout', '10', 'stdbuf', '-oL', 'gdbus', 'monitor', '--system', '-d', BUS_NAME], {
      timeoutMs: 30_000,
    });
    // Subscribed (the answer to subscribe arrived), and the monitor had as long to get going.
    await sb.waitFor(() => sb.readFile('/tmp/proxy-subscribed').then(() => true), 8_000, 50);
    await new Promise((r) => setTimeout(r, 500));
    const t0 = Date.now();
    await sb.execOk(['systemctl', 'kill', '-s', 'KILL', '--kill-whom=main', 'openauto-proxy.service']);
    const back = await sb.waitFor(
      async () => ((await status()).state === 'active' ? Date.now() : 0),
      15_000,
      50,
    );
    console.log(`# redsocks killed → active again after ${back - t0} ms`);
    const events = (await sub).stdout
      .split('\n')
      .filter((l) => l.includes('"event":"proxy_changed"'))
      .map((l) => (JSON.parse(l) as { params: Status }).params.state);
    assert.deepEqual(events, ['failed', 'active'], 'the subscriber saw failed, then active');
    const dbus = (await mon).stdout;
    assert.match(dbus, /'ProxyState': <'failed'>[\s\S]*'ProxyState': <'active'>/, dbus);
    assert.equal((await curl()).stdout.trim(), 'client=203.0.113.1');
  });

  it('stop the SOCKS server → degraded within the verify interval; start it → active', async () => {
    await sb.execOk(['systemctl', 'stop', 'phone-socks.service']);
    const t0 = Date.now();
    const degradedAt = await sb.waitFor(
      async () => ((await status()).state === 'degraded' ? Date.now() : 0),
      16_000,
      200,
    );
    console.log(`# SOCKS server stopped → degraded after ${degradedAt - t0} ms (verify interval 10 s)`);
    const s = await status();
    assert.equal(s.error_code, 'upstream_unreachable');
    assert.deepEqual(s.checks, { listener: true, iptables: true, upstream: false });
    await startSocks('phone-socks-2');
    const v = await status(true);
    assert.equal(v.state, 'active', JSON.stringify(v));
  });

  it('restart the daemon with the route on: a download running across the restart keeps going', async () => {
    const mainPid = (await snapshot()).units;
    const download = sb.exec(
      ['curl', '-sS', '-m', '30', '-o', '/tmp/slow', '-w', '%{size_download}', `${URL}slow`],
      {
        timeoutMs: 40_000,
      },
    );
    await new Promise((r) => setTimeout(r, 1500));
    await sb.execOk(['systemctl', 'restart', 'openauto-system.service']);
    const d = await download;
    assert.equal(d.code, 0, d.stderr);
    assert.equal(d.stdout.trim(), String(40 * 1024), 'the whole download arrived');
    assert.equal((await snapshot()).units, mainPid, 'redsocks was not restarted');
    const s = await sb.waitFor(async () => {
      const st = await status(true);
      return st.state === 'active' ? st : undefined;
    }, 10_000);
    assert.equal(s.state, 'active');
    const adopted = await sb.journalMessages('openauto-system');
    assert.ok(adopted.some((m) => m === 'adopting the proxy route in place'));
  });

  it('the default route deleted under it → failed (routing_missing), repaired at once → active', async () => {
    await sb.execOk(['ip', 'route', 'del', 'default', 'dev', 'wlan0', 'metric', '4242']);
    const seen = await status(true);
    assert.equal(seen.state, 'failed');
    assert.equal(seen.error_code, 'routing_missing');
    assert.equal(seen.checks.iptables, false);
    await sb.waitFor(async () => (await status()).state === 'active', 10_000);
    assert.match(await sb.execOk(['ip', 'route']), /^default dev wlan0 scope link metric 4242 $/m);
    assert.equal((await curl()).stdout.trim(), 'client=203.0.113.1');
  });

  it('at start-up a running route nobody accounts for is removed', async () => {
    await sb.execOk(['systemctl', 'stop', 'openauto-system.service']);
    await sb.execOk(['rm', '/run/openauto/openauto-proxy-route.json']);
    assert.equal(await sb.unitState('openauto-proxy.service'), 'active', 'still running without the daemon');
    await sb.execOk(['systemctl', 'start', 'openauto-system.service']);
    assert.equal(await sb.unitState('openauto-proxy.service'), 'inactive');
    assert.equal(await sb.unitState('openauto-proxy-route.service'), 'inactive');
    assert.equal(await sb.execOk(['nft', 'list', 'ruleset']), baseline.nft);
    assert.equal(await sb.execOk(['ip', 'route']), baseline.routes);
    assert.equal((await sb.execOk(['ls', '-A', '/run/openauto'])).trim(), 'system.sock');
    assert.equal((await status()).state, 'disabled');
    assert.equal((await on()).state, 'active', 'and it can be set again');
  });

  it('active:false → the web server is unreachable again; nft ruleset and routes exactly as before', async () => {
    const r = await setRoute({ active: false });
    assert.equal(r.ok, true);
    assert.equal(r.state, 'disabled');
    assert.notEqual((await curl()).code, 0, 'still reachable after active:false');
    assert.equal(await sb.execOk(['nft', 'list', 'ruleset']), baseline.nft);
    assert.equal(await sb.execOk(['ip', 'route']), baseline.routes);
    assert.equal((await sb.execOk(['ls', '-A', '/run/openauto'])).trim(), 'system.sock');
    assert.equal(await sb.unitState('openauto-proxy.service'), 'inactive');
    assert.equal(await sb.unitState('openauto-proxy-route.service'), 'inactive');
  });

  it('the password is never logged, never in GetStatus, in no file but the redsocks config', async () => {
    await on();
    const status = JSON.stringify(await sb.call(BUS_NAME, OBJECT_PATH, INTERFACE, 'GetStatus'));
    assert.ok(status.includes('"proxy"'), 'GetStatus has the proxy section');
    assert.ok(!status.includes(PASSWORD));
    const journal = await sb.execOk(['journalctl', '--no-pager', '-o', 'verbose']);
    assert.ok(!journal.includes(PASSWORD), 'the password is in the journal');
    // Files: only /run/openauto/redsocks.conf (the phone's own microsocks command line aside, which is the
    // test's stand-in, not ours).
    const holders = (
      await sb.exec(['grep', '-rlF', PASSWORD, '/run', '/etc', '/var/lib', '/var/log', '/tmp', '/home'])
    ).stdout
      .trim()
      .split('\n')
      .filter((f) => f !== '' && !f.startsWith('/run/systemd/transient/phone-socks'));
    assert.deepEqual(holders, ['/run/openauto/redsocks.conf']);
    await setRoute({ active: false });
  });

  it('the proxy units score an exposure of at most 1.5 and 2.0 (systemd-analyze security --offline)', async () => {
    for (const [unit, limit] of [
      ['openauto-proxy.service', 1.5],
      ['openauto-proxy-route.service', 2.0],
    ] as const) {
      const r = await sb.exec([
        'systemd-analyze',
        'security',
        '--offline=true',
        '--no-pager',
        `/usr/lib/systemd/system/${unit}`,
      ]);
      const m = new RegExp(`Overall exposure level for ${unit.replace('.', '\\.')}: (\\d+\\.\\d+)`).exec(
        r.stdout + r.stderr,
      );
      assert.ok(m, r.stdout + r.stderr);
      console.log(`# ${unit} exposure ${m[1]}`);
      assert.ok(Number(m[1]) <= limit, `${unit}: ${m[1]}`);
    }
  });

  it('openautoctl proxy on / status --verify / off, as the app user; stranger is refused', async () => {
    await sb.writeFile('/tmp/proxy-pw', `${PASSWORD}\n`, 0o600);
    await sb.execOk(['chown', APP_USER, '/tmp/proxy-pw']);
    const onOut = await sb.execOk(
      ['openautoctl', 'proxy', 'on', PHONE, '1080', '--password-file', '/tmp/proxy-pw'],
      {
        user: APP_USER,
      },
    );
    assert.match(onOut, /^state {6}active$/m);
    assert.equal((await curl()).stdout.trim(), 'client=203.0.113.1');
    const st = JSON.parse(
      await sb.execOk(['openautoctl', '--json', 'proxy', 'status', '--verify']),
    ) as Status & {
      live_check: boolean;
    };
    assert.equal(st.state, 'active');
    assert.equal(st.live_check, true);
    const denied = await sb.exec(['openautoctl', 'proxy', 'off'], { user: OTHER_USER });
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /AccessDenied/);
    assert.match(
      await sb.execOk(['openautoctl', 'proxy', 'off'], { user: APP_USER }),
      /^state {6}disabled$/m,
    );
    assert.notEqual((await curl()).code, 0);
    await sb.execOk(['rm', '-f', '/tmp/proxy-pw']);
  });

  it('uninstall.sh with the route on leaves no table, no route and no redsocks behind', async () => {
    assert.equal((await on()).state, 'active');
    const r = await sb.exec(['bash', '/usr/src/openauto-system/scripts/uninstall.sh'], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sb.execOk(['nft', 'list', 'ruleset']), baseline.nft);
    assert.equal(await sb.execOk(['ip', 'route']), baseline.routes);
    assert.notEqual(await sb.unitState('openauto-proxy.service'), 'active');
    assert.notEqual((await curl()).code, 0);
  });
});
