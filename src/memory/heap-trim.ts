// Giving memory back after a burst. V8 grows its heap for a burst of requests and, once the memory reducer
// has run after start-up, often keeps what it grew: 10,000 requests left the daemon's heap at 15 MB holding
// 6.6 MB of live objects, ~8 MB of RSS above where it started, for as long as nothing else happened (the
// bench/memory.ts figures). A full collection gives it back (57 -> 49 MB measured). So every `intervalMs` the
// trimmer reads the heap's committed size and collects when it has grown more than `slackBytes` past either
//  - the heap after the last collection (growth under load: bounds the sawtooth while busy), or
//  - the floor, the smallest heap any collection has left. This one matters once the load stops: a collection
//    in the middle of a busy spell leaves a large heap behind (in-flight requests are live), and judged only
//    against that the quiet heap would never be collected (a 30-minute soak ended 3.2 MB up that way).
// A floor collection that cannot get back near the floor means the live set really grew; the floor check
// then backs off (1, 2, 4 ... `maxBackoffChecks` intervals) so a daemon that legitimately holds more does
// not collect every interval forever. Growth under load resets the back-off: the heap is moving, not
// settled. A quiet daemon at its floor does nothing: the check is one read of V8's counters.
//
// The collection needs node's --expose-gc (the shipped unit passes it); without it this does nothing.
import { getHeapStatistics } from 'node:v8';
import { errText, log } from '../log/journal.js';

export interface HeapTrimOptions {
  intervalMs: number;
  slackBytes: number;
  /** Longest wait, in checks, between floor collections that keep failing to reach the floor. */
  maxBackoffChecks?: number;
  /** The heap's committed bytes (V8's total_heap_size); injected by tests. */
  heapBytes?: () => number;
  /** A full, synchronous collection; `globalThis.gc` when node exposes it. */
  collect?: (() => void) | undefined;
}

/** What the trimmer knows between checks. Pure data, so the rule below is testable without a heap. */
export interface TrimState {
  /** Smallest heap a collection has left (undefined before the first). */
  floor: number | undefined;
  /** Heap left by the most recent collection. */
  last: number | undefined;
  /** Checks still to skip before the floor may trigger a collection again. */
  wait: number;
  /** Checks to wait after the next futile floor collection. */
  backoff: number;
}

export type TrimReason = 'first' | 'growth' | 'floor';

export const initialTrimState = (): TrimState => ({ floor: undefined, last: undefined, wait: 0, backoff: 1 });

/** Pure decision for one check: why to collect now, or undefined to leave the heap alone. */
export function trimReason(s: TrimState, heap: number, slack: number): TrimReason | undefined {
  if (s.floor === undefined || s.last === undefined) return 'first';
  if (heap > s.last + slack) return 'growth';
  if (heap > s.floor + slack && s.wait === 0) return 'floor';
  return undefined;
}

/** Pure update after a check: `after` is the heap left by the collection (undefined: none ran). */
export function nextTrimState(
  s: TrimState,
  reason: TrimReason | undefined,
  after: number | undefined,
  slack: number,
  maxBackoff: number,
): TrimState {
  if (after === undefined) return { ...s, wait: Math.max(0, s.wait - 1) };
  const floor = s.floor === undefined ? after : Math.min(s.floor, after);
  // Back near the floor, or still above it after a growth collection (the load is still on: the next check
  // may try the floor again): no waiting. A floor collection that stays above it means the live set really
  // grew: wait, longer each time.
  if (after <= floor + slack || reason !== 'floor') return { floor, last: after, wait: 0, backoff: 1 };
  return { floor, last: after, wait: s.backoff, backoff: Math.min(s.backoff * 2, maxBackoff) };
}

export class HeapTrimmer {
  private state = initialTrimState();
  private timer: NodeJS.Timeout | undefined;
  private readonly heapBytes: () => number;
  private readonly collect: (() => void) | undefined;
  private readonly maxBackoff: number;
  /** Collections run so far (GetStatus does not show it; the tests read it). */
  collections = 0;

  constructor(private readonly opts: HeapTrimOptions) {
    this.heapBytes = opts.heapBytes ?? (() => getHeapStatistics().total_heap_size);
    this.collect = 'collect' in opts ? opts.collect : exposedGc();
    this.maxBackoff = opts.maxBackoffChecks ?? 8;
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

  /** One check: collect when the rule says so, then remember what the heap came down to. */
  check(): void {
    if (!this.collect) return;
    const { slackBytes } = this.opts;
    const reason = trimReason(this.state, this.heapBytes(), slackBytes);
    let after: number | undefined;
    if (reason) {
      try {
        this.collect();
        this.collections++;
      } catch (err) {
        // Never expected; never worth stopping the daemon for.
        log.warning('a heap collection failed', { error: errText(err) });
      }
      after = this.heapBytes();
    }
    this.state = nextTrimState(this.state, reason, after, slackBytes, this.maxBackoff);
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
