// The proxy route's state as pure logic: what the three checks mean for the state and the error a caller
// sees, and when redsocks is restarted after it died (the recovery rules of the other services: at once, then
// fast retries, then slow ones forever; a recovery resets the counter). No I/O, no timers, no clock: every
// input carries `now` (ms).

export const PROXY_STATES = ['disabled', 'active', 'degraded', 'failed'] as const;
export type ProxyState = (typeof PROXY_STATES)[number];

/** The Python service's names, kept for the shipping app (`iptables` even though nftables does the work). */
export interface ProxyChecks {
  listener: boolean;
  iptables: boolean;
  upstream: boolean;
}

export const NO_CHECKS: Readonly<ProxyChecks> = Object.freeze({
  listener: false,
  iptables: false,
  upstream: false,
});

/** The status object both faces return (`ok` is added per answer). */
export interface ProxyStatus {
  state: ProxyState;
  checks: ProxyChecks;
  error_code: string | null;
  error: string | null;
  verified_at: string | null;
  live_check: boolean;
}

/** failed = the local pipeline is broken (redsocks not listening, rules or route missing); degraded = the
 * phone's SOCKS server cannot be reached; active = all three hold. */
export function stateOf(checks: ProxyChecks): Exclude<ProxyState, 'disabled'> {
  if (!checks.listener || !checks.iptables) return 'failed';
  if (!checks.upstream) return 'degraded';
  return 'active';
}

/** The first problem, in the Python service's order and names. */
export function errorOf(
  checks: ProxyChecks,
  upstream: { host: string; port: number },
  listenPort: number,
): { error_code: string | null; error: string | null } {
  if (!checks.listener)
    return {
      error_code: 'listener_down',
      error: `redsocks is not listening on 127.0.0.1:${listenPort}`,
    };
  if (!checks.iptables)
    return {
      error_code: 'routing_missing',
      error: 'the redirect table or the default route over the AP link is missing',
    };
  if (!checks.upstream)
    return {
      error_code: 'upstream_unreachable',
      error: `upstream SOCKS proxy not reachable at ${upstream.host}:${upstream.port}`,
    };
  return { error_code: null, error: null };
}

/** ISO 8601 UTC to the second, as the Python service wrote verified_at. */
export function isoSeconds(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 19)}Z`;
}

export interface RestartRules {
  fastRetries: number;
  fastRetryMs: number;
  slowRetryMs: number;
  healthyResetMs: number;
  resetOnRecovery: boolean;
}

/** When to restart redsocks' unit. */
export class RestartSchedule {
  private attempts = 0;
  private lastAttemptAt: number | undefined;
  private pendingAt: number | undefined;
  private upSince: number | undefined;

  constructor(private readonly rules: RestartRules) {}

  /** The unit is down (failed or inactive while the route is on). Returns when to attempt. */
  down(now: number): number {
    this.upSince = undefined;
    if (this.pendingAt === undefined) {
      const interval =
        this.attempts <= this.rules.fastRetries ? this.rules.fastRetryMs : this.rules.slowRetryMs;
      this.pendingAt =
        this.attempts === 0 || this.lastAttemptAt === undefined
          ? now
          : Math.max(now, this.lastAttemptAt + interval);
    }
    return this.pendingAt;
  }

  /** Whether an attempt is due now. */
  due(now: number): boolean {
    return this.pendingAt !== undefined && now >= this.pendingAt;
  }

  /** An attempt starts now. Returns its number (1 = the first since the counter was reset). */
  attempt(now: number): number {
    this.attempts++;
    this.lastAttemptAt = now;
    this.pendingAt = undefined;
    return this.attempts;
  }

  /** The unit is up (active and listening). */
  up(now: number): void {
    this.pendingAt = undefined;
    if (this.upSince === undefined) this.upSince = now;
    if (this.rules.resetOnRecovery || now - this.upSince >= this.rules.healthyResetMs) this.attempts = 0;
  }

  get retries(): number {
    return this.attempts;
  }

  /** The route was turned off or set anew: forget the history. */
  reset(): void {
    this.attempts = 0;
    this.lastAttemptAt = undefined;
    this.pendingAt = undefined;
    this.upSince = undefined;
  }
}
