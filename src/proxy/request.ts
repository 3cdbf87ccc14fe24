// The rules for a proxy route request (set_proxy_route on the socket, SetProxyRoute on D-Bus), written once as
// a zod schema that is also the type the renderers work with. Every value ends up in redsocks' or nftables'
// syntax, so the rules are allow-lists: an IPv4 address, a port, interface names and IPv4 networks of a fixed
// shape, and user and password of printable ASCII without the characters either syntax gives a meaning to.
// Messages name the field and the rule, never the value (the password must not appear anywhere).
import * as z from 'zod';
import { ServiceError } from '../errors.js';

/** SOCKS5 user/password authentication (RFC 1929) carries each in at most 255 bytes. */
export const MAX_CREDENTIAL = 255;
/** At most this many skip interfaces / networks (a set in one nft rule; the app sends a handful). */
export const MAX_SKIP = 32;

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
/** Printable ASCII (space to tilde) without `"` `\` `;` `{` `}`, the characters redsocks' parser acts on. */
const CREDENTIAL = /^[\x20-\x21\x23-\x3a\x3c-\x5b\x5d-\x7a\x7c\x7e]+$/;
/** A Linux interface name as nftables takes it in quotes: 1–15 of letters, digits, `_`, `.`, `-`. */
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

export function isIpv4(s: string): boolean {
  return IPV4.test(s);
}

function octets(s: string): number[] {
  return s.split('.').map(Number);
}

/** Qt's dual-stack sockets report the phone as `::ffff:10.0.0.31`: that is the IPv4 address. */
function unmapped(s: string): string {
  return /^::ffff:/i.test(s) ? s.slice(7) : s;
}

const host = z
  .string({ error: (iss) => (iss.input === undefined ? 'is required' : 'must be a string') })
  .max(64, 'must be an IPv4 address (at most 64 characters)')
  .transform(unmapped)
  .refine(isIpv4, 'must be an IPv4 address such as 10.0.0.31 (or ::ffff:10.0.0.31), not a name')
  .refine((s) => {
    const o = octets(s);
    return o[0] !== 0 && o[0] !== 127 && (o[0] ?? 0) < 224;
  }, 'must be a unicast address (not 0.x.x.x, 127.x.x.x, multicast or reserved)');

const port = z
  .number({ error: (iss) => (iss.input === undefined ? 'is required' : 'must be a number, not text') })
  .int('must be a whole number')
  .min(1, 'must be 1–65535')
  .max(65535, 'must be 1–65535');

function credential(what: string) {
  return (
    z
      .string({ error: (iss) => (iss.input === undefined ? 'is required' : 'must be a string') })
      .min(1, 'must not be empty')
      .max(MAX_CREDENTIAL, `must be at most ${MAX_CREDENTIAL} characters (SOCKS5 limit)`)
      .regex(
        CREDENTIAL,
        `${what} must be printable ASCII without " \\ ; { } or control characters (newline, NUL, …)`,
      )
      // redsocks' parser takes a quoted "=" for its own '=' and refuses the file; every other value it holds.
      .refine((v) => v !== '=', `${what} must not be a lone "=" (redsocks cannot read it)`)
  );
}

const network = z
  .string({ error: () => 'each entry must be a string' })
  .max(18, 'each entry must be an IPv4 network like 192.168.0.0/16')
  .refine((s) => {
    const [addr, bits, ...rest] = s.split('/');
    if (rest.length > 0 || addr === undefined || bits === undefined || !isIpv4(addr)) return false;
    return /^(3[0-2]|[12]?\d)$/.test(bits);
  }, 'each entry must be an IPv4 network like 192.168.0.0/16');

const iface = z
  .string({ error: () => 'each entry must be a string' })
  .regex(IFNAME, 'each entry must be an interface name (1–15 of letters, digits, _ . -)');

export const EnableSchema = z.object({
  active: z.literal(true),
  host,
  port,
  user: credential('user').default('oap'),
  password: credential('password'),
  skip_interfaces: z.array(iface).max(MAX_SKIP, `at most ${MAX_SKIP} entries`).optional(),
  skip_networks: z.array(network).max(MAX_SKIP, `at most ${MAX_SKIP} entries`).optional(),
});

export type ProxyConfig = Required<z.output<typeof EnableSchema>>;
export type ProxyRequest = { active: false } | ProxyConfig;

/** The defaults the shipping app relies on; the AP's own /24 is added from the installation. */
export function defaultSkipNetworks(apSubnet: string): string[] {
  return ['127.0.0.0/8', '169.254.0.0/16', apSubnet, '192.168.0.0/16'].filter(
    (n, i, all) => all.indexOf(n) === i,
  );
}

/** The /24 around the AP address, e.g. 10.0.0.1 → 10.0.0.0/24. */
export function subnetOf(apIp: string): string {
  const o = octets(apIp);
  return `${o[0]}.${o[1]}.${o[2]}.0/24`;
}

/**
 * Validates a request as the socket's params or the D-Bus arguments arrive. `active: false` needs nothing
 * else (the app sends only that). Throws ServiceError('InvalidArgs') naming every field that broke a rule.
 */
export function parseProxyRequest(params: unknown, apSubnet: string): ProxyRequest {
  if (typeof params !== 'object' || params === null || Array.isArray(params)) {
    throw new ServiceError('InvalidArgs', 'params: must be an object');
  }
  const p = params as Record<string, unknown>;
  if (typeof p.active !== 'boolean') {
    throw new ServiceError('InvalidArgs', 'active: must be true or false');
  }
  if (!p.active) return { active: false };
  const r = EnableSchema.safeParse(p);
  if (!r.success) {
    const problems = r.error.issues.map((i) => `${i.path.join('.') || 'params'}: ${i.message}`);
    throw new ServiceError('InvalidArgs', problems.join('; '));
  }
  return {
    ...r.data,
    skip_interfaces: r.data.skip_interfaces ?? ['lo'],
    skip_networks: r.data.skip_networks ?? defaultSkipNetworks(apSubnet),
  };
}

/** Same configuration (the password included): re-sending it changes nothing. */
export function sameConfig(a: ProxyConfig, b: ProxyConfig): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
