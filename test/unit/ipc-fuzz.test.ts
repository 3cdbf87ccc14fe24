// Fuzzing the legacy socket: well over 100,000 random and mutated lines (invalid UTF-8, deep nesting, huge
// numbers, wrong types, NUL bytes) plus 10 MB lines on their own connections, against the shim running in a
// child process. The daemon must not crash, must answer every complete non-blank line with a result or a
// contract error, and its RSS after the run must be within 10 MB of before.
// FUZZ_SEED=<n> replays a run; FUZZ_LINES=<n> changes the number of lines.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SOCKET_CODES } from '../../src/ipc/protocol.js';
import { prng } from '../helpers/common.js';
import { ChildServer, sleep } from './helpers/fake-service.js';

const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
const TOTAL_LINES = Number(process.env.FUZZ_LINES ?? 120_000);
const CONNECTIONS = 8;
// The child that plays the daemon runs with node's defaults for the heap (the unit sets none); its RSS is read
// after the daemon's own heap trimming (fake-service.ts). FUZZ_NODE_ARGS adds node flags to the child.
const DAEMON_NODE_ARGS = (process.env.FUZZ_NODE_ARGS ?? '').split(' ').filter(Boolean);
const mb = (n: number) => (n / 1024 / 1024).toFixed(1);
const memText = (m: { rss?: number; mem?: NodeJS.MemoryUsage; spaces?: Record<string, number> }) =>
  `RSS ${mb(m.rss ?? 0)} MB, heap used ${mb(m.mem?.heapUsed ?? 0)} MB, new space ${m.spaces?.new_space} KiB`;
const WARMUP_PER_CONNECTION = Number(process.env.FUZZ_WARMUP ?? 3000);
const MAX_LINE = 60_000; // stays under the 64 KiB limit: these connections must never be closed
const codes: ReadonlySet<string> = new Set(SOCKET_CODES);

class Gen {
  private readonly r: () => number;
  private tagged = 0;
  private lastTagged: string | undefined;
  /** ids of requests sent unmutated: each must come back */
  readonly expectIds: string[] = [];
  constructor(
    seed: number,
    private readonly tag: string,
  ) {
    this.r = prng(seed);
  }
  int(n: number): number {
    return Math.floor(this.r() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)] as T;
  }
  chance(p: number): boolean {
    return this.r() < p;
  }

  jsonValue(depth = 0): unknown {
    const k = this.int(depth > 3 ? 6 : 9);
    switch (k) {
      case 0:
        return null;
      case 1:
        return this.chance(0.5);
      case 2:
        return this.pick([0, -1, 1.5, 2 ** 53 + 1, -0, 1e308, 5e-324, this.int(1e9)]);
      case 3:
        return this.pick([
          '',
          'wifi',
          'hostapd',
          'é',
          '\u0000',
          '\ud800',
          '🚗',
          'x'.repeat(this.int(300)),
          '\\"',
        ]);
      case 4:
        return this.pick([
          'get_health',
          'ping',
          'apply_config',
          'restart_service',
          'get_status',
          'subscribe',
        ]);
      case 5:
        return String(this.int(1000));
      case 6:
      case 7:
        return Array.from({ length: this.int(4) }, () => this.jsonValue(depth + 1));
      default: {
        const o: Record<string, unknown> = {};
        for (let i = this.int(4); i > 0; i--)
          o[this.pick(['id', 'method', 'params', 'section', 'name', 'x'])] = this.jsonValue(depth + 1);
        return o;
      }
    }
  }

  id(): string {
    switch (this.int(8)) {
      case 0:
        return String(this.int(1e6));
      case 1:
        return '1e999';
      case 2:
        return '9'.repeat(1 + this.int(400));
      case 3:
        return JSON.stringify(this.jsonValue());
      case 4:
        return `${'['.repeat(50)}${']'.repeat(50)}`;
      default:
        this.lastTagged = `${this.tag}-${this.tagged++}`;
        return JSON.stringify(this.lastTagged);
    }
  }

  valid(): string {
    this.lastTagged = undefined;
    const id = this.id();
    switch (this.int(7)) {
      case 0:
        return `{"id":${id},"method":"get_health"}`;
      case 1:
        return `{"id":${id},"method":"get_status"}`;
      case 2:
        return `{"id":${id},"method":"ping"${this.chance(0.5) ? ',"params":{}' : ''}}`;
      case 3:
        return `{"id":${id},"method":"apply_config","params":{"section":${JSON.stringify(this.pick(['wifi', 'network', 'bluetooth', 'time', 'bogus', '']))}}}`;
      case 4:
        return `{"id":${id},"method":"restart_service","params":{"name":${JSON.stringify(this.pick(['hostapd', 'networkd', 'systemd-networkd', 'bluetooth', 'sshd']))}}}`;
      case 5:
        return `{ "method" : "subscribe" , "id" : ${id} }\r`;
      default:
        return `{"id":${id},"method":"unsubscribe"}`;
    }
  }

  bytesOf(s: string): Buffer {
    return Buffer.from(s, 'utf8');
  }

  mutate(buf: Buffer): Buffer {
    let b = Buffer.from(buf);
    const interesting = [
      0x00, 0xff, 0xfe, 0xc0, 0xc1, 0xed, 0xa0, 0x80, 0xf4, 0x90, 0x22, 0x5c, 0x7b, 0x7d, 0x5b, 0x5d, 0x2c,
      0x3a, 0x0d, 0x20,
    ];
    for (let n = 1 + this.int(4); n > 0; n--) {
      const at = this.int(b.length + 1);
      switch (this.int(7)) {
        case 0:
          if (b.length > 0) b[Math.min(at, b.length - 1)] = this.int(256);
          break;
        case 1:
          b = Buffer.concat([b.subarray(0, at), Buffer.from([this.pick(interesting)]), b.subarray(at)]);
          break;
        case 2:
          b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + this.int(8)))]);
          break;
        case 3:
          b = b.subarray(0, at);
          break;
        case 4:
          b = Buffer.concat([b.subarray(0, at), b.subarray(this.int(b.length + 1)), b.subarray(at)]);
          break;
        case 5:
          b = Buffer.concat([
            b.subarray(0, at),
            Buffer.from(
              this.pick([
                [0xed, 0xa0, 0x80],
                [0xf8, 0x88, 0x80, 0x80],
                [0xe2, 0x82],
                [0xc0, 0xaf],
                [0xef, 0xbb, 0xbf],
              ]),
            ),
            b.subarray(at),
          ]);
          break;
        default:
          b = Buffer.concat([
            b.subarray(0, at),
            Buffer.from(JSON.stringify(this.jsonValue())),
            b.subarray(at),
          ]);
      }
    }
    return b.length > MAX_LINE ? b.subarray(0, MAX_LINE) : b;
  }

  line(): Buffer {
    const k = this.int(100);
    let b: Buffer;
    if (k < 25) {
      b = this.bytesOf(this.valid());
      if (this.lastTagged !== undefined) this.expectIds.push(this.lastTagged);
    } else if (k < 60) b = this.mutate(this.bytesOf(this.valid()));
    else if (k < 68) b = Buffer.from(Array.from({ length: this.int(200) }, () => this.int(256)));
    else if (k < 83) {
      b = this.bytesOf(
        `{"id":${JSON.stringify(this.jsonValue())},"method":${JSON.stringify(this.jsonValue())},"params":${JSON.stringify(this.jsonValue())}}`,
      );
    } else if (k < 88) {
      const big = this.chance(0.03);
      const n = big ? 10_000 + this.int(19_000) : 1 + this.int(1000);
      b = this.bytesOf(
        this.pick([
          `${'['.repeat(n)}${']'.repeat(n)}`,
          `{"id":${'['.repeat(n)}${']'.repeat(n)},"method":"ping"}`,
          `{"id":1,"method":"apply_config","params":{"section":${'{"a":'.repeat(n)}1${'}'.repeat(n)}}}`,
          `${'['.repeat(n)}`,
          `{"a":${'{"a":'.repeat(n)}`,
        ]),
      );
    } else if (k < 91) {
      const digits = this.chance(0.05) ? 50_000 : 1 + this.int(2000);
      b = this.bytesOf(
        this.pick([
          `{"id":${'9'.repeat(digits)},"method":"ping"}`,
          `{"id":-${'1'.repeat(digits)}.5e-99999,"method":"get_health"}`,
          '1e999999999',
          `{"id":"1","method":"apply_config","params":{"section":${'7'.repeat(digits)}}}`,
        ]),
      );
    } else if (k < 95) {
      b = this.bytesOf(
        this.pick([
          '\0',
          '{"id":"\0","method":"ping"}',
          '{"id":1,"method":"ping\0"}',
          '\0\0\0{}',
          '{"id":1,"method":"ping"}\0',
        ]),
      );
    } else b = this.bytesOf(JSON.stringify(this.jsonValue()));
    // a newline inside would make two lines; a line feed is the one byte a line cannot hold
    for (let i = b.indexOf(0x0a); i !== -1; i = b.indexOf(0x0a, i + 1)) b[i] = 0x20;
    return b.length > MAX_LINE ? b.subarray(0, MAX_LINE) : b;
  }
}

function isBlankLine(b: Buffer): boolean {
  for (const c of b) if (c !== 0x20 && c !== 0x09 && c !== 0x0d) return false;
  return true;
}

interface Outcome {
  expected: number;
  answered: number;
  bad: string[];
  missingValidIds: number;
  closed: boolean;
}

/** Sends `count` generated lines on one connection, reading answers as they come. */
async function fuzzConnection(path: string, seed: number, tag: string, count: number): Promise<Outcome> {
  const gen = new Gen(seed, tag);
  const socket = net.connect(path);
  await new Promise((r, j) => socket.once('connect', r).once('error', j));
  const out: Outcome = { expected: 0, answered: 0, bad: [], missingValidIds: 0, closed: false };
  const seenIds = new Set<string>();
  let buf = '';
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => {
    buf += d;
    let nl = buf.indexOf('\n');
    while (nl !== -1) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      nl = buf.indexOf('\n');
      out.answered++;
      try {
        const m = JSON.parse(line) as Record<string, unknown>;
        const keys = Object.keys(m).join(',');
        if (keys === 'id,result') {
          // fine
        } else if (keys === 'id,error') {
          const e = m.error as { code: unknown; message: unknown };
          if (
            !codes.has(e.code as string) ||
            typeof e.message !== 'string' ||
            /\n|\s+at\s|\.js:/.test(e.message)
          ) {
            out.bad.push(line.slice(0, 200));
          }
        } else out.bad.push(line.slice(0, 200));
        if (typeof m.id === 'string' && m.id.startsWith(`${tag}-`)) seenIds.add(m.id);
      } catch {
        out.bad.push(`not JSON: ${line.slice(0, 200)}`);
      }
    }
  });
  socket.on('error', () => {});
  socket.on('close', () => {
    out.closed = true;
  });
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  const flush = async () => {
    if (pendingBytes === 0) return;
    const data = Buffer.concat(pending, pendingBytes);
    pending = [];
    pendingBytes = 0;
    if (!socket.write(data)) await new Promise((r) => socket.once('drain', r));
  };
  for (let i = 0; i < count; i++) {
    const line = gen.line();
    if (!isBlankLine(line)) out.expected++;
    pending.push(line, Buffer.from('\n'));
    pendingBytes += line.length + 1;
    if (pendingBytes > 128 * 1024) await flush();
  }
  await flush();
  const deadline = Date.now() + 120_000;
  while (out.answered < out.expected && !out.closed && Date.now() < deadline) await sleep(20);
  await sleep(50); // anything extra would show up as answered > expected
  const closedByDaemon = out.closed;
  for (const id of gen.expectIds) if (!seenIds.has(id)) out.missingValidIds++;
  socket.destroy();
  return { ...out, closed: closedByDaemon };
}

/** A connection that sends a few requests, then a 10 MB line (with or without its newline), then more. */
async function hugeLineConnection(path: string, fill: number, withNewline: boolean) {
  const socket = net.connect(path);
  await new Promise((r, j) => socket.once('connect', r).once('error', j));
  const lines: string[] = [];
  let buf = '';
  socket.setEncoding('utf8');
  socket.on('data', (d: string) => {
    buf += d;
    let nl = buf.indexOf('\n');
    while (nl !== -1) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      nl = buf.indexOf('\n');
    }
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  for (let i = 1; i <= 5; i++) socket.write(`{"id":"pre-${i}","method":"ping"}\n`);
  const huge = Buffer.alloc(10 * 1024 * 1024, fill);
  socket.write(huge);
  socket.write(withNewline ? '\n{"id":"after","method":"ping"}\n' : '');
  if (!withNewline) socket.end();
  await closed;
  return lines;
}

let dir: string;
let path: string;
let daemon: ChildServer;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'oas-ipc-fuzz-'));
  path = join(dir, 'fuzz.sock');
  daemon = await ChildServer.start(path, {}, undefined, { execArgv: DAEMON_NODE_ARGS });
  const cold = await daemon.ask({ cmd: 'rss' });
  process.stderr.write(
    `# fuzz: daemon (node ${DAEMON_NODE_ARGS.join(' ')}) cold RSS ${mb(cold.rss as number)} MB\n`,
  );
});
after(async () => {
  await daemon.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe(`socket fuzz (seed ${SEED})`, () => {
  let rssBefore = 0;
  let heapBefore = 0;

  it('warm-up', async () => {
    const r = await Promise.all(
      Array.from({ length: CONNECTIONS }, (_, i) =>
        fuzzConnection(path, SEED + 1000 + i, `w${i}`, WARMUP_PER_CONNECTION),
      ),
    );
    for (const o of r) assert.equal(o.answered, o.expected);
    const m = await daemon.ask({ cmd: 'rss' });
    rssBefore = m.rss as number;
    heapBefore = m.mem?.heapUsed ?? 0;
    process.stderr.write(`# fuzz: daemon memory before ${memText(m)}\n`);
  });

  it(`${TOTAL_LINES} random and mutated lines on ${CONNECTIONS} connections: one valid answer per line`, async () => {
    const per = Math.ceil(TOTAL_LINES / CONNECTIONS);
    const t0 = Date.now();
    const results = await Promise.all(
      Array.from({ length: CONNECTIONS }, (_, i) => fuzzConnection(path, SEED + i, `c${i}`, per)),
    );
    const took = Date.now() - t0;
    let expected = 0;
    for (const [i, o] of results.entries()) {
      assert.deepEqual(o.bad, [], `connection ${i}: answers outside the contract`);
      assert.equal(o.closed, false, `connection ${i} was closed by the daemon`);
      assert.equal(o.answered, o.expected, `connection ${i}: answers == complete non-blank lines`);
      assert.equal(o.missingValidIds, 0, `connection ${i}: every valid request's id came back`);
      expected += o.expected;
    }
    assert.ok(expected >= 100_000 || TOTAL_LINES < 100_000, `only ${expected} answered lines`);
    process.stderr.write(
      `# fuzz: ${per * CONNECTIONS} lines, ${expected} answered, ${took} ms, seed ${SEED}\n`,
    );
    const m = await daemon.ask({ cmd: 'rss' });
    process.stderr.write(`# fuzz: daemon memory after the random lines ${memText(m)}\n`);
  });

  it('10 MB lines: earlier requests answered, then LINE_TOO_LONG, then the connection is closed', async () => {
    const runs = await Promise.all([
      hugeLineConnection(path, 0x5b, true), // '[' * 10 MB
      hugeLineConnection(path, 0x41, true),
      hugeLineConnection(path, 0xff, false), // invalid UTF-8, no newline at all
    ]);
    for (const lines of runs) {
      assert.deepEqual(lines, [
        ...[1, 2, 3, 4, 5].map((i) => `{"id":"pre-${i}","result":"pong"}`),
        '{"id":null,"error":{"code":"LINE_TOO_LONG","message":"request line longer than 65536 bytes"}}',
      ]);
    }
  });

  it('the daemon is alive, still answers, and its RSS is within 10 MB of before', async () => {
    assert.equal(daemon.proc.exitCode, null);
    const probe = await fuzzConnection(path, SEED + 99, 'p', 100);
    assert.equal(probe.answered, probe.expected);
    await sleep(200);
    const m = await daemon.ask({ cmd: 'rss' });
    const after = m.rss as number;
    process.stderr.write(`# fuzz: daemon memory at the end ${memText(m)}\n`);
    process.stderr.write(`# fuzz: daemon RSS before ${mb(rssBefore)} MB, after ${mb(after)} MB\n`);
    assert.ok(Math.abs(after - rssBefore) < 10 * 1024 * 1024, `RSS ${mb(rssBefore)} -> ${mb(after)} MB`);
    const heapGrowth = (m.mem?.heapUsed ?? 0) - heapBefore;
    assert.ok(heapGrowth < 2 * 1024 * 1024, `JS heap in use grew by ${mb(heapGrowth)} MB`);
  });
});
