// Rendering system files from templates/ (read at run time, so a packager can adjust e.g. the 802.11ac
// lines without rebuilding). The daemon owns each file's entire content: no editing of existing files.
//
// Template syntax, deliberately tiny:
//   {{name}}            the value of `name` (a string or number)
//   {{#if name}}        on a line of its own: the lines up to the matching {{/if}} are kept when `name` is true
//   {{#unless name}}    the same, kept when `name` is false; closed by {{/unless}}
//   {{! comment }}      on a line of its own: dropped from the output
// Blocks nest. A name the template uses but the caller did not supply, or of the wrong kind, is an error, as is
// an unbalanced block: a broken template must fail loudly instead of writing a half-configured file.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ServiceError } from '../errors.js';
import { HEX_PSK, type NetworkConfig, parseIpv4, type WifiConfig } from './schema.js';

export type TemplateValue = string | number | boolean;
export type TemplateVars = Readonly<Record<string, TemplateValue>>;

export const HOSTAPD_TEMPLATE = 'hostapd.conf.tmpl';
export const NETWORK_TEMPLATE = '10-openauto-ap.network.tmpl';
/** File name of the rendered .network file inside the networkd directory. */
export const NETWORK_FILE = '10-openauto-ap.network';

/** Anything that could end a line (or a C string) in the target file. Validation already excludes these; this is
 * the last check before bytes are written, so a future rule change cannot open an injection. */
const LINE_BREAKING = /[\n\r\0]/;

const BLOCK_OPEN = /^\{\{#(if|unless) ([A-Za-z_][A-Za-z0-9_]*)\}\}$/;
const BLOCK_CLOSE = /^\{\{\/(if|unless)\}\}$/;
const COMMENT = /^\{\{!.*\}\}$/;
const PLACEHOLDER = /\{\{([^}]*)\}\}/g;
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export class TemplateError extends Error {
  override name = 'TemplateError';
}

/** Renders `template` with `vars`. Throws TemplateError for template mistakes, and ServiceError('InvalidConfig')
 * when a value would break a line. The output ends with exactly one newline. */
export function renderTemplate(template: string, vars: TemplateVars, templateName = 'template'): string {
  const out: string[] = [];
  const stack: { kind: string; active: boolean }[] = [];
  const lines = template.replace(/\r\n/g, '\n').split('\n');
  lines.forEach((rawLine, i) => {
    const where = `${templateName} line ${i + 1}`;
    const trimmed = rawLine.trim();
    const open = BLOCK_OPEN.exec(trimmed);
    if (open) {
      const [, kind, name] = open as unknown as [string, string, string];
      const v = vars[name];
      if (typeof v !== 'boolean')
        throw new TemplateError(`${where}: condition "${name}" is not a boolean value`);
      const parentActive = stack.every((b) => b.active);
      stack.push({ kind, active: parentActive && (kind === 'if' ? v : !v) });
      return;
    }
    const close = BLOCK_CLOSE.exec(trimmed);
    if (close) {
      const top = stack.pop();
      if (!top || top.kind !== close[1])
        throw new TemplateError(`${where}: {{/${close[1]}}} without a matching open`);
      return;
    }
    if (COMMENT.test(trimmed)) return;
    // Substitute (and check names) on every line, active or not, so a typo in an unused branch is still caught.
    const rendered = rawLine.replace(PLACEHOLDER, (_m, inner: string) => {
      const name = inner.trim();
      if (!NAME.test(name)) throw new TemplateError(`${where}: malformed placeholder`);
      const v = vars[name];
      if (typeof v !== 'string' && typeof v !== 'number') {
        throw new TemplateError(
          `${where}: value "${name}" is ${v === undefined ? 'not supplied' : 'not text'}`,
        );
      }
      const s = String(v);
      if (LINE_BREAKING.test(s)) {
        // Name only, never the value (it may be the passphrase).
        throw new ServiceError('InvalidConfig', `${name}: contains a line break or NUL character`);
      }
      return s;
    });
    // Checked on the template text, not the output: a value may legitimately contain braces.
    const rest = rawLine.replace(PLACEHOLDER, '');
    if (rest.includes('{{') || rest.includes('}}')) throw new TemplateError(`${where}: stray braces`);
    if (stack.every((b) => b.active)) out.push(rendered);
  });
  if (stack.length > 0)
    throw new TemplateError(`${templateName}: {{#${stack[stack.length - 1]?.kind}}} is never closed`);
  while (out.length > 0 && out[out.length - 1] === '') out.pop();
  const text = `${out.join('\n')}\n`;
  if (/[\r\0]/.test(text)) throw new TemplateError(`${templateName}: output contains CR or NUL`);
  return text;
}

export async function readTemplate(templatesDir: string, name: string): Promise<string> {
  return readFile(path.join(templatesDir, name), 'utf8');
}

// ---------------------------------------------------------------------------------------------------------
// hostapd.conf

/** True when the SSID is not plain ASCII: then hostapd gets `utf8_ssid=1`, which sets the "SSID is UTF-8" bit
 * in the beacon so clients display it correctly. The SSID itself stays on the plain `ssid=` line: hostapd takes
 * the rest of that line as raw bytes (no quoting or escaping), and validation guarantees there is no newline. */
export function needsUtf8Ssid(ssid: string): boolean {
  return /[^\p{ASCII}]/u.test(ssid);
}

export function hostapdVars(cfg: WifiConfig): TemplateVars {
  return {
    interface: cfg.interface,
    ssid: cfg.ssid,
    utf8_ssid: needsUtf8Ssid(cfg.ssid),
    country_code: cfg.country_code,
    hw_mode: cfg.band,
    channel: cfg.channel,
    band_a: cfg.band === 'a',
    psk_hex: HEX_PSK.test(cfg.password),
    password: cfg.password,
  };
}

export async function renderHostapdConf(templatesDir: string, cfg: WifiConfig): Promise<string> {
  return renderTemplate(
    await readTemplate(templatesDir, HOSTAPD_TEMPLATE),
    hostapdVars(cfg),
    HOSTAPD_TEMPLATE,
  );
}

/** country_code of an existing hostapd.conf (the installer's choice), if it has a valid one. */
export function countryFromHostapdConf(content: string | Buffer | null | undefined): string | undefined {
  if (!content) return undefined;
  const m = /^country_code=([A-Z]{2})$/m.exec(content.toString('utf8'));
  return m?.[1];
}

// ---------------------------------------------------------------------------------------------------------
// systemd-networkd .network

/** networkd's [DHCPServer] pool, from the inclusive range start..end. PoolOffset counts from the network
 * address of the /24, so it is the start's host number, and PoolSize = end - start + 1 (10.0.0.10–10.0.0.50
 * → PoolOffset=10, PoolSize=41). The schema guarantees start ≤ end, both in the /24, and ap_ip outside. */
export function poolOf(cfg: Pick<NetworkConfig, 'dhcp_range_start' | 'dhcp_range_end'>): {
  offset: number;
  size: number;
} {
  const start = parseIpv4(cfg.dhcp_range_start);
  const end = parseIpv4(cfg.dhcp_range_end);
  if (!start || !end) throw new TemplateError('DHCP range is not a pair of IPv4 addresses');
  const offset = start[3];
  const size = end[3] - start[3] + 1;
  if (offset < 1 || size < 1 || offset + size > 255)
    throw new TemplateError('DHCP range does not fit its /24');
  return { offset, size };
}

export function networkVars(cfg: NetworkConfig): TemplateVars {
  const pool = poolOf(cfg);
  return {
    interface: cfg.interface,
    ap_ip: cfg.ap_ip,
    prefix_length: 24,
    pool_offset: pool.offset,
    pool_size: pool.size,
  };
}

export async function renderNetworkFile(templatesDir: string, cfg: NetworkConfig): Promise<string> {
  return renderTemplate(
    await readTemplate(templatesDir, NETWORK_TEMPLATE),
    networkVars(cfg),
    NETWORK_TEMPLATE,
  );
}
