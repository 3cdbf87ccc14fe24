// The service layer: what the daemon can do, independent of how a caller reaches it.
// Both faces (D-Bus in bus/, the NDJSON socket in ipc/) reach every action through this interface; a face
// keeps only its wire: argument shapes, its error names, and the admission limits of its callers.
import type { EventEmitter } from 'node:events';
import type { HealthMap } from './health/states.js';
import type { ProxyStatus } from './proxy/state.js';

/** Who is asking. D-Bus callers are authorized through polkit by unique name; socket callers were
 * already admitted by the kernel (socket mode 0660, group openauto). */
export type Caller =
  | { kind: 'dbus'; sender: string; interactive: boolean }
  | { kind: 'socket' }
  | { kind: 'internal' };

export interface ApplyResult {
  changed: boolean;
  restarted: string[];
}

/** The proxy route's status as an answer: `ok` false when a request was refused or the route failed. */
export type ProxyReply = ProxyStatus & { ok: boolean };

/** A JSON-shaped value, the GetStatus dump is built of these (D-Bus turns it into a{sv}). */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

export interface SystemService extends EventEmitter {
  getHealth(): HealthMap;
  /** getHealth() as JSON text, where the service keeps it made once per change (the socket sends it as is). */
  healthJson?(): string;
  getStatus(): { [key: string]: Json };
  /** getStatus() as JSON text, made once per change (the socket's get_status, D-Bus GetStatus's cache key). */
  statusJson?(): string;
  /** Throws ServiceError. */
  applyConfig(section: string, caller: Caller): Promise<ApplyResult>;
  /** Throws ServiceError. Resolves once the unit's restart job finished and it is active. */
  restartService(name: string, caller: Caller): Promise<void>;
  /** Throws ServiceError. Incoming connections of the profile go to `handler` on the caller's connection. */
  claimProfile(uuid: string, handler: string, caller: Caller): Promise<void>;
  /** Throws ServiceError for an unknown profile; releasing a claim the caller does not hold changes nothing. */
  releaseProfile(uuid: string, caller: Caller): Promise<void>;
  // Emits 'healthChanged' (health: HealthMap) whenever any service's state changes.
  /** The proxy route (absent where it is not managed). Throws ServiceError('InvalidArgs') for a refused
   * request (naming the field), AccessDenied; a route that failed to come up resolves with ok false. */
  setProxyRoute?(params: unknown, caller: Caller): Promise<ProxyReply>;
  /** verify: run the checks now. */
  getProxyStatus?(verify: boolean): Promise<ProxyReply>;
  proxyStatus?(): ProxyStatus;
  // Emits 'proxyChanged' (status: ProxyStatus) when the proxy route's state or error changes.
}
