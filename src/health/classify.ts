// classify: one observation of a watched unit -> its HealthState, pure (no I/O, no clock of its own). `nowMs`
// and `obs.activatingSinceMs` must share a clock: CLOCK_MONOTONIC, like systemd's *TimestampMonotonic.
// Decided where the contract leaves it open: masked is missing (never started by us); a check that errored
// must be passed as { ok: false }; deactivating and maintenance are inactive; an inactive unit that cannot
// be loaded (error, bad-setting) is failed; an unknown ActiveState is unknown (no action).
import type { HealthState } from './states.js';

/** What the caller saw of one unit. Strings are systemd's own property values. */
export interface UnitObservation {
  /** systemd LoadState: loaded, not-found, masked, error, bad-setting, stub, merged. */
  loadState: string;
  /** systemd ActiveState: active, reloading, inactive, failed, activating, deactivating, ... */
  activeState: string;
  /** systemd SubState: running, dead, auto-restart, start-pre, ... */
  subState: string;
  /** When the unit entered 'activating', on the caller's clock (see the header). */
  activatingSinceMs?: number;
  /** True while systemd has a job queued or running for the unit (Unit.Job is not '/'). */
  jobQueued?: boolean;
  /** Result of the functional check; undefined when none applies or none has completed yet. */
  functional?: { ok: boolean; detail: string };
}

export interface ClassifySettings {
  /** How long a unit may stay 'activating' before it counts as failed. */
  activatingTimeoutMs: number;
}

export const DEFAULT_ACTIVATING_TIMEOUT_MS = 30_000;

const RUNNING = new Set(['active', 'reloading', 'refreshing']);

export function classify(
  obs: UnitObservation | undefined,
  nowMs: number,
  settings: ClassifySettings = { activatingTimeoutMs: DEFAULT_ACTIVATING_TIMEOUT_MS },
): HealthState {
  if (obs === undefined) return 'unknown';
  if (obs.loadState === 'not-found' || obs.loadState === 'masked') return 'missing';
  const { activeState } = obs;
  if (RUNNING.has(activeState)) return obs.functional?.ok === false ? 'degraded' : 'active';
  switch (activeState) {
    case 'activating': {
      const since = obs.activatingSinceMs;
      return since !== undefined && nowMs - since >= settings.activatingTimeoutMs ? 'failed' : 'activating';
    }
    case 'deactivating':
    case 'maintenance':
      return 'inactive';
    case 'inactive':
      return obs.loadState === 'error' || obs.loadState === 'bad-setting' ? 'failed' : 'inactive';
    case 'failed':
      return 'failed';
    default:
      return 'unknown';
  }
}
