// The sandbox itself: what every other sandbox test relies on. Boots one container and checks real systemd,
// the bus, networkd's wlan0, the BlueZ stand-in, polkit with our policy, timedated, the two users, the
// installed package and the stand-in knobs; then runs a probe under the shipped unit's hardening to prove
// that node, dbus-next and the native modules work inside it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  APP_CONFIG,
  APP_USER,
  BUS_NAME,
  daemonBuilt,
  INTERFACE,
  OBJECT_PATH,
  OTHER_USER,
  Sandbox,
  sandboxUnavailable,
} from './harness.js';

const skip = sandboxUnavailable();

describe('sandbox foundation', { skip }, () => {
  let sb: Sandbox;

  before(async () => {
    // The daemon stays stopped until its own tests below, so its recovery does not fight the stand-in tests.
    sb = await Sandbox.start({ name: 'foundation', daemon: false });
    console.log(`# sandbox booted in ${sb.bootMs} ms (leader PID ${sb.leader})`);
  });

  after(async () => {
    await sb?.stop();
  });

  it('boots real systemd as PID 1 and reaches the sandbox target', async () => {
    assert.equal((await sb.execOk(['cat', '/proc/1/comm'])).trim(), 'systemd');
    const state = (await sb.exec(['systemctl', 'is-system-running'])).stdout.trim();
    assert.match(state, /^(running|degraded)$/);
    assert.equal(await sb.unitState('openauto-sandbox.target'), 'active');
  });

  it('has a working system bus', async () => {
    const r = await sb.busctl(['status']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /BusScope=system/);
    const names = await sb.call(
      'org.freedesktop.DBus',
      '/org/freedesktop/DBus',
      'org.freedesktop.DBus',
      'ListNames',
    );
    assert.ok((names[0] as string[]).includes('org.freedesktop.systemd1'));
  });

  it('networkd gave wlan0 10.0.0.1/24 from 10-openauto-ap.network, with its DHCP server', async () => {
    await sb.waitFor(async () =>
      (await sb.execOk(['ip', '-4', '-o', 'addr', 'show', 'dev', 'wlan0'])).includes('10.0.0.1/24'),
    );
    const status = await sb.waitFor(async () => {
      const out = await sb.execOk(['networkctl', 'status', '--no-pager', 'wlan0']);
      return /State: routable \(configured\)|configured/.test(out) ? out : '';
    });
    assert.match(status, /10-openauto-ap\.network/);
    // The DHCPServer interface exists on the link only while networkd's server runs.
    const idx = (await sb.readFile('/sys/class/net/wlan0/ifindex')).trim();
    const link = await sb.call(
      'org.freedesktop.network1',
      '/org/freedesktop/network1',
      'org.freedesktop.network1.Manager',
      'GetLinkByIndex',
      ['i', idx],
    );
    const leases = await sb.busctl([
      'get-property',
      'org.freedesktop.network1',
      String(link[1]),
      'org.freedesktop.network1.DHCPServer',
      'Leases',
    ]);
    assert.equal(leases.code, 0, leases.stderr);
    assert.match(await sb.execOk(['ip', '-o', 'link', 'show', 'wlan0-peer']), /wlan0-peer@wlan0/);
  });

  it('org.bluez answers with a powered hci0', async () => {
    assert.equal(await sb.unitState('bluetooth.service'), 'active');
    const powered = await sb.call('org.bluez', '/org/bluez/hci0', 'org.freedesktop.DBus.Properties', 'Get', [
      'ss',
      'org.bluez.Adapter1',
      'Powered',
    ]);
    assert.deepEqual(powered, [{ type: 'b', data: true }]);
    const tree = await sb.execOk(['busctl', 'tree', '--list', 'org.bluez']);
    assert.match(tree, /^\/org\/bluez\/hci0$/m);
  });

  it('polkitd is bus-activated and applies the shipped policy and rules', async () => {
    const actions = await sb.execOk(['pkaction']);
    for (const a of ['apply-config', 'restart-service', 'claim-profile', 'set-proxy-route']) {
      assert.match(actions, new RegExp(`^org\\.openauto\\.system\\.${a}$`, 'm'));
    }
    assert.equal(await sb.unitState('polkit.service'), 'active');
    // pkcheck about the caller's own process: the group rule grants appuser, nobody grants stranger.
    const check = (user: string, action: string) =>
      sb.exec(['bash', '-c', `exec pkcheck --action-id ${action} --process $$`], { user });
    for (const action of ['org.openauto.system.apply-config', 'org.openauto.system.restart-service']) {
      const ok = await check(APP_USER, action);
      assert.equal(ok.code, 0, `${APP_USER} ${action}: ${ok.stderr}${ok.stdout}`);
      const no = await check(OTHER_USER, action);
      assert.notEqual(no.code, 0, `${OTHER_USER} must not be granted ${action}`);
    }
  });

  it('timedated is bus-activated', async () => {
    const tz = await sb.execOk(['timedatectl', 'show', '-p', 'Timezone', '--value']);
    assert.ok(tz.trim().length > 0);
    assert.equal(await sb.unitState('systemd-timedated.service'), 'active');
  });

  it('has appuser in group openauto and stranger outside it', async () => {
    const app = (await sb.execOk(['id', '-nG'], { user: APP_USER })).trim().split(/\s+/);
    assert.ok(app.includes('openauto'), `appuser groups: ${app.join(' ')}`);
    const other = (await sb.execOk(['id', '-nG'], { user: OTHER_USER })).trim().split(/\s+/);
    assert.ok(!other.includes('openauto'), `stranger groups: ${other.join(' ')}`);
    assert.equal((await sb.execOk(['id', '-un'], { user: APP_USER })).trim(), APP_USER);
    // The app's config is private to appuser.
    assert.match(await sb.execOk(['cat', APP_CONFIG], { user: APP_USER }), /wifi_ap:/);
    assert.notEqual((await sb.exec(['cat', APP_CONFIG], { user: OTHER_USER })).code, 0);
  });

  it('has the package installed by install.sh and enabled', async () => {
    assert.equal((await sb.execOk(['systemctl', 'is-enabled', 'openauto-system.service'])).trim(), 'enabled');
    const defaults = await sb.readFile('/etc/default/openauto-system');
    assert.match(defaults, new RegExp(`^OPENAUTO_CONFIG=${APP_CONFIG}$`, 'm'));
    const manifest = await sb.readFile('/usr/lib/openauto-system/install-manifest');
    for (const line of [
      'file /usr/lib/systemd/system/openauto-system.service',
      'file /usr/share/dbus-1/system.d/org.openauto.System.conf',
      'file /usr/share/dbus-1/system-services/org.openauto.System.service',
      'file /usr/share/polkit-1/actions/org.openauto.system.policy',
      'file /usr/share/polkit-1/rules.d/50-openauto-system.rules',
      'file /usr/lib/systemd/system/openauto-proxy.service',
      'file /usr/lib/systemd/system/openauto-proxy-route.service',
      'link /usr/bin/openautoctl',
      'member openauto appuser',
      'unit openauto-system.service',
    ]) {
      assert.ok(manifest.split('\n').includes(line), `manifest lacks "${line}"`);
    }
    const alias = await sb.execOk(['readlink', '/etc/systemd/system/dbus-org.openauto.System.service']);
    assert.match(alias.trim(), /\/systemd\/system\/openauto-system\.service$/);
    const conf = await sb.execOk(['stat', '-c', '%a %G', '/etc/hostapd/hostapd.conf']);
    assert.equal(conf.trim(), '640 openauto');
  });

  it('journal(): reads structured entries by identifier', async () => {
    await sb.execOk(['logger', '-t', 'sandbox-probe', 'hello from the foundation test']);
    const msgs = await sb.waitFor(async () => {
      const m = await sb.journalMessages('sandbox-probe');
      return m.includes('hello from the foundation test') ? m : undefined;
    });
    assert.ok(msgs.length >= 1);
    const hostapd = await sb.journal('hostapd.service', { unit: true });
    assert.ok(hostapd.length > 0, 'hostapd.service logged nothing');
  });

  it('exec(): input, users, exit codes and timeouts', async () => {
    const r = await sb.exec(['cat'], { input: 'abc\n', user: OTHER_USER });
    assert.deepEqual([r.code, r.stdout], [0, 'abc\n']);
    assert.equal((await sb.exec(['sh', '-c', 'exit 7'])).code, 7);
    const t0 = Date.now();
    const slow = await sb.exec(['sleep', '20'], { timeoutMs: 300 });
    assert.ok(Date.now() - t0 < 5000, 'timeout did not cut the command short');
    assert.notEqual(slow.code, 0);
    assert.equal((await sb.execOk(['printenv', 'FOO'], { env: { FOO: 'bar' } })).trim(), 'bar');
    // A clean environment: nothing of the host's leaks in (e.g. a test's DBUS_SYSTEM_BUS_ADDRESS).
    assert.equal((await sb.exec(['printenv', 'DBUS_SYSTEM_BUS_ADDRESS'])).code, 1);
  });

  // The stand-ins keep systemd's start limit (5 starts in 10 s), which these quick knob checks (and the
  // daemon's repairs in between) would exceed: each restart here starts from a cleared counter.
  const restartFresh = async (unit: string) => {
    await sb.systemctl(['reset-failed', unit]);
    return sb.systemctl(['restart', unit]);
  };

  it('hostapd stand-in: parses the config with the real hostapd and obeys its knobs', async () => {
    assert.equal(await sb.unitState('hostapd.service'), 'active');
    const conf = await sb.readFile('/etc/hostapd/hostapd.conf');
    try {
      // A marker line makes the next start fail, synchronously (Type=forking like the real unit).
      await sb.writeFile('/etc/hostapd/hostapd.conf', `${conf}# sandbox-refuse\n`, 0o640);
      assert.notEqual((await restartFresh('hostapd.service')).code, 0);
      assert.equal(await sb.unitState('hostapd.service'), 'failed');
      // A config error the real hostapd rejects fails the start too.
      await sb.writeFile('/etc/hostapd/hostapd.conf', `${conf}no_such_key=1\n`, 0o640);
      assert.notEqual((await restartFresh('hostapd.service')).code, 0);
      const log = (await sb.journalMessages('hostapd.service', { unit: true })).join('\n');
      assert.match(log, /unknown configuration item 'no_such_key'/);
      // A crash after start.
      await sb.writeFile('/etc/hostapd/hostapd.conf', conf, 0o640);
      await sb.writeFile('/etc/openauto-sandbox/hostapd.env', 'HOSTAPD_EXIT_AFTER=0.5\n');
      assert.equal((await restartFresh('hostapd.service')).code, 0);
      await sb.waitFor(async () => (await sb.unitState('hostapd.service')) === 'failed', 5000);
      // A slow start stays "activating".
      await sb.writeFile('/etc/openauto-sandbox/hostapd.env', 'HOSTAPD_START_DELAY=3\n');
      await sb.systemctl(['reset-failed', 'hostapd.service']);
      await sb.execOk(['systemctl', 'start', '--no-block', 'hostapd.service']);
      await sb.waitFor(async () => (await sb.unitState('hostapd.service')) === 'activating', 2000, 50);
      await sb.waitFor(async () => (await sb.unitState('hostapd.service')) === 'active', 6000);
      const starts = (await sb.readFile('/run/openauto-sandbox/hostapd.starts')).trim().split('\n');
      assert.ok(starts.length >= 5, `hostapd.starts has ${starts.length} lines`);
    } finally {
      await sb.writeFile('/etc/hostapd/hostapd.conf', conf, 0o640);
      await sb.writeFile('/etc/openauto-sandbox/hostapd.env', '');
      await restartFresh('hostapd.service');
    }
    const tail = (await sb.journalMessages('hostapd.service', { unit: true })).slice(-15).join('\n');
    assert.equal(await sb.unitState('hostapd.service'), 'active', tail);
  });

  it('bluetooth stand-in: can be made to refuse starting', async () => {
    try {
      await sb.writeFile('/etc/openauto-sandbox/bluetooth.env', 'BLUETOOTH_REFUSE=1\n');
      assert.notEqual((await restartFresh('bluetooth.service')).code, 0);
      assert.equal(await sb.unitState('bluetooth.service'), 'failed');
    } finally {
      await sb.writeFile('/etc/openauto-sandbox/bluetooth.env', '');
      assert.equal((await restartFresh('bluetooth.service')).code, 0);
    }
    const powered = await sb.call('org.bluez', '/org/bluez/hci0', 'org.freedesktop.DBus.Properties', 'Get', [
      'ss',
      'org.bluez.Adapter1',
      'Powered',
    ]);
    assert.deepEqual(powered, [{ type: 'b', data: true }]);
  });

  it("node, dbus-next and the native modules work under the shipped unit's hardening", async () => {
    await sb.writeFile('/usr/local/lib/openauto-sandbox/hardening-probe.mjs', HARDENING_PROBE);
    // The installed unit, with the probe in place of the daemon (same node flags) and its own runtime directory.
    const unit = (await sb.readFile('/usr/lib/systemd/system/openauto-system.service'))
      .replace(/^Type=dbus$/m, 'Type=oneshot')
      .replace(/^BusName=.*$/m, '')
      .replace(/^Restart=.*$/m, 'Restart=no')
      .replace(/^RuntimeDirectory=openauto$/m, 'RuntimeDirectory=openauto-probe')
      // The probe runs as a script: without the daemon's start-up snapshot (node would run the daemon).
      .replace(/ \$OPENAUTO_SNAPSHOT /, ' ')
      .replace(
        /^(ExecStart=\/usr\/bin\/node [^\n]*?)\S+\.js$/m,
        '$1/usr/local/lib/openauto-sandbox/hardening-probe.mjs',
      )
      .replace(/^\[Install\][\s\S]*$/m, '');
    await sb.writeFile('/etc/systemd/system/openauto-hardening-probe.service', unit);
    await sb.execOk(['systemctl', 'daemon-reload']);
    const run = await sb.systemctl(['start', 'openauto-hardening-probe.service'], { timeoutMs: 30_000 });
    const out = (await sb.journalMessages('openauto-hardening-probe.service', { unit: true })).join('\n');
    const line = out.split('\n').find((l) => l.startsWith('PROBE '));
    assert.ok(line, `the probe printed no result (exit ${run.code}):\n${out}`);
    const results = JSON.parse(line.slice('PROBE '.length)) as {
      name: string;
      ok: boolean;
      detail: string;
    }[];
    const failed = results.filter((r) => !r.ok);
    assert.deepEqual(failed, [], out);
    assert.equal(run.code, 0, out);
  });

  describe('the daemon', {
    skip: daemonBuilt ? undefined : 'dist/bin/openauto-system.js is not built yet',
  }, () => {
    it('is D-Bus activated by a call and answers GetHealth to any user', async () => {
      assert.equal(await sb.unitState('openauto-system.service'), 'inactive');
      await sb.call(BUS_NAME, OBJECT_PATH, 'org.freedesktop.DBus.Peer', 'Ping', [], { user: OTHER_USER });
      assert.equal(await sb.unitState('openauto-system.service'), 'active');
      for (const user of ['root', APP_USER, OTHER_USER]) {
        const data = await sb.call(BUS_NAME, OBJECT_PATH, INTERFACE, 'GetHealth', [], { user });
        const health = data[0] as Record<string, string>;
        assert.deepEqual(
          Object.keys(health).sort(),
          ['bluetooth', 'hostapd', 'networkd'],
          JSON.stringify(health),
        );
      }
    });

    it('openautoctl health works through the /usr/bin symlink', async () => {
      const r = await sb.exec(['openautoctl', 'health'], { user: APP_USER });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /hostapd/);
    });
  });
});

// Run as a oneshot service with the daemon's [Service] settings. Prints "PROBE <json>" and exits 1 on any
// failed check. It exercises what the daemon does: read the app's config through a private home, read
// addresses, write files into the two writable directories with group openauto, serve a unix socket, use
// the system bus (systemd1, BlueZ, networkd), load the native modules and log to journald.
const HARDENING_PROBE = String.raw`
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
const require = createRequire('/usr/lib/openauto-system/package.json');
const results = [];
async function check(name, fn) {
  try {
    const detail = await fn();
    results.push({ name, ok: true, detail: String(detail ?? '') });
  } catch (e) {
    results.push({ name, ok: false, detail: String(e && e.message ? e.message : e) });
  }
}
function expectFail(fn, code) {
  try { fn(); } catch (e) { if (!code || e.code === code) return 'refused: ' + e.code; throw e; }
  throw new Error('was allowed');
}
const gid = Number(fs.readFileSync('/etc/group', 'utf8').split('\n').find((l) => l.startsWith('openauto:')).split(':')[2]);
function atomicWrite(dir) {
  const tmp = dir + '/.probe.tmp';
  const fd = fs.openSync(tmp, 'wx', 0o640);
  fs.writeSync(fd, 'probe\n');
  fs.fchownSync(fd, 0, gid);
  fs.fchmodSync(fd, 0o640);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(tmp, dir + '/probe.conf');
  const dfd = fs.openSync(dir, 'r');
  fs.fsyncSync(dfd);
  fs.closeSync(dfd);
  const st = fs.statSync(dir + '/probe.conf');
  fs.unlinkSync(dir + '/probe.conf');
  if (st.gid !== gid || (st.mode & 0o777) !== 0o640) throw new Error('mode/group not applied');
  return 'ok';
}
await check('read config through 0700 home', () => fs.readFileSync(process.env.OPENAUTO_CONFIG, 'utf8').includes('wifi_ap'));
await check('wlan0 address via getifaddrs', () => {
  const a = (os.networkInterfaces().wlan0 || []).map((x) => x.address);
  if (!a.includes('10.0.0.1')) throw new Error('wlan0: ' + a.join(','));
  return a.join(',');
});
// Hot functions and regexps are where a JIT would make memory executable, which MemoryDenyWriteExecute
// refuses: with --jitless they stay interpreted and the process lives.
await check('hot code and regexps under MemoryDenyWriteExecute', () => {
  let n = 0;
  const re = /^([a-z]+)=(\d+)$/;
  const f = (s) => (re.test(s) ? Number(s.split('=')[1]) : 0);
  for (let i = 0; i < 300000; i++) n += f('key=' + (i % 10));
  return String(n);
});
await check('sysfs ifindex', () => fs.readFileSync('/sys/class/net/wlan0/ifindex', 'utf8').trim());
await check('atomic write in /etc/hostapd with group openauto', () => atomicWrite('/etc/hostapd'));
await check('atomic write in /etc/systemd/network', () => atomicWrite('/etc/systemd/network'));
await check('/usr is read-only', () => expectFail(() => fs.writeFileSync('/usr/lib/openauto-system/x', 'x'), 'EROFS'));
await check('/home is read-only', () => expectFail(() => fs.writeFileSync('/home/appuser/x', 'x'), 'EROFS'));
await check('/etc outside the two directories is read-only', () => expectFail(() => fs.writeFileSync('/etc/x', 'x'), 'EROFS'));
await check('zoneinfo readable', () => fs.existsSync('/usr/share/zoneinfo/Europe/Berlin') || 'missing');
await check('unix socket in the runtime directory, group openauto', async () => {
  const path = '/run/openauto-probe/system.sock';
  const srv = net.createServer((c) => c.end('pong\n'));
  await new Promise((res, rej) => { srv.once('error', rej); srv.listen(path, res); });
  fs.chmodSync(path, 0o660);
  fs.chownSync(path, 0, gid);
  const got = await new Promise((res, rej) => {
    const c = net.connect(path);
    let buf = '';
    c.on('data', (d) => (buf += d));
    c.on('end', () => res(buf));
    c.on('error', rej);
  });
  srv.close();
  if (got !== 'pong\n') throw new Error('got ' + JSON.stringify(got));
  return (fs.statSync('/run/openauto-probe').mode & 0o777).toString(8);
});
// AF_INET is allowed (the proxy route's upstream check); IPv6 is not.
await check('AF_INET6 is refused', async () => {
  await new Promise((res, rej) => {
    const srv = net.createServer();
    srv.once('error', (e) => res(e.code));
    srv.listen(0, '::1', () => { srv.close(); rej(new Error('listening on IPv6 was allowed')); });
  });
  return 'refused';
});
await check('native module usocket loads', () => typeof require('usocket').USocket);
await check('native module systemd-journald logs', () => {
  const Journald = require('systemd-journald');
  new Journald({ syslog_identifier: 'openauto-probe' }).info('probe via journald', { PROBE_FIELD: 'yes' });
  return 'ok';
});
// dbus-next lives inside the installed bundle, not on its own: the checkout's copy (bound in read-only), the
// same code; the native modules above are the installed ones.
const dbus = createRequire('/usr/src/openauto-system/package.json')('dbus-next');
const bus = dbus.systemBus();
const call = (destination, path, iface, member, signature, body) =>
  Promise.race([
    bus.call(new dbus.Message({ destination, path, interface: iface, member, signature, body })),
    new Promise((_, rej) => setTimeout(() => rej(new Error('timeout: ' + member)), 5000)),
  ]);
const SD = ['org.freedesktop.systemd1', '/org/freedesktop/systemd1', 'org.freedesktop.systemd1.Manager'];
await check('systemd1 LoadUnit', async () => (await call(...SD, 'LoadUnit', 's', ['hostapd.service'])).body[0]);
await check('systemd1 RestartUnit as root with capabilities dropped', async () =>
  (await call(...SD, 'RestartUnit', 'ss', ['hostapd.service', 'replace'])).body[0]);
await check('BlueZ Adapter1.Powered', async () => {
  const v = (await call('org.bluez', '/org/bluez/hci0', 'org.freedesktop.DBus.Properties', 'Get', 'ss', ['org.bluez.Adapter1', 'Powered'])).body[0];
  if (v.value !== true) throw new Error('not powered');
  return 'powered';
});
await check('networkd DescribeLink', async () => {
  const idx = Number(fs.readFileSync('/sys/class/net/wlan0/ifindex', 'utf8'));
  const j = JSON.parse((await call('org.freedesktop.network1', '/org/freedesktop/network1', 'org.freedesktop.network1.Manager', 'DescribeLink', 'i', [idx])).body[0]);
  return j.AdministrativeState;
});
await check('own a name like org.openauto.System (policy allows root)', async () => {
  const r = await bus.requestName('org.openauto.System', dbus.NameFlag.DO_NOT_QUEUE);
  if (r === dbus.RequestNameReply.PRIMARY_OWNER) await bus.releaseName('org.openauto.System');
  return r;
});
bus.disconnect();
console.log('PROBE ' + JSON.stringify(results));
process.exit(results.every((r) => r.ok) ? 0 : 1);
`;
