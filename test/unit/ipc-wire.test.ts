// The socket's native transport (native/transport through src/ipc/wire.ts) against real Unix socket
// connections: bytes both ways, output the kernel refuses queued and delivered whole and in order, half-close
// after the queue, a vanished peer, the peer's pid.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { SocketServer } from '../../src/ipc/socket-server.js';
import { type NativeWire, nativeWire, transport } from '../../src/ipc/wire.js';
import { FakeService } from './helpers/fake-service.js';

let dir: string;
let path: string;
let server: net.Server;
const open: { wire?: NativeWire; client: net.Socket }[] = [];

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'oas-ipc-wire-'));
  path = join(dir, 's.sock');
  server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(path, r));
});
after(async () => {
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});
afterEach(() => {
  for (const o of open.splice(0)) {
    o.wire?.destroy();
    o.client.destroy();
  }
});

/** A connected pair: a client socket of this process and the server side on the native transport. */
async function pair(): Promise<{ wire: NativeWire; client: net.Socket }> {
  const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
  const client = net.connect({ path, allowHalfOpen: true });
  client.on('error', () => {});
  const wire = nativeWire(await accepted);
  assert.ok(wire, 'the connection is on the transport');
  wire.on('error', () => {});
  open.push({ wire, client });
  return { wire, client };
}

const until = (what: () => boolean, ms = 5000) =>
  new Promise<void>((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      if (what()) resolve();
      else if (Date.now() - t0 > ms) reject(new Error('timed out'));
      else setTimeout(tick, 2);
    };
    tick();
  });

describe('native socket transport', () => {
  it('is built and loaded (npm ci builds it)', () => {
    assert.ok(transport, 'openauto-transport loads');
  });

  it('carries bytes both ways, a multi-byte character split across reads included', async () => {
    const { wire, client } = await pair();
    const got: Buffer[] = [];
    wire.on('data', (b) => got.push(b));
    client.write(Buffer.from('{"id":"é'));
    await until(() => Buffer.concat(got).length === 9);
    client.write('"}\n');
    await until(() => Buffer.concat(got).toString() === '{"id":"é"}\n');
    let back = '';
    client.setEncoding('utf8');
    client.on('data', (d: string) => {
      back += d;
    });
    assert.equal(wire.write('{"id":"é","result":"pong"}\n'), true);
    assert.equal(wire.writableLength, 0);
    await until(() => back === '{"id":"é","result":"pong"}\n');
  });

  it('output the kernel refuses is queued, then delivered whole and in order once the peer reads', async () => {
    const { wire, client } = await pair();
    client.pause();
    const piece = (i: number) => `${String(i).padStart(8, '0')}${'x'.repeat(1015)}\n`;
    let sent = '';
    let refused = false;
    let drained = 0;
    wire.on('drain', () => drained++);
    for (let i = 0; i < 4096; i++) {
      sent += piece(i);
      if (!wire.write(piece(i))) refused = true;
    }
    assert.ok(refused, 'write says when the kernel refused some of it');
    assert.ok(wire.writableLength > 0, `queued: ${wire.writableLength}`);
    const got: Buffer[] = [];
    client.on('data', (b: Buffer) => got.push(b));
    client.resume();
    await until(() => Buffer.concat(got).length === sent.length, 10_000);
    assert.equal(Buffer.concat(got).toString(), sent);
    await until(() => drained > 0);
    assert.equal(wire.writableLength, 0);
  });

  it('end() half-closes after the queued output; the peer ending too closes it', async () => {
    const { wire, client } = await pair();
    client.pause();
    const big = 'y'.repeat(4 * 1024 * 1024);
    wire.write(big);
    wire.end();
    let clientEnded = false;
    let length = 0;
    client.on('data', (b: Buffer) => {
      length += b.length;
    });
    client.on('end', () => {
      clientEnded = true;
    });
    let wireEnded = false;
    let closed = false;
    wire.on('end', () => {
      wireEnded = true;
    });
    wire.on('close', () => {
      closed = true;
    });
    client.resume();
    await until(() => clientEnded, 10_000);
    assert.equal(length, big.length, 'every byte arrived before the end');
    assert.equal(closed, false, 'still open: the peer has not ended');
    client.end();
    await until(() => closed);
    assert.equal(wireEnded, true);
  });

  it('a vanished peer closes it (no SIGPIPE, no throw)', async () => {
    const { wire, client } = await pair();
    let closed = false;
    wire.on('close', () => {
      closed = true;
    });
    client.destroy();
    await new Promise((r) => setTimeout(r, 20));
    for (let i = 0; i < 10 && !closed; i++) wire.write('{"id":1,"result":"pong"}\n');
    await until(() => closed);
    assert.equal(wire.destroyed, true);
    assert.equal(wire.write('more\n'), false);
  });

  it('a client that vanishes with its answers unread (ECONNRESET) does not take the server down', async () => {
    const spath = join(dir, 'server.sock');
    const service = new FakeService();
    // An answer larger than the client's stream takes in, so part of it stays unread in its kernel queue.
    service.status = { blob: 'x'.repeat(300_000) };
    const srv = new SocketServer(service, { path: spath, group: 'no-such-group' });
    await srv.start();
    try {
      for (let round = 0; round < 3; round++) {
        const rude = net.connect(spath);
        rude.on('error', () => {});
        await new Promise((r) => rude.once('connect', r));
        rude.pause();
        rude.write('{"id":1,"method":"ping"}\n{"id":2,"method":"get_status"}\n');
        await until(() => srv.clientCount === 1);
        await new Promise((r) => setTimeout(r, 30));
        rude.destroy();
        await until(() => srv.clientCount === 0);
      }
      const ok = net.connect(spath);
      open.push({ client: ok });
      let got = '';
      ok.setEncoding('utf8');
      ok.on('data', (d: string) => {
        got += d;
      });
      ok.write('{"id":"p","method":"ping"}\n');
      await until(() => got === '{"id":"p","result":"pong"}\n');
    } finally {
      await srv.close();
    }
  });

  it('an idle connection is closed between 1 and 1.25 idle timeouts after its last byte', async () => {
    const spath = join(dir, 'idle.sock');
    const srv = new SocketServer(new FakeService(), {
      path: spath,
      group: 'no-such-group',
      idleTimeoutMs: 400,
    });
    await srv.start();
    try {
      const c = net.connect(spath);
      open.push({ client: c });
      let got = '';
      let closedAt = 0;
      c.setEncoding('utf8');
      c.on('data', (d: string) => {
        got += d;
      });
      c.on('close', () => {
        closedAt = Date.now();
      });
      // Some traffic first, so the last byte is not the first.
      let last = 0;
      for (let i = 0; i < 3; i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, 90));
        c.write(`{"id":${i},"method":"ping"}\n`);
        await until(() => got.split('\n').length === i + 2);
        last = Date.now();
      }
      await until(() => closedAt > 0, 3000);
      const after = closedAt - last;
      assert.match(got, /idle for 0.4 s; closing/);
      // 1.25 timeouts, plus a margin for a busy machine.
      assert.ok(after >= 390 && after <= 500 + 150, `closed ${after} ms after the last byte`);
    } finally {
      await srv.close();
    }
  });

  it('knows the peer process (SO_PEERCRED)', async () => {
    const { wire } = await pair();
    assert.equal(transport?.peerPid(wire.handle.fd ?? -1), process.pid);
  });
});
