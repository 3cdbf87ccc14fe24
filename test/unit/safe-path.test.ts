// chaseSafely, the walk to config.yaml: which symlinks on the way are followed, how "." and ".." and
// relative targets resolve, and that the last component is never followed.
import assert from 'node:assert/strict';
import { lchown, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chaseSafely, UnsafePathError } from '../../src/config/safe-path.js';

const isRoot = process.getuid?.() === 0;

describe('chaseSafely', () => {
  let root: string;
  before(async () => {
    // mkdtemp's own path may contain symlinks of the machine's; resolve it once, as root's walk would.
    root = (await chaseSafely(await mkdtemp(path.join(tmpdir(), 'oa-chase-')))).path;
    await mkdir(path.join(root, 'data', 'oa'), { recursive: true });
    await writeFile(path.join(root, 'data', 'oa', 'config.yaml'), 'x: 1\n');
  });
  after(() => rm(root, { recursive: true, force: true }));

  test('a plain path is itself, with lstat of the file', async () => {
    const file = path.join(root, 'data', 'oa', 'config.yaml');
    const c = await chaseSafely(file);
    assert.equal(c.path, file);
    assert.ok(c.stat.isFile());
  });

  test('"." and ".." are resolved along the walk', async () => {
    const c = await chaseSafely(`${root}/data/./oa/../oa/config.yaml`);
    assert.equal(c.path, path.join(root, 'data', 'oa', 'config.yaml'));
  });

  test("root's relative symlink on the way is followed and replaced by its target", {
    skip: isRoot ? undefined : 'needs root to own the symlink',
  }, async () => {
    await mkdir(path.join(root, 'home'), { recursive: true });
    await symlink('../data/oa', path.join(root, 'home', 'link'));
    const c = await chaseSafely(path.join(root, 'home', 'link', 'config.yaml'));
    assert.equal(c.path, path.join(root, 'data', 'oa', 'config.yaml'));
    assert.ok(c.stat.isFile());
  });

  test("someone else's symlink on the way is refused", async () => {
    const link = path.join(root, 'users-link');
    await symlink(path.join(root, 'data', 'oa'), link);
    if (isRoot) await lchown(link, 1000, 1000);
    await assert.rejects(
      chaseSafely(path.join(link, 'config.yaml')),
      (e: unknown) => e instanceof UnsafePathError && e.reason === 'untrusted-link',
    );
  });

  test('the last component is not followed, even when it is a symlink', async () => {
    const last = path.join(root, 'data', 'oa', 'last-link.yaml');
    await symlink('config.yaml', last);
    const c = await chaseSafely(last);
    assert.equal(c.path, last);
    assert.ok(c.stat.isSymbolicLink());
  });

  test('a missing directory is ENOENT, as lstat says', async () => {
    await assert.rejects(chaseSafely(path.join(root, 'nope', 'config.yaml')), { code: 'ENOENT' });
  });
});
