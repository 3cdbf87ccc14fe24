// Least privilege, proven on the running system: a local user outside group openauto cannot change anything
// through D-Bus or the socket (every mutating method, both ways), the openauto group can, and the shipped
// unit's hardening scores 2.5 or better in systemd-analyze security.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  APP_USER,
  BUS_NAME,
  daemonSuiteSkip,
  INTERFACE,
  OBJECT_PATH,
  OTHER_USER,
  REPO_ROOT,
  Sandbox,
} from './harness.js';
import { SOCKET_LINES_CLIENT } from './helpers-socket.js';

const skip = daemonSuiteSkip();
const SOCKET = '/run/openauto/system.sock';
const AA_UUID = '4de17a00-52cb-11e6-bdf4-0800200c9a66';

describe('who may change what', { skip }, () => {
  let sb: Sandbox;
  const snapshot = async () => ({
    hostapd: (
      await sb.execOk(['systemctl', 'show', '-P', 'ActiveEnterTimestampMonotonic', 'hostapd'])
    ).trim(),
    networkd: (
      await sb.execOk(['systemctl', 'show', '-P', 'ActiveEnterTimestampMonotonic', 'systemd-networkd'])
    ).trim(),
    bluetooth: (
      await sb.execOk(['systemctl', 'show', '-P', 'ActiveEnterTimestampMonotonic', 'bluetooth'])
    ).trim(),
    hostapdConf: await sb.readFile('/etc/hostapd/hostapd.conf').catch(() => '(none)'),
    network: await sb.readFile('/etc/systemd/network/10-openauto-ap.network').catch(() => '(none)'),
    alias: (
      await sb.execOk([
        'busctl',
        'get-property',
        'org.bluez',
        '/org/bluez/hci0',
        'org.bluez.Adapter1',
        'Alias',
      ])
    ).trim(),
    zone: (await sb.execOk(['readlink', '/etc/localtime'])).trim(),
  });
  const socket = (user: string, ...requests: object[]) =>
    sb.execOk(['node', '-e', SOCKET_LINES_CLIENT, ...requests.map((r) => JSON.stringify(r))], { user });

  before(async () => {
    sb = await Sandbox.start({ name: 'security' });
    // Give config.yaml a value for every section, different from what is in place, so an allowed apply
    // would change something.
    const cfg = await sb.readFile('/home/appuser/.openauto/config.yaml');
    await sb.writeFile(
      '/home/appuser/.openauto/config.yaml',
      `${cfg.replace(/ssid: [^,}\s]+/, 'ssid: ChangedBySecurityTest').replace(/bt_name: [^,}\s]+/, 'bt_name: SecTest')}\ntime: {timezone: Asia/Tokyo}\nnetwork: {ap_ip: 10.0.0.1, dhcp_range_start: 10.0.0.20, dhcp_range_end: 10.0.0.60}\n`,
    );
    await sb.exec(['chown', 'appuser:appuser', '/home/appuser/.openauto/config.yaml']);
    await sb.waitFor(async () => {
      const r = await sb.busctl(['call', BUS_NAME, OBJECT_PATH, INTERFACE, 'GetHealth']);
      return r.code === 0 && !r.stdout.includes('unknown') && !r.stdout.includes('activating');
    }, 15_000);
  });
  after(async () => {
    await sb?.stop();
  });

  it('D-Bus: stranger is denied every mutating method, and nothing changes', async () => {
    const before = await snapshot();
    const attempts: string[][] = [
      ...['wifi', 'network', 'bluetooth', 'time'].map((s) => ['ApplyConfig', 's', s]),
      ...['hostapd', 'networkd', 'systemd-networkd', 'bluetooth'].map((s) => ['RestartService', 's', s]),
      ['ClaimProfile', 'so', AA_UUID, '/handler'],
    ];
    for (const args of attempts) {
      const r = await sb.busctl(['call', BUS_NAME, OBJECT_PATH, INTERFACE, ...args], { user: OTHER_USER });
      assert.notEqual(r.code, 0, `${args.join(' ')} was allowed`);
      assert.match(r.stderr, /not authorized|Access denied/i, `${args.join(' ')}: ${r.stderr}`);
    }
    const set = await sb.busctl(['set-property', BUS_NAME, OBJECT_PATH, INTERFACE, 'Version', 's', 'x'], {
      user: OTHER_USER,
    });
    assert.notEqual(set.code, 0, 'read-only property was set');
    assert.deepEqual(await snapshot(), before);
  });

  it('socket: stranger cannot even connect; appuser and root can', async () => {
    const mode = (await sb.execOk(['stat', '-c', '%a %U %G', SOCKET])).trim();
    assert.equal(mode, '660 root openauto');
    const before = await snapshot();
    const denied = await socket(
      OTHER_USER,
      { id: '1', method: 'apply_config', params: { section: 'wifi' } },
      { id: '2', method: 'restart_service', params: { name: 'hostapd' } },
    );
    assert.match(denied, /ERROR EACCES/);
    assert.deepEqual(await snapshot(), before);
    assert.match(await socket('root', { id: 'r', method: 'ping' }), /"result":"pong"/);
    assert.match(await socket(APP_USER, { id: 'a', method: 'get_health' }), /"id":"a","result":\{"hostapd"/);
  });

  it('D-Bus and socket: the openauto group may apply and restart', async () => {
    const before = await snapshot();
    await sb.execOk(['busctl', 'call', BUS_NAME, OBJECT_PATH, INTERFACE, 'ApplyConfig', 's', 'wifi'], {
      user: APP_USER,
    });
    const mid = await snapshot();
    assert.notEqual(mid.hostapdConf, before.hostapdConf);
    assert.match(mid.hostapdConf, /^ssid=ChangedBySecurityTest$/m);
    const out = await socket(APP_USER, { id: '9', method: 'restart_service', params: { name: 'bluetooth' } });
    assert.match(out, /"result":\{"ok":true,"name":"bluetooth"\}/);
    assert.notEqual((await snapshot()).bluetooth, mid.bluetooth);
  });
});

describe('the unit hardening', () => {
  it('systemd-analyze security --offline scores an overall exposure of 2.5 or lower', {
    skip: spawnSync('which', ['systemd-analyze']).status !== 0 ? 'systemd-analyze missing' : undefined,
  }, () => {
    const r = spawnSync(
      'systemd-analyze',
      ['security', '--offline=true', '--no-pager', join(REPO_ROOT, 'systemd', 'openauto-system.service')],
      { encoding: 'utf8' },
    );
    const m = /Overall exposure level for openauto-system\.service: (\d+\.\d+)/.exec(
      `${r.stdout}${r.stderr}`,
    );
    assert.ok(m, `no exposure figure in: ${r.stdout}${r.stderr}`);
    const exposure = Number(m[1]);
    console.log(`# exposure ${exposure}`);
    assert.ok(exposure <= 2.5, `exposure ${exposure} > 2.5`);
  });
});
