// Giving memory back after a burst: V8 keeps a heap a burst of requests grew, and glibc the memory it freed.
// Every `intervalMs` the process's anonymous resident memory (RssAnon: V8's heap pages in use, malloc's
// arenas, buffers; what the memory goal counts) is read, and a full collection runs when it has grown
// `slackBytes` past the last collection (growth under load) or past the floor, the least any collection
// left (a quiet daemon after a burst). A floor collection that frees little means the live set grew: the
// floor check backs off. (It read V8's committed heap size before: a burst that left little garbage on the
// heap but ~2 MB in malloc's arenas and the young generation was never collected.) Collects through
// native/memory (V8's low-memory collection and malloc_trim), or node's --expose-gc gc() where the addon is
// missing; with neither nothing happens. Figures: README, "Memory".
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { errText, log } from '../log/journal.js';

export interface HeapTrimOptions {
  intervalMs: number;
  slackBytes: number;
  /** Longest wait, in checks, between floor collections that keep failing to reach the floor. */
  maxBackoffChecks?: number;
  /** The memory judged: anonymous resident bytes (anonBytes); injected by tests. */
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
    this.heapBytes = opts.heapBytes ?? anonBytes;
    this.collect = 'collect' in opts ? opts.collect : defaultCollect();
    this.maxBackoff = opts.maxBackoffChecks ?? 8;
  }

  /** Whether collections can run at all (native/memory loaded, or node was started with --expose-gc). */
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

/**
 * The process's anonymous resident memory (RssAnon of /proc/self/status, in bytes); V8's committed heap size
 * where that cannot be read. Read once per check: a 1.5 KB procfs read.
 */
export function anonBytes(): number {
  try {
    const kb = /^RssAnon:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'latin1'))?.[1];
    if (kb !== undefined) return Number(kb) * 1024;
  } catch {
    // no /proc: fall through
  }
  return v8().getHeapStatistics().total_heap_size;
}

/** node:v8, loaded only where /proc cannot be read (after ready, never with the bundle): ~0.8 ms of a start
 * under the unit's flags (it loads node's heap, promise-hook and performance-observer modules with it). */
let v8Module: typeof import('node:v8') | undefined;
function v8(): typeof import('node:v8') {
  v8Module ??= createRequire(import.meta.url)('node:v8') as typeof import('node:v8');
  return v8Module;
}

/** native/memory's reduceHeap and mallocTrim; undefined where the addon cannot load (a build without it). */
function memoryAddon(): { reduceHeap: () => void; mallocTrim: () => number } | undefined {
  try {
    return createRequire(import.meta.url)('openauto-memory') as {
      reduceHeap: () => void;
      mallocTrim: () => number;
    };
  } catch (err) {
    log.debug('native/memory is not available', { error: errText(err) });
    return undefined;
  }
}

/**
 * The collection: V8's low-memory collection (compacting, unmapping the pages it frees), then glibc's
 * malloc_trim for what it freed off V8's heap (buffers, node's own objects), which glibc would otherwise
 * keep in its arenas. Measured in the daemon after 10,000 requests (README, "Memory"): ~0.4 MB less than two
 * plain gc() calls, and malloc_trim another ~0.6 MB. Both again a second later: what the first pass freed
 * only once the event loop ran (finalizers, V8's tasks) is given back then, not a check (30 s) later: after
 * 32 clients' burst 9.9 MB at the next reading instead of 10.8 (README, "Memory"). Without the addon,
 * node's --expose-gc gc() twice (the second, cheap one also returns pages the first freed), when node
 * exposes it.
 */
const SECOND_PASS_MS = 1000;

export function defaultCollect(): (() => void) | undefined {
  const native = memoryAddon();
  if (native) {
    return () => {
      native.reduceHeap();
      native.mallocTrim();
      setTimeout(() => {
        native.reduceHeap();
        native.mallocTrim();
      }, SECOND_PASS_MS).unref();
    };
  }
  const gc = (globalThis as { gc?: unknown }).gc;
  if (typeof gc !== 'function') return undefined;
  return () => {
    (gc as () => void)();
    (gc as () => void)();
  };
}
