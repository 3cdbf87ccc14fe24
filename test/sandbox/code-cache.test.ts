// The daemon's own code cache (src/code-cache.ts): a start with none writes one into the unit's
// CacheDirectory= a few seconds after ready, and later starts compile the bundle with it. One V8 refuses
// (garbage, another node) never stops a start and is replaced; one made for another build of the bundle
// (another size or modification time of the file) is never taken, and goes when the new one is written.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { daemonSuiteSkip, Sandbox } from './harness.js';
import { daemonJournal, waitAllActive } from './helpers-health.js';

const UNIT = 'openauto-system.service';
const DIR = '/var/cache/openauto-system';
const BUNDLE = '/usr/lib/openauto-system/dist/bin/openauto-system-main.cjs';
const skip = daemonSuiteSkip();

describe('the daemon’s own code cache', { skip }, () => {
  let sb: Sandbox;

  before(async () => {
    sb = await Sandbox.start({ name: 'code-cache' });
    await sb.waitFor(async () => (await sb.unitState(UNIT)) === 'active', 30_000, 200);
  });

  after(async () => {
    await sb?.stop();
  });

  /** The cache files in the directory: name → size. */
  const files = async (): Promise<Map<string, number>> => {
    const out = await sb.execOk([
      'sh',
      '-c',
      `cd ${DIR} && for f in $(ls -A); do echo "$f $(stat -c %s "$f")"; done`,
    ]);
    return new Map(
      out
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split(' ') as [string, string])
        .map(([f, s]) => [f, Number(s)]),
    );
  };
  /** The one cache file there once the daemon wrote it (5 s after ready), other than `old` (a sha256). */
  const written = async (old?: string): Promise<{ name: string; size: number; sha: string }> => {
    let found: { name: string; size: number; sha: string } | undefined;
    await sb.waitFor(
      async () => {
        const f = [...(await files())].filter(([n]) => /^openauto-system-main\.\d+-\d+\.cache$/.test(n));
        if (f.length !== 1) return false;
        const [name, size] = f[0] as [string, number];
        const sha = (await sb.execOk(['sha256sum', `${DIR}/${name}`])).split(' ')[0] as string;
        if (sha === old) return false;
        found = { name, size, sha };
        return true;
      },
      20_000,
      200,
    );
    return found as { name: string; size: number; sha: string };
  };
  /** Restarts the daemon; the CODE_CACHE field of the ready entry that start logged. */
  const restart = async (): Promise<string | undefined> => {
    const since = Date.now();
    await sb.execOk(['systemctl', 'restart', UNIT], { timeoutMs: 30_000 });
    await waitAllActive(sb);
    const ready = (await daemonJournal(sb))
      .filter((e) => e.t >= since - 1000 && / ready$/.test(e.message))
      .at(-1);
    assert.ok(ready, 'no ready entry');
    return ready.fields.CODE_CACHE as string | undefined;
  };

  it('a start with none writes it (root only); the next start compiles with it', async () => {
    const first = await written();
    assert.equal((await sb.execOk(['stat', '-c', '%a %U', DIR])).trim(), '700 root');
    assert.equal((await sb.execOk(['stat', '-c', '%a %U', `${DIR}/${first.name}`])).trim(), '600 root');
    assert.ok(first.size > 100_000, `${first.size} bytes`);
    const saved = (await daemonJournal(sb)).filter(
      (e) => e.message === 'code cache saved for the next start',
    );
    assert.ok(saved.length >= 1);
    assert.equal(await restart(), 'own');
    // Taken: not written again.
    await new Promise((r) => setTimeout(r, 6000));
    assert.deepEqual([...(await files()).keys()], [first.name]);
    assert.equal((await written()).sha, first.sha);
  });

  it('one V8 refuses: the start goes on (compiled as usual), says so, and a good one replaces it', async () => {
    const [name] = [...(await files()).keys()] as [string];
    const junk = Buffer.alloc(4096, 0x5a);
    await sb.writeFile(`${DIR}/${name}`, junk, 0o600);
    assert.equal(await restart(), 'own (rejected)');
    const again = await written(createHash('sha256').update(junk).digest('hex'));
    assert.equal(again.name, name);
    assert.ok(again.size > 100_000, `${again.size} bytes`);
    assert.equal(await restart(), 'own');
  });

  it('one made for another build of the bundle is never taken, and goes when the new one is written', async () => {
    const [old] = [...(await files()).keys()] as [string];
    // Another build of the same length: the file's modification time differs.
    await sb.execOk(['touch', '-d', '2001-01-01 00:00:00', BUNDLE]);
    assert.equal(await restart(), 'package');
    const next = await written((await sb.execOk(['sha256sum', `${DIR}/${old}`])).split(' ')[0]);
    assert.notEqual(next.name, old);
    assert.deepEqual([...(await files()).keys()], [next.name]);
    assert.equal(await restart(), 'own');
  });
});
