// The core without root: SystemdManager, UnitRestarter, HealthMonitor, the service layer (Daemon) and the
// org.openauto.System1 export, on a private dbus-daemon with a fake systemd1 (helpers/fake-systemd.ts).
// The sandbox suites repeat the essentials against real systemd.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import dbus from 'dbus-next';
import { Bus } from '../../src/bus/connection.js';
import { INTERFACE, OBJECT_PATH, System1Export } from '../../src/bus/system1.js';
import { ApplyCoordinator } from '../../src/config/apply-coordinator.js';
import { Daemon } from '../../src/daemon.js';
import { ServiceError } from '../../src/errors.js';
import { HealthMonitor } from '../../src/health/monitor.js';
import type { HealthMap } from '../../src/health/states.js';
import { SystemdManager } from '../../src/systemd/manager.js';
import { UnitRestarter } from '../../src/systemd/restarts.js';
import { makeSandbox, REPO_ROOT, validConfig } from '../fixtures/config/harness.js';
import { type PrivateBus, privateBusUnavailable, startPrivateBus } from './helpers/bluez-private-bus.js';
import { FakeSystemd } from './helpers/fake-systemd.js';
import { revisionWatch } from './helpers/revision-watch.js';

const UNITS = ['hostapd.service', 'systemd-networkd.service', 'bluetooth.service'];
const SOCKET = { kind: 'socket' } as const;
const monoMs = () => Number(process.hrtime.bigint() / 1_000_000n);

/** Resolves with the first health map `monitor` emits that satisfies `ok`. */
function healthWhere(monitor: HealthMonitor, ok: (h: HealthMap) => boolean): Promise<HealthMap> {
  return new Promise((resolve) => {
    const on = (h: HealthMap) => {
      if (!ok(h)) return;
      monitor.off('healthChanged', on);
      resolve(h);
    };
    monitor.on('healthChanged', on);
  });
}

/** Resolves at the next RestartUnit of `unit`. */
function restartOf(fake: FakeSystemd, unit: string): Promise<void> {
  return new Promise((resolve) => {
    const on = (u: string) => {
      if (u !== unit) return;
      fake.off('restart', on);
      resolve();
    };
    fake.on('restart', on);
  });
}

describe('the core on a private bus with a fake systemd', { skip: privateBusUnavailable() }, () => {
  let pb: PrivateBus;
  let fake: FakeSystemd;
  let bus: Bus;
  let systemd: SystemdManager;
  let restarter: UnitRestarter;
  let monitor: HealthMonitor;

  before(async () => {
    pb = await startPrivateBus();
    process.env.DBUS_SYSTEM_BUS_ADDRESS = pb.address;
    fake = await FakeSystemd.start(UNITS);
    bus = await Bus.connect();
    systemd = new SystemdManager(bus);
    await systemd.start();
    restarter = new UnitRestarter(systemd, 2000);
    monitor = new HealthMonitor({
      bus,
      systemd,
      restarter,
      pollMs: 60_000,
      // No networkd or BlueZ on this bus: their functional checks fail, and must not be repaired here.
      recovery: { degradedGraceMs: 3_600_000 },
      expectation: () => ({ iface: 'lo', apIp: '127.0.0.1' }),
    });
  });

  after(async () => {
    monitor?.stop();
    bus?.close();
    fake?.close();
    await pb?.stop();
  });

  it('SystemdManager reads a unit, its restart policy, and waits for a restart job to end', async () => {
    const st = await systemd.refresh('hostapd.service');
    assert.equal(st.activeState, 'active');
    assert.equal(st.subState, 'running');
    fake.unit('hostapd.service').restart = 'on-failure';
    fake.unit('hostapd.service').restartSec = 2;
    // On a manager of its own: the policy is cached, and the monitor below must see Restart=no.
    const reader = new SystemdManager(bus);
    assert.deepEqual(await reader.restartPolicy('hostapd.service'), { restarts: true, delayMs: 2000 });
    fake.unit('hostapd.service').restart = 'no';
    assert.equal(await systemd.restart('systemd-networkd.service'), 'done');
    fake.result = () => 'failed';
    assert.equal(await systemd.restart('systemd-networkd.service'), 'failed');
    fake.result = () => 'done';
    fake.jobMs = 500;
    const ended = once(fake, 'job');
    assert.equal(await systemd.restart('systemd-networkd.service', 100), 'timeout', 'bounded wait');
    await ended; // its job still ends (done): the unit is active again for the tests below
    fake.jobMs = 20;
  });

  it('UnitRestarter joins a burst into one restart, and an apply is never refused Busy', async () => {
    fake.restarts.length = 0;
    fake.jobMs = 100;
    const first = restarter.restart('bluetooth.service', 'caller');
    await once(fake, 'restart');
    const burst = [1, 2, 3].map(() => restarter.restart('bluetooth.service', 'caller'));
    assert.deepEqual(await Promise.all([first, ...burst]), ['done', 'done', 'done', 'done']);
    // The first was running; the other three join the one that waits for its turn.
    assert.equal(fake.restarts.filter((r) => r.unit === 'bluetooth.service').length, 2);

    // Holds of one unit beyond the waiting limit: callers get Busy, an apply waits its turn.
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const held = [1, 2, 3, 4, 5].map(() => restarter.hold('bluetooth.service', 'caller', () => gate));
    await assert.rejects(
      restarter.hold('bluetooth.service', 'caller', async () => 'x'),
      (e: unknown) => e instanceof ServiceError && e.code === 'Busy',
    );
    const apply = restarter.hold('bluetooth.service', 'apply', async () => 'applied');
    release();
    await Promise.all(held);
    assert.equal(await apply, 'applied');
    fake.jobMs = 20;
  });

  it('HealthMonitor: a failed unit without its own Restart= is restarted at once', async () => {
    // Read every millisecond and at every change: GetStatus's services section moves only with its revision.
    const watch = revisionWatch(
      () => monitor.status(),
      () => monitor.statusRevision,
      'the monitor status',
    );
    const sampler = setInterval(watch, 1);
    monitor.on('healthChanged', watch);
    try {
      await monitor.start();
      watch();
      assert.equal(monitor.health().hostapd, 'active');
      fake.restarts.length = 0;
      const back = healthWhere(monitor, (h) => h.hostapd === 'active');
      const failedAt = monoMs();
      fake.set('hostapd.service', 'failed', 'failed');
      await restartOf(fake, 'hostapd.service');
      const tookMs = (fake.restarts.find((r) => r.unit === 'hostapd.service')?.atMs ?? Infinity) - failedAt;
      assert.ok(tookMs < 1000, `restarted ${tookMs} ms after the failure`);
      await back;
      watch();
      assert.ok(watch.moves >= 2, `the revision moved ${watch.moves} times`);
    } finally {
      clearInterval(sampler);
      monitor.off('healthChanged', watch);
    }
  });

  it('HealthMonitor: a unit with its own Restart= gets RestartSec + 1.5 s to come back before we restart it', async () => {
    const u = fake.unit('hostapd.service');
    u.restart = 'on-failure';
    u.restartSec = 1;
    // The policy is cached per unit (it changes only with a daemon-reload): a fresh manager reads it anew.
    const own = new SystemdManager(bus);
    await own.start();
    const ownMonitor = new HealthMonitor({
      bus,
      systemd: own,
      restarter: new UnitRestarter(own, 2000),
      pollMs: 60_000,
      recovery: { degradedGraceMs: 3_600_000 },
      expectation: () => ({ iface: 'lo', apIp: '127.0.0.1' }),
    });
    try {
      await ownMonitor.start();
      monitor.stop(); // only one monitor may act on the unit
      fake.restarts.length = 0;
      const failedAt = monoMs();
      fake.set('hostapd.service', 'failed', 'failed');
      await restartOf(fake, 'hostapd.service');
      const waited = (fake.restarts.find((r) => r.unit === 'hostapd.service')?.atMs ?? 0) - failedAt;
      assert.ok(waited >= 2400, `restarted ${waited} ms after the failure, before RestartSec + 1.5 s`);
      assert.ok(waited < 2500 + 3000, `restarted only ${waited} ms after the failure`);
    } finally {
      ownMonitor.stop();
      u.restart = 'no';
      u.restartSec = 0;
    }
  });

  it('ApplyCoordinator: the AP expectation follows what was applied, and the monitor is told', async () => {
    const sbx = await makeSandbox();
    try {
      const cfg = validConfig();
      await sbx.writeConfig(cfg);
      const paths = { ...sbx.paths, apInterface: 'wlan0' };
      const applies = new ApplyCoordinator({ bus, systemd, restarter, paths });
      const pokes: string[] = [];
      applies.tell({ poke: (s) => pokes.push(s) });
      const watch = revisionWatch(
        () => applies.summary(),
        () => applies.revision,
        'the applied summary',
      );
      watch();
      await applies.start();
      watch();
      // No .network file yet: config.yaml says what the link should carry.
      assert.deepEqual(applies.expectation(), {
        iface: 'wlan0',
        apIp: '10.0.0.1',
        networkFile: sbx.networkFile,
      });
      fake.restarts.length = 0;
      assert.deepEqual(await applies.apply('network'), { changed: true, restarted: ['networkd'] });
      watch();
      assert.deepEqual(
        fake.restarts.map((r) => r.unit),
        ['systemd-networkd.service'],
      );
      cfg.network = { ap_ip: '10.0.1.1', dhcp_range_start: '10.0.1.10', dhcp_range_end: '10.0.1.50' };
      await sbx.writeConfig(cfg);
      pokes.length = 0;
      await applies.apply('network');
      watch();
      assert.equal(applies.expectation().apIp, '10.0.1.1');
      assert.ok(watch.moves >= 2, 'each apply moved the revision');
      assert.deepEqual(pokes, ['hostapd', 'networkd']);
      // A section that is not the AP's changes neither.
      pokes.length = 0;
      await applies.apply('time').catch(() => undefined);
      assert.deepEqual(pokes, []);
      // A restarted daemon: the file in place holds config.yaml's section, so that is in effect.
      const again = new ApplyCoordinator({ bus, systemd, restarter, paths });
      await again.start();
      assert.equal(again.expectation().apIp, '10.0.1.1');
      assert.equal((again.summary().network as { applied_at?: string }).applied_at, 'before start');
      // Edited since and not applied: the file does not hold it; config.yaml says what to expect.
      cfg.network = { ap_ip: '10.0.2.1', dhcp_range_start: '10.0.2.10', dhcp_range_end: '10.0.2.50' };
      await sbx.writeConfig(cfg);
      const edited = new ApplyCoordinator({ bus, systemd, restarter, paths });
      await edited.start();
      assert.equal(edited.expectation().apIp, '10.0.2.1');
      assert.equal(edited.summary().network, undefined);
    } finally {
      await sbx.cleanup();
    }
  });

  it('ApplyConfig from the bus to the file and the restart: validated, then authorized, then applied', async () => {
    const sbx = await makeSandbox();
    const faceBus = await Bus.connect();
    const client = await Bus.connect();
    try {
      await sbx.writeConfig(validConfig());
      const applies = new ApplyCoordinator({
        bus,
        systemd,
        restarter,
        paths: { ...sbx.paths, apInterface: 'wlan0' },
      });
      await applies.start();
      const asked: string[] = [];
      const authorizer = { check: async (_sender: string, action: string) => void asked.push(action) };
      const daemon = new Daemon({ version: 'test', monitor, restarter, authorizer, applier: applies });
      new System1Export(
        faceBus,
        daemon,
        'test',
        join(REPO_ROOT, 'dbus', 'org.openauto.System1.xml'),
      ).export();
      const apply = (section: string) =>
        client.call({
          destination: faceBus.uniqueName,
          path: OBJECT_PATH,
          interface: INTERFACE,
          member: 'ApplyConfig',
          signature: 's',
          body: [section],
        });
      await assert.rejects(apply('hostapd'), (e: unknown) => {
        assert.ok(e instanceof dbus.DBusError);
        assert.equal(e.type, 'org.openauto.System1.Error.UnknownSection');
        return true;
      });
      assert.deepEqual(asked, [], 'an unknown section is refused before polkit is asked');
      fake.restarts.length = 0;
      const statusSsid = async () => {
        const reply = await client.call({
          destination: faceBus.uniqueName,
          path: OBJECT_PATH,
          interface: INTERFACE,
          member: 'GetStatus',
          signature: '',
          body: [],
        });
        const config = (reply.body[0] as Record<string, dbus.Variant>).config?.value as Record<
          string,
          dbus.Variant
        >;
        return (config.wifi?.value as Record<string, dbus.Variant> | undefined)?.ssid?.value;
      };
      const before = await statusSsid();
      assert.deepEqual((await apply('wifi')).body, [true, ['hostapd']]);
      // GetStatus is answered from text made once per change: right after the apply, it shows the new SSID.
      assert.notEqual(before, 'Car');
      assert.equal(await statusSsid(), 'Car');
      assert.equal(daemon.statusJson(), JSON.stringify(daemon.getStatus()));
      assert.equal(asked.length, 1);
      assert.match(await readFile(sbx.paths.hostapdConf, 'utf8'), /^ssid=Car$/m);
      assert.deepEqual(
        fake.restarts.map((r) => r.unit),
        ['hostapd.service'],
      );
      assert.deepEqual((await apply('wifi')).body, [false, []], 'unchanged: no restart');
      assert.equal(fake.restarts.length, 1);
    } finally {
      client.close();
      faceBus.close();
      await sbx.cleanup();
    }
  });

  it('Daemon and the System1 export: RestartService restarts through systemd, errors by name', async () => {
    const daemon = new Daemon({ version: 'test', monitor, restarter, authorizer: { check: async () => {} } });
    const face = new System1Export(bus, daemon, 'test', join(REPO_ROOT, 'dbus', 'org.openauto.System1.xml'));
    face.export();
    const client = await Bus.connect();
    try {
      const call = (member: string, signature = '', body: unknown[] = []) =>
        client.call({
          destination: bus.uniqueName,
          path: OBJECT_PATH,
          interface: INTERFACE,
          member,
          signature,
          body,
        });
      const health = (await call('GetHealth')).body[0] as Record<string, string>;
      assert.deepEqual(Object.keys(health).sort(), ['bluetooth', 'hostapd', 'networkd']);

      fake.restarts.length = 0;
      await call('RestartService', 's', ['networkd']);
      assert.deepEqual(
        fake.restarts.map((r) => r.unit),
        ['systemd-networkd.service'],
      );
      await assert.rejects(call('RestartService', 's', ['sshd']), (e: unknown) => {
        assert.ok(e instanceof dbus.DBusError);
        assert.equal(e.type, 'org.openauto.System1.Error.UnknownService');
        return true;
      });
      fake.result = () => 'failed';
      await assert.rejects(daemon.restartService('hostapd', SOCKET), (e: unknown) => {
        assert.ok(e instanceof ServiceError);
        assert.equal(e.code, 'RestartFailed');
        assert.equal(e.message, 'hostapd failed to restart (failed)');
        return true;
      });
      fake.result = () => 'done';
      // Without an applier every section is unknown; a wrong name is named back, cleaned.
      await assert.rejects(daemon.applyConfig('wi\nfi', SOCKET), /unknown section 'wi\?fi'/);
    } finally {
      client.close();
    }
  });
});
