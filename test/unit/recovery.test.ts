// RecoveryTracker against a fake clock: the seed's recovery table row by row, the two ways the Python service
// stopped recovering, holds by callers and by systemd, and the wake-up times.
//
// run() plays the I/O layer: it feeds the tracker the unit's state on every change and poll, performs its
// actions (each takes a scripted time and succeeds or fails), calls actionFinished then observes again, and
// ticks exactly at nextWakeAt (optionally also on a dense grid, to prove that ticks outside nextWakeAt
// change nothing).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { UnitObservation } from '../../src/health/classify.js';
import {
  DEFAULT_RECOVERY_SETTINGS,
  type Note,
  type RecoverySettings,
  RecoveryTracker,
  type RepairAction,
  type RepairKind,
  type Step,
} from '../../src/health/recovery.js';
import type { HealthState, ServiceName } from '../../src/health/states.js';
import { defaults } from '../../src/settings.js';
import { revisionWatch } from './helpers/revision-watch.js';

const S = 1_000;

const ACTIVE: UnitObservation = { loadState: 'loaded', activeState: 'active', subState: 'running' };
const FAILED: UnitObservation = { loadState: 'loaded', activeState: 'failed', subState: 'failed' };
const INACTIVE: UnitObservation = { loadState: 'loaded', activeState: 'inactive', subState: 'dead' };
const MISSING: UnitObservation = { loadState: 'not-found', activeState: 'inactive', subState: 'dead' };
const activating = (since?: number, subState = 'start'): UnitObservation => ({
  loadState: 'loaded',
  activeState: 'activating',
  subState,
  ...(since === undefined ? {} : { activatingSinceMs: since }),
});
const degraded = (detail = 'functional check failed'): UnitObservation => ({
  ...ACTIVE,
  functional: { ok: false, detail },
});

interface Attempt {
  t: number;
  kind: RepairKind;
  attempt: number;
}

interface Script {
  service?: ServiceName;
  settings?: Partial<RecoverySettings>;
  /** Simulated time to run to (inclusive). */
  until: number;
  /** What systemd (and the functional check) would report at time t. */
  unitAt: (t: number) => UnitObservation;
  /** Times at which the unit changes by itself (the I/O layer gets a PropertiesChanged signal). */
  changes?: number[];
  /** Periods of safety polls (each observes the unit). */
  polls?: number[];
  /** How an action goes; default: it fails after 50 ms. */
  perform?: (t: number, a: RepairAction) => { ok: boolean; tookMs: number };
  /** Intervals during which a caller holds the unit. */
  holds?: { from: number; to: number }[];
  /** Also tick every denseTickMs (the result must not differ). */
  denseTickMs?: number;
}

interface Run {
  tracker: RecoveryTracker;
  attempts: Attempt[];
  states: { t: number; state: HealthState }[];
  notes: { t: number; note: Note }[];
  ticks: number;
}

/** Most rules below are about the 120 s healthy reset, which the shipped resetOnRecovery (true) bypasses. */
const HEALTHY_RESET: Partial<RecoverySettings> = { resetOnRecovery: false };

function run(s: Script): Run {
  const tracker = new RecoveryTracker(s.service ?? 'hostapd', { ...HEALTHY_RESET, ...s.settings });
  const out: Run = { tracker, attempts: [], states: [], notes: [], ticks: 0 };
  const statusWatch = revisionWatch(
    () => tracker.status(),
    () => tracker.revision,
    'the tracker status',
  );
  const perform = s.perform ?? (() => ({ ok: false, tookMs: 50 }));
  let wake: number | undefined;
  let finish: { t: number; ok: boolean } | undefined;
  let held = 0;
  const polls = (s.polls ?? []).map((p) => ({ p, next: p }));
  const changes = [...(s.changes ?? [])].sort((a, b) => a - b);
  let ci = 0;
  const holdEvents = (s.holds ?? [])
    .flatMap((h) => [
      { t: h.from, start: true },
      { t: h.to, start: false },
    ])
    .sort((a, b) => a.t - b.t);
  let hi = 0;
  let dense = s.denseTickMs ? s.denseTickMs : undefined;

  const handle = (t: number, step: Step): void => {
    statusWatch();
    assert.ok(
      step.nextWakeAt === undefined || step.nextWakeAt > t,
      `nextWakeAt ${step.nextWakeAt} not after ${t}`,
    );
    for (const note of step.notes) out.notes.push({ t, note });
    if (step.stateChanged) out.states.push({ t, state: step.state });
    if (step.action) {
      assert.equal(finish, undefined, `action at ${t} while another is in flight`);
      assert.equal(held, 0, `action at ${t} while a caller holds the unit`);
      out.attempts.push({ t, kind: step.action.kind, attempt: step.action.attempt });
      const r = perform(t, step.action);
      finish = { t: t + r.tookMs, ok: r.ok };
    }
    wake = step.nextWakeAt;
  };
  const observe = (t: number) => handle(t, tracker.observe(t, s.unitAt(t)));

  observe(0);
  for (;;) {
    const times = [finish?.t, holdEvents[hi]?.t, changes[ci], ...polls.map((p) => p.next), wake, dense];
    const t = Math.min(...times.filter((x): x is number => x !== undefined));
    if (!(t <= s.until)) break;
    if (finish?.t === t) {
      const f = finish;
      finish = undefined;
      handle(t, tracker.actionFinished(t, f.ok, f.ok ? undefined : 'job failed'));
      observe(t);
      continue;
    }
    const h = holdEvents[hi];
    if (h?.t === t) {
      hi++;
      if (h.start) {
        held++;
        handle(t, tracker.externalStarted(t));
      } else {
        held--;
        handle(t, tracker.externalFinished(t));
        observe(t);
      }
      continue;
    }
    if (changes[ci] === t) {
      ci++;
      observe(t);
      continue;
    }
    const p = polls.find((q) => q.next === t);
    if (p) {
      p.next += p.p;
      observe(t);
      continue;
    }
    if (wake === t) {
      out.ticks++;
      handle(t, tracker.tick(t));
      continue;
    }
    if (dense !== undefined && dense === t) {
      dense += s.denseTickMs ?? 1;
      handle(t, tracker.tick(t));
    }
  }
  return out;
}

const times = (r: Run) => r.attempts.map((a) => a.t);
const messages = (r: Run) => r.notes.map((n) => n.note.message);

/** A unit that is down from t=0 and that no restart brings back. */
const outage = (until: number, more: Partial<Script> = {}): Script => ({
  until,
  unitAt: () => FAILED,
  ...more,
});

describe('recovery table: inactive/failed -> restart at once, then up to 3 fast retries 5 s apart', () => {
  test('failed: attempts at 0, 5, 10, 15 s; nothing in between', () => {
    const r = run(outage(20 * S));
    assert.deepEqual(times(r), [0, 5 * S, 10 * S, 15 * S]);
    assert.deepEqual(
      r.attempts.map((a) => [a.kind, a.attempt]),
      [
        ['restart', 1],
        ['restart', 2],
        ['restart', 3],
        ['restart', 4],
      ],
    );
    assert.equal(r.tracker.status().retries, 4);
  });

  test('inactive is treated like failed', () => {
    const r = run(outage(20 * S, { unitAt: () => INACTIVE }));
    assert.deepEqual(times(r), [0, 5 * S, 10 * S, 15 * S]);
  });

  test('detected while running: the first restart is at the moment of detection', () => {
    const r = run({ until: 20 * S, unitAt: (t) => (t < 7_300 ? ACTIVE : FAILED), changes: [7_300] });
    assert.deepEqual(times(r), [7_300, 12_300, 17_300]);
    assert.deepEqual(
      r.states.map((x) => x.state),
      ['active', 'failed'],
    );
  });

  test('step by step: tick before the due time does nothing, tick at it restarts', () => {
    const tr = new RecoveryTracker('hostapd');
    let st = tr.observe(1_000, FAILED);
    assert.deepEqual(st.action, { kind: 'restart', unit: 'hostapd.service', attempt: 1 });
    assert.equal(st.nextWakeAt, undefined, 'nothing to wake for while the restart runs');
    assert.equal(tr.status().mode, 'fast');
    st = tr.actionFinished(1_400, false, 'job failed');
    assert.equal(st.action, undefined);
    st = tr.observe(1_400, FAILED);
    assert.equal(st.nextWakeAt, 6_000);
    assert.equal(tr.status().nextAttemptAt, 6_000);
    assert.equal(tr.tick(5_999).action, undefined);
    assert.equal(tr.tick(6_000).action?.attempt, 2);
  });
});

describe('recovery table: activating for more than 30 s counts as failed', () => {
  test('restarted at 30 s after it began activating, not at 29 s (polls every 5 s and 100 ms change nothing)', () => {
    for (const polls of [[], [5 * S], [100]]) {
      const r = run({
        until: 32 * S,
        unitAt: () => activating(-2 * S),
        polls,
        perform: () => ({ ok: true, tookMs: 0 }),
      });
      assert.deepEqual(times(r), [28 * S], `polls ${polls}`);
      assert.deepEqual(
        r.states.map((x) => [x.t, x.state]),
        [
          [0, 'activating'],
          [28 * S, 'failed'],
        ],
      );
    }
  });

  test('29 s activating: still activating, no action; the wake-up is at 30 s', () => {
    const tr = new RecoveryTracker('hostapd');
    let st = tr.observe(0, activating(0));
    assert.equal(st.state, 'activating');
    assert.equal(st.nextWakeAt, 30 * S);
    st = tr.tick(29 * S);
    assert.equal(st.state, 'activating');
    assert.equal(st.action, undefined);
    st = tr.tick(30 * S);
    assert.equal(st.state, 'failed');
    assert.equal(st.action?.kind, 'restart');
  });

  test('without a systemd timestamp the tracker times it from when it first saw it activating', () => {
    const r = run({
      until: 40 * S,
      unitAt: (t) => (t < 3 * S ? ACTIVE : activating()),
      changes: [3 * S],
      polls: [5 * S],
    });
    assert.equal(r.attempts[0]?.t, 33 * S);
  });

  test('an activation that completes in time is left alone', () => {
    const r = run({
      until: 60 * S,
      unitAt: (t) => (t < 20 * S ? activating(0) : ACTIVE),
      changes: [20 * S],
      polls: [5 * S],
    });
    assert.deepEqual(r.attempts, []);
    assert.deepEqual(
      r.states.map((x) => x.state),
      ['activating', 'active'],
    );
  });
});

describe('recovery table: recovered after restart -> success logged, counter reset', () => {
  const recovering = (settings: Partial<RecoverySettings> = {}) => {
    let upAt = Number.POSITIVE_INFINITY;
    return run({
      until: 10 * S,
      settings,
      unitAt: (t) => (t >= upAt ? ACTIVE : FAILED),
      polls: [5 * S],
      // The first restart fails, the second works.
      perform: (t, a) => {
        if (a.attempt === 2) upAt = t + 300;
        return { ok: a.attempt === 2, tookMs: 300 };
      },
    });
  };

  test('the restart that works ends the recovery: "recovered" is logged, mode none, no more attempts', () => {
    const r = recovering();
    assert.deepEqual(times(r), [0, 5 * S]);
    assert.ok(messages(r).includes('hostapd.service: recovered after 2 attempts'), messages(r).join('\n'));
    const st = r.tracker.status();
    assert.equal(st.state, 'active');
    assert.equal(st.mode, 'none');
    assert.equal(st.nextAttemptAt, undefined);
    assert.equal(st.lastAction, 'restart (attempt 2): done');
  });

  test('without resetOnRecovery the counter returns to 0 after 120 s healthy (so a flapping unit does not restart in a loop)', () => {
    const r = recovering();
    assert.equal(r.tracker.status().retries, 2);
    const st = r.tracker.tick(5_300 + 120 * S);
    assert.equal(r.tracker.status().retries, 0);
    assert.ok(st.notes.some((n) => n.message.startsWith('hostapd.service: retry counter reset')));
  });

  test('resetOnRecovery: the counter is 0 as soon as the unit is back', () => {
    const r = recovering({ resetOnRecovery: true });
    assert.equal(r.tracker.status().retries, 0);
    assert.ok(messages(r).some((m) => m.includes('retry counter reset (recovered; was 2)')));
  });

  test('what ships: the tracker and the daemon reset the counter at the recovery (one default)', () => {
    assert.equal(DEFAULT_RECOVERY_SETTINGS.resetOnRecovery, true);
    assert.equal(defaults().resetOnRecovery, true);
    assert.equal(new RecoveryTracker('hostapd').settings.resetOnRecovery, true);
  });
});

describe('recovery table: after 3 fast retries fail -> slow retry every 60 s', () => {
  test('the switch to slow retries is logged once, when the last fast retry has failed', () => {
    const r = run(outage(200 * S));
    assert.deepEqual(times(r), [0, 5 * S, 10 * S, 15 * S, 75 * S, 135 * S, 195 * S]);
    const slow = r.notes.filter((n) => n.note.message.includes('retrying every 60 s'));
    assert.equal(slow.length, 1);
    assert.equal(slow[0]?.t, 15 * S + 50, 'right after attempt 4 reported its failure');
    assert.equal(r.tracker.status().mode, 'slow');
    assert.equal(r.tracker.status().nextAttemptAt, 255 * S);
  });

  test('if the last fast retry works, nothing says slow', () => {
    let upAt = Number.POSITIVE_INFINITY;
    const r = run({
      until: 60 * S,
      unitAt: (t) => (t >= upAt ? ACTIVE : FAILED),
      perform: (t, a) => {
        if (a.attempt === 4) upAt = t + 10;
        return { ok: a.attempt === 4, tookMs: 10 };
      },
    });
    assert.deepEqual(times(r), [0, 5 * S, 10 * S, 15 * S]);
    assert.ok(!messages(r).some((m) => m.includes('retrying every')));
    assert.equal(r.tracker.status().mode, 'none');
  });

  test('the intervals and the number of fast retries are settings', () => {
    const r = run(
      outage(10 * S, {
        settings: { fastRetries: 2, fastRetryIntervalMs: 500, slowRetryIntervalMs: 3 * S },
        perform: () => ({ ok: false, tookMs: 0 }),
      }),
    );
    assert.deepEqual(times(r), [0, 500, 1_000, 4_000, 7_000, 10_000]);
  });
});

describe('recovery table: healthy for 120 s -> counter reset', () => {
  test('measured from when it became healthy, not from the last healthy poll', () => {
    for (const polls of [[5 * S], [100]]) {
      let upAt = Number.POSITIVE_INFINITY;
      const r = run({
        until: 200 * S,
        unitAt: (t) => (t >= upAt ? ACTIVE : FAILED),
        polls,
        perform: (t, a) => {
          if (a.attempt === 5) upAt = t + 1_000;
          return { ok: a.attempt === 5, tookMs: 1_000 };
        },
      });
      // Attempt 5 (the first slow one) at 75 s works; the unit is active from 76 s.
      assert.deepEqual(times(r), [0, 5 * S, 10 * S, 15 * S, 75 * S]);
      const resets = r.notes.filter((n) => n.note.message.includes('retry counter reset'));
      assert.deepEqual(
        resets.map((n) => n.t),
        [196 * S],
        `polls ${polls}`,
      );
      assert.equal(r.tracker.status().retries, 0);
      assert.equal(r.tracker.status().mode, 'none');
    }
  });

  test('a failure before the 120 s are up continues the schedule; the 120 s start again at the next recovery', () => {
    // Up from 5 s to 50 s, down 50..52 s, back up at 52 s (by itself: systemd's Restart=, say).
    const unitAt = (t: number) => (t < 5 * S || (t >= 50 * S && t < 52 * S) ? FAILED : ACTIVE);
    const r = run({
      until: 300 * S,
      unitAt,
      changes: [5 * S, 50 * S, 52 * S],
      polls: [5 * S],
      perform: () => ({ ok: false, tookMs: 10 }),
    });
    // Attempt 1 at 0; at 50 s the next attempt (a fast retry, due 5 s after attempt 1) is overdue: at once.
    assert.deepEqual(times(r), [0, 50 * S]);
    const resets = r.notes.filter((n) => n.note.message.includes('retry counter reset')).map((n) => n.t);
    assert.deepEqual(resets, [172 * S]);
  });
});

describe('the Python service failure modes', () => {
  test('over a 10-minute outage the slow retry fires every 60 s, however often the unit is polled', () => {
    const expected = [0, 5, 10, 15, 75, 135, 195, 255, 315, 375, 435, 495, 555].map((s) => s * S);
    for (const polls of [[], [5 * S], [100], [5 * S, 100]]) {
      const r = run(outage(600 * S, { polls }));
      assert.deepEqual(times(r), expected, `polls ${polls}`);
      assert.equal(r.attempts.length, 1 + 3 + 9);
      assert.equal(r.tracker.status().retries, 13);
      assert.equal(r.tracker.status().nextAttemptAt, 615 * S);
    }
  });

  test('with polls only every 5 s and restart jobs taking 2 s, the slow retries still keep their minute', () => {
    const r = run(outage(600 * S, { polls: [5 * S], perform: () => ({ ok: false, tookMs: 2 * S }) }));
    assert.deepEqual(
      times(r),
      [0, 5, 10, 15, 75, 135, 195, 255, 315, 375, 435, 495, 555].map((s) => s * S),
    );
  });

  test('after 120 s healthy the counter is back to 0, with healthy polls every 5 s', () => {
    const tr = new RecoveryTracker('networkd', HEALTHY_RESET);
    tr.observe(0, FAILED);
    tr.actionFinished(100, false);
    tr.observe(100, FAILED);
    tr.tick(5 * S);
    tr.actionFinished(5_100, true);
    let st = tr.observe(5_100, ACTIVE);
    assert.equal(st.nextWakeAt, 125_100);
    assert.equal(tr.status().retries, 2);
    for (let t = 10 * S; t < 125_100; t += 5 * S) {
      st = tr.observe(t, ACTIVE);
      assert.equal(st.nextWakeAt, 125_100, `a healthy poll at ${t} must not move the reset`);
      assert.equal(tr.status().retries, 2);
    }
    st = tr.tick(125_100);
    assert.equal(tr.status().retries, 0);
    assert.equal(st.nextWakeAt, undefined);
  });
});

describe("holds: a caller's restart and systemd's own work are waited for, not fought", () => {
  test('no restart while a caller holds the unit; after release, the next observation decides', () => {
    const r = run({
      until: 30 * S,
      unitAt: (t) => (t < 2 * S ? ACTIVE : t < 12 * S ? FAILED : ACTIVE),
      changes: [2 * S, 12 * S],
      polls: [100],
      holds: [{ from: 1 * S, to: 12 * S }],
    });
    assert.deepEqual(r.attempts, []);
    assert.equal(r.tracker.status().retries, 0);
  });

  test('a caller whose restart leaves the unit failed: the monitor restarts it once the hold ends', () => {
    const r = run({
      until: 20 * S,
      unitAt: (t) => (t < 2 * S ? ACTIVE : FAILED),
      changes: [2 * S],
      polls: [5 * S],
      holds: [{ from: 1 * S, to: 4 * S }],
    });
    assert.deepEqual(times(r), [4 * S, 9 * S, 14 * S, 19 * S]);
  });

  test('holds nest: released only when the last holder finishes', () => {
    const tr = new RecoveryTracker('hostapd');
    tr.observe(0, ACTIVE);
    tr.externalStarted(10);
    tr.externalStarted(20);
    tr.observe(30, FAILED);
    assert.equal(tr.externalFinished(40).action, undefined);
    assert.equal(tr.observe(50, FAILED).action, undefined);
    assert.equal(tr.status().waitingFor, 'caller');
    assert.equal(tr.externalFinished(60).action, undefined, 'waits for a fresh observation');
    assert.equal(tr.status().waitingFor, 'observation');
    assert.equal(tr.observe(70, FAILED).action?.kind, 'restart');
  });

  test("no restart while systemd's own auto-restart is in progress", () => {
    // Restart= on the unit: after the crash at 2 s systemd waits (auto-restart), starts it again, it runs.
    const r = run({
      until: 60 * S,
      unitAt: (t) =>
        t < 2 * S
          ? ACTIVE
          : t < 3 * S
            ? activating(2 * S, 'auto-restart')
            : t < 4 * S
              ? activating(2 * S, 'start')
              : ACTIVE,
      changes: [2 * S, 3 * S, 4 * S],
      polls: [100],
    });
    assert.deepEqual(r.attempts, []);
    assert.deepEqual(
      r.states.map((x) => x.state),
      ['active', 'activating', 'active'],
    );
  });

  test('no restart while a systemd job is queued or the unit is deactivating; stuck for 30 s -> restart', () => {
    const queued: UnitObservation = { ...INACTIVE, jobQueued: true };
    const stopping: UnitObservation = {
      loadState: 'loaded',
      activeState: 'deactivating',
      subState: 'stop-sigterm',
    };
    const r1 = run({
      until: 40 * S,
      unitAt: (t) => (t < 1 * S ? ACTIVE : t < 5 * S ? queued : ACTIVE),
      changes: [1 * S, 5 * S],
      polls: [100],
    });
    assert.deepEqual(r1.attempts, []);
    const r2 = run({
      until: 40 * S,
      unitAt: (t) => (t < 1 * S ? ACTIVE : stopping),
      changes: [1 * S],
      polls: [5 * S],
      perform: () => ({ ok: true, tookMs: 0 }),
    });
    assert.deepEqual(times(r2), [31 * S]);
    assert.equal(r2.states.at(-1)?.state, 'inactive');
  });

  test('status says what a recovery waits for', () => {
    const tr = new RecoveryTracker('hostapd');
    tr.observe(0, { ...FAILED, jobQueued: true });
    assert.equal(tr.status().waitingFor, 'systemd');
    assert.equal(tr.status().nextAttemptAt, 30 * S);
    tr.observe(100, FAILED);
    assert.equal(tr.status().waitingFor, 'action');
  });
});

describe('missing units are never restarted', () => {
  for (const [name, obs] of [
    ['not-found', MISSING],
    ['masked', { ...INACTIVE, loadState: 'masked' }],
  ] as const) {
    test(`${name}: 10 minutes of polls, no action, no wake-up`, () => {
      const r = run({ until: 600 * S, unitAt: () => obs, polls: [5 * S, 100] });
      assert.deepEqual(r.attempts, []);
      assert.equal(r.ticks, 0);
      assert.equal(r.tracker.state, 'missing');
      assert.equal(r.tracker.status().mode, 'none');
    });
  }

  test('a unit that disappears in mid-recovery stops being restarted', () => {
    const r = run({
      until: 120 * S,
      unitAt: (t) => (t < 7 * S ? FAILED : MISSING),
      changes: [7 * S],
      polls: [5 * S],
    });
    assert.deepEqual(times(r), [0, 5 * S]);
    assert.equal(r.tracker.status().mode, 'none');
    assert.equal(r.tracker.status().nextAttemptAt, undefined);
  });
});

describe('degraded: the matching repair', () => {
  test('bluetooth: power the adapter on first, restart if that did not help, then power on again', () => {
    const r = run({
      service: 'bluetooth',
      until: 30 * S,
      unitAt: () => degraded('hci0 is not powered'),
      polls: [5 * S],
      perform: () => ({ ok: true, tookMs: 100 }),
    });
    assert.deepEqual(
      r.attempts.map((a) => [a.t, a.kind]),
      [
        [5 * S, 'power-on-adapter'],
        [10 * S, 'restart'],
        [15 * S, 'power-on-adapter'],
        [20 * S, 'restart'],
      ],
    );
  });

  test('bluetooth: powering on helps -> recovered, no restart', () => {
    let powered = false;
    const r = run({
      service: 'bluetooth',
      until: 200 * S,
      unitAt: () => (powered ? ACTIVE : degraded('hci0 is not powered')),
      perform: (_t, a) => {
        if (a.kind === 'power-on-adapter') powered = true;
        return { ok: true, tookMs: 20 };
      },
    });
    assert.deepEqual(
      r.attempts.map((a) => a.kind),
      ['power-on-adapter'],
    );
    assert.ok(messages(r).includes('bluetooth.service: recovered after 1 attempt'));
  });

  test('bluetooth failed (not degraded) is restarted, never powered on', () => {
    const r = run(outage(20 * S, { service: 'bluetooth' }));
    assert.ok(r.attempts.every((a) => a.kind === 'restart'));
  });

  test('hostapd and networkd degraded: restarted, after the grace period', () => {
    for (const service of ['hostapd', 'networkd'] as const) {
      const r = run({ service, until: 12 * S, unitAt: () => degraded(), polls: [100] });
      assert.deepEqual(
        r.attempts.map((a) => [a.t, a.kind]),
        [
          [5 * S, 'restart'],
          [10 * S, 'restart'],
        ],
      );
    }
  });

  test('a functional check that fails for less than the grace period causes nothing', () => {
    const r = run({
      until: 60 * S,
      unitAt: (t) => (t >= 1 * S && t < 5_900 ? degraded() : ACTIVE),
      changes: [1 * S, 5_900],
      polls: [100],
    });
    assert.deepEqual(r.attempts, []);
    assert.deepEqual(
      r.states.map((x) => x.state),
      ['active', 'degraded', 'active'],
    );
  });
});

describe('restarts that fail or take long', () => {
  test('restartFinished(false): the next retry is 5 s after the failed attempt began', () => {
    const r = run(outage(12 * S, { perform: () => ({ ok: false, tookMs: 1_500 }) }));
    assert.deepEqual(times(r), [0, 5 * S, 10 * S]);
    assert.ok(messages(r).includes('hostapd.service: restart (attempt 1) failed: job failed'));
  });

  test('nothing starts while a restart is still running; an overdue retry starts when it ends', () => {
    const r = run(outage(40 * S, { polls: [100], perform: () => ({ ok: false, tookMs: 7 * S }) }));
    assert.deepEqual(
      times(r),
      [0, 7 * S, 14 * S, 21 * S, 81 * S].filter((t) => t <= 40 * S),
    );
  });

  test('a restart job that reports success but the unit is still failed counts as a failed attempt', () => {
    const r = run(outage(12 * S, { perform: () => ({ ok: true, tookMs: 10 }) }));
    assert.deepEqual(times(r), [0, 5 * S, 10 * S]);
  });

  test('an observation taken during the restart does not trigger another restart after it', () => {
    const tr = new RecoveryTracker('hostapd');
    tr.observe(0, FAILED);
    tr.observe(100, INACTIVE); // mid-restart, stale by the time the job ends
    let st = tr.actionFinished(6 * S, true);
    assert.equal(st.action, undefined);
    assert.equal(tr.tick(6 * S).action, undefined);
    st = tr.observe(6_010, ACTIVE);
    assert.equal(st.action, undefined);
    assert.equal(st.state, 'active');
  });
});

describe('nextWakeAt', () => {
  test('is exactly the next thing that can happen without input', () => {
    const tr = new RecoveryTracker('hostapd', HEALTHY_RESET);
    assert.equal(
      tr.observe(0, ACTIVE).nextWakeAt,
      undefined,
      'healthy with a zero counter: nothing to wait for',
    );
    assert.equal(tr.observe(10, activating(5)).nextWakeAt, 30_005, 'activating: its timeout');
    assert.equal(tr.observe(20, degraded()).nextWakeAt, 5_020, 'degraded: end of grace');
    const st = tr.tick(5_020);
    assert.equal(st.action?.kind, 'restart');
    assert.equal(st.nextWakeAt, undefined, 'in flight: wait for actionFinished');
    tr.actionFinished(5_100, true);
    assert.equal(tr.observe(5_100, ACTIVE).nextWakeAt, 125_100, 'active after attempts: the counter reset');
    tr.externalStarted(6_000);
    assert.equal(tr.observe(6_000, FAILED).nextWakeAt, undefined, 'held by a caller: nothing to wake for');
  });

  test('clock going backwards is treated as no time passing', () => {
    const tr = new RecoveryTracker('hostapd');
    tr.observe(10 * S, FAILED);
    tr.actionFinished(10 * S, false);
    const st = tr.observe(1 * S, FAILED);
    assert.equal(st.nextWakeAt, 15 * S);
    assert.equal(st.action, undefined);
  });

  test('settings are checked', () => {
    assert.throws(() => new RecoveryTracker('hostapd', { fastRetries: -1 }), RangeError);
    assert.throws(() => new RecoveryTracker('hostapd', { slowRetryIntervalMs: Number.NaN }), RangeError);
    assert.throws(() => new RecoveryTracker('hostapd', { fastRetries: 1.5 }), RangeError);
  });

  // Random unit histories, action results and caller holds, on a 100 ms grid with short settings: an I/O
  // layer that ticks only at nextWakeAt must do exactly what one ticking every 100 ms does, and observation
  // spam must change nothing either.
  test('property: ticking only at nextWakeAt = ticking every 100 ms = polling every 100 ms', () => {
    const kinds: UnitObservation[] = [
      ACTIVE,
      FAILED,
      INACTIVE,
      MISSING,
      degraded(),
      { ...INACTIVE, jobQueued: true },
      { loadState: 'loaded', activeState: 'deactivating', subState: 'stop-sigterm' },
      activating(undefined, 'auto-restart'),
    ];
    const grid = (max: number) => fc.integer({ min: 0, max }).map((n) => n * 100);
    const arb = fc.record({
      service: fc.constantFrom<ServiceName>('hostapd', 'bluetooth'),
      fastRetries: fc.integer({ min: 0, max: 3 }),
      resetOnRecovery: fc.boolean(),
      grace: fc.constantFrom(0, 500),
      timeline: fc.array(fc.record({ t: grid(600), kind: fc.integer({ min: 0, max: kinds.length }) }), {
        maxLength: 12,
      }),
      results: fc.array(fc.record({ ok: fc.boolean(), took: grid(30) }), { minLength: 1, maxLength: 8 }),
      holds: fc.array(fc.record({ from: grid(600), len: grid(50) }), { maxLength: 3 }),
    });
    fc.assert(
      fc.property(arb, (c) => {
        const timeline = [...c.timeline].sort((a, b) => a.t - b.t);
        const unitAt = (t: number): UnitObservation => {
          let k = 1; // failed from the start unless the timeline says otherwise
          let since = 0;
          for (const e of timeline) {
            if (e.t <= t) {
              k = e.kind;
              since = e.t;
            }
          }
          // kinds.length stands for "activating since the change, with systemd's timestamp"
          return k === kinds.length ? activating(since) : (kinds[k] as UnitObservation);
        };
        let n = 0;
        const script = (): Script => {
          n = 0;
          return {
            service: c.service,
            settings: {
              fastRetries: c.fastRetries,
              fastRetryIntervalMs: 500,
              slowRetryIntervalMs: 3_000,
              activatingTimeoutMs: 2_000,
              healthyResetMs: 6_000,
              degradedGraceMs: c.grace,
              resetOnRecovery: c.resetOnRecovery,
            },
            until: 70 * S,
            unitAt,
            changes: [...new Set(timeline.map((e) => e.t))],
            perform: () => {
              const r = c.results[n++ % c.results.length] as { ok: boolean; took: number };
              return { ok: r.ok, tookMs: r.took };
            },
            holds: c.holds
              .map((h) => ({ from: h.from, to: h.from + h.len + 100 }))
              .sort((a, b) => a.from - b.from),
          };
        };
        const sparse = run(script());
        const dense = run({ ...script(), denseTickMs: 100 });
        const polled = run({ ...script(), polls: [100] });
        assert.deepEqual(dense.attempts, sparse.attempts);
        assert.deepEqual(dense.states, sparse.states);
        assert.deepEqual(polled.attempts, sparse.attempts);
        assert.deepEqual(polled.states, sparse.states);
        assert.deepEqual(polled.tracker.status(), sparse.tracker.status());
        // Invariants of the schedule itself.
        let prev: Attempt | undefined;
        for (const a of sparse.attempts) {
          if (prev && a.attempt > 1) {
            assert.equal(a.attempt, prev.attempt + 1);
            const gap = prev.attempt <= c.fastRetries ? 500 : 3_000;
            assert.ok(a.t - prev.t >= gap, `attempt ${a.attempt} at ${a.t}, previous at ${prev.t}`);
          }
          const obs = unitAt(a.t);
          assert.notEqual(obs.loadState, 'not-found');
          if (a.kind === 'power-on-adapter') assert.equal(c.service, 'bluetooth');
          prev = a;
        }
      }),
      { numRuns: 300 },
    );
  });
});
