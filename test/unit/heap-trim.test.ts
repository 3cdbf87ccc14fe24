// The heap trimmer's decision with injected heap readings and a fake collection, and one real check: with
// node's gc exposed, a grown heap really shrinks.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { anonBytes, HeapTrimmer, initialTrimState, trimReason } from '../../src/memory/heap-trim.js';

const MB = 1024 * 1024;

/** A trimmer over a fake heap; `shrink` says what a collection leaves of the heap it found. */
function fakeHeap(start: number, shrink: (heap: number) => number) {
  let heap = start;
  const collected: number[] = [];
  const trimmer = new HeapTrimmer({
    intervalMs: 30_000,
    slackBytes: 2 * MB,
    heapBytes: () => heap,
    collect: () => {
      collected.push(heap);
      heap = shrink(heap);
    },
  });
  return { trimmer, collected, setHeap: (h: number) => (heap = h) };
}

describe('heap trimmer', () => {
  test('the decision: first check collects, then growth past the last collection or past the floor', () => {
    const s = { floor: 8 * MB, last: 12 * MB, wait: 0, backoff: 1 };
    assert.equal(trimReason(initialTrimState(), 10 * MB, 2 * MB), 'first');
    assert.equal(trimReason(s, 14 * MB + 1, 2 * MB), 'growth');
    assert.equal(trimReason(s, 10 * MB + 1, 2 * MB), 'floor');
    assert.equal(trimReason(s, 10 * MB, 2 * MB), undefined);
    assert.equal(trimReason({ ...s, wait: 1 }, 10 * MB + 1, 2 * MB), undefined, 'backing off');
    assert.equal(trimReason({ ...s, wait: 1 }, 14 * MB + 1, 2 * MB), 'growth', 'growth ignores the back-off');
  });

  test('collects once per growth; a quiet heap at its floor is left alone', () => {
    const { trimmer, collected, setHeap } = fakeHeap(11 * MB, (h) => h - 3 * MB);
    trimmer.check(); // start-up garbage: 11 -> 8 MB
    assert.deepEqual(collected, [11 * MB]);
    setHeap(9.5 * MB); // a little growth: left alone
    trimmer.check();
    trimmer.check();
    assert.equal(trimmer.collections, 1);
    setHeap(16 * MB); // a burst
    trimmer.check();
    assert.deepEqual(collected, [11 * MB, 16 * MB]);
  });

  test('a collection in the middle of a busy spell does not keep the quiet heap high', () => {
    // The second soak's failure: a collection under load left 14 MB (in-flight requests are live); judged
    // against that alone, the quiet heap of 15.5 MB was never collected again and stayed 7 MB up.
    let live = 6 * MB;
    const { trimmer, collected, setHeap } = fakeHeap(10 * MB, () => live + 2 * MB);
    trimmer.check(); // floor: 8 MB
    live = 12 * MB; // busy: a lot is live
    setHeap(20 * MB);
    trimmer.check(); // growth collection leaves 14 MB
    assert.equal(collected.length, 2);
    live = 6 * MB; // the load stops; V8 leaves the heap where it was
    setHeap(15.5 * MB);
    trimmer.check();
    assert.deepEqual(
      collected,
      [10 * MB, 20 * MB, 15.5 * MB],
      'the quiet heap is collected back to the floor',
    );
    trimmer.check();
    assert.equal(trimmer.collections, 3, 'and then left alone');
  });

  test('a live set that really grew is collected less and less often, and growth resets that', () => {
    // The heap can never get back below 12 MB again; the floor stays at 8 MB.
    let floorOfHeap = 8 * MB;
    const { trimmer, setHeap } = fakeHeap(10 * MB, () => floorOfHeap);
    trimmer.check();
    floorOfHeap = 12 * MB;
    setHeap(13 * MB);
    const ran: boolean[] = [];
    for (let i = 0; i < 24; i++) {
      const before = trimmer.collections;
      trimmer.check();
      ran.push(trimmer.collections > before);
      setHeap(13 * MB); // what V8 grows back to between checks
    }
    // Check 0 is growth past the last collection; from check 1 on, floor collections that stay at 12 MB,
    // skipping 1, 2, 4 and then (capped) 8 checks in between.
    assert.deepEqual(
      ran.flatMap((r, i) => (r ? [i] : [])),
      [0, 1, 3, 6, 11, 20],
    );
    setHeap(20 * MB); // a burst: growth past the last collection collects at once and ends the back-off
    const before = trimmer.collections;
    trimmer.check();
    assert.equal(trimmer.collections, before + 1);
    setHeap(13 * MB);
    trimmer.check();
    assert.equal(trimmer.collections, before + 2, 'the floor check runs again at the next check');
  });

  test('without an exposed gc it is disabled and never throws', () => {
    const t = new HeapTrimmer({ intervalMs: 10, slackBytes: 0, collect: undefined });
    assert.equal(t.enabled, false);
    t.start();
    t.check();
    t.stop();
    assert.equal(t.collections, 0);
  });

  test('a failing collection is logged, counted as not run, and the trimmer goes on', () => {
    const t = new HeapTrimmer({
      intervalMs: 10,
      slackBytes: 0,
      heapBytes: () => 5 * MB,
      collect: () => {
        throw new Error('boom');
      },
    });
    t.check();
    assert.equal(t.collections, 0);
  });

  test('a heap grown by a burst is given back through native/memory, without --expose-gc', () => {
    // In a child process: the test runner's own heap is not ours to measure.
    const script = `
      const { HeapTrimmer } = await import(${JSON.stringify(new URL('../../src/memory/heap-trim.js', import.meta.url).href)});
      const { getHeapStatistics } = await import('node:v8');
      const t = new HeapTrimmer({ intervalMs: 1000, slackBytes: 2 * 1024 * 1024 });
      t.check();
      let keep = [];
      for (let i = 0; i < 300000; i++) { keep.push({ s: 'x'.repeat(40) + i, a: [i] }); if (keep.length > 100000) keep = []; }
      keep = null;
      const grown = getHeapStatistics().total_heap_size;
      t.check();
      console.log(JSON.stringify({ gcExposed: typeof globalThis.gc === 'function', enabled: t.enabled, collections: t.collections, grown, after: getHeapStatistics().total_heap_size }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      env: { ...process.env, OPENAUTO_LOG_STDERR: '1' },
    });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim()) as {
      gcExposed: boolean;
      enabled: boolean;
      collections: number;
      grown: number;
      after: number;
    };
    assert.equal(out.gcExposed, false);
    assert.equal(out.enabled, true);
    assert.equal(out.collections, 2);
    assert.ok(out.after < out.grown - 2 * MB, `heap ${out.grown} -> ${out.after}`);
  });

  test('judges anonymous memory: a burst that grew malloc, not V8, is given back too', () => {
    // 16 MB of small buffers held and dropped: V8's heap barely moves (it holds only their handles), the
    // process's anonymous memory does. The trimmer read V8's heap size before and never collected this.
    const script = `
      const { HeapTrimmer, anonBytes } = await import(${JSON.stringify(new URL('../../src/memory/heap-trim.js', import.meta.url).href)});
      const { getHeapStatistics } = await import('node:v8');
      const t = new HeapTrimmer({ intervalMs: 1000, slackBytes: 2 * 1024 * 1024 });
      t.check();
      const heapBefore = getHeapStatistics().total_heap_size;
      let keep = [];
      for (let i = 0; i < 4096; i++) keep.push(Buffer.alloc(4000, i));
      const grown = anonBytes();
      const heapGrown = getHeapStatistics().total_heap_size;
      keep = null;
      t.check();
      await new Promise((r) => setTimeout(r, 1500)); // the collection's second pass
      console.log(JSON.stringify({ collections: t.collections, grown, after: anonBytes(), heapBefore, heapGrown }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      env: { ...process.env, OPENAUTO_LOG_STDERR: '1' },
    });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim()) as Record<string, number>;
    assert.ok(
      (out.heapGrown as number) - (out.heapBefore as number) < 2 * MB,
      `V8's heap grew ${(out.heapGrown as number) - (out.heapBefore as number)} bytes: not the case under test`,
    );
    assert.equal(out.collections, 2, 'the growth of anonymous memory triggered a collection');
    assert.ok(
      (out.after as number) < (out.grown as number) - 8 * MB,
      `anonymous ${out.grown} -> ${out.after}`,
    );
  });

  test("anonBytes is the process's RssAnon", () => {
    const kb = Number(/^RssAnon:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]);
    const got = anonBytes();
    assert.ok(Math.abs(got - kb * 1024) < 4 * MB, `${got} against ${kb} kB`);
    assert.ok(got > 1 * MB && got < process.memoryUsage.rss());
  });
});
