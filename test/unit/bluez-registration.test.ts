// The BlueZ registration rules (src/bluez/registration.ts) with a fake clock: backoff bounds, re-registration
// on a new owner, stale replies, AlreadyExists (ours vs. someone else's), conflicts, Release, and a property
// test that a registration is never forgotten while org.bluez has an owner.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  type Attempt,
  backoffDelay,
  type Command,
  DEFAULT_BACKOFF,
  ERR_ALREADY_EXISTS,
  ERR_NOT_PERMITTED,
  type RegisterOutcome,
  RegistrationMachine,
} from '../../src/bluez/registration.js';

const FAILED: RegisterOutcome = { ok: false, name: 'org.bluez.Error.Failed', message: 'boom' };
const OK: RegisterOutcome = { ok: true };

function attemptOf(cmd: Command): Attempt {
  assert.equal(cmd.kind, 'register', `expected a register command, got ${JSON.stringify(cmd)}`);
  return (cmd as { kind: 'register'; attempt: Attempt }).attempt;
}

describe('backoffDelay', () => {
  it('starts at 1 s, doubles, and stays at 30 s', () => {
    const seen = [1, 2, 3, 4, 5, 6, 7, 8, 100, 10_000].map((n) => backoffDelay(n));
    assert.deepEqual(seen, [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000, 30_000, 30_000]);
    assert.equal(backoffDelay(0), 0);
    assert.equal(backoffDelay(3, { initialMs: 50, maxMs: 120 }), 120);
  });
});

describe('RegistrationMachine', () => {
  it('waits for BlueZ, then registers at once when org.bluez gets an owner', () => {
    const m = new RegistrationMachine();
    assert.equal(m.view().phase, 'no-bluez');
    assert.equal(m.timerFired(0).kind, 'none');
    const a = attemptOf(m.ownerChanged(':1.7', 0));
    assert.deepEqual({ owner: a.owner, number: a.number }, { owner: ':1.7', number: 1 });
    assert.equal(m.view().phase, 'registering');
    assert.equal(m.finished(a, OK, 10).kind, 'cancel-timer');
    const v = m.view();
    assert.equal(v.registered, true);
    assert.equal(v.registrations, 1);
    assert.equal(v.registeredAt, 10);
    assert.deepEqual(m.takeNotes(), [{ kind: 'registered', afterFailures: 0, alreadyExisted: false }]);
  });

  it('retries failures with backoff 1, 2, 4 … 30 s, forever, and a success resets it', () => {
    const m = new RegistrationMachine();
    let now = 0;
    let a = attemptOf(m.ownerChanged(':1.7', now));
    const waits: number[] = [];
    for (let i = 0; i < 40; i++) {
      const cmd = m.finished(a, FAILED, now);
      assert.equal(cmd.kind, 'wait');
      const ms = (cmd as { ms: number }).ms;
      waits.push(ms);
      assert.equal(m.view().nextAttemptAt, now + ms);
      assert.equal(m.view().failures, i + 1);
      now += ms;
      a = attemptOf(m.timerFired(now));
    }
    assert.deepEqual(waits.slice(0, 7), [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]);
    assert.ok(waits.every((w) => w <= DEFAULT_BACKOFF.maxMs));
    assert.equal(m.view().lastError, 'org.bluez.Error.Failed: boom');
    m.finished(a, OK, now);
    assert.equal(m.view().failures, 0);
    assert.equal(m.view().registered, true);
    // The last error stays visible (it is the *last* error), and the next failure starts over at 1 s.
    assert.equal(m.view().lastError, 'org.bluez.Error.Failed: boom');
    const notes = m.takeNotes();
    assert.deepEqual(notes.at(-1), { kind: 'registered', afterFailures: 40, alreadyExisted: false });
    // Identical failures after the first are marked as repeats (the journal logs them quietly).
    const failed = notes.filter((n) => n.kind === 'failed');
    assert.equal(failed.length, 40);
    assert.equal(failed[0]?.kind === 'failed' && failed[0].repeat, false);
    assert.ok(failed.slice(1).every((n) => n.kind === 'failed' && n.repeat));
  });

  it('re-registers at once with a new owner and ignores replies meant for the old one', () => {
    const m = new RegistrationMachine();
    const a = attemptOf(m.ownerChanged(':1.7', 0));
    m.finished(a, FAILED, 5); // waiting 1 s now
    const b = attemptOf(m.ownerChanged(':1.9', 100)); // no waiting for the timer
    assert.equal(b.owner, ':1.9');
    assert.equal(b.number, 1);
    assert.equal(m.view().failures, 0);
    assert.equal(m.finished(a, OK, 110).kind, 'none'); // stale
    assert.equal(m.view().registered, false);
    m.finished(b, OK, 120);
    assert.equal(m.view().registered, true);
    m.takeNotes();
    // bluetoothd restarts: the registration is gone, a new attempt goes to the new owner at once.
    const c = attemptOf(m.ownerChanged(':1.12', 200));
    assert.equal(m.view().registered, false);
    assert.deepEqual(m.takeNotes(), [{ kind: 'lost', reason: 'owner-changed' }]);
    m.finished(c, OK, 210);
    assert.equal(m.view().registrations, 2);
  });

  it('does nothing while BlueZ is away and the timer cannot start an attempt', () => {
    const m = new RegistrationMachine();
    const a = attemptOf(m.ownerChanged(':1.7', 0));
    m.finished(a, FAILED, 1);
    assert.equal(m.ownerChanged(undefined, 2).kind, 'cancel-timer');
    assert.equal(m.view().phase, 'no-bluez');
    assert.equal(m.timerFired(1001).kind, 'none');
    assert.equal(m.released(1002).kind, 'none');
    assert.equal(m.ownerChanged(undefined, 3).kind, 'none');
  });

  it('AlreadyExists from a fresh owner is someone else: a conflict, also on every retry', () => {
    const m = new RegistrationMachine();
    let a = attemptOf(m.ownerChanged(':1.7', 0));
    const exists: RegisterOutcome = { ok: false, name: ERR_ALREADY_EXISTS, message: 'Already Exists' };
    for (let i = 0; i < 3; i++) {
      const cmd = m.finished(a, exists, i * 100);
      assert.equal(cmd.kind, 'wait');
      const v = m.view();
      assert.equal(v.registered, false);
      assert.equal(v.conflict, true);
      assert.match(v.lastError ?? '', /held by another program/);
      a = attemptOf(m.timerFired(i * 100 + 50));
    }
    const notes = m.takeNotes();
    assert.ok(notes.every((n) => n.kind === 'failed' && n.conflict));
  });

  it('AlreadyExists after an unanswered call of ours is our own registration: success', () => {
    const m = new RegistrationMachine();
    const a = attemptOf(m.ownerChanged(':1.7', 0));
    m.finished(
      a,
      { ok: false, name: 'Timeout', message: 'no reply within 5000 ms', indeterminate: true },
      5000,
    );
    assert.equal(m.view().conflict, false);
    const b = attemptOf(m.timerFired(6000));
    m.finished(b, { ok: false, name: ERR_ALREADY_EXISTS, message: 'Already Exists' }, 6001);
    assert.equal(m.view().registered, true);
    assert.equal(m.view().conflict, false);
    assert.deepEqual(m.takeNotes().at(-1), { kind: 'registered', afterFailures: 1, alreadyExisted: true });
  });

  it('NotPermitted (UUID already registered) is reported as a conflict and retried', () => {
    const m = new RegistrationMachine();
    const a = attemptOf(m.ownerChanged(':1.7', 0));
    const cmd = m.finished(a, { ok: false, name: ERR_NOT_PERMITTED, message: 'UUID already registered' }, 0);
    assert.deepEqual(cmd, { kind: 'wait', ms: 1000 });
    assert.equal(m.view().conflict, true);
    assert.equal(
      m.view().lastError,
      `held by another program (${ERR_NOT_PERMITTED}: UUID already registered)`,
    );
    const [note] = m.takeNotes();
    assert.equal(note?.kind === 'failed' && note.conflict, true);
    // The other program goes away: the next retry succeeds and the conflict clears.
    m.finished(attemptOf(m.timerFired(1000)), OK, 1000);
    assert.equal(m.view().conflict, false);
    assert.equal(m.view().registered, true);
  });

  it('Release from BlueZ: registers again after the initial backoff', () => {
    const m = new RegistrationMachine({ initialMs: 50, maxMs: 400 });
    m.finished(attemptOf(m.ownerChanged(':1.7', 0)), OK, 0);
    m.takeNotes();
    assert.deepEqual(m.released(10), { kind: 'wait', ms: 50 });
    assert.equal(m.view().registered, false);
    assert.deepEqual(m.takeNotes(), [{ kind: 'lost', reason: 'released' }]);
    const a = attemptOf(m.timerFired(60));
    // Having been registered with this owner, AlreadyExists now means ours.
    m.finished(a, { ok: false, name: ERR_ALREADY_EXISTS, message: 'x' }, 61);
    assert.equal(m.view().registered, true);
  });

  it('never has two calls in flight and never forgets a registration while BlueZ has an owner', () => {
    type Ev =
      | { t: 'owner'; owner: string | undefined }
      | { t: 'reply'; which: number; outcome: RegisterOutcome }
      | { t: 'timer' }
      | { t: 'release' };
    const outcome = fc.constantFrom<RegisterOutcome>(
      OK,
      FAILED,
      { ok: false, name: ERR_ALREADY_EXISTS, message: 'x' },
      { ok: false, name: ERR_NOT_PERMITTED, message: 'x' },
      { ok: false, name: 'Timeout', message: 'x', indeterminate: true },
    );
    const ev: fc.Arbitrary<Ev> = fc.oneof(
      fc.record({
        t: fc.constant('owner' as const),
        owner: fc.constantFrom(':1.1', ':1.2', ':1.3', undefined),
      }),
      fc.record({ t: fc.constant('reply' as const), which: fc.nat(5), outcome }),
      fc.record({ t: fc.constant('timer' as const) }),
      fc.record({ t: fc.constant('release' as const) }),
    );
    fc.assert(
      fc.property(fc.array(ev, { maxLength: 80 }), (events) => {
        const m = new RegistrationMachine({ initialMs: 10, maxMs: 80 });
        let now = 0;
        let owner: string | undefined;
        let timer: number | undefined; // due time
        const inFlight: Attempt[] = [];
        const run = (cmd: Command) => {
          if (cmd.kind === 'register') inFlight.push(cmd.attempt);
          if (cmd.kind === 'wait') {
            assert.ok(cmd.ms >= 10 && cmd.ms <= 80, `wait ${cmd.ms}`);
            timer = now + cmd.ms;
          }
          if (cmd.kind === 'cancel-timer') timer = undefined;
        };
        for (const e of events) {
          now += 5;
          if (e.t === 'owner') {
            owner = e.owner;
            run(m.ownerChanged(e.owner, now));
          } else if (e.t === 'reply') {
            const a = inFlight.splice(e.which % Math.max(inFlight.length, 1), 1)[0];
            if (a) run(m.finished(a, e.outcome, now));
          } else if (e.t === 'timer') {
            if (timer !== undefined) {
              now = Math.max(now, timer);
              timer = undefined;
              run(m.timerFired(now));
            }
          } else {
            run(m.released(now));
          }
          const v = m.view();
          const last = inFlight.at(-1);
          if (owner === undefined) {
            assert.equal(v.phase, 'no-bluez');
          } else {
            // Registered, or a call on its way, or a retry armed: never stuck.
            const live = v.registered || v.phase === 'registering' || timer !== undefined;
            assert.ok(live, `stuck: ${JSON.stringify(v)}`);
            if (v.phase === 'registering') assert.equal(last?.owner, owner, 'registering without a call');
            if (v.phase === 'retrying') assert.ok(timer !== undefined, 'retrying without a timer');
          }
        }
      }),
      { numRuns: 500 },
    );
  });
});
