// systemd's watchdog pings: half of WatchdogSec apart (sd_watchdog_enabled(3)'s advice), each one a wake-up
// of an otherwise idle daemon.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { startWatchdog, watchdogPingMs } from '../../src/systemd/watchdog.js';

describe('watchdog', () => {
  test("pings at half of WATCHDOG_USEC: every 5 s for the unit's WatchdogSec=10", () => {
    assert.equal(watchdogPingMs(10_000_000), 5000);
    assert.equal(watchdogPingMs(3_000_000), 1500);
    assert.equal(watchdogPingMs(20_000), 50, 'never faster than every 50 ms');
  });

  test('no pings when systemd asks for none, or asks another process', () => {
    assert.equal(startWatchdog({}), undefined);
    assert.equal(startWatchdog({ WATCHDOG_USEC: '0' }), undefined);
    assert.equal(startWatchdog({ WATCHDOG_USEC: 'x' }), undefined);
    assert.equal(
      startWatchdog({ WATCHDOG_USEC: '10000000', WATCHDOG_PID: String(process.pid + 1) }),
      undefined,
    );
  });

  test('asked by systemd, the daemon pings every 5 s', () => {
    const w = startWatchdog({ WATCHDOG_USEC: '10000000', WATCHDOG_PID: String(process.pid) });
    try {
      assert.equal(w?.intervalMs, 5000);
    } finally {
      w?.stop();
    }
  });
});
