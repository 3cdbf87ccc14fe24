// Atomic file replacement: modes and group set before the file appears, no temp files left behind, only our
// own temp files cleaned at start-up, restore of the previous bytes, and readers never seeing a torn file.
import assert from 'node:assert/strict';
import { mkdir, open, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, afterEach, beforeEach, describe, test } from 'node:test';
import { ConfigApplier } from '../../src/config/applier.js';
import {
  cleanTempFiles,
  hasContent,
  lookupGroupId,
  readSnapshot,
  restoreSnapshot,
  tempNameFor,
  writeAtomic,
} from '../../src/config/atomic.js';
import {
  captureLog,
  FakeSystem,
  makeSandbox,
  type Sandbox,
  validConfig,
} from '../fixtures/config/harness.js';
import { OPENAUTO_GID } from '../helpers/ids.js';

const isRoot = process.getuid?.() === 0;
const logs = captureLog();
after(() => logs.restore());

let sb: Sandbox;
afterEach(() => sb?.cleanup());

describe('file modes through the applier', () => {
  const oldUmask = process.umask(0o077); // a strict umask must not change the modes we ask for
  after(() => process.umask(oldUmask));

  test('hostapd.conf 0640 group openauto when the group exists; .network 0644', async () => {
    sb = await makeSandbox({ group: OPENAUTO_GID });
    await sb.writeConfig(validConfig());
    const applier = new ConfigApplier(new FakeSystem().deps(sb.paths));
    await applier.apply('wifi');
    await applier.apply('network');
    const h = await stat(sb.paths.hostapdConf);
    assert.equal(h.mode & 0o7777, 0o640);
    assert.equal(h.gid, OPENAUTO_GID);
    const n = await stat(sb.networkFile);
    assert.equal(n.mode & 0o7777, 0o644);
  });

  test('hostapd.conf 0600 when there is no openauto group', async () => {
    sb = await makeSandbox({ group: null });
    await sb.writeConfig(validConfig());
    await new ConfigApplier(new FakeSystem().deps(sb.paths)).apply('wifi');
    assert.equal((await stat(sb.paths.hostapdConf)).mode & 0o7777, 0o600);
  });

  test('the mode is on the file before it gets its name (rename of a finished file)', async () => {
    sb = await makeSandbox();
    const target = path.join(sb.root, 'etc', 'hostapd', 'hostapd.conf');
    // Watch the directory while writing: any entry we see under the final name must already be 0640.
    let bad = false;
    let done = false;
    const watcher = (async () => {
      while (!done) {
        const st = await stat(target).catch(() => null);
        if (st && (st.mode & 0o777) !== 0o640) bad = true;
        await new Promise((r) => setImmediate(r));
      }
    })();
    for (let i = 0; i < 50; i++) await writeAtomic(target, `n=${i}\n`, { mode: 0o640 });
    done = true;
    await watcher;
    assert.equal(bad, false);
  });
});

describe('atomic write helpers', () => {
  beforeEach(async () => {
    sb = await makeSandbox();
  });

  test('no temp file remains after writes, and none after a failed write', async () => {
    const dir = path.join(sb.root, 'd');
    const f = path.join(dir, 'hostapd.conf');
    await writeAtomic(f, 'a\n', { mode: 0o600 });
    await writeAtomic(f, 'b\n', { mode: 0o600 });
    assert.deepEqual(await readdir(dir), ['hostapd.conf']);
    // Renaming over a directory fails: the temp file must be removed again.
    const asDir = path.join(dir, 'taken');
    await mkdir(asDir);
    await assert.rejects(writeAtomic(asDir, 'x', { mode: 0o600 }));
    assert.deepEqual((await readdir(dir)).sort(), ['hostapd.conf', 'taken']);
  });

  test('creates a missing directory', async () => {
    const f = path.join(sb.root, 'new', 'sub', 'x.network');
    await writeAtomic(f, 'x\n', { mode: 0o644 });
    assert.equal(await readFile(f, 'utf8'), 'x\n');
  });

  test('a symlink at the target is replaced, not written through', async () => {
    const victim = path.join(sb.root, 'victim');
    await writeFile(victim, 'keep\n');
    const f = path.join(sb.root, 'link.conf');
    await symlink(victim, f);
    await writeAtomic(f, 'new\n', { mode: 0o600 });
    assert.equal(await readFile(victim, 'utf8'), 'keep\n');
    assert.equal(await readFile(f, 'utf8'), 'new\n');
    assert.ok((await stat(f)).isFile());
  });

  test('hasContent: false for a missing file, true only for the same bytes', async () => {
    const f = path.join(sb.root, 'f');
    assert.equal(await hasContent(f, ''), false);
    await writeAtomic(f, 'one\n', { mode: 0o644 });
    assert.equal(await hasContent(f, 'one\n'), true);
    assert.equal(await hasContent(f, Buffer.from('one\n')), true);
    assert.equal(await hasContent(f, 'two\n'), false);
  });

  test('restoreSnapshot puts back bytes, mode and owner; or removes a file that did not exist', async () => {
    const f = path.join(sb.root, 'f');
    const old = Buffer.from([0, 1, 2, 0xff, 0x0a]);
    await writeAtomic(f, old, { mode: 0o604 });
    const snap = await readSnapshot(f);
    assert.ok(snap);
    await writeAtomic(f, 'new\n', { mode: 0o640, gid: isRoot ? 4242 : undefined });
    await restoreSnapshot(f, snap);
    const st = await stat(f);
    assert.deepEqual(await readFile(f), old);
    assert.equal(st.mode & 0o7777, 0o604);
    assert.equal(st.gid, snap.gid);

    const g = path.join(sb.root, 'g');
    const none = await readSnapshot(g);
    assert.equal(none, null);
    await writeAtomic(g, 'x', { mode: 0o600 });
    await restoreSnapshot(g, none);
    assert.equal(await readSnapshot(g), null);
    await restoreSnapshot(g, none); // idempotent
  });

  test('cleanTempFiles removes only our leftovers', async () => {
    const dir = path.join(sb.root, 'hostapd');
    await mkdir(dir);
    const target = path.join(dir, 'hostapd.conf');
    const ours = [tempNameFor(target), tempNameFor(target)];
    for (const t of ours) await writeFile(t, 'partial');
    const keep = [
      'hostapd.conf',
      '.hostapd.conf.openauto-tmp-XYZ', // not our suffix
      '.other.conf.openauto-tmp-0123456789abcdef', // another file's
      'hostapd.conf.openauto-tmp-0123456789abcdef', // not hidden
      '.hostapd.conf.swp',
    ];
    for (const k of keep) await writeFile(path.join(dir, k), 'x');
    await mkdir(path.join(dir, '.hostapd.conf.openauto-tmp-fedcba9876543210')); // a directory: left alone
    assert.equal(await cleanTempFiles(dir, [target]), 2);
    assert.deepEqual(
      (await readdir(dir)).sort(),
      [...keep, '.hostapd.conf.openauto-tmp-fedcba9876543210'].sort(),
    );
    assert.equal(await cleanTempFiles(path.join(sb.root, 'missing'), [target]), 0);
  });

  test('ConfigApplier.cleanup clears leftovers in both directories', async () => {
    const applier = new ConfigApplier(new FakeSystem().deps(sb.paths));
    await writeFile(tempNameFor(sb.paths.hostapdConf), 'torn');
    await writeFile(tempNameFor(sb.networkFile), 'torn');
    await writeFile(path.join(sb.paths.networkDir, '50-other.network'), 'keep');
    assert.equal(await applier.cleanup(), 2);
    assert.deepEqual(await readdir(path.dirname(sb.paths.hostapdConf)), []);
    assert.deepEqual(await readdir(sb.paths.networkDir), ['50-other.network']);
  });

  test('lookupGroupId parses group(5) without NSS', async () => {
    const g = path.join(sb.root, 'group');
    await writeFile(g, 'root:x:0:\n\nbroken line\nopenautox:x:1:\nopenauto:x:998:matt,pi\nopenauto:x:999:\n');
    assert.equal(await lookupGroupId('openauto', g), 998);
    assert.equal(await lookupGroupId('root', g), 0);
    assert.equal(await lookupGroupId('nobody', g), undefined);
    assert.equal(await lookupGroupId('openauto', path.join(sb.root, 'missing')), undefined);
    await writeFile(g, 'openauto:x:-5:\nopenauto:x:abc:\n');
    assert.equal(await lookupGroupId('openauto', g), undefined);
  });

  test('a reader only ever sees the old or the new content', async () => {
    const f = path.join(sb.root, 'hostapd.conf');
    const a = Buffer.alloc(64 * 1024, 'a');
    const b = Buffer.alloc(48 * 1024, 'b');
    await writeAtomic(f, a, { mode: 0o600 });
    let done = false;
    let reads = 0;
    const reader = (async () => {
      while (!done) {
        const fh = await open(f, 'r');
        const got = await fh.readFile();
        await fh.close();
        reads++;
        assert.ok(got.equals(a) || got.equals(b), `torn read of ${got.length} bytes`);
      }
    })();
    for (let i = 0; i < 200; i++) await writeAtomic(f, i % 2 ? a : b, { mode: 0o600 });
    done = true;
    await reader;
    assert.ok(reads > 0);
    assert.deepEqual(
      (await readdir(sb.root)).filter((n) => n.includes('openauto-tmp')),
      [],
    );
  });
});
