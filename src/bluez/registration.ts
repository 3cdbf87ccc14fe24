// The registration of one BlueZ profile as a clock-free state machine, so its rules are tested with a fake
// clock; registration-driver.ts feeds it events and carries out the command each returns.

export interface BackoffSettings {
  initialMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffSettings = { initialMs: 1000, maxMs: 30_000 };

/**
 * Delay before retry number `failures` (1 = after the first failure): initial, doubling, capped. Retries go
 * on forever while org.bluez has an owner, so a profile another program held is ours once it lets go.
 */
export function backoffDelay(failures: number, s: BackoffSettings = DEFAULT_BACKOFF): number {
  if (failures <= 0) return 0;
  // 2^30 ms is far beyond any sane cap; stop doubling there so the number stays exact.
  const exp = Math.min(failures - 1, 30);
  return Math.min(s.maxMs, s.initialMs * 2 ** exp);
}

export const ERR_ALREADY_EXISTS = 'org.bluez.Error.AlreadyExists';
export const ERR_NOT_PERMITTED = 'org.bluez.Error.NotPermitted';

/**
 * How one RegisterProfile call ended: success, or a D-Bus error name. `indeterminate`: no answer came (timeout,
 * no reply), so BlueZ may or may not have registered us.
 */
export type RegisterOutcome =
  | { ok: true }
  | { ok: false; name: string; message: string; indeterminate?: boolean };

/** One RegisterProfile call: which owner generation it belongs to and its number with that owner (1-based). */
export interface Attempt {
  readonly generation: number;
  readonly owner: string;
  readonly number: number;
}

export type Command =
  | { kind: 'register'; attempt: Attempt }
  | { kind: 'wait'; ms: number }
  | { kind: 'cancel-timer' }
  | { kind: 'none' };

export type Phase = 'no-bluez' | 'registering' | 'registered' | 'retrying';

/** What happened, for the journal; the driver logs it with the profile's fields. */
export type Note =
  | { kind: 'registered'; afterFailures: number; alreadyExisted: boolean }
  | { kind: 'failed'; name: string; message: string; conflict: boolean; retryInMs: number; repeat: boolean }
  | { kind: 'lost'; reason: 'owner-changed' | 'owner-gone' | 'released' };

export interface RegistrationView {
  phase: Phase;
  registered: boolean;
  /** The org.bluez unique name we register with (undefined: BlueZ is not on the bus). */
  owner?: string;
  /** The last failure said another program holds the profile. */
  conflict: boolean;
  lastError?: string;
  lastErrorAt?: number;
  /** Consecutive failures since the last success or owner change. */
  failures: number;
  nextAttemptAt?: number;
  registeredAt?: number;
  /** Successful registrations so far (every re-registration counts). */
  registrations: number;
}

export class RegistrationMachine {
  private generation = 0;
  private owner: string | undefined;
  private attemptsWithOwner = 0;
  /** An earlier call to the current owner may have registered us (see AlreadyExists above). */
  private maybeOurs = false;
  private inFlight: Attempt | undefined;
  private phase: Phase = 'no-bluez';
  private failures = 0;
  private conflict = false;
  private lastError: string | undefined;
  private lastErrorAt: number | undefined;
  private lastFailureKey: string | undefined;
  private nextAttemptAt: number | undefined;
  private registeredAt: number | undefined;
  private registrations = 0;
  private readonly notes: Note[] = [];
  private changes = 0;

  constructor(private readonly backoff: BackoffSettings = DEFAULT_BACKOFF) {}

  /**
   * org.bluez's owner changed (undefined: it left the bus). Our registrations went with the old owner:
   * register at once, with fresh backoff; replies meant for an older owner (generation) are ignored.
   */
  ownerChanged(owner: string | undefined, _now: number): Command {
    this.changes++;
    if (owner === this.owner) return { kind: 'none' };
    const wasRegistered = this.phase === 'registered';
    this.generation++;
    this.owner = owner;
    this.attemptsWithOwner = 0;
    this.maybeOurs = false;
    this.inFlight = undefined;
    this.failures = 0;
    this.lastFailureKey = undefined;
    this.nextAttemptAt = undefined;
    this.registeredAt = undefined;
    if (wasRegistered) this.notes.push({ kind: 'lost', reason: owner ? 'owner-changed' : 'owner-gone' });
    if (owner === undefined) {
      this.phase = 'no-bluez';
      return { kind: 'cancel-timer' };
    }
    return this.startAttempt();
  }

  /** The retry timer fired. */
  timerFired(_now: number): Command {
    this.changes++;
    this.nextAttemptAt = undefined;
    if (this.phase !== 'retrying' || this.owner === undefined || this.inFlight) return { kind: 'none' };
    return this.startAttempt();
  }

  /** BlueZ called Release on our profile object: it no longer has our registration. */
  released(now: number): Command {
    this.changes++;
    if (this.owner === undefined) return { kind: 'none' };
    if (this.phase === 'registered') this.notes.push({ kind: 'lost', reason: 'released' });
    if (this.inFlight) return { kind: 'none' };
    // BlueZ may be shutting down (a new owner will register at once); otherwise try again shortly.
    this.phase = 'retrying';
    this.registeredAt = undefined;
    const ms = this.backoff.initialMs;
    this.nextAttemptAt = now + ms;
    return { kind: 'wait', ms };
  }

  /** A RegisterProfile call finished. */
  finished(attempt: Attempt, outcome: RegisterOutcome, now: number): Command {
    this.changes++;
    if (attempt.generation !== this.generation || this.inFlight !== attempt) return { kind: 'none' };
    this.inFlight = undefined;
    // AlreadyExists is BlueZ's answer to the same connection registering the same path again: ours only if
    // an earlier call to this owner may have got through unseen; otherwise another program holds it.
    const ours = outcome.ok || (outcome.name === ERR_ALREADY_EXISTS && this.maybeOurs);
    if (ours) {
      this.maybeOurs = true;
      this.notes.push({
        kind: 'registered',
        afterFailures: this.failures,
        alreadyExisted: !outcome.ok,
      });
      this.phase = 'registered';
      this.failures = 0;
      this.conflict = false;
      this.lastFailureKey = undefined;
      this.registeredAt = now;
      this.nextAttemptAt = undefined;
      this.registrations++;
      return { kind: 'cancel-timer' };
    }
    if (outcome.indeterminate) this.maybeOurs = true;
    // NotPermitted: "UUID already registered" by another program. Reported, and retried like any failure.
    const conflict = outcome.name === ERR_NOT_PERMITTED || outcome.name === ERR_ALREADY_EXISTS;
    this.failures++;
    this.conflict = conflict;
    this.lastError = conflict
      ? `held by another program (${outcome.name}: ${outcome.message})`
      : `${outcome.name}: ${outcome.message}`;
    this.lastErrorAt = now;
    this.phase = 'retrying';
    const ms = backoffDelay(this.failures, this.backoff);
    this.nextAttemptAt = now + ms;
    const key = `${outcome.name}\n${outcome.message}`;
    this.notes.push({
      kind: 'failed',
      name: outcome.name,
      message: outcome.message,
      conflict,
      retryInMs: ms,
      repeat: key === this.lastFailureKey,
    });
    this.lastFailureKey = key;
    return { kind: 'wait', ms };
  }

  /** Notes since the last call (for the journal). */
  takeNotes(): Note[] {
    return this.notes.splice(0);
  }

  /** Grows with every change GetStatus shows: its text is rebuilt only after one. */
  get revision(): number {
    return this.changes;
  }

  view(): RegistrationView {
    return {
      phase: this.phase,
      registered: this.phase === 'registered',
      ...(this.owner !== undefined ? { owner: this.owner } : {}),
      conflict: this.conflict,
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
      ...(this.lastErrorAt !== undefined ? { lastErrorAt: this.lastErrorAt } : {}),
      failures: this.failures,
      ...(this.nextAttemptAt !== undefined ? { nextAttemptAt: this.nextAttemptAt } : {}),
      ...(this.registeredAt !== undefined ? { registeredAt: this.registeredAt } : {}),
      registrations: this.registrations,
    };
  }

  private startAttempt(): Command {
    if (this.owner === undefined) return { kind: 'none' };
    this.attemptsWithOwner++;
    const attempt: Attempt = {
      generation: this.generation,
      owner: this.owner,
      number: this.attemptsWithOwner,
    };
    this.inFlight = attempt;
    this.phase = 'registering';
    this.nextAttemptAt = undefined;
    return { kind: 'register', attempt };
  }
}
