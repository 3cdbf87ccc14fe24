// install.sh then uninstall.sh leaves the file tree exactly as it was, apart from logs and state that
// systemd and the shadow tools keep for themselves. The sandbox boots with the package installed, so the
// test first uninstalls it: that tree is "before"; then install and uninstall again, and compare.
import assert from 'node:assert/strict';
import { dirname } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { APP_USER, daemonBuilt, REPO_ROOT, Sandbox, sandboxUnavailable } from './harness.js';

const SRC = '/usr/src/openauto-system';
const skip =
  sandboxUnavailable() ?? (daemonBuilt ? undefined : 'dist/bin/openauto-system.js is not built yet');

// Every path with its type, mode, owner, group and link target; a content hash for files under /etc (the
// system's configuration: the group database, defaults, unit links). Left out: the kernel's and systemd's
// runtime trees, logs, caches, temp files, the shadow tools' backups (/etc/group- ...), the read-only
// source tree bound in for the sandbox, and root's home and the directory holding the build machine's
// checkout (the sandbox shares the host's root; the installer touches neither).
const CHECKOUT_DIR = dirname(REPO_ROOT) === '/' ? REPO_ROOT : dirname(REPO_ROOT);
const SNAPSHOT = `
set -euo pipefail
find / -xdev \\( -path /proc -o -path /sys -o -path /run -o -path /dev -o -path /tmp -o -path /var/tmp \\
  -o -path /var/log -o -path /var/cache -o -path /var/lib/systemd -o -path /usr/src/openauto-system \\
  -o -path /root -o -path '${CHECKOUT_DIR}' \\
  -o -path '/etc/*-' \\) -prune -o -printf '%p %y %m %u %g %l\\n' | sort
find /etc -xdev -type f ! -name '*-' -print0 | sort -z | xargs -0 sha256sum
`;

describe('install.sh then uninstall.sh', { skip }, () => {
  let sb: Sandbox;
  const snapshot = async () =>
    (await sb.execOk(['bash', '-c', SNAPSHOT], { timeoutMs: 120_000 })).split('\n');
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
    const before = await snapshot();
    assert.ok(
      !before.some((l) => l.startsWith('/usr/lib/openauto-system ')),
      'the package is gone to start with',
    );

    await run('install.sh', '--user', APP_USER, '--no-build');
    const installed = await snapshot();
    assert.ok(installed.some((l) => l.startsWith('/usr/lib/systemd/system/openauto-system.service ')));
    assert.ok(installed.length > before.length);
    assert.equal((await sb.execOk(['systemctl', 'is-enabled', 'openauto-system.service'])).trim(), 'enabled');

    await run('uninstall.sh');
    const after = await snapshot();
    const [b, a] = [new Set(before), new Set(after)];
    const removed = before.filter((l) => !a.has(l));
    const added = after.filter((l) => !b.has(l));
    assert.deepEqual({ added, removed }, { added: [], removed: [] });
  });
});
