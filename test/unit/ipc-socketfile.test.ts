// The socket file: mode and group, stale-socket replacement, never touching what is not ours, and systemd
// socket activation.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { listenFdsFromEnv, resolveGroupId, SocketPathError } from '../../src/ipc/socket-file.js';
import { SocketServer } from '../../src/ipc/socket-server.js';
import { OPENAUTO_GID } from '../helpers/ids.js';
import { ChildServer, FakeService, LineClient } from './helpers/fake-service.js';

const execFileAsync = promisify(execFile);

let dir: string;
let path: string;
let groupFile: string;
const servers: SocketServer[] = [];
const others: net.Server[] = [];

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'oas-ipc-file-'));
  groupFile = join(dir, 'group');
  writeFileSync(groupFile, `# test groups\nroot:x:0:\nopenauto:x:${OPENAUTO_GID}:alice,bob\nother:x:77:\n`);
});
after(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
  for (const o of others.splice(0)) await new Promise((r) => o.close(r));
  for (const f of readdirSync(dir)) if (f !== 'group') rmSync(join(dir, f), { recursive: true, force: true });
});

function server(opts: Partial<ConstructorParameters<typeof SocketServer>[1]> = {}, p = path): SocketServer {
  const s = new SocketServer(new FakeService(), { path: p, groupFile, ...opts });
  servers.push(s);
  return s;
}

async function ping(p = path): Promise<string> {
  const c = await LineClient.connect(p);
  try {
    return await c.call('{"id":1,"method":"ping"}');
  } finally {
    c.close();
  }
}

/** Leaves a socket file at `p` that nobody listens on (what a daemon killed with SIGKILL leaves). */
async function staleSocketAt(p: string): Promise<void> {
  const tmp = join(dir, 'stale.tmp');
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(tmp, r));
  linkSync(tmp, p);
  await new Promise((r) => s.close(r)); // unlinks tmp only
  assert.ok(lstatSync(p).isSocket());
}

async function liveServerAt(p: string): Promise<net.Server> {
  const s = net.createServer((c) => {
    c.on('error', () => {});
    c.once('data', () => c.end('I am someone else\n'));
  });
  await new Promise<void>((r) => s.listen(p, r));
  others.push(s);
  return s;
}

function leftovers(): string[] {
  return readdirSync(dir).filter((f) => f.startsWith('.'));
}

describe('socket file', () => {
  before(() => {
    path = join(dir, 'system.sock');
  });

  it('is a socket with mode 0660, owned by root and group openauto from the group file', async () => {
    await server().start();
    const st = lstatSync(path);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o7777, 0o660);
    assert.equal(st.uid, process.getuid?.());
    assert.equal(st.gid, OPENAUTO_GID);
    assert.equal(await ping(), '{"id":1,"result":"pong"}');
    assert.deepEqual(leftovers(), [], 'the private bind directory is gone');
  });

  it('the kernel enforces it: root and members of the group connect, other users are refused', async (t) => {
    if (process.getuid?.() !== 0 || !existsSync('/usr/bin/setpriv')) {
      t.skip('needs root and setpriv');
      return;
    }
    chmodSync(dir, 0o755);
    await server().start();
    const script = `const s=require('net').connect(process.argv[1]);s.on('connect',()=>{s.write('{"id":1,"method":"ping"}\\n')});s.on('data',d=>{process.stdout.write(String(d));s.destroy()});s.on('error',e=>{process.stdout.write(e.code);})`;
    // asynchronous: the server answering runs in this very process
    const as = async (...ids: string[]) =>
      (await execFileAsync('/usr/bin/setpriv', [...ids, process.execPath, '-e', script, path])).stdout;
    const nobody = ['--reuid=65534', '--regid=65534'];
    assert.equal(await as(...nobody, '--clear-groups'), 'EACCES');
    assert.equal(await as(...nobody, '--groups=77'), 'EACCES', 'another group');
    assert.equal(await as(...nobody, '--groups=4242'), '{"id":1,"result":"pong"}\n', 'a member of openauto');
    assert.equal(
      await as('--reuid=65534', '--regid=4242', '--clear-groups'),
      '{"id":1,"result":"pong"}\n',
      'openauto as primary group',
    );
    assert.equal(await as('--reuid=0', '--regid=0', '--clear-groups'), '{"id":1,"result":"pong"}\n', 'root');
  });

  it('keeps the default group when the group does not exist; an explicit mode is honoured', async () => {
    await server({ group: 'nobody-has-this', mode: 0o600 }).start();
    const st = lstatSync(path);
    assert.equal(st.mode & 0o7777, 0o600);
    assert.equal(st.gid, process.getgid?.());
  });

  it('resolveGroupId reads group(5) files exactly', async () => {
    assert.equal(await resolveGroupId('openauto', groupFile), OPENAUTO_GID);
    assert.equal(await resolveGroupId('other', groupFile), 77);
    assert.equal(await resolveGroupId('openaut', groupFile), undefined);
    assert.equal(await resolveGroupId('alice', groupFile), undefined, 'members are not groups');
    assert.equal(await resolveGroupId('openauto', join(dir, 'missing')), undefined);
  });

  it('replaces a stale socket (nobody answering)', async () => {
    await staleSocketAt(path);
    const before = lstatSync(path).ino;
    await server().start();
    assert.notEqual(lstatSync(path).ino, before);
    assert.equal(lstatSync(path).mode & 0o7777, 0o660);
    assert.equal(await ping(), '{"id":1,"result":"pong"}');
  });

  it('refuses a live socket and leaves it alone', async () => {
    await liveServerAt(path);
    await assert.rejects(
      server().start(),
      (e: unknown) => e instanceof SocketPathError && e.code === 'EADDRINUSE',
    );
    assert.equal(await ping(), 'I am someone else');
    assert.deepEqual(leftovers(), []);
  });

  it('never unlinks a regular file, directory, symlink or FIFO at the path', async () => {
    const check = async (what: string) => {
      const before = lstatSync(path);
      await assert.rejects(
        server().start(),
        (e: unknown) => e instanceof SocketPathError && e.code === 'EEXIST',
        what,
      );
      const now = lstatSync(path);
      assert.equal(now.ino, before.ino, what);
      assert.deepEqual(leftovers(), [], what);
      rmSync(path, { recursive: true, force: true });
    };
    writeFileSync(path, 'precious');
    await check('regular file');
    writeFileSync(path, '');
    await check('empty file');
    mkdirSync(path);
    writeFileSync(join(path, 'inside'), 'x');
    await check('directory');
    // A symlink to a stale socket is still not a socket itself.
    const target = join(dir, 'elsewhere.sock');
    await staleSocketAt(target);
    symlinkSync(target, path);
    await check('symlink');
    assert.ok(lstatSync(target).isSocket(), 'the symlink target was not touched either');
    unlinkSync(target);
    execFileSync('mkfifo', [path]);
    await check('fifo');
    writeFileSync(path, 'precious');
    await assert.rejects(server().start());
    assert.equal(readFileSync(path, 'utf8'), 'precious');
  });

  it('close() removes its own socket file but never a successor’s', async () => {
    const a = server();
    await a.start();
    await a.close();
    assert.throws(() => lstatSync(path), /ENOENT/);
    await a.start();
    // Someone removes our file and another server binds the path; our close must not remove theirs.
    unlinkSync(path);
    const b = server();
    await b.start();
    await a.close();
    assert.equal(await ping(), '{"id":1,"result":"pong"}');
    assert.ok(lstatSync(path).isSocket());
  });

  it('paths close to the sun_path limit still work; longer ones fail clearly', async () => {
    // 107 bytes is the most sun_path holds; the private directory would not fit, so it binds in place.
    const base = join(dir, 'd');
    const fill = 107 - base.length - '/x.sock'.length;
    const longDir = base + 'd'.repeat(fill);
    mkdirSync(longDir);
    const longPath = join(longDir, 'x.sock');
    assert.equal(Buffer.byteLength(longPath), 107);
    await staleSocketAt(longPath);
    await server({}, longPath).start();
    assert.equal(lstatSync(longPath).mode & 0o7777, 0o660);
    assert.equal(lstatSync(longPath).gid, OPENAUTO_GID);
    assert.equal(await ping(longPath), '{"id":1,"result":"pong"}');
    await assert.rejects(
      server({}, `${longPath}x`).start(),
      (e: unknown) => e instanceof SocketPathError && e.code === 'ENAMETOOLONG',
    );
  });
});

describe('systemd socket activation', () => {
  before(() => {
    path = join(dir, 'activated.sock');
  });

  it('listenFdsFromEnv follows sd_listen_fds: pid check, count, variables removed', () => {
    const env = (o: NodeJS.ProcessEnv) => ({ ...o });
    let e = env({ LISTEN_PID: '123', LISTEN_FDS: '1', LISTEN_FDNAMES: 'sock', PATH: '/bin' });
    assert.deepEqual(listenFdsFromEnv(e, 123), [3]);
    assert.deepEqual(e, { PATH: '/bin' });
    e = env({ LISTEN_PID: '123', LISTEN_FDS: '2' });
    assert.deepEqual(listenFdsFromEnv(e, 123), [3, 4]);
    e = env({ LISTEN_PID: '999', LISTEN_FDS: '1' });
    assert.deepEqual(listenFdsFromEnv(e, 123), [], 'meant for another process');
    assert.deepEqual(e, {}, 'unset even when not ours');
    for (const bad of <NodeJS.ProcessEnv[]>[
      { LISTEN_PID: '123' },
      { LISTEN_FDS: '1' },
      { LISTEN_PID: '123', LISTEN_FDS: '0' },
      { LISTEN_PID: '123', LISTEN_FDS: 'x' },
      { LISTEN_PID: '123', LISTEN_FDS: '-1' },
      { LISTEN_PID: '0123x', LISTEN_FDS: '1' },
    ]) {
      assert.deepEqual(listenFdsFromEnv(env(bad), 123), [], JSON.stringify(bad));
    }
    assert.deepEqual(listenFdsFromEnv(env({}), 123), []);
  });

  it('a daemon started with LISTEN_FDS serves fd 3 and leaves the socket file to systemd', async () => {
    // Play systemd: own the listening socket, hand it to the child as fd 3.
    const holderPath = `${path}.h`;
    const holder = net.createServer();
    await new Promise<void>((r) => holder.listen(holderPath, r));
    linkSync(holderPath, path);
    execFileSync('chmod', ['0666', path]);
    const fd = (holder as unknown as { _handle: { fd: number } })._handle.fd;
    const child = await ChildServer.start(path, {}, fd);
    try {
      await new Promise((r) => holder.close(r)); // from now on only the child accepts
      assert.deepEqual(child.ready.listenFds, [3]);
      assert.deepEqual(child.ready.envLeft, [], 'LISTEN_* are removed from the environment');
      for (let i = 0; i < 3; i++) assert.equal(await ping(), '{"id":1,"result":"pong"}');
      await child.stop();
      const st = lstatSync(path);
      assert.ok(st.isSocket(), 'the socket file belongs to systemd: not removed');
      assert.equal(st.mode & 0o7777, 0o666, 'nor chmod-ed');
    } finally {
      await child.kill().catch(() => {});
    }
  });
});
