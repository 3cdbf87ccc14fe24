// Command line and environment of the daemon (util.parseArgs): both flag spellings, flags over the
// environment over the defaults, and a clear UsageError for anything else.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_RECOVERY_SETTINGS } from '../../src/health/recovery.js';
import { defaults, parseSettings, UsageError } from '../../src/settings.js';

describe('settings', () => {
  it('--flag value and --flag=value; flags win over the environment, which wins over defaults', () => {
    assert.equal(parseSettings(['--poll-ms', '500'], {}).pollMs, 500);
    assert.equal(parseSettings(['--poll-ms=700'], { OPENAUTO_POLL_MS: '900' }).pollMs, 700);
    assert.equal(parseSettings([], { OPENAUTO_POLL_MS: '900' }).pollMs, 900);
    assert.equal(parseSettings([], {}).pollMs, 5000);
    assert.deepEqual(parseSettings(['--bt-profiles=aa, hsp-hs'], {}).btProfiles, ['aa', 'hsp-hs']);
    assert.deepEqual(parseSettings(['--bt-profiles='], {}).btProfiles, []);
    assert.equal(parseSettings(['--socket-enabled', '0'], {}).socketEnabled, false);
  });

  it('unknown options, positionals, missing values and bad values are UsageErrors', () => {
    for (const argv of [['--bogus'], ['stray'], ['--poll-ms'], ['--poll-ms', 'soon'], ['--poll-ms', '5']]) {
      assert.throws(() => parseSettings(argv, {}), UsageError, argv.join(' '));
    }
    assert.throws(() => parseSettings(['--bogus'], {}), /'--bogus'.*\(see --help\)/);
  });

  it('the repair rules default to the recovery module own defaults', () => {
    const d = defaults();
    const r = DEFAULT_RECOVERY_SETTINGS;
    assert.deepEqual(
      [
        d.fastRetries,
        d.fastRetryMs,
        d.slowRetryMs,
        d.activatingTimeoutMs,
        d.healthyResetMs,
        d.degradedGraceMs,
      ],
      [
        r.fastRetries,
        r.fastRetryIntervalMs,
        r.slowRetryIntervalMs,
        r.activatingTimeoutMs,
        r.healthyResetMs,
        r.degradedGraceMs,
      ],
    );
    assert.equal(d.resetOnRecovery, r.resetOnRecovery);
  });
});
