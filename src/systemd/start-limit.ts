// systemd's start limit (StartLimitBurst starts per StartLimitIntervalSec; Debian's hostapd, networkd and
// bluetooth keep the default 5 per 10 s): past it systemd refuses every start ("start-limit-hit") until the
// interval is over or someone calls ResetFailedUnit. The daemon's own restarts are paced to stay one start
// below the burst (the spare is for the app, an admin or systemd's own Restart=), and a unit found at the
// limit is cleared with ResetFailedUnit right before the restart the recovery rules ask for.
import type { Bus } from '../bus/connection.js';
import { monotonicMs } from '../clock.js';
import type { SystemdManager } from './manager.js';

export interface StartLimit {
  burst: number;
  intervalMs: number;
}

/** Margin past the interval before a start that had to wait (the two clocks are read at different times). */
const PACE_MARGIN_MS = 250;

/**
 * How long to wait before one more start keeps at most `burst - 1` starts (this one included) inside any
 * window of `intervalMs`, given our earlier starts (monotonic ms, oldest first). 0: start now. A sliding
 * window is stricter than systemd's fixed one (which begins at the first start), so staying inside it is
 * staying inside systemd's.
 */
export function paceDelay(history: readonly number[], now: number, limit: StartLimit): number {
  if (limit.burst <= 0 || limit.intervalMs <= 0) return 0;
  const allowed = Math.max(1, limit.burst - 1);
  const recent = history.filter((t) => t > now - limit.intervalMs);
  if (recent.length < allowed) return 0;
  // The start that must leave the window first.
  const oldest = recent[recent.length - allowed] as number;
  return Math.max(0, oldest + limit.intervalMs + PACE_MARGIN_MS - now);
}

export class StartLimits {
  private readonly limits = new Map<string, StartLimit>();
  private readonly history = new Map<string, number[]>();
  /** Per unit: serializes pace() so two callers never take the same free slot. */
  private readonly tails = new Map<string, Promise<unknown>>();

  constructor(
    private readonly bus: Bus,
    private readonly systemd: SystemdManager,
    private readonly now: () => number = monotonicMs,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {}

  /** The unit's StartLimitBurst and StartLimitIntervalUSec (cached: they change only with a daemon-reload). */
  async limit(unit: string): Promise<StartLimit> {
    const known = this.limits.get(unit);
    if (known) return known;
    const path = await this.systemd.watch(unit);
    const target = {
      destination: 'org.freedesktop.systemd1',
      path,
      interface: 'org.freedesktop.systemd1.Unit',
    };
    const limit = {
      burst: Number(await this.bus.getProperty(target, 'StartLimitBurst')),
      intervalMs: Number(
        BigInt(String(await this.bus.getProperty(target, 'StartLimitIntervalUSec'))) / 1000n,
      ),
    };
    this.limits.set(unit, limit);
    return limit;
  }

  /** The service's Result ('success', 'exit-code', 'start-limit-hit', …), read now. */
  async result(unit: string): Promise<string> {
    const path = await this.systemd.watch(unit);
    return String(
      await this.bus.getProperty(
        { destination: 'org.freedesktop.systemd1', path, interface: 'org.freedesktop.systemd1.Service' },
        'Result',
      ),
    );
  }

  /** Whether the unit is failed because systemd refused to start it again. */
  async atLimit(unit: string): Promise<boolean> {
    if (this.systemd.state(unit)?.activeState !== 'failed') return false;
    return (await this.result(unit)) === 'start-limit-hit';
  }

  /** ResetFailedUnit: clears the failed state and systemd's start counter of the unit. */
  async resetFailed(unit: string): Promise<void> {
    await this.bus.call({
      destination: 'org.freedesktop.systemd1',
      path: '/org/freedesktop/systemd1',
      interface: 'org.freedesktop.systemd1.Manager',
      member: 'ResetFailedUnit',
      signature: 's',
      body: [unit],
    });
    this.history.delete(unit);
  }

  /** Waits until one more start of ours stays below the limit, then counts it. Returns the ms waited. */
  pace(unit: string): Promise<number> {
    const run = (this.tails.get(unit) ?? Promise.resolve()).then(() => this.paceNow(unit));
    this.tails.set(
      unit,
      run.catch(() => undefined),
    );
    return run;
  }

  private async paceNow(unit: string): Promise<number> {
    let limit: StartLimit;
    try {
      limit = await this.limit(unit);
    } catch {
      limit = { burst: 5, intervalMs: 10_000 }; // systemd's default
    }
    const started = this.now();
    for (;;) {
      const wait = paceDelay(this.history.get(unit) ?? [], this.now(), limit);
      if (wait <= 0) break;
      await this.sleep(wait);
    }
    const now = this.now();
    const kept = (this.history.get(unit) ?? []).filter((t) => t > now - limit.intervalMs);
    kept.push(now);
    this.history.set(unit, kept);
    return now - started;
  }
}
