// scripts/install.sh and scripts/uninstall.sh on a running system (inside a sandbox, where systemd is PID 1):
// reinstalling restarts the running daemon and changes nothing else, uninstalling removes exactly what the
// manifest lists, and a fresh install works at once (unit enabled, D-Bus activation, policy loaded).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  APP_USER,
  BUS_NAME,
  daemonSuiteSkip,
  INTERFACE,
  OBJECT_PATH,
  OTHER_USER,
  Sandbox,
} from './harness.js';

const SRC = '/usr/src/openauto-system';
const MANIFEST = '/usr/lib/openauto-system/install-manifest';
const skip = daemonSuiteSkip();

describe('install.sh and uninstall.sh on a live system', { skip }, () => {
  let sb: Sandbox;
  let manifest: string;

  before(async () => {
    sb = await Sandbox.start({ name: 'install' });
    await sb.waitFor(async () => (await sb.unitState('openauto-system.service')) === 'active', 30_000, 200);
    manifest = await sb.readFile(MANIFEST);
  });

  after(async () => {
    await sb?.stop();
  });

  const mainPid = async () =>
    (await sb.execOk(['systemctl', 'show', '-P', 'MainPID', 'openauto-system'])).trim();
  const health = () => sb.call(BUS_NAME, OBJECT_PATH, INTERFACE, 'GetHealth', [], { user: OTHER_USER });

  it('reinstalling over the running daemon restarts it and records the same manifest', async () => {
    const before = await mainPid();
    const r = await sb.exec(['bash', `${SRC}/scripts/install.sh`, '--user', APP_USER, '--no-build'], {
      timeoutMs: 60_000,
    });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.match(r.stdout, /restarting the running openauto-system\.service/);
    await sb.waitFor(async () => (await sb.unitState('openauto-system.service')) === 'active', 30_000, 200);
    assert.notEqual(await mainPid(), before, 'the daemon was not restarted');
    assert.equal(await sb.readFile(MANIFEST), manifest);
    await health();
  });

  it('--node: the unit runs a node from elsewhere (one from nodejs.org in /usr/local), and back', async () => {
    const other = '/usr/local/lib/nodejs/bin/node';
    await sb.execOk(['install', '-D', '-m', '0755', '/usr/bin/node', other]);
    const install = async (extra: string[]) => {
      const r = await sb.exec(
        ['bash', `${SRC}/scripts/install.sh`, '--user', APP_USER, '--no-build', ...extra],
        { timeoutMs: 60_000 },
      );
      assert.equal(r.code, 0, r.stderr + r.stdout);
      await sb.waitFor(async () => (await sb.unitState('openauto-system.service')) === 'active', 30_000, 200);
      await health();
      return (await sb.execOk(['readlink', `/proc/${await mainPid()}/exe`])).trim();
    };
    try {
      assert.equal(await install(['--node', other]), other);
      const unit = await sb.readFile('/usr/lib/systemd/system/openauto-system.service');
      assert.match(unit, /^ExecStart=\/usr\/local\/lib\/nodejs\/bin\/node --lite-mode /m);
      assert.equal(await sb.readFile(MANIFEST), manifest, 'the same files are installed');
      // A node that does not know one of the unit's V8 flags: the unit goes without it and still runs.
      const picky = '/usr/local/lib/nodejs/bin/picky-node';
      await sb.writeFile(
        picky,
        '#!/bin/sh\nfor a; do [ "$a" = --lite-mode ] && { echo "bad option: $a" >&2; exit 9; }; done\nexec /usr/bin/node "$@"\n',
        0o755,
      );
      const r = await sb.exec(
        ['bash', `${SRC}/scripts/install.sh`, '--user', APP_USER, '--no-build', '--node', picky],
        {
          timeoutMs: 60_000,
        },
      );
      assert.equal(r.code, 0, r.stderr + r.stdout);
      assert.match(r.stdout, /does not take --lite-mode: the unit runs without it/);
      assert.match(
        await sb.readFile('/usr/lib/systemd/system/openauto-system.service'),
        /^ExecStart=\/usr\/local\/lib\/nodejs\/bin\/picky-node --jitless --no-expose-wasm \$OPENAUTO_SNAPSHOT \/usr\/lib\/openauto-system\/dist\/bin\/openauto-system\.js$/m,
      );
      // The start-up snapshot was made under --lite-mode: V8 refuses it without, so the unit goes without it.
      assert.match(r.stdout, /refuses the start-up snapshot .*: the daemon starts without it/);
      assert.equal(await sb.readFile('/var/lib/openauto-system/snapshot.env'), 'OPENAUTO_SNAPSHOT=\n');
      await sb.waitFor(async () => (await sb.unitState('openauto-system.service')) === 'active', 30_000, 200);
      await health();
      const bad = await sb.exec(['bash', `${SRC}/scripts/install.sh`, '--no-build', '--node', 'node']);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /--node needs an absolute path/);
    } finally {
      assert.equal(await install([]), '/usr/bin/node');
      // The node the snapshot was made with: on again.
      assert.equal((await sb.exec(['test', '-e', '/var/lib/openauto-system/snapshot.env'])).code, 1);
      await sb.execOk(['rm', '-rf', '/usr/local/lib/nodejs']);
    }
  });

  it('uninstall.sh removes exactly what the manifest lists', async () => {
    const entries = manifest
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#'))
      .map((l) => l.split(' ') as [string, string, string?]);
    const createdGroup = entries.some(([k, a]) => k === 'group' && a === 'openauto');
    const r = await sb.exec(['bash', `${SRC}/scripts/uninstall.sh`], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr + r.stdout);

    assert.equal(await sb.unitState('openauto-system.service'), 'inactive');
    for (const [kind, path] of entries) {
      if (kind === 'file' || kind === 'link' || kind === 'tree' || kind === 'etc-default') {
        const t = await sb.exec(['test', '-e', path, '-o', '-L', path]);
        assert.equal(t.code, 1, `${path} is still there`);
      }
    }
    for (const p of [
      '/etc/systemd/system/dbus-org.openauto.System.service',
      '/etc/systemd/system/multi-user.target.wants/openauto-system.service',
    ]) {
      assert.equal((await sb.exec(['test', '-L', p])).code, 1, `${p} is still there`);
    }
    const group = await sb.exec(['getent', 'group', 'openauto']);
    if (createdGroup) assert.equal(group.code, 2, 'install created the group; uninstall must delete it');
    else assert.doesNotMatch(group.stdout, new RegExp(`\\b${APP_USER}\\b`));
    // The name is gone from the bus configuration (dbus was reloaded).
    await assert.rejects(health(), /org\.openauto\.System|ServiceUnknown|not provided/);
    // Files that are not the installer's stay.
    assert.match(await sb.readFile(`/home/${APP_USER}/.openauto/config.yaml`), /wifi_ap/);
    assert.equal((await sb.exec(['test', '-f', '/etc/hostapd/hostapd.conf'])).code, 0);
  });

  it('a fresh install works at once: enabled, activatable, polkit rules loaded', async () => {
    const r = await sb.exec(['bash', `${SRC}/scripts/install.sh`, '--user', APP_USER, '--no-build'], {
      timeoutMs: 60_000,
    });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.equal((await sb.execOk(['systemctl', 'is-enabled', 'openauto-system.service'])).trim(), 'enabled');
    // D-Bus activation through the Alias, without a daemon-reload or dbus reload by hand.
    const h = (await health())[0] as Record<string, string>;
    assert.deepEqual(Object.keys(h).sort(), ['bluetooth', 'hostapd', 'networkd']);
    assert.equal(await sb.unitState('openauto-system.service'), 'active');
    const pk = await sb.exec(
      ['bash', '-c', 'exec pkcheck --action-id org.openauto.system.apply-config --process $$'],
      { user: APP_USER },
    );
    assert.equal(pk.code, 0, pk.stderr);
    assert.equal(
      (await sb.readFile('/etc/default/openauto-system')).match(/^OPENAUTO_CONFIG=.*$/m)?.[0],
      `OPENAUTO_CONFIG=/home/${APP_USER}/.openauto/config.yaml`,
    );
  });
});
