// The AP interface is a property of the installation (--ap-interface / OPENAUTO_AP_INTERFACE, default wlan0):
// config.yaml may leave it out or repeat it, never name another. And the invisible-character rule of names.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { validateSection } from '../../src/config/schema.js';
import { parseSettings, UsageError } from '../../src/settings.js';

const WIFI = { ssid: 'Car', password: 'correct horse' };

describe('the AP interface setting', () => {
  test('defaults to wlan0; flag over environment', () => {
    assert.equal(parseSettings([], {}).apInterface, 'wlan0');
    assert.equal(parseSettings([], { OPENAUTO_AP_INTERFACE: 'wlan1' }).apInterface, 'wlan1');
    assert.equal(
      parseSettings(['--ap-interface', 'uap0'], { OPENAUTO_AP_INTERFACE: 'wlan1' }).apInterface,
      'uap0',
    );
  });

  test('a name that is not an interface name is a usage error', () => {
    for (const bad of ['wlan*', 'a'.repeat(16), '..', 'wlan0\nx', 'wl an0']) {
      assert.throws(() => parseSettings([`--ap-interface=${bad}`], {}), UsageError, bad);
    }
  });
});

describe('wifi.interface and the installation', () => {
  for (const section of ['wifi', 'network'] as const) {
    test(`${section}: absent means the installation's interface`, async () => {
      const r = await validateSection(section, section === 'wifi' ? WIFI : {}, { apInterface: 'uap0' });
      assert.ok(r.ok);
      assert.equal(r.value.interface, 'uap0');
    });

    test(`${section}: the same name is fine`, async () => {
      const raw = section === 'wifi' ? { ...WIFI, interface: 'wlan0' } : { interface: 'wlan0' };
      const r = await validateSection(section, raw, {});
      assert.ok(r.ok);
      assert.equal(r.value.interface, 'wlan0');
    });

    test(`${section}: another name is refused, naming both`, async () => {
      const raw = section === 'wifi' ? { ...WIFI, interface: 'eth0' } : { interface: 'eth0' };
      const r = await validateSection(
        section,
        raw,
        { apInterface: 'wlan1' },
        {
          interface: 'wifi.interface (from connection.wifi_ap.interface)',
        },
      );
      assert.ok(!r.ok);
      assert.deepEqual(r.problems, [
        "wifi.interface (from connection.wifi_ap.interface): is eth0, but this installation's access point " +
          'interface is wlan1 (chosen when installing, not in config.yaml): remove the key or set it to wlan1',
      ]);
    });
  }

  test('a value that is not an interface name is not echoed', async () => {
    const r = await validateSection('wifi', { ...WIFI, interface: 'eth0\nbridge=br0' }, {});
    assert.ok(!r.ok);
    assert.equal(r.problems.length, 1);
    assert.match(r.problems[0] as string, /^wifi\.interface: must be a network interface name/);
    assert.doesNotMatch(r.problems[0] as string, /bridge|eth0/);
  });
});

describe('invisible characters in names', () => {
  // Every Cf character a phone would hide, at the start, middle and end.
  const FORMAT = [
    '\u00AD',
    '\u061C',
    '\u200B',
    '\u200D',
    '\u200E',
    '\u202A',
    '\u202E',
    '\u2066',
    '\u2060',
    '\uFEFF',
  ];
  for (const ch of FORMAT) {
    const code = `U+${ch.codePointAt(0)?.toString(16).toUpperCase().padStart(4, '0')}`;
    test(`${code} is refused in the SSID and the Bluetooth name`, async () => {
      for (const name of [`${ch}Car`, `C${ch}ar`, `Car${ch}`]) {
        const w = await validateSection('wifi', { ...WIFI, ssid: name });
        assert.ok(!w.ok, `ssid ${JSON.stringify(name)}`);
        assert.deepEqual(w.problems, [
          'wifi.ssid: must not contain invisible formatting characters (Unicode format characters such as ' +
            'U+200B, U+202E or U+FEFF)',
        ]);
        const b = await validateSection('bluetooth', { name, discoverable: true });
        assert.ok(!b.ok, `name ${JSON.stringify(name)}`);
        assert.match(b.problems.join(), /^bluetooth\.name: must not contain invisible formatting characters/);
      }
    });
  }

  test('visible non-ASCII names stay fine (accents, CJK, emoji with its variation selector)', async () => {
    for (const name of ['Café', '車の中', 'Car 🚗', '❤️ Car', 'Ωmega']) {
      assert.ok((await validateSection('wifi', { ...WIFI, ssid: name })).ok, name);
      assert.ok((await validateSection('bluetooth', { name, discoverable: true })).ok, name);
    }
  });
});
