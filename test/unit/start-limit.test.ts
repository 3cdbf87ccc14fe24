// Pacing under systemd's start limit, and a burst of restart requests becoming one restart.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SystemdManager } from '../../src/systemd/manager.js';
import { UnitRestarter } from '../../src/systemd/restarts.js';
import { paceDelay } from '../../src/systemd/start-limit.js';

const DEFAULT = { burst: 5, intervalMs: 10_000 };

describe('paceDelay', () => {
  it('lets burst - 1 starts through in one interval, then waits for the oldest to leave it', () => {
    assert.equal(paceDelay([], 0, DEFAULT), 0);
    assert.equal(paceDelay([0, 100, 200], 300, DEFAULT), 0);
    // Four starts in the window: the fifth would use systemd's last slot, kept spare.
    assert.equal(paceDelay([0, 100, 200, 300], 400, DEFAULT), 10_000 + 250 - 400);
    // The oldest has left the window: go.
    assert.equal(paceDelay([0, 100, 200, 300], 10_001, DEFAULT), 0);
  });

  it('any sequence it allows stays inside systemd fixed-window limit', () => {
    // Simulate systemd's ratelimit (window begins at the first start, resets after the interval).
    let begin = -Infinity;
    let n = 0;
    const history: number[] = [];
    let now = 0;
    for (let i = 0; i < 200; i++) {
      now += paceDelay(history, now, DEFAULT);
      if (now - begin >= DEFAULT.intervalMs) {
        begin = now;
        n = 0;
      }
      n++;
      assert.ok(n <= DEFAULT.burst, `start ${i} at ${now} would be refused`);
      history.push(now);
      now += 37; // a restart takes a little while
    }
  });

  it('no limit (interval or burst 0): never waits', () => {
    assert.equal(paceDelay([0, 1, 2, 3, 4, 5], 6, { burst: 5, intervalMs: 0 }), 0);
    assert.equal(paceDelay([0, 1, 2, 3, 4, 5], 6, { burst: 0, intervalMs: 10_000 }), 0);
  });
});

describe('UnitRestarter', () => {
  it('joins restart requests made while another restart of the unit waits for its turn', async () => {
    let jobs = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const systemd = {
      restart: async () => {
        jobs++;
        await gate;
        return 'done';
      },
    } as unknown as SystemdManager;
    const r = new UnitRestarter(systemd, 5000);
    const first = r.restart('x.service', 'caller'); // runs
    await new Promise((res) => setImmediate(res));
    const burst = [1, 2, 3, 4, 5, 6].map(() => r.restart('x.service', 'caller')); // wait: one restart
    release();
    assert.deepEqual(await Promise.all([first, ...burst]), Array(7).fill('done'));
    assert.equal(jobs, 2);
  });
});
