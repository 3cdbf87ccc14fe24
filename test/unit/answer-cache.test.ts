// Answers that change only on events are made once per change: the daemon's health map as JSON text (what
// the socket's get_health sends) is rebuilt after the monitor's healthChanged, not per request, and is never
// stale after one; GetStatus's text after a part's revision moved or the uptime's second changed.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, it } from 'node:test';
import dbus from 'dbus-next';
import { marshallMessage } from 'dbus-next/lib/marshall-compat.js';
import type { DBusMessage } from '../../src/bus/connection.js';
import { HealthReplyCache } from '../../src/bus/reply-cache.js';
import { Daemon, type DaemonDeps } from '../../src/daemon.js';
import type { HealthMap } from '../../src/health/states.js';
import { handleLine } from '../../src/ipc/protocol.js';
import type { Json } from '../../src/service.js';
import { recordedReplies } from './helpers/recorded-replies.js';

function setup() {
  let current: HealthMap = { hostapd: 'active', networkd: 'active', bluetooth: 'active' };
  let reads = 0;
  const monitor = Object.assign(new EventEmitter(), {
    health: () => {
      reads++;
      return { ...current };
    },
  });
  const daemon = new Daemon({ version: 't', monitor } as unknown as DaemonDeps);
  const change = (h: HealthMap) => {
    current = h;
    monitor.emit('healthChanged', { ...h });
  };
  return { daemon, change, reads: () => reads };
}

const ask = (d: Daemon, id: number) =>
  handleLine(Buffer.from(`{"id":${id},"method":"get_health"}`), d, { subscribed: false }) as string;

describe('answers made once per change', () => {
  it('get_health over the socket reads the health map once until it changes', () => {
    const { daemon, reads } = setup();
    for (let i = 0; i < 100; i++)
      assert.equal(
        ask(daemon, i),
        `{"id":${i},"result":{"hostapd":"active","networkd":"active","bluetooth":"active"}}`,
      );
    assert.equal(reads(), 1);
  });

  it('is the new map right after healthChanged, also for a listener of the event', () => {
    const { daemon, change, reads } = setup();
    ask(daemon, 1);
    const seen: string[] = [];
    daemon.on('healthChanged', () => seen.push(daemon.healthJson()));
    change({ hostapd: 'failed', networkd: 'active', bluetooth: 'active' });
    assert.deepEqual(seen, ['{"hostapd":"failed","networkd":"active","bluetooth":"active"}']);
    assert.equal(
      ask(daemon, 2),
      '{"id":2,"result":{"hostapd":"failed","networkd":"active","bluetooth":"active"}}',
    );
    change({ hostapd: 'degraded', networkd: 'active', bluetooth: 'active' });
    assert.equal(
      ask(daemon, 3),
      '{"id":3,"result":{"hostapd":"degraded","networkd":"active","bluetooth":"active"}}',
    );
    assert.equal(reads(), 3);
  });

  it('D-Bus GetHealth: the cached body with our header is what dbus-next writes, built once per change', () => {
    const { replies, written } = recordedReplies();
    const { daemon, change, reads } = setup();
    const cache = new HealthReplyCache(replies);
    const call = (sender: string) => ({ serial: 3, sender }) as unknown as DBusMessage;
    const expect = (sender: string, h: HealthMap) => {
      const m = dbus.Message.newMethodReturn(call(sender), 'a{ss}', [h]);
      m.serial = 4;
      return marshallMessage(m)[0];
    };
    for (const sender of [':1.7', ':1.77', ':1.777']) {
      assert.equal(
        cache.reply(call(sender), daemon.healthJson(), () => daemon.getHealth()),
        true,
      );
      assert.deepEqual(written.at(-1), expect(sender, daemon.getHealth()), sender);
    }
    assert.equal(cache.builds, 1);
    const before = reads();
    change({ hostapd: 'active', networkd: 'failed', bluetooth: 'active' });
    cache.reply(call(':1.7'), daemon.healthJson(), () => daemon.getHealth());
    assert.deepEqual(
      written.at(-1),
      expect(':1.7', { hostapd: 'active', networkd: 'failed', bluetooth: 'active' }),
    );
    assert.equal(cache.builds, 2);
    assert.ok(reads() - before <= 3, `health map read ${reads() - before} times for one change`);
  });
});

/** A daemon whose status parts are plain counters and values: each part can change, with or without saying so. */
function statusSetup(withRevisions = true) {
  const parts = {
    services: { hostapd: { state: 'active', retries: 0 } } as Record<string, Json>,
    config: { wifi: { ssid: 'Car' } } as Record<string, Json>,
    profiles: { aa: { registered: true } } as Record<string, Json>,
    rev: { monitor: 0, applier: 0, extra: 0 },
  };
  let now = 1_000_000;
  let builds = 0;
  const monitor = Object.assign(new EventEmitter(), {
    health: () => ({ hostapd: 'active', networkd: 'active', bluetooth: 'active' }),
    status: () => {
      builds++;
      return structuredClone(parts.services);
    },
  });
  const applier = {
    apply: async () => ({ changed: false, restarted: [] }),
    summary: () => structuredClone(parts.config),
  };
  if (withRevisions) {
    // Read live, as the real parts' getters are.
    Object.defineProperty(monitor, 'statusRevision', { get: () => parts.rev.monitor });
    Object.defineProperty(applier, 'revision', { get: () => parts.rev.applier });
  }
  const daemon = new Daemon({
    version: 't',
    monitor,
    applier,
    extraStatus: () => ({ profiles: structuredClone(parts.profiles) }),
    ...(withRevisions ? { extraStatusRevision: () => parts.rev.extra } : {}),
    now: () => now,
  } as unknown as DaemonDeps);
  return { daemon, parts, builds: () => builds, tick: (ms: number) => (now += ms) };
}

const askStatus = (d: Daemon, id: number) =>
  handleLine(Buffer.from(`{"id":${id},"method":"get_status"}`), d, { subscribed: false }) as string;

describe('get_status made once per change', () => {
  it('is built once while nothing changes, and is the same text getStatus() gives', () => {
    const { daemon, builds } = statusSetup();
    const fresh = JSON.stringify(daemon.getStatus());
    const before = builds();
    for (let i = 0; i < 100; i++) assert.equal(askStatus(daemon, i), `{"id":${i},"result":${fresh}}`);
    assert.equal(builds() - before, 1);
  });

  it('is the new dump right after any part moves its revision, and after each second of uptime', () => {
    const { daemon, parts, builds, tick } = statusSetup();
    const result = (id: number) => JSON.parse(askStatus(daemon, id)).result;
    assert.equal(result(1).services.hostapd.state, 'active');
    parts.services = { hostapd: { state: 'failed', retries: 1 } };
    parts.rev.monitor++;
    assert.deepEqual(result(2).services.hostapd, { state: 'failed', retries: 1 });
    parts.config = { wifi: { ssid: 'Van' } };
    parts.rev.applier++;
    assert.equal(result(3).config.wifi.ssid, 'Van');
    parts.profiles = { aa: { registered: false } };
    parts.rev.extra++;
    assert.equal(result(4).profiles.aa.registered, false);
    const n = builds();
    tick(999);
    assert.equal(result(5).uptime, 0);
    assert.equal(builds(), n, 'the same second: not rebuilt');
    tick(1);
    assert.equal(result(6).uptime, 1);
    assert.equal(builds(), n + 1);
    assert.equal(daemon.statusJson(), JSON.stringify(daemon.getStatus()));
  });

  it('parts that cannot say when they change (no revision) make it build per call, never stale', () => {
    const { daemon, parts, builds } = statusSetup(false);
    const before = builds();
    askStatus(daemon, 1);
    parts.services = { hostapd: { state: 'degraded', retries: 2 } };
    assert.equal(JSON.parse(askStatus(daemon, 2)).result.services.hostapd.state, 'degraded');
    assert.equal(builds() - before, 2);
  });

  it('the uptime counts from the start whatever the wall clock does (a Pi setting its clock at boot)', () => {
    const realNow = Date.now;
    let jump = 0;
    Date.now = () => realNow() + jump;
    try {
      const daemon = new Daemon({
        version: 't',
        monitor: Object.assign(new EventEmitter(), { health: () => ({}), status: () => ({}) }),
      } as unknown as DaemonDeps);
      jump = 365 * 24 * 3600 * 1000;
      assert.equal(daemon.getStatus().uptime, 0);
      jump = -jump;
      assert.equal(daemon.getStatus().uptime, 0);
    } finally {
      Date.now = realNow;
    }
  });
});
