// Reading config.yaml. The daemon runs as root and the file lives in the app user's home, so the file is
// treated as hostile: a symlink is not followed (it could point at /etc/shadow), nor one of the user's on the
// way to it, and the file is read from the descriptor the walk opened (safe-path.ts); only a regular file of
// bounded size is read, YAML aliases are capped (no "billion
// laughs"), and no message ever quotes the file's content or its path (a parse error says where, never what).
import { Alias, type Document, isMap, isScalar, isSeq, type Node, type YAMLMap } from 'yaml';
import { printable, ServiceError } from '../errors.js';
import { type OpenedFile, openSafely, UnsafePathError } from './safe-path.js';
import {
  type FieldNames,
  isSectionName,
  SECTION_NAMES,
  type SectionConfigs,
  type SectionName,
  type ValidationContext,
  validateSection,
} from './schema.js';
import { MAX_YAML_DEPTH, MAX_YAML_NODES, parseSliced, tooComplex } from './yaml-parse.js';

export const MAX_CONFIG_BYTES = 256 * 1024;
/** The app never writes aliases; a few are tolerated for hand-edited files. */
export const MAX_ALIASES = 16;

function unreadable(why: string): ServiceError {
  return new ServiceError('ConfigUnreadable', `the configuration file ${why}`);
}

const UNSAFE_REASONS: Record<UnsafePathError['reason'], string> = {
  'untrusted-link': 'is reached through a symbolic link not owned by root, which is not followed',
  'too-many-links': 'is reached through too many symbolic links',
  'untrusted-owner':
    "or a directory on the way is owned by another user (below the home, each must be the user's own, or root's and open to everyone)",
  symlink: 'is a symbolic link, which is not followed',
  'not-a-file': 'is not a regular file',
};

function fsCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? (err as NodeJS.ErrnoException).code : undefined;
}

function describeFsError(err: unknown): ServiceError {
  switch (fsCode(err)) {
    case 'ENOENT':
      return unreadable('does not exist');
    case 'ENOTDIR':
      return unreadable('does not exist (a parent is not a directory)');
    case 'EACCES':
    case 'EPERM':
      return unreadable('cannot be read (permission denied)');
    case 'ELOOP':
      return unreadable('is a symbolic link, which is not followed');
    case 'EISDIR':
      return unreadable('is not a regular file');
    default:
      return unreadable('cannot be read');
  }
}

/** Reads the file's bytes from the descriptor safe-path.ts opened (never by path again): a regular file of
 * the app user (or root's, open to all), reached without untrusted symlinks, at most MAX_CONFIG_BYTES. */
async function readBounded(file: string): Promise<Buffer> {
  let opened: OpenedFile;
  try {
    opened = await openSafely(file);
  } catch (err) {
    if (err instanceof UnsafePathError) throw unreadable(UNSAFE_REASONS[err.reason]);
    throw describeFsError(err);
  }
  const fh = opened.handle;
  try {
    if (opened.stat.size > MAX_CONFIG_BYTES) throw unreadable('is larger than 256 KiB');
    // Read one byte past the limit so a file growing after fstat is still caught.
    const buf = Buffer.alloc(MAX_CONFIG_BYTES + 1);
    let total = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, total, buf.length - total, total);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > MAX_CONFIG_BYTES) throw unreadable('is larger than 256 KiB');
    }
    return buf.subarray(0, total);
  } catch (err) {
    throw err instanceof ServiceError ? err : describeFsError(err);
  } finally {
    await fh.close();
  }
}

/** A parsed config.yaml. Values are looked up by path on the YAML node tree rather than on a converted JS
 * object, so a text field can be taken exactly as written: the app writes `password: 12345678` unquoted, which
 * YAML reads as a number, and `ssid: 007` would otherwise lose its zeros. */
export class ConfigFile {
  constructor(private readonly doc: Document) {}

  /** The node at `keys`: `undefined` when absent or null, a ServiceError-free walk that stops at non-maps. */
  private nodeAt(keys: readonly string[]): { node?: Node; notMapAt?: number } {
    let cur: unknown = this.doc.contents;
    for (let i = 0; i < keys.length; i++) {
      cur = this.deref(cur);
      if (cur === null || cur === undefined || (isScalar(cur) && cur.value === null)) return {};
      if (!isMap(cur)) return { notMapAt: i };
      cur = (cur as YAMLMap).get(keys[i] as string, true);
    }
    cur = this.deref(cur);
    if (cur === null || cur === undefined || (isScalar(cur) && cur.value === null)) return {};
    return { node: cur as Node };
  }

  private deref(n: unknown): unknown {
    // Aliases were already counted (MAX_ALIASES) when the file was read; resolving one is a plain lookup.
    return n instanceof Alias ? n.resolve(this.doc) : n;
  }

  /** Value at `keys`, or `undefined` when absent (a YAML null counts as absent, as `ssid:` with nothing after
   * it means "not set"). `asText` returns a scalar as its source text. Lists and mappings come back as an empty
   * array/object: their content is never needed, only the fact that they are not a scalar. When a key on the
   * way is not a mapping, `notMap` names the offending path. */
  get(keys: readonly string[], asText: boolean): { value?: unknown; notMap?: string } {
    const { node, notMapAt } = this.nodeAt(keys);
    if (notMapAt !== undefined) return { notMap: keys.slice(0, notMapAt).join('.') };
    if (node === undefined) return {};
    if (isScalar(node)) {
      const v = node.value;
      if (!asText || typeof v === 'string') return { value: v };
      return { value: node.source ?? String(v) };
    }
    if (isSeq(node)) return { value: [] };
    return { value: {} };
  }
}

/** Reads and parses config.yaml. Throws ServiceError('ConfigUnreadable') with a content-free message. */
export async function readConfig(file: string): Promise<ConfigFile> {
  const bytes = await readBounded(file);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw unreadable('is not valid UTF-8 text');
  }
  // Refused before the parser spends time on it (yaml-parse.ts); then parsed in slices.
  switch (tooComplex(text)) {
    case 'nodes':
      throw unreadable(`has more than ${MAX_YAML_NODES} YAML nodes, too many for a configuration file`);
    case 'depth':
      throw unreadable(`nests lists or mappings more than ${MAX_YAML_DEPTH} deep`);
  }
  const { doc, lineCounter } = await parseSliced(text);
  const first = doc.errors[0];
  if (first) {
    const { line, col } = lineCounter.linePos(first.pos[0]);
    throw unreadable(`is not valid YAML (${first.code} at line ${line}, column ${col})`);
  }
  try {
    // Only to enforce the alias budget; lookups use the node tree.
    doc.toJS({ maxAliasCount: MAX_ALIASES });
  } catch {
    throw unreadable(`uses too many YAML aliases (at most ${MAX_ALIASES})`);
  }
  const top = doc.contents;
  if (top !== null && !isMap(top) && !(isScalar(top) && top.value === null)) {
    throw new ServiceError('InvalidConfig', 'config.yaml: the top level must be a mapping of sections');
  }
  return new ConfigFile(doc);
}

// ---------------------------------------------------------------------------------------------------------
// Canonical keys and the shipping app's fallbacks

interface FieldSpec {
  /** Path of the canonical key. */
  key: readonly string[];
  /** Path the shipping app writes, read when the canonical key is absent. */
  fallback?: readonly string[];
  /** Scalars as written (text fields) rather than as YAML typed them. */
  text: boolean;
}

const WIFI_AP = ['connection', 'wifi_ap'] as const;

export const FIELDS: Record<SectionName, Record<string, FieldSpec>> = {
  wifi: {
    ssid: { key: ['wifi', 'ssid'], fallback: [...WIFI_AP, 'ssid'], text: true },
    password: { key: ['wifi', 'password'], fallback: [...WIFI_AP, 'password'], text: true },
    channel: { key: ['wifi', 'channel'], fallback: [...WIFI_AP, 'channel'], text: false },
    band: { key: ['wifi', 'band'], fallback: [...WIFI_AP, 'band'], text: true },
    interface: { key: ['wifi', 'interface'], fallback: [...WIFI_AP, 'interface'], text: true },
    country_code: { key: ['wifi', 'country_code'], text: true },
  },
  network: {
    ap_ip: { key: ['network', 'ap_ip'], text: true },
    dhcp_range_start: { key: ['network', 'dhcp_range_start'], text: true },
    dhcp_range_end: { key: ['network', 'dhcp_range_end'], text: true },
    // The .network file matches the AP interface, which is configured under wifi.
    interface: { key: ['wifi', 'interface'], fallback: [...WIFI_AP, 'interface'], text: true },
  },
  bluetooth: {
    name: { key: ['bluetooth', 'name'], fallback: ['connection', 'bt_name'], text: true },
    discoverable: {
      key: ['bluetooth', 'discoverable'],
      fallback: ['connection', 'bt_discoverable'],
      text: false,
    },
  },
  time: {
    timezone: { key: ['time', 'timezone'], text: true },
  },
};

export interface RawSection {
  /** Field → raw value; absent fields are left out so the schema applies its default. */
  values: Record<string, unknown>;
  /** Field → the name shown in messages when it differs from `<section>.<field>`. */
  names: FieldNames;
  /** Structural problems found while resolving (a section that is not a mapping). */
  problems: string[];
}

/** Resolves a section's raw values: canonical key first, else the shipping app's key. */
export function rawSection(cfg: ConfigFile, section: SectionName): RawSection {
  const values: Record<string, unknown> = {};
  const names: FieldNames = {};
  const problems = new Set<string>();
  for (const [field, spec] of Object.entries(FIELDS[section])) {
    const canonical = spec.key.join('.');
    const shownCanonical = canonical === `${section}.${field}` ? undefined : canonical;
    const main = cfg.get(spec.key, spec.text);
    if (main.notMap) problems.add(`${main.notMap}: must be a mapping of keys`);
    if (main.value !== undefined) {
      values[field] = main.value;
      if (shownCanonical) names[field] = shownCanonical;
      continue;
    }
    if (!spec.fallback) continue;
    const alt = cfg.get(spec.fallback, spec.text);
    if (alt.notMap) problems.add(`${alt.notMap}: must be a mapping of keys`);
    if (alt.value !== undefined) {
      values[field] = alt.value;
      names[field] = `${canonical} (from ${spec.fallback.join('.')})`;
    }
  }
  return { values, names, problems: [...problems] };
}

/** Throws ServiceError('UnknownSection') unless `name` is one of the four sections: the one check of a
 * caller's section name. */
export function checkSection(name: string): SectionName {
  if (isSectionName(name)) return name;
  const names = `${SECTION_NAMES.slice(0, -1).join(', ')} or ${SECTION_NAMES.at(-1)}`;
  throw new ServiceError('UnknownSection', `unknown section '${printable(name)}': use ${names}`);
}

/** Validates a resolved section; throws ServiceError('InvalidConfig') listing every problem, joined by '; '. */
export async function validateRaw<S extends SectionName>(
  section: S,
  raw: RawSection,
  ctx: ValidationContext = {},
): Promise<SectionConfigs[S]> {
  const r = await validateSection(section, raw.values, ctx, raw.names);
  const problems = [...raw.problems, ...(r.ok ? [] : r.problems)];
  if (problems.length > 0 || !r.ok) throw new ServiceError('InvalidConfig', problems.join('; '));
  return r.value;
}

/** Reads config.yaml and returns one validated section. */
export async function loadSection<S extends SectionName>(
  file: string,
  section: S,
  ctx: ValidationContext = {},
): Promise<SectionConfigs[S]> {
  const cfg = await readConfig(file);
  return validateRaw(section, rawSection(cfg, section), ctx);
}
