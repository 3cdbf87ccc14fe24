// One place through which every restart of a watched unit goes, so a caller's RestartService, a config apply
// and the health monitor never overlap on the same unit: restarts of one unit run one after another, and the
// monitor skips a unit while anyone else holds it.
import { ServiceError } from '../errors.js';
import { errText, log } from '../log/journal.js';
import type { JobResult, SystemdManager } from './manager.js';
import type { StartLimits } from './start-limit.js';

/** How many restarts of one unit may wait behind the running one before callers get Busy. */
const MAX_WAITING = 4;

export type RestartOrigin = 'caller' | 'apply' | 'monitor';
export type HoldListener = (unit: string, origin: RestartOrigin, phase: 'start' | 'end') => void;

export class UnitRestarter {
  private readonly tails = new Map<string, Promise<unknown>>();
  private readonly depth = new Map<string, number>();
  private readonly holdListeners = new Set<HoldListener>();
  /** A restart per unit that waits for its turn: later requests join it instead of queueing another. */
  private readonly queued = new Map<string, Promise<JobResult>>();

  constructor(
    private readonly systemd: SystemdManager,
    private readonly timeoutMs: number,
    /** systemd's start limit: pacing, and clearing a unit that hit it (none: restart as asked). */
    readonly startLimits?: StartLimits,
  ) {}

  /** Told when anyone asks for a unit ('start', before waiting its turn) and when they are done ('end'). */
  onHold(listener: HoldListener): void {
    this.holdListeners.add(listener);
  }

  /** Restarts the unit, waiting its turn; resolves with systemd's job result ('done' on success). */
  restart(unit: string, origin: RestartOrigin): Promise<JobResult> {
    // A burst of requests becomes one restart: a request made while another restart of the unit still
    // waits for its turn is answered by that one (which starts after the request was made).
    const waiting = this.queued.get(unit);
    if (waiting) return waiting;
    const run: Promise<JobResult> = this.hold(unit, origin, () => {
      if (this.queued.get(unit) === run) this.queued.delete(unit);
      return this.runRestart(unit);
    });
    this.queued.set(unit, run);
    const forget = () => {
      if (this.queued.get(unit) === run) this.queued.delete(unit);
    };
    run.then(forget, forget);
    return run;
  }

  /**
   * One restart job, for a caller that already holds the unit (or through restart()): paced under systemd's
   * start limit, and a unit at the limit (whoever made it hit) is cleared first. A restart refused by the
   * limit all the same (starts by others meanwhile) is cleared and tried once more, so a valid configuration
   * is never taken for a broken one because of it.
   */
  async runRestart(unit: string): Promise<JobResult> {
    const limits = this.startLimits;
    if (!limits) return this.systemd.restart(unit, this.timeoutMs);
    await this.clearLimit(unit, 'before a restart');
    const waited = await limits.pace(unit);
    if (waited > 0) {
      log.info(`restart of ${unit} waited ${waited} ms for systemd's start limit`, {
        UNIT: unit,
        WAITED_MS: waited,
      });
    }
    const result = await this.systemd.restart(unit, this.timeoutMs);
    if (result === 'done' || !(await this.clearLimit(unit, 'its restart was refused'))) return result;
    await limits.pace(unit);
    const again = await this.systemd.restart(unit, this.timeoutMs);
    // Said plainly in the caller's error ("… failed to restart (start-limit-hit)").
    if (again !== 'done' && (await limits.atLimit(unit).catch(() => false))) return 'start-limit-hit';
    return again;
  }

  /** ResetFailedUnit when the unit is at start-limit-hit; whether it was. */
  private async clearLimit(unit: string, why: string): Promise<boolean> {
    const limits = this.startLimits as StartLimits;
    try {
      if (!(await limits.atLimit(unit))) return false;
      log.warning(`${unit} hit systemd's start limit; clearing it (ResetFailedUnit): ${why}`, {
        UNIT: unit,
        RESULT: 'start-limit-hit',
      });
      await limits.resetFailed(unit);
      return true;
    } catch (err) {
      log.warning('checking or clearing the start limit failed', { UNIT: unit, DETAIL: errText(err) });
      return false;
    }
  }

  /**
   * Runs fn while holding the unit (a config apply rewrites a file and restarts, possibly twice on rollback,
   * all as one turn). Throws ServiceError('Busy') when too many are already waiting, except for an apply:
   * applies already waited in the applier's one queue, whose limit is the only Busy they answer.
   */
  async hold<T>(unit: string, origin: RestartOrigin, fn: () => Promise<T>): Promise<T> {
    const waiting = this.depth.get(unit) ?? 0;
    if (waiting > MAX_WAITING && origin !== 'apply') {
      throw new ServiceError('Busy', `too many restarts of ${unit} are waiting`);
    }
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
