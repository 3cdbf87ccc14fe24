// Socket conformance of the proxy route: the shipping client's requests (SystemServiceClient::setProxyRoute
// sends params {active,host,port,user:"oap",password}, or {active:false}; getProxyStatus sends no params) and
// the reply shapes it reads (result.state and result.error only: a refused request must be a result, since an
// error object leaves the app's state unchanged), with the real request validation behind the socket.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { SocketServer } from '../../src/ipc/socket-server.js';
import { parseProxyRequest } from '../../src/proxy/request.js';
import type { ProxyStatus } from '../../src/proxy/state.js';
import type { Caller, ProxyReply } from '../../src/service.js';
import { FakeService, LineClient } from './helpers/fake-service.js';

const ACTIVE: ProxyStatus = {
  state: 'active',
  checks: { listener: true, iptables: true, upstream: true },
  error_code: null,
  error: null,
  verified_at: '2026-12-01T22:00:00Z',
  live_check: false,
};
const DISABLED: ProxyStatus = {
  state: 'disabled',
  checks: { listener: false, iptables: false, upstream: false },
  error_code: null,
  error: null,
  verified_at: null,
  live_check: false,
};

/** The fake service with a proxy route that takes whatever the real validation accepts. */
class ProxyFake extends FakeService {
  route: ProxyStatus = DISABLED;
  applied: unknown[] = [];
  async setProxyRoute(params: unknown, _caller: Caller): Promise<ProxyReply> {
    const req = parseProxyRequest(params, '10.0.0.0/24');
    this.applied.push(req);
    this.route = req.active ? ACTIVE : DISABLED;
    return { ok: true, ...this.route };
  }
  async getProxyStatus(verify: boolean): Promise<ProxyReply> {
    return { ok: this.route.state !== 'failed', ...this.route, live_check: verify };
  }
  proxyStatus(): ProxyStatus {
    return this.route;
  }
}

let dir: string;
let service: ProxyFake;
let server: SocketServer;
let client: LineClient;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'oas-ipc-proxy-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

async function fresh(): Promise<void> {
  client?.close();
  if (server) await server.close();
  service = new ProxyFake();
  server = new SocketServer(service, { path: join(dir, 'system.sock'), group: 'no-such-group' });
  await server.start();
  client = await LineClient.connect(join(dir, 'system.sock'));
}

const ON =
  '{"id":"6","method":"set_proxy_route","params":{"active":true,"host":"10.0.0.31","port":1080,"user":"oap","password":"pw-from-phone"}}';

describe('socket conformance: the proxy route', () => {
  beforeEach(fresh);
  after(async () => {
    client.close();
    await server.close();
  });

  it("the contract's set_proxy_route example, byte for byte", async () => {
    assert.equal(
      await client.call(ON),
      '{"id":"6","result":{"ok":true,"state":"active","checks":{"listener":true,"iptables":true,"upstream":true},"error_code":null,"error":null,"verified_at":"2026-12-01T22:00:00Z","live_check":false}}',
    );
  });

  it("the shipping client's requests: on with an IPv6-mapped host, off with only active, status without params", async () => {
    const on = JSON.parse(
      await client.call(
        '{"id":"1","method":"set_proxy_route","params":{"active":true,"host":"::ffff:10.0.0.31","port":1080,"user":"oap","password":"x"}}',
      ),
    ) as { result: { state: string; error: null } };
    assert.equal(on.result.state, 'active');
    assert.equal(on.result.error, null);
    assert.equal((service.applied[0] as { host: string }).host, '10.0.0.31');
    const status = JSON.parse(await client.call('{"id":"2","method":"get_proxy_status"}')) as {
      result: Record<string, unknown>;
    };
    assert.deepEqual(Object.keys(status.result), [
      'ok',
      'state',
      'checks',
      'error_code',
      'error',
      'verified_at',
      'live_check',
    ]);
    assert.equal(status.result.live_check, false);
    const verified = JSON.parse(
      await client.call('{"id":"3","method":"get_proxy_status","params":{"verify":true}}'),
    ) as { result: { live_check: boolean } };
    assert.equal(verified.result.live_check, true);
    assert.equal(
      await client.call('{"id":"4","method":"set_proxy_route","params":{"active":false}}'),
      '{"id":"4","result":{"ok":true,"state":"disabled","checks":{"listener":false,"iptables":false,"upstream":false},"error_code":null,"error":null,"verified_at":null,"live_check":false}}',
    );
  });

  it('a refused request is a result: ok false, the state as it stays, the reason naming the field', async () => {
    await client.call(ON);
    const bad = [
      ['"host":"10.0.0.31\\n"', 'host'],
      ['"host":"phone.local"', 'host'],
      ['"port":0', 'port'],
      ['"port":65536', 'port'],
      ['"port":"1080"', 'port'],
      ['"password":"a\\"b"', 'password'],
      ['"password":"a;b"', 'password'],
      ['"user":"o}ap"', 'user'],
      ['"password":""', 'password'],
      [`"password":"${'p'.repeat(60 * 1024)}"`, 'password'],
    ] as const;
    for (const [member, field] of bad) {
      const line = await client.call(
        `{"id":"9","method":"set_proxy_route","params":{"active":true,"host":"10.0.0.31","port":1080,"user":"oap","password":"pw",${member}}}`,
      );
      const r = JSON.parse(line) as { result?: Record<string, unknown>; error?: unknown };
      assert.equal(r.error, undefined, 'no error object');
      assert.equal(r.result?.ok, false);
      assert.equal(r.result?.state, 'active', 'the route already on is reported as it stays');
      assert.equal(r.result?.error_code, 'invalid_params');
      assert.match(String(r.result?.error), new RegExp(`${field}: `));
      assert.ok(line.length < 1000, 'the long value is not echoed');
    }
    assert.equal(service.applied.length, 1, 'nothing refused reached the route');
    const wrongType = JSON.parse(
      await client.call('{"id":"10","method":"set_proxy_route","params":{"active":"yes"}}'),
    ) as { result: { ok: boolean; error: string } };
    assert.equal(wrongType.result.ok, false);
    assert.match(wrongType.result.error, /active/);
    assert.equal(
      await client.call('{"id":"11","method":"get_proxy_status","params":{"verify":"yes"}}'),
      '{"id":"11","error":{"code":"INVALID_PARAMS","message":"params.verify must be true or false"}}',
    );
  });

  it('over 64 KiB a line stays LINE_TOO_LONG', async () => {
    client.send(
      `{"id":"1","method":"set_proxy_route","params":{"active":true,"host":"10.0.0.31","port":1080,"password":"${'p'.repeat(70 * 1024)}"}}`,
    );
    await client.waitLines(1);
    assert.match(client.lines[0] as string, /"code":"LINE_TOO_LONG"/);
  });

  it('subscribers get proxy_changed with the status object', async () => {
    await client.call('{"id":"1","method":"subscribe"}');
    service.emit('proxyChanged', { ...ACTIVE, state: 'degraded' });
    await client.waitLines(2);
    const ev = JSON.parse(client.lines[1] as string) as { event: string; params: ProxyStatus };
    assert.equal(ev.event, 'proxy_changed');
    assert.equal(ev.params.state, 'degraded');
    assert.deepEqual(Object.keys(ev.params), [
      'state',
      'checks',
      'error_code',
      'error',
      'verified_at',
      'live_check',
    ]);
  });
});
