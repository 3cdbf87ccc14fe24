// One place through which every restart of a watched unit goes, so a caller's RestartService, a config apply
// and the health monitor never overlap on the same unit: restarts of one unit run one after another, and the
// monitor skips a unit while anyone else holds it.
import { ServiceError } from '../errors.js';
import type { JobResult, SystemdManager } from './manager.js';

/** How many restarts of one unit may wait behind the running one before callers get Busy. */
const MAX_WAITING = 4;

export type RestartOrigin = 'caller' | 'apply' | 'monitor';
export type HoldListener = (unit: string, origin: RestartOrigin, phase: 'start' | 'end') => void;

export class UnitRestarter {
  private readonly tails = new Map<string, Promise<unknown>>();
  private readonly depth = new Map<string, number>();
  private readonly holdListeners = new Set<HoldListener>();

  constructor(
    private readonly systemd: SystemdManager,
    private readonly timeoutMs: number,
  ) {}

  /** Told when anyone asks for a unit ('start', before waiting its turn) and when they are done ('end'). */
  onHold(listener: HoldListener): void {
    this.holdListeners.add(listener);
  }

  /** Restarts the unit, waiting its turn; resolves with systemd's job result ('done' on success). */
  restart(unit: string, origin: RestartOrigin): Promise<JobResult> {
    return this.hold(unit, origin, () => this.systemd.restart(unit, this.timeoutMs));
  }

  /**
   * Runs fn while holding the unit (a config apply rewrites a file and restarts, possibly twice on rollback,
   * all as one turn). Throws ServiceError('Busy') when too many are already waiting.
   */
  async hold<T>(unit: string, origin: RestartOrigin, fn: () => Promise<T>): Promise<T> {
    const waiting = this.depth.get(unit) ?? 0;
    if (waiting > MAX_WAITING) throw new ServiceError('Busy', `too many restarts of ${unit} are waiting`);
    this.depth.set(unit, waiting + 1);
    this.tell(unit, origin, 'start');
    const prev = this.tails.get(unit) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.tails.set(unit, tail);
    try {
      return await run;
    } finally {
      const left = (this.depth.get(unit) ?? 1) - 1;
      if (left === 0) {
        this.depth.delete(unit);
        if (this.tails.get(unit) === tail) this.tails.delete(unit);
      } else this.depth.set(unit, left);
      this.tell(unit, origin, 'end');
    }
  }

  private tell(unit: string, origin: RestartOrigin, phase: 'start' | 'end'): void {
    for (const l of this.holdListeners) l(unit, origin, phase);
  }
}
