// openSafely, the walk to config.yaml: which symlinks on the way are followed, how "." and ".." and
// relative targets resolve, that the last component is never followed, who may own what below the home,
// and that the file comes back open (the descriptor is what gets read, never the path again).
import assert from 'node:assert/strict';
import {
  chmod,
  chown,
  lchown,
  mkdir,
  mkdtemp,
  realpath,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openSafely, UnsafePathError } from '../../src/config/safe-path.js';

const isRoot = process.getuid?.() === 0;
const needsRoot = { skip: isRoot ? undefined : 'needs root to own files as others' };

/** Opens `file` and returns the inode it opened (the handle is closed). */
async function inodeOf(file: string): Promise<number> {
  const { handle, stat: st } = await openSafely(file);
  await handle.close();
  return st.ino;
}

function refusedAs(reason: UnsafePathError['reason']) {
  return (e: unknown) => e instanceof UnsafePathError && e.reason === reason;
}

describe('openSafely', () => {
  let root: string;
  let file: string;
  before(async () => {
    // mkdtemp's own path may contain symlinks of the machine's; resolve it once.
    root = await realpath(await mkdtemp(path.join(tmpdir(), 'oa-chase-')));
    await mkdir(path.join(root, 'data', 'oa'), { recursive: true });
    file = path.join(root, 'data', 'oa', 'config.yaml');
    await writeFile(file, 'x: 1\n');
  });
  after(() => rm(root, { recursive: true, force: true }));

  test('a plain path opens that file', async () => {
    const { handle, stat: st } = await openSafely(file);
    try {
      assert.ok(st.isFile());
      assert.equal(st.ino, (await stat(file)).ino);
      assert.equal(await handle.readFile('utf8'), 'x: 1\n');
    } finally {
      await handle.close();
    }
  });

  test('"." and ".." are resolved along the walk', async () => {
    assert.equal(await inodeOf(`${root}/data/./oa/../oa/config.yaml`), (await stat(file)).ino);
  });

  test("root's relative symlink in root's directory is followed", needsRoot, async () => {
    await mkdir(path.join(root, 'home'), { recursive: true, mode: 0o755 });
    await symlink('../data/oa', path.join(root, 'home', 'link'));
    assert.equal(await inodeOf(path.join(root, 'home', 'link', 'config.yaml')), (await stat(file)).ino);
  });

  test("someone else's symlink on the way is refused", async () => {
    const link = path.join(root, 'users-link');
    await symlink(path.join(root, 'data', 'oa'), link);
    if (isRoot) await lchown(link, 1000, 1000);
    await assert.rejects(openSafely(path.join(link, 'config.yaml')), refusedAs('untrusted-link'));
  });

  test(
    "root's symlink in a directory others can write is refused (it could be swapped)",
    needsRoot,
    async () => {
      const dir = path.join(root, 'shared');
      await mkdir(dir);
      await chmod(dir, 0o777);
      await symlink(path.join(root, 'data', 'oa'), path.join(dir, 'link'));
      await assert.rejects(openSafely(path.join(dir, 'link', 'config.yaml')), refusedAs('untrusted-link'));
    },
  );

  test('the last component is not followed, even when it is a symlink', async () => {
    const last = path.join(root, 'data', 'oa', 'last-link.yaml');
    await symlink('config.yaml', last);
    await assert.rejects(openSafely(last), refusedAs('symlink'));
  });

  test('a directory is not a file', async () => {
    await assert.rejects(openSafely(path.join(root, 'data', 'oa')), refusedAs('not-a-file'));
  });

  test('a missing directory is ENOENT; a file on the way is ENOTDIR', async () => {
    await assert.rejects(openSafely(path.join(root, 'nope', 'config.yaml')), { code: 'ENOENT' });
    await assert.rejects(openSafely(path.join(file, 'config.yaml')), { code: 'ENOTDIR' });
  });

  describe('owners below the home', needsRoot, () => {
    // home (uid 1000) / .openauto / config.yaml, the shape of the real path.
    let home: string;
    before(async () => {
      home = path.join(root, 'users', 'app');
      await mkdir(path.join(home, '.openauto'), { recursive: true });
      await chmod(path.join(root, 'users'), 0o755);
      await chown(home, 1000, 1000);
      await chmod(home, 0o700);
    });

    async function place(dirUid: number, dirMode: number, fileUid: number, fileMode: number) {
      const dir = path.join(home, '.openauto');
      const f = path.join(dir, 'config.yaml');
      await writeFile(f, 'x: 1\n');
      await chown(dir, dirUid, dirUid);
      await chmod(dir, dirMode);
      await chown(f, fileUid, fileUid);
      await chmod(f, fileMode);
      return f;
    }

    test("the user's own directory and file", async () => {
      const f = await place(1000, 0o700, 1000, 0o600);
      assert.equal(await inodeOf(f), (await stat(f)).ino);
    });

    test('a file of another user is refused', async () => {
      await assert.rejects(openSafely(await place(1000, 0o700, 1001, 0o644)), refusedAs('untrusted-owner'));
    });

    test('a directory of another user is refused before anything in it is looked up', async () => {
      const f = await place(1001, 0o755, 1000, 0o600);
      await assert.rejects(openSafely(f), refusedAs('untrusted-owner'));
      // The same refusal whether or not the file exists.
      await assert.rejects(openSafely(path.join(path.dirname(f), 'nope.yaml')), refusedAs('untrusted-owner'));
    });

    test("root's directory and file open to everyone are fine; root-only ones are refused", async () => {
      const open = await place(0, 0o755, 0, 0o644);
      assert.equal(await inodeOf(open), (await stat(open)).ino);
      await assert.rejects(openSafely(await place(0, 0o755, 0, 0o600)), refusedAs('untrusted-owner'));
      const f = await place(0, 0o700, 1000, 0o600);
      await assert.rejects(openSafely(f), refusedAs('untrusted-owner'));
      await assert.rejects(openSafely(path.join(path.dirname(f), 'nope.yaml')), refusedAs('untrusted-owner'));
    });
  });
});
