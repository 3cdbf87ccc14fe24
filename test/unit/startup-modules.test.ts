// Nothing loaded before ready that ready does not need: under the unit's flags node compiles its own modules in
// the interpreter at every start, so the bundle leaves node:crypto, node:assert, node:v8 and perf_hooks (and xml2js,
// through dbus-next's stand-ins, scripts/bundle-shims/) to their first use, and usocket's logger (`debug`, with
// tty) is never loaded (src/bus/usocket-quiet.ts). The stand-ins must behave as the
// modules they stand in for.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { REPO_ROOT } from '../sandbox/harness.js';
import { privateBusUnavailable, startPrivateBus } from './helpers/bluez-private-bus.js';

const LOADER = join(REPO_ROOT, 'dist', 'bin', 'openauto-system.js');
const SHIMS = join(REPO_ROOT, 'scripts', 'bundle-shims');
const require = createRequire(import.meta.url);

/** The node flags of the shipped unit's ExecStart. */
function unitFlags(): string[] {
  const unit = readFileSync(join(REPO_ROOT, 'systemd', 'openauto-system.service'), 'utf8');
  const line = /^ExecStart=(.*)$/m.exec(unit)?.[1] ?? '';
  return line.split(' ').filter((f) => f.startsWith('--'));
}

/** Node's own modules a child loaded by its exit (process.moduleLoadList), after running `code` (CommonJS). */
function loadedBy(
  code: string,
  args: string[] = [],
  env: Record<string, string> = {},
  stderr?: RegExp,
): Set<string> {
  const preload = `process.on('exit', () => process.stderr.write('\\nLOADED ' + JSON.stringify(process.moduleLoadList) + '\\n'));`;
  const r = spawnSync(process.execPath, [...unitFlags(), '-e', `${preload}\n${code}`, ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', OPENAUTO_LOG_STDERR: '1', ...env },
    timeout: 30_000,
  });
  const line = /^LOADED (.*)$/m.exec(r.stderr)?.[1];
  assert.ok(line, r.stderr);
  if (stderr) assert.match(r.stderr, stderr);
  return new Set(
    (JSON.parse(line) as string[]).filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13)),
  );
}

const DEFERRED = ['crypto', 'assert', 'perf_hooks', 'v8'];
const skip = privateBusUnavailable();

describe('start-up modules', () => {
  it("the daemon's start, as far as connecting to the bus, loads none of node:crypto, node:assert, perf_hooks", () => {
    // No bus at that path: main runs (the STARTUP_MS marks, the watchdog, the settings) and fails at the connect.
    const loaded = loadedBy(
      `process.argv = [process.argv[0], ${JSON.stringify(LOADER)}]; require(${JSON.stringify(LOADER)});`,
      [],
      { DBUS_SYSTEM_BUS_ADDRESS: 'unix:path=/nonexistent/oas-startup-modules-test' },
    );
    assert.ok(loaded.has('net'), 'the bundle was loaded');
    for (const m of DEFERRED) assert.ok(!loaded.has(m), `${m} was loaded`);
  });

  it("… nor tty (usocket's logger) when it connects, authenticates and says Hello on a real bus", {
    skip,
  }, async () => {
    const bus = await startPrivateBus();
    try {
      // systemd is not on this bus: start-up stops right after the connection is made.
      const loaded = loadedBy(
        `process.argv = [process.argv[0], ${JSON.stringify(LOADER)}]; require(${JSON.stringify(LOADER)});`,
        [],
        { DBUS_SYSTEM_BUS_ADDRESS: bus.address },
        /start-up failed .*systemd is not on the bus/,
      );
      for (const m of [...DEFERRED, 'tty']) assert.ok(!loaded.has(m), `${m} was loaded`);
    } finally {
      await bus.stop();
    }
  });

  it('a child that does load them is seen to (the check above can fail)', () => {
    const loaded = loadedBy(
      "require('node:crypto'); require('node:assert'); require('node:v8'); performance.now();",
    );
    for (const m of DEFERRED) assert.ok(loaded.has(m), m);
  });

  it("the assert stand-in loads node:assert only when a check fails, and throws node's AssertionError", () => {
    const shim = join(SHIMS, 'assert.cjs');
    const quiet = loadedBy(`const a = require(${JSON.stringify(shim)}); a(true); a.strictEqual(2, 2, 'x');`);
    assert.ok(!quiet.has('assert'));
    const a = require(shim) as ((v: unknown, m?: string) => void) & {
      strictEqual: (x: unknown, y: unknown, m?: string) => void;
    };
    const real = require('node:assert') as typeof a;
    /** What a call threw: its class, code and message. */
    const thrown = (f: () => void) => {
      try {
        f();
      } catch (err) {
        const e = err as Error & { code?: string };
        return { class: e.constructor, code: e.code, message: e.message };
      }
      assert.fail('nothing thrown');
    };
    assert.deepEqual(
      thrown(() => a(false, 'tree must be one type')),
      thrown(() => real(false, 'tree must be one type')),
    );
    const m = 'variant data should be [signature, data]';
    assert.deepEqual(
      thrown(() => a.strictEqual(3, 2, m)),
      thrown(() => real.strictEqual(3, 2, m)),
    );
    assert.equal(thrown(() => a.strictEqual(3, 2, m)).code, 'ERR_ASSERTION');
    assert.throws(() => a.strictEqual(Number.NaN, 0), { name: 'AssertionError' });
    a.strictEqual(Number.NaN, Number.NaN);
  });

  it('the crypto stand-in gives what node:crypto gives (DBUS_COOKIE_SHA1)', async () => {
    const c = require(join(SHIMS, 'crypto.cjs')) as typeof import('node:crypto');
    const real = await import('node:crypto');
    const h = (m: Pick<typeof real, 'createHash'>) => m.createHash('sha1').update('a:b:c').digest('hex');
    assert.equal(h(c), h(real));
    assert.equal(c.randomBytes(16).length, 16);
    assert.notEqual(c.randomBytes(16).toString('hex'), c.randomBytes(16).toString('hex'));
  });

  it('the xml2js stand-in builds and parses as xml2js does', async () => {
    const shim = require(join(SHIMS, 'xml2js.cjs')) as {
      Builder: new (o?: object) => { buildObject(x: unknown): string };
      Parser: new (o?: object) => { parseString(s: string, cb: (e: unknown, d: unknown) => void): void };
    };
    const real = require('xml2js') as typeof shim;
    const doc = {
      node: { $: { name: '/a' }, interface: [{ $: { name: 'x.Y' }, method: [{ $: { name: 'M' } }] }] },
    };
    const built = new shim.Builder({ headless: true }).buildObject(doc);
    assert.equal(built, new real.Builder({ headless: true }).buildObject(doc));
    assert.match(built, /<method name="M"\/>/);
    const parse = (P: typeof shim.Parser) =>
      new Promise((resolve, reject) => new P().parseString(built, (e, d) => (e ? reject(e) : resolve(d))));
    assert.deepEqual(await parse(shim.Parser), await parse(real.Parser));
  });
});
