// A client that behaves like the shipping Qt app on the legacy socket keeps working across a daemon restart:
// string ids that only increase ("1", "2", …), params omitted when empty, get_health first on every
// connection, lines written in pieces, reconnects every 200 ms (the app waits 5 s; shorter here to keep the
// test fast), ignores lines that are not JSON.
import assert from 'node:assert/strict';
import { lstatSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SocketServer } from '../../src/ipc/socket-server.js';
import { waitFor } from '../helpers/common.js';
import { ChildServer, FakeService, sleep } from './helpers/fake-service.js';

interface Sent {
  id: string;
  method: string;
  conn: number;
  at: number;
}

type Answer = {
  id: string;
  result?: Record<string, unknown> | string;
  error?: { code: string; message: string };
};

class QtLikeClient {
  private nextId = 1;
  private socket: net.Socket | undefined;
  private connected = false;
  private stopped = false;
  private buf = '';
  private timer: NodeJS.Timeout | undefined;
  private step = 0;
  connections = 0;
  readonly sent: Sent[] = [];
  readonly answers = new Map<string, Answer>();
  readonly lost: Sent[] = [];
  readonly connectedAt: number[] = [];
  /** result objects of get_health, the way the app keeps them */
  readonly healthSeen: unknown[] = [];

  constructor(private readonly path: string) {}

  start(): void {
    this.connect();
    this.timer = setInterval(() => this.tick(), 25);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.socket?.destroy();
    await sleep(10);
  }

  private connect(): void {
    if (this.stopped) return;
    const s = net.connect(this.path);
    this.socket = s;
    s.setEncoding('utf8');
    s.on('connect', () => {
      this.connected = true;
      this.connections++;
      this.connectedAt.push(Date.now());
      this.buf = '';
      this.request('get_health');
    });
    s.on('data', (d: string) => this.onData(d));
    s.on('error', () => {});
    s.on('close', () => {
      const wasConnected = this.connected;
      this.connected = false;
      this.pieces = [];
      if (wasConnected) {
        for (const r of this.sent)
          if (r.conn === this.connections && !this.answers.has(r.id)) this.lost.push(r);
      }
      if (!this.stopped) setTimeout(() => this.connect(), 200);
    });
  }

  private onData(d: string): void {
    this.buf += d;
    let nl = this.buf.indexOf('\n');
    while (nl !== -1) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      nl = this.buf.indexOf('\n');
      let msg: Answer;
      try {
        msg = JSON.parse(line) as Answer;
      } catch {
        continue; // the app ignores a line that is not JSON
      }
      if (typeof msg.id !== 'string') continue;
      this.answers.set(msg.id, msg);
      const req = this.sent.find((r) => r.id === msg.id);
      if (req?.method === 'get_health' && typeof msg.result === 'object') this.healthSeen.push(msg.result);
    }
  }

  private tick(): void {
    if (!this.connected) return;
    const script: [string, Record<string, string>?][] = [
      ['ping'],
      ['apply_config', { section: 'wifi' }],
      ['get_status'],
      ['restart_service', { name: 'hostapd' }],
      ['get_health'],
    ];
    const [method, params] = script[this.step++ % script.length] as [string, Record<string, string>?];
    this.request(method, params);
  }

  private request(method: string, params?: Record<string, string>): void {
    const id = String(this.nextId++);
    const line = params ? JSON.stringify({ id, method, params }) : JSON.stringify({ id, method });
    this.sent.push({ id, method, conn: this.connections, at: Date.now() });
    // written in three pieces, the way a QIODevice may flush it; pieces of different lines never interleave
    const a = Math.floor(line.length / 3);
    this.pieces.push(line.slice(0, a), line.slice(a, 2 * a), `${line.slice(2 * a)}\n`);
    if (!this.writing) void this.flushPieces();
  }

  private pieces: string[] = [];
  private writing = false;

  private async flushPieces(): Promise<void> {
    this.writing = true;
    const s = this.socket as net.Socket;
    while (this.pieces.length > 0) {
      const piece = this.pieces.shift() as string;
      if (s !== this.socket || s.destroyed) break;
      s.write(piece);
      await sleep(1);
    }
    this.writing = false;
    if (this.pieces.length > 0 && this.connected) void this.flushPieces();
  }
}

function checkConversation(c: QtLikeClient, maxLost: number): void {
  const ids = c.sent.map((r) => Number(r.id));
  assert.deepEqual(
    ids,
    ids.map((_, i) => i + 1),
    'ids are "1", "2", … and only increase',
  );
  // Every connection starts with get_health, and every one that was answered got the whole map.
  for (let conn = 1; conn <= c.connections; conn++) {
    const first = c.sent.find((r) => r.conn === conn);
    assert.equal(first?.method, 'get_health', `connection ${conn} starts with get_health`);
  }
  for (const h of c.healthSeen)
    assert.deepEqual(Object.keys(h as object), ['hostapd', 'networkd', 'bluetooth']);
  // Every request was answered, except the few in flight when the daemon went away.
  const unanswered = c.sent.filter((r) => !c.answers.has(r.id));
  assert.ok(unanswered.length <= maxLost, `unanswered: ${JSON.stringify(unanswered)}`);
  for (const r of unanswered)
    assert.ok(c.lost.includes(r) || r.conn === c.connections, 'only lost to a restart');
  // The fields the app reads.
  for (const r of c.sent) {
    const a = c.answers.get(r.id);
    if (!a) continue;
    assert.equal(a.error, undefined, JSON.stringify(a));
    const res = a.result as Record<string, unknown>;
    if (r.method === 'apply_config') assert.equal(res.ok, true);
    if (r.method === 'restart_service') assert.deepEqual([res.ok, res.name], [true, 'hostapd']);
    if (r.method === 'ping') assert.equal(a.result, 'pong');
  }
}

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'oas-ipc-qt-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

describe('the shipping Qt client across a daemon restart', () => {
  it('graceful restart on the same path (close, start again)', async () => {
    const path = join(dir, 'graceful.sock');
    const service = new FakeService();
    service.delayMs = 20;
    const server = new SocketServer(service, { path, group: 'none-here', closeGraceMs: 500 });
    await server.start();
    const client = new QtLikeClient(path);
    client.start();
    await waitFor(() => client.answers.size >= 5, 'five answers before the restart', 400);
    const before = client.answers.size;
    await server.close();
    const closedAt = Date.now();
    assert.throws(() => lstatSync(path), /ENOENT/, 'a graceful close removes the socket file');
    await sleep(500);
    await server.start();
    const restartedAt = Date.now();
    await sleep(500);
    await client.stop();
    await server.close();

    assert.ok(client.connections >= 2);
    const reconnect = (client.connectedAt.find((t) => t > closedAt) ?? Infinity) - restartedAt;
    assert.ok(reconnect <= 400, `reconnected ${reconnect} ms after the restart`);
    assert.ok(client.answers.size > before + 5, 'conversation continued after the restart');
    checkConversation(client, 3);
  });

  it('crash (SIGKILL) leaves a stale socket; the next daemon replaces it and the client carries on', async () => {
    const path = join(dir, 'crash.sock');
    let daemon = await ChildServer.start(path);
    const client = new QtLikeClient(path);
    client.start();
    try {
      await waitFor(() => client.answers.size >= 5, 'five answers before the kill', 400);
      const before = client.answers.size;
      await daemon.kill('SIGKILL');
      const killedAt = Date.now();
      assert.ok(lstatSync(path).isSocket(), 'the dead daemon left its socket file behind');
      await sleep(500); // the client meanwhile gets ECONNREFUSED every 200 ms
      daemon = await ChildServer.start(path);
      const readyAt = Date.now(); // the new daemon is listening (it may have been a little earlier)
      await sleep(600);
      await client.stop();
      const reconnect = (client.connectedAt.find((t) => t > killedAt) ?? Infinity) - readyAt;
      assert.ok(reconnect <= 400, `reconnected ${reconnect} ms after the new daemon was ready`);
      assert.ok(client.answers.size > before + 5);
      checkConversation(client, 3);
    } finally {
      await client.stop();
      await daemon.stop();
    }
  });
});
