// Fair share of the legacy socket's slots, against the real socket server: one process holding every slot
// (a slowloris) does not lock out another process, which takes one of its slots; connections that never
// complete a request line are closed after firstLineTimeoutMs, however many bytes they trickle.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { SocketServer, type SocketServerOptions } from '../../src/ipc/socket-server.js';
import { FakeService, sleep } from './helpers/fake-service.js';

let dir: string;
let path: string;
let server: SocketServer | undefined;
const sockets: net.Socket[] = [];

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'oas-ipc-fair-'));
  path = join(dir, 's.sock');
});
after(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await server?.close();
  server = undefined;
});

async function serve(opts: Partial<SocketServerOptions> = {}): Promise<void> {
  server = new SocketServer(new FakeService(), { path, group: 'no-such-group', ...opts });
  await server.start();
}

/** A connection of this process that sends `partial` (no newline); records what it receives. */
async function hold(
  partial = '{',
): Promise<{ socket: net.Socket; got: () => string; closed: Promise<void> }> {
  const socket = net.connect(path);
  sockets.push(socket);
  let buf = '';
  socket.on('data', (d) => {
    buf += d;
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((r) => socket.on('close', () => r()));
  await new Promise<void>((r) => socket.once('connect', () => r()));
  if (partial) socket.write(partial);
  return { socket, got: () => buf, closed };
}

/** Another process (the app): connects, asks get_health, prints the first line it gets. */
function appClient(): Promise<string> {
  const code = `
const s = require('node:net').connect(${JSON.stringify(path)});
let buf = '';
s.on('error', (e) => { console.log('ERROR ' + e.code); process.exit(0); });
s.on('connect', () => s.write('{"id":"1","method":"get_health"}\\n'));
s.on('data', (d) => { buf += d; const i = buf.indexOf('\\n'); if (i >= 0) { console.log(buf.slice(0, i)); process.exit(0); } });
setTimeout(() => { console.log('TIMEOUT'); process.exit(0); }, 5000);`;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.on('close', () => resolve(out.trim()));
  });
}

describe('fair socket slots', () => {
  it('one process holding every slot: another process still gets in and is answered', async () => {
    await serve({ maxClients: 8 });
    const held = [];
    for (let i = 0; i < 8; i++) held.push(await hold());
    await sleep(50);
    const answer = await appClient();
    assert.match(answer, /^\{"id":"1","result":\{/, answer);
    // It took the slot of the hog's oldest connection, which was told why.
    const first = held[0] as (typeof held)[number];
    await first.closed;
    assert.match(first.got(), /this process holds too many connections/);
  });

  it('a connection that completes no request line within firstLineTimeoutMs is closed, trickling or not', async () => {
    await serve({ firstLineTimeoutMs: 300 });
    const slow = await hold('{"id":1,');
    const timer = setInterval(() => slow.socket.write(' '), 50);
    const t0 = Date.now();
    await slow.closed;
    clearInterval(timer);
    const ms = Date.now() - t0;
    assert.ok(ms >= 250 && ms < 3000, `closed after ${ms} ms`);
    assert.match(slow.got(), /no request within 0.3 s; closing/);
    // One that asked something in time stays.
    const quick = await hold('{"id":2,"method":"ping"}\n');
    await sleep(600);
    assert.equal(quick.socket.destroyed, false);
    assert.match(quick.got(), /"result":"pong"/);
  });
});
