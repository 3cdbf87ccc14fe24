// Answers that change only on events are made once per change: the daemon's health map as JSON text (what
// the socket's get_health sends) is rebuilt after the monitor's healthChanged, not per request, and is never
// stale after one.
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
