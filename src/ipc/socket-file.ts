// Putting a listening Unix socket at a path safely, and the systemd socket-activation handshake.
//
// Binding: the socket is bound inside a fresh private directory (mode 0700) next to the target, given its
// group and mode there, and only then hard-linked to the target path. So nobody can ever connect to it with
// the wrong permissions, and link(2) never replaces anything. If the target exists, it is removed only when
// it is a socket and nobody answers a connect on it (a stale leftover of a daemon that died); a live socket
// or anything that is not a socket is left alone and start fails.
import { chmod, chown, link, lstat, mkdtemp, readFile, rm, rmdir, unlink } from 'node:fs/promises';
import net from 'node:net';
import { basename, dirname, join } from 'node:path';
import { errText, log } from '../log/journal.js';

/** Linux sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

/** Why a socket path could not be taken; `code` is EADDRINUSE (live socket), EEXIST (not a socket) or
 * ENAMETOOLONG. */
export class SocketPathError extends Error {
  constructor(
    readonly code: 'EADDRINUSE' | 'EEXIST' | 'ENAMETOOLONG',
    message: string,
  ) {
    super(message);
    this.name = 'SocketPathError';
  }
}

/** What start() bound, so close() removes the path only while it is still this socket. */
export interface BoundPath {
  path: string;
  dev: number;
  ino: number;
}

/**
 * The gid of a group by name, read from a group(5) file (no child process, no NSS). Undefined when the file
 * has no such group or cannot be read.
 */
export async function resolveGroupId(name: string, groupFile = '/etc/group'): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(groupFile, 'utf8');
  } catch (err) {
    log.warning('cannot read the group file', { FILE: groupFile, ERROR: errText(err) });
    return undefined;
  }
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    if (fields.length < 3 || fields[0] !== name) continue;
    const gidText = fields[2] ?? '';
    if (!/^\d+$/.test(gidText)) continue;
    return Number(gidText);
  }
  return undefined;
}

function errno(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : undefined;
}

/** Resolves once `server` listens on `arg` (a path or an fd), rejects with the listen error. */
export function listenOn(server: net.Server, arg: string | { fd: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    if (typeof arg === 'string') server.listen(arg);
    else server.listen(arg);
  });
}

/** True when something accepts a connection on the socket at `path` within `timeoutMs`. Only a refused
 * connection counts as "nobody there"; a timeout or any other error counts as alive, to be safe. */
export function socketAnswers(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(path);
    const done = (alive: boolean) => {
      clearTimeout(timer);
      c.destroy();
      resolve(alive);
    };
    const timer = setTimeout(() => done(true), timeoutMs);
    c.once('connect', () => done(true));
    c.once('error', (err) => {
      const code = errno(err);
      done(!(code === 'ECONNREFUSED' || code === 'ENOENT'));
    });
  });
}

/** Removes `path` if it is a stale socket; throws SocketPathError if it is live or not a socket. */
async function removeStale(path: string): Promise<void> {
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(path);
  } catch (err) {
    if (errno(err) === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) {
    throw new SocketPathError('EEXIST', `refusing to replace ${path}: it exists and is not a socket`);
  }
  if (await socketAnswers(path)) {
    throw new SocketPathError('EADDRINUSE', `${path} is in use: another process answers on it`);
  }
  // Unlink only the very file that was probed.
  const again = await lstat(path).catch(() => undefined);
  if (again === undefined || again.ino !== st.ino || again.dev !== st.dev) return;
  await unlink(path).catch((err: unknown) => {
    if (errno(err) !== 'ENOENT') throw err;
  });
  log.notice('removed a stale socket left by an earlier run', { PATH: path });
}

async function setOwnership(path: string, mode: number, gid: number | undefined): Promise<void> {
  if (gid !== undefined) {
    try {
      await chown(path, -1, gid);
    } catch (err) {
      log.warning('cannot give the socket its group', { PATH: path, GID: gid, ERROR: errText(err) });
    }
  }
  await chmod(path, mode);
}

/**
 * Binds `server` at `path` with the given mode and group. Throws SocketPathError when the path is taken
 * by a live socket or by something that is not a socket.
 */
export async function bindPath(
  server: net.Server,
  path: string,
  mode: number,
  gid: number | undefined,
): Promise<BoundPath> {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new SocketPathError('ENAMETOOLONG', `socket path is longer than ${MAX_SOCKET_PATH_BYTES} bytes`);
  }
  const dir = dirname(path);
  const privateDir = await mkdtemp(join(dir, `.${basename(path).slice(0, 8)}.`));
  const tmp = join(privateDir, 's');
  if (Buffer.byteLength(tmp) > MAX_SOCKET_PATH_BYTES) {
    await rmdir(privateDir).catch(() => {});
    return bindDirect(server, path, mode, gid);
  }
  try {
    await listenOn(server, tmp);
    try {
      await setOwnership(tmp, mode, gid);
      await placeLink(tmp, path);
    } catch (err) {
      server.close();
      throw err;
    }
  } finally {
    await rm(tmp, { force: true });
    await rmdir(privateDir).catch(() => {});
  }
  const st = await lstat(path);
  return { path, dev: st.dev, ino: st.ino };
}

async function placeLink(tmp: string, path: string): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await link(tmp, path);
      return;
    } catch (err) {
      if (errno(err) !== 'EEXIST') throw err;
    }
    await removeStale(path);
  }
  throw new SocketPathError('EADDRINUSE', `${path} keeps being recreated by someone else`);
}

/** Fallback when the private directory's path would be too long for sun_path: bind the target itself, then
 * set group and mode (briefly the socket has the umask's mode; with the usual 022 only root can connect). */
async function bindDirect(
  server: net.Server,
  path: string,
  mode: number,
  gid: number | undefined,
): Promise<BoundPath> {
  await removeStale(path);
  try {
    await listenOn(server, path);
  } catch (err) {
    if (errno(err) !== 'EADDRINUSE') throw err;
    await removeStale(path);
    await listenOn(server, path);
  }
  try {
    await setOwnership(path, mode, gid);
  } catch (err) {
    server.close();
    throw err;
  }
  const st = await lstat(path);
  return { path, dev: st.dev, ino: st.ino };
}

/** Removes the socket file at bound.path if it is still the one we bound (a successor may own it now). */
export async function unlinkIfOurs(bound: BoundPath): Promise<void> {
  const st = await lstat(bound.path).catch(() => undefined);
  if (st === undefined || st.ino !== bound.ino || st.dev !== bound.dev) return;
  await unlink(bound.path).catch(() => {});
}

/**
 * The file descriptors systemd passed for socket activation (sd_listen_fds(3) with unset_environment=1):
 * [3, 4, …] when LISTEN_PID is this process and LISTEN_FDS is a positive count, else []. LISTEN_PID,
 * LISTEN_FDS and LISTEN_FDNAMES are removed from the environment in every case, so children never see them.
 */
export function listenFdsFromEnv(env: NodeJS.ProcessEnv = process.env, pid: number = process.pid): number[] {
  const listenPid = env.LISTEN_PID;
  const listenFds = env.LISTEN_FDS;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (listenPid === undefined || listenFds === undefined) return [];
  if (!/^\d+$/.test(listenPid) || Number(listenPid) !== pid) return [];
  if (!/^\d+$/.test(listenFds)) return [];
  const n = Number(listenFds);
  if (n < 1 || n > 64) return [];
  return Array.from({ length: n }, (_, i) => 3 + i);
}
