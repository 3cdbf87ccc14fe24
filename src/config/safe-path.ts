// Finding config.yaml without letting its owner point the daemon elsewhere. The file lives in the app user's
// home and the daemon reads it as root: if ~/.openauto (or any directory on the way) could be a symlink of the
// user's, the user could have root read a file they may not read themselves, and parts of it would land in
// hostapd.conf, which the openauto group can read. So the path is walked one component at a time (systemd's
// chase() with CHASE_SAFE is the model):
//   - a symlink owned by root is followed (an administrator's /home -> /data/home), at most 32 of them;
//   - a symlink owned by anyone else is refused;
//   - the last component must not be a symlink at all (load.ts opens it with O_NOFOLLOW).
// The walk ends with lstat of the file; load.ts compares its (dev, ino) with fstat of what it opened, so a
// directory swapped for a symlink between the walk and open() is caught as well.
import type { Stats } from 'node:fs';
import { lstat, readlink } from 'node:fs/promises';
import { isAbsolute, resolve } from 'node:path';

const MAX_LINKS = 32;

export interface ChasedPath {
  /** The path with every followed symlink replaced by its target. */
  path: string;
  /** lstat of the last component. */
  stat: Stats;
}

/** Why a path was refused; load.ts turns it into a content-free ServiceError. */
export class UnsafePathError extends Error {
  constructor(readonly reason: 'untrusted-link' | 'too-many-links') {
    super(reason);
  }
}

/**
 * Walks `file` as described above. Errors of lstat (ENOENT, ENOTDIR, EACCES) are thrown as they are; a
 * refused symlink is an UnsafePathError. The last component is lstat'ed, not followed: it may itself be a
 * symlink or not a regular file, which the caller checks.
 */
export async function chaseSafely(file: string): Promise<ChasedPath> {
  const todo = splitPath(isAbsolute(file) ? file : resolve(file));
  let cur = '/';
  let links = 0;
  for (;;) {
    const name = todo.shift();
    if (name === undefined) {
      return { path: cur, stat: await lstat(cur) };
    }
    if (name === '.') continue;
    if (name === '..') {
      cur = resolve(cur, '..');
      continue;
    }
    const next = cur === '/' ? `/${name}` : `${cur}/${name}`;
    if (todo.length === 0) {
      cur = next; // the last component: never followed, checked by the caller
      continue;
    }
    const st = await lstat(next);
    if (!st.isSymbolicLink()) {
      if (!st.isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
      cur = next;
      continue;
    }
    if (st.uid !== 0) throw new UnsafePathError('untrusted-link');
    if (++links > MAX_LINKS) throw new UnsafePathError('too-many-links');
    const target = await readlink(next);
    todo.unshift(...splitPath(target));
    if (isAbsolute(target)) cur = '/';
  }
}

function splitPath(p: string): string[] {
  return p.split('/').filter((s) => s !== '');
}
