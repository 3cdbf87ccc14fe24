// systemd's file-descriptor store (FileDescriptorStoreMax= in the unit): each accepted socket connection's
// descriptor is handed to systemd (FDSTORE=1, FDNAME=…), which keeps a copy while the daemon restarts,
// crashes or is upgraded, and passes it to the next instance with the listening socket ($LISTEN_FDS,
// $LISTEN_FDNAMES). A closed connection is taken out again (FDSTOREREMOVE=1). systemd also drops a stored
// descriptor by itself when the peer hangs up.
//
// The `sd-notify` module cannot attach descriptors to a message; native/notify wraps libsystemd's
// sd_pid_notify_with_fds (SCM_RIGHTS on the notify datagram).
import { createRequire } from 'node:module';
import { errText, log } from '../log/journal.js';
import type { SocketServerOptions } from './socket-server.js';

/** Stored connections are named `conn-<instance>-<n>[-new|-sub]`: `-new` until its first request (the
 * next instance still holds it to the first-line deadline), `-sub` while subscribed to events. Renamed
 * when that changes, so a crash keeps it too. The socket unit's own descriptor has another name (its
 * unit's, by default). */
export const CONN_PREFIX = 'conn-';
export const SUBSCRIBED_SUFFIX = '-sub';
export const NEW_SUFFIX = '-new';

/** A stored connection's name for its state. */
export function storeName(base: string, requested: boolean, subscribed: boolean): string {
  if (!requested) return `${base}${NEW_SUFFIX}`;
  return subscribed ? `${base}${SUBSCRIBED_SUFFIX}` : base;
}

/** The name without its state suffix. */
export function storeBase(name: string): string {
  for (const suffix of [NEW_SUFFIX, SUBSCRIBED_SUFFIX])
    if (name.endsWith(suffix)) return name.slice(0, -suffix.length);
  return name;
}

export interface FdStore {
  /** Hands a copy of `fd` to systemd under `name`; false when systemd refused or could not be told. */
  store(name: string, fd: number): boolean;
  /** Closes systemd's copy of the descriptor stored under `name`. */
  remove(name: string): void;
}

type NotifyFn = (state: string, fds?: number[]) => number;

/** The store, when systemd supervises us ($NOTIFY_SOCKET) and the addon loads; undefined otherwise (the
 * daemon then works as before: its connections end with it). */
export function openFdStore(env: NodeJS.ProcessEnv = process.env): FdStore | undefined {
  if (!env.NOTIFY_SOCKET) return undefined;
  let notify: NotifyFn;
  try {
    notify = (createRequire(import.meta.url)('openauto-notify') as { notify: NotifyFn }).notify;
  } catch (err) {
    log.warning('the notify addon cannot be loaded: socket connections will not survive a restart', {
      ERROR: errText(err),
    });
    return undefined;
  }
  let warned = false;
  const send = (what: string, state: string, fds?: number[]): boolean => {
    let r: number;
    try {
      r = notify(state, fds);
    } catch (err) {
      r = -1;
      log.warning(`fd store: ${what} failed`, { ERROR: errText(err) });
    }
    if (r > 0) return true;
    if (!warned) {
      // Once: a store that does not work fails the same way for every connection.
      warned = true;
      log.warning(`fd store: ${what} failed; connections may not survive a restart`, { RESULT: r });
    }
    return false;
  };
  return {
    store: (name, fd) => send('storing a connection', `FDSTORE=1\nFDNAME=${name}`, [fd]),
    remove: (name) => void send('removing a connection', `FDSTOREREMOVE=1\nFDNAME=${name}`),
  };
}

/** A connection a previous instance stored, passed to us by systemd. */
export interface StoredConnection {
  fd: number;
  name: string;
}

export interface PassedFds {
  /** The socket unit's listening socket. */
  listen: number | undefined;
  /** Connections from the fd store. */
  connections: StoredConnection[];
}

/**
 * The descriptors systemd passed (sd_listen_fds_with_names(3), environment unset): the listening socket
 * and the stored connections, told apart by name. LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES are removed
 * from the environment in every case, so children never see them.
 */
export function passedFdsFromEnv(env: NodeJS.ProcessEnv = process.env, pid: number = process.pid): PassedFds {
  const listenPid = env.LISTEN_PID;
  const listenFds = env.LISTEN_FDS;
  const names = (env.LISTEN_FDNAMES ?? '').split(':');
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  const none: PassedFds = { listen: undefined, connections: [] };
  if (listenPid === undefined || listenFds === undefined) return none;
  if (!/^\d+$/.test(listenPid) || Number(listenPid) !== pid) return none;
  if (!/^\d+$/.test(listenFds)) return none;
  const n = Number(listenFds);
  if (n < 1 || n > 1024) return none;
  const out: PassedFds = { listen: undefined, connections: [] };
  for (let i = 0; i < n; i++) {
    const fd = 3 + i;
    const name = names[i] ?? '';
    if (name.startsWith(CONN_PREFIX)) out.connections.push({ fd, name });
    else if (out.listen === undefined) out.listen = fd;
  }
  return out;
}

/** What systemd hands the socket server: the socket unit's listening socket (when there is one), the fd
 * store, and the connections a previous instance left in it. */
export function socketFromSystemd(
  env: NodeJS.ProcessEnv = process.env,
): Pick<SocketServerOptions, 'listenFd' | 'fdStore' | 'adopt'> {
  const passed = passedFdsFromEnv(env);
  const store = openFdStore(env);
  return {
    ...(passed.listen !== undefined ? { listenFd: passed.listen } : {}),
    ...(store ? { fdStore: store } : {}),
    adopt: passed.connections,
  };
}
