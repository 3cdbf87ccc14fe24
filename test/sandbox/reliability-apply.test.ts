// An apply survives the daemon being killed at any step (a crash, or the car's ignition cutting the power):
// SIGKILL before the new file is written, right after it was renamed into place, while the unit restarts
// with it, and while the previous file is being put back. hostapd's stand-in refuses ssid BadOne and takes
// 2 s to start. Whatever the step, once the daemon is back the AP runs with the old file or with the new one,
// never with a file it refused, and nothing of the apply is left behind.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { daemonSuiteSkip, Sandbox } from './harness.js';
import {
  appConfig,
  applyBusctl,
  HOSTAPD_CONF,
  HOSTAPD_ENV,
  HOSTAPD_STARTS,
  prng,
  sleep,
  tempFiles,
  writeAppConfig,
} from './helpers-config.js';

const skip = daemonSuiteSkip();
const SERVICE = 'openauto-system.service';
const STATE_DIR = '/var/lib/openauto-system/apply';
const DEFAULTS = '/etc/default/openauto-system';
const OLD_SSID = 'Prodigy_3fa9';
const REFUSED = 'BadOne';
/** Kills per step (the issue asks for at least 10). */
const ROUNDS = Number(process.env.RELIABILITY_ROUNDS ?? 10);

const wifiYaml = (ssid: string) => appConfig(`wifi: {ssid: ${ssid}}\n`);

describe('an apply killed at any step ends with a file the AP runs with', { skip }, () => {
  let sb: Sandbox;
  let defaults = '';
  const rand = prng(17);
  const outcomes: Record<string, { old: number; new: number }> = {};

  const ssidInPlace = async () => /^ssid=(.*)$/m.exec(await sb.readFile(HOSTAPD_CONF))?.[1];
  const starts = async () =>
    (await readFile(join(sb.root, HOSTAPD_STARTS), 'utf8').catch(() => '')).split('\n').filter(Boolean)
      .length;
  const mainPid = async () => (await sb.execOk(['systemctl', 'show', '-P', 'MainPID', SERVICE])).trim();
  const stateFiles = async () => readdir(join(sb.root, STATE_DIR)).catch(() => [] as string[]);

  /** Daemon settings for the next start (the stall knob), applied with a restart. */
  const setStall = async (stall: string | undefined) => {
    await sb.writeFile(DEFAULTS, stall ? `${defaults}OPENAUTO_TEST_STALL=${stall}\n` : defaults);
    await sb.execOk(['systemctl', 'restart', SERVICE], { timeoutMs: 60_000 });
  };

  /** SIGKILL the daemon; wait until systemd has started it again and it is ready (name owned, start-up done). */
  const killAndWaitBack = async () => {
    const pid = await mainPid();
    await sb.execOk(['systemctl', 'kill', '-s', 'KILL', '--kill-whom=main', SERVICE]);
    await sb.waitFor(
      async () => (await sb.unitState(SERVICE)) === 'active' && (await mainPid()) !== pid,
      60_000,
      100,
    );
  };

  /** After the daemon is back: the AP runs with the old or the new file, nothing else is left. */
  const checkEnd = async (step: string, newSsid: string) => {
    try {
      await checkEndOnce(step, newSsid);
    } catch (err) {
      // What the daemon and systemd did, to tell why.
      const lines = await sb.exec([
        'journalctl',
        '--no-pager',
        '-o',
        'short-monotonic',
        '--since=-40s',
        '-u',
        SERVICE,
        '-u',
        'hostapd.service',
        '-t',
        'openauto-system',
      ]);
      console.log(
        lines.stdout
          .split('\n')
          .map((l) => `# ${l}`)
          .join('\n'),
      );
      throw err;
    }
  };
  const checkEndOnce = async (step: string, newSsid: string) => {
    const ssid = await ssidInPlace();
    assert.notEqual(ssid, REFUSED, `${step}: the refused file is in place`);
    assert.ok(ssid === OLD_SSID || ssid === newSsid, `${step}: unexpected ssid ${ssid}`);
    await sb.waitFor(async () => (await sb.unitState('hostapd.service')) === 'active', 30_000, 200);
    // Still the same file once hostapd runs (nothing changed it behind our back).
    assert.equal(await ssidInPlace(), ssid);
    assert.deepEqual(await tempFiles(sb, '/etc/hostapd'), [], `${step}: temp files left`);
    assert.deepEqual(await stateFiles(), [], `${step}: the record of the apply is left`);
    outcomes[step] ??= { old: 0, new: 0 };
    const o = outcomes[step];
    if (ssid === OLD_SSID) o.old++;
    else o.new++;
    // Back to the old file for the next round (an apply of the old config, not killed).
    if (ssid !== OLD_SSID) {
      await writeAppConfig(sb, wifiYaml(OLD_SSID));
      const r = await applyBusctl(sb, 'wifi');
      assert.ok(r.ok, JSON.stringify(r));
    }
  };

  /** Starts an apply of `ssid` in the background (the call fails when the daemon dies under it). */
  const startApply = async (ssid: string) => {
    await writeAppConfig(sb, wifiYaml(ssid));
    void applyBusctl(sb, 'wifi').catch(() => undefined);
  };

  before(async () => {
    sb = await Sandbox.start({ name: 'rel-apply' });
    await sb.writeFile(HOSTAPD_ENV, `HOSTAPD_REFUSE_SSID=${REFUSED}\nHOSTAPD_START_DELAY=2\n`);
    // The daemon comes back 0.3 s after a kill instead of 2 s: the same path, a shorter test.
    await sb.execOk(['mkdir', '-p', `/etc/systemd/system/${SERVICE}.d`]);
    await sb.writeFile(`/etc/systemd/system/${SERVICE}.d/50-test.conf`, '[Service]\nRestartSec=300ms\n');
    await sb.execOk(['systemctl', 'daemon-reload']);
    defaults = await sb.readFile(DEFAULTS);
    await sb.waitFor(async () => (await sb.unitState('hostapd.service')) === 'active', 30_000);
    assert.equal(await ssidInPlace(), OLD_SSID);
  });
  after(async () => {
    console.log(`# outcomes per step (old file kept / new file kept): ${JSON.stringify(outcomes)}`);
    await sb?.stop();
  });

  it(`killed while the unit restarts with the new file (${ROUNDS}x)`, async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const ssid = i % 2 === 0 ? REFUSED : `Good_r${i}`;
      const n = await starts();
      await startApply(ssid);
      await sb.waitFor(async () => (await starts()) > n, 15_000, 20);
      await sleep(Math.floor(rand() * 1500));
      await killAndWaitBack();
      await checkEnd('restart', ssid);
    }
  });

  it(`killed while the previous file is put back and the unit restarted (${ROUNDS}x)`, async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const n = await starts();
      await startApply(REFUSED);
      // The second start is the rollback's.
      await sb.waitFor(async () => (await starts()) > n + 1, 20_000, 20);
      await sleep(Math.floor(rand() * 1500));
      await killAndWaitBack();
      await checkEnd('rollback', REFUSED);
    }
  });

  it(`killed before the new file is written (${ROUNDS}x)`, async () => {
    await setStall('before-write:5000');
    for (let i = 0; i < ROUNDS; i++) {
      const ssid = i % 2 === 0 ? REFUSED : `Good_b${i}`;
      await startApply(ssid);
      // The record of the apply is on disk; the file is not written yet.
      await sb.waitFor(async () => (await stateFiles()).includes('apply-wifi.json'), 10_000, 20);
      assert.equal(await ssidInPlace(), OLD_SSID);
      if (i === 0) {
        // It holds the previous hostapd.conf, passphrase included: root's only.
        const ls = await sb.execOk(['stat', '-c', '%a %U', STATE_DIR, `${STATE_DIR}/apply-wifi.json`]);
        assert.equal(ls.trim(), '700 root\n600 root');
      }
      await killAndWaitBack();
      await checkEnd('before-write', ssid);
    }
  });

  it(`killed right after the new file was renamed into place (${ROUNDS}x)`, async () => {
    await setStall('after-rename:5000');
    for (let i = 0; i < ROUNDS; i++) {
      const ssid = i % 2 === 0 ? REFUSED : `Good_a${i}`;
      await startApply(ssid);
      await sb.waitFor(async () => (await ssidInPlace()) === ssid, 10_000, 20);
      await killAndWaitBack();
      await checkEnd('after-rename', ssid);
    }
    await setStall(undefined);
  });
});
