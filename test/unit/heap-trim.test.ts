// The heap trimmer's decision with injected heap readings and a fake collection, and one real check: with
// node's gc exposed, a grown heap really shrinks.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { HeapTrimmer, shouldTrim } from '../../src/memory/heap-trim.js';

const MB = 1024 * 1024;

describe('heap trimmer', () => {
  test('the decision: first check collects, then only growth past the slack does', () => {
    assert.equal(shouldTrim(10 * MB, undefined, 2 * MB), true);
    assert.equal(shouldTrim(12 * MB, 10 * MB, 2 * MB), false);
    assert.equal(shouldTrim(12 * MB + 1, 10 * MB, 2 * MB), true);
    assert.equal(shouldTrim(8 * MB, 10 * MB, 2 * MB), false);
  });

  test('collects once per growth and takes the heap after the collection as the new baseline', () => {
    let heap = 11 * MB;
    const collected: number[] = [];
    const t = new HeapTrimmer({
      intervalMs: 30_000,
      slackBytes: 2 * MB,
      heapBytes: () => heap,
      collect: () => {
        collected.push(heap);
        heap -= 3 * MB; // what a collection gives back
      },
    });
    t.check(); // start-up garbage: 11 -> 8 MB
    assert.deepEqual(collected, [11 * MB]);
    heap = 9.5 * MB; // a little growth: left alone
    t.check();
    assert.equal(t.collections, 1);
    heap = 16 * MB; // a burst
    t.check();
    assert.deepEqual(collected, [11 * MB, 16 * MB]);
    t.check(); // 13 MB is the new baseline: nothing to do
    assert.equal(t.collections, 2);
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

  test('with node --expose-gc, a heap grown by a burst is given back', () => {
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
      console.log(JSON.stringify({ enabled: t.enabled, collections: t.collections, grown, after: getHeapStatistics().total_heap_size }));`;
    const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], {
      encoding: 'utf8',
      env: { ...process.env, OPENAUTO_LOG_STDERR: '1' },
    });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim()) as {
      enabled: boolean;
      collections: number;
      grown: number;
      after: number;
    };
    assert.equal(out.enabled, true);
    assert.equal(out.collections, 2);
    assert.ok(out.after < out.grown - 2 * MB, `heap ${out.grown} -> ${out.after}`);
  });
});
