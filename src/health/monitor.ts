// The I/O side of health: feeds systemd's unit signals, a safety-net poll and the functional checks into one
// RecoveryTracker per service (the pure rules live there), runs the repairs it asks for through the
// UnitRestarter, keeps the health map, and emits 'healthChanged' only when a state really changes.
import { EventEmitter } from 'node:events';
import type { Bus } from '../bus/connection.js';
import { monotonicMs, WallClock } from '../clock.js';
import { errText, log } from '../log/journal.js';
import type { Json } from '../service.js';
import type { SystemdManager, UnitState } from '../systemd/manager.js';
import type { UnitRestarter } from '../systemd/restarts.js';
import type { UnitObservation } from './classify.js';
import {
  type ApExpectation,
  checkAdapter,
  checkAddress,
  checkNetworkd,
  type FunctionalResult,
} from './functional.js';
import { DEFAULT_RECOVERY_SETTINGS, type RecoverySettings, RecoveryTracker, type Step } from './recovery.js';
import { powerOnAdapter } from './repairs.js';
import { type HealthMap, initialHealth, SERVICE_NAMES, SERVICES, type ServiceName } from './states.js';

export interface MonitorDeps {
  bus: Bus;
  systemd: SystemdManager;
  restarter: UnitRestarter;
  pollMs: number;
  recovery: Partial<RecoverySettings>;
  /** What the AP should look like, from the applied config (read on each check). */
  expectation: () => ApExpectation;
}

interface Watched {
  readonly service: ServiceName;
  readonly unit: string;
  readonly tracker: RecoveryTracker;
  functional?: FunctionalResult;
  timer?: NodeJS.Timeout;
  checking: boolean;
  dirty: boolean;
  /** Callers waiting for the evaluation in progress (including the re-run a poke during it asks for). */
  waiters: (() => void)[];
  /** When the unit was first seen failed/inactive this time (monotonic ms), to give systemd's own
   * Restart= its turn; cleared when it is up again. */
  downSince?: number;
  downTimer?: NodeJS.Timeout;
  /** The unit is failed at systemd's start limit (Result=start-limit-hit), and when that was last seen. */
  startLimitHit: boolean;
  startLimitHitAt?: number;
}

/** How long after systemd's RestartSec its own restart must have begun before we step in. */
const OWN_RESTART_MARGIN_MS = 1500;

export function observation(unit: UnitState, functional: FunctionalResult | undefined): UnitObservation {
  return {
    loadState: unit.loadState,
    activeState: unit.activeState,
    subState: unit.subState,
    ...(unit.inactiveExitMonotonicUs > 0n
      ? { activatingSinceMs: Number(unit.inactiveExitMonotonicUs / 1000n) }
      : {}),
    jobQueued: unit.jobPath !== '/' && unit.jobPath !== '',
    ...(functional ? { functional } : {}),
  };
}

/** The functional check applies to a running unit only. */
function checkApplies(unit: UnitState): boolean {
  return unit.activeState === 'active' || unit.activeState === 'reloading';
}

/**
 * hostapd's functional check fails when wlan0 lacks the AP address, which is networkd's to repair: hostapd
 * waits twice as long before its own repair, so networkd's restart (and the address) comes first.
 */
function trackerSettings(service: ServiceName, base: Partial<RecoverySettings>): Partial<RecoverySettings> {
  if (service !== 'hostapd') return base;
  const grace = base.degradedGraceMs ?? DEFAULT_RECOVERY_SETTINGS.degradedGraceMs;
  return { ...base, degradedGraceMs: grace * 2 };
}

/** How often the safety-net poll also re-runs the bus-backed functional checks of healthy services. */
const DEEP_CHECK_MS = 60_000;

export class HealthMonitor extends EventEmitter {
  private readonly watched = new Map<ServiceName, Watched>();
  private current: HealthMap = initialHealth();
  private polls = 0;
  private changes = 0;
  private pollTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly wall = new WallClock();

  constructor(private readonly deps: MonitorDeps) {
    super();
    for (const service of SERVICE_NAMES) {
      this.watched.set(service, {
        service,
        unit: SERVICES[service].unit,
        tracker: new RecoveryTracker(service, trackerSettings(service, deps.recovery)),
        checking: false,
        dirty: false,
        waiters: [],
        startLimitHit: false,
      });
    }
    // A caller's restart or a config apply holds the unit: the tracker must keep its hands off meanwhile.
    deps.restarter.onHold((unit, origin, phase) => {
      if (origin === 'monitor') return;
      const w = [...this.watched.values()].find((x) => x.unit === unit);
      if (!w) return;
      const now = monotonicMs();
      this.handle(w, phase === 'start' ? w.tracker.externalStarted(now) : w.tracker.externalFinished(now));
      if (phase === 'end') this.poke(w.service);
    });
  }

  /** Loads the units, reads everything once (the first full health check), then watches. */
  async start(): Promise<void> {
    const { systemd } = this.deps;
    systemd.onUnitChanged((unit) => {
      const w = [...this.watched.values()].find((x) => x.unit === unit);
      if (w) this.poke(w.service);
    });
    await this.watchFunctionalSignals();
    await Promise.all(SERVICE_NAMES.map((s) => this.refreshAndEvaluate(s)));
    this.schedulePoll();
  }

  /**
   * networkd's link properties (address and administrative state) and BlueZ's adapter properties change
   * without the units changing: re-check at once instead of waiting for the safety-net poll.
   */
  private async watchFunctionalSignals(): Promise<void> {
    const { bus } = this.deps;
    const props = 'org.freedesktop.DBus.Properties';
    await bus.addMatch(
      `type='signal',sender='org.freedesktop.network1',interface='${props}',member='PropertiesChanged',path_namespace='/org/freedesktop/network1/link'`,
    );
    bus.onSignal(
      {
        sender: 'org.freedesktop.network1',
        interface: props,
        member: 'PropertiesChanged',
        pathNamespace: '/org/freedesktop/network1/link',
      },
      () => {
        this.poke('hostapd');
        this.poke('networkd');
      },
    );
    await bus.addMatch(
      `type='signal',sender='org.bluez',interface='${props}',member='PropertiesChanged',path_namespace='/org/bluez'`,
    );
    const bluez = {
      sender: 'org.bluez',
      interface: props,
      member: 'PropertiesChanged',
      pathNamespace: '/org/bluez',
    };
    bus.onSignal(bluez, (msg) => {
      if (msg.body[0] === 'org.bluez.Adapter1') this.poke('bluetooth');
    });
    // An adapter appearing or vanishing is an ObjectManager signal, not a property change.
    const om = 'org.freedesktop.DBus.ObjectManager';
    await bus.addMatch(`type='signal',sender='org.bluez',interface='${om}'`);
    for (const member of ['InterfacesAdded', 'InterfacesRemoved']) {
      bus.onSignal({ sender: 'org.bluez', interface: om, member }, (msg) => {
        if (/^\/org\/bluez\/hci\d+$/.test(String(msg.body[0]))) this.poke('bluetooth');
      });
    }
    // A restarted networkd may have configured the link before it is back on the bus: then no link signal
    // reaches us, and its new owner taking the name is the moment to look again.
    await bus.addMatch(
      "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='org.freedesktop.network1'",
    );
    bus.onSignal(
      {
        sender: 'org.freedesktop.DBus',
        path: '/org/freedesktop/DBus',
        interface: 'org.freedesktop.DBus',
        member: 'NameOwnerChanged',
      },
      (msg) => {
        if (msg.body[0] !== 'org.freedesktop.network1' || msg.body[2] === '') return;
        this.poke('hostapd');
        this.poke('networkd');
      },
    );
  }

  stop(): void {
    this.stopped = true;
    if (this.pollTimer) clearTimeout(this.pollTimer);
    for (const w of this.watched.values()) {
      if (w.timer) clearTimeout(w.timer);
      if (w.downTimer) clearTimeout(w.downTimer);
    }
  }

  health(): HealthMap {
    return { ...this.current };
  }

  /** Grows whenever something status() shows may have changed (a unit's state, a check, a tracker's input). */
  get statusRevision(): number {
    let n = this.changes + this.deps.systemd.revision;
    for (const w of this.watched.values()) n += w.tracker.revision;
    return n;
  }

  /** Per service: unit state, functional result, retries, recovery mode, next attempt and last change. */
  status(): { [key: string]: Json } {
    // Tracker times are monotonic; shown as wall-clock ISO times.
    const iso = this.wall.converter();
    const out: { [key: string]: Json } = {};
    for (const w of this.watched.values()) {
      const unit = this.deps.systemd.state(w.unit);
      const st = w.tracker.status();
      out[w.service] = {
        unit: w.unit,
        state: st.state,
        active_state: unit?.activeState ?? 'unknown',
        sub_state: unit?.subState ?? 'unknown',
        functional_ok: w.functional?.ok ?? null,
        functional_detail: w.startLimitHit
          ? "not started: systemd's start limit was hit; the next recovery attempt clears it (ResetFailedUnit)"
          : (w.functional?.detail ?? 'not checked (unit not active)'),
        start_limit_hit: w.startLimitHit,
        start_limit_hit_at: iso(w.startLimitHitAt),
        retries: st.retries,
        recovery_mode: st.mode,
        next_attempt: iso(st.nextAttemptAt),
        last_change: iso(st.lastChangeAt),
        last_action: st.lastAction ?? null,
        last_action_at: iso(st.lastActionAt),
        waiting_for: st.waitingFor ?? null,
      };
    }
    return out;
  }

  /** Re-evaluates a service (coalesced): after a unit signal, a restart, a networkd or BlueZ change. */
  poke(service: ServiceName): void {
    if (this.stopped) return;
    void this.evaluate(service);
  }

  private schedulePoll(): void {
    if (this.stopped) return;
    this.pollTimer = setTimeout(() => {
      void this.poll().finally(() => this.schedulePoll());
    }, this.deps.pollMs);
    this.pollTimer.unref();
  }

  /**
   * The safety net, kept cheap because it runs forever on a small CPU: one ListUnitsByNames for the three
   * units (a full GetAll only for a unit whose state differs from what the signals said), hostapd's check of
   * the AP address (local: getifaddrs), and the bus-backed checks (networkd, BlueZ) for services that are not
   * healthy and, for healthy ones, once a minute: networkd's link and BlueZ's adapter signals report the rest
   * at once.
   */
  private async poll(): Promise<void> {
    this.polls++;
    const deep = this.polls % Math.max(1, Math.round(DEEP_CHECK_MS / this.deps.pollMs)) === 0;
    let changed: string[];
    try {
      changed = await this.deps.systemd.changedSince(SERVICE_NAMES.map((s) => SERVICES[s].unit));
    } catch (err) {
      log.warning('listing unit states failed', { error: errText(err) });
      changed = SERVICE_NAMES.map((s) => SERVICES[s].unit);
    }
    await Promise.all(
      SERVICE_NAMES.map((s) => {
        if (changed.includes(SERVICES[s].unit)) return this.refreshAndEvaluate(s);
        if (deep || s === 'hostapd' || this.current[s] !== 'active') return this.evaluate(s);
        return undefined;
      }),
    );
  }

  /** Reads the unit's state (GetAll); false when that failed. */
  private async refreshUnit(service: ServiceName): Promise<boolean> {
    const unit = SERVICES[service].unit;
    try {
      await this.deps.systemd.refresh(unit);
      return true;
    } catch (err) {
      // A hung or failing systemd call is logged and the state stays what the signals last said; the
      // next poll tries again (bounded, so it never hangs the monitor).
      log.warning('reading unit state failed', { service, unit, error: errText(err) });
      return false;
    }
  }

  /**
   * Reads the unit and evaluates it once, resolving when that evaluation is done. A successful read has
   * already started the evaluation (systemd.refresh notifies onUnitChanged, which pokes): wait for that one
   * instead of asking for a second run of every functional check.
   */
  private async refreshAndEvaluate(service: ServiceName): Promise<void> {
    if (await this.refreshUnit(service)) await this.settled(service);
    else await this.evaluate(service);
  }

  /** Resolves when no evaluation of the service is in progress (or asked for) any more. */
  private settled(service: ServiceName): Promise<void> {
    const w = this.watched.get(service) as Watched;
    if (!w.checking) return Promise.resolve();
    return new Promise((resolve) => w.waiters.push(resolve));
  }

  private async functional(w: Watched, unit: UnitState): Promise<FunctionalResult | undefined> {
    if (!checkApplies(unit)) return undefined;
    const exp = this.deps.expectation();
    try {
      switch (w.service) {
        case 'hostapd':
          return checkAddress(exp);
        case 'networkd':
          return await checkNetworkd(this.deps.bus, exp);
        case 'bluetooth':
          return await checkAdapter(this.deps.bus);
      }
    } catch (err) {
      return { ok: false, detail: `check failed: ${errText(err)}` };
    }
  }

  /**
   * One evaluation at a time per service; a request during one makes it run once more afterwards. The
   * promise resolves when the evaluation that observes the state as of the call is done (for a request
   * during a run: after the re-run), so start() really waits for the first full health check.
   */
  private async evaluate(service: ServiceName): Promise<void> {
    const w = this.watched.get(service) as Watched;
    if (w.checking) {
      w.dirty = true;
      return new Promise((resolve) => w.waiters.push(resolve));
    }
    w.checking = true;
    try {
      do {
        w.dirty = false;
        const unit = this.deps.systemd.state(w.unit);
        if (!unit) break;
        w.functional = await this.functional(w, unit);
        this.changes++;
        // The unit may have changed while the functional check ran: observe the latest state. But a unit
        // that has just become active was not checked at all (the check was skipped for the state before),
        // and an unchecked active counts as healthy: it would be taken for a recovery (and reset the retry
        // counter) just before the check finds it still degraded. Check it first.
        const latest = this.deps.systemd.state(w.unit) ?? unit;
        if (checkApplies(latest) && !checkApplies(unit)) {
          w.dirty = true;
          continue;
        }
        await this.checkStartLimit(w, latest);
        const obs = observation(latest, w.functional);
        if (await this.systemdWillRestart(w, latest)) obs.jobQueued = true;
        this.handle(w, w.tracker.observe(monotonicMs(), obs));
      } while (w.dirty && !this.stopped);
    } catch (err) {
      log.err('health evaluation failed', { service, error: errText(err) });
    } finally {
      // Synchronously with the loop's last check of `dirty`: a poke from now on starts a new run.
      w.checking = false;
      for (const resolve of w.waiters.splice(0)) resolve();
    }
  }

  /** Notes (and logs once) a unit failed at systemd's start limit, by whomever; the restart clears it. */
  private async checkStartLimit(w: Watched, unit: UnitState): Promise<void> {
    const limits = this.deps.restarter.startLimits;
    let hit = false;
    if (limits && unit.activeState === 'failed') {
      try {
        hit = (await limits.result(w.unit)) === 'start-limit-hit';
      } catch {
        hit = w.startLimitHit;
      }
    }
    if (hit && !w.startLimitHit) {
      w.startLimitHitAt = monotonicMs();
      log.warning(`${w.unit} is at systemd's start limit (start-limit-hit)`, {
        SERVICE: w.service,
        UNIT: w.unit,
        RESULT: 'start-limit-hit',
      });
    }
    if (hit !== w.startLimitHit) this.changes++;
    w.startLimitHit = hit;
  }

  /**
   * A unit with its own Restart= that has just failed is about to be restarted by systemd: counted as
   * "systemd is working on it" (the tracker waits) until RestartSec plus a margin has passed, then it is
   * ours to repair. Without this, the daemon's RestartUnit lands on systemd's own start job.
   */
  private async systemdWillRestart(w: Watched, unit: UnitState): Promise<boolean> {
    const down = unit.activeState === 'failed' || unit.activeState === 'inactive';
    if (!down) {
      w.downSince = undefined;
      if (w.downTimer) clearTimeout(w.downTimer);
      w.downTimer = undefined;
      return false;
    }
    let policy: { restarts: boolean; delayMs: number };
    try {
      policy = await this.deps.systemd.restartPolicy(w.unit);
    } catch {
      return false;
    }
    if (!policy.restarts) return false;
    const now = monotonicMs();
    w.downSince ??= now;
    const until = w.downSince + policy.delayMs + OWN_RESTART_MARGIN_MS;
    if (now >= until) return false;
    if (!w.downTimer && !this.stopped) {
      w.downTimer = setTimeout(() => {
        w.downTimer = undefined;
        this.poke(w.service);
      }, until - now);
    }
    return true;
  }

  /** Carries out one Step of the tracker: notes, state change, the single timer, and the action. */
  private handle(w: Watched, step: Step): void {
    for (const n of step.notes) log[n.level](n.message, n.fields);
    if (step.stateChanged && this.current[w.service] !== step.state) {
      this.current = { ...this.current, [w.service]: step.state };
      this.emit('healthChanged', this.health());
    }
    if (w.timer) clearTimeout(w.timer);
    w.timer = undefined;
    if (step.nextWakeAt !== undefined && !this.stopped) {
      const delay = Math.max(0, Math.ceil(step.nextWakeAt - monotonicMs()));
      w.timer = setTimeout(() => {
        w.timer = undefined;
        this.handle(w, w.tracker.tick(monotonicMs()));
      }, delay);
    }
    if (step.action && !this.stopped) void this.act(w, step.action.kind);
  }

  private async act(w: Watched, kind: 'restart' | 'power-on-adapter'): Promise<void> {
    let ok = false;
    let detail: string | undefined;
    try {
      if (kind === 'power-on-adapter') {
        await powerOnAdapter(this.deps.bus);
        ok = true;
      } else {
        const result = await this.deps.restarter.restart(w.unit, 'monitor');
        ok = result === 'done';
        if (!ok) detail = `job ${result}`;
      }
    } catch (err) {
      detail = errText(err);
    }
    this.handle(w, w.tracker.actionFinished(monotonicMs(), ok, detail));
    // Observe the unit as it is now (its properties may have settled before our job's result arrived).
    await this.refreshAndEvaluate(w.service);
  }
}
