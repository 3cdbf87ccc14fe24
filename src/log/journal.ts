// Structured logging. In production every entry goes to journald with its own fields
// (`journalctl -t openauto-system SERVICE=hostapd`); without a journald socket, or when the native module is
// unavailable, readable lines go to stderr with sd-daemon `<N>` priority prefixes, which journald also parses
// when stderr happens to be a journal stream.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';

export const IDENTIFIER = 'openauto-system';

/** Field names are upper-cased journal fields: SERVICE, UNIT, SECTION, ERROR_CODE, ... */
export type Fields = Record<string, string | number | boolean | undefined>;

type Level = 'err' | 'warning' | 'notice' | 'info' | 'debug';
const PRIORITY: Record<Level, number> = { err: 3, warning: 4, notice: 5, info: 6, debug: 7 };

interface Sink {
  write(level: Level, message: string, fields: Fields): void;
}

interface JournaldInstance {
  err(m: string, f: Record<string, string>): void;
  warning(m: string, f: Record<string, string>): void;
  notice(m: string, f: Record<string, string>): void;
  info(m: string, f: Record<string, string>): void;
  debug(m: string, f: Record<string, string>): void;
}

function cleanFields(fields: Fields): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (v === undefined) continue;
    out[k.toUpperCase()] = String(v);
  }
  return out;
}

function journaldSink(): Sink | undefined {
  if (process.env.OPENAUTO_LOG_STDERR === '1') return undefined;
  if (!existsSync('/run/systemd/journal/socket')) return undefined;
  try {
    const require = createRequire(import.meta.url);
    const Journald = require('systemd-journald') as new (
      defaults: Record<string, string>,
    ) => JournaldInstance;
    const j = new Journald({ syslog_identifier: IDENTIFIER });
    return { write: (level, message, fields) => j[level](message, cleanFields(fields)) };
  } catch {
    return undefined;
  }
}

// A value containing a newline would split a stderr line; quote such values as JSON.
function formatValue(v: string): string {
  return /[\s"=]/.test(v) || v === '' ? JSON.stringify(v) : v;
}

const stderrSink: Sink = {
  write(level, message, fields) {
    const f = cleanFields(fields);
    const tail = Object.entries(f)
      .map(([k, v]) => `${k}=${formatValue(v)}`)
      .join(' ');
    const oneLine = message.replace(/\n/g, '\\n');
    process.stderr.write(`<${PRIORITY[level]}>${oneLine}${tail ? ` ${tail}` : ''}\n`);
  },
};

let sink: Sink | undefined;
function current(): Sink {
  sink ??= journaldSink() ?? stderrSink;
  return sink;
}

let debugEnabled = process.env.OPENAUTO_DEBUG === '1';
export function setDebug(on: boolean): void {
  debugEnabled = on;
}

export const log = {
  err: (message: string, fields: Fields = {}) => current().write('err', message, fields),
  warning: (message: string, fields: Fields = {}) => current().write('warning', message, fields),
  notice: (message: string, fields: Fields = {}) => current().write('notice', message, fields),
  info: (message: string, fields: Fields = {}) => current().write('info', message, fields),
  debug: (message: string, fields: Fields = {}) => {
    if (debugEnabled) current().write('debug', message, fields);
  },
};

/** The message of an unknown thrown value, for the journal only (never for a caller). */
export function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
