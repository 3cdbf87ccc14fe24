// Boot order with the app: openauto-prodigy.service starts after the daemon is ready (Before=, Type=dbus),
// so the daemon's start-up must never wait for a slow service. bluetoothd and networkd are made to take 5 s
// to start; the daemon and an app stand-in are started together with them, as at boot.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { daemonSuiteSkip, Sandbox } from './harness.js';

const skip = daemonSuiteSkip();
const SERVICE = 'openauto-system.service';
const APP = 'openauto-prodigy.service';
const SLOW_S = 5;

describe('boot order with the app', { skip }, () => {
  let sb: Sandbox;
  /** A CLOCK_MONOTONIC timestamp property in ms (0 = never). */
  const mono = async (unit: string, prop: string) =>
    Number((await sb.execOk(['systemctl', 'show', '-P', prop, unit])).trim()) / 1000;

  before(async () => {
    sb = await Sandbox.start({ name: 'rel-boot' });
    await sb.writeFile('/etc/openauto-sandbox/bluetooth.env', `BLUETOOTH_START_DELAY=${SLOW_S}\n`);
    await sb.execOk(['mkdir', '-p', '/etc/systemd/system/systemd-networkd.service.d']);
    await sb.writeFile(
      '/etc/systemd/system/systemd-networkd.service.d/50-slow.conf',
      `[Service]\nExecStartPre=/bin/sleep ${SLOW_S}\n`,
    );
    // The head-unit app: ordered after the daemon by the daemon's own Before=.
    await sb.writeFile(
      `/etc/systemd/system/${APP}`,
      '[Unit]\nDescription=app stand-in\n[Service]\nExecStart=/bin/sleep infinity\n',
    );
    // One transaction for all four, as at boot (the jobs are ordered against each other only when queued together).
    await sb.writeFile(
      '/etc/systemd/system/rel-boot.target',
      `[Unit]\nWants=${APP} ${SERVICE} bluetooth.service systemd-networkd.service\n`,
    );
    await sb.execOk(['systemctl', 'daemon-reload']);
  });
  after(async () => {
    await sb?.stop();
  });

  it(`with bluetoothd and networkd taking ${SLOW_S} s to start, the app waits only for the daemon's own start-up`, async () => {
    const figures: number[] = [];
    for (let round = 0; round < 3; round++) {
      await sb.execOk([
        'systemctl',
        'stop',
        'rel-boot.target',
        APP,
        SERVICE,
        'bluetooth.service',
        'systemd-networkd.service',
      ]);
      // All four at once, as at boot.
      await sb.execOk(['systemctl', 'start', 'rel-boot.target'], { timeoutMs: 60_000 });
      await sb.waitFor(async () => (await sb.unitState(APP)) === 'active', 30_000);
      await sb.waitFor(async () => (await sb.unitState('bluetooth.service')) === 'active', 30_000);
      await sb.waitFor(async () => (await sb.unitState('systemd-networkd.service')) === 'active', 30_000);
      const exec = await mono(SERVICE, 'ExecMainStartTimestampMonotonic');
      const ready = await mono(SERVICE, 'ActiveEnterTimestampMonotonic');
      const app = await mono(APP, 'ExecMainStartTimestampMonotonic');
      const bt = await mono('bluetooth.service', 'ActiveEnterTimestampMonotonic');
      const nd = await mono('systemd-networkd.service', 'ActiveEnterTimestampMonotonic');
      console.log(
        `# round ${round}: exec -> name owned ${Math.round(ready - exec)} ms; app started ${Math.round(app - exec)} ms after exec; bluetooth active at ${Math.round(bt - exec)} ms, networkd at ${Math.round(nd - exec)} ms`,
      );
      assert.ok(app >= ready, 'the app starts after the daemon is ready');
      // Far less than the slow services take: the daemon did not wait for them.
      assert.ok(ready - exec < 3000, `exec -> ready ${ready - exec} ms`);
      assert.ok(bt > ready && nd > ready, 'the slow services became active after the daemon was ready');
      figures.push(ready - exec);
    }
    // And once they are up, the daemon sees them healthy.
    await sb.waitFor(async () => {
      const h = JSON.parse(await sb.execOk(['openautoctl', '--json', 'health'])) as Record<string, string>;
      return h.bluetooth === 'active' && h.networkd === 'active';
    }, 30_000);
  });
});
