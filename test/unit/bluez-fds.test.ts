// Unix fd accounting on the daemon's bus connection (src/bluez/unix-fds.ts): the UNIX_FDS header parser, and
// against a private dbus-daemon: many messages with descriptors in flight at once (dbus-next alone hands
// all of them to the first message and then crashes), descriptors nobody takes are closed, and a message
// whose fd index points nowhere is dropped instead of ending the process.
import assert from 'node:assert/strict';
import { closeSync, openSync, readdirSync, readSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import dbus from 'dbus-next';
import fc from 'fast-check';
import { declaredUnixFds, UnixFdGuard } from '../../src/bluez/unix-fds.js';
import { Bus, type DBusMessage } from '../../src/bus/connection.js';
import { type PrivateBus, privateBusUnavailable, startPrivateBus } from './helpers/bluez-private-bus.js';

const require = createRequire(import.meta.url);
const { marshall } = require('dbus-next/lib/message.js') as {
  marshall: (m: unknown) => [Buffer, number[]];
};

function marshalled(signature: string, body: unknown[]): Buffer {
  const msg = new dbus.Message({
    destination: 'org.example.X',
    path: '/org/example/x',
    interface: 'org.example.X',
    member: 'M',
    signature,
    body,
  });
  msg.serial = 7;
  return marshall(msg)[0];
}

const split = (buf: Buffer): [Buffer, Buffer] => [buf.subarray(0, 16), buf.subarray(16)];

describe('declaredUnixFds', () => {
  it('reads UNIX_FDS from little-endian messages dbus-next writes', () => {
    assert.equal(declaredUnixFds(...split(marshalled('s', ['x']))), 0);
    assert.equal(declaredUnixFds(...split(marshalled('hsh', [0, 'x', 1]))), 2);
    assert.equal(declaredUnixFds(...split(marshalled('ah', [[0, 1, 2]]))), 3);
  });

  it('reads a big-endian header', () => {
    // Fields: PATH (1, 'o', "/a"), UNIX_FDS (9, 'u', 3).
    const fields = Buffer.alloc(24);
    fields.set([1, 1, 0x6f, 0], 0); // code, sig "o"
    fields.writeUInt32BE(2, 4);
    fields.set([0x2f, 0x61, 0], 8); // "/a\0"
    fields.set([9, 1, 0x75, 0], 16); // 8-aligned; code 9, sig "u"
    fields.writeUInt32BE(3, 20);
    const header = Buffer.alloc(16);
    header.set([0x42, 1, 0, 1], 0);
    header.writeUInt32BE(fields.length, 12);
    assert.equal(declaredUnixFds(header, fields), 3);
  });

  it('never throws on garbage', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 16 }), fc.uint8Array({ maxLength: 200 }), (h, b) => {
        const n = declaredUnixFds(Buffer.from(h), Buffer.from(b));
        assert.ok(Number.isInteger(n) && n >= 0);
      }),
    );
  });
});

const skip = privateBusUnavailable();

describe('UnixFdGuard on a real bus', { skip }, () => {
  let pb: PrivateBus;
  let server: Bus;
  let client: Bus;
  let guard: UnixFdGuard;
  const NAME = 'org.example.FdServer';
  let taken = 0;
  let wrong = 0;

  before(async () => {
    pb = await startPrivateBus();
    process.env.DBUS_SYSTEM_BUS_ADDRESS = pb.address;
    process.env.OPENAUTO_LOG_STDERR = '1';
    server = await Bus.connect();
    guard = UnixFdGuard.install(server);
    assert.equal(guard.supported, true, 'unix fd passing must be negotiated (usocket installed)');
    await server.raw.requestName(NAME, 0);
    server.raw.addMethodHandler((msg: DBusMessage) => {
      if (msg.path !== '/x') return false;
      if (msg.member === 'Take') {
        const fds = guard.take(msg);
        const [fd, want] = msg.body as [number, string];
        const buf = Buffer.alloc(64);
        let got = '';
        try {
          got = buf.toString('utf8', 0, readSync(fd, buf, 0, 64, 0));
        } catch {
          // wrong descriptor
        }
        if (fds.length !== 1 || fds[0] !== fd || got !== want) wrong++;
        for (const x of fds) closeSync(x);
        taken++;
      }
      // 'Ignore' carries a descriptor nobody takes; 'Ping' carries none.
      server.send(dbus.Message.newMethodReturn(msg, '', []));
      return true;
    });
    client = await Bus.connect();
  });

  after(async () => {
    client?.close();
    server?.close();
    await pb?.stop();
  });

  const call = (member: string, signature = '', body: unknown[] = []) =>
    client.call({ destination: NAME, path: '/x', interface: 'org.example.T', member, signature, body });

  const openFds = () => readdirSync('/proc/self/fd').length;

  it('gives each of many queued messages exactly its own descriptor, and closes untaken ones', async () => {
    const files: number[] = [];
    for (let i = 0; i < 200; i++) {
      const p = join(pb.dir, `f${i}`);
      writeFileSync(p, `file ${i}`);
      files.push(openSync(p, 'r'));
    }
    const baseline = openFds() - files.length;
    // All written back to back: several messages with descriptors sit in our socket at once.
    await Promise.all(
      files.flatMap((fd, i) => [
        call('Take', 'hs', [fd, `file ${i}`]),
        call('Ping'),
        call('Ignore', 'h', [fd]),
      ]),
    );
    for (const fd of files) closeSync(fd);
    assert.equal(taken, 200);
    assert.equal(wrong, 0);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(openFds(), baseline, 'a descriptor leaked');
  });

  it('drops a message whose fd index points at nothing and keeps serving', async () => {
    // A call with signature 'h' and no descriptors: marshal a 'u' and patch the signature to 'h'.
    const msg = new dbus.Message({
      destination: NAME,
      path: '/x',
      interface: 'org.example.T',
      member: 'Take',
      signature: 'u',
      body: [5],
    });
    msg.serial = client.raw.newSerial();
    const [buf] = marshall(msg);
    const at = buf.indexOf(Buffer.from([8, 1, 0x67, 0, 1, 0x75, 0]));
    assert.ok(at > 0);
    buf[at + 5] = 0x68;
    const stream = (client.raw as unknown as { _connection: { stream: { write(c: unknown): void } } })
      ._connection.stream;
    stream.write({ data: buf, fds: [] });
    const before = guard.droppedMessages;
    await call('Ping');
    assert.equal(guard.droppedMessages, before + 1);
    await call('Ping');
  });
});
