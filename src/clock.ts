// The daemon's clocks. Schedules run on CLOCK_MONOTONIC (the clock of systemd's *TimestampMonotonic, immune to
// the Pi setting its time); callers see wall-clock ISO times.

export function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}

/** Monotonic ms → wall-clock ISO. The clocks' offset is kept while it holds within a second: read anew each
 * call, it would move by a millisecond now and then, and GetStatus's answer is cached only while it is the same. */
export class WallClock {
  private offset: number | undefined;

  /** A converter for one status dump (one offset for all its times). */
  converter(): (t: number | undefined) => string | null {
    const now = Date.now() - monotonicMs();
    if (this.offset === undefined || Math.abs(now - this.offset) > 1000) this.offset = now;
    const offset = this.offset;
    return (t) => (t === undefined ? null : new Date(offset + t).toISOString());
  }
}
