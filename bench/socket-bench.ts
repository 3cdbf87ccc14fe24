// Benchmark of the legacy NDJSON socket: get_health latency (sequential requests on one connection, median
// and p99) and throughput with 64 concurrent clients, against a SocketServer on a temporary path serving a
// fake service in its own process (as the daemon would be). Prints a summary and writes
// bench/results/socket.json.
//
//   node dist/bench/socket-bench.js [--requests 20000] [--clients 64] [--per-client 2000]
//   BENCH_SERVER_NODE_ARGS="--lite-mode --jitless" runs the server process with those node flags.
//
// The old Python service took about 47 µs per sequential get_health on the same kind of machine.
import { type ChildProcess, fork } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { HealthMap } from '../src/health/states.js';
import { SocketServer } from '../src/ipc/index.js';
import type { ApplyResult, Json, SystemService } from '../src/service.js';
import { LineClient } from './socket-client.js';

class BenchService extends EventEmitter implements SystemService {
  private readonly health: HealthMap = { hostapd: 'active', networkd: 'active', bluetooth: 'active' };
  getHealth(): HealthMap {
    return this.health;
  }
  getStatus(): { [key: string]: Json } {
    return { health: this.health, uptime: 1, version: 'bench' };
  }
  async applyConfig(): Promise<ApplyResult> {
    return { changed: false, restarted: [] };
  }
  async restartService(): Promise<void> {}
  async claimProfile(): Promise<void> {}
  async releaseProfile(): Promise<void> {}
}

async function serve(path: string): Promise<void> {
  const server = new SocketServer(new BenchService(), { path, group: 'openauto', maxClients: 256 });
  await server.start();
  process.on('message', async (m: { cmd: string }) => {
    if (m.cmd === 'rss') process.send?.({ rss: process.memoryUsage().rss });
    if (m.cmd === 'close') {
      await server.close();
      process.exit(0);
    }
  });
  process.send?.({ ready: true });
}

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? dflt : Number(process.argv[i + 1]);
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

const us = (ns: number) => Math.round(ns / 100) / 10;

async function main(): Promise<void> {
  const requests = arg('requests', 20_000);
  const clients = arg('clients', 64);
  const perClient = arg('per-client', 2_000);
  const dir = mkdtempSync(join(tmpdir(), 'oas-socket-bench-'));
  const path = join(dir, 'system.sock');
  const serverArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ['--server', path], {
    execArgv: serverArgs,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, OPENAUTO_LOG_STDERR: '1' },
  });
  const next = () => new Promise<{ ready?: boolean; rss?: number }>((r) => child.once('message', r));
  await next();
  try {
    const expected = '{"id":"1","result":{"hostapd":"active","networkd":"active","bluetooth":"active"}}';
    // Sequential: one connection, one request in flight, like the shipping client.
    const c = await LineClient.connect(path);
    const first = await c.call('{"id":"1","method":"get_health"}\n');
    if (first !== expected) throw new Error(`unexpected answer: ${first}`);
    for (let i = 0; i < 2000; i++) await c.call(`{"id":"w${i}","method":"get_health"}\n`);
    const lat: number[] = new Array(requests);
    const seqStart = process.hrtime.bigint();
    for (let i = 0; i < requests; i++) {
      const t0 = process.hrtime.bigint();
      await c.call(`{"id":"${i}","method":"get_health"}\n`);
      lat[i] = Number(process.hrtime.bigint() - t0);
    }
    const seqTotal = Number(process.hrtime.bigint() - seqStart);
    c.close();
    lat.sort((a, b) => a - b);

    // Concurrent: `clients` connections, each sequential.
    const conns = await Promise.all(Array.from({ length: clients }, () => LineClient.connect(path)));
    for (const k of conns) await k.call('{"id":"w","method":"get_health"}\n');
    const clat: number[] = [];
    const t0 = process.hrtime.bigint();
    await Promise.all(
      conns.map(async (k, ci) => {
        for (let i = 0; i < perClient; i++) {
          const s = process.hrtime.bigint();
          await k.call(`{"id":"${ci}-${i}","method":"get_health"}\n`);
          clat.push(Number(process.hrtime.bigint() - s));
        }
      }),
    );
    const concTotal = Number(process.hrtime.bigint() - t0);
    for (const k of conns) k.close();
    clat.sort((a, b) => a - b);
    child.send({ cmd: 'rss' });
    const serverRss = (await next()).rss ?? 0;

    const result = {
      benchmark: 'legacy socket get_health',
      date: new Date().toISOString(),
      node: process.version,
      cpus: cpus().length,
      cpu_model: cpus()[0]?.model ?? 'unknown',
      server_node_args: serverArgs,
      sequential: {
        requests,
        median_us: us(quantile(lat, 0.5)),
        p99_us: us(quantile(lat, 0.99)),
        mean_us: us(seqTotal / requests),
        requests_per_s: Math.round(requests / (seqTotal / 1e9)),
      },
      concurrent: {
        clients,
        requests: clients * perClient,
        seconds: Math.round(concTotal / 1e6) / 1000,
        requests_per_s: Math.round((clients * perClient) / (concTotal / 1e9)),
        median_us: us(quantile(clat, 0.5)),
        p99_us: us(quantile(clat, 0.99)),
      },
      server_rss_mb_after: Math.round(serverRss / 1024 / 102.4) / 10,
      python_reference_sequential_us: 47,
    };
    const outDir = resolve(dirname(fileURLToPath(import.meta.url)), '../../bench/results');
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, 'socket.json'), `${JSON.stringify(result, null, 2)}\n`);
    const s = result.sequential;
    const k = result.concurrent;
    process.stdout.write(
      [
        `socket get_health, sequential (1 client, ${s.requests} requests): median ${s.median_us} µs, p99 ${s.p99_us} µs, mean ${s.mean_us} µs (${s.requests_per_s} req/s); Python service: ~47 µs`,
        `socket get_health, ${k.clients} concurrent clients (${k.requests} requests): ${k.requests_per_s} req/s, median ${k.median_us} µs, p99 ${k.p99_us} µs`,
        `server RSS after: ${result.server_rss_mb_after} MB; written to ${join(outDir, 'socket.json')}`,
        '',
      ].join('\n'),
    );
  } finally {
    child.send({ cmd: 'close' });
    await new Promise((r) => child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--server') {
  serve(process.argv[3] as string).catch((err: unknown) => {
    process.stderr.write(`bench server failed: ${String(err)}\n`);
    process.exit(1);
  });
} else {
  main().catch((err: unknown) => {
    process.stderr.write(`socket bench failed: ${String(err)}\n`);
    process.exit(1);
  });
}
