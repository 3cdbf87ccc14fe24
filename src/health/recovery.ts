// RecoveryTracker: the recovery decisions for one watched unit, as a pure state machine. It does no I/O, runs
// no timers and never reads a clock: every input carries `now` (ms, monotonic, same clock as the
// observations' activatingSinceMs; see classify.ts), and every input returns a Step saying what to do now.
//
// Driving it (the I/O layer, one tracker per service):
//   observe(now, obs)          after every observation: a PropertiesChanged signal, the 5 s safety poll, a
//                              functional check result. Observations may arrive at any rate; they never move
//                              a schedule, because every time the tracker keeps is that of an attempt or of a
//                              state change, never that of an observation.
//   actionFinished(now, ok)    exactly once per action the tracker returned (in a finally block), when the
//                              restart job or the Powered write has finished. Then observe the unit again.
//   externalStarted(now)       as soon as a caller's RestartService or a config apply asks for this unit,
//   externalFinished(now)      and when it has finished (finally). Counted, so holds may nest. Then observe.
//   tick(now)                  when the timer for the last Step's nextWakeAt fires (firing late or early is
//                              harmless: nothing happens before its time, everything due happens on the call).
// Every Step: run `action` if there is one (at most one at a time: nothing else is returned until its
// actionFinished), log each note with log[note.level](note.message, note.fields), emit HealthChanged when
// `stateChanged`, and re-arm the single timer for `nextWakeAt` (undefined: no timer needed).
//
// The rules (the seed's recovery table, made exact). An attempt is a restart, or for bluetooth degraded a
// power-on of the adapter; `retries` counts the attempts since the counter was last reset.
//   - failed or inactive: attempt 1 at once; attempts 2..1+fastRetries (the fast retries) fastRetryIntervalMs
//     after the previous attempt; every later attempt slowRetryIntervalMs after the previous one, forever.
//     Intervals run from the start of the previous attempt and no attempt starts before the previous one
//     finished. A restart that fails (actionFinished(false)) just leaves the schedule to run on.
//   - activating for activatingTimeoutMs or more counts as failed (classify).
//   - degraded: the same schedule once it has lasted degradedGraceMs (a functional check may lag a start by
//     a moment). The repair is a restart, except for bluetooth, where it alternates power-on-adapter, restart,
//     power-on-adapter, ... (first try Powered=true; restart if that did not help by the next attempt; after a
//     restart, bluetoothd may bring the adapter up unpowered, so power it on again).
//   - back to active after attempts: a "recovered" note and mode 'none' (no attempt pending). The counter
//     returns to 0 once the unit has been active continuously for healthyResetMs, measured from the moment
//     it became active. If it fails again before that, the schedule carries on from the last attempt, so a
//     unit that dies right after every successful restart moves to slow retries instead of being restarted in
//     a tight loop. With resetOnRecovery: true, the counter is reset at the recovery itself instead.
//   - nothing is attempted while: the unit is missing or unknown; an action of ours is in flight; a caller
//     holds the unit (externalStarted); systemd itself is working on it (activating, deactivating,
//     reloading, a queued job, the auto-restart sub-state), for at most activatingTimeoutMs from when that
//     began, after which the unit is treated as stuck; after actionFinished/externalFinished until the next
//     observe (an observation taken in the middle of a restart must not trigger another one).
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
    const t = this.advance(now);
    this.external++;
    return this.step(t, []);
  }

  externalFinished(now: number): Step {
    const t = this.advance(now);
    if (this.external > 0) {
      this.external--;
      if (this.external === 0) this.afterInterruption();
    }
    return this.step(t, []);
  }

  tick(now: number): Step {
    return this.step(this.advance(now), []);
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
