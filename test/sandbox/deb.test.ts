// The Debian package (npm run deb) on a running system: apt install, reinstall, upgrade, remove and purge in
// a sandbox that boots without openauto-system, with real systemd, dpkg, apt, dbus and polkit. The purge
// must leave the file tree as it was before the first install.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  APP_USER,
  BUS_NAME,
  daemonSuiteSkip,
  INTERFACE,
  OBJECT_PATH,
  OTHER_USER,
  REPO_ROOT,
  Sandbox,
} from './harness.js';
import { Pinger } from './helpers-socket.js';

const SRC = '/usr/src/openauto-system';
const OUT = 'dist/deb-test';
const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string })
  .version;
const NEWER = `${VERSION}+t1`;
const ARCH = spawnSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).stdout.trim();
const debName = (v: string) => `openauto-system_${v}_${ARCH}.deb`;
// dpkg-query's output formats (not JavaScript templates).
// biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query syntax
const STATUS_FORMAT = '-f=${db:Status-Status}';
// biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query syntax
const CONFFILES_FORMAT = '-f=${Conffiles}';
const UNIT = 'openauto-system.service';
const HOSTAPD_CONF = '/etc/hostapd/hostapd.conf';
const NETWORK_FILE = '/etc/systemd/network/10-openauto-ap.network';

// The package depends on Debian's nodejs >= 20 (NodeSource's here): apt cannot install it without one.
// biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query syntax
const VERSION_FORMAT = '-f=${Version}';
const nodejsPackage = spawnSync('dpkg-query', ['-W', VERSION_FORMAT, 'nodejs'], { encoding: 'utf8' }).stdout;
const skip =
  daemonSuiteSkip() ??
  (existsSync('/usr/bin/dpkg-deb') ? undefined : 'dpkg-deb is missing') ??
  (Number.parseInt(nodejsPackage, 10) >= 20
    ? undefined
    : `the Debian package nodejs >= 20 is not installed (found: ${nodejsPackage || 'none'})`);

// Every path of the system's trees with type, mode, owner, group and link target, and a hash of every file
// under /etc (the group database, conffiles, unit links). Only the system's trees: the sandbox shares the
// host's root, where other work may write meanwhile. Left out as in install-diff.test.ts (logs, caches, temp
// files, the shadow tools' backups, the checkout), and dpkg's and apt's own databases (they record the purge)
// and systemd's state, except the deb-systemd-helper records in it.
const CHECKOUT_DIR = dirname(REPO_ROOT) === '/' ? REPO_ROOT : dirname(REPO_ROOT);
const SNAPSHOT = `
set -euo pipefail
roots=()
for d in /etc /usr /var /home /opt /srv; do if [ -d "$d" ]; then roots+=("$d"); fi; done
find "\${roots[@]}" -xdev \\( -path /var/tmp \\
  -o -path /var/log -o -path /var/cache -o -path /var/lib/systemd -o -path /var/lib/dpkg -o -path /var/lib/apt \\
  -o -path /usr/src/openauto-system -o -path /root -o -path '${CHECKOUT_DIR}' \\
  -o -path '/etc/*-' \\) -prune -o -printf '%p %y %m %u %g %l\\n' | sort
find /var/lib/systemd -path '/var/lib/systemd/deb-systemd-helper-*' -printf '%p %y %m %u %g %l\\n' | sort
find /etc -xdev -type f ! -name '*-' -print0 | sort -z | xargs -0 sha256sum
`;

// Connects to the legacy socket again and again (a new connection each time, like the app after a drop)
// until /tmp/socket-poll.stop exists; prints how many requests were answered, refused or closed unanswered.
const SOCKET_POLL = `
const net = require('node:net');
const fs = require('node:fs');
const counts = { answered: 0, refused: 0, closed: 0 };
const once = () => new Promise((resolve) => {
  const s = net.connect('/run/openauto/system.sock');
  let buf = '';
  const done = (kind) => { s.destroy(); counts[kind]++; resolve(); };
  const timer = setTimeout(() => done('closed'), 10000);
  s.on('connect', () => s.write('{"id":"p","method":"get_health"}\\n'));
  s.on('data', (d) => { buf += d; if (buf.includes('\\n')) { clearTimeout(timer); done('answered'); } });
  s.on('error', (e) => { clearTimeout(timer); done(e.code === 'ECONNREFUSED' || e.code === 'ENOENT' ? 'refused' : 'closed'); });
  s.on('end', () => { clearTimeout(timer); if (!buf.includes('\\n')) done('closed'); });
});
(async () => {
  while (!fs.existsSync('/tmp/socket-poll.stop')) {
    await once();
    await new Promise((r) => setTimeout(r, 20));
  }
  console.log(JSON.stringify(counts));
})();
`;

describe('the Debian package', { skip }, () => {
  let sb: Sandbox;
  let beforeInstall: string[];
  let appliedHostapdConf: string;

  const snapshot = async () =>
    (await sb.execOk(['bash', '-c', SNAPSHOT], { timeoutMs: 120_000 })).split('\n');
  const apt = (args: string[], env: Record<string, string> = {}) =>
    sb.exec(['apt', ...args], {
      cwd: `${SRC}/${OUT}`,
      env: { DEBIAN_FRONTEND: 'noninteractive', ...env },
      timeoutMs: 180_000,
    });
  const aptOk = async (args: string[], env: Record<string, string> = {}) => {
    const r = await apt(args, env);
    assert.equal(r.code, 0, `apt ${args.join(' ')}: ${r.stderr}${r.stdout}`);
    return r.stdout;
  };
  const health = async (user = OTHER_USER) =>
    (await sb.call(BUS_NAME, OBJECT_PATH, INTERFACE, 'GetHealth', [], { user }))[0] as Record<string, string>;
  const socketHealth = async () => {
    const out = await sb.execOk(
      [
        'node',
        '-e',
        `const s = require('node:net').connect('/run/openauto/system.sock');
         s.on('connect', () => s.write('{"id":"1","method":"get_health"}\\n'));
         let b = ''; s.on('data', (d) => { b += d; if (b.includes('\\n')) { process.stdout.write(b); s.end(); } });`,
      ],
      { user: APP_USER },
    );
    return JSON.parse(out) as { id: string; result: Record<string, string> };
  };
  const active = () => sb.waitFor(async () => (await sb.unitState(UNIT)) === 'active', 30_000, 200);
  const starts = async () =>
    (await sb.journalMessages(UNIT, { unit: true })).filter((m) => m.startsWith('Started ')).length;
  const packageState = async () =>
    (await sb.exec(['dpkg-query', '-W', STATUS_FORMAT, 'openauto-system'])).stdout.trim() || 'not-installed';

  before(async () => {
    for (const v of [VERSION, NEWER]) {
      const r = spawnSync('bash', ['scripts/deb.sh', '--no-build', '--version', v, '--out', OUT], {
        cwd: REPO_ROOT,
        encoding: 'utf8',
        timeout: 120_000,
      });
      assert.equal(r.status, 0, `deb.sh --version ${v}: ${r.stderr}${r.stdout}`);
      assert.equal(r.stdout.trim(), join(REPO_ROOT, OUT, debName(v)));
    }
    sb = await Sandbox.start({ name: 'deb', install: false });
    // The machine image's policy-rc.d refuses every service start (a Pi has none); PackageKit's apt hook
    // would start packagekitd, which writes its own state on every apt run.
    await sb.execOk(['rm', '-f', '/usr/sbin/policy-rc.d']);
    await sb.execOk(['systemctl', 'mask', '--quiet', 'packagekit.service']);
    // The head unit's installer wrote hostapd.conf (the sandbox has it); the .network file the daemon is to
    // create itself, so the purge must remove it.
    await sb.execOk(['rm', '-f', NETWORK_FILE]);
    beforeInstall = await snapshot();
    assert.ok(
      !beforeInstall.some((l) => l.startsWith('/usr/lib/openauto-system ')),
      'not installed to start with',
    );
  });

  after(async () => {
    await sb?.stop();
  });

  it('lintian --pedantic finds no errors, warnings or pedantic notes', () => {
    const r = spawnSync(
      'lintian',
      ['--pedantic', '--fail-on', 'error,warning,pedantic', join(REPO_ROOT, OUT, debName(VERSION))],
      {
        encoding: 'utf8',
        timeout: 120_000,
      },
    );
    assert.equal(r.error, undefined, 'lintian is missing (scripts/deps.sh installs it)');
    assert.doesNotMatch(r.stdout, /^[EWP]: /m);
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  it('apt install: the daemon answers on D-Bus and the socket, and the app account may apply', async () => {
    // As "sudo apt install" run by the app's account: SUDO_USER names it (OPENAUTO_APP_USER is empty).
    await aptOk(['install', '-y', `./${debName(VERSION)}`], { SUDO_USER: APP_USER });
    assert.equal(await packageState(), 'installed');
    await active();
    assert.equal((await sb.execOk(['systemctl', 'is-enabled', UNIT])).trim(), 'enabled');
    assert.equal(await sb.unitState('openauto-system.socket'), 'active');
    assert.deepEqual(Object.keys(await health()).sort(), ['bluetooth', 'hostapd', 'networkd']);
    const viaSocket = await socketHealth();
    assert.equal(viaSocket.id, '1');
    assert.deepEqual(Object.keys(viaSocket.result).sort(), ['bluetooth', 'hostapd', 'networkd']);

    // The polkit rules are active for the account the package put in group openauto, not for others.
    const pk = (user: string) =>
      sb.exec(['bash', '-c', 'exec pkcheck --action-id org.openauto.system.apply-config --process $$'], {
        user,
      });
    assert.equal((await pk(APP_USER)).code, 0);
    assert.notEqual((await pk(OTHER_USER)).code, 0);
    assert.match(
      await sb.readFile('/var/lib/openauto-system/app-user.env'),
      new RegExp(`^OPENAUTO_CONFIG=/home/${APP_USER}/\\.openauto/config\\.yaml$`, 'm'),
    );
    assert.equal(
      (
        await sb.execOk([
          'stat',
          '-c',
          '%U %a',
          '/var/lib/openauto-system',
          '/var/lib/openauto-system/app-user.env',
        ])
      ).trim(),
      'root 755\nroot 644',
    );
    assert.match(await sb.execOk(['openautoctl', 'apply', 'wifi'], { user: APP_USER }), /applied wifi/);
    assert.match(await sb.execOk(['openautoctl', 'apply', 'network'], { user: APP_USER }), /applied network/);
    appliedHostapdConf = await sb.readFile(HOSTAPD_CONF);
    assert.match(appliedHostapdConf, /^ssid=Prodigy_3fa9$/m);
    assert.match(await sb.readFile(NETWORK_FILE), /Address=10\.0\.0\.1\/24/);

    // Only /usr and the one conffile; node_modules holds only what the bundle loads.
    const listed = (await sb.execOk(['dpkg', '-L', 'openauto-system'])).split('\n').filter(Boolean);
    const outside = listed.filter(
      (p) => !(p === '/.' || p === '/usr' || p.startsWith('/usr/') || ['/etc', '/etc/default'].includes(p)),
    );
    assert.deepEqual(outside, ['/etc/default/openauto-system']);
    assert.equal(
      (await sb.execOk(['dpkg-query', '-W', CONFFILES_FORMAT, 'openauto-system'])).trim().split(' ')[0],
      '/etc/default/openauto-system',
    );
    const modules = (await sb.execOk(['ls', '/usr/lib/openauto-system/node_modules']))
      .split('\n')
      .filter(Boolean);
    for (const dev of [
      '@biomejs',
      '@types',
      '@esbuild',
      'esbuild',
      'typescript',
      'node-gyp',
      'nan',
      'zod',
      'yaml',
    ])
      assert.ok(!modules.includes(dev), `${dev} is installed: ${modules.join(' ')}`);
    assert.ok(modules.includes('systemd-journald') && modules.includes('usocket'), modules.join(' '));
    // Structured fields reach the journal only through the native systemd-journald module (without it the
    // daemon falls back to plain stderr lines).
    const ready = (await sb.journal('openauto-system')).filter((e) => /ready/.test(String(e.MESSAGE)));
    assert.equal(ready.at(-1)?.VERSION, VERSION, 'the "ready" entry lacks its VERSION field');
  });

  it('install.sh refuses to overwrite the package, and changes nothing', async () => {
    const r = await sb.exec(['bash', `${SRC}/scripts/install.sh`, '--user', APP_USER, '--no-build'], {
      timeoutMs: 60_000,
    });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /the Debian package openauto-system is installed .*apt purge openauto-system/);
    assert.equal((await sb.execOk(['dpkg', '--verify', 'openauto-system'])).trim(), '');
    assert.equal(await sb.unitState(UNIT), 'active');
  });

  it('the app account is set in /etc/default/openauto-system (dpkg-reconfigure applies it)', async () => {
    const conf = await sb.readFile('/etc/default/openauto-system');
    const set = async (user: string) => {
      await sb.writeFile(
        '/etc/default/openauto-system',
        conf.replace(/^OPENAUTO_APP_USER=.*$/m, `OPENAUTO_APP_USER=${user}`),
      );
      await sb.execOk(['dpkg-reconfigure', 'openauto-system'], {
        timeoutMs: 60_000,
        env: { DEBIAN_FRONTEND: 'noninteractive' },
      });
    };
    const members = async () =>
      (await sb.execOk(['getent', 'group', 'openauto'])).trim().split(':')[3]?.split(',') ?? [];
    // The administrator's file is read after the package's, so an OPENAUTO_CONFIG set there wins; only the
    // start-up snapshot's verdicts (OPENAUTO_SNAPSHOT alone) come after it.
    const files = (await sb.execOk(['systemctl', 'show', '-P', 'EnvironmentFiles', UNIT]))
      .split('\n')
      .map((l) => l.split(' ')[0]);
    assert.deepEqual(files.filter(Boolean), [
      '/var/lib/openauto-system/app-user.env',
      '/etc/default/openauto-system',
      '/var/lib/openauto-system/snapshot.env',
      '/run/openauto/snapshot.env',
    ]);
    // The package's node took the snapshot (postinst checked it); the daemon runs without it unless the
    // administrator turns it on (the default: its code cache, less memory).
    assert.equal((await sb.exec(['test', '-e', '/var/lib/openauto-system/snapshot.env'])).code, 1);
    const pid = (await sb.execOk(['systemctl', 'show', '-P', 'MainPID', UNIT])).trim();
    assert.doesNotMatch(await sb.readFile(`/proc/${pid}/cmdline`), /--snapshot-blob=/);
    await set(OTHER_USER);
    assert.deepEqual((await members()).sort(), [OTHER_USER]);
    assert.match(
      await sb.readFile('/var/lib/openauto-system/app-user.env'),
      new RegExp(`^OPENAUTO_CONFIG=/home/${OTHER_USER}/\\.openauto/config\\.yaml$`, 'm'),
    );
    await set(APP_USER);
    assert.deepEqual(await members(), [APP_USER]);
    // Back to the file as shipped: the account recorded stays the app's.
    await sb.writeFile('/etc/default/openauto-system', conf);
    await sb.execOk(['dpkg-reconfigure', 'openauto-system'], { timeoutMs: 60_000 });
    assert.deepEqual(await members(), [APP_USER]);
    await active();
  });

  it('the same version again, then a newer one: restarted once each, and answering', async (t) => {
    const startsFirst = await starts();
    await aptOk(['install', '-y', '--reinstall', `./${debName(VERSION)}`]);
    await active();
    await health();
    const pid = (await sb.execOk(['systemctl', 'show', '-P', 'MainPID', UNIT])).trim();
    const startsBefore = await starts();
    assert.equal(startsBefore, startsFirst + 1, 'reinstalling restarts the daemon exactly once');
    const socketSince = async () =>
      (await sb.execOk(['systemctl', 'show', '-P', 'InvocationID', 'openauto-system.socket'])).trim();
    const socketBefore = await socketSince();

    // The app's side meanwhile: a new connection to the socket every 20 ms, each asking get_health.
    await sb.writeFile('/tmp/socket-poll.js', SOCKET_POLL);
    await sb.execOk(['rm', '-f', '/tmp/socket-poll.stop']);
    const poll = sb.exec(['node', '/tmp/socket-poll.js'], { user: APP_USER, timeoutMs: 240_000 });
    // And one connection held open throughout, a request every 10 ms (systemd's fd store keeps it).
    const held = await Pinger.connect(join(sb.root, '/run/openauto/system.sock'));
    held.start(10);
    await aptOk(['install', '-y', `./${debName(NEWER)}`]);
    await active();
    await sb.execOk(['touch', '/tmp/socket-poll.stop']);
    await new Promise((r) => setTimeout(r, 500));
    held.stop();
    await new Promise((r) => setTimeout(r, 500));
    held.socket.destroy();
    t.diagnostic(`held connection: ${held.sent.size} requests, ${held.unanswered().length} unanswered`);
    assert.equal(held.closedAt, undefined, 'the connection held open was closed by the upgrade');
    assert.deepEqual(held.unanswered(), [], 'every request on the held connection was answered');
    const polled = await poll;
    assert.equal(polled.code, 0, polled.stderr);
    const counts = JSON.parse(polled.stdout) as { answered: number; refused: number; closed: number };
    // Connections are never refused: openauto-system.socket listens throughout; and never closed unanswered:
    // one open while the old daemon stops is handed to the new one.
    t.diagnostic(`socket requests during the upgrade: ${JSON.stringify(counts)}`);
    assert.equal(counts.refused, 0, JSON.stringify(counts));
    assert.ok(counts.answered > 10 && counts.closed === 0, JSON.stringify(counts));
    assert.equal(await packageState(), 'installed');
    assert.equal(await starts(), startsBefore + 1, 'the upgrade restarts the daemon exactly once');
    assert.notEqual((await sb.execOk(['systemctl', 'show', '-P', 'MainPID', UNIT])).trim(), pid);
    assert.equal(await socketSince(), socketBefore, 'the socket unit kept listening (not restarted)');
    const version = await sb.busctl(['get-property', BUS_NAME, OBJECT_PATH, INTERFACE, 'Version']);
    assert.equal(version.stdout.trim(), `s "${NEWER}"`);
    await health();
    assert.equal((await socketHealth()).id, '1');
    assert.equal((await sb.execOk(['dpkg', '--verify', 'openauto-system'])).trim(), '');
  });

  it('apt remove: stopped, unit gone, configuration kept', async () => {
    await aptOk(['remove', '-y', 'openauto-system']);
    assert.equal(await packageState(), 'config-files');
    assert.equal(await sb.unitState(UNIT), 'inactive');
    assert.equal(await sb.unitState('openauto-system.socket'), 'inactive');
    assert.equal((await sb.exec(['test', '-e', `/usr/lib/systemd/system/${UNIT}`])).code, 1);
    assert.match((await sb.systemctl(['show', '-P', 'LoadState', UNIT])).stdout, /masked|not-found/);
    await assert.rejects(health(), /not provided|ServiceUnknown|org\.openauto\.System/);
    assert.match(await sb.readFile('/etc/default/openauto-system'), /^OPENAUTO_APP_USER=/m);
    assert.match(await sb.execOk(['getent', 'group', 'openauto']), new RegExp(APP_USER));
    assert.equal(await sb.readFile(HOSTAPD_CONF), appliedHostapdConf);
  });

  it('apt purge: the file tree is as before the first install', async () => {
    await aptOk(['purge', '-y', 'openauto-system']);
    assert.equal(await packageState(), 'not-installed');
    const afterPurge = await snapshot();
    const [b, a] = [new Set(beforeInstall), new Set(afterPurge)];
    const removed = beforeInstall.filter((l) => !a.has(l));
    const added = afterPurge.filter((l) => !b.has(l));
    // The one decided difference: hostapd.conf existed before the package, so it stays, with what the app
    // applied last (the access point keeps its name); same path, mode and owner (group root again).
    const isHostapdHash = (l: string) => l.endsWith(`  ${HOSTAPD_CONF}`);
    assert.deepEqual(
      { added: added.filter((l) => !isHostapdHash(l)), removed: removed.filter((l) => !isHostapdHash(l)) },
      { added: [], removed: [] },
    );
    assert.equal(await sb.readFile(HOSTAPD_CONF), appliedHostapdConf);
    assert.equal((await sb.exec(['getent', 'group', 'openauto'])).code, 2);
  });

  it('the package refuses to install over a copy install.sh made', async () => {
    const install = await sb.exec(['bash', `${SRC}/scripts/install.sh`, '--user', APP_USER, '--no-build'], {
      timeoutMs: 60_000,
    });
    assert.equal(install.code, 0, install.stderr + install.stdout);
    const r = await apt(['install', '-y', `./${debName(VERSION)}`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr + r.stdout, /installed from a checkout \(scripts\/install\.sh\)/);
    assert.notEqual(await packageState(), 'installed');
    assert.equal((await sb.exec(['test', '-f', '/usr/lib/openauto-system/install-manifest'])).code, 0);
    await health(); // D-Bus activation: install.sh starts a daemon only if one was running
    await active();
    const un = await sb.exec(['bash', `${SRC}/scripts/uninstall.sh`], { timeoutMs: 60_000 });
    assert.equal(un.code, 0, un.stderr + un.stdout);
  });

  it('a group openauto that existed before stays on purge; the account the package added leaves it', async () => {
    await sb.execOk(['groupadd', '--system', 'openauto']);
    const before = await snapshot();
    await aptOk(['install', '-y', `./${debName(VERSION)}`], { SUDO_USER: APP_USER });
    await active();
    assert.match(await sb.execOk(['getent', 'group', 'openauto']), new RegExp(`:${APP_USER}$`, 'm'));
    await aptOk(['purge', '-y', 'openauto-system']);
    const after = await snapshot();
    const [b, a] = [new Set(before), new Set(after)];
    assert.deepEqual(
      { added: after.filter((l) => !b.has(l)), removed: before.filter((l) => !a.has(l)) },
      { added: [], removed: [] },
    );
    assert.match(await sb.execOk(['getent', 'group', 'openauto']), /^openauto:x:\d+:$/m);
    await sb.execOk(['groupdel', 'openauto']);
  });
});
