// The daemon's entry point compiles its bundle with the V8 code cache made at build time: V8 must accept it
// under the unit's node flags (a flag added to the unit without a rebuild would silently lose it), and a
// cache V8 rejects (another node, other flags) must still start the daemon, compiled as before.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { REPO_ROOT } from '../sandbox/harness.js';

const LOADER = join(REPO_ROOT, 'dist', 'bin', 'openauto-system.js');

/** The node flags of the shipped unit's ExecStart. */
function unitFlags(): string[] {
  const unit = readFileSync(join(REPO_ROOT, 'systemd', 'openauto-system.service'), 'utf8');
  const line = /^ExecStart=(.*)$/m.exec(unit)?.[1] ?? '';
  return line.split(' ').filter((f) => f.startsWith('--'));
}

/** Runs the entry point as `--help` under `flags`: what it printed, and whether V8 rejected the cache. */
function run(flags: string[]): { usage: string; rejected: string } {
  const code = `process.argv = [process.argv[0], ${JSON.stringify(LOADER)}, '--help'];
const { script } = await import(${JSON.stringify(LOADER)});
process.stderr.write('\\nrejected=' + script.cachedDataRejected + '\\n');`;
  const r = spawnSync(process.execPath, [...flags, '--input-type=module', '-e', code], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return { usage: r.stdout, rejected: /^rejected=(\w+)$/m.exec(r.stderr)?.[1] ?? 'not printed' };
}

describe('code cache', () => {
  it("is accepted by V8 under the unit's node flags", () => {
    const flags = unitFlags();
    assert.ok(flags.includes('--jitless'), `unit flags: ${flags.join(' ')}`);
    const r = run(flags);
    assert.equal(r.rejected, 'false');
    assert.match(r.usage, /^Usage: openauto-system/);
  });

  it('rejected (other flags), the daemon still runs, compiled as before', () => {
    const r = run([]);
    assert.equal(r.rejected, 'true');
    assert.match(r.usage, /^Usage: openauto-system/);
  });
});
