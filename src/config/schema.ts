// The rules for config.yaml, written once. Each section's zod schema is both the validator and, through
// z.output, the TypeScript type the renderers and the applier work with, so a rule cannot drift from the code
// that relies on it.
//
// Messages are for the person who typed the value: they name the field and the rule, never echo the value
// (a password must never appear anywhere, and echoing other text would let a crafted value shape our output),
// and every problem in a section is reported at once.
import { constants } from 'node:fs';
import { open, realpath } from 'node:fs/promises';
import path from 'node:path';
import * as z from 'zod';

export const SECTION_NAMES = ['wifi', 'network', 'bluetooth', 'time'] as const;
export type SectionName = (typeof SECTION_NAMES)[number];
/** The sections applied by writing a system file and restarting its unit. */
export const FILE_SECTION_NAMES = ['wifi', 'network'] as const satisfies readonly SectionName[];
export type FileSectionName = (typeof FILE_SECTION_NAMES)[number];

export function isSectionName(name: string): name is SectionName {
  return (SECTION_NAMES as readonly string[]).includes(name);
}

// ---------------------------------------------------------------------------------------------------------
// Shared pieces

/** C0/C1 controls and DEL (Cc), lone surrogates (Cs), and the Unicode line/paragraph separators. Only \n ends a
 * line for hostapd and networkd, but nothing that anyone's parser might treat as a line break is let through. */
const UNSAFE_CHARS = /[\p{Cc}\p{Cs}\p{Zl}\p{Zp}]/u;

/** Unicode format characters (Cf): invisible, yet they change what is shown. U+202E turns the rest of a name
 * around, U+200B and U+FEFF are not there at all: a network or device name carrying them can look exactly like
 * another one on the phone's list. */
const FORMAT_CHARS = /\p{Cf}/u;
const FORMAT_RULE =
  'must not contain invisible formatting characters (Unicode format characters such as U+200B, U+202E or U+FEFF)';

function utf8Bytes(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}

/** A required string. The loader hands over YAML scalars as their source text, so a non-string here is a
 * list or mapping (or a caller passing the wrong type). */
function text() {
  return z.string({
    error: (iss) => (iss.input === undefined ? 'is required' : 'must be text, not a list or mapping'),
  });
}

function fail(ctx: z.RefinementCtx, message: string, pathInSection: (string | number)[] = []): void {
  ctx.addIssue({ code: 'custom', message, path: pathInSection });
}

// ---------------------------------------------------------------------------------------------------------
// wifi

/** Channels the access point may use, per band.
 * 5 GHz: only the non-DFS channels (UNII-1 36–48 and UNII-3 149–165). DFS channels 52–144 need radar detection
 * and a channel-availability check of a minute or more before the AP may transmit, and must be vacated when a
 * radar appears; the Pi's brcmfmac radios do not support DFS in AP mode, and a car AP that silently
 * disappears for a minute is worse than a clear "use one of …" message now.
 * 2.4 GHz: 1–13 (14 is Japan-only and 802.11b-only). Whether 12/13 or 149–165 are allowed also depends on the
 * regulatory domain of country_code; hostapd enforces that, and an apply it refuses is rolled back. */
export const CHANNELS = {
  a: [36, 40, 44, 48, 149, 153, 157, 161, 165],
  g: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
} as const satisfies Record<string, readonly number[]>;
const DFS_CHANNELS = [52, 56, 60, 64, 100, 104, 108, 112, 116, 120, 124, 128, 132, 136, 140, 144];

export type Band = keyof typeof CHANNELS;
const BAND_LABEL: Record<Band, string> = { a: 'band a (5 GHz)', g: 'band g (2.4 GHz)' };

/** Channel used when config.yaml names none. The contract's default is 36, which only exists on band a; for
 * band g the usual non-overlapping middle channel 6 is used instead of failing on a value nobody typed. */
export const DEFAULT_CHANNEL: Record<Band, number> = { a: 36, g: 6 };

export const DEFAULT_COUNTRY = 'US';

/** 64 hex digits: a raw WPA PSK, written as wpa_psk= instead of wpa_passphrase=. */
export const HEX_PSK = /^[0-9A-Fa-f]{64}$/;
const PRINTABLE_ASCII = /^[\x20-\x7E]*$/;
export const PASSWORD_RULE = 'must be 8–63 printable ASCII characters (WPA2) or 64 hex digits';

export const ssidSchema = text().superRefine((s, ctx) => {
  const bytes = utf8Bytes(s);
  if (bytes === 0) fail(ctx, 'must not be empty (1–32 bytes of UTF-8)');
  else if (bytes > 32) fail(ctx, `must be at most 32 bytes of UTF-8 (this one is ${bytes} bytes)`);
  if (UNSAFE_CHARS.test(s)) fail(ctx, 'must not contain control characters or line breaks');
  if (FORMAT_CHARS.test(s)) fail(ctx, FORMAT_RULE);
});

export const passwordSchema = text().superRefine((s, ctx) => {
  if (HEX_PSK.test(s)) return;
  // Only the kind of problem is named; neither the value nor anything derived from it beyond "too short".
  if (!PRINTABLE_ASCII.test(s))
    fail(ctx, `${PASSWORD_RULE}; it contains a character that is not printable ASCII`);
  else if (s.length < 8) fail(ctx, `${PASSWORD_RULE}; it is too short (WPA2 needs at least 8 characters)`);
  else if (s.length === 64) fail(ctx, `${PASSWORD_RULE}; a 64-character key must consist of hex digits only`);
  else if (s.length > 63) fail(ctx, `${PASSWORD_RULE}; it is too long`);
});

export const bandSchema = z.enum(['a', 'g'], { error: 'must be "a" (5 GHz) or "g" (2.4 GHz)' });

/** Channel: a whole number. YAML gives a number for `channel: 36`; a string of 1–3 digits (`"36"`) is also
 * taken, since nothing but digits can survive that. Anything else (`"36\nwpa=0"`, 36.5, a list) is refused. */
export const channelSchema = z.unknown().transform((v, ctx): number => {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
  if (typeof v === 'string' && /^[0-9]{1,3}$/.test(v)) return Number(v);
  fail(ctx, 'must be a whole channel number such as 36 (digits only)');
  return z.NEVER;
});

/** Linux interface names: below IFNAMSIZ (16), and a conservative character set (the kernel would also take
 * other bytes, but systemd's Name= treats *, ? and [ as globs, and hostapd keeps the rest of the line). */
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
const IFNAME_RULE = 'must be a network interface name of 1–15 letters, digits, "_", "." or "-" (like wlan0)';

export function isInterfaceName(s: string): boolean {
  return IFNAME.test(s) && s !== '.' && s !== '..';
}

export const DEFAULT_AP_INTERFACE = 'wlan0';

/** The AP interface belongs to the installation (install.sh --ap-interface, recorded as
 * OPENAUTO_AP_INTERFACE), not to a user setting: config.yaml may name it or leave it out, but naming another
 * one (eth0: a DHCP server on the wired network) is refused. Both names are shown; the config value only once
 * it is known to be a plain interface name, so a crafted value cannot shape the message. */
export function apInterfaceSchema(installed: string = DEFAULT_AP_INTERFACE) {
  return text()
    .superRefine((s, ctx) => {
      if (!isInterfaceName(s)) fail(ctx, IFNAME_RULE);
      else if (s !== installed)
        fail(
          ctx,
          `is ${s}, but this installation's access point interface is ${installed} (chosen when installing, ` +
            `not in config.yaml): remove the key or set it to ${installed}`,
        );
    })
    .default(installed);
}

export const countryCodeSchema = text().regex(/^[A-Z]{2}$/, {
  message: 'must be a two-letter ISO 3166-1 country code in capitals (like US or DE)',
});

export interface WifiContext {
  /** country_code of the hostapd.conf in place (the installer's choice), used when config.yaml names none. */
  defaultCountry?: string;
  /** The installation's AP interface (settings.apInterface); default wlan0. */
  apInterface?: string;
}

export function makeWifiSchema(ctx: WifiContext = {}) {
  return z
    .object({
      ssid: ssidSchema,
      password: passwordSchema,
      band: bandSchema.default('a'),
      channel: channelSchema.optional(),
      interface: apInterfaceSchema(ctx.apInterface),
      country_code: countryCodeSchema.default(ctx.defaultCountry ?? DEFAULT_COUNTRY),
    })
    .superRefine(
      (o, rctx) => {
        // Runs even when other fields failed (all problems at once); only looks at band/channel when both parsed.
        const band = o.band === 'a' || o.band === 'g' ? o.band : undefined;
        const channel = typeof o.channel === 'number' ? o.channel : undefined;
        if (band === undefined || channel === undefined) return;
        const allowed: readonly number[] = CHANNELS[band];
        if (allowed.includes(channel)) return;
        const list = allowed.join(', ');
        if (band === 'a' && DFS_CHANNELS.includes(channel)) {
          fail(
            rctx,
            `${channel} is a DFS (radar) channel, which this access point does not use; use one of ${list}`,
            ['channel'],
          );
        } else {
          fail(rctx, `${channel} is not a channel of ${BAND_LABEL[band]}; use one of ${list}`, ['channel']);
        }
      },
      { when: () => true },
    )
    .transform((o) => ({ ...o, channel: o.channel ?? DEFAULT_CHANNEL[o.band] }));
}
export type WifiConfig = z.output<ReturnType<typeof makeWifiSchema>>;

// ---------------------------------------------------------------------------------------------------------
// network

type Octets = readonly [number, number, number, number];
const OCTET = '(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])';
const IPV4 = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`);

/** Strict dotted quad: four decimal numbers 0–255 without leading zeros (which some parsers read as octal). */
export function parseIpv4(s: string): Octets | undefined {
  const m = IPV4.exec(s);
  if (!m) return undefined;
  return [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4])];
}

const sameSlash24 = (a: Octets, b: Octets) => a[0] === b[0] && a[1] === b[1] && a[2] === b[2];
const formatIp = (o: Octets) => o.join('.');

/** What a parsed address field holds before it is placed in the AP's /24. */
interface IpValue {
  kind: 'ip';
  octets: Octets;
}
interface HostValue {
  kind: 'host';
  host: number;
}

export const apIpSchema = text().transform((s, ctx): IpValue => {
  const o = parseIpv4(s);
  if (!o) {
    fail(ctx, 'must be an IPv4 address like 10.0.0.1');
    return z.NEVER;
  }
  if (o[0] === 0 || o[0] === 127 || o[0] >= 224) {
    fail(ctx, 'must be a unicast address (not 0.x.x.x, 127.x.x.x, multicast or reserved)');
    return z.NEVER;
  }
  if (o[3] === 0 || o[3] === 255) {
    fail(ctx, 'must not be the network or broadcast address of its /24 (the last number must be 1–254)');
    return z.NEVER;
  }
  return { kind: 'ip', octets: o };
});

const RANGE_RULE =
  "must be an IPv4 address in the access point's /24 (like 10.0.0.10) or a host number 1–254";

/** A DHCP range bound: a full address, or a bare host number meaning that host in the AP's /24. */
export const rangeBoundSchema = z.unknown().transform((v, ctx): IpValue | HostValue => {
  let host: number | undefined;
  if (typeof v === 'number' && Number.isSafeInteger(v)) host = v;
  else if (typeof v === 'string' && /^[0-9]{1,3}$/.test(v)) host = Number(v);
  if (host !== undefined) {
    if (host >= 1 && host <= 254) return { kind: 'host', host };
    fail(ctx, RANGE_RULE);
    return z.NEVER;
  }
  const o = typeof v === 'string' ? parseIpv4(v) : undefined;
  if (!o) {
    fail(ctx, typeof v === 'string' || v === undefined ? RANGE_RULE : 'must be text, not a list or mapping');
    return z.NEVER;
  }
  if (o[3] === 0 || o[3] === 255) {
    fail(ctx, 'must not be the network or broadcast address of the /24 (the last number must be 1–254)');
    return z.NEVER;
  }
  return { kind: 'ip', octets: o };
});

const isParsed = (v: unknown): v is IpValue | HostValue =>
  typeof v === 'object' && v !== null && ((v as IpValue).kind === 'ip' || (v as HostValue).kind === 'host');

function hostOf(v: IpValue | HostValue): number {
  return v.kind === 'ip' ? v.octets[3] : v.host;
}

export function makeNetworkSchema(ctx: WifiContext = {}) {
  return z
    .object({
      ap_ip: apIpSchema.prefault('10.0.0.1'),
      dhcp_range_start: rangeBoundSchema.prefault('10.0.0.10'),
      dhcp_range_end: rangeBoundSchema.prefault('10.0.0.50'),
      /** The AP interface (wifi.interface): the .network file matches on it. */
      interface: apInterfaceSchema(ctx.apInterface),
    })
    .superRefine(
      (o, ctx) => {
        if (!isParsed(o.ap_ip) || o.ap_ip.kind !== 'ip') return;
        const ap = o.ap_ip.octets;
        const net = `${ap[0]}.${ap[1]}.${ap[2]}.0/24`;
        let inNet = true;
        for (const key of ['dhcp_range_start', 'dhcp_range_end'] as const) {
          const b = o[key];
          if (!isParsed(b)) {
            inNet = false;
          } else if (b.kind === 'ip' && !sameSlash24(b.octets, ap)) {
            fail(ctx, `must be in the access point's network ${net} (the /24 of ap_ip)`, [key]);
            inNet = false;
          }
        }
        if (!inNet || !isParsed(o.dhcp_range_start) || !isParsed(o.dhcp_range_end)) return;
        const start = hostOf(o.dhcp_range_start);
        const end = hostOf(o.dhcp_range_end);
        if (start > end) {
          fail(ctx, 'must not be lower than dhcp_range_start (the range is reversed)', ['dhcp_range_end']);
        } else if (ap[3] >= start && ap[3] <= end) {
          fail(ctx, 'the DHCP pool from dhcp_range_start to dhcp_range_end must not include ap_ip', [
            'dhcp_range_start',
          ]);
        }
      },
      { when: () => true },
    )
    .transform((o) => {
      const ap = o.ap_ip.octets;
      const at = (b: IpValue | HostValue) => formatIp([ap[0], ap[1], ap[2], hostOf(b)]);
      return {
        ap_ip: formatIp(ap),
        dhcp_range_start: at(o.dhcp_range_start),
        dhcp_range_end: at(o.dhcp_range_end),
        interface: o.interface,
      };
    });
}
export type NetworkConfig = z.output<ReturnType<typeof makeNetworkSchema>>;

// ---------------------------------------------------------------------------------------------------------
// bluetooth

export const bluetoothSchema = z.object({
  name: text().superRefine((s, ctx) => {
    const bytes = utf8Bytes(s);
    if (bytes === 0) fail(ctx, 'must not be empty (1–248 bytes of UTF-8)');
    else if (bytes > 248) fail(ctx, `must be at most 248 bytes of UTF-8 (this one is ${bytes} bytes)`);
    if (UNSAFE_CHARS.test(s)) fail(ctx, 'must not contain control characters or line breaks');
    if (FORMAT_CHARS.test(s)) fail(ctx, FORMAT_RULE);
  }),
  discoverable: z.boolean({
    error: (iss) => (iss.input === undefined ? 'is required' : 'must be true or false'),
  }),
});
export type BluetoothConfig = z.output<typeof bluetoothSchema>;

// ---------------------------------------------------------------------------------------------------------
// time

/** IANA names: components of letters, digits, _ + -, each starting with a letter, separated by single
 * slashes. No dot anywhere, so neither `..` nor a hidden file can be named. */
const TZ_NAME = /^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z][A-Za-z0-9_+-]*){0,3}$/;
/** Files in zoneinfo that are not zones of their own. */
const NOT_ZONES = new Set(['localtime', 'posixrules']);

export const DEFAULT_ZONEINFO = '/usr/share/zoneinfo';

/** True when `name` is a TZif file inside `zoneinfoDir` (symlinks allowed, as tzdata uses them, but the file
 * they lead to must stay inside the directory). */
export async function isInstalledZone(zoneinfoDir: string, name: string): Promise<boolean> {
  if (!TZ_NAME.test(name) || name.length > 255 || NOT_ZONES.has(name)) return false;
  try {
    const root = await realpath(zoneinfoDir);
    const file = await realpath(path.join(root, name));
    if (!file.startsWith(root + path.sep)) return false;
    // O_NONBLOCK: a FIFO planted in the directory must not hang the daemon.
    const fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
    try {
      if (!(await fh.stat()).isFile()) return false;
      const magic = Buffer.alloc(4);
      const { bytesRead } = await fh.read(magic, 0, 4, 0);
      return bytesRead === 4 && magic.toString('latin1') === 'TZif';
    } finally {
      await fh.close();
    }
  } catch {
    return false;
  }
}

export function makeTimeSchema(zoneinfoDir: string = DEFAULT_ZONEINFO) {
  return z.object({
    timezone: text().superRefine(async (tz, ctx) => {
      if (!TZ_NAME.test(tz) || tz.length > 255) {
        fail(ctx, 'must be an IANA time zone name like Europe/Berlin');
      } else if (!(await isInstalledZone(zoneinfoDir, tz))) {
        fail(ctx, 'is not an installed time zone (expected a name like Europe/Berlin)');
      }
    }),
  });
}
export type TimeConfig = z.output<ReturnType<typeof makeTimeSchema>>;

// ---------------------------------------------------------------------------------------------------------
// Validation entry point

export interface SectionConfigs {
  wifi: WifiConfig;
  network: NetworkConfig;
  bluetooth: BluetoothConfig;
  time: TimeConfig;
}

export interface ValidationContext extends WifiContext {
  zoneinfoDir?: string;
}

/** Where each field's value came from, as shown to the user (e.g. `connection.wifi_ap.password` when the
 * canonical `wifi.password` was absent). Fields not listed are named `<section>.<field>`. */
export type FieldNames = Partial<Record<string, string>>;

export function schemaFor(section: SectionName, ctx: ValidationContext = {}) {
  switch (section) {
    case 'wifi':
      return makeWifiSchema(ctx);
    case 'network':
      return makeNetworkSchema(ctx);
    case 'bluetooth':
      return bluetoothSchema;
    case 'time':
      return makeTimeSchema(ctx.zoneinfoDir);
  }
}

export type ValidationResult<S extends SectionName> =
  | { ok: true; value: SectionConfigs[S] }
  | { ok: false; problems: string[] };

/** Validates one section's raw values. Problems come back as `<field path>: <rule>`, in field order. */
export async function validateSection<S extends SectionName>(
  section: S,
  raw: Record<string, unknown>,
  ctx: ValidationContext = {},
  names: FieldNames = {},
): Promise<ValidationResult<S>> {
  const r = await schemaFor(section, ctx).safeParseAsync(raw);
  if (r.success) return { ok: true, value: r.data as SectionConfigs[S] };
  const problems = r.error.issues.map((iss) => {
    const field = iss.path.map(String).join('.');
    const canonical = field ? `${section}.${field}` : section;
    const shown = names[field] ?? canonical;
    return `${shown}: ${iss.message}`;
  });
  return { ok: false, problems: [...new Set(problems)] };
}
