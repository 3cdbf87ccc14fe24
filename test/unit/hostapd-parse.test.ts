// The real hostapd must load every hostapd.conf we render. Each rendered file is copied with driver=none (no
// radio needed) and a private ctrl_interface, hostapd is started on it and must stay up without a single
// "Line N:" complaint; then it is stopped. Two broken files prove the check would notice a bad one.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { renderHostapdConf } from '../../src/config/render.js';
import { validateSection } from '../../src/config/schema.js';
import { TEMPLATES } from '../fixtures/config/harness.js';

const HOSTAPD = '/usr/sbin/hostapd';
const present = existsSync(HOSTAPD);
const STAY_UP_MS = 300;

interface RunResult {
  /** Still running after STAY_UP_MS. */
  stayedUp: boolean;
  exitCode: number | null;
  output: string;
}

async function runHostapd(conf: string): Promise<RunResult> {
  const child: ChildProcess = spawn(HOSTAPD, ['-d', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => {
    output += d.toString('utf8');
  });
  child.stderr?.on('data', (d: Buffer) => {
    output += d.toString('utf8');
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const early = await Promise.race([exited, new Promise<'up'>((r) => setTimeout(() => r('up'), STAY_UP_MS))]);
  if (early !== 'up') return { stayedUp: false, exitCode: early, output };
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
  return { stayedUp: true, exitCode: null, output };
}

const CONFIGS: { name: string; raw: Record<string, unknown> }[] = [
  { name: '5 GHz, defaults', raw: { ssid: 'Prodigy_3fa9', password: 'q7GkL2xPz9RbT4mW' } },
  {
    name: '5 GHz channel 165, country DE',
    raw: { ssid: 'Car', password: 'abcdefgh', channel: 165, country_code: 'DE' },
  },
  { name: '5 GHz channel 149', raw: { ssid: 'Car', password: 'abcdefgh', channel: 149 } },
  { name: '2.4 GHz channel 1', raw: { ssid: 'Car', password: 'abcdefgh', band: 'g', channel: 1 } },
  {
    name: '2.4 GHz channel 13, country JP',
    raw: { ssid: 'Car', password: 'abcdefgh', band: 'g', channel: 13, country_code: 'JP' },
  },
  { name: '2.4 GHz default channel', raw: { ssid: 'Car', password: 'abcdefgh', band: 'g' } },
  { name: 'non-ASCII SSID (utf8_ssid)', raw: { ssid: 'Škoda 🚗 Ünïcode', password: 'abcdefgh' } },
  {
    name: 'SSID of exactly 32 bytes, mostly multibyte',
    raw: { ssid: '日本語のネットワークAP', password: 'abcdefgh' },
  },
  {
    name: '64-hex PSK (wpa_psk)',
    raw: { ssid: 'Car', password: '0123456789abcdefABCDEF0123456789abcdef0123456789ABCDEF0123456789' },
  },
  {
    name: 'tricky but valid SSID and passphrase',
    raw: { ssid: ' #=ssid2=P"x" {{x}} ', password: ' !"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~ ' },
  },
  { name: '63-character passphrase', raw: { ssid: 'x'.repeat(32), password: 'p'.repeat(63) } },
  { name: 'other interface name', raw: { ssid: 'Car', password: 'abcdefgh', interface: 'wlx00c0ca.1-2_' } },
];

describe('real hostapd loads rendered hostapd.conf files', {
  skip: present ? false : `${HOSTAPD} is not installed`,
}, () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'oa-hostapd-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  /** The rendered file with only the two lines a test run must change. */
  function forTest(rendered: string, ctrlDir: string): string {
    const lines = rendered.split('\n');
    assert.equal(lines.filter((l) => l === 'driver=nl80211').length, 1);
    assert.equal(lines.filter((l) => l === 'ctrl_interface=/var/run/hostapd').length, 1);
    return lines
      .map((l) =>
        l === 'driver=nl80211'
          ? 'driver=none'
          : l === 'ctrl_interface=/var/run/hostapd'
            ? `ctrl_interface=${ctrlDir}`
            : l,
      )
      .join('\n');
  }

  CONFIGS.forEach(({ name, raw }, i) => {
    test(name, async () => {
      // An installation whose AP interface is the one named (config.yaml may not name another).
      const iface = (raw as { interface?: unknown }).interface;
      const r = await validateSection('wifi', raw, {
        apInterface: typeof iface === 'string' ? iface : undefined,
      });
      assert.ok(r.ok, r.ok ? '' : r.problems.join('; '));
      const conf = path.join(dir, `hostapd-${i}.conf`);
      await writeFile(
        conf,
        forTest(await renderHostapdConf(TEMPLATES, r.value), path.join(dir, `ctrl-${i}`)),
        {
          mode: 0o600,
        },
      );
      const run = await runHostapd(conf);
      assert.doesNotMatch(run.output, /Line \d+:/, run.output);
      assert.ok(run.stayedUp, `hostapd exited (${run.exitCode}):\n${run.output}`);
      assert.match(run.output, /Configuration file: /);
      assert.match(run.output, new RegExp(`new country code ${r.value.country_code}`));
    });
  });

  test('random accepted configs (fast-check sample) load too', async () => {
    const printable = fc.integer({ min: 0x20, max: 0x7e }).map((n) => String.fromCharCode(n));
    const arb = fc.record({
      ssid: fc.string({
        unit: fc.oneof(printable, fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 })),
        minLength: 1,
        maxLength: 12,
      }),
      password: fc.oneof(
        fc.string({ unit: printable, minLength: 8, maxLength: 63 }),
        fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF'), minLength: 64, maxLength: 64 }),
      ),
      bc: fc.oneof(
        fc.record({
          band: fc.constant('a'),
          channel: fc.constantFrom(36, 40, 44, 48, 149, 153, 157, 161, 165),
        }),
        fc.record({ band: fc.constant('g'), channel: fc.integer({ min: 1, max: 13 }) }),
      ),
      country_code: fc.constantFrom('US', 'DE', 'GB', 'JP', 'FR', 'AU', 'CA', 'NL'),
    });
    const samples = fc.sample(arb, { numRuns: Number(process.env.HOSTAPD_SAMPLES ?? 12), seed: 4242 });
    let ran = 0;
    for (const [i, { bc, ...rest }] of samples.entries()) {
      const r = await validateSection('wifi', { ...rest, ...bc });
      if (!r.ok) continue; // e.g. a grapheme pushed the SSID past 32 bytes or was a control character
      const conf = path.join(dir, `sample-${i}.conf`);
      await writeFile(
        conf,
        forTest(await renderHostapdConf(TEMPLATES, r.value), path.join(dir, `ctrl-s${i}`)),
      );
      const run = await runHostapd(conf);
      assert.doesNotMatch(run.output, /Line \d+:/, run.output);
      assert.ok(run.stayedUp, `hostapd exited (${run.exitCode}):\n${run.output}`);
      ran++;
    }
    assert.ok(ran >= samples.length / 2, `enough samples were valid (${ran})`);
  });

  test('control: a broken file is noticed (short passphrase)', async () => {
    const conf = path.join(dir, 'broken-1.conf');
    await writeFile(conf, 'interface=wlan0\ndriver=none\nssid=Car\nwpa=2\nwpa_passphrase=short\n');
    const run = await runHostapd(conf);
    assert.equal(run.stayedUp, false);
    assert.match(run.output, /Line 5:/);
  });

  test('control: an injected directive is noticed', async () => {
    const conf = path.join(dir, 'broken-2.conf');
    await writeFile(conf, 'interface=wlan0\ndriver=none\nssid=Car\nbogus_directive=1\n');
    const run = await runHostapd(conf);
    assert.equal(run.stayedUp, false);
    assert.match(run.output, /Line 4: unknown configuration item/);
  });
});
