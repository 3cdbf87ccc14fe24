// Limits of the legacy socket: max clients, idle timeout, slow readers, per-connection in-flight limit,
// graceful close.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { SocketServer, type SocketServerOptions } from '../../src/ipc/socket-server.js';
import { waitFor } from '../helpers/common.js';
import { FakeService, LineClient, sleep } from './helpers/fake-service.js';

let dir: string;
let path: string;
let service: FakeService;
let server: SocketServer | undefined;
const clients: LineClient[] = [];

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'oas-ipc-limits-'));
  path = join(dir, 's.sock');
});
after(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await server?.close();
  server = undefined;
});

async function serve(opts: Partial<SocketServerOptions> = {}): Promise<void> {
  service = new FakeService();
  server = new SocketServer(service, { path, group: 'no-such-group', ...opts });
  await server.start();
}

async function connect(): Promise<LineClient> {
  const c = await LineClient.connect(path);
  clients.push(c);
  return c;
}

describe('socket limits', () => {
  it('max clients: the extra connection gets an error line and is closed; a freed slot is reusable', async () => {
    await serve({ maxClients: 3 });
    const [a, b, c] = [await connect(), await connect(), await connect()];
    for (const x of [a, b, c])
      assert.equal(await x.call('{"id":1,"method":"ping"}'), '{"id":1,"result":"pong"}');
    const extra = await connect();
    await extra.waitClosed();
    assert.deepEqual(extra.lines, [
      '{"id":null,"error":{"code":"INTERNAL_ERROR","message":"too many clients (limit 3)"}}',
    ]);
    assert.equal(server?.clientCount, 3);
    a.close();
    await waitFor(() => server?.clientCount === 2, 'the server to see the client go');
    const d = await connect();
    assert.equal(await d.call('{"id":2,"method":"ping"}'), '{"id":2,"result":"pong"}');
  });

  it('idle timeout closes a quiet connection with an error line, not an active or subscribed one', async () => {
    await serve({ idleTimeoutMs: 200 });
    service.delayMs = 450;
    const idle = await connect();
    const chatty = await connect();
    const subscriber = await connect();
    const busy = await connect();
    await subscriber.call('{"id":"s","method":"subscribe"}');
    busy.send('{"id":"slow","method":"apply_config","params":{"section":"wifi"}}');
    const t0 = Date.now();
    for (let i = 0; i < 6; i++) {
      assert.equal(await chatty.call(`{"id":${i},"method":"ping"}`), `{"id":${i},"result":"pong"}`);
      await sleep(100);
    }
    await idle.waitClosed(100);
    assert.deepEqual(idle.lines, [
      '{"id":null,"error":{"code":"INTERNAL_ERROR","message":"idle for 0.2 s; closing"}}',
    ]);
    assert.equal(chatty.ended, false);
    assert.equal(subscriber.ended, false);
    // The slow request (450 ms) outlived the idle timeout and was still answered; then the connection
    // became idle and was closed.
    await busy.waitClosed(1000);
    assert.equal(busy.lines[0], '{"id":"slow","result":{"ok":true,"changed":true,"restarted":["hostapd"]}}');
    assert.match(busy.lines[1] as string, /idle for 0.2 s/);
    assert.ok(Date.now() - t0 >= 600);
    assert.equal(subscriber.ended, false, 'a subscriber is never closed for being idle');
  });

  it('the idle sweep runs only while there are connections; a later client is still closed when idle', async () => {
    await serve({ idleTimeoutMs: 200 });
    // An idle daemon without clients never wakes for it.
    assert.equal(server?.sweeping, false, 'no sweep before any client');
    const first = await connect();
    assert.equal(server?.sweeping, true, 'a client arms it');
    first.close();
    await waitFor(() => server?.sweeping === false, 'the sweep to stop once the last client is gone');
    const later = await connect();
    assert.equal(server?.sweeping, true);
    await later.waitClosed(1000);
    assert.match(later.lines[0] as string, /idle for 0.2 s; closing/);
    await waitFor(() => server?.sweeping === false, 'the sweep to stop again');
  });

  it('a subscriber that never reads is dropped; other clients keep being served', async () => {
    await serve({ maxWriteBufferBytes: 64 * 1024 });
    const slow = await connect();
    const other = await connect();
    await slow.call('{"id":"s","method":"subscribe"}');
    await other.call('{"id":"s","method":"subscribe"}');
    slow.socket.pause();
    const start = Date.now();
    for (let i = 0; i < 20000; i++) {
      service.setHealth({ hostapd: i % 2 ? 'failed' : 'active', networkd: 'active', bluetooth: 'active' });
      // Bursts well under the limit, so the in-process reader (same event loop) gets to read in between.
      if (i % 200 === 0) await sleep(2);
    }
    assert.ok(Date.now() - start < 10000);
    await other.waitLines(20001);
    assert.equal(await other.call('{"id":"p","method":"ping"}'), '{"id":"p","result":"pong"}');
    assert.equal(server?.clientCount, 1, 'the non-reading subscriber was dropped');
    // the reader got every event, in order
    const events = other.lines.filter((l) => l.startsWith('{"event"'));
    assert.equal(events.length, 20000);
    assert.ok(events.every((e, i) => e.includes(i % 2 ? '"failed"' : '"hostapd":"active"')));
    slow.socket.resume();
    await slow.waitClosed();
  });

  it('a client that pipelines without reading is slowed down (backpressure), not dropped, and gets every answer', async () => {
    await serve({ maxWriteBufferBytes: 64 * 1024 });
    service.status = { blob: 'x'.repeat(2000) };
    const c = await connect();
    c.socket.pause();
    const n = 5000;
    let batch = '';
    for (let i = 1; i <= n; i++) batch += `{"id":"${i}","method":"get_status"}\n`;
    c.socket.write(batch);
    await sleep(300);
    assert.equal(c.ended, false);
    assert.equal(server?.clientCount, 1);
    const other = await connect();
    assert.equal(await other.call('{"id":"p","method":"ping"}'), '{"id":"p","result":"pong"}');
    c.socket.resume();
    await c.waitLines(n, 20000);
    for (let i = 0; i < n; i++) assert.ok(c.lines[i]?.startsWith(`{"id":"${i + 1}","result":{"blob"`));
  });

  it('a client whose answers have not moved for the idle timeout is dropped, subscribed or not', async () => {
    await serve({ idleTimeoutMs: 300, maxWriteBufferBytes: 64 * 1024 * 1024 });
    service.status = { blob: 'x'.repeat(4000) };
    const stuck = await connect();
    stuck.socket.pause();
    stuck.send('{"id":"s","method":"subscribe"}');
    let batch = '';
    for (let i = 1; i <= 2000; i++) batch += `{"id":"${i}","method":"get_status"}\n`;
    stuck.socket.write(batch);
    await sleep(100);
    assert.equal(server?.clientCount, 1, 'stalled, not dropped yet');
    await waitFor(() => server?.clientCount === 0, 'the stalled client to be dropped', 500);
  });

  it('per-connection in-flight limit: at most maxInFlight slow calls at once; the rest wait, none is lost', async () => {
    await serve({ maxInFlight: 2 });
    let running = 0;
    let peak = 0;
    service.applyImpl = async (section) => {
      running++;
      peak = Math.max(peak, running);
      await sleep(50);
      running--;
      return { changed: false, restarted: [section] };
    };
    const c = await connect();
    let batch = '';
    for (let i = 1; i <= 6; i++)
      batch += `{"id":${i},"method":"apply_config","params":{"section":"s${i}"}}\n`;
    batch += '{"id":"last","method":"ping"}\n';
    c.socket.write(batch);
    const lines = await c.waitLines(7);
    assert.equal(peak, 2);
    const ids = lines.map((l) => (JSON.parse(l) as { id: number | string }).id);
    // The ping behind six slow calls waited its turn: it was handled only once a slot was free after the
    // fifth call started, so at least four slow answers precede it.
    assert.ok(ids.indexOf('last') >= 4, `ping answered at position ${ids.indexOf('last')}`);
    assert.deepEqual(ids.filter((id) => id !== 'last').sort(), [1, 2, 3, 4, 5, 6]);
    // Another connection has its own budget.
    const d = await connect();
    assert.equal(await d.call('{"id":"x","method":"ping"}'), '{"id":"x","result":"pong"}');
  });

  it('close(): in-flight answers go out, then every connection is closed, even a half-open one', async () => {
    await serve({ closeGraceMs: 300 });
    service.delayMs = 100;
    const c = await connect();
    c.send('{"id":"1","method":"restart_service","params":{"name":"hostapd"}}');
    await sleep(10);
    const stubborn = net.connect({ path, allowHalfOpen: true }); // never closes its side by itself
    stubborn.on('error', () => {});
    await new Promise((r) => stubborn.once('connect', r));
    stubborn.resume();
    const t0 = Date.now();
    await server?.close();
    const took = Date.now() - t0;
    assert.ok(took >= 250 && took < 1000, `close took ${took} ms (grace 300 ms)`);
    await c.waitClosed();
    assert.deepEqual(c.lines, ['{"id":"1","result":{"ok":true,"name":"hostapd"}}']);
    stubborn.destroy();
  });
});
