// bench/loadgen.c and bench/floor-server.c, the benchmarks' C client and floor server: the figures in the
// README come from them, so what they count is tested here. Built with the system's C compiler, as the
// benches build them (bench/lib.ts buildLoadgen).
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { REPO_ROOT } from '../sandbox/harness.js';

const dir = mkdtempSync(join(tmpdir(), 'oas-loadgen-'));
const loadgen = join(dir, 'loadgen');
const floor = join(dir, 'floor-server');
after(() => rmSync(dir, { recursive: true, force: true }));

interface Out {
  open_seconds: number;
  seconds: number;
  answers: number;
  errors: number;
  bytes: number;
}

function run(socket: string, clients: number, perClient: number, method: string): Out {
  const out = execFileSync(loadgen, [socket, String(clients), String(perClient), method], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  return JSON.parse(out) as Out;
}

/** A server answering each line with answer(line, n) (n counts the lines over all connections). */
async function lineServer(path: string, answer: (line: string, n: number) => string): Promise<net.Server> {
  let n = 0;
  const server = net.createServer((s) => {
    let buf = '';
    // loadgen exits as soon as it has what it waits for (or dies), resetting what is still unsent.
    s.on('error', () => s.destroy());
    s.on('data', (d) => {
      buf += d.toString('latin1');
      let out = '';
      for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n')) {
        out += `${answer(buf.slice(0, nl), n++)}\n`;
        buf = buf.slice(nl + 1);
      }
      if (out) s.write(out);
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return server;
}

describe('bench/loadgen.c and bench/floor-server.c', () => {
  before(() => {
    for (const [src, out] of [
      ['bench/loadgen.c', loadgen],
      ['bench/floor-server.c', floor],
    ] as const)
      execFileSync('cc', ['-O2', '-Wall', '-Werror', '-o', out, join(REPO_ROOT, src)], { stdio: 'pipe' });
  });

  it('counts every answer of every client, and only the timed ones, against the floor server', async () => {
    const socket = join(dir, 'floor.sock');
    const server = spawn(floor, [socket], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise((resolve) => server.stdout.once('data', resolve));
      const health = run(socket, 4, 50, 'get_health');
      assert.equal(health.answers, 200);
      assert.equal(health.errors, 0);
      assert.ok(health.open_seconds > 0 && health.seconds > 0);
      const healthLine = '{"id":0,"result":{"hostapd":"active","networkd":"active","bluetooth":"active"}}\n';
      assert.equal(health.bytes, 200 * healthLine.length, 'the first pings are not counted');
      // mixed: get_health, get_status, ping in turn (the status answer is about 2 KB).
      const mixed = run(socket, 1, 30, 'mixed');
      assert.equal(mixed.answers, 30);
      const status = '{"id":0,"result":"'.length + 2045 + '"}\n'.length;
      const pong = '{"id":0,"result":"pong"}\n'.length;
      assert.equal(mixed.bytes, 10 * (healthLine.length + status + pong));
    } finally {
      server.kill('SIGKILL');
    }
  });

  it('sends the mixed methods in turn with increasing numeric ids, and counts error answers', async () => {
    const socket = join(dir, 'errors.sock');
    const seen: string[] = [];
    // The connection's first line is loadgen's ping; every third request after it gets an error answer.
    const server = await lineServer(socket, (line, n) => {
      seen.push(line);
      if (n > 0 && n % 3 === 0) return '{"id":1,"error":{"code":"INTERNAL_ERROR","message":"x"}}';
      return '{"id":1,"result":"pong"}';
    });
    try {
      const r = await new Promise<Out>((resolve, reject) => {
        const c = spawn(loadgen, [socket, '1', '9', 'mixed'], { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        c.stdout.on('data', (d) => {
          out += d;
        });
        c.on('exit', (code) =>
          code === 0 ? resolve(JSON.parse(out) as Out) : reject(new Error(`exit ${code}`)),
        );
      });
      assert.equal(r.answers, 9);
      assert.equal(r.errors, 3);
      assert.deepEqual(seen, [
        '{"id":"open","method":"ping"}',
        ...Array.from(
          { length: 9 },
          (_, i) => `{"id":${i},"method":"${['get_health', 'get_status', 'ping'][i % 3]}"}`,
        ),
      ]);
    } finally {
      server.close();
    }
  });

  it("fails when a connection's first ping is refused", async () => {
    const socket = join(dir, 'refuse.sock');
    const server = await lineServer(
      socket,
      () => '{"id":"open","error":{"code":"UNKNOWN_METHOD","message":"x"}}',
    );
    try {
      const r = await new Promise<{ status: number | null; stderr: string }>((resolve) => {
        const c = spawn(loadgen, [socket, '2', '5', 'get_health'], { stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        c.stderr.on('data', (d) => {
          stderr += d;
        });
        c.on('exit', (status) => resolve({ status, stderr }));
      });
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /first ping was refused/);
    } finally {
      server.close();
    }
  });

  it('refuses bad arguments', () => {
    const r = spawnSync(loadgen, ['/nonexistent.sock', '0', '5', 'ping'], { encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /bad arguments/);
  });
});
