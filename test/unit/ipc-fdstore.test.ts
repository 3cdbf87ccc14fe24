// The socket's side of systemd's fd store, without systemd: which descriptors are stored, renamed and taken
// out, what a graceful hand-over answers first, and how the passed descriptors are told apart. The real
// store (connections surviving restarts and crashes) is test/sandbox/reliability-fdstore.test.ts.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { type FdStore, passedFdsFromEnv } from '../../src/ipc/fdstore.js';
import { SocketServer } from '../../src/ipc/socket-server.js';
import { FakeService, LineClient, sleep } from './helpers/fake-service.js';

/** Records what the daemon would tell systemd. */
class FakeStore implements FdStore {
  readonly log: string[] = [];
  readonly stored = new Map<string, number>();
  store(name: string, fd: number): boolean {
    this.log.push(`store ${name}`);
    this.stored.set(name, fd);
    return true;
  }
  remove(name: string): void {
    this.log.push(`remove ${name}`);
    this.stored.delete(name);
  }
}

let dir: string;
let path: string;
let server: SocketServer | undefined;
const clients: LineClient[] = [];

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'oas-ipc-fdstore-'));
  path = join(dir, 's.sock');
});
after(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await server?.close();
  server = undefined;
});

async function serve(store: FdStore): Promise<FakeService> {
  const service = new FakeService();
  server = new SocketServer(service, { path, group: 'no-such-group', fdStore: store, closeGraceMs: 1000 });
  await server.start();
  return service;
}

async function connect(): Promise<LineClient> {
  const c = await LineClient.connect(path);
  clients.push(c);
  return c;
}

describe('socket connections in the fd store', () => {
  it('each accepted connection is stored under its own name and taken out when it closes', async () => {
    const store = new FakeStore();
    await serve(store);
    const a = await connect();
    const b = await connect();
    assert.equal(await a.call('{"id":1,"method":"ping"}'), '{"id":1,"result":"pong"}');
    assert.equal(await b.call('{"id":2,"method":"ping"}'), '{"id":2,"result":"pong"}');
    const names = [...store.stored.keys()];
    assert.equal(names.length, 2);
    // Stored as -new at once, renamed at its first request.
    assert.equal(store.log.filter((l) => /^store conn-[0-9a-z]+-\d+-new$/.test(l)).length, 2);
    assert.notEqual(names[0], names[1]);
    for (const n of names) {
      assert.match(n, /^conn-[0-9a-z]+-\d+$/);
      assert.ok((store.stored.get(n) ?? -1) > 2, 'a real descriptor');
    }
    a.close();
    await sleep(100);
    assert.equal(store.stored.size, 1, 'the closed connection was taken out');
  });

  it('subscribing renames the stored connection (-sub), unsubscribing renames it back', async () => {
    const store = new FakeStore();
    await serve(store);
    const a = await connect();
    await a.call('{"id":1,"method":"ping"}');
    const [name] = [...store.stored.keys()];
    await a.call('{"id":2,"method":"subscribe"}');
    assert.deepEqual([...store.stored.keys()], [`${name}-sub`]);
    await a.call('{"id":3,"method":"unsubscribe"}');
    assert.deepEqual([...store.stored.keys()], [name]);
  });

  it('a hand-over answers every complete request read, finishes a half-read line, and leaves the store as is', async () => {
    const store = new FakeStore();
    const service = await serve(store);
    // Slow requests in flight when the hand-over starts are answered too.
    service.restartImpl = () => sleep(200);
    const a = await connect();
    const burst = Array.from({ length: 50 }, (_, i) => `{"id":${i},"method":"ping"}`).join('\n');
    a.socket.write(
      `${burst}\n{"id":"r","method":"restart_service","params":{"name":"hostapd"}}\n{"id":"x","me`,
    );
    await a.waitLines(50);
    const logged = store.log.length;
    const handOver = server?.handOver();
    await sleep(30);
    a.socket.write('thod":"ping"}\n');
    await handOver;
    await a.waitClosed();
    const ids = a.lines.map((l) => (JSON.parse(l) as { id: unknown }).id);
    assert.equal(ids.length, 52, a.lines.join('\n'));
    assert.ok(ids.includes('r') && ids.includes('x'));
    assert.equal(store.stored.size, 1, 'still stored: the next instance adopts it');
    assert.deepEqual(store.log.slice(logged), [], 'nothing taken out during the hand-over');
  });

  it('a connection that has sent no request is stored as -new (the next instance keeps its deadline)', async () => {
    const store = new FakeStore();
    await serve(store);
    await connect();
    await sleep(50);
    assert.deepEqual(
      [...store.stored.keys()].map((n) => n.replace(/^conn-[0-9a-z]+-\d+/, 'BASE')),
      ['BASE-new'],
    );
  });

  it('without a store, the hand-over is a plain close', async () => {
    const service = new FakeService();
    server = new SocketServer(service, { path, group: 'no-such-group' });
    await server.start();
    const a = await connect();
    await a.call('{"id":1,"method":"ping"}');
    await server.handOver();
    await a.waitClosed();
  });
});

describe('passedFdsFromEnv', () => {
  it('tells the listening socket from the stored connections, and cleans the environment', () => {
    const env: NodeJS.ProcessEnv = {
      LISTEN_PID: '42',
      LISTEN_FDS: '4',
      LISTEN_FDNAMES: 'openauto-system.socket:conn-ab-1:conn-ab-2-sub:conn-cd-7',
    };
    assert.deepEqual(passedFdsFromEnv(env, 42), {
      listen: 3,
      connections: [
        { fd: 4, name: 'conn-ab-1' },
        { fd: 5, name: 'conn-ab-2-sub' },
        { fd: 6, name: 'conn-cd-7' },
      ],
    });
    assert.deepEqual(env, {});
  });

  it('stored connections alone (no socket unit), and descriptors meant for another process', () => {
    assert.deepEqual(passedFdsFromEnv({ LISTEN_PID: '7', LISTEN_FDS: '1', LISTEN_FDNAMES: 'conn-a-1' }, 7), {
      listen: undefined,
      connections: [{ fd: 3, name: 'conn-a-1' }],
    });
    assert.deepEqual(passedFdsFromEnv({ LISTEN_PID: '8', LISTEN_FDS: '1' }, 7), {
      listen: undefined,
      connections: [],
    });
    // Without names (an old systemd): the first is the listening socket.
    assert.deepEqual(passedFdsFromEnv({ LISTEN_PID: '7', LISTEN_FDS: '1' }, 7), {
      listen: 3,
      connections: [],
    });
  });
});
