// dbus-next's private fields the daemon relies on (src/bus/dbus-next-private.ts), checked against the
// installed library on a private dbus-daemon. If an upgrade moves any of them, this fails here, by name,
// instead of the daemon silently losing call timeouts, disconnect detection or fd accounting.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import dbus from 'dbus-next';
import { Bus, CallTimeoutError } from '../../src/bus/connection.js';
import { connectionStream, marshallMessage, receivedFdQueue } from '../../src/bus/dbus-next-private.js';
import { type PrivateBus, privateBusUnavailable, startPrivateBus } from './helpers/bluez-private-bus.js';

const require = createRequire(import.meta.url);
const repoRoot = join(import.meta.dirname, '..', '..', '..');

describe('dbus-next private fields', { skip: privateBusUnavailable() }, () => {
  let priv: PrivateBus;
  let bus: Bus;
  let silent: dbus.MessageBus;

  before(async () => {
    priv = await startPrivateBus();
    process.env.DBUS_SYSTEM_BUS_ADDRESS = priv.address;
    bus = await Bus.connect();
    // A peer that takes every method call and never answers: a call to it stays pending.
    silent = dbus.systemBus();
    await silent.requestName('org.example.Silent', 0);
    silent.addMethodHandler(() => true);
  });
  after(async () => {
    bus.close();
    silent.disconnect();
    await priv.stop();
  });

  it('package.json pins the exact dbus-next version that is installed', () => {
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8'));
    const installed = require('dbus-next/package.json').version as string;
    assert.match(pkg.dependencies['dbus-next'], /^\d+\.\d+\.\d+$/, 'an exact version, no range');
    assert.equal(pkg.dependencies['dbus-next'], installed);
    // The README names these as the runtime dependencies.
    assert.deepEqual(Object.keys(pkg.dependencies).sort(), [
      'dbus-next',
      'openauto-memory',
      'openauto-notify',
      'openauto-transport',
      'sd-notify',
      'sockopt',
      'systemd-journald',
      'usocket',
      'yaml',
      'zod',
    ]);
  });

  it('the connection stream is reachable and ends the Bus when it closes', async () => {
    const stream = connectionStream(bus.raw);
    assert.equal(typeof stream.on, 'function');
    assert.equal(typeof stream.read, 'function');
    assert.equal(typeof stream.write, 'function');
    assert.ok(stream.listeners('readable').length >= 1, "dbus-next reads on 'readable'");
    // A second bus that dies under its client: the Bus must notice through the stream's end.
    const dying = await startPrivateBus();
    process.env.DBUS_SYSTEM_BUS_ADDRESS = dying.address;
    const other = await Bus.connect();
    process.env.DBUS_SYSTEM_BUS_ADDRESS = priv.address;
    await dying.stop();
    for (let i = 0; i < 100 && !other.isClosed; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(other.isClosed, true, "the stream's close reached the Bus");
  });

  it('a timed-out call leaves no reply handler behind', async () => {
    const handlers = (bus.raw as unknown as { _methodReturnHandlers: Record<number, unknown> })
      ._methodReturnHandlers;
    assert.equal(typeof handlers, 'object');
    const call = bus.call({
      destination: 'org.example.Silent',
      path: '/x',
      interface: 'org.example.Silent',
      member: 'Never',
      timeoutMs: 200,
    });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(Object.keys(handlers).length, 1, 'the pending call is registered where we delete it');
    await assert.rejects(call, CallTimeoutError);
    assert.equal(Object.keys(handlers).length, 0);
  });

  it("the stream's write flags and dbus-next's message writer, for the replies written directly", () => {
    const stream = connectionStream(bus.raw);
    assert.equal(stream.writable, true);
    assert.equal(stream.supportsUnixFd, true, 'usocket with fd passing negotiated');
    const msg = new dbus.Message({
      type: dbus.MessageType.METHOD_RETURN,
      replySerial: 1 as unknown as string,
      signature: 's',
      body: ['x'],
    });
    msg.serial = 1;
    const [bytes, fds] = marshallMessage(msg);
    assert.ok(Buffer.isBuffer(bytes) && bytes[0] === 0x6c, 'a little-endian D-Bus message');
    assert.deepEqual(fds, []);
  });

  it('fd passing: the usocket descriptor queue is there', () => {
    const queue = receivedFdQueue(connectionStream(bus.raw));
    assert.ok(Array.isArray(queue), 'usocket _wrap.fds (negotiateUnixFd needs usocket)');
  });
});
