// Who is at the other end of a socket connection: the peer's pid, from the kernel (SO_PEERCRED, recorded
// when the peer called connect(), so the peer cannot forge it). Node has no getsockopt; the `sockopt` addon
// reads int-sized options, and Linux copies a shortened struct ucred, whose first field is the pid.
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { errText, log } from '../log/journal.js';

const SOL_SOCKET = 1;
const SO_PEERCRED = 17;

type GetSockOpt = (socket: unknown, level: number, name: number) => number;

let getsockopt: GetSockOpt | undefined;
let warned = false;
try {
  // A native addon, loaded from node_modules at run time (left out of the bundle).
  getsockopt = (createRequire(import.meta.url)('sockopt') as { getsockopt: GetSockOpt }).getsockopt;
} catch (err) {
  getsockopt = undefined;
  log.warning('peer credentials are not available: socket clients cannot be told apart', {
    error: errText(err),
  });
  warned = true;
}

/** The pid of the process that connected `socket`, or undefined when it cannot be read. */
export function peerPid(socket: Socket): number | undefined {
  if (!getsockopt) return undefined;
  try {
    const pid = getsockopt(socket, SOL_SOCKET, SO_PEERCRED);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch (err) {
    if (!warned) {
      log.warning('reading a socket peer credential failed', { error: errText(err) });
      warned = true;
    }
    return undefined;
  }
}
