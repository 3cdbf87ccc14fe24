// A call marshalled once and its reply compared as bytes before dbus-next parses it (src/bus/prepared-call.ts),
// on a private dbus-daemon with a peer whose answer the test changes: the same answer is reported as the
// same, a changed one parsed, and the connection's reader stays in step with every other message on it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import dbus from 'dbus-next';
import { UnixFdGuard } from '../../src/bluez/unix-fds.js';
import { Bus, CallTimeoutError, errorReply } from '../../src/bus/connection.js';
import { PreparedCall, type PreparedReply } from '../../src/bus/prepared-call.js';
import { type PrivateBus, privateBusUnavailable, startPrivateBus } from './helpers/bluez-private-bus.js';

const PEER = 'org.example.Units';
const spec = (member: string, timeoutMs?: number) => ({
  destination: PEER,
  path: '/org/example',
  interface: PEER,
  member,
  signature: 'as',
  body: [['a.service', 'b.service']],
  ...(timeoutMs ? { timeoutMs } : {}),
});

/** What the peer's List answers: one (name, state) row per unit asked for. */
let states: Record<string, string> = {};
let listCalls = 0;

const body = (r: PreparedReply) => (r.same ? 'same' : r.reply.body[0]);

describe('prepared calls', { skip: privateBusUnavailable() }, () => {
  let priv: PrivateBus;
  let peer: dbus.MessageBus;
  const buses: Bus[] = [];

  before(async () => {
    priv = await startPrivateBus();
    process.env.DBUS_SYSTEM_BUS_ADDRESS = priv.address;
    peer = dbus.systemBus();
    await peer.requestName(PEER, 0);
    peer.addMethodHandler((msg: InstanceType<typeof dbus.Message>) => {
      if (msg.member === 'List') {
        listCalls++;
        const rows = (msg.body[0] as string[]).map((u) => [u, states[u] ?? 'unknown']);
        peer.send(dbus.Message.newMethodReturn(msg, 'a(ss)', [rows]));
      } else if (msg.member === 'Echo') {
        peer.send(dbus.Message.newMethodReturn(msg, 's', [String(msg.body[0])]));
      } else if (msg.member === 'Fail') {
        peer.send(errorReply(msg, 'org.example.Error.Nope', 'refused'));
      }
      // Anything else stays unanswered.
      return true;
    });
  });
  after(async () => {
    for (const b of buses) b.close();
    peer.disconnect();
    await priv.stop();
  });

  async function connect(guard: boolean): Promise<Bus> {
    const bus = await Bus.connect();
    buses.push(bus);
    // The daemon installs the unix-fd guard's reader first (main.ts): the two wrappers must agree.
    if (guard) UnixFdGuard.install(bus);
    return bus;
  }

  for (const guard of [true, false]) {
    it(`the same answer is "same", a changed one is parsed${guard ? ' (with the unix-fd guard)' : ''}`, async () => {
      const bus = await connect(guard);
      const list = new PreparedCall(bus, spec('List'));
      states = { 'a.service': 'active', 'b.service': 'active' };
      const calls0 = listCalls;
      assert.deepEqual(body(await list.call()), [
        ['a.service', 'active'],
        ['b.service', 'active'],
      ]);
      assert.equal(body(await list.call()), 'same');
      assert.equal(body(await list.call()), 'same');
      states['b.service'] = 'failed';
      assert.deepEqual(body(await list.call()), [
        ['a.service', 'active'],
        ['b.service', 'failed'],
      ]);
      assert.equal(body(await list.call()), 'same');
      list.forget();
      assert.deepEqual(body(await list.call()), [
        ['a.service', 'active'],
        ['b.service', 'failed'],
      ]);
      assert.equal(listCalls - calls0, 6, 'every call went to the peer');
    });
  }

  it('interleaved with other calls on the connection, every reply reaches its caller intact', async () => {
    const bus = await connect(true);
    const list = new PreparedCall(bus, spec('List'));
    states = { 'a.service': 'active', 'b.service': 'activating' };
    await list.call();
    const echoes: Promise<string>[] = [];
    const lists: Promise<PreparedReply>[] = [];
    for (let i = 0; i < 50; i++) {
      // Replies of 1 to ~2000 bytes, some exactly 16 bytes of fields and body, around the prepared ones.
      const text = 'x'.repeat(i * 40 + (i % 3));
      echoes.push(
        bus
          .call({
            destination: PEER,
            path: '/o',
            interface: PEER,
            member: 'Echo',
            signature: 's',
            body: [text],
          })
          .then((r) => String(r.body[0])),
      );
      lists.push(list.call());
    }
    const got = await Promise.all(echoes);
    for (let i = 0; i < 50; i++) assert.equal(got[i], 'x'.repeat(i * 40 + (i % 3)));
    for (const r of await Promise.all(lists)) assert.equal(body(r), 'same');
    states['a.service'] = 'failed';
    assert.deepEqual(body(await list.call()), [
      ['a.service', 'failed'],
      ['b.service', 'activating'],
    ]);
  });

  it('an error reply rejects with its D-Bus error; an unanswered call times out and leaves nothing behind', async () => {
    const bus = await connect(true);
    await assert.rejects(new PreparedCall(bus, spec('Fail')).call(), (err: unknown) => {
      assert.ok(err instanceof dbus.DBusError);
      assert.equal(err.type, 'org.example.Error.Nope');
      assert.equal(err.text, 'refused');
      return true;
    });
    const handlers = (bus.raw as unknown as { _methodReturnHandlers: Record<number, unknown> })
      ._methodReturnHandlers;
    const t0 = Date.now();
    await assert.rejects(new PreparedCall(bus, spec('Never', 200)).call(), CallTimeoutError);
    assert.ok(Date.now() - t0 < 2000);
    assert.equal(Object.keys(handlers).length, 0, 'no reply handler left');
  });
});
