// native/memory: what the daemon's entry point and heap trimmer ask of it. Each case runs in a child process
// under the unit's interpreter-only V8 (the test runner's own heap is not ours to measure).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { REPO_ROOT } from '../sandbox/harness.js';

const MB = 1024 * 1024;
const dir = mkdtempSync(join(tmpdir(), 'oas-native-memory-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function child(code: string): Record<string, unknown> {
  const script = `const m = require(${JSON.stringify(join(REPO_ROOT, 'node_modules', 'openauto-memory'))});
const v8 = require('node:v8');
const fs = require('node:fs');
const out = {};
${code}
console.log(JSON.stringify(out));`;
  const r = spawnSync(process.execPath, ['--lite-mode', '--jitless', '--no-expose-wasm', '-e', script], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;
}

describe('native/memory', () => {
  it('maps a source file without copying it onto the JavaScript heap; reading it copies it', () => {
    const file = join(dir, 'big.js');
    // 6.4 MB of plain ASCII JavaScript.
    writeFileSync(file, `// ${'x'.repeat(60)}\n`.repeat(100_000));
    const out = child(`
      const used = () => v8.getHeapStatistics().used_heap_size;
      const base = used();
      const mapped = m.mapSource(${JSON.stringify(file)});
      out.mappedGrowth = used() - base;
      out.mappedLength = mapped.length;
      out.same = mapped === fs.readFileSync(${JSON.stringify(file)}, 'latin1');
      const b2 = used();
      const read = fs.readFileSync(${JSON.stringify(file)}, 'utf8');
      out.readGrowth = used() - b2;
      out.keep = read.length + mapped.length;`);
    assert.equal(out.mappedLength, 6_400_000);
    assert.equal(out.same, true, 'the mapped text is the file');
    assert.ok((out.mappedGrowth as number) < 0.5 * MB, `mapped: heap grew ${out.mappedGrowth} bytes`);
    assert.ok((out.readGrowth as number) > 5 * MB, `read: heap grew ${out.readGrowth} bytes`);
  });

  it('refuses a file that is not plain ASCII, a missing file and a directory, with a clear error', () => {
    const utf8 = join(dir, 'utf8.js');
    writeFileSync(utf8, "const s = 'héllo';\n");
    const out = child(`
      for (const [k, p] of [['ascii', ${JSON.stringify(utf8)}], ['missing', ${JSON.stringify(join(dir, 'none.js'))}], ['dir', ${JSON.stringify(dir)}]]) {
        try { m.mapSource(p); out[k] = 'mapped'; } catch (e) { out[k] = e.message; }
      }`);
    assert.equal(out.ascii, 'mapSource: the file holds a byte that is not ASCII');
    assert.equal(out.missing, 'mapSource: open: No such file or directory');
    assert.equal(out.dir, 'mapSource: not a regular file of a sensible size');
  });

  it('reduceHeap gives back a heap a burst grew, without --expose-gc; mallocTrim answers', () => {
    const out = child(`
      const total = () => v8.getHeapStatistics().total_heap_size;
      const base = total();
      let keep = [];
      for (let i = 0; i < 300000; i++) { keep.push({ s: 'x'.repeat(40) + i, a: [i] }); if (keep.length > 100000) keep = []; }
      keep = null;
      out.base = base;
      out.grown = total();
      m.reduceHeap();
      out.after = total();
      out.trim = m.mallocTrim();
      out.gcExposed = typeof globalThis.gc === 'function';`);
    assert.equal(out.gcExposed, false);
    assert.ok(
      (out.grown as number) > (out.base as number) + 4 * MB,
      `the burst grew the heap: ${JSON.stringify(out)}`,
    );
    assert.ok((out.after as number) < (out.grown as number) - 4 * MB, `given back: ${JSON.stringify(out)}`);
    assert.ok(out.trim === 0 || out.trim === 1);
  });
});
