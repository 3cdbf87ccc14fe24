// The legacy socket's NDJSON protocol: one request line in, one response line out. This module only
// translates between lines and SystemService calls; every decision about health, config or services is the
// service layer's.
//
// Requests:  {"id": <any JSON>, "method": "<name>", "params": {…}}   (params may be omitted when empty)
// Responses: {"id": <the request's id, byte for byte>, "result": …}
//            {"id": …, "error": {"code": "<CODE>", "message": "…"}}
// Events:    {"event": "health_changed", "params": {<health map>}}   (after `subscribe`)
//
// Methods and results: get_health → the health map; get_status → the GetStatus dump; apply_config
// {section} → {"ok":true,"changed":…,"restarted":[…]}; restart_service {name} → {"ok":true,"name":<the name
// as sent>}; ping → "pong"; subscribe → {"ok":true,"health":{<current map>}} and health_changed events from
// then on (and proxy_changed events with the proxy status); unsubscribe → {"ok":true}; set_proxy_route
// {active, host, port, user, password, skip_interfaces?, skip_networks?} and get_proxy_status {verify?} → the
// proxy status with "ok" (a refused request too, with ok false and the reason in "error"). Unknown members of a request or of params are ignored.
//
// The id is copied from the request text verbatim (so `1e999`, `123456789012345678901234567890` or a deeply
// nested array come back exactly as sent). A request without an id, or a line that cannot be read as a JSON
// object, is answered with `"id":null`.
import { isUtf8 } from 'node:buffer';
import { type ErrorCode, ServiceError, SOCKET_ERROR_CODES, toServiceError } from '../errors.js';
import type { HealthMap } from '../health/states.js';
import { errText, log } from '../log/journal.js';
import type { ProxyStatus } from '../proxy/state.js';
import type { Caller, Json, SystemService } from '../service.js';

/** Every error code the socket can answer with, as the contract lists them. */
export const SOCKET_CODES = [
  'PARSE_ERROR',
  'INVALID_REQUEST',
  'UNKNOWN_METHOD',
  'INVALID_PARAMS',
  'UNKNOWN_SECTION',
  'VALIDATION_FAILED',
  'CONFIG_UNREADABLE',
  'UNKNOWN_SERVICE',
  'RESTART_FAILED',
  'LINE_TOO_LONG',
  'INTERNAL_ERROR',
] as const;
export type SocketCode = (typeof SOCKET_CODES)[number];

/** The methods the socket understands. */
export const METHODS = [
  'get_health',
  'get_status',
  'apply_config',
  'restart_service',
  'ping',
  'subscribe',
  'unsubscribe',
  'set_proxy_route',
  'get_proxy_status',
] as const;
export type Method = (typeof METHODS)[number];

/** Per-connection state a request may change. */
export interface Session {
  subscribed: boolean;
}

/** A response line (without its newline), or one that arrives later for slow methods. The promise never
 * rejects: failures become error lines. */
export type Outcome = string | Promise<string>;

const SOCKET_CALLER: Caller = { kind: 'socket' };
const NULL_ID = 'null';

export function resultLine(rawId: string, result: unknown): string {
  return `{"id":${rawId},"result":${JSON.stringify(result)}}`;
}

export function errorLine(rawId: string, code: SocketCode, message: string): string {
  return `{"id":${rawId},"error":${JSON.stringify({ code, message })}}`;
}

export function eventLine(event: string, params: unknown): string {
  return `{"event":${JSON.stringify(event)},"params":${JSON.stringify(params)}}`;
}

export function healthChangedLine(health: HealthMap): string {
  return eventLine('health_changed', health);
}

export function proxyChangedLine(status: ProxyStatus): string {
  return eventLine('proxy_changed', status);
}

const METHOD_LIST = METHODS.join(', ');
const methodSet: ReadonlySet<string> = new Set(METHODS);

/** True for a line with nothing but JSON whitespace in it (such lines are skipped, not answered). */
export function isBlank(line: Buffer): boolean {
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (c !== 0x20 && c !== 0x09 && c !== 0x0d && c !== 0x0a) return false;
  }
  return true;
}

/**
 * Answers one request line (the bytes between two newlines, without them). Synchronous methods answer with a
 * string at once; apply_config and restart_service answer with a promise.
 */
export function handleLine(line: Buffer, service: SystemService, session: Session): Outcome {
  const method = quickMethod(line);
  if (method !== undefined) {
    if (!methodSet.has(method)) {
      return errorLine(quickId, 'UNKNOWN_METHOD', `unknown method; the methods are ${METHOD_LIST}`);
    }
    return dispatch(method as Method, quickId, {}, service, session);
  }
  return handleParsedLine(line, service, session);
}

/** handleLine for every line: read with JSON.parse. Exported for the test that compares the two ways. */
export function handleParsedLine(line: Buffer, service: SystemService, session: Session): Outcome {
  if (!isUtf8(line)) return errorLine(NULL_ID, 'PARSE_ERROR', 'request is not valid UTF-8');
  const text = line.toString('utf8');
  let request: unknown;
  try {
    request = JSON.parse(text);
  } catch {
    return errorLine(NULL_ID, 'PARSE_ERROR', 'request is not valid JSON');
  }
  if (typeof request !== 'object' || request === null || Array.isArray(request)) {
    return errorLine(NULL_ID, 'INVALID_REQUEST', 'request must be a JSON object');
  }
  const req = request as Record<string, unknown>;
  const rawId = Object.hasOwn(req, 'id') ? (rawMember(text, 'id') ?? NULL_ID) : NULL_ID;
  const method = req.method;
  if (typeof method !== 'string') {
    return errorLine(rawId, 'INVALID_REQUEST', 'method must be a string');
  }
  if (!methodSet.has(method)) {
    return errorLine(rawId, 'UNKNOWN_METHOD', `unknown method; the methods are ${METHOD_LIST}`);
  }
  const params = req.params;
  if (params !== undefined && params !== null && (typeof params !== 'object' || Array.isArray(params))) {
    return errorLine(rawId, 'INVALID_PARAMS', 'params must be an object');
  }
  const p = (params ?? {}) as Record<string, unknown>;
  return dispatch(method as Method, rawId, p, service, session);
}

function dispatch(
  method: Method,
  rawId: string,
  p: Record<string, unknown>,
  service: SystemService,
  session: Session,
): Outcome {
  switch (method) {
    case 'ping':
      return resultLine(rawId, 'pong');
    case 'get_health':
      return service.healthJson
        ? syncText(rawId, method, () => (service.healthJson as () => string)())
        : syncCall(rawId, method, () => service.getHealth());
    case 'get_status':
      return service.statusJson
        ? syncText(rawId, method, () => (service.statusJson as () => string)())
        : syncCall(rawId, method, () => service.getStatus());
    case 'subscribe':
      return syncCall(rawId, method, () => {
        const health = service.getHealth();
        session.subscribed = true;
        return { ok: true, health };
      });
    case 'unsubscribe':
      session.subscribed = false;
      return resultLine(rawId, { ok: true });
    case 'apply_config': {
      const section = p.section;
      if (typeof section !== 'string') {
        return errorLine(rawId, 'INVALID_PARAMS', 'params.section must be a string');
      }
      return asyncCall(rawId, method, async () => {
        const r = await service.applyConfig(section, SOCKET_CALLER);
        return { ok: true, changed: r.changed, restarted: r.restarted };
      });
    }
    case 'set_proxy_route':
      // The shipping client reads only result.state and result.error (an error object would leave its state
      // unchanged), so a refused request is a result too: ok false, the route's state as it stays, the reason.
      return asyncCall(rawId, method, async () => {
        if (!service.setProxyRoute)
          throw new ServiceError('InvalidArgs', 'the proxy route is not managed here');
        try {
          return await service.setProxyRoute(p, SOCKET_CALLER);
        } catch (err) {
          const se = toServiceError(err);
          if (se !== err) throw err;
          log.debug('set_proxy_route refused', { METHOD: method, ERROR_CODE: se.code });
          const now = service.proxyStatus?.();
          return {
            ...(now ?? { state: 'disabled', checks: { listener: false, iptables: false, upstream: false } }),
            ok: false,
            error_code: se.code === 'InvalidArgs' ? 'invalid_params' : 'refused',
            error: se.message,
            live_check: false,
          };
        }
      });
    case 'get_proxy_status': {
      const verify = p.verify ?? false;
      if (typeof verify !== 'boolean') {
        return errorLine(rawId, 'INVALID_PARAMS', 'params.verify must be true or false');
      }
      return asyncCall(rawId, method, async () => {
        if (!service.getProxyStatus)
          throw new ServiceError('InvalidArgs', 'the proxy route is not managed here');
        return service.getProxyStatus(verify);
      });
    }
    case 'restart_service': {
      const name = p.name;
      if (typeof name !== 'string') {
        return errorLine(rawId, 'INVALID_PARAMS', 'params.name must be a string');
      }
      return asyncCall(rawId, method, async () => {
        await service.restartService(name, SOCKET_CALLER);
        // The shipping client reads result.name: it gets back the name it sent (an alias stays an alias).
        return { ok: true, name };
      });
    }
  }
}

function syncCall(rawId: string, method: Method, fn: () => unknown): string {
  try {
    return resultLine(rawId, fn() as Json);
  } catch (err) {
    return failureLine(rawId, method, err);
  }
}

/** syncCall for a result the service already holds as JSON text. */
function syncText(rawId: string, method: Method, fn: () => string): string {
  try {
    return `{"id":${rawId},"result":${fn()}}`;
  } catch (err) {
    return failureLine(rawId, method, err);
  }
}

async function asyncCall(rawId: string, method: Method, fn: () => Promise<unknown>): Promise<string> {
  try {
    return resultLine(rawId, await fn());
  } catch (err) {
    return failureLine(rawId, method, err);
  }
}

/** Errors that only say the caller asked for something wrong: not worth more than a debug entry. */
const CALLER_MISTAKES: ReadonlySet<ErrorCode> = new Set([
  'InvalidArgs',
  'InvalidConfig',
  'UnknownSection',
  'UnknownService',
]);

/** Maps whatever a service call threw to a contract error line; only ServiceError messages reach callers. */
function failureLine(rawId: string, method: Method, err: unknown): string {
  const se = toServiceError(err);
  const code = SOCKET_ERROR_CODES[se.code] as SocketCode;
  if (se !== err) {
    log.err('socket request failed unexpectedly', { METHOD: method, ERROR: errText(err) });
  } else if (CALLER_MISTAKES.has(se.code)) {
    log.debug('socket request refused', { METHOD: method, ERROR_CODE: code });
  } else {
    log.notice('socket request failed', { METHOD: method, ERROR_CODE: code });
  }
  return errorLine(rawId, code, se.message);
}

// ---------------------------------------------------------------------------------------------------------
// The common request read without JSON.parse: what the shipping client sends, {"id":ID,"method":"NAME"} with
// no params and no spaces, where ID is an integer or a string of printable ASCII without escapes. Such a line
// means exactly what JSON.parse makes of it (an object with those two members; the id's text is rawMember's),
// so the answer is the same either way (test/unit/ipc-protocol.test.ts compares the two on random lines);
// any other line, a byte out of place included, is read the general way. Under --jitless this skips the
// parse, the object, the id scan and the UTF-8 check: 0.83 instead of 2.0 µs per get_health on the
// development machine.

/** The common form: an integer as JSON writes one, or a string of printable ASCII but '"' and '\\'. */
const COMMON_REQUEST = /^\{"id":(-?(?:0|[1-9][0-9]*)|"[ !#-[\]-~]*"),"method":"([a-z_]+)"\}$/;
/** The id's text of the line quickMethod last recognized. */
let quickId = NULL_ID;

/** The method of a line in the common form (its id's text in quickId), or undefined. Read as latin1: a byte
 * past ASCII cannot match, so such a line goes the general way, with its UTF-8 check. (A regular expression:
 * V8 runs it natively where a byte loop would run in the interpreter.) */
function quickMethod(b: Buffer): string | undefined {
  if (b.length > 256) return undefined;
  const m = COMMON_REQUEST.exec(b.toString('latin1'));
  if (m === null) return undefined;
  quickId = m[1] as string;
  return m[2] as string;
}

// ---------------------------------------------------------------------------------------------------------
// The raw text of a top-level member, so ids are echoed exactly as sent. Only called on text JSON.parse has
// already accepted as an object, so the scanner may assume well-formed input; it never recurses.

function skipWs(t: string, i: number): number {
  for (;;) {
    const c = t.charCodeAt(i);
    if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
    else return i;
  }
}

/** i is at an opening quote; returns the index just after the closing quote. */
function skipString(t: string, i: number): number {
  let j = i + 1;
  for (;;) {
    const q = t.indexOf('"', j);
    if (q === -1) return t.length; // cannot happen on valid JSON
    let backslashes = 0;
    for (let k = q - 1; k > i && t.charCodeAt(k) === 0x5c; k--) backslashes++;
    if (backslashes % 2 === 0) return q + 1;
    j = q + 1;
  }
}

/** i is at the first character of a value; returns the index just after it. */
function skipValue(t: string, i: number): number {
  const c = t.charCodeAt(i);
  if (c === 0x22) return skipString(t, i);
  if (c === 0x7b || c === 0x5b) {
    let depth = 0;
    let j = i;
    while (j < t.length) {
      const d = t.charCodeAt(j);
      if (d === 0x22) {
        j = skipString(t, j);
        continue;
      }
      if (d === 0x7b || d === 0x5b) depth++;
      else if (d === 0x7d || d === 0x5d) {
        depth--;
        if (depth === 0) return j + 1;
      }
      j++;
    }
    return j;
  }
  // number, true, false, null: up to the next delimiter
  let j = i;
  while (j < t.length) {
    const d = t.charCodeAt(j);
    if (d === 0x2c || d === 0x7d || d === 0x5d || d === 0x20 || d === 0x09 || d === 0x0a || d === 0x0d) break;
    j++;
  }
  return j;
}

/**
 * The source text of the last top-level member named `key` of the JSON object in `t` (the last one, as
 * JSON.parse keeps the last of duplicate keys), or undefined. `t` must be text JSON.parse accepts.
 */
export function rawMember(t: string, key: string): string | undefined {
  let i = skipWs(t, 0);
  if (t.charCodeAt(i) !== 0x7b) return undefined;
  i = skipWs(t, i + 1);
  if (t.charCodeAt(i) === 0x7d) return undefined;
  let found: string | undefined;
  for (;;) {
    const keyEnd = skipString(t, i);
    const keyText = t.slice(i + 1, keyEnd - 1);
    const name = keyText.includes('\\') ? (JSON.parse(t.slice(i, keyEnd)) as string) : keyText;
    i = skipWs(t, keyEnd); // at ':'
    i = skipWs(t, i + 1);
    const valueEnd = skipValue(t, i);
    if (name === key) found = t.slice(i, valueEnd);
    i = skipWs(t, valueEnd);
    if (t.charCodeAt(i) !== 0x2c) return found; // '}' (or the end)
    i = skipWs(t, i + 1);
  }
}
