// RecoveryTracker: the recovery decisions for one watched unit, as a pure state machine: no I/O, no timers,
// no clock; every input carries `now` (monotonic ms) and returns a Step (an action to run, notes to log,
// whether the state changed, when to tick next). The I/O side is health/monitor.ts.
//
// The rules: failed or inactive → attempt 1 at once, then `fastRetries` attempts `fastRetryIntervalMs` apart,
// then one every `slowRetryIntervalMs`, forever (each from the start of the previous, never overlapping).
// Degraded → the same once it lasted `degradedGraceMs`; for bluetooth the repair alternates power-on and
// restart. Back to active → the counter resets at once (resetOnRecovery, what ships) or after
// `healthyResetMs` healthy, so a unit that dies right after each restart moves to slow retries. Nothing is
// attempted while the unit is missing, our action runs, a caller holds the unit, or systemd itself works on
// it (up to `activatingTimeoutMs`).
import type { Fields } from '../log/journal.js';
import { classify, DEFAULT_ACTIVATING_TIMEOUT_MS, type UnitObservation } from './classify.js';
import { type HealthState, SERVICES, type ServiceName } from './states.js';

export interface RecoverySettings {
  /** Retries 5 s apart after the immediate attempt. */
  fastRetries: number;
  fastRetryIntervalMs: number;
  slowRetryIntervalMs: number;
  /** A unit activating (or held by systemd in another transition) this long counts as failed / stuck. */
  activatingTimeoutMs: number;
  /** Continuously active this long resets the counter. */
  healthyResetMs: number;
  /** A degraded unit is repaired only once it has been degraded this long. */
  degradedGraceMs: number;
  /** Reset the counter as soon as the unit is back to active (instead of after healthyResetMs). */
  resetOnRecovery: boolean;
}

export const DEFAULT_RECOVERY_SETTINGS: Readonly<RecoverySettings> = Object.freeze({
  fastRetries: 3,
  fastRetryIntervalMs: 5_000,
  slowRetryIntervalMs: 60_000,
  activatingTimeoutMs: DEFAULT_ACTIVATING_TIMEOUT_MS,
  healthyResetMs: 120_000,
  degradedGraceMs: 5_000,
  resetOnRecovery: true,
});

export type RecoveryMode = 'none' | 'fast' | 'slow';
export type RepairKind = 'restart' | 'power-on-adapter';

export interface RepairAction {
  kind: RepairKind;
  /** The systemd unit, e.g. 'hostapd.service' (for power-on-adapter: the unit whose adapter it is). */
  unit: string;
  /** 1 for the first attempt since the counter was last reset. */
  attempt: number;
}

export type NoteLevel = 'err' | 'warning' | 'notice' | 'info' | 'debug';

/** A structured journal entry for the I/O layer to log: log[level](message, fields). */
export interface Note {
  level: NoteLevel;
  message: string;
  fields: Fields;
}

export interface Step {
  /** The health state after this input. */
  state: HealthState;
  /** True when this input changed the health state (emit HealthChanged). */
  stateChanged: boolean;
  /** What to do now; at most one, and none until the previous one's actionFinished. */
  action: RepairAction | undefined;
  notes: Note[];
  /** When to call tick() next (always later than now), or undefined when only a new input can change things. */
  nextWakeAt: number | undefined;
}

/** The tracker's part of GetStatus. Times are on the tracker's clock (convert them for display). */
export interface RecoveryStatus {
  state: HealthState;
  /** Attempts since the counter was last reset. */
  retries: number;
  /** Which schedule the attempts follow: none (not recovering), fast, slow. */
  mode: RecoveryMode;
  /** When the next attempt will be made if nothing changes; absent when none is scheduled. */
  nextAttemptAt?: number;
  /** When the health state last changed. */
  lastChangeAt?: number;
  /** The last action and, once known, its result, e.g. 'restart (attempt 2): failed: timeout'. */
  lastAction?: string;
  lastActionAt?: number;
  /** Why nothing is being attempted although the unit is unhealthy, or what is in progress. */
  waitingFor?: 'action' | 'caller' | 'systemd' | 'observation';
}

/** States that call for a repair. */
const TROUBLE: ReadonlySet<HealthState> = new Set(['failed', 'inactive', 'degraded']);
/** ActiveStates in which systemd itself is working on the unit. */
const SYSTEMD_BUSY = new Set(['activating', 'deactivating', 'reloading', 'refreshing', 'maintenance']);

function systemdBusy(obs: UnitObservation): boolean {
  return (
    SYSTEMD_BUSY.has(obs.activeState) || obs.jobQueued === true || obs.subState.startsWith('auto-restart')
  );
}

function checkSettings(s: RecoverySettings): RecoverySettings {
  for (const [key, value] of Object.entries(s)) {
    if (key === 'resetOnRecovery') {
      if (typeof value !== 'boolean') throw new RangeError(`recovery setting ${key} must be a boolean`);
    } else if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new RangeError(`recovery setting ${key} must be a finite number >= 0`);
    }
  }
  if (!Number.isInteger(s.fastRetries))
    throw new RangeError('recovery setting fastRetries must be an integer');
  return s;
}

export class RecoveryTracker {
  readonly unit: string;
  readonly settings: Readonly<RecoverySettings>;

  private obs: UnitObservation | undefined;
  private current: HealthState = 'unknown';
  private stateSince: number | undefined;
  /** First time the unit was seen activating (used when the observation has no activatingSinceMs). */
  private activatingSeenAt: number | undefined;
  /** First time systemd was seen working on the unit (deactivating, queued job, ...). */
  private busySince: number | undefined;
  private attempts = 0;
  private lastAttemptAt: number | undefined;
  private lastKind: RepairKind | undefined;
  private inFlight = false;
  /** The action in flight, as first announced (a counter reset meanwhile must not rename it). */
  private inFlightAction: { kind: RepairKind; attempt: number } | undefined;
  private external = 0;
  private awaitingObservation = false;
  private mode: RecoveryMode = 'none';
  private lastAction: string | undefined;
  private lastActionAt: number | undefined;
  private clock = Number.NEGATIVE_INFINITY;
  private changes = 0;

  constructor(
    readonly service: ServiceName,
    settings: Partial<RecoverySettings> = {},
  ) {
    this.unit = SERVICES[service].unit;
    this.settings = Object.freeze(checkSettings({ ...DEFAULT_RECOVERY_SETTINGS, ...settings }));
  }

  get state(): HealthState {
    return this.current;
  }

  observe(now: number, obs: UnitObservation): Step {
    this.changes++;
    const t = this.advance(now);
    if (obs.activeState === 'activating') this.activatingSeenAt ??= t;
    else this.activatingSeenAt = undefined;
    if (systemdBusy(obs)) this.busySince ??= t;
    else this.busySince = undefined;
    this.obs = obs;
    this.awaitingObservation = false;
    return this.step(t, []);
  }

  actionFinished(now: number, ok: boolean, detail?: string): Step {
    this.changes++;
    const t = this.advance(now);
    const notes: Note[] = [];
    if (this.inFlight) {
      this.inFlight = false;
      this.afterInterruption();
      const done = this.inFlightAction ?? { kind: this.lastKind ?? 'restart', attempt: this.attempts };
      this.inFlightAction = undefined;
      const what = `${done.kind} (attempt ${done.attempt})`;
      this.lastAction = `${what}: ${ok ? 'done' : 'failed'}${detail ? `: ${detail}` : ''}`;
      notes.push({
        level: ok ? 'info' : 'warning',
        message: ok
          ? `${this.unit}: ${what} finished`
          : `${this.unit}: ${what} failed${detail ? `: ${detail}` : ''}`,
        fields: this.fields({
          ACTION: done.kind,
          ATTEMPT: done.attempt,
          RESULT: ok ? 'done' : 'failed',
          DETAIL: detail,
        }),
      });
    }
    return this.step(t, notes);
  }

  externalStarted(now: number): Step {
    this.changes++;
    const t = this.advance(now);
    this.external++;
    return this.step(t, []);
  }

  externalFinished(now: number): Step {
    this.changes++;
    const t = this.advance(now);
    if (this.external > 0) {
      this.external--;
      if (this.external === 0) this.afterInterruption();
    }
    return this.step(t, []);
  }

  tick(now: number): Step {
    this.changes++;
    return this.step(this.advance(now), []);
  }

  /** Grows with every input (each may change status()): GetStatus's text is rebuilt only after one. */
  get revision(): number {
    return this.changes;
  }

  status(): RecoveryStatus {
    const out: RecoveryStatus = { state: this.current, retries: this.attempts, mode: this.mode };
    const next = this.attemptAt();
    if (next !== undefined) out.nextAttemptAt = next;
    if (this.stateSince !== undefined) out.lastChangeAt = this.stateSince;
    if (this.lastAction !== undefined) out.lastAction = this.lastAction;
    if (this.lastActionAt !== undefined) out.lastActionAt = this.lastActionAt;
    const waiting = this.waitingFor();
    if (waiting !== undefined) out.waitingFor = waiting;
    return out;
  }

  // ---------------------------------------------------------------------------------------------------------

  /** The clock never runs backwards, whatever the caller passes. */
  private advance(now: number): number {
    if (now > this.clock) this.clock = now;
    return this.clock;
  }

  /** After a restart (ours or a caller's) the unit's transitions start afresh and must be observed anew. */
  private afterInterruption(): void {
    this.awaitingObservation = true;
    this.activatingSeenAt = undefined;
    this.busySince = undefined;
  }

  private step(t: number, notes: Note[]): Step {
    const prev = this.current;
    const next = classify(this.filledObservation(), t, this.settings);
    const stateChanged = next !== prev;
    if (stateChanged) {
      this.current = next;
      this.stateSince = t;
      notes.push(this.stateNote(prev, next));
    }

    if (next === 'active') {
      if (stateChanged && this.mode !== 'none') {
        this.mode = 'none';
        notes.push({
          level: 'notice',
          message: `${this.unit}: recovered after ${this.attempts} attempt${this.attempts === 1 ? '' : 's'}`,
          fields: this.fields({ RESULT: 'recovered' }),
        });
        if (this.settings.resetOnRecovery) this.reset(notes, 'recovered');
      }
      if (this.attempts > 0 && t - (this.stateSince ?? t) >= this.settings.healthyResetMs) {
        this.reset(notes, `active for ${Math.round(this.settings.healthyResetMs / 1000)} s`);
      }
    } else if (next === 'missing') {
      this.mode = 'none';
    }

    let action: RepairAction | undefined;
    if (this.needsRepair(t) && !this.inFlight && !this.awaitingObservation) {
      // The schedule the next attempt follows (announcing the switch to slow retries when the last fast one
      // has failed, not when it starts).
      if (this.attempts > 0) this.setMode(this.attempts > this.settings.fastRetries ? 'slow' : 'fast', notes);
      const at = this.attemptAt();
      if (at !== undefined && t >= at) action = this.attempt(t, next, notes);
    }

    return { state: next, stateChanged, action, notes, nextWakeAt: this.wakeAt() };
  }

  /** Unhealthy in a way that calls for a repair (a degraded unit only once its grace period is over). */
  private needsRepair(t: number): boolean {
    if (!TROUBLE.has(this.current)) return false;
    if (this.current !== 'degraded') return true;
    return t >= (this.stateSince ?? t) + this.settings.degradedGraceMs;
  }

  /** The observation with activatingSinceMs filled in from our own first sighting when systemd gave none. */
  private filledObservation(): UnitObservation | undefined {
    const o = this.obs;
    if (o?.activeState !== 'activating' || o.activatingSinceMs !== undefined) return o;
    return { ...o, activatingSinceMs: this.activatingSeenAt };
  }

  /** Until when systemd's own work on the unit is waited for, if it is working on it. */
  private systemdBusyUntil(): number | undefined {
    const o = this.filledObservation();
    if (o === undefined || !systemdBusy(o)) return undefined;
    const since = o.activeState === 'activating' ? o.activatingSinceMs : this.busySince;
    return (since ?? this.clock) + this.settings.activatingTimeoutMs;
  }

  /** When the next attempt is due, if one is to be made at all without further input. */
  private attemptAt(): number | undefined {
    const scheduled = this.scheduledAt();
    if (scheduled === undefined) return undefined;
    const busyUntil = this.systemdBusyUntil();
    return busyUntil === undefined ? scheduled : Math.max(scheduled, busyUntil);
  }

  /** attemptAt() before waiting for systemd: the retry schedule and a degraded unit's grace period. */
  private scheduledAt(): number | undefined {
    if (!TROUBLE.has(this.current) || this.inFlight || this.external > 0 || this.awaitingObservation) {
      return undefined;
    }
    const s = this.settings;
    let at = Number.NEGATIVE_INFINITY;
    if (this.attempts > 0 && this.lastAttemptAt !== undefined) {
      at =
        this.lastAttemptAt + (this.attempts <= s.fastRetries ? s.fastRetryIntervalMs : s.slowRetryIntervalMs);
    }
    if (this.current === 'degraded') at = Math.max(at, (this.stateSince ?? this.clock) + s.degradedGraceMs);
    return at;
  }

  private wakeAt(): number | undefined {
    const times: number[] = [];
    const attempt = this.attemptAt();
    if (attempt !== undefined) times.push(attempt);
    // An activating unit turns failed at its timeout: the state change itself must be noticed on time.
    const o = this.filledObservation();
    if (this.current === 'activating' && o?.activatingSinceMs !== undefined) {
      times.push(o.activatingSinceMs + this.settings.activatingTimeoutMs);
    }
    if (this.current === 'active' && this.attempts > 0 && this.stateSince !== undefined) {
      times.push(this.stateSince + this.settings.healthyResetMs);
    }
    return times.length === 0 ? undefined : Math.min(...times);
  }

  private waitingFor(): RecoveryStatus['waitingFor'] {
    if (this.inFlight) return 'action';
    if (!TROUBLE.has(this.current)) return undefined;
    if (this.external > 0) return 'caller';
    if (this.awaitingObservation) return 'observation';
    // Waiting for systemd only when that, not the retry schedule, is what delays the next attempt.
    const busyUntil = this.systemdBusyUntil();
    const scheduled = this.scheduledAt();
    if (busyUntil !== undefined && scheduled !== undefined && busyUntil > scheduled) return 'systemd';
    return undefined;
  }

  private attempt(t: number, state: HealthState, notes: Note[]): RepairAction {
    const kind: RepairKind =
      this.service === 'bluetooth' && state === 'degraded' && this.lastKind !== 'power-on-adapter'
        ? 'power-on-adapter'
        : 'restart';
    this.attempts++;
    this.lastAttemptAt = t;
    this.lastKind = kind;
    this.inFlight = true;
    const n = this.attempts;
    this.inFlightAction = { kind, attempt: n };
    this.lastAction = `${kind} (attempt ${n})`;
    this.lastActionAt = t;
    const fast = this.settings.fastRetries;
    const phase =
      n === 1
        ? 'first attempt'
        : n <= fast + 1
          ? `fast retry ${n - 1} of ${fast}`
          : `slow retry ${n - 1 - fast}`;
    this.setMode(n <= fast + 1 ? 'fast' : 'slow', notes);
    notes.push({
      level: 'notice',
      message: `${this.unit} is ${state}: ${kind === 'restart' ? 'restarting it' : 'powering the adapter on'} (${phase})`,
      fields: this.fields({ ACTION: kind, ATTEMPT: n }),
    });
    return { kind, unit: this.unit, attempt: n };
  }

  private setMode(mode: RecoveryMode, notes: Note[]): void {
    if (mode === this.mode) return;
    this.mode = mode;
    if (mode === 'slow') {
      const every = Math.round(this.settings.slowRetryIntervalMs / 1000);
      notes.push({
        level: 'warning',
        message: `${this.unit}: still ${this.current} after ${this.attempts} attempts, retrying every ${every} s`,
        fields: this.fields({}),
      });
    }
  }

  private reset(notes: Note[], why: string): void {
    const had = this.attempts;
    this.attempts = 0;
    this.lastKind = undefined;
    notes.push({
      level: 'info',
      message: `${this.unit}: retry counter reset (${why}; was ${had})`,
      fields: this.fields({ RESET_REASON: why, PREVIOUS_RETRIES: had }),
    });
  }

  private stateNote(prev: HealthState, next: HealthState): Note {
    const o = this.obs;
    const detail = o?.functional && !o.functional.ok ? o.functional.detail : undefined;
    const level: NoteLevel =
      TROUBLE.has(next) || next === 'missing'
        ? 'warning'
        : next === 'active' && TROUBLE.has(prev)
          ? 'notice'
          : 'info';
    const how = o
      ? ` (ActiveState=${o.activeState} SubState=${o.subState}${detail ? `; ${detail}` : ''})`
      : '';
    return {
      level,
      message: `${this.unit} is ${next}, was ${prev}${how}`,
      fields: this.fields({
        PREVIOUS_STATE: prev,
        LOAD_STATE: o?.loadState,
        ACTIVE_STATE: o?.activeState,
        SUB_STATE: o?.subState,
        DETAIL: detail,
      }),
    };
  }

  private fields(extra: Fields): Fields {
    return {
      SERVICE: this.service,
      UNIT: this.unit,
      HEALTH_STATE: this.current,
      RETRIES: this.attempts,
      RECOVERY_MODE: this.mode,
      ...extra,
    };
  }
}
