// The pieces that bound what a flooding caller can make the daemon do, as pure logic: the authorizer's
// admission limits (in flight globally, per user and per connection; a per-user rate) answered Busy without
// asking polkit, and the replies written without dbus-next's marshaller, byte for byte what dbus-next
// writes. The attack itself runs against the real daemon in test/sandbox/attack-flood.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import dbus from 'dbus-next';
import { marshallMessage } from 'dbus-next/lib/marshall-compat.js';
import type { Bus, CallSpec, DBusMessage } from '../../src/bus/connection.js';
import { ACTIONS, Authorizer } from '../../src/bus/polkit.js';
import { encodeHeader, stringBody } from '../../src/bus/raw-reply.js';
import { StatusReplyCache } from '../../src/bus/reply-cache.js';
import { ServiceError } from '../../src/errors.js';
import { recordedReplies } from './helpers/recorded-replies.js';

/** A bus whose polkit answers only when told to; uid per sender from a table. */
class FakeBus {
  readonly polkitCalls: { sender: string; resolve: () => void }[] = [];
  uidCalls = 0;
  /** polkit's decision (default: not authorized). */
  answer: () => boolean = () => false;
  constructor(private readonly uids: Record<string, number>) {}
  async unixUser(name: string): Promise<number> {
    this.uidCalls++;
    const uid = this.uids[name];
    if (uid === undefined) throw new Error('no such name');
    return uid;
  }
  call(spec: CallSpec): Promise<DBusMessage> {
    const sender = String(((spec.body ?? [])[0] as [string, { name: { value: string } }])[1].name.value);
    return new Promise((resolve) => {
      this.polkitCalls.push({
        sender,
        resolve: () => resolve({ body: [[this.answer(), false, {}]] } as unknown as DBusMessage),
      });
    });
  }
}

const tick = () => new Promise((r) => setImmediate(r));

async function outcome(p: Promise<void>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return err instanceof ServiceError ? err.code : 'other';
  }
}

describe('authorizer admission limits', () => {
  it('a connection over its in-flight limit gets Busy at once, and polkit is not asked', async () => {
    const bus = new FakeBus({ ':1.1': 1000 });
    const a = new Authorizer(bus as unknown as Bus, {
      perSender: 2,
      perUid: 4,
      global: 16,
      deniedPerSecond: 100,
      deniedBurst: 100,
    });
    const first = [1, 2].map(() => outcome(a.check(':1.1', ACTIONS.restartService, false)));
    await tick();
    assert.equal(await outcome(a.check(':1.1', ACTIONS.restartService, false)), 'Busy');
    assert.equal(bus.polkitCalls.length, 2);
    assert.equal(a.refusesNow(':1.1'), true);
    for (const c of bus.polkitCalls) c.resolve();
    assert.deepEqual(await Promise.all(first), ['AccessDenied', 'AccessDenied']);
    assert.equal(a.checksInFlight, 0);
    assert.equal(a.refusesNow(':1.1'), false);
    assert.equal(bus.uidCalls, 1, 'the uid of a connection is asked once');
  });

  it('one user with many connections shares one per-user limit; another user is unaffected', async () => {
    const uids: Record<string, number> = { ':1.50': 1001 };
    for (let i = 0; i < 10; i++) uids[`:1.${i}`] = 1000;
    const bus = new FakeBus(uids);
    const a = new Authorizer(bus as unknown as Bus, {
      perSender: 2,
      perUid: 4,
      global: 16,
      deniedPerSecond: 100,
      deniedBurst: 100,
    });
    const flood = Array.from({ length: 10 }, (_, i) =>
      outcome(a.check(`:1.${i}`, ACTIONS.restartService, false)),
    );
    await tick();
    assert.equal(bus.polkitCalls.length, 4);
    const other = outcome(a.check(':1.50', ACTIONS.applyConfig, false));
    await tick();
    assert.equal(bus.polkitCalls.length, 5, "the other user's check went to polkit");
    for (const c of bus.polkitCalls) c.resolve();
    const results = await Promise.all(flood);
    assert.equal(results.filter((r) => r === 'Busy').length, 6);
    assert.equal(await other, 'AccessDenied');
  });

  it('the global limit holds across users', async () => {
    const uids: Record<string, number> = {};
    for (let i = 0; i < 8; i++) uids[`:1.${i}`] = 1000 + i;
    const bus = new FakeBus(uids);
    const a = new Authorizer(bus as unknown as Bus, {
      perSender: 2,
      perUid: 4,
      global: 5,
      deniedPerSecond: 100,
      deniedBurst: 100,
    });
    const all = Array.from({ length: 8 }, (_, i) =>
      outcome(a.check(`:1.${i}`, ACTIONS.restartService, false)),
    );
    await tick();
    assert.equal(bus.polkitCalls.length, 5);
    for (const c of bus.polkitCalls) c.resolve();
    assert.equal((await Promise.all(all)).filter((r) => r === 'Busy').length, 3);
  });

  it('a user collects at most deniedBurst denials, then deniedPerSecond; granted checks take nothing', async () => {
    let now = 0;
    let grant = false;
    const bus = new FakeBus({ ':1.1': 1000 });
    const a = new Authorizer(
      bus as unknown as Bus,
      { perSender: 100, perUid: 100, global: 100, deniedPerSecond: 2, deniedBurst: 3 },
      () => now,
    );
    bus.answer = () => grant;
    const run = async () => {
      const p = outcome(a.check(':1.1', ACTIONS.restartService, false));
      await tick();
      for (const c of bus.polkitCalls.splice(0)) c.resolve();
      return p;
    };
    grant = true;
    for (let i = 0; i < 10; i++) assert.equal(await run(), 'ok');
    grant = false;
    const got: string[] = [];
    for (let i = 0; i < 5; i++) got.push(await run());
    assert.deepEqual(got, ['AccessDenied', 'AccessDenied', 'AccessDenied', 'Busy', 'Busy']);
    assert.equal(bus.polkitCalls.length, 0);
    now += 1000;
    assert.deepEqual([await run(), await run(), await run()], ['AccessDenied', 'AccessDenied', 'Busy']);
  });

  it('root is never limited and polkit is never asked for it', async () => {
    const bus = new FakeBus({ ':1.0': 0 });
    const a = new Authorizer(bus as unknown as Bus, {
      perSender: 1,
      perUid: 1,
      global: 1,
      deniedPerSecond: 1,
      deniedBurst: 1,
    });
    const r = await Promise.all(
      Array.from({ length: 20 }, () => outcome(a.check(':1.0', ACTIONS.applyConfig, false))),
    );
    assert.ok(r.every((x) => x === 'ok'));
    assert.equal(bus.polkitCalls.length, 0);
    assert.equal(a.refusesNow(':1.0'), false);
  });
});

describe('replies written without dbus-next', () => {
  const call = (sender: string, serial: number) => ({ sender, serial }) as unknown as DBusMessage;

  it('an error reply is byte for byte what dbus-next writes', () => {
    for (const sender of [':1.5', ':1.123', ':1.1234567', ':12.3']) {
      for (const text of ['', 'x', 'too many authorization checks in progress; try again later', 'é']) {
        const m = dbus.Message.newError(
          call(sender, 77) as unknown as string,
          'org.openauto.System1.Error.Busy',
          text,
        );
        m.serial = 9;
        const [want] = marshallMessage(m);
        const body = stringBody(text);
        const got = Buffer.concat([
          encodeHeader(3, 9, body.length, [
            [4, 's', 'org.openauto.System1.Error.Busy'],
            [5, 'u', 77],
            [6, 's', sender],
            [8, 'g', 's'],
          ]),
          body,
        ]);
        assert.deepEqual(got, want, `${sender} ${text}`);
      }
    }
  });

  it('GetStatus: the cached body with our header is what dbus-next writes, built once per key', () => {
    const { replies, written } = recordedReplies();
    const cache = new StatusReplyCache(replies);
    const status = {
      services: { hostapd: { state: 'active', retries: 0, detail: null } },
      uptime: 12,
      version: '1',
    };
    for (const sender of [':1.7', ':1.77', ':1.777']) {
      assert.equal(
        cache.reply(call(sender, 3), JSON.stringify(status), () => status),
        true,
      );
      const m = dbus.Message.newMethodReturn(call(sender, 3), 'a{sv}', [
        {
          services: new dbus.Variant('a{sv}', {
            hostapd: new dbus.Variant('a{sv}', {
              state: new dbus.Variant('s', 'active'),
              retries: new dbus.Variant('x', 0n),
            }),
          }),
          uptime: new dbus.Variant('x', 12n),
          version: new dbus.Variant('s', '1'),
        },
      ]);
      m.serial = 4;
      assert.deepEqual(written.at(-1), marshallMessage(m)[0], sender);
    }
    assert.equal(cache.builds, 1);
    const later = { ...status, uptime: 13 };
    cache.reply(call(':1.7', 3), JSON.stringify(later), () => later);
    assert.equal(cache.builds, 2);
  });
});
