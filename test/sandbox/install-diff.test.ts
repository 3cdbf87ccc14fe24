// install.sh then uninstall.sh leaves the file tree exactly as it was, apart from logs and state that
// systemd and the shadow tools keep for themselves. The sandbox boots with the package installed, so the
// test first uninstalls it: that tree is "before"; then install and uninstall again, and compare.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { APP_USER, daemonSuiteSkip, Sandbox } from './harness.js';

const SRC = '/usr/src/openauto-system';
const skip = daemonSuiteSkip();

// Only what the container itself wrote is compared: the overlay's upper directory (the container sees the
// host's root through it, so a file written anywhere else on the machine meanwhile would otherwise count).
// Every path with its type, mode, owner, group and link target (an overlay whiteout, a deleted file of the
// host's root, is a character device); a content hash for files under /etc (the system's configuration: the
// group database, defaults, unit links). Left out: the kernel's and systemd's runtime trees, logs, caches,
// temp files, the shadow tools' backups (/etc/group- ...), and root's home.
const STATE_BASE = process.env.SANDBOX_STATE_BASE ?? '/run/openauto-sandbox';
const SNAPSHOT = `
set -euo pipefail
cd "$1"
find . -xdev \\( -path ./proc -o -path ./sys -o -path ./run -o -path ./dev -o -path ./tmp -o -path ./var/tmp \\
  -o -path ./var/log -o -path ./var/cache -o -path ./var/lib/systemd -o -path ./root \\
  -o -path './etc/*-' \\) -prune -o -printf '%p %y %m %u %g %l\\n' | sort
if [ -d etc ]; then find etc -xdev -type f ! -name '*-' -print0 | sort -z | xargs -0 -r sha256sum; fi
`;

describe('install.sh then uninstall.sh', { skip }, () => {
  let sb: Sandbox;
  // The upper directory lives in the sandbox's own mount namespace: reach it through nspawn's /proc root.
  const snapshot = () => {
    const nspawn = readFileSync(join(STATE_BASE, sb.name, 'nspawn.pid'), 'utf8').trim();
    const upper = `/proc/${nspawn}/root${STATE_BASE}/${sb.name}/fs/upper`;
    const r = spawnSync('bash', ['-c', SNAPSHOT, 'snapshot', upper], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, `snapshot: ${r.stderr}`);
    return r.stdout.split('\n');
  };
  const run = async (script: string, ...args: string[]) => {
    const r = await sb.exec(['bash', `${SRC}/scripts/${script}`, ...args], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, `${script}: ${r.stderr}${r.stdout}`);
  };

  before(async () => {
    sb = await Sandbox.start({ name: 'installdiff' });
  });
  after(async () => {
    await sb?.stop();
  });

  it('leaves the file tree as it was', async () => {
    await run('uninstall.sh');
    const before = snapshot();
    assert.ok(
      !before.some((l) => l.startsWith('./usr/lib/openauto-system ')),
      'the package is gone to start with',
    );

    await run('install.sh', '--user', APP_USER, '--no-build');
    const installed = snapshot();
    assert.ok(installed.some((l) => l.startsWith('./usr/lib/systemd/system/openauto-system.service ')));
    assert.ok(installed.length > before.length);
    assert.equal((await sb.execOk(['systemctl', 'is-enabled', 'openauto-system.service'])).trim(), 'enabled');

    // Something else on the machine writes a file meanwhile (in the host's root the sandbox sees through its
    // overlay): not the installer's doing, so not part of the comparison.
    const elsewhere = `/usr/local/share/.openauto-install-diff-${process.pid}`;
    writeFileSync(elsewhere, 'written by another process\n');
    let after: string[];
    try {
      assert.ok(existsSync(join(sb.root, elsewhere)), 'the sandbox sees the host file');
      await run('uninstall.sh');
      after = snapshot();
    } finally {
      rmSync(elsewhere, { force: true });
    }
    const [b, a] = [new Set(before), new Set(after)];
    const removed = before.filter((l) => !a.has(l));
    const added = after.filter((l) => !b.has(l));
    assert.deepEqual({ added, removed }, { added: [], removed: [] });
  });
});
