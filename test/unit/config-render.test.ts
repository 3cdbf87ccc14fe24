// Rendering: the template engine's rules, the exact files for known configs, and property-based proof that any
// config the schema accepts renders files that parse back to the same values with exactly the expected set of
// directives (no extra keys, no injected lines), while anything else is refused.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  HOSTAPD_TEMPLATE,
  hostapdVars,
  NETWORK_TEMPLATE,
  networkVars,
  poolOf,
  renderTemplate,
  TemplateError,
} from '../../src/config/render.js';
import {
  isInterfaceName,
  type NetworkConfig,
  validateSection,
  type WifiConfig,
} from '../../src/config/schema.js';
import { ServiceError } from '../../src/errors.js';
import { parseHostapd, parseNetworkd, TEMPLATES } from '../fixtures/config/harness.js';

const hostapdTmpl = await readFile(path.join(TEMPLATES, HOSTAPD_TEMPLATE), 'utf8');
const networkTmpl = await readFile(path.join(TEMPLATES, NETWORK_TEMPLATE), 'utf8');
const renderHostapd = (c: WifiConfig) => renderTemplate(hostapdTmpl, hostapdVars(c), HOSTAPD_TEMPLATE);
const renderNetwork = (c: NetworkConfig) => renderTemplate(networkTmpl, networkVars(c), NETWORK_TEMPLATE);

const RUNS = Number(process.env.FC_RUNS ?? 400);

describe('template engine', () => {
  test('values, conditions, nesting and comments', () => {
    const t =
      '{{! dropped }}\na={{x}}\n{{#if on}}\nb={{n}}\n{{#unless on}}\nnever\n{{/unless}}\n{{/if}}\n{{#unless on}}\nc=1\n{{/unless}}\n';
    assert.equal(renderTemplate(t, { x: 'v', n: 3, on: true }), 'a=v\nb=3\n');
    assert.equal(renderTemplate(t, { x: 'v', n: 3, on: false }), 'a=v\nc=1\n');
  });

  test('values may contain braces and equals signs; only the template is checked for stray braces', () => {
    assert.equal(renderTemplate('k={{v}}', { v: '{{x}}=}}' }), 'k={{x}}=}}\n');
    assert.throws(() => renderTemplate('k={{v}', { v: 'a' }), TemplateError);
  });

  test('template mistakes fail loudly', () => {
    assert.throws(() => renderTemplate('a={{missing}}', {}), /not supplied/);
    assert.throws(() => renderTemplate('a={{flag}}', { flag: true }), /not text/);
    assert.throws(() => renderTemplate('{{#if s}}\n{{/if}}', { s: 'x' }), /not a boolean/);
    assert.throws(() => renderTemplate('{{#if b}}\na=1', { b: true }), /never closed/);
    assert.throws(() => renderTemplate('{{/if}}', {}), /without a matching open/);
    assert.throws(() => renderTemplate('{{#if b}}\n{{/unless}}', { b: true }), /without a matching open/);
    assert.throws(() => renderTemplate('a={{bad name}}', {}), /malformed placeholder/);
    // Unknown names are caught even inside a branch that is not taken.
    assert.throws(() => renderTemplate('{{#if b}}\na={{typo}}\n{{/if}}', { b: false }), /not supplied/);
  });

  test('the last-line guard refuses a value with a line break, naming only the variable', () => {
    for (const bad of ['x\ny', 'x\ry', 'x\0y']) {
      assert.throws(
        () => renderTemplate('password={{password}}', { password: `secret${bad}` }),
        (e: unknown) =>
          e instanceof ServiceError &&
          e.code === 'InvalidConfig' &&
          e.message === 'password: contains a line break or NUL character',
      );
    }
  });

  test('CRLF templates render LF files; trailing blank lines collapse to one newline', () => {
    assert.equal(renderTemplate('a=1\r\nb=2\r\n\r\n\r\n', {}), 'a=1\nb=2\n');
  });
});

async function wifi(raw: Record<string, unknown>, defaultCountry?: string): Promise<WifiConfig> {
  const r = await validateSection('wifi', raw, { defaultCountry });
  if (!r.ok) throw new Error(r.problems.join('; '));
  return r.value;
}
/** The installation whose AP interface is the one the config names (when that is a valid name): these
 * tests are about rendering; refusing another interface is config-ap-interface.test.ts's. */
function installedAs(iface: unknown): string | undefined {
  return typeof iface === 'string' && isInterfaceName(iface) ? iface : undefined;
}
async function network(raw: Record<string, unknown>): Promise<NetworkConfig> {
  const r = await validateSection('network', raw, { apInterface: installedAs(raw.interface) });
  if (!r.ok) throw new Error(r.problems.join('; '));
  return r.value;
}

describe('rendered files for known configs', () => {
  test('hostapd.conf, 5 GHz, passphrase', async () => {
    const text = renderHostapd(await wifi({ ssid: 'Prodigy_3fa9', password: 'q7GkL2xPz9RbT4mW' }, 'GB'));
    const body = text
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#'))
      .join('\n');
    assert.equal(
      body,
      [
        'interface=wlan0',
        'driver=nl80211',
        'ctrl_interface=/var/run/hostapd',
        'ssid=Prodigy_3fa9',
        'ignore_broadcast_ssid=0',
        'country_code=GB',
        'ieee80211d=1',
        'hw_mode=a',
        'channel=36',
        'wmm_enabled=1',
        'ieee80211n=1',
        'ieee80211ac=1',
        'vht_oper_chwidth=0',
        'auth_algs=1',
        'wpa=2',
        'wpa_key_mgmt=WPA-PSK',
        'rsn_pairwise=CCMP',
        'wpa_passphrase=q7GkL2xPz9RbT4mW',
      ].join('\n'),
    );
    assert.ok(text.startsWith('# Written by openauto-system'), 'a header says who owns the file');
    assert.ok(!text.includes('{{'), 'no template syntax left');
  });

  test('hostapd.conf, 2.4 GHz: no 802.11ac lines, default channel 6', async () => {
    const m = parseHostapd(renderHostapd(await wifi({ ssid: 'Car', password: 'abcdefgh', band: 'g' }))).map;
    assert.equal(m.get('hw_mode'), 'g');
    assert.equal(m.get('channel'), '6');
    assert.equal(m.has('ieee80211ac'), false);
    assert.equal(m.has('vht_oper_chwidth'), false);
    assert.equal(m.get('ieee80211n'), '1');
    assert.equal(m.get('country_code'), 'US');
  });

  test('hostapd.conf: non-ASCII SSID gets utf8_ssid=1 and raw UTF-8 bytes; a 64-hex key becomes wpa_psk', async () => {
    const psk = 'aB'.repeat(32);
    const text = renderHostapd(await wifi({ ssid: 'Škoda Fabia 🚗', password: psk }));
    const m = parseHostapd(text).map;
    assert.equal(m.get('ssid'), 'Škoda Fabia 🚗');
    assert.equal(m.get('utf8_ssid'), '1');
    assert.equal(m.get('wpa_psk'), psk);
    assert.equal(m.has('wpa_passphrase'), false);
    assert.ok(Buffer.from(text, 'utf8').includes(Buffer.from('ssid=Škoda Fabia 🚗\n', 'utf8')));
  });

  test('the .network file for the defaults matches the installer, with an inclusive pool', async () => {
    const text = renderNetwork(await network({}));
    const body = text
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#'))
      .join('\n');
    assert.equal(
      body,
      [
        '[Match]',
        'Name=wlan0',
        '[Network]',
        'Address=10.0.0.1/24',
        'DHCPServer=yes',
        'ConfigureWithoutCarrier=yes',
        '[DHCPServer]',
        'PoolOffset=10',
        'PoolSize=41',
        'EmitDNS=no',
      ].join('\n'),
    );
  });

  test('pool math', () => {
    assert.deepEqual(poolOf({ dhcp_range_start: '10.0.0.10', dhcp_range_end: '10.0.0.50' }), {
      offset: 10,
      size: 41,
    });
    assert.deepEqual(poolOf({ dhcp_range_start: '10.0.0.2', dhcp_range_end: '10.0.0.254' }), {
      offset: 2,
      size: 253,
    });
    assert.deepEqual(poolOf({ dhcp_range_start: '10.0.0.7', dhcp_range_end: '10.0.0.7' }), {
      offset: 7,
      size: 1,
    });
  });
});

// ---------------------------------------------------------------------------------------------------------
// Properties

const HOSTAPD_BASE = [
  'interface',
  'driver',
  'ctrl_interface',
  'ssid',
  'ignore_broadcast_ssid',
  'country_code',
  'ieee80211d',
  'hw_mode',
  'channel',
  'wmm_enabled',
  'ieee80211n',
  'auth_algs',
  'wpa',
  'wpa_key_mgmt',
  'rsn_pairwise',
];

function expectedHostapdKeys(c: WifiConfig): string[] {
  const keys = [...HOSTAPD_BASE];
  if (/[^\p{ASCII}]/u.test(c.ssid)) keys.push('utf8_ssid');
  if (c.band === 'a') keys.push('ieee80211ac', 'vht_oper_chwidth');
  keys.push(/^[0-9a-fA-F]{64}$/.test(c.password) ? 'wpa_psk' : 'wpa_passphrase');
  return keys.sort();
}

/** The rendered hostapd.conf holds exactly the expected directives, once each, with the config's values. */
function checkHostapd(c: WifiConfig): void {
  const text = renderHostapd(c);
  const { entries, map } = parseHostapd(text);
  const keys = entries.map(([k]) => k).sort();
  assert.deepEqual(keys, expectedHostapdKeys(c), 'exactly the expected directives, no duplicates');
  assert.equal(map.get('ssid'), c.ssid);
  assert.equal(map.get(map.has('wpa_psk') ? 'wpa_psk' : 'wpa_passphrase'), c.password);
  assert.equal(map.get('channel'), String(c.channel));
  assert.equal(map.get('hw_mode'), c.band);
  assert.equal(map.get('interface'), c.interface);
  assert.equal(map.get('country_code'), c.country_code);
  assert.equal(map.get('driver'), 'nl80211');
  assert.equal(map.get('wpa'), '2');
  assert.equal(map.get('ctrl_interface'), '/var/run/hostapd');
  // Every non-comment line is one of ours; nothing else can start a line.
  assert.equal(text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length, entries.length);
  assert.ok(!/[\r\0]/.test(text));
}

const printableAscii = fc.integer({ min: 0x20, max: 0x7e }).map((n) => String.fromCharCode(n));
const nasty = fc.constantFrom(
  '\n',
  '\r',
  '\0',
  '=',
  '#',
  ' ',
  '\t',
  '\u2028',
  '\u0085',
  'é',
  '🚗',
  '\uD800',
  '[',
  '*',
  '"',
);

const validSsid = fc
  .string({
    unit: fc.oneof(
      fc.constantFrom('a', 'Z', '0', ' ', '=', '#', '"', "'", '\\', '{{', '}}'),
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }),
    ),
    minLength: 1,
    maxLength: 20,
  })
  .filter((s) => {
    const n = Buffer.byteLength(s);
    return n >= 1 && n <= 32 && !/[\p{Cc}\p{Cs}\p{Zl}\p{Zp}\p{Cf}]/u.test(s);
  });
const validPassword = fc.oneof(
  fc.string({ unit: printableAscii, minLength: 8, maxLength: 63 }),
  fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF'), minLength: 64, maxLength: 64 }),
);
const validBandChannel = fc.oneof(
  fc.record({ band: fc.constant('a'), channel: fc.constantFrom(36, 40, 44, 48, 149, 153, 157, 161, 165) }),
  fc.record({ band: fc.constant('g'), channel: fc.integer({ min: 1, max: 13 }) }),
);
const validIface = fc
  .string({ unit: fc.constantFrom(...'abcwlan0123_.-XYZ'), minLength: 1, maxLength: 15 })
  .filter((s) => s !== '.' && s !== '..');
const validCountry = fc
  .tuple(fc.integer({ min: 65, max: 90 }), fc.integer({ min: 65, max: 90 }))
  .map(([a, b]) => String.fromCharCode(a, b));

describe('property: accepted wifi configs render exactly', () => {
  test('every valid wifi config is accepted and renders to exactly its values', async () => {
    await fc.assert(
      fc.asyncProperty(
        validSsid,
        validPassword,
        validBandChannel,
        validIface,
        validCountry,
        async (ssid, password, bc, iface, country) => {
          const raw = { ssid, password, ...bc, interface: iface, country_code: country };
          const r = await validateSection('wifi', raw, { apInterface: iface });
          assert.ok(r.ok, `accepted: ${r.ok ? '' : r.problems.join('; ')}`);
          assert.deepEqual(r.value, raw);
          checkHostapd(r.value);
        },
      ),
      { numRuns: RUNS },
    );
  });

  test('arbitrary input is either refused or renders without any extra line', async () => {
    const anyText = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.string({ unit: fc.oneof(printableAscii, nasty), maxLength: 70 }),
    );
    const anyValue = fc.oneof(
      anyText,
      fc.integer({ min: -5, max: 300 }),
      fc.constant(undefined),
      fc.double(),
    );
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          ssid: fc.oneof(validSsid, anyText),
          password: fc.oneof(validPassword, anyText),
          band: fc.oneof(fc.constantFrom('a', 'g', undefined), anyText),
          channel: fc.oneof(
            fc.constantFrom(1, 6, 13, 14, 36, 52, 165, '36', '36\nwpa=0', undefined),
            anyValue,
          ),
          interface: fc.oneof(validIface, anyText, fc.constant(undefined)),
          country_code: fc.oneof(validCountry, anyText, fc.constant(undefined)),
        }),
        async (raw) => {
          const r = await validateSection('wifi', raw, { apInterface: installedAs(raw.interface) });
          if (!r.ok) {
            assert.ok(r.problems.length > 0);
            for (const p of r.problems) assert.match(p, /^wifi(\.[a-z_]+)?: /);
            // Refusals never quote the password.
            if (typeof raw.password === 'string' && raw.password.length >= 6) {
              assert.ok(!r.problems.join('; ').includes(raw.password));
            }
            return;
          }
          accepted++;
          checkHostapd(r.value);
        },
      ),
      { numRuns: RUNS * 2 },
    );
    assert.ok(accepted > 0, 'some arbitrary inputs were valid');
  });
});

/** The rendered .network file holds exactly the expected keys with the config's values. */
function checkNetwork(c: NetworkConfig, raw: { ap: number[]; start: number; end: number }): void {
  const text = renderNetwork(c);
  const { entries, map } = parseNetworkd(text);
  assert.deepEqual(entries.map(([k]) => k).sort(), [
    'DHCPServer.EmitDNS',
    'DHCPServer.PoolOffset',
    'DHCPServer.PoolSize',
    'Match.Name',
    'Network.Address',
    'Network.ConfigureWithoutCarrier',
    'Network.DHCPServer',
  ]);
  assert.equal(map.get('Match.Name'), c.interface);
  assert.equal(map.get('Network.Address'), `${raw.ap.join('.')}/24`);
  const offset = Number(map.get('DHCPServer.PoolOffset'));
  const size = Number(map.get('DHCPServer.PoolSize'));
  // The pool parses back to the configured range, and ap_ip is outside it.
  assert.equal(offset, raw.start);
  assert.equal(offset + size - 1, raw.end);
  assert.ok(size >= 1 && offset >= 1 && offset + size - 1 <= 254);
  const apHost = raw.ap[3] as number;
  assert.ok(apHost < offset || apHost > offset + size - 1, 'ap_ip outside the pool');
}

describe('property: accepted network configs render exactly', () => {
  test('any accepted network config parses back to its values; every refusal has a reason', async () => {
    let accepted = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.tuple(fc.constantFrom(10, 172, 192), fc.nat(255), fc.nat(255), fc.integer({ min: 0, max: 255 })),
        fc.integer({ min: 0, max: 256 }),
        fc.integer({ min: 0, max: 256 }),
        fc.boolean(),
        fc.boolean(),
        validIface,
        async (ap, start, end, startAsHost, otherNet, iface) => {
          const prefix = `${ap[0]}.${ap[1]}.${ap[2]}`;
          const bound = (h: number, asHost: boolean) =>
            asHost ? h : `${otherNet ? `${ap[0]}.${(ap[1] + 1) % 256}.${ap[2]}` : prefix}.${h}`;
          const raw = {
            ap_ip: ap.join('.'),
            dhcp_range_start: bound(start, startAsHost),
            dhcp_range_end: bound(end, true),
            interface: iface,
          };
          const r = await validateSection('network', raw, { apInterface: iface });
          const apHost = ap[3];
          const shouldAccept =
            apHost >= 1 &&
            apHost <= 254 &&
            start >= 1 &&
            start <= 254 &&
            end >= 1 &&
            end <= 254 &&
            start <= end &&
            (apHost < start || apHost > end) &&
            (startAsHost || !otherNet);
          assert.equal(r.ok, shouldAccept, r.ok ? 'accepted' : r.problems.join('; '));
          if (!r.ok) return;
          accepted++;
          assert.equal(r.value.dhcp_range_start, `${prefix}.${start}`);
          assert.equal(r.value.dhcp_range_end, `${prefix}.${end}`);
          checkNetwork(r.value, { ap: [...ap], start, end });
        },
      ),
      { numRuns: RUNS * 2 },
    );
    assert.ok(accepted > 10, `enough accepted cases (${accepted})`);
  });

  test('arbitrary text in network fields is refused or renders without extra lines', async () => {
    const anyText = fc.string({
      unit: fc.oneof(fc.constantFrom(...'0123456789.\n\r =#/'), nasty),
      maxLength: 20,
    });
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          ap_ip: fc.oneof(fc.constant('10.0.0.1'), anyText),
          dhcp_range_start: fc.oneof(fc.constant('10.0.0.10'), anyText, fc.integer({ min: -2, max: 300 })),
          dhcp_range_end: fc.oneof(fc.constant('10.0.0.50'), anyText, fc.integer({ min: -2, max: 300 })),
          interface: fc.oneof(validIface, anyText),
        }),
        async (raw) => {
          const r = await validateSection('network', raw, { apInterface: installedAs(raw.interface) });
          if (!r.ok) {
            for (const p of r.problems) assert.match(p, /^network(\.[a-z_]+)?: /);
            return;
          }
          const text = renderNetwork(r.value);
          const { entries } = parseNetworkd(text);
          assert.equal(entries.length, 7);
          assert.ok(!/[\r\0]/.test(text));
        },
      ),
      { numRuns: RUNS * 2 },
    );
  });
});
