// Crash-safe replacement of system files. A reader (hostapd, networkd, the app) must only ever see the old or
// the new content, never a torn file, and a file holding a passphrase must never exist with looser permissions,
// not even for a moment. Hence: temp file in the same directory (rename is only atomic within a filesystem),
// created 0600, content written and fsynced, mode and group set on the descriptor, then rename, then fsync of
// the directory so the rename itself survives a power cut (the car's ignition).
import { constants } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { crypto } from './crypto.js';

export interface FileMeta {
  /** Permission bits, e.g. 0o640. */
  mode: number;
  /** Owning group, or undefined to keep the creating process's group. */
  gid?: number;
}

/** What was on disk before a write, to put it back byte-for-byte (with its mode and owner) on rollback. */
export interface FileSnapshot {
  data: Buffer;
  mode: number;
  uid: number;
  gid: number;
}

const TEMP_MARK = '.openauto-tmp-';
const TEMP_NAME = /^\.(.+)\.openauto-tmp-[0-9a-f]{16}$/;

/** `.hostapd.conf.openauto-tmp-<16 hex>`: hidden, and recognisable by the start-up cleaner. */
export function tempNameFor(target: string): string {
  return path.join(
    path.dirname(target),
    `.${path.basename(target)}${TEMP_MARK}${crypto().randomBytes(8).toString('hex')}`,
  );
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT';
}

/** Content, mode and owner of `file`, or null when it does not exist. */
export async function readSnapshot(file: string): Promise<FileSnapshot | null> {
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    if (isMissing(err)) return null;
    throw err;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new Error('not a regular file');
    return { data: await fh.readFile(), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
  } finally {
    await fh.close();
  }
}

/** Current content of `file`, or null when it does not exist. */
async function readCurrent(file: string): Promise<Buffer | null> {
  try {
    return await readFile(file);
  } catch (err) {
    if (isMissing(err)) return null;
    throw err;
  }
}

/** True when `file` holds exactly `content`. */
export async function hasContent(file: string, content: string | Buffer): Promise<boolean> {
  const cur = await readCurrent(file);
  return cur?.equals(typeof content === 'string' ? Buffer.from(content, 'utf8') : content) ?? false;
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Atomically replaces `file` with `content`, with `meta` applied before the file becomes visible. */
export async function writeAtomic(
  file: string,
  content: string | Buffer,
  meta: FileMeta,
  owner?: { uid: number; gid: number },
): Promise<void> {
  const dir = path.dirname(file);
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const tmp = tempNameFor(file);
  // O_EXCL: never reuse (or follow a symlink planted at) an existing name; 0600 until the final mode is set.
  const fh = await open(
    tmp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o600,
  );
  let renamed = false;
  try {
    try {
      await fh.writeFile(content);
      await fh.sync();
      if (owner) await fh.chown(owner.uid, owner.gid);
      else if (meta.gid !== undefined) await fh.chown(-1, meta.gid);
      // After chown: chown may clear set-id bits, and the mode given is the one meant.
      await fh.chmod(owner ? meta.mode & 0o7777 : meta.mode & 0o777);
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
    renamed = true;
    await fsyncDir(dir);
  } finally {
    if (!renamed) await unlink(tmp).catch(() => undefined);
  }
}

/** Brings mode and group of an existing file in line with `meta` without touching its content (a file left
 * 0600 root by the previous implementation becomes readable to the app again, with no service restart). */
export async function ensureMeta(file: string, meta: FileMeta): Promise<boolean> {
  const fh = await open(
    file,
    constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY,
  );
  try {
    const st = await fh.stat();
    if (!st.isFile()) return false;
    let changed = false;
    if (meta.gid !== undefined && st.gid !== meta.gid) {
      await fh.chown(-1, meta.gid);
      changed = true;
    }
    if ((st.mode & 0o7777) !== (meta.mode & 0o777) || changed) {
      await fh.chmod(meta.mode & 0o777);
      changed = true;
    }
    return changed;
  } finally {
    await fh.close();
  }
}

/** Puts back what `readSnapshot` saw: the old bytes with their mode and owner, atomically; or, when there was
 * no file, removes the new one. */
export async function restoreSnapshot(file: string, previous: FileSnapshot | null): Promise<void> {
  if (previous === null) {
    try {
      await unlink(file);
    } catch (err) {
      if (!isMissing(err)) throw err;
    }
    await fsyncDir(path.dirname(file));
    return;
  }
  await writeAtomic(file, previous.data, { mode: previous.mode }, { uid: previous.uid, gid: previous.gid });
}

/** Removes temp files of ours left in `dir` by a crash (only names made by tempNameFor for one of `targets`,
 * and only regular files). Returns how many were removed. A missing directory has none. */
export async function cleanTempFiles(dir: string, targets: readonly string[]): Promise<number> {
  let entries: import('node:fs').Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (isMissing(err)) return 0;
    throw err;
  }
  const bases = new Set(targets.map((t) => path.basename(t)));
  let removed = 0;
  for (const e of entries) {
    const m = TEMP_NAME.exec(e.name);
    if (!m || !bases.has(m[1] as string) || !e.isFile()) continue;
    try {
      await unlink(path.join(dir, e.name));
      removed++;
    } catch (err) {
      if (!isMissing(err)) throw err;
    }
  }
  if (removed > 0) await fsyncDir(dir);
  return removed;
}

/** gid of `name` from a group(5) file, without running a child process or NSS; undefined when absent. */
export async function lookupGroupId(name: string, groupFile = '/etc/group'): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(groupFile, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    if (fields.length < 3 || fields[0] !== name) continue;
    const gid = fields[2] as string;
    if (/^[0-9]{1,10}$/.test(gid) && Number(gid) < 2 ** 32 - 1) return Number(gid);
  }
  return undefined;
}
