// Opening config.yaml without letting its owner point the daemon elsewhere. The file lives in the app user's
// home and the daemon reads it as root (with CAP_DAC_READ_SEARCH): if ~/.openauto (or any directory on the
// way) could be a symlink of the user's, the user could have root read a file they may not read themselves,
// and parts of it would land in hostapd.conf, which the openauto group can read.
//
// Checking a path and then opening it by name again is a race: the user swaps a directory for a symlink in
// between (renameat2 RENAME_EXCHANGE in a loop wins often). So nothing is ever looked up by path twice: every
// component is opened relative to its parent's descriptor with O_NOFOLLOW, and the file is read from the last
// descriptor. Node has no openat(); `/proc/self/fd/N/NAME` with N a directory descriptor resolves exactly
// like openat(N, NAME) (the magic link is the directory itself, not its name). systemd's chase() with
// CHASE_SAFE is the model:
//   - a symlink on the way is followed only when root owns it and the directory holding it (root-owned,
//     not writable by group or others), so nobody else can swap it between lstat and readlink; at most 32;
//   - the last component is never followed, and must be a regular file;
//   - below the first directory not owned by root (the home), every directory and the file must be owned
//     by that same user, or by root and open to everyone (o+x for a directory, o+r for the file): the
//     daemon reads nothing there that the user could not read anyway. Each directory is checked before
//     anything inside it is looked up, so a refusal never tells whether a path under it exists.
import { constants, type Stats } from 'node:fs';
import { type FileHandle, lstat, open, readlink } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';

const MAX_LINKS = 32;
/** Entries that change between open() and lstat() while we look (a swap in progress). */
const MAX_RETRIES = 16;

// O_NONBLOCK everywhere: a FIFO put where a directory or the file should be must not block open().
const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
const FILE_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;

/** Why a path was refused; load.ts turns it into a content-free ServiceError. */
export class UnsafePathError extends Error {
  constructor(
    readonly reason: 'untrusted-link' | 'too-many-links' | 'untrusted-owner' | 'symlink' | 'not-a-file',
  ) {
    super(reason);
  }
}

export interface OpenedFile {
  /** The file, open for reading; the caller closes it. */
  handle: FileHandle;
  /** fstat of the handle. */
  stat: Stats;
}

function errno(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null ? (err as NodeJS.ErrnoException).code : undefined;
}

/** `NAME` inside the directory open as `dir`, for open/lstat/readlink: openat() by other means. */
function at(dir: FileHandle, name: string): string {
  return `/proc/self/fd/${dir.fd}/${name}`;
}

/** Who may own what lies below the home: see the header. */
class OwnerRule {
  private user: number | undefined;

  check(st: Stats, isDir: boolean): void {
    if (st.uid !== 0) {
      this.user ??= st.uid;
      if (st.uid !== this.user) throw new UnsafePathError('untrusted-owner');
      return;
    }
    if (this.user === undefined) return; // root's own tree, above any home
    const open = isDir ? constants.S_IXOTH : constants.S_IROTH;
    if ((st.mode & open) === 0) throw new UnsafePathError('untrusted-owner');
  }
}

/** A directory in which only root can rename or replace entries. */
function onlyRootWrites(st: Stats): boolean {
  return st.uid === 0 && (st.mode & (constants.S_IWGRP | constants.S_IWOTH)) === 0;
}

/**
 * Opens `file` for reading as described above. Errors of open (ENOENT, ENOTDIR, EACCES) are thrown as they
 * are; everything refused by the rules above is an UnsafePathError.
 */
export async function openSafely(file: string): Promise<OpenedFile> {
  const todo = splitPath(isAbsolute(file) ? file : resolve(file));
  const owners = new OwnerRule();
  const stack: FileHandle[] = [await open('/', DIR_FLAGS)];
  let links = 0;
  let retries = 0;
  try {
    for (;;) {
      const name = todo.shift();
      if (name === undefined) throw new UnsafePathError('not-a-file'); // the path named a directory
      if (name === '.') continue;
      if (name === '..') {
        if (stack.length > 1) await stack.pop()?.close();
        continue;
      }
      const parent = stack[stack.length - 1] as FileHandle;
      if (todo.length === 0) return await openFile(parent, name, owners);
      let dir: FileHandle;
      try {
        dir = await open(at(parent, name), DIR_FLAGS);
      } catch (err) {
        // O_NOFOLLOW|O_DIRECTORY on a symlink fails with ENOTDIR (or ELOOP): look at what is there.
        if (errno(err) !== 'ELOOP' && errno(err) !== 'ENOTDIR') throw err;
        const link = await lstat(at(parent, name));
        if (!link.isSymbolicLink()) {
          // A directory now: swapped back since open() saw something else. Look again (bounded).
          if (!link.isDirectory() || ++retries > MAX_RETRIES) throw err;
          todo.unshift(name);
          continue;
        }
        if (link.uid !== 0 || !onlyRootWrites(await parent.stat()))
          throw new UnsafePathError('untrusted-link');
        if (++links > MAX_LINKS) throw new UnsafePathError('too-many-links');
        const target = await readlink(at(parent, name));
        todo.unshift(...splitPath(target));
        if (isAbsolute(target)) while (stack.length > 1) await stack.pop()?.close();
        continue;
      }
      stack.push(dir);
      owners.check(await dir.stat(), true);
    }
  } finally {
    for (const fh of stack) await fh.close().catch(() => undefined);
  }
}

async function openFile(parent: FileHandle, name: string, owners: OwnerRule): Promise<OpenedFile> {
  let handle: FileHandle;
  try {
    handle = await open(at(parent, name), FILE_FLAGS);
  } catch (err) {
    if (errno(err) === 'ELOOP') throw new UnsafePathError('symlink');
    throw err;
  }
  try {
    const stat = await handle.stat();
    owners.check(stat, stat.isDirectory());
    if (!stat.isFile()) throw new UnsafePathError('not-a-file');
    return { handle, stat };
  } catch (err) {
    await handle.close().catch(() => undefined);
    throw err;
  }
}

function splitPath(p: string): string[] {
  return p.split('/').filter((s) => s !== '');
}
