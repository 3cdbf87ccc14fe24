// ConfigApplier end to end against a temp filesystem and fake bus dependencies: the shipping app's config,
// identical content, rollback after a failed restart, serialization and Busy, bluetooth and time, the journal
// entry and the GetStatus summary.
import assert from 'node:assert/strict';
import { chmod, copyFile, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, afterEach, beforeEach, describe, test } from 'node:test';
import { ConfigApplier } from '../../src/config/applier.js';
import { SECTION_NAMES } from '../../src/config/schema.js';
import { ServiceError } from '../../src/errors.js';
import {
  captureLog,
  FakeSystem,
  FIXTURES,
  fileState,
  makeSandbox,
  parseHostapd,
  parseNetworkd,
  type Sandbox,
  validConfig,
} from '../fixtures/config/harness.js';
import { OPENAUTO_GID } from '../helpers/ids.js';

async function refused(p: Promise<unknown>): Promise<ServiceError> {
  const err = await p.then(
    () => assert.fail('should have failed'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ServiceError, `a ServiceError, got ${String(err)}`);
  return err;
}

const logs = captureLog();
const hasSystemZoneinfo = (await stat('/usr/share/zoneinfo/UTC').catch(() => null)) !== null;
after(() => logs.restore());

let sb: Sandbox;
let sys: FakeSystem;
beforeEach(async () => {
  sb = await makeSandbox();
  sys = new FakeSystem();
});
afterEach(() => sb.cleanup());

describe("the shipping app's config.yaml", () => {
  test('with a valid password: wifi and network apply', async () => {
    await copyFile(path.join(FIXTURES, 'shipping-app.yaml'), sb.paths.config);
    await copyFile(path.join(FIXTURES, 'installer-hostapd.conf'), sb.paths.hostapdConf);
    await copyFile(path.join(FIXTURES, 'installer.network'), sb.networkFile);
    const applier = new ConfigApplier(sys.deps(sb.paths));

    assert.deepEqual(await applier.apply('wifi'), { changed: true, restarted: ['hostapd'] });
    const h = parseHostapd(await readFile(sb.paths.hostapdConf, 'utf8')).map;
    assert.equal(h.get('ssid'), 'Prodigy_3fa9');
    assert.equal(h.get('wpa_passphrase'), 'q7GkL2xPz9RbT4mW');
    assert.equal(h.get('interface'), 'wlan0');
    assert.equal(h.get('country_code'), 'GB', "the installer's country is kept");

    assert.deepEqual(await applier.apply('network'), { changed: true, restarted: ['networkd'] });
    const n = parseNetworkd(await readFile(sb.networkFile, 'utf8')).map;
    assert.equal(n.get('Match.Name'), 'wlan0');
    assert.equal(n.get('Network.Address'), '10.0.0.1/24');
    assert.equal(n.get('Network.ConfigureWithoutCarrier'), 'yes');
    assert.equal(n.get('DHCPServer.PoolOffset'), '10');
    assert.equal(n.get('DHCPServer.PoolSize'), '41');

    assert.deepEqual(sys.restarts, ['hostapd.service', 'systemd-networkd.service']);
    assert.deepEqual(sys.lockCalls, ['hostapd.service', 'systemd-networkd.service']);

    assert.deepEqual(await applier.apply('bluetooth'), { changed: true, restarted: [] });
    assert.deepEqual(sys.adapterCalls, [{ alias: 'Prodigy_3fa9', discoverable: true }]);
  });

  test('with its default password "prodigy": a clear WPA2 message, nothing touched', async () => {
    await copyFile(path.join(FIXTURES, 'shipping-app-default-password.yaml'), sb.paths.config);
    await copyFile(path.join(FIXTURES, 'installer-hostapd.conf'), sb.paths.hostapdConf);
    const before_ = await fileState(sb.paths.hostapdConf);
    const applier = new ConfigApplier(sys.deps(sb.paths));
    const err = await refused(applier.apply('wifi'));
    assert.equal(err.code, 'InvalidConfig');
    assert.match(
      err.message,
      /^wifi\.password \(from connection\.wifi_ap\.password\): must be 8–63 printable ASCII/,
    );
    assert.match(err.message, /too short \(WPA2 needs at least 8 characters\)/);
    assert.ok(!err.message.includes('prodigy'));
    assert.deepEqual(await fileState(sb.paths.hostapdConf), before_);
    assert.deepEqual(sys.restarts, []);
    // The other sections do not depend on the password.
    assert.deepEqual(await applier.apply('network'), { changed: true, restarted: ['networkd'] });
  });

  test('no hostapd.conf yet: country defaults to US', async () => {
    await copyFile(path.join(FIXTURES, 'shipping-app.yaml'), sb.paths.config);
    await new ConfigApplier(sys.deps(sb.paths)).apply('wifi');
    assert.equal(parseHostapd(await readFile(sb.paths.hostapdConf, 'utf8')).map.get('country_code'), 'US');
  });
});

describe('identical content', () => {
  test('no write, no restart, changed: false', async () => {
    await sb.writeConfig(validConfig());
    const applier = new ConfigApplier(sys.deps(sb.paths));
    await applier.apply('wifi');
    await applier.apply('network');
    const h1 = await fileState(sb.paths.hostapdConf);
    const n1 = await fileState(sb.networkFile);
    sys.restarts = [];
    sys.lockCalls = [];
    await new Promise((r) => setTimeout(r, 20));

    assert.deepEqual(await applier.apply('wifi'), { changed: false, restarted: [] });
    assert.deepEqual(await applier.apply('network'), { changed: false, restarted: [] });
    assert.deepEqual(sys.restarts, []);
    assert.deepEqual(sys.lockCalls, []);
    // Same inode and mtime: the files were not rewritten.
    assert.deepEqual(await fileState(sb.paths.hostapdConf), h1);
    assert.deepEqual(await fileState(sb.networkFile), n1);
  });

  test('a fresh applier (daemon restart) also sees the content as unchanged', async () => {
    await sb.writeConfig(validConfig());
    await new ConfigApplier(sys.deps(sb.paths)).apply('wifi');
    assert.deepEqual(await new ConfigApplier(sys.deps(sb.paths)).apply('wifi'), {
      changed: false,
      restarted: [],
    });
    assert.deepEqual(sys.restarts, ['hostapd.service']);
  });

  test('unchanged content with the wrong mode is fixed without a restart', async () => {
    await sb.writeConfig(validConfig());
    const applier = new ConfigApplier(sys.deps(sb.paths));
    await applier.apply('wifi');
    await chmod(sb.paths.hostapdConf, 0o600);
    assert.deepEqual(await applier.apply('wifi'), { changed: false, restarted: [] });
    const st = await stat(sb.paths.hostapdConf);
    assert.equal(st.mode & 0o777, 0o640);
    assert.equal(st.gid, OPENAUTO_GID);
    assert.deepEqual(sys.restarts, ['hostapd.service']);
  });

  test('editing a value that changes the file restarts again', async () => {
    const cfg = validConfig();
    await sb.writeConfig(cfg);
    const applier = new ConfigApplier(sys.deps(sb.paths));
    await applier.apply('wifi');
    cfg.wifi.channel = 40;
    await sb.writeConfig(cfg);
    assert.deepEqual(await applier.apply('wifi'), { changed: true, restarted: ['hostapd'] });
    assert.equal(parseHostapd(await readFile(sb.paths.hostapdConf, 'utf8')).map.get('channel'), '40');
  });
});

describe('restart failure rolls back', () => {
  async function setup(): Promise<{ applier: ConfigApplier; old: Buffer }> {
    await copyFile(path.join(FIXTURES, 'installer-hostapd.conf'), sb.paths.hostapdConf);
    await chmod(sb.paths.hostapdConf, 0o600);
    await sb.writeConfig(validConfig());
    return { applier: new ConfigApplier(sys.deps(sb.paths)), old: await readFile(sb.paths.hostapdConf) };
  }

  test('previous file restored byte-for-byte (mode too), restarted again, RestartFailed says restored', async () => {
    const { applier, old } = await setup();
    let seenDuringRestart: string | undefined;
    sys.onRestart = async (_u, call) => {
      if (call === 0) seenDuringRestart = await readFile(sb.paths.hostapdConf, 'utf8');
    };
    sys.failRestart = (_u, call) => call === 0;
    const err = await refused(applier.apply('wifi'));
    assert.equal(err.code, 'RestartFailed');
    assert.equal(
      err.message,
      'hostapd failed to start with the new configuration; the previous configuration was restored',
    );
    assert.match(seenDuringRestart ?? '', /^ssid=Car$/m, 'the new file was in place for the first restart');
    assert.deepEqual(await readFile(sb.paths.hostapdConf), old);
    assert.equal((await stat(sb.paths.hostapdConf)).mode & 0o777, 0o600);
    assert.deepEqual(sys.restarts, ['hostapd.service', 'hostapd.service']);
    assert.deepEqual(sys.lockCalls, ['hostapd.service'], 'write, restart and rollback under one lock');
    const entry = logs.lines.filter((l) => l.includes('SECTION=wifi')).at(-1) ?? '';
    assert.match(entry, /ERROR_CODE=RestartFailed/);
    assert.match(entry, /ROLLBACK=restored/);
  });

  test('the second restart fails too: the message says so', async () => {
    const { applier, old } = await setup();
    sys.failRestart = () => true;
    const err = await refused(applier.apply('wifi'));
    assert.equal(err.code, 'RestartFailed');
    assert.match(
      err.message,
      /the previous configuration was restored, but hostapd did not start with it either$/,
    );
    assert.deepEqual(await readFile(sb.paths.hostapdConf), old);
  });

  test('the previous file cannot be put back: the message says so', async () => {
    const { applier } = await setup();
    const dir = path.dirname(sb.paths.hostapdConf);
    sys.failRestart = () => true;
    sys.onRestart = async (_u, call) => {
      if (call === 0) {
        // Sabotage: the directory becomes a plain file, so nothing can be written there any more.
        await rm(dir, { recursive: true });
        await writeFile(dir, 'x');
      }
    };
    const err = await refused(applier.apply('wifi'));
    assert.equal(err.code, 'RestartFailed');
    assert.equal(
      err.message,
      'hostapd failed to start with the new configuration; the previous configuration could not be restored',
    );
    assert.deepEqual(sys.restarts, ['hostapd.service'], 'no pointless second restart');
  });

  test('no file before: the new one is removed again', async () => {
    await sb.writeConfig(validConfig());
    sys.failRestart = (_u, call) => call === 0;
    const err = await refused(new ConfigApplier(sys.deps(sb.paths)).apply('network'));
    assert.equal(err.code, 'RestartFailed');
    assert.match(
      err.message,
      /^systemd-networkd failed to start with the new configuration; the previous configuration was restored \(there was no file before/,
    );
    assert.equal(await fileState(sb.networkFile), null);
    assert.deepEqual(sys.restarts, ['systemd-networkd.service', 'systemd-networkd.service']);
  });

  test('after a rollback the same apply is tried again next time (no false "unchanged")', async () => {
    const { applier } = await setup();
    sys.failRestart = (_u, call) => call === 0;
    await refused(applier.apply('wifi'));
    assert.deepEqual(await applier.apply('wifi'), { changed: true, restarted: ['hostapd'] });
  });
});

describe('serialization', () => {
  test('one apply at a time, in order', async () => {
    await sb.writeConfig(validConfig());
    const applier = new ConfigApplier(sys.deps(sb.paths));
    sys.onRestart = () => new Promise((r) => setTimeout(r, 10));
    const order: string[] = [];
    const all = (['wifi', 'network', 'bluetooth', 'time', 'wifi'] as const).map((s) =>
      applier.apply(s).then((r) => {
        order.push(s);
        return r;
      }),
    );
    const results = await Promise.all(all);
    assert.deepEqual(order, ['wifi', 'network', 'bluetooth', 'time', 'wifi']);
    assert.equal(sys.maxRunning, 1);
    assert.deepEqual(results.at(-1), { changed: false, restarted: [] });
  });

  test('a bounded queue: beyond maxWaiting callers get Busy, and the queue drains', async () => {
    await sb.writeConfig(validConfig());
    const applier = new ConfigApplier(sys.deps(sb.paths, { maxWaiting: 2 }));
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let inside!: () => void;
    const entered = new Promise<void>((r) => {
      inside = r;
    });
    sys.onRestart = () => {
      inside();
      return gate;
    };
    const first = applier.apply('wifi');
    await entered; // the first is now inside restartUnit
    const waiting = [applier.apply('time'), applier.apply('bluetooth')];
    const err = await refused(applier.apply('network'));
    assert.equal(err.code, 'Busy');
    // Still three in the queue: another is refused too.
    assert.equal((await refused(applier.apply('network'))).code, 'Busy');
    release();
    await first;
    await Promise.all(waiting);
    assert.deepEqual(await applier.apply('network'), { changed: true, restarted: ['networkd'] });
  });

  test('a failed apply does not block the next', async () => {
    const cfg = validConfig();
    cfg.wifi.password = 'short';
    await sb.writeConfig(cfg);
    const applier = new ConfigApplier(sys.deps(sb.paths));
    const [a, b] = await Promise.allSettled([applier.apply('wifi'), applier.apply('network')]);
    assert.equal(a.status, 'rejected');
    assert.equal(b.status, 'fulfilled');
  });
});

describe('bluetooth and time', () => {
  test('bluetooth sets Alias and Discoverable; changed follows the adapter', async () => {
    await sb.writeConfig(validConfig());
    const applier = new ConfigApplier(sys.deps(sb.paths));
    assert.deepEqual(await applier.apply('bluetooth'), { changed: true, restarted: [] });
    assert.deepEqual(sys.adapter, { alias: 'Car', discoverable: true });
    assert.deepEqual(await applier.apply('bluetooth'), { changed: false, restarted: [] });
  });

  test('an adapter failure is a plain Internal error', async () => {
    await sb.writeConfig(validConfig());
    const applier = new ConfigApplier(
      sys.deps(sb.paths, {
        setAdapter: async () => {
          throw new Error('org.bluez.Error.NotReady /org/bluez/hci0');
        },
      }),
    );
    const err = await refused(applier.apply('bluetooth'));
    assert.equal(err.code, 'Internal');
    assert.ok(!err.message.includes('/org/bluez'));
  });

  test('time: set only when different', async () => {
    await sb.writeConfig(validConfig());
    const applier = new ConfigApplier(sys.deps(sb.paths));
    assert.deepEqual(await applier.apply('time'), { changed: true, restarted: [] });
    assert.deepEqual(sys.setTimezoneCalls, ['Europe/Berlin']);
    assert.deepEqual(await applier.apply('time'), { changed: false, restarted: [] });
    assert.deepEqual(sys.setTimezoneCalls, ['Europe/Berlin']);
  });

  test('time zones from the real zoneinfo, when installed', {
    skip: hasSystemZoneinfo ? false : 'no /usr/share/zoneinfo',
  }, async () => {
    const cfg = validConfig();
    cfg.time.timezone = 'America/Argentina/Buenos_Aires';
    await sb.writeConfig(cfg);
    const applier = new ConfigApplier(sys.deps({ ...sb.paths, zoneinfo: '/usr/share/zoneinfo' }));
    assert.deepEqual(await applier.apply('time'), { changed: true, restarted: [] });
    cfg.time.timezone = 'Mars/Base';
    await sb.writeConfig(cfg);
    assert.equal((await refused(applier.apply('time'))).code, 'InvalidConfig');
    for (const notZone of ['localtime', 'posixrules', 'zone.tab', 'right']) {
      cfg.time.timezone = notZone;
      await sb.writeConfig(cfg);
      assert.equal((await refused(applier.apply('time'))).code, 'InvalidConfig', notZone);
    }
  });
});

describe('journal and status', () => {
  test('one structured entry per apply, never the password', async () => {
    const cfg = validConfig();
    cfg.wifi.password = 'Sup3rSecretPassphrase';
    await sb.writeConfig(cfg);
    const applier = new ConfigApplier(sys.deps(sb.paths));
    const start = logs.lines.length;
    await applier.apply('wifi');
    await applier.apply('wifi');
    sys.failRestart = () => true;
    cfg.wifi.channel = 44;
    await sb.writeConfig(cfg);
    await refused(applier.apply('wifi'));
    const entries = logs.lines.slice(start).filter((l) => l.includes('SECTION=wifi'));
    assert.equal(entries.length, 3);
    assert.match(
      entries[0] as string,
      /^<6>config section wifi applied SECTION=wifi CHANGED=true RESTARTED=hostapd /,
    );
    assert.match(entries[1] as string, /CHANGED=false RESTARTED="" /);
    assert.match(entries[2] as string, /^<4>.*ERROR_CODE=RestartFailed/);
    assert.ok(!logs.lines.slice(start).join('').includes('Sup3rSecretPassphrase'));
  });

  test('the applied-config summary has no secret', async () => {
    const cfg = validConfig();
    cfg.wifi.password = 'Sup3rSecretPassphrase';
    await sb.writeConfig(cfg);
    const applier = new ConfigApplier(sys.deps(sb.paths));
    assert.deepEqual(applier.appliedSummary(), {});
    for (const s of SECTION_NAMES) await applier.apply(s);
    const summary = applier.appliedSummary();
    assert.ok(!JSON.stringify(summary).includes('Sup3rSecret'));
    assert.deepEqual(summary.wifi, {
      ssid: 'Car',
      password: '(set)',
      key_type: 'passphrase',
      band: 'a',
      channel: 36,
      interface: 'wlan0',
      country_code: 'DE',
      applied_at: '2024-05-01T12:00:00.000Z',
    });
    assert.deepEqual(summary.network, {
      ap_ip: '10.0.0.1',
      dhcp_range_start: '10.0.0.10',
      dhcp_range_end: '10.0.0.50',
      interface: 'wlan0',
      applied_at: '2024-05-01T12:00:00.000Z',
    });
    assert.deepEqual(summary.bluetooth, {
      name: 'Car',
      discoverable: true,
      applied_at: '2024-05-01T12:00:00.000Z',
    });
    assert.deepEqual(summary.time, { timezone: 'Europe/Berlin', applied_at: '2024-05-01T12:00:00.000Z' });
  });

  test('at start-up, a section whose file already matches counts as applied; others do not', async () => {
    const cfg = validConfig();
    await sb.writeConfig(cfg);
    await new ConfigApplier(sys.deps(sb.paths)).apply('wifi');
    await new ConfigApplier(sys.deps(sb.paths)).apply('network');
    cfg.network.ap_ip = '10.0.0.3';
    await sb.writeConfig(cfg);
    const h = await fileState(sb.paths.hostapdConf);
    const restarts = sys.restarts.length;

    const fresh = new ConfigApplier(sys.deps(sb.paths));
    await fresh.inspect();
    const summary = fresh.appliedSummary();
    assert.equal((summary.wifi as { ssid: string }).ssid, 'Car');
    assert.equal((summary.wifi as { applied_at: string }).applied_at, 'before start');
    assert.equal(summary.network, undefined, 'the .network file differs from what config.yaml renders');
    assert.equal(fresh.network, undefined, 'so what the link carries is not known from config.yaml');
    assert.deepEqual(await fileState(sb.paths.hostapdConf), h, 'inspect touched nothing');
    assert.equal(sys.restarts.length, restarts);
  });

  test('a .network file that already matches tells what the AP link carries', async () => {
    const cfg = validConfig();
    cfg.network.ap_ip = '10.0.0.3';
    await sb.writeConfig(cfg);
    await new ConfigApplier(sys.deps(sb.paths)).apply('network');
    const fresh = new ConfigApplier(sys.deps(sb.paths));
    await fresh.inspect();
    assert.equal(fresh.network?.ap_ip, '10.0.0.3');
    assert.equal(fresh.network?.interface, 'wlan0');
  });

  test('the network section in effect is the one applied, not config.yaml edited since', async () => {
    const cfg = validConfig();
    cfg.wifi.interface = 'wlan1'; // the AP interface, which the .network file matches on
    await sb.writeConfig(cfg);
    // An installation whose AP is wlan1 (config.yaml may only repeat it).
    const applier = new ConfigApplier(sys.deps({ ...sb.paths, apInterface: 'wlan1' }));
    const before = applier.network;
    assert.equal(before, undefined, 'nothing applied, nothing inspected: not known');
    await applier.apply('wifi');
    await applier.apply('network');
    assert.deepEqual(sys.links, [undefined, 'wlan1'], 'networkd is told which link the new file configures');
    assert.equal(applier.network?.interface, 'wlan1');

    cfg.network.ap_ip = '10.0.0.3'; // edited, not applied
    await sb.writeConfig(cfg);
    assert.equal(applier.network?.ap_ip, '10.0.0.1');

    sys.failRestart = (unit, call) => unit === 'systemd-networkd.service' && call === 2;
    await refused(applier.apply('network'));
    assert.deepEqual(sys.links.slice(2), ['wlan1', 'wlan1'], 'the restart and the rollback restart');
    assert.equal(applier.network?.interface, 'wlan1', 'a rolled-back apply leaves the section in effect');
    assert.equal(applier.network?.ap_ip, '10.0.0.1');
  });

  test('a failed apply leaves the previous summary', async () => {
    const cfg = validConfig();
    await sb.writeConfig(cfg);
    const applier = new ConfigApplier(sys.deps(sb.paths));
    await applier.apply('wifi');
    cfg.wifi.ssid = 'Other';
    await sb.writeConfig(cfg);
    sys.failRestart = () => true;
    await refused(applier.apply('wifi'));
    assert.equal((applier.appliedSummary().wifi as { ssid: string }).ssid, 'Car');
  });

  test('a missing template is Internal, with nothing touched', async () => {
    await sb.writeConfig(validConfig());
    const applier = new ConfigApplier(sys.deps({ ...sb.paths, templates: path.join(sb.root, 'nope') }));
    const err = await refused(applier.apply('wifi'));
    assert.equal(err.code, 'Internal');
    assert.equal(err.message, 'the hostapd.conf template could not be rendered; nothing was changed');
    assert.equal(await fileState(sb.paths.hostapdConf), null);
    assert.deepEqual(sys.restarts, []);
  });
});
