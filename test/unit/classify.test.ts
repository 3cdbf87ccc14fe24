// classify(): one observation of a unit -> its health state.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { classify, type UnitObservation } from '../../src/health/classify.js';

const unit = (activeState: string, more: Partial<UnitObservation> = {}): UnitObservation => ({
  loadState: 'loaded',
  activeState,
  subState: activeState === 'active' ? 'running' : 'dead',
  ...more,
});

describe('classify', () => {
  test('no observation yet is unknown', () => {
    assert.equal(classify(undefined, 0), 'unknown');
  });

  test('active with a passing or absent functional check is active; a failing one is degraded', () => {
    assert.equal(classify(unit('active'), 0), 'active');
    assert.equal(
      classify(unit('active', { functional: { ok: true, detail: 'wlan0 has 10.0.0.1' } }), 0),
      'active',
    );
    assert.equal(
      classify(unit('active', { functional: { ok: false, detail: 'no 10.0.0.1 on wlan0' } }), 0),
      'degraded',
    );
  });

  test('reloading is judged like active', () => {
    assert.equal(classify(unit('reloading'), 0), 'active');
    assert.equal(classify(unit('reloading', { functional: { ok: false, detail: 'x' } }), 0), 'degraded');
  });

  test('activating turns failed at the timeout, not before (29 s activating, 30 s failed)', () => {
    const obs = unit('activating', { subState: 'start', activatingSinceMs: 1_000 });
    assert.equal(classify(obs, 1_000), 'activating');
    assert.equal(classify(obs, 1_000 + 29_000), 'activating');
    assert.equal(classify(obs, 1_000 + 29_999), 'activating');
    assert.equal(classify(obs, 1_000 + 30_000), 'failed');
    assert.equal(classify(obs, 1_000 + 31_000), 'failed');
  });

  test('the activating timeout is a setting', () => {
    const obs = unit('activating', { subState: 'start', activatingSinceMs: 0 });
    assert.equal(classify(obs, 1_999, { activatingTimeoutMs: 2_000 }), 'activating');
    assert.equal(classify(obs, 2_000, { activatingTimeoutMs: 2_000 }), 'failed');
  });

  test('activating without a start time stays activating (the tracker supplies one)', () => {
    assert.equal(classify(unit('activating', { subState: 'start' }), 10_000_000), 'activating');
  });

  test("systemd's auto-restart wait is activating", () => {
    assert.equal(
      classify(unit('activating', { subState: 'auto-restart', activatingSinceMs: 0 }), 100),
      'activating',
    );
  });

  test('deactivating and maintenance are inactive, failed is failed', () => {
    assert.equal(classify(unit('deactivating', { subState: 'stop-sigterm' }), 0), 'inactive');
    assert.equal(classify(unit('maintenance'), 0), 'inactive');
    assert.equal(classify(unit('inactive'), 0), 'inactive');
    assert.equal(classify(unit('failed', { subState: 'failed' }), 0), 'failed');
  });

  test('not-found and masked are missing, whatever the active state', () => {
    assert.equal(classify(unit('inactive', { loadState: 'not-found' }), 0), 'missing');
    assert.equal(classify(unit('inactive', { loadState: 'masked' }), 0), 'missing');
    assert.equal(classify(unit('active', { loadState: 'not-found' }), 0), 'missing');
  });

  test('a unit whose file cannot be loaded is failed, not merely inactive', () => {
    assert.equal(classify(unit('inactive', { loadState: 'error' }), 0), 'failed');
    assert.equal(classify(unit('inactive', { loadState: 'bad-setting' }), 0), 'failed');
  });

  test('an ActiveState this code does not know is unknown', () => {
    assert.equal(classify(unit('exploding'), 0), 'unknown');
  });
});
