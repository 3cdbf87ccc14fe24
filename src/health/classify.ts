// classify: one observation of a watched unit -> its HealthState. Pure: no I/O, no clock of its own.
//
// Inputs
//   obs    what systemd (and the functional check) said about the unit last; undefined = never observed yet.
//   nowMs  the caller's clock in ms. The activating timeout compares it with obs.activatingSinceMs, so both
//          must come from the same clock. systemd's *TimestampMonotonic properties are CLOCK_MONOTONIC µs,
//          and so is Node's process.hrtime.bigint() (ns): nowMs = Number(process.hrtime.bigint() / 1000000n)
//          and activatingSinceMs = Number(InactiveExitTimestampMonotonic / 1000n) are directly comparable.
//
// Rules (the contract's health states, with the cases it leaves open decided here):
//   no observation                          -> unknown
//   LoadState not-found or masked           -> missing (not installed, or forbidden to run by the admin: it
//                                              cannot be started, and the monitor never tries to)
//   ActiveState active, reloading, refreshing
//     functional check failed (ok: false)   -> degraded
//     functional check passed or undefined  -> active. `functional` undefined means no check applies or none
//                                              has completed yet; a check that errored or timed out must be
//                                              passed as { ok: false } by the caller, never as undefined.
//   ActiveState activating                  -> activating; failed once it has lasted activatingTimeoutMs or
//                                              more (now - activatingSinceMs >= timeout). Without
//                                              activatingSinceMs it stays activating here (the recovery
//                                              tracker fills in the time it first saw the unit activating).
//                                              systemd's own auto-restart wait is an activating sub-state too.
//   ActiveState deactivating                -> inactive (on its way down, not serving; the recovery tracker
//                                              waits for systemd to finish before acting)
//   ActiveState inactive                    -> inactive, but failed when LoadState is error or bad-setting
//                                              (the unit file cannot be loaded: it is broken, not stopped)
//   ActiveState failed                      -> failed
//   ActiveState maintenance                 -> inactive (systemd is cleaning the unit's resources)
//   any other ActiveState                   -> unknown (a value this code does not know; it takes no action)
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
