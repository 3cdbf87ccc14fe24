// The I/O side of health: feeds systemd's unit signals, a safety-net poll and the functional checks into
// classification, keeps the health map, and emits 'healthChanged' only when a state really changes.
import { EventEmitter } from 'node:events';
import type { Bus } from '../bus/connection.js';
import { errText, log } from '../log/journal.js';
import type { Json } from '../service.js';
import type { SystemdManager, UnitState } from '../systemd/manager.js';
import type { UnitRestarter } from '../systemd/restarts.js';
import { type ApExpectation, checkAdapter, checkAddress, checkNetworkd, type FunctionalResult } from './functional.js';
import {
  type HealthMap,
  type HealthState,
  initialHealth,
  SERVICE_NAMES,
  SERVICES,
  type ServiceName,
  sameHealth,
} from './states.js';

export interface MonitorSettings {
  pollMs: number;
  activatingTimeoutMs: number;
}

export interface MonitorDeps {
  bus: Bus;
  systemd: SystemdManager;
  restarter: UnitRestarter;
  settings: MonitorSettings;
  /** What the AP should look like, from the applied config (re-read on each check). */
  expectation: () => ApExpectation;
  /** Wall clock (ms) for display; monotonic time comes from process.hrtime. */
  now?: () => number;
}

interface Record_ {
  unit?: UnitState;
  functional?: FunctionalResult;
  state: HealthState;
  lastChangeAt?: number;
  checking: boolean;
  dirty: boolean;
}

/** CLOCK_MONOTONIC in microseconds, the clock of systemd's *TimestampMonotonic properties. */
export function monotonicUs(): bigint {
  return process.hrtime.bigint() / 1000n;
}

/** From systemd's unit state and the functional result to one of the contract's health states. */
export function classifyUnit(
  unit: UnitState | undefined,
  functional: FunctionalResult | undefined,
  nowUs: bigint,
  activatingTimeoutMs: number,
): HealthState {
  if (!unit) return 'unknown';
  if (unit.loadState === 'not-found' || unit.loadState === 'masked') return 'missing';
  switch (unit.activeState) {
    case 'active':
    case 'reloading':
      if (functional && !functional.ok) return 'degraded';
      return 'active';
    case 'activating': {
      const since = unit.inactiveExitMonotonicUs;
      if (since > 0n && nowUs - since > BigInt(activatingTimeoutMs) * 1000n) return 'failed';
      return 'activating';
    }
    case 'failed':
      return 'failed';
    case 'deactivating':
    case 'inactive':
      return 'inactive';
    default:
      return 'unknown';
  }
}

export class HealthMonitor extends EventEmitter {
  private readonly records = new Map<ServiceName, Record_>();
  private current: HealthMap = initialHealth();
  private pollTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly now: () => number;

  constructor(private readonly deps: MonitorDeps) {
    super();
    this.now = deps.now ?? Date.now;
    for (const s of SERVICE_NAMES) this.records.set(s, { state: 'unknown', checking: false, dirty: false });
  }

  /** Loads the units, reads everything once (the first full health check), then watches. */
  async start(): Promise<void> {
    const { systemd } = this.deps;
    systemd.onUnitChanged((unit) => {
      const service = SERVICE_NAMES.find((s) => SERVICES[s].unit === unit);
      if (service) this.poke(service);
    });
    await Promise.all(SERVICE_NAMES.map((s) => this.refreshUnit(s)));
    await Promise.all(SERVICE_NAMES.map((s) => this.evaluate(s)));
    this.schedulePoll();
  }

  stop(): void {
    this.stopped = true;
    if (this.pollTimer) clearTimeout(this.pollTimer);
  }

  health(): HealthMap {
    return { ...this.current };
  }

  status(): { [key: string]: Json } {
    const out: { [key: string]: Json } = {};
    for (const s of SERVICE_NAMES) {
      const r = this.records.get(s) as Record_;
      out[s] = {
        unit: SERVICES[s].unit,
        state: r.state,
        active_state: r.unit?.activeState ?? 'unknown',
        sub_state: r.unit?.subState ?? 'unknown',
        functional_ok: r.functional?.ok ?? null,
        functional_detail: r.functional?.detail ?? 'not checked',
        last_change: r.lastChangeAt ?? null,
      };
    }
    return out;
  }

  /** Re-evaluates a service soon (coalesced): after a unit signal, a restart, a networkd or BlueZ change. */
  poke(service: ServiceName): void {
    if (this.stopped) return;
    void this.evaluate(service);
  }

  private schedulePoll(): void {
    if (this.stopped) return;
    this.pollTimer = setTimeout(() => {
      void Promise.all(
        SERVICE_NAMES.map(async (s) => {
          await this.refreshUnit(s);
          await this.evaluate(s);
        }),
      ).finally(() => this.schedulePoll());
    }, this.deps.settings.pollMs);
    this.pollTimer.unref();
  }

  private async refreshUnit(service: ServiceName): Promise<void> {
    const unit = SERVICES[service].unit;
    try {
      await this.deps.systemd.refresh(unit);
    } catch (err) {
      // A hung or failing systemd call counts as a failed check, not a hang.
      log.warning('reading unit state failed', { service, unit, error: errText(err) });
      const r = this.records.get(service) as Record_;
      r.unit = undefined;
    }
  }

  private async functional(service: ServiceName, unit: UnitState | undefined): Promise<FunctionalResult | undefined> {
    if (!unit || (unit.activeState !== 'active' && unit.activeState !== 'reloading')) return undefined;
    const exp = this.deps.expectation();
    switch (service) {
      case 'hostapd':
        return checkAddress(exp);
      case 'networkd':
        return checkNetworkd(this.deps.bus, exp);
      case 'bluetooth':
        return checkAdapter(this.deps.bus);
    }
  }

  /** One evaluation at a time per service; a request during one makes it run once more afterwards. */
  private async evaluate(service: ServiceName): Promise<void> {
    const r = this.records.get(service) as Record_;
    if (r.checking) {
      r.dirty = true;
      return;
    }
    r.checking = true;
    try {
      do {
        r.dirty = false;
        const unit = this.deps.systemd.state(SERVICES[service].unit);
        r.unit = unit;
        r.functional = await this.functional(service, unit);
        const state = classifyUnit(unit, r.functional, monotonicUs(), this.deps.settings.activatingTimeoutMs);
        this.setState(service, state, r);
      } while (r.dirty && !this.stopped);
    } catch (err) {
      log.err('health evaluation failed', { service, error: errText(err) });
    } finally {
      r.checking = false;
    }
  }

  private setState(service: ServiceName, state: HealthState, r: Record_): void {
    if (r.state === state) return;
    const previous = r.state;
    r.state = state;
    r.lastChangeAt = this.now();
    const next = { ...this.current, [service]: state };
    log.notice(`${service} is ${state}`, {
      service,
      unit: SERVICES[service].unit,
      state,
      previous_state: previous,
      detail: r.functional?.detail,
    });
    if (!sameHealth(next, this.current)) {
      this.current = next;
      this.emit('healthChanged', this.health());
    }
  }
}
