// Bad values never reach a system file: each case below must be refused with a message naming the field and the
// rule, while hostapd.conf and the .network file stay byte-for-byte as they were and nothing is restarted,
// no adapter property or time zone is set, and no password appears in the message or the journal.
import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigApplier } from '../../src/config/applier.js';
import { SECTION_NAMES } from '../../src/config/schema.js';
import { ServiceError } from '../../src/errors.js';
import {
  captureLog,
  FakeSystem,
  FIXTURES,
  fileState,
  makeSandbox,
  type Sandbox,
  validConfig,
} from '../fixtures/config/harness.js';

type Cfg = ReturnType<typeof validConfig>;
interface BadCase {
  name: string;
  section: 'wifi' | 'network' | 'bluetooth' | 'time';
  edit: (c: Cfg) => void;
  expect: string[];
}

const set =
  <K extends keyof Cfg>(section: K, key: string, value: unknown) =>
  (c: Cfg) => {
    (c[section] as Record<string, unknown>)[key] = value;
  };

const CASES: BadCase[] = [
  // SSID
  {
    name: 'SSID empty',
    section: 'wifi',
    edit: set('wifi', 'ssid', ''),
    expect: ['wifi.ssid: must not be empty'],
  },
  {
    name: 'SSID 33 bytes',
    section: 'wifi',
    edit: set('wifi', 'ssid', 'x'.repeat(33)),
    expect: ['wifi.ssid: must be at most 32 bytes of UTF-8 (this one is 33 bytes)'],
  },
  {
    name: 'SSID 17 two-byte characters (34 bytes)',
    section: 'wifi',
    edit: set('wifi', 'ssid', 'é'.repeat(17)),
    expect: ['wifi.ssid: must be at most 32 bytes'],
  },
  {
    name: 'SSID with a newline',
    section: 'wifi',
    edit: set('wifi', 'ssid', 'Car\nctrl_interface=/tmp/evil'),
    expect: ['wifi.ssid: must not contain control characters or line breaks'],
  },
  {
    name: 'SSID with a carriage return',
    section: 'wifi',
    edit: set('wifi', 'ssid', 'Car\rwpa=0'),
    expect: ['wifi.ssid: must not contain control characters'],
  },
  {
    name: 'SSID with NUL',
    section: 'wifi',
    edit: set('wifi', 'ssid', 'Car\0x'),
    expect: ['wifi.ssid: must not contain control characters'],
  },
  {
    name: 'SSID with U+2028 line separator',
    section: 'wifi',
    edit: set('wifi', 'ssid', 'Car\u2028x'),
    expect: ['wifi.ssid: must not contain control characters'],
  },
  {
    name: 'SSID with U+202E right-to-left override',
    section: 'wifi',
    edit: set('wifi', 'ssid', 'Car\u202Eexe.'),
    expect: ['wifi.ssid: must not contain invisible formatting characters'],
  },
  {
    name: 'SSID with U+FEFF at the start',
    section: 'wifi',
    edit: set('wifi', 'ssid', '\uFEFFCar'),
    expect: ['wifi.ssid: must not contain invisible formatting characters'],
  },
  {
    name: 'SSID with U+200B zero-width space',
    section: 'wifi',
    edit: set('wifi', 'ssid', 'C\u200Bar'),
    expect: ['wifi.ssid: must not contain invisible formatting characters'],
  },
  {
    name: "interface other than the installation's",
    section: 'wifi',
    edit: set('wifi', 'interface', 'eth0'),
    expect: ["wifi.interface: is eth0, but this installation's access point interface is wlan0"],
  },
  {
    name: "network section with an interface other than the installation's",
    section: 'network',
    edit: set('wifi', 'interface', 'eth0'),
    expect: ["wifi.interface: is eth0, but this installation's access point interface is wlan0"],
  },
  {
    name: 'SSID as a mapping',
    section: 'wifi',
    edit: set('wifi', 'ssid', { a: 1 }),
    expect: ['wifi.ssid: must be text, not a list or mapping'],
  },
  // Password
  {
    name: 'password 7 characters',
    section: 'wifi',
    edit: set('wifi', 'password', 'seven77'),
    expect: ['wifi.password: must be 8–63 printable ASCII characters (WPA2) or 64 hex digits', 'too short'],
  },
  {
    name: 'password 64 non-hex characters',
    section: 'wifi',
    edit: set('wifi', 'password', 'g'.repeat(64)),
    expect: ['wifi.password: must be 8–63 printable ASCII', 'must consist of hex digits only'],
  },
  {
    name: 'password 65 characters',
    section: 'wifi',
    edit: set('wifi', 'password', 'a'.repeat(65)),
    expect: ['wifi.password: must be 8–63', 'too long'],
  },
  {
    name: 'password non-ASCII',
    section: 'wifi',
    edit: set('wifi', 'password', 'pässwort123'),
    expect: ['wifi.password: must be 8–63', 'not printable ASCII'],
  },
  {
    name: 'password with a newline',
    section: 'wifi',
    edit: set('wifi', 'password', 'abcdefgh\nwpa=0'),
    expect: ['wifi.password: must be 8–63', 'not printable ASCII'],
  },
  // Channel and band
  {
    name: 'channel 14 on band a',
    section: 'wifi',
    edit: set('wifi', 'channel', 14),
    expect: ['wifi.channel: 14 is not a channel of band a (5 GHz); use one of 36, 40'],
  },
  {
    name: 'channel 36 on band g',
    section: 'wifi',
    edit: (c) => {
      c.wifi.band = 'g';
      c.wifi.channel = 36;
    },
    expect: ['wifi.channel: 36 is not a channel of band g (2.4 GHz); use one of 1, 2'],
  },
  {
    name: 'channel 14 on band g',
    section: 'wifi',
    edit: (c) => {
      c.wifi.band = 'g';
      c.wifi.channel = 14;
    },
    expect: ['wifi.channel: 14 is not a channel of band g'],
  },
  {
    name: 'DFS channel 52',
    section: 'wifi',
    edit: set('wifi', 'channel', 52),
    expect: ['wifi.channel: 52 is a DFS (radar) channel'],
  },
  {
    name: 'channel "36\\nwpa=0"',
    section: 'wifi',
    edit: set('wifi', 'channel', '36\nwpa=0'),
    expect: ['wifi.channel: must be a whole channel number such as 36 (digits only)'],
  },
  {
    name: 'channel 36.5',
    section: 'wifi',
    edit: set('wifi', 'channel', 36.5),
    expect: ['wifi.channel: must be a whole channel number'],
  },
  {
    name: 'band zz',
    section: 'wifi',
    edit: set('wifi', 'band', 'zz'),
    expect: ['wifi.band: must be "a" (5 GHz) or "g"'],
  },
  // Interface and country
  {
    name: 'interface with a newline',
    section: 'wifi',
    edit: set('wifi', 'interface', 'wlan0\nbridge=br0'),
    expect: ['wifi.interface: must be a network interface name'],
  },
  {
    name: 'interface ..',
    section: 'wifi',
    edit: set('wifi', 'interface', '..'),
    expect: ['wifi.interface: must be'],
  },
  {
    name: 'interface 16 characters',
    section: 'wifi',
    edit: set('wifi', 'interface', 'w'.repeat(16)),
    expect: ['wifi.interface: must be'],
  },
  {
    name: 'interface glob',
    section: 'wifi',
    edit: set('wifi', 'interface', 'wlan*'),
    expect: ['wifi.interface: must be'],
  },
  {
    name: 'country code lowercase',
    section: 'wifi',
    edit: set('wifi', 'country_code', 'de'),
    expect: ['wifi.country_code: must be a two-letter ISO 3166-1 country code'],
  },
  {
    name: 'country code with newline',
    section: 'wifi',
    edit: set('wifi', 'country_code', 'DE\nwpa=0'),
    expect: ['wifi.country_code: must be'],
  },
  // Network
  {
    name: 'ap_ip 10.0.0.256',
    section: 'network',
    edit: set('network', 'ap_ip', '10.0.0.256'),
    expect: ['network.ap_ip: must be an IPv4 address like 10.0.0.1'],
  },
  {
    name: 'ap_ip with leading zeros',
    section: 'network',
    edit: set('network', 'ap_ip', '010.0.0.1'),
    expect: ['network.ap_ip: must be an IPv4 address'],
  },
  {
    name: 'ap_ip network address',
    section: 'network',
    edit: set('network', 'ap_ip', '10.0.0.0'),
    expect: ['network.ap_ip: must not be the network or broadcast address of its /24'],
  },
  {
    name: 'ap_ip broadcast address',
    section: 'network',
    edit: set('network', 'ap_ip', '10.0.0.255'),
    expect: ['network.ap_ip: must not be the network or broadcast address'],
  },
  {
    name: 'ap_ip loopback',
    section: 'network',
    edit: set('network', 'ap_ip', '127.0.0.1'),
    expect: ['network.ap_ip: must be a unicast address'],
  },
  {
    name: 'range reversed',
    section: 'network',
    edit: (c) => {
      c.network.dhcp_range_start = '10.0.0.50';
      c.network.dhcp_range_end = '10.0.0.10';
    },
    expect: ['network.dhcp_range_end: must not be lower than dhcp_range_start (the range is reversed)'],
  },
  {
    name: 'range outside the /24',
    section: 'network',
    edit: set('network', 'dhcp_range_start', '10.0.1.10'),
    expect: ["network.dhcp_range_start: must be in the access point's network 10.0.0.0/24"],
  },
  {
    name: 'pool containing ap_ip',
    section: 'network',
    edit: set('network', 'ap_ip', '10.0.0.20'),
    expect: [
      'network.dhcp_range_start: the DHCP pool from dhcp_range_start to dhcp_range_end must not include ap_ip',
    ],
  },
  {
    name: 'pool containing ap_ip (bare host numbers)',
    section: 'network',
    edit: (c) => {
      c.network.dhcp_range_start = 1;
      c.network.dhcp_range_end = '100';
    },
    expect: ['must not include ap_ip'],
  },
  {
    name: 'bare host number 255',
    section: 'network',
    edit: set('network', 'dhcp_range_end', 255),
    expect: ["network.dhcp_range_end: must be an IPv4 address in the access point's /24"],
  },
  {
    name: 'range end broadcast address',
    section: 'network',
    edit: set('network', 'dhcp_range_end', '10.0.0.255'),
    expect: ['network.dhcp_range_end: must not be the network or broadcast address'],
  },
  {
    name: 'network interface (from wifi.interface) invalid',
    section: 'network',
    edit: set('wifi', 'interface', 'wlan0 x'),
    expect: ['wifi.interface: must be a network interface name'],
  },
  // Time
  {
    name: 'timezone ../../etc/passwd',
    section: 'time',
    edit: set('time', 'timezone', '../../etc/passwd'),
    expect: ['time.timezone: must be an IANA time zone name like Europe/Berlin'],
  },
  {
    name: 'timezone Mars/Base',
    section: 'time',
    edit: set('time', 'timezone', 'Mars/Base'),
    expect: ['time.timezone: is not an installed time zone'],
  },
  {
    name: 'timezone that is not a TZif file',
    section: 'time',
    edit: set('time', 'timezone', 'Europe/NotTZif'),
    expect: ['time.timezone: is not an installed time zone'],
  },
  {
    name: 'timezone naming a directory',
    section: 'time',
    edit: set('time', 'timezone', 'Europe'),
    expect: ['time.timezone: is not an installed time zone'],
  },
  {
    name: 'timezone absolute path',
    section: 'time',
    edit: set('time', 'timezone', '/etc/localtime'),
    expect: ['time.timezone: must be an IANA time zone name'],
  },
  {
    name: 'timezone missing',
    section: 'time',
    edit: (c) => delete c.time.timezone,
    expect: ['time.timezone: is required'],
  },
  // Bluetooth
  {
    name: 'bluetooth name with a newline',
    section: 'bluetooth',
    edit: set('bluetooth', 'name', 'Car\nX'),
    expect: ['bluetooth.name: must not contain control characters or line breaks'],
  },
  {
    name: 'bluetooth name with U+202E',
    section: 'bluetooth',
    edit: set('bluetooth', 'name', 'Car\u202E'),
    expect: ['bluetooth.name: must not contain invisible formatting characters'],
  },
  {
    name: 'bluetooth name with U+2060 word joiner',
    section: 'bluetooth',
    edit: set('bluetooth', 'name', 'Ca\u2060r'),
    expect: ['bluetooth.name: must not contain invisible formatting characters'],
  },
  {
    name: 'bluetooth name 249 bytes',
    section: 'bluetooth',
    edit: set('bluetooth', 'name', 'b'.repeat(249)),
    expect: ['bluetooth.name: must be at most 248 bytes'],
  },
  {
    name: 'bluetooth name empty',
    section: 'bluetooth',
    edit: set('bluetooth', 'name', ''),
    expect: ['bluetooth.name: must not be empty'],
  },
  {
    name: 'bluetooth discoverable "yes"',
    section: 'bluetooth',
    edit: set('bluetooth', 'discoverable', 'yes'),
    expect: ['bluetooth.discoverable: must be true or false'],
  },
  // Several problems at once
  {
    name: 'every wifi problem reported at once',
    section: 'wifi',
    edit: (c) => {
      c.wifi.ssid = '';
      c.wifi.password = 'pw5ch';
      c.wifi.channel = 14;
      c.wifi.band = 'a';
      c.wifi.country_code = 'usa';
    },
    expect: [
      'wifi.ssid: must not be empty',
      '; wifi.password: ',
      '; wifi.channel: 14 is not',
      '; wifi.country_code: ',
    ],
  },
  {
    name: 'wifi section missing',
    section: 'wifi',
    edit: (c) => {
      c.wifi = {};
    },
    expect: ['wifi.ssid: is required; wifi.password: is required'],
  },
  {
    name: 'wifi section not a mapping',
    section: 'wifi',
    edit: (c) => {
      (c as Record<string, unknown>).wifi = 5;
    },
    expect: ['wifi: must be a mapping of keys'],
  },
];

describe('invalid config values are refused and nothing is touched', () => {
  let sb: Sandbox;
  let before_: { hostapd: Buffer; network: Buffer };
  const logs = captureLog();

  before(async () => {
    sb = await makeSandbox();
    await copyFile(path.join(FIXTURES, 'installer-hostapd.conf'), sb.paths.hostapdConf);
    await copyFile(path.join(FIXTURES, 'installer.network'), sb.networkFile);
    before_ = {
      hostapd: (await fileState(sb.paths.hostapdConf))?.data as Buffer,
      network: (await fileState(sb.networkFile))?.data as Buffer,
    };
  });
  after(async () => {
    logs.restore();
    await sb.cleanup();
  });

  for (const c of CASES) {
    test(c.name, async () => {
      const cfg = validConfig();
      c.edit(cfg);
      await sb.writeConfig(cfg);
      const sys = new FakeSystem();
      const applier = new ConfigApplier(sys.deps(sb.paths));
      const logStart = logs.lines.length;

      const err = await applier.apply(c.section).then(
        () => assert.fail('apply should have been refused'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof ServiceError, 'a ServiceError');
      assert.equal(err.code, 'InvalidConfig');
      for (const want of c.expect)
        assert.ok(err.message.includes(want), `message ${JSON.stringify(err.message)} has ${want}`);

      // Nothing touched.
      assert.deepEqual((await fileState(sb.paths.hostapdConf))?.data, before_.hostapd);
      assert.deepEqual((await fileState(sb.networkFile))?.data, before_.network);
      assert.deepEqual(sys.restarts, []);
      assert.deepEqual(sys.adapterCalls, []);
      assert.deepEqual(sys.setTimezoneCalls, []);
      assert.deepEqual(sys.lockCalls, []);

      // No password in the message or in the journal entry (exactly one entry for the apply).
      const pw = cfg.wifi.password;
      const entries = logs.lines.slice(logStart).filter((l) => l.includes('SECTION='));
      assert.equal(entries.length, 1, 'one journal entry per apply');
      assert.match(entries[0] as string, /ERROR_CODE=InvalidConfig/);
      if (typeof pw === 'string' && pw.length >= 4) {
        assert.ok(!err.message.includes(pw), 'message must not contain the password');
        assert.ok(!(entries[0] as string).includes(pw), 'journal must not contain the password');
      }
    });
  }

  test('the unmodified config is accepted (the table above only fails for its one change)', async () => {
    await sb.writeConfig(validConfig());
    const sys = new FakeSystem();
    const applier = new ConfigApplier(sys.deps(sb.paths));
    for (const s of SECTION_NAMES) await applier.apply(s);
    assert.deepEqual(sys.restarts, ['hostapd.service', 'systemd-networkd.service']);
  });
});
