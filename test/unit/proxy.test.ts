// The proxy route's pure parts: request validation (the bad-input table of the issue), rendering checked by
// the real parsers (redsocks -t, nft -c) and the state and restart rules with a fake clock.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import fc from 'fast-check';
import { ServiceError } from '../../src/errors.js';
import { LISTEN_PORT, nftVars, redsocksVars, renderRoute } from '../../src/proxy/render.js';
import { type ProxyConfig, parseProxyRequest } from '../../src/proxy/request.js';
import { errorOf, RestartSchedule, stateOf } from '../../src/proxy/state.js';
import { TEMPLATES } from '../fixtures/config/harness.js';

const AP = '10.0.0.0/24';
const GOOD = { active: true, host: '10.0.0.31', port: 1080, user: 'oap', password: 's3cret-pass' };
const has = (bin: string) => {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`]);
    return true;
  } catch {
    return false;
  }
};
const tmp = mkdtempSync(path.join(tmpdir(), 'proxy-test-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function refused(params: unknown, field: string): string {
  try {
    parseProxyRequest(params, AP);
  } catch (err) {
    assert.ok(err instanceof ServiceError, 'a ServiceError');
    assert.equal(err.code, 'InvalidArgs');
    assert.match(err.message, new RegExp(`(^|; )${field}: `), `message names ${field}: ${err.message}`);
    return err.message;
  }
  assert.fail(`accepted ${JSON.stringify(params).slice(0, 80)}`);
}

describe('set_proxy_route requests', () => {
  test("the shipping app's request, with the defaults it relies on", () => {
    const r = parseProxyRequest(GOOD, AP);
    assert.deepEqual(r, {
      ...GOOD,
      skip_interfaces: ['lo'],
      skip_networks: ['127.0.0.0/8', '169.254.0.0/16', '10.0.0.0/24', '192.168.0.0/16'],
    });
    assert.deepEqual(parseProxyRequest({ active: false }, AP), { active: false });
    // Turning off needs nothing else, and ignores whatever else comes along (D-Bus always sends all five).
    assert.deepEqual(parseProxyRequest({ active: false, host: 'x"', port: 0 }, AP), { active: false });
  });

  test('an IPv6-mapped host is the IPv4 address; user defaults to oap; skip lists are taken', () => {
    const r = parseProxyRequest(
      {
        active: true,
        host: '::ffff:10.0.0.31',
        port: 1080,
        password: 'pw',
        skip_interfaces: ['lo', 'eth0'],
        skip_networks: ['172.16.0.0/12'],
      },
      AP,
    );
    assert.ok(r.active);
    assert.equal(r.host, '10.0.0.31');
    assert.equal(r.user, 'oap');
    assert.deepEqual(r.skip_interfaces, ['lo', 'eth0']);
    assert.deepEqual(r.skip_networks, ['172.16.0.0/12']);
  });

  test('the bad input table: each refused with the field named, the password never echoed', () => {
    const big = 'a'.repeat(60 * 1024);
    const cases: [Record<string, unknown>, string][] = [
      [{ host: '10.0.0.31\n' }, 'host'],
      [{ host: '10.0.0.31"' }, 'host'],
      [{ host: '10.0.0.31}' }, 'host'],
      [{ host: '10.0.0.31 ' }, 'host'],
      [{ host: ' 10.0.0.31' }, 'host'],
      [{ host: 'phone.local' }, 'host'],
      [{ host: '' }, 'host'],
      [{ host: '127.0.0.1' }, 'host'],
      [{ host: '::1' }, 'host'],
      [{ host: big }, 'host'],
      [{ host: 1 }, 'host'],
      [{ port: 0 }, 'port'],
      [{ port: 65536 }, 'port'],
      [{ port: '1080' }, 'port'],
      [{ port: 10.5 }, 'port'],
      [{ port: null }, 'port'],
      [{ password: 'a"b' }, 'password'],
      [{ password: 'a;b' }, 'password'],
      [{ password: 'a}b' }, 'password'],
      [{ password: 'a{b' }, 'password'],
      [{ password: 'a\\b' }, 'password'],
      [{ password: 'a\nb' }, 'password'],
      [{ password: 'a\0b' }, 'password'],
      [{ password: '' }, 'password'],
      [{ password: big }, 'password'],
      [{ password: 'pässword' }, 'password'],
      [{ password: ['x'] }, 'password'],
      [{ user: 'o"ap' }, 'user'],
      [{ user: 'o;ap' }, 'user'],
      [{ user: 'o}ap' }, 'user'],
      [{ user: 'o\nap' }, 'user'],
      // redsocks' parser takes a quoted "=" for its own '=' (redsocks -t: "assignment has only key <login>").
      [{ user: '=' }, 'user'],
      [{ password: '=' }, 'password'],
      [{ user: '' }, 'user'],
      [{ user: big }, 'user'],
      [{ user: 7 }, 'user'],
      [{ skip_interfaces: ['lo"'] }, 'skip_interfaces.0'],
      [{ skip_interfaces: 'lo' }, 'skip_interfaces'],
      [{ skip_networks: ['10.0.0.0/8; flush ruleset'] }, 'skip_networks.0'],
      [{ skip_networks: ['10.0.0.0/33'] }, 'skip_networks.0'],
    ];
    for (const [change, field] of cases) {
      const message = refused({ ...GOOD, ...change }, field);
      if (typeof change.password === 'string' && change.password.length > 2)
        assert.ok(!message.includes(change.password), 'the password is not echoed');
      assert.ok(message.length < 400, 'the message stays short');
    }
    refused({ ...GOOD, password: undefined }, 'password');
    refused({ active: true }, 'host');
    refused({ active: 'yes' }, 'active');
    refused({}, 'active');
    refused([], 'params');
  });
});

describe('rendering', () => {
  const config = (over: Partial<ProxyConfig> = {}): ProxyConfig => ({
    ...GOOD,
    active: true,
    skip_interfaces: ['lo'],
    skip_networks: ['127.0.0.0/8', '10.0.0.0/24'],
    ...over,
  });

  test('the three files as expected', async () => {
    const r = await renderRoute(TEMPLATES, config(), 'wlan0');
    assert.match(r.redsocks, /\n\tip = 10\.0\.0\.31;\n\tport = 1080;\n/);
    assert.match(r.redsocks, /\n\tlogin = "oap";\n\tpassword = "s3cret-pass";\n/);
    assert.match(r.redsocks, new RegExp(`local_ip = 127\\.0\\.0\\.1;\\n\\tlocal_port = ${LISTEN_PORT};`));
    assert.match(r.nft, /ip daddr 10\.0\.0\.31 tcp dport 1080 return/);
    assert.match(r.nft, /oifname \{ "lo" \} return/);
    assert.match(r.nft, /ip daddr \{ 127\.0\.0\.0\/8, 10\.0\.0\.0\/24 \} return/);
    assert.equal(
      r.env,
      '# Written by openauto-system for set_proxy_route.\nOPENAUTO_PROXY_LINK=wlan0\nOPENAUTO_PROXY_METRIC=4242\n',
    );
    // Only the redsocks file holds the password.
    assert.ok(!r.nft.includes('s3cret') && !r.env.includes('s3cret'));
  });

  test('render refuses an unsafe value that bypassed validation', () => {
    assert.throws(() => redsocksVars(config({ password: 'x";\n}' })), ServiceError);
    assert.throws(() => redsocksVars(config({ user: '=' })), ServiceError);
    assert.throws(() => nftVars(config({ skip_interfaces: ['lo" } accept'] })), ServiceError);
    assert.throws(() => nftVars(config({ host: '1.2.3.4 tcp' })), ServiceError);
  });

  test('any accepted user and password: redsocks -t accepts the file, and it says exactly what was given', {
    skip: !has('redsocks') && 'redsocks is not installed',
  }, async () => {
    const printable = fc.string({
      unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
      minLength: 1,
      maxLength: 40,
    });
    let accepted = 0;
    const reference = (await renderRoute(TEMPLATES, config(), 'wlan0')).redsocks;
    await fc.assert(
      fc.asyncProperty(printable, printable, async (user, password) => {
        let req: ReturnType<typeof parseProxyRequest>;
        try {
          req = parseProxyRequest({ ...GOOD, user, password }, AP);
        } catch {
          // Refused ones must contain a character redsocks' syntax acts on, or be a lone "=".
          assert.ok(
            /["\\;{}]/.test(user + password) || user === '=' || password === '=',
            `${user} ${password}`,
          );
          return;
        }
        assert.ok(req.active);
        accepted++;
        const r = await renderRoute(TEMPLATES, req, 'wlan0');
        const file = path.join(tmp, 'redsocks.conf');
        writeFileSync(file, r.redsocks);
        execFileSync('redsocks', ['-t', '-c', file], { stdio: 'pipe' });
        const lines = r.redsocks.split('\n');
        assert.equal(lines.length, reference.split('\n').length, 'no line added');
        assert.ok(lines.includes(`\tlogin = "${user}";`));
        assert.ok(lines.includes(`\tpassword = "${password}";`));
      }),
      { numRuns: 60 },
    );
    assert.ok(accepted > 10);
  });

  test('nft -c accepts the rendered table', {
    skip: (!has('nft') || process.getuid?.() !== 0) && 'needs nft and root',
  }, async () => {
    const r = await renderRoute(
      TEMPLATES,
      config({ skip_interfaces: ['lo', 'eth0'], skip_networks: ['192.168.0.0/16', '169.254.0.0/16'] }),
      'wlan0',
    );
    const file = path.join(tmp, 'route.nft');
    writeFileSync(file, r.nft);
    execFileSync('nft', ['-c', '-f', file], { stdio: 'pipe' });
  });
});

describe('state and restarts', () => {
  test('state from the checks, and the first problem as error', () => {
    const up = { host: '10.0.0.31', port: 1080 };
    assert.equal(stateOf({ listener: true, iptables: true, upstream: true }), 'active');
    assert.equal(stateOf({ listener: true, iptables: true, upstream: false }), 'degraded');
    assert.equal(stateOf({ listener: false, iptables: true, upstream: true }), 'failed');
    assert.equal(stateOf({ listener: true, iptables: false, upstream: false }), 'failed');
    assert.equal(
      errorOf({ listener: false, iptables: false, upstream: false }, up, 12345).error_code,
      'listener_down',
    );
    assert.equal(
      errorOf({ listener: true, iptables: false, upstream: false }, up, 12345).error_code,
      'routing_missing',
    );
    assert.equal(
      errorOf({ listener: true, iptables: true, upstream: false }, up, 12345).error_code,
      'upstream_unreachable',
    );
    assert.deepEqual(errorOf({ listener: true, iptables: true, upstream: true }, up, 12345), {
      error_code: null,
      error: null,
    });
  });

  test('restart at once, then 3 fast retries 5 s apart, then every 60 s; a recovery resets', () => {
    const s = new RestartSchedule({
      fastRetries: 3,
      fastRetryMs: 5000,
      slowRetryMs: 60000,
      healthyResetMs: 120000,
      resetOnRecovery: true,
    });
    let now = 1000;
    const times: number[] = [];
    for (let i = 0; i < 6; i++) {
      const at = s.down(now);
      assert.equal(s.due(at - 1), at - 1 >= at);
      now = at;
      assert.ok(s.due(now));
      times.push(now);
      s.attempt(now);
      now += 100; // the attempt failed; the unit is seen down again
    }
    assert.deepEqual(times, [1000, 6000, 11000, 16000, 76000, 136000]);
    s.up(now);
    assert.equal(s.retries, 0);
    assert.equal(s.down(now + 10), now + 10, 'after a recovery the first attempt is at once again');
  });

  test('without reset on recovery, 120 s healthy resets the counter', () => {
    const s = new RestartSchedule({
      fastRetries: 3,
      fastRetryMs: 5000,
      slowRetryMs: 60000,
      healthyResetMs: 120000,
      resetOnRecovery: false,
    });
    s.attempt(s.down(0));
    s.up(1000);
    assert.equal(s.retries, 1);
    s.up(100000);
    assert.equal(s.retries, 1);
    s.up(121000);
    assert.equal(s.retries, 0);
  });
});
