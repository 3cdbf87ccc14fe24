// BluezProfiles (src/bluez/profiles.ts) against a private dbus-daemon, with a fake BlueZ that really calls
// back and a fake head-unit app that claims profiles through the service layer (src/daemon.ts): registration with the right options, re-registration
// on a new org.bluez owner, retries and conflicts, connections handed over with their socket, refusals
// (unclaimed, not BlueZ, handler error) that close our copy of the socket, claims ending with the client,
// and no descriptor leaks. The sandbox tests repeat the essentials against real systemd and dbusmock.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { readdirSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import dbus from 'dbus-next';
import { PROFILES } from '../../src/bluez/profile-catalogue.js';
import { BluezProfiles } from '../../src/bluez/profiles.js';
import { UnixFdGuard } from '../../src/bluez/unix-fds.js';
import { Bus, type DBusMessage } from '../../src/bus/connection.js';
import type { Action } from '../../src/bus/polkit.js';
import { Daemon } from '../../src/daemon.js';
import { ServiceError } from '../../src/errors.js';
import type { HealthMonitor } from '../../src/health/monitor.js';
import type { Json } from '../../src/service.js';
import type { UnitRestarter } from '../../src/systemd/restarts.js';
import { sleep } from '../helpers/common.js';
import { type PrivateBus, privateBusUnavailable, startPrivateBus } from './helpers/bluez-private-bus.js';
import { type RevisionWatch, revisionWatch } from './helpers/revision-watch.js';

const AA = PROFILES.aa.uuid;
const HFP = PROFILES['hfp-ag'].uuid;
const HSP = PROFILES['hsp-hs'].uuid;
const DEVICE = '/org/bluez/hci0/dev_00_11_22_33_44_55';

type Registration = { path: string; uuid: string; options: Record<string, unknown> };

/** A BlueZ stand-in that owns org.bluez, records RegisterProfile and can call our Profile1 objects. */
class FakeBluez {
  readonly calls: Registration[] = [];
  /** Error name to answer RegisterProfile with (undefined: accept). */
  refuse: (uuid: string, n: number) => string | undefined = () => undefined;

  private constructor(readonly bus: Bus) {}

  static async start(refuse?: FakeBluez['refuse']): Promise<FakeBluez> {
    const bus = await Bus.connect();
    const fake = new FakeBluez(bus);
    if (refuse) fake.refuse = refuse;
    bus.raw.addMethodHandler((msg: DBusMessage) => {
      if (msg.path !== '/org/bluez' || msg.member !== 'RegisterProfile') return false;
      const [path, uuid, opts] = msg.body as [
        string,
        string,
        Record<string, InstanceType<typeof dbus.Variant>>,
      ];
      const options = Object.fromEntries(Object.entries(opts).map(([k, v]) => [k, v.value]));
      fake.calls.push({ path, uuid, options });
      const n = fake.calls.filter((c) => c.uuid === uuid).length;
      const err = fake.refuse(uuid, n);
      bus.send(
        err
          ? (dbus.Message.newError as unknown as (m: DBusMessage, n: string, t: string) => DBusMessage)(
              msg,
              err,
              'refused by the fake',
            )
          : dbus.Message.newMethodReturn(msg, '', []),
      );
      return true;
    });
    await bus.raw.requestName('org.bluez', dbus.NameFlag.DO_NOT_QUEUE);
    return fake;
  }

  newConnection(dest: string, path: string, fd: number) {
    return this.bus.call({
      destination: dest,
      path,
      interface: 'org.bluez.Profile1',
      member: 'NewConnection',
      signature: 'oha{sv}',
      body: [DEVICE, fd, { Version: new dbus.Variant('q', 0x0102) }],
    });
  }

  callProfile(dest: string, path: string, member: string, signature = '', body: unknown[] = []) {
    return this.bus.call({
      destination: dest,
      path,
      interface: 'org.bluez.Profile1',
      member,
      signature,
      body,
    });
  }

  close(): void {
    this.bus.close();
  }
}

/** The head-unit app: exports a Profile1 handler and records what it is handed. */
class FakeApp {
  readonly received: { device: string; props: Record<string, unknown>; socket: net.Socket; data: string }[] =
    [];
  readonly disconnects: string[] = [];
  fail = false;
  private readonly guard: UnixFdGuard;

  private constructor(readonly bus: Bus) {
    this.guard = UnixFdGuard.install(bus);
    bus.raw.addMethodHandler((msg: DBusMessage) => {
      if (msg.path === '/app/handler' && msg.member === 'RequestDisconnection') {
        this.disconnects.push(String(msg.body[0]));
        bus.send(dbus.Message.newMethodReturn(msg, '', []));
        return true;
      }
      if (msg.path !== '/app/handler' || msg.member !== 'NewConnection') return false;
      const fds = this.guard.take(msg);
      const [device, fd, props] = msg.body as [
        string,
        number,
        Record<string, InstanceType<typeof dbus.Variant>>,
      ];
      if (this.fail) {
        for (const x of fds) net.Socket.prototype.destroy.call(new net.Socket({ fd: x }));
        bus.send(
          (dbus.Message.newError as unknown as (m: DBusMessage, n: string, t: string) => DBusMessage)(
            msg,
            'org.bluez.Error.Rejected',
            'not now',
          ),
        );
        return true;
      }
      const socket = new net.Socket({ fd, readable: true, writable: true });
      const entry = {
        device,
        props: Object.fromEntries(Object.entries(props).map(([k, v]) => [k, v.value])),
        socket,
        data: '',
      };
      socket.on('data', (b: Buffer) => {
        entry.data += b.toString();
      });
      socket.on('error', () => undefined);
      this.received.push(entry);
      bus.send(dbus.Message.newMethodReturn(msg, '', []));
      return true;
    });
  }

  static async start(): Promise<FakeApp> {
    return new FakeApp(await Bus.connect());
  }

  get name(): string {
    return this.bus.uniqueName;
  }

  closeAll(): void {
    for (const r of this.received) r.socket.destroy();
  }
}

class FakeAuthorizer {
  denied = new Set<string>();
  gate: Promise<void> | undefined;
  asked = 0;
  async check(sender: string, _action: Action, _interactive: boolean): Promise<void> {
    this.asked++;
    if (this.gate) await this.gate;
    if (this.denied.has(sender)) throw new ServiceError('AccessDenied', 'not authorized');
  }
}

async function waitFor<T>(pred: () => T | Promise<T>, ms = 3000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

const openFds = () => readdirSync('/proc/self/fd').length;

/** The service layer over these profiles' claims; ClaimProfile needs nothing else of it. */
function serviceFor(p: BluezProfiles | undefined): Daemon {
  return new Daemon({
    version: 'test',
    monitor: new EventEmitter() as unknown as HealthMonitor,
    restarter: {} as UnitRestarter,
    authorizer,
    ...(p ? { profiles: p.claims } : {}),
  });
}

const skip = privateBusUnavailable();
const authorizer = new FakeAuthorizer();

describe('BluezProfiles on a private bus', { skip }, () => {
  let pb: PrivateBus;
  let daemonBus: Bus;
  let profiles: BluezProfiles;
  let service: Daemon;
  let bluez: FakeBluez;
  let sockDir: string;
  let server: net.Server;
  const accepted: net.Socket[] = [];
  let counter = 0;

  /** A connected socket pair: `ours` is what BlueZ passes on (as fd), `peer` is the phone's end. */
  async function socketPair(): Promise<{ ours: net.Socket; fd: number; peer: net.Socket }> {
    const got = new Promise<net.Socket>((r) => server.once('connection', r));
    const peer = net.connect(join(sockDir, 's'));
    const ours = await got;
    await new Promise((r) => (peer.connecting ? peer.once('connect', r) : r(undefined)));
    accepted.push(ours);
    const fd = (ours as unknown as { _handle: { fd: number } })._handle.fd;
    return { ours, fd, peer };
  }

  /** True when the peer sees EOF within ms (every copy of the other end is closed). */
  function sawEof(peer: net.Socket, ms = 1000): Promise<boolean> {
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), ms);
      peer.once('end', () => {
        clearTimeout(t);
        resolve(true);
      });
      peer.resume();
    });
  }

  // Every read also checks GetStatus's cache key: the profiles' section never changes without a new revision.
  let watch: RevisionWatch | undefined;
  const status = () => {
    watch ??= revisionWatch(
      () => profiles.status(),
      () => profiles.statusRevision,
      'the profiles status',
    );
    watch();
    return profiles.status() as Record<string, Record<string, Json>>;
  };
  const dbusCaller = (sender: string) => ({ kind: 'dbus' as const, sender, interactive: false });

  before(async () => {
    pb = await startPrivateBus();
    process.env.DBUS_SYSTEM_BUS_ADDRESS = pb.address;
    process.env.OPENAUTO_LOG_STDERR = '1';
    sockDir = pb.dir;
    server = net.createServer();
    await new Promise<void>((r) => server.listen(join(sockDir, 's'), r));
    bluez = await FakeBluez.start();
    daemonBus = await Bus.connect();
    profiles = new BluezProfiles({
      bus: daemonBus,
      fds: UnixFdGuard.install(daemonBus),
      enabled: ['aa', 'hfp-ag', 'hsp-hs'],
      backoff: { initialMs: 40, maxMs: 200 },
      forwardTimeoutMs: 2000,
    });
    profiles.export();
    profiles.start();
    service = serviceFor(profiles);
  });

  afterEach(() => {
    for (const s of accepted.splice(0)) s.destroy();
  });

  after(async () => {
    profiles?.stop();
    bluez?.close();
    daemonBus?.close();
    server?.close();
    await pb?.stop();
  });

  it('registers every enabled profile with BlueZ, each with its own Profile1 object and options', async () => {
    await waitFor(
      () => bluez.calls.length >= 3 && Object.values(status()).every((p) => p.registered),
      3000,
      'registration',
    );
    assert.deepEqual(
      bluez.calls.map((c) => [c.uuid, c.path]).sort(),
      [
        [AA, '/org/openauto/System/bluez/android_auto'],
        [HFP, '/org/openauto/System/bluez/hfp_ag'],
        [HSP, '/org/openauto/System/bluez/hsp_hs'],
      ].sort(),
    );
    const aa = bluez.calls.find((c) => c.uuid === AA);
    assert.deepEqual(aa?.options, {
      Name: 'OpenAuto Android Auto Wireless',
      Role: 'server',
      Channel: 8,
      RequireAuthentication: true,
      RequireAuthorization: false,
    });
    const s = status();
    assert.equal(s.aa?.bluez_owner, bluez.bus.uniqueName);
    assert.equal(s.aa?.state, 'registered');
    assert.equal(s.aa?.claimed, false);
  });

  it('registers everything again at once when org.bluez gets a new owner', async () => {
    bluez.close();
    await waitFor(() => Object.values(status()).every((p) => p.state === 'no-bluez'), 2000, 'no-bluez');
    const t0 = Date.now();
    bluez = await FakeBluez.start();
    await waitFor(() => Object.values(status()).every((p) => p.registered), 1000, 're-registration');
    assert.ok(Date.now() - t0 < 1000);
    assert.equal(bluez.calls.length, 3);
    assert.equal(status().aa?.registrations, 2);
  });

  it('retries a failing RegisterProfile with growing delays until it succeeds', async () => {
    bluez.close();
    const times: number[] = [];
    bluez = await FakeBluez.start((uuid, n) => {
      if (uuid !== AA) return undefined;
      times.push(Date.now());
      return n <= 3 ? 'org.bluez.Error.Failed' : undefined;
    });
    await waitFor(() => status().aa?.failures === 2, 2000, 'two failures');
    const mid = status().aa;
    assert.equal(mid?.registered, false);
    assert.equal(mid?.state, 'retrying');
    assert.match(String(mid?.last_error), /org\.bluez\.Error\.Failed/);
    assert.equal(typeof mid?.next_attempt, 'string');
    await waitFor(() => status().aa?.registered, 3000, 'registered after retries');
    assert.equal(times.length, 4);
    const gaps = times.slice(1).map((t, i) => t - (times[i] as number));
    // 40, 80, 160 ms (timers are never early).
    assert.ok(gaps[0] !== undefined && gaps[0] >= 35, `gaps ${gaps}`);
    assert.ok(gaps[1] !== undefined && gaps[1] >= 75, `gaps ${gaps}`);
    assert.ok(gaps[2] !== undefined && gaps[2] >= 150, `gaps ${gaps}`);
    assert.equal(status().aa?.failures, 0);
  });

  it('reports a UUID held by another program as a conflict, and takes it once it is free', async () => {
    bluez.close();
    let held = true;
    bluez = await FakeBluez.start((uuid) =>
      uuid === HFP && held ? 'org.bluez.Error.NotPermitted' : undefined,
    );
    await waitFor(() => status()['hfp-ag']?.conflict === true && status().aa?.registered, 2000, 'conflict');
    const hfp = status()['hfp-ag'];
    assert.equal(hfp?.registered, false);
    assert.match(String(hfp?.last_error), /held by another program \(org\.bluez\.Error\.NotPermitted/);
    held = false;
    await waitFor(() => status()['hfp-ag']?.registered, 2000, 'hfp registered');
    assert.equal(status()['hfp-ag']?.conflict, false);
  });

  it('hands a connection to the claimant with its socket: bytes from the phone arrive', async () => {
    const app = await FakeApp.start();
    try {
      await service.claimProfile(AA, '/app/handler', dbusCaller(app.name));
      assert.equal(status().aa?.claimant, app.name);
      assert.equal(status().aa?.handler, '/app/handler');
      const { ours, fd, peer } = await socketPair();
      await bluez.newConnection(daemonBus.uniqueName, PROFILES.aa.path, fd);
      ours.destroy(); // BlueZ's copy
      await waitFor(() => app.received.length === 1, 2000, 'the app got the connection');
      const got = app.received[0];
      assert.equal(got?.device, DEVICE);
      assert.deepEqual(got?.props, { Version: 0x0102 });
      peer.write('hello from the phone');
      await waitFor(() => got?.data === 'hello from the phone', 2000, 'data at the app');
      got?.socket.write('hello from the car');
      const back = await new Promise<string>((r) => peer.once('data', (b: Buffer) => r(b.toString())));
      assert.equal(back, 'hello from the car');
      // Only the app holds the socket now: when it closes, the phone sees EOF.
      const eof = sawEof(peer);
      got?.socket.destroy();
      assert.equal(await eof, true);
      assert.equal(status().aa?.forwarded, 1);
    } finally {
      app.closeAll();
      app.bus.close();
    }
  });

  it('passes RequestDisconnection on to the claimant, and registers again after BlueZ calls Release', async () => {
    const app = await FakeApp.start();
    try {
      await service.claimProfile(HSP, '/app/handler', dbusCaller(app.name));
      await bluez.callProfile(daemonBus.uniqueName, PROFILES['hsp-hs'].path, 'RequestDisconnection', 'o', [
        DEVICE,
      ]);
      assert.deepEqual(app.disconnects, [DEVICE]);
      // Unclaimed: nothing to tell anyone, still a success for BlueZ.
      await bluez.callProfile(daemonBus.uniqueName, PROFILES['hfp-ag'].path, 'RequestDisconnection', 'o', [
        DEVICE,
      ]);
      const before = bluez.calls.filter((c) => c.uuid === HSP).length;
      await bluez.callProfile(daemonBus.uniqueName, PROFILES['hsp-hs'].path, 'Release');
      assert.equal(status()['hsp-hs']?.registered, false);
      await waitFor(() => status()['hsp-hs']?.registered, 2000, 'registered again after Release');
      assert.equal(bluez.calls.filter((c) => c.uuid === HSP).length, before + 1);
      // Wrong argument types are refused without touching anything.
      await assert.rejects(
        bluez.callProfile(daemonBus.uniqueName, PROFILES.aa.path, 'NewConnection', 's', ['x']),
        (err: unknown) => (err as { type?: string }).type === 'org.freedesktop.DBus.Error.InvalidArgs',
      );
    } finally {
      app.bus.close();
    }
  });

  it('refuses unclaimed profiles with org.bluez.Error.Rejected and closes the socket', async () => {
    const { ours, fd, peer } = await socketPair();
    await assert.rejects(
      bluez.newConnection(daemonBus.uniqueName, PROFILES['hsp-hs'].path, fd),
      (err: unknown) => {
        assert.equal((err as { type?: string }).type, 'org.bluez.Error.Rejected');
        return true;
      },
    );
    const eof = sawEof(peer);
    ours.destroy();
    assert.equal(await eof, true, 'the daemon kept a copy of the socket');
    assert.equal(status()['hsp-hs']?.rejected, 1);
  });

  it('answers callers other than BlueZ with AccessDenied and closes what they sent', async () => {
    const intruder = await Bus.connect();
    try {
      const { ours, fd, peer } = await socketPair();
      await assert.rejects(
        intruder.call({
          destination: daemonBus.uniqueName,
          path: PROFILES.aa.path,
          interface: 'org.bluez.Profile1',
          member: 'NewConnection',
          signature: 'oha{sv}',
          body: [DEVICE, fd, {}],
        }),
        (err: unknown) => (err as { type?: string }).type === 'org.freedesktop.DBus.Error.AccessDenied',
      );
      await assert.rejects(
        intruder.call({
          destination: daemonBus.uniqueName,
          path: PROFILES.aa.path,
          interface: 'org.bluez.Profile1',
          member: 'Release',
        }),
        (err: unknown) => (err as { type?: string }).type === 'org.freedesktop.DBus.Error.AccessDenied',
      );
      const eof = sawEof(peer);
      ours.destroy();
      assert.equal(await eof, true);
      assert.equal(status().aa?.registered, true, 'a stranger cannot make us drop the registration');
      assert.ok(Number(status().aa?.refused_callers) >= 2);
    } finally {
      intruder.close();
    }
  });

  it('a handler that refuses turns into Rejected for BlueZ', async () => {
    const app = await FakeApp.start();
    try {
      app.fail = true;
      await service.claimProfile(AA, '/app/handler', dbusCaller(app.name));
      const { ours, fd, peer } = await socketPair();
      await assert.rejects(
        bluez.newConnection(daemonBus.uniqueName, PROFILES.aa.path, fd),
        (err: unknown) => (err as { type?: string }).type === 'org.bluez.Error.Rejected',
      );
      const eof = sawEof(peer);
      ours.destroy();
      assert.equal(await eof, true);
    } finally {
      app.bus.close();
    }
  });

  it('a claim ends when the claimant leaves the bus; other rules of claiming', async () => {
    const app = await FakeApp.start();
    const other = await FakeApp.start();
    try {
      await waitFor(() => status().aa?.claimed === false, 2000, 'the previous claimant is gone');
      await service.claimProfile(AA, '/app/handler', dbusCaller(app.name));
      // Someone else: Busy. The holder again: replaces its handler. A non-holder's release: nothing.
      await assert.rejects(service.claimProfile(AA, '/x', dbusCaller(other.name)), (e: unknown) => {
        assert.equal((e as ServiceError).code, 'Busy');
        return true;
      });
      await service.claimProfile(AA.toUpperCase(), '/app/handler', dbusCaller(app.name));
      await service.releaseProfile(AA, dbusCaller(other.name));
      assert.equal(status().aa?.claimant, app.name);
      await assert.rejects(service.claimProfile('1234', '/x', dbusCaller(app.name)), (e: unknown) => {
        assert.equal((e as ServiceError).code, 'InvalidArgs');
        assert.match((e as Error).message, /unknown profile uuid '1234'/);
        return true;
      });
      authorizer.denied.add(other.name);
      await assert.rejects(service.claimProfile(HSP, '/x', dbusCaller(other.name)), (e: unknown) => {
        assert.equal((e as ServiceError).code, 'AccessDenied');
        return true;
      });
      assert.equal(status()['hsp-hs']?.claimed, false);
      // Leaving the bus ends the claim.
      app.bus.close();
      await waitFor(() => status().aa?.claimed === false, 2000, 'claim released');
      const { ours, fd } = await socketPair();
      await assert.rejects(
        bluez.newConnection(daemonBus.uniqueName, PROFILES.aa.path, fd),
        (err: unknown) => (err as { type?: string }).type === 'org.bluez.Error.Rejected',
      );
      ours.destroy();
      // A claimant that leaves while polkit is still deciding never ends up holding the profile.
      const leaver = await FakeApp.start();
      let open: () => void = () => undefined;
      authorizer.gate = new Promise<void>((r) => {
        open = r;
      });
      const pending = service.claimProfile(AA, '/app/handler', dbusCaller(leaver.name));
      leaver.bus.close();
      await sleep(100);
      open();
      authorizer.gate = undefined;
      await pending;
      assert.equal(status().aa?.claimed, false);
    } finally {
      app.bus.close();
      other.bus.close();
    }
  });

  it('only enabled profiles can be claimed', async () => {
    const only = new BluezProfiles({
      bus: daemonBus,
      fds: UnixFdGuard.install(daemonBus),
      enabled: ['aa', 'bogus'],
    });
    assert.deepEqual(Object.keys(only.status()), ['aa']);
    await assert.rejects(
      serviceFor(only).claimProfile(HFP, '/x', dbusCaller(':1.1')),
      /not enabled on this system/,
    );
  });

  it('the service layer validates a claim before it asks polkit, and refuses when no profiles are managed', async () => {
    const invalid = (re: RegExp) => (e: unknown) => {
      assert.equal((e as ServiceError).code, 'InvalidArgs');
      assert.match((e as Error).message, re);
      return true;
    };
    const asked = authorizer.asked;
    await assert.rejects(service.claimProfile(AA, 'handler', dbusCaller(':1.999')), invalid(/object path/));
    await assert.rejects(service.claimProfile(AA, '/x', { kind: 'socket' }), invalid(/over D-Bus/));
    await assert.rejects(
      service.claimProfile('1234', '/x', dbusCaller(':1.999')),
      invalid(/unknown profile/),
    );
    await assert.rejects(service.releaseProfile('1234', dbusCaller(':1.999')), invalid(/unknown profile/));
    assert.equal(authorizer.asked, asked, 'polkit is not asked about a call that is refused anyway');
    assert.equal(status().aa?.claimant === ':1.999', false);
    const none = serviceFor(undefined);
    await assert.rejects(none.claimProfile(AA, '/x', dbusCaller(':1.999')), invalid(/no Bluetooth profiles/));
    await assert.rejects(none.releaseProfile(AA, dbusCaller(':1.999')), invalid(/no Bluetooth profiles/));
  });

  it('leaks no descriptor over hundreds of forwarded and refused connections', async () => {
    const app = await FakeApp.start();
    try {
      await service.claimProfile(AA, '/app/handler', dbusCaller(app.name));
      const one = async (path: string) => {
        const { ours, fd, peer } = await socketPair();
        try {
          await bluez.newConnection(daemonBus.uniqueName, path, fd);
        } catch {
          // refused
        }
        ours.destroy();
        peer.destroy();
      };
      await one(PROFILES.aa.path); // warm-up
      app.closeAll();
      await sleep(50);
      const baseline = openFds();
      for (let i = 0; i < 300; i++) {
        await one(PROFILES.aa.path);
        await one(PROFILES['hsp-hs'].path);
        counter++;
      }
      app.closeAll();
      await waitFor(() => openFds() === baseline, 3000, `fd count back to ${baseline} (now ${openFds()})`);
      assert.ok(Number(status().aa?.forwarded) >= 300);
    } finally {
      app.bus.close();
    }
    assert.equal(counter, 300);
  });
});
