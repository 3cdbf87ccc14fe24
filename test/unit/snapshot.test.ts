// The daemon's V8 start-up snapshot, made at build time (scripts/snapshot.mjs): node must take it under the
// unit's node flags and start the daemon from it (the start's own arguments and environment, not the build's),
// and refuse one made under other flags the way the unit counts on: status 14 before running anything.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { REPO_ROOT } from '../sandbox/harness.js';

const LOADER = join(REPO_ROOT, 'dist', 'bin', 'openauto-system.js');
const BLOB = join(REPO_ROOT, 'dist', 'bin', 'openauto-system.blob');

/** The node flags of the shipped unit's ExecStart. */
function unitFlags(): string[] {
  const unit = readFileSync(join(REPO_ROOT, 'systemd', 'openauto-system.service'), 'utf8');
  const line = /^ExecStart=(.*)$/m.exec(unit)?.[1] ?? '';
  return line.split(' ').filter((f) => f.startsWith('--'));
}

function start(flags: string[], args: string[], env: Record<string, string> = {}) {
  return spawnSync(process.execPath, [...flags, `--snapshot-blob=${BLOB}`, LOADER, ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', OPENAUTO_LOG_STDERR: '1', ...env },
    timeout: 30_000,
  });
}

describe('start-up snapshot', () => {
  it("is taken under the unit's node flags and runs the daemon's main with this start's arguments", () => {
    const flags = unitFlags();
    assert.ok(flags.includes('--jitless'), `unit flags: ${flags.join(' ')}`);
    const help = start(flags, ['--help']);
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /^Usage: openauto-system/);
    // A bad flag is this start's: refused with the usage error, nothing started.
    const bad = start(flags, ['--no-such-flag']);
    assert.notEqual(bad.status, 0);
    assert.doesNotMatch(bad.stderr, /snapshot/i);
  });

  it('starts the daemon: it gets as far as the bus named in this start environment, native addons loaded', () => {
    // No bus at that path: start-up fails at the connect, after the addons (journald's sink is off here) load.
    const r = start(unitFlags(), [], { DBUS_SYSTEM_BUS_ADDRESS: 'unix:path=/nonexistent/oas-snapshot-test' });
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /start-up failed .*nonexistent|start-up failed .*ENOENT/);
    assert.match(r.stderr, /ERROR_CODE=StartupFailed/);
  });

  it('made under other V8 flags: node refuses it with status 14 before running any of it', () => {
    const r = start([], ['--help']);
    assert.equal(r.status, 14, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /startup snapshot/);
  });
});
