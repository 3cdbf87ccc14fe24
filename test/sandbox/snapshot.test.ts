// The installed daemon starts from its code cache by default; turned on by the administrator (the unit's
// $OPENAUTO_SNAPSHOT, set in /etc/default/openauto-system), from its V8 start-up snapshot, loading its native
// addons and files from where it is installed; and when node refuses the snapshot (made by another node or
// under other V8 flags) the failed start is logged and the restart runs without it, answering as before.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { daemonSuiteSkip, Sandbox } from './harness.js';
import { daemonJournal, mainPid, waitAllActive } from './helpers-health.js';

const UNIT = 'openauto-system.service';
const BLOB = '/usr/lib/openauto-system/dist/bin/openauto-system.blob';
const DEFAULTS = '/etc/default/openauto-system';
const ON = `OPENAUTO_SNAPSHOT=--snapshot-blob=${BLOB}\n`;
const skip = daemonSuiteSkip();

describe('start-up snapshot', { skip }, () => {
  let sb: Sandbox;

  before(async () => {
    sb = await Sandbox.start({ name: 'snapshot' });
    await sb.waitFor(async () => (await sb.unitState(UNIT)) === 'active', 30_000, 200);
    assert.ok(!(await cmdline()).some((a) => a.startsWith('--snapshot-blob')), 'off by default');
    await sb.writeFile(DEFAULTS, `${await sb.readFile(DEFAULTS)}${ON}`);
    await sb.execOk(['systemctl', 'restart', UNIT], { timeoutMs: 30_000 });
  });

  after(async () => {
    await sb?.stop();
  });

  const cmdline = async () =>
    (await sb.readFile(`/proc/${await mainPid(sb, UNIT)}/cmdline`)).split('\0').filter(Boolean);

  it('the daemon runs from it, with its addons and files from where it is installed', async () => {
    await waitAllActive(sb);
    assert.ok((await cmdline()).includes(`--snapshot-blob=${BLOB}`), (await cmdline()).join(' '));
    // sockopt is loaded at the first socket client (peer credentials): be one.
    await sb.execOk([
      '/usr/bin/python3',
      '-c',
      'import socket; s = socket.socket(socket.AF_UNIX); s.connect("/run/openauto/system.sock"); ' +
        's.sendall(b\'{"id":"1","method":"ping"}\\n\'); print(s.recv(4096))',
    ]);
    const maps = await sb.readFile(`/proc/${await mainPid(sb, UNIT)}/maps`);
    for (const addon of [
      'sockopt',
      'systemd-journald',
      'sd-notify',
      'openauto-transport',
      'openauto-memory',
    ]) {
      assert.match(maps, new RegExp(`/usr/lib/openauto-system/node_modules/${addon}/\\S+\\.node`), addon);
    }
    const version = JSON.parse(await sb.readFile('/usr/lib/openauto-system/package.json')).version as string;
    const ready = (await daemonJournal(sb)).filter((e) => / ready$/.test(e.message)).at(-1);
    assert.equal(ready?.fields.VERSION, version);
  });

  it("without the administrator's line in /etc/default/openauto-system it is off", async () => {
    const before = await sb.readFile(DEFAULTS);
    try {
      await sb.writeFile(DEFAULTS, before.replace(ON, ''));
      await sb.execOk(['systemctl', 'restart', UNIT], { timeoutMs: 30_000 });
      await waitAllActive(sb);
      assert.ok(!(await cmdline()).some((a) => a.startsWith('--snapshot-blob')), (await cmdline()).join(' '));
    } finally {
      await sb.writeFile(DEFAULTS, before);
    }
    await sb.execOk(['systemctl', 'restart', UNIT], { timeoutMs: 30_000 });
    await waitAllActive(sb);
    assert.ok((await cmdline()).includes(`--snapshot-blob=${BLOB}`));
  });

  it('one this node refuses: the start fails with status 14, logged; the restart runs without it', async () => {
    // A snapshot made without the unit's V8 flags: V8 refuses it as it refuses another node's.
    await sb.writeFile('/run/foreign-snapshot.js', 'globalThis.x = 1;\n');
    await sb.execOk(['cp', BLOB, `${BLOB}.orig`]);
    try {
      await sb.execOk(['node', '--snapshot-blob', BLOB, '--build-snapshot', '/run/foreign-snapshot.js']);
      const before = Date.now();
      await sb.exec(['systemctl', 'restart', UNIT], { timeoutMs: 30_000 });
      // Restart=always, RestartSec=2: the next start reads OPENAUTO_SNAPSHOT= from /run/openauto/snapshot.env.
      await sb.waitFor(async () => (await sb.unitState(UNIT)) === 'active', 30_000, 200);
      await waitAllActive(sb);
      assert.ok(!(await cmdline()).some((a) => a.startsWith('--snapshot-blob')), (await cmdline()).join(' '));
      assert.equal(await sb.readFile('/run/openauto/snapshot.env'), 'OPENAUTO_SNAPSHOT=\n');
      const log = await sb.execOk([
        'journalctl',
        '-u',
        UNIT,
        '--no-pager',
        '-o',
        'cat',
        `--since=@${Math.floor(before / 1000) - 1}`,
      ]);
      assert.match(log, /node refused the start-up snapshot; starting without it until reboot/);
      assert.match(log, /status=14/);
    } finally {
      await sb.execOk(['mv', `${BLOB}.orig`, BLOB]);
      await sb.execOk(['rm', '-f', '/run/openauto/snapshot.env', '/run/foreign-snapshot.js']);
    }
    // Back on the snapshot at the next start.
    await sb.execOk(['systemctl', 'restart', UNIT], { timeoutMs: 30_000 });
    await waitAllActive(sb);
    assert.ok((await cmdline()).includes(`--snapshot-blob=${BLOB}`));
  });
});
