// Giving memory back after a burst. V8 grows its heap for a burst of requests and, once the memory reducer
// has run after start-up, often keeps what it grew: 10,000 requests left the daemon's heap at 15 MB holding
// 6.6 MB of live objects, ~8 MB of RSS above where it started, for as long as nothing else happened (the
// bench/memory.ts figures). A full collection gives it back (57 -> 49 MB measured). So every `intervalMs` the
// heap's committed size is compared with what it was after the last full collection; when it has grown by
// more than `slackBytes`, the trimmer collects once. A quiet daemon's heap does not grow: no collection then,
// and the check itself is one read of V8's counters.
//
// The collection needs node's --expose-gc (the shipped unit passes it); without it this does nothing.
import { getHeapStatistics } from 'node:v8';
import { errText, log } from '../log/journal.js';

export interface HeapTrimOptions {
  intervalMs: number;
  slackBytes: number;
  /** The heap's committed bytes (V8's total_heap_size); injected by tests. */
  heapBytes?: () => number;
  /** A full, synchronous collection; `globalThis.gc` when node exposes it. */
  collect?: (() => void) | undefined;
}

/** Pure decision: collect when the heap has grown more than `slack` past the baseline (none yet: collect). */
export function shouldTrim(heapBytes: number, baseline: number | undefined, slack: number): boolean {
  return baseline === undefined || heapBytes > baseline + slack;
}

export class HeapTrimmer {
  private baseline: number | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly heapBytes: () => number;
  private readonly collect: (() => void) | undefined;
  /** Collections run so far (GetStatus does not show it; the tests read it). */
  collections = 0;

  constructor(private readonly opts: HeapTrimOptions) {
    this.heapBytes = opts.heapBytes ?? (() => getHeapStatistics().total_heap_size);
    this.collect = 'collect' in opts ? opts.collect : exposedGc();
  }

  /** Whether collections can run at all (node was started with --expose-gc). */
  get enabled(): boolean {
    return this.collect !== undefined;
  }

  start(): void {
    if (!this.collect || this.timer) return;
    this.timer = setInterval(() => this.check(), this.opts.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One check: collect if the heap grew past the slack, then take the new baseline. */
  check(): void {
    if (!this.collect || !shouldTrim(this.heapBytes(), this.baseline, this.opts.slackBytes)) return;
    try {
      this.collect();
      this.collections++;
    } catch (err) {
      // Never expected; never worth stopping the daemon for.
      log.warning('a heap collection failed', { error: errText(err) });
    }
    this.baseline = this.heapBytes();
  }
}

function exposedGc(): (() => void) | undefined {
  const gc = (globalThis as { gc?: unknown }).gc;
  if (typeof gc !== 'function') return undefined;
  // Twice: the second, cheap one (~8 ms against ~16 ms for a 30 MB heap) also returns the pages the first
  // freed; measured, it takes another ~1 MB of RSS off.
  return () => {
    (gc as () => void)();
    (gc as () => void)();
  };
}
