// config.yaml lives in the app user's home and is read by root: a symlink, a FIFO, a huge or malformed file must
// be refused as ConfigUnreadable without its content (or the path) reaching the caller, and nothing may be
// touched. Also: the shipping app's older key layout as a fallback, and scalars taken exactly as written.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chown, copyFile, lchown, mkdir, rename, symlink, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigApplier } from '../../src/config/applier.js';
import {
  checkSection,
  loadSection,
  MAX_CONFIG_BYTES,
  rawSection,
  readConfig,
} from '../../src/config/load.js';
import { ServiceError } from '../../src/errors.js';
import {
  captureLog,
  FakeSystem,
  FIXTURES,
  fileState,
  makeSandbox,
  type Sandbox,
} from '../fixtures/config/harness.js';

const SECRET = 'root:$6$SECRETHASHxyz:19000:0:99999:7:::';

async function refused(p: Promise<unknown>): Promise<ServiceError> {
  const err = await p.then(
    () => assert.fail('should have been refused'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof ServiceError, `a ServiceError, got ${String(err)}`);
  return err;
}

describe('reading config.yaml', () => {
  let sb: Sandbox;
  const logs = captureLog();
  before(async () => {
    sb = await makeSandbox();
    await copyFile(path.join(FIXTURES, 'installer-hostapd.conf'), sb.paths.hostapdConf);
  });
  after(async () => {
    logs.restore();
    await sb.cleanup();
  });

  async function expectUnreadable(want: RegExp): Promise<void> {
    const before_ = await fileState(sb.paths.hostapdConf);
    const sys = new FakeSystem();
    const err = await refused(new ConfigApplier(sys.deps(sb.paths)).apply('wifi'));
    assert.equal(err.code, 'ConfigUnreadable');
    assert.match(err.message, want);
    assert.ok(!err.message.includes('SECRET'), 'no content in the message');
    assert.ok(!err.message.includes(sb.root), 'no path in the message');
    assert.ok(!logs.lines.join('').includes('SECRETHASH'), 'no content in the journal');
    assert.deepEqual(await fileState(sb.paths.hostapdConf), before_);
    assert.deepEqual(sys.restarts, []);
  }

  test('a symlinked config.yaml is not followed', async () => {
    const target = path.join(sb.root, 'shadow');
    await writeFile(target, `wifi: {ssid: "${SECRET}", password: "${SECRET}"}\n`);
    await unlink(sb.paths.config).catch(() => undefined);
    await symlink(target, sb.paths.config);
    await expectUnreadable(/^the configuration file is a symbolic link, which is not followed$/);
    await unlink(sb.paths.config);
  });

  describe('directories on the way', () => {
    const isRoot = process.getuid?.() === 0;
    // ~/.openauto replaced by a symlink to `dir` (relative), owned by `uid`; undone afterwards.
    async function linkConfigDir(dir: string, uid: number): Promise<() => Promise<void>> {
      const home = path.dirname(path.dirname(sb.paths.config));
      const real = path.join(home, '.openauto');
      const aside = path.join(home, '.openauto.aside');
      await rename(real, aside);
      await symlink(path.relative(home, dir), real);
      if (isRoot) await lchown(real, uid, uid);
      return async () => {
        await unlink(real);
        await rename(aside, real);
      };
    }

    test("a symlink of the user's on the way is not followed", async () => {
      // What the user could point ~/.openauto at: a root-only directory holding a config.yaml.
      const dir = path.join(sb.root, 'root-only');
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await writeFile(path.join(dir, 'config.yaml'), `wifi: {ssid: "${SECRET}", password: "${SECRET}"}\n`);
      const undo = await linkConfigDir(dir, 1000);
      try {
        await expectUnreadable(
          /^the configuration file is reached through a symbolic link not owned by root, which is not followed$/,
        );
      } finally {
        await undo();
      }
    });

    test("root's symlinks on the way are followed (an administrator moved the home)", {
      skip: isRoot ? undefined : 'needs root to own the symlink',
    }, async () => {
      const dir = path.join(sb.root, 'data', 'openauto');
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, 'config.yaml'), 'wifi: {ssid: Moved, password: abcdefgh}\n');
      const undo = await linkConfigDir(dir, 0);
      try {
        assert.equal((await loadSection(sb.paths.config, 'wifi')).ssid, 'Moved');
      } finally {
        await undo();
      }
    });

    test('a loop of symlinks ends with a clear refusal', {
      skip: isRoot ? undefined : 'needs root to own the symlinks',
    }, async () => {
      const a = path.join(sb.root, 'loop-a');
      const b = path.join(sb.root, 'loop-b');
      await symlink(b, a);
      await symlink(a, b);
      const undo = await linkConfigDir(a, 0);
      try {
        await expectUnreadable(/^the configuration file is reached through too many symbolic links$/);
      } finally {
        await undo();
        await unlink(a);
        await unlink(b);
      }
    });

    test("another user's config.yaml or directory below the home is refused, saying nothing of it", {
      skip: isRoot ? undefined : 'needs root to own files as others',
    }, async () => {
      // The unit fixture's home belongs to root; make it the app user's (uid 1000), as on a device.
      const home = path.dirname(path.dirname(sb.paths.config));
      const dir = path.dirname(sb.paths.config);
      await chown(home, 1000, 1000);
      await chown(dir, 1000, 1000);
      try {
        await sb.writeConfigText(`wifi: {ssid: "${SECRET}", password: abcdefgh}\n`);
        await chown(sb.paths.config, 1001, 1001);
        const why =
          /^the configuration file or a directory on the way is owned by another user \(below the home, each must be the user's own, or root's and open to everyone\)$/;
        await expectUnreadable(why);
        await chown(sb.paths.config, 1000, 1000);
        await chown(dir, 1001, 1001);
        await expectUnreadable(why);
      } finally {
        await chown(dir, 0, 0);
        await chown(home, 0, 0);
        await chown(sb.paths.config, 0, 0);
      }
    });

    test('a file where a directory should be', async () => {
      const home = path.dirname(path.dirname(sb.paths.config));
      await rename(path.join(home, '.openauto'), path.join(home, '.openauto.aside'));
      await writeFile(path.join(home, '.openauto'), SECRET);
      try {
        await expectUnreadable(/^the configuration file does not exist \(a parent is not a directory\)$/);
      } finally {
        await unlink(path.join(home, '.openauto'));
        await rename(path.join(home, '.openauto.aside'), path.join(home, '.openauto'));
      }
    });
  });

  test('an oversized config.yaml is refused', async () => {
    await sb.writeConfigText(
      `# ${SECRET}\n${'#'.repeat(MAX_CONFIG_BYTES)}\nwifi: {ssid: a, password: abcdefgh}\n`,
    );
    await expectUnreadable(/^the configuration file is larger than 256 KiB$/);
  });

  test('exactly 256 KiB is still read', async () => {
    const body = 'wifi: {ssid: Car, password: abcdefgh}\n';
    await sb.writeConfigText(`${body}${'#'.repeat(MAX_CONFIG_BYTES - body.length - 1)}\n`);
    assert.equal((await loadSection(sb.paths.config, 'wifi')).ssid, 'Car');
  });

  test('invalid YAML: position only, never the offending text', async () => {
    await sb.writeConfigText(`wifi:\n  ssid: Car\n  password: "${SECRET}\n  x: [\n`);
    await expectUnreadable(/^the configuration file is not valid YAML \([A-Z_]+ at line \d+, column \d+\)$/);
  });

  test('a pathological file (254 KiB of nested "[") is refused before it is parsed', async () => {
    await sb.writeConfigText(`# ${SECRET}\nx: ${'['.repeat(254 * 1024)}\n`);
    const t = performance.now();
    await expectUnreadable(
      /^the configuration file has more than 1000 YAML nodes, too many for a configuration file$/,
    );
    assert.ok(performance.now() - t < 1000, 'refused at once (the parser alone took seconds)');
    await sb.writeConfigText(`x: ${'['.repeat(33)}${']'.repeat(33)}\nwifi: {ssid: a, password: abcdefgh}\n`);
    await expectUnreadable(/^the configuration file nests lists or mappings more than 32 deep$/);
  });

  test('duplicate keys are a YAML error', async () => {
    await sb.writeConfigText('wifi:\n  ssid: Car\n  ssid: Other\n  password: abcdefgh\n');
    await expectUnreadable(/not valid YAML \(DUPLICATE_KEY at line 3, column 3\)/);
  });

  test('an alias bomb is refused', async () => {
    const lines = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 0; i < 9; i++) {
      const prev = String.fromCharCode(97 + i);
      const next = String.fromCharCode(98 + i);
      lines.push(`${next}: &${next} [${Array(10).fill(`*${prev}`).join(', ')}]`);
    }
    await sb.writeConfigText(`${lines.join('\n')}\nwifi: {ssid: Car, password: abcdefgh}\n`);
    await expectUnreadable(/too many YAML aliases/);
  });

  test('a few aliases are fine', async () => {
    await sb.writeConfigText(
      'x: &n Car\nwifi: {ssid: *n, password: abcdefgh}\nbluetooth: {name: *n, discoverable: true}\n',
    );
    assert.equal((await loadSection(sb.paths.config, 'wifi')).ssid, 'Car');
    assert.equal((await loadSection(sb.paths.config, 'bluetooth')).name, 'Car');
  });

  test('not UTF-8', async () => {
    await writeFile(sb.paths.config, Buffer.from([0x77, 0x69, 0x66, 0x69, 0x3a, 0x20, 0xff, 0xfe, 0x0a]));
    await expectUnreadable(/^the configuration file is not valid UTF-8 text$/);
  });

  test('missing', async () => {
    await unlink(sb.paths.config).catch(() => undefined);
    await expectUnreadable(/^the configuration file does not exist$/);
  });

  test('a directory', async () => {
    await mkdir(sb.paths.config);
    await expectUnreadable(/^the configuration file is not a regular file$/);
    await import('node:fs/promises').then((fs) => fs.rmdir(sb.paths.config));
  });

  test('a FIFO does not hang the daemon', async () => {
    execFileSync('mkfifo', [sb.paths.config]);
    await expectUnreadable(/^the configuration file is not a regular file$/);
    await unlink(sb.paths.config);
  });

  test('a top level that is not a mapping is InvalidConfig', async () => {
    await sb.writeConfigText('- wifi\n- network\n');
    const err = await refused(loadSection(sb.paths.config, 'wifi'));
    assert.equal(err.code, 'InvalidConfig');
    assert.match(err.message, /top level must be a mapping/);
  });

  test('an empty file means every section is empty', async () => {
    await sb.writeConfigText('');
    const err = await refused(loadSection(sb.paths.config, 'wifi'));
    assert.equal(err.message, 'wifi.ssid: is required; wifi.password: is required');
    assert.deepEqual(await loadSection(sb.paths.config, 'network'), {
      ap_ip: '10.0.0.1',
      dhcp_range_start: '10.0.0.10',
      dhcp_range_end: '10.0.0.50',
      interface: 'wlan0',
    });
  });

  test('unknown sections', async () => {
    for (const name of ['foo', '', 'WIFI', '__proto__', 'constructor', 'wifi ']) {
      assert.throws(
        () => checkSection(name),
        (e: unknown) =>
          e instanceof ServiceError &&
          e.code === 'UnknownSection' &&
          e.message.endsWith(': use wifi, network, bluetooth or time'),
      );
    }
  });
});

describe('keys: canonical first, then the shipping app layout', () => {
  let sb: Sandbox;
  before(async () => {
    sb = await makeSandbox();
  });
  after(() => sb.cleanup());

  test('the shipping app layout is read as a fallback', async () => {
    await copyFile(path.join(FIXTURES, 'shipping-app.yaml'), sb.paths.config);
    assert.deepEqual(await loadSection(sb.paths.config, 'wifi'), {
      ssid: 'Prodigy_3fa9',
      password: 'q7GkL2xPz9RbT4mW',
      band: 'a',
      channel: 36,
      interface: 'wlan0',
      country_code: 'US',
    });
    assert.deepEqual(await loadSection(sb.paths.config, 'bluetooth'), {
      name: 'Prodigy_3fa9',
      discoverable: true,
    });
  });

  test('canonical keys win, per key; the fallback fills the rest', async () => {
    await sb.writeConfig({
      wifi: { ssid: 'Canonical', channel: 40 },
      connection: {
        wifi_ap: { ssid: 'Old', password: 'fallbackpw', channel: 44, band: 'a' },
        bt_name: 'OldBT',
      },
      bluetooth: { discoverable: false },
    });
    const w = await loadSection(sb.paths.config, 'wifi');
    assert.equal(w.ssid, 'Canonical');
    assert.equal(w.password, 'fallbackpw');
    assert.equal(w.channel, 40);
    assert.deepEqual(await loadSection(sb.paths.config, 'bluetooth'), { name: 'OldBT', discoverable: false });
  });

  test('messages name the key the value was read from', async () => {
    await copyFile(path.join(FIXTURES, 'shipping-app-default-password.yaml'), sb.paths.config);
    const err = await refused(loadSection(sb.paths.config, 'wifi'));
    assert.equal(
      err.message,
      'wifi.password (from connection.wifi_ap.password): must be 8–63 printable ASCII characters (WPA2) or 64 hex digits; it is too short (WPA2 needs at least 8 characters)',
    );
  });

  test('a null value counts as absent', async () => {
    await sb.writeConfigText(
      'wifi: {ssid: ~, password: abcdefgh, band: null}\nconnection: {wifi_ap: {ssid: FromApp}}\n',
    );
    const w = await loadSection(sb.paths.config, 'wifi');
    assert.equal(w.ssid, 'FromApp');
    assert.equal(w.band, 'a');
  });

  test('text fields keep the text as written even when YAML would read a number or boolean', async () => {
    await sb.writeConfigText(
      'wifi: {ssid: 007, password: 00012345678, channel: 1, band: g}\nbluetooth: {name: true, discoverable: false}\n',
    );
    const w = await loadSection(sb.paths.config, 'wifi');
    assert.equal(w.ssid, '007');
    assert.equal(w.password, '00012345678');
    assert.equal(w.channel, 1);
    assert.equal((await loadSection(sb.paths.config, 'bluetooth')).name, 'true');
  });

  test('a 64-digit PSK written unquoted stays exact', async () => {
    const psk = '1'.repeat(64);
    await sb.writeConfigText(`wifi: {ssid: Car, password: ${psk}}\n`);
    assert.equal((await loadSection(sb.paths.config, 'wifi')).password, psk);
  });

  test('the wifi interface drives the network section, under its own name', async () => {
    await sb.writeConfigText('connection: {wifi_ap: {interface: wlan1}}\n');
    assert.equal(
      (await loadSection(sb.paths.config, 'network', { apInterface: 'wlan1' })).interface,
      'wlan1',
    );
    await sb.writeConfigText('connection: {wifi_ap: {interface: "wl an"}}\n');
    const err = await refused(loadSection(sb.paths.config, 'network'));
    assert.match(
      err.message,
      /^wifi\.interface \(from connection\.wifi_ap\.interface\): must be a network interface name/,
    );
  });

  test('bare host numbers and defaults in the network section', async () => {
    await sb.writeConfigText(
      'network: {ap_ip: 192.168.50.1, dhcp_range_start: 100, dhcp_range_end: "200"}\n',
    );
    assert.deepEqual(await loadSection(sb.paths.config, 'network'), {
      ap_ip: '192.168.50.1',
      dhcp_range_start: '192.168.50.100',
      dhcp_range_end: '192.168.50.200',
      interface: 'wlan0',
    });
  });

  test('a fallback parent that is not a mapping is reported', async () => {
    await sb.writeConfigText('connection: {wifi_ap: 5}\n');
    const err = await refused(loadSection(sb.paths.config, 'wifi'));
    assert.match(err.message, /^connection\.wifi_ap: must be a mapping of keys; wifi\.ssid: is required/);
  });

  test('raw values are never converted from a whole-document JS object (no prototype surprises)', async () => {
    await sb.writeConfigText('__proto__: {ssid: Evil}\nwifi: {__proto__: {ssid: X}, password: abcdefgh}\n');
    const raw = rawSection(await readConfig(sb.paths.config), 'wifi');
    assert.equal(raw.values.ssid, undefined);
    assert.equal(({} as Record<string, unknown>).ssid, undefined);
  });
});
