// Qt clients (issue 16): the QtDBus proxy qdbusxml2cpp generates from dbus/org.openauto.System1.xml, with
// dbus/openauto-system1-types.h, compiled at test time (test/qt/qt-client.cpp) and run as appuser and as
// stranger inside the sandbox against the real daemon; the same program's QLocalSocket client on the legacy
// socket; and a proxy generated from the live introspection. The checks that depend on members are driven
// by the XML, so members added to it later are covered.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { interfaceElement, type XmlElement } from '../../src/bus/introspection.js';
import {
  APP_CONFIG,
  APP_USER,
  BUS_NAME,
  daemonSuiteSkip,
  INTERFACE,
  OBJECT_PATH,
  OTHER_USER,
  REPO_ROOT,
  Sandbox,
} from './harness.js';

const run = promisify(execFile);
const XML = join(REPO_ROOT, 'dbus', 'org.openauto.System1.xml');
const SOCKET = '/run/openauto/system.sock';
const CLIENT_IN_SANDBOX = '/usr/local/bin/openauto-qt-client';

/** A Qt 6 host tool (qdbusxml2cpp, moc): Debian keeps them in Qt's bin or libexec directory. */
function qtTool(name: string): string | undefined {
  const dirs: string[] = [];
  for (const q of ['QT_HOST_BINS', 'QT_HOST_LIBEXECS']) {
    const r = spawnSync('qtpaths6', ['--query', q], { encoding: 'utf8', timeout: 5000 });
    if (r.status === 0 && r.stdout.trim()) dirs.push(r.stdout.trim());
  }
  dirs.push('/usr/lib/qt6/bin', '/usr/lib/qt6/libexec');
  return dirs.map((d) => join(d, name)).find((p) => existsSync(p));
}

const QDBUSXML2CPP = qtTool('qdbusxml2cpp');
const MOC = qtTool('moc');
const qtMissing =
  !QDBUSXML2CPP || !MOC || spawnSync('pkg-config', ['--exists', 'Qt6DBus', 'Qt6Network']).status !== 0
    ? 'Qt 6 development files are missing (apt-get install qt6-base-dev; scripts/deps.sh does)'
    : undefined;
const skip = daemonSuiteSkip() ?? qtMissing;

async function pkgConfig(flag: '--cflags' | '--libs'): Promise<string[]> {
  const r = await run('pkg-config', [flag, 'Qt6DBus', 'Qt6Network'], { timeout: 5000 });
  return r.stdout.trim().split(/\s+/).filter(Boolean);
}

/**
 * qdbusxml2cpp as the README tells a Qt developer: the types header included, proxy files system1.{h,cpp}.
 * The live introspection also holds the standard interfaces: name ours there.
 */
async function generateProxy(xmlFile: string, dir: string, ...interfaces: string[]): Promise<void> {
  const args = ['-i', 'openauto-system1-types.h', '-p', 'system1', xmlFile, ...interfaces];
  await run(QDBUSXML2CPP as string, args, { timeout: 30_000, cwd: dir });
}

/** g++ with Qt's flags, the generated proxy's directory and dbus/ on the include path; no warning allowed. */
async function compile(dir: string, args: string[]): Promise<void> {
  const cflags = await pkgConfig('--cflags');
  const libs = args.includes('-fsyntax-only') ? [] : await pkgConfig('--libs');
  const r = await run(
    'g++',
    [
      '-std=c++17',
      '-fPIC',
      '-O0',
      '-Wall',
      ...cflags,
      '-I',
      dir,
      '-I',
      join(REPO_ROOT, 'dbus'),
      ...args,
      ...libs,
    ],
    { timeout: 300_000 },
  );
  // A proxy that needs a cast or a conversion to compile is not "works as generated".
  assert.equal(r.stderr.trim(), '', `g++ ${args.join(' ')}: no warning`);
}

/** Generates the proxy from the XML file and builds test/qt/qt-client.cpp against it (one translation unit). */
async function buildClient(dir: string): Promise<string> {
  await generateProxy(XML, dir);
  await run(MOC as string, [join(dir, 'system1.h'), '-o', join(dir, 'moc_system1.cpp')], { timeout: 30_000 });
  const source = join(REPO_ROOT, 'test', 'qt', 'qt-client.cpp');
  await run(MOC as string, [source, '-o', join(dir, 'qt-client.moc')], { timeout: 30_000 });
  const out = join(dir, 'qt-client');
  await compile(dir, [source, '-o', out]);
  return out;
}

type Line = Record<string, unknown>;
function lines(stdout: string): Line[] {
  return stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Line);
}
const warnings = (ls: Line[]) => ls.filter((l) => 'warning' in l).map((l) => l.warning);

/** What a proxy's annotations promise: Qt type name → the D-Bus signature of the argument it names. */
function annotatedTypes(iface: XmlElement): Array<{ where: string; qtType: string; signature: string }> {
  const out: Array<{ where: string; qtType: string; signature: string }> = [];
  for (const member of iface.children) {
    const args = member.children.filter((c) => c.tag === 'arg');
    for (const a of member.children.filter((c) => c.tag === 'annotation')) {
      const name = a.attrs.name ?? '';
      const qtType = a.attrs.value ?? '';
      const where = `${member.tag} ${member.attrs.name} ${name}`;
      if (name === 'org.qtproject.QtDBus.QtTypeName' && member.tag === 'property') {
        out.push({ where, qtType, signature: member.attrs.type ?? '' });
        continue;
      }
      const m = /^org\.qtproject\.QtDBus\.QtTypeName\.(In|Out)(\d+)$/.exec(name);
      if (!m) continue;
      // Method arguments count per direction; a signal's arguments all go out.
      const dir = m[1] === 'In' ? 'in' : 'out';
      const candidates =
        member.tag === 'signal' ? args : args.filter((x) => (x.attrs.direction ?? 'in') === dir);
      out.push({ where, qtType, signature: candidates[Number(m[2])]?.attrs.type ?? '<no such argument>' });
    }
  }
  return out;
}

/** The structure of a JSON value: keys of objects (null members left out), lengths of arrays, value types. */
function shape(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(shape);
  if (v !== null && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== null) o[k] = shape(x);
    return o;
  }
  return typeof v;
}

describe('Qt clients: the generated QtDBus proxy and a QLocalSocket client', { skip }, () => {
  let sb: Sandbox;
  let dir: string;
  let client: string;
  const qt = async (args: string[], user: string, timeoutMs = 30_000) => {
    const r = await sb.exec([CLIENT_IN_SANDBOX, ...args], { user, timeoutMs });
    assert.equal(r.code, 0, `qt-client ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
    return lines(r.stdout);
  };
  const waitHealthy = () =>
    sb.waitFor(async () => {
      const [h] = await sb.call(BUS_NAME, OBJECT_PATH, INTERFACE, 'GetHealth');
      return Object.values(h as Record<string, string>).every((s) => s === 'active');
    }, 20_000);

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'openauto-qt-'));
    // The container boots while the client compiles.
    const [sandbox, binary] = await Promise.allSettled([Sandbox.start({ name: 'qt' }), buildClient(dir)]);
    if (sandbox.status === 'fulfilled') sb = sandbox.value;
    if (sandbox.status === 'rejected') throw sandbox.reason;
    if (binary.status === 'rejected') throw binary.reason;
    client = binary.value;
    // Built on the host, run inside: the container's root is the host's, so Qt's libraries are there.
    await sb.writeFile(CLIENT_IN_SANDBOX, readFileSync(client), 0o755);
    await sb.waitFor(async () => (await sb.unitState('openauto-system.service')) === 'active', 15_000);
  });
  after(async () => {
    await sb?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("every Qt type the XML's annotations name marshals as the annotated signature", async () => {
    const promised = annotatedTypes(interfaceElement(readFileSync(XML, 'utf8'), INTERFACE));
    assert.ok(promised.length > 0);
    const r = await run(client, ['types', ...promised.map((p) => `${p.qtType}=${p.signature}`)], {
      timeout: 10_000,
    });
    const [{ types }] = lines(r.stdout) as [{ types: Record<string, string> }];
    for (const p of promised) assert.equal(types[p.qtType], p.signature, p.where);
  });

  it('the generated proxy reads GetHealth, GetStatus (nested maps unpacked) and every property, as appuser', async () => {
    await waitHealthy();
    const out = await qt(['read'], APP_USER);
    assert.deepEqual(warnings(out), []);
    const get = (k: string) => out.find((l) => k in l)?.[k];
    const health = { hostapd: 'active', networkd: 'active', bluetooth: 'active' };
    assert.deepEqual(get('GetHealth'), health, JSON.stringify(out));

    const status = get('GetStatus') as Record<string, Record<string, Record<string, unknown>>>;
    const version = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).version;
    assert.equal(status.version, version);
    assert.equal(typeof status.uptime, 'number');
    assert.equal(status.services?.hostapd?.active_state, 'active');
    assert.equal(status.services?.hostapd?.functional_ok, true);
    // Nested maps arrive as QDBusArgument (what openAutoPlainMap unpacks); basic values as themselves.
    const raw = get('GetStatusRawTypes') as Record<string, string>;
    for (const k of ['services', 'config', 'profiles']) assert.equal(raw[k], 'QDBusArgument', k);
    assert.equal(raw.version, 'QString');
    assert.equal(raw.uptime, 'qlonglong');

    // Every property of the XML, read through the generated proxy's typed property.
    const props = get('properties') as Record<string, { type: string; valid: boolean; value: unknown }>;
    const file = interfaceElement(readFileSync(XML, 'utf8'), INTERFACE);
    const names = file.children.filter((c) => c.tag === 'property').map((c) => c.attrs.name);
    assert.deepEqual(Object.keys(props).sort(), names.sort());
    for (const [name, p] of Object.entries(props)) assert.ok(p.valid, `property ${name} read as ${p.type}`);
    assert.deepEqual(props.Health?.value, health);
    assert.equal(props.Version?.value, version);
    assert.deepEqual(get('healthGetter'), health);
  });

  it("GetStatus over D-Bus has the socket dump's structure; a null member there is absent on D-Bus", async () => {
    await waitHealthy();
    const [dbusOut, socketOut] = [
      await qt(['read'], APP_USER),
      await qt(['socket', SOCKET, '{"method":"get_status"}'], APP_USER),
    ];
    const viaDbus = dbusOut.find((l) => 'GetStatus' in l)?.GetStatus;
    const viaSocket = socketOut.find((l) => l.method === 'get_status')?.result;
    assert.ok(viaDbus && viaSocket);
    assert.match(JSON.stringify(viaSocket), /:null\b/, 'the socket dump has null members to compare');
    assert.deepEqual(shape(viaDbus), shape(viaSocket));
  });

  it('HealthChanged through the generated signal and PropertiesChanged(Health) follow a kill of hostapd', async () => {
    await waitHealthy();
    const ready = '/tmp/openauto-qt-watch.ready';
    await sb.exec(['rm', '-f', ready]);
    const watching = sb.exec([CLIENT_IN_SANDBOX, 'watch', ready], { user: APP_USER, timeoutMs: 45_000 });
    await sb.waitFor(() => existsSync(join(sb.root, ready)), 20_000);
    await sb.systemctl(['kill', '-s', 'KILL', '--kill-whom=main', 'hostapd.service']);
    const r = await watching;
    const out = lines(r.stdout);
    assert.equal(r.code, 0, `${r.stderr}${r.stdout}`);
    assert.deepEqual(warnings(out), []);
    assert.ok(out.some((l) => l.propertiesConnected === true));
    const seen = (k: string) =>
      out.filter((l) => k in l).map((l) => (l[k] as Record<string, string>).hostapd);
    for (const k of ['HealthChanged', 'PropertiesChanged']) {
      const states = seen(k);
      assert.ok(
        states.some((s) => s !== 'active'),
        `${k}: hostapd never seen down in ${states}`,
      );
      assert.equal(states.at(-1), 'active', `${k}: ${states}`);
    }
    const last = out.find((l) => 'signals' in l) as {
      signals: number;
      timedOut: boolean;
      delivered: string[];
    };
    assert.equal(last.timedOut, false);
    // Every signal of the XML connects through the generated proxy; HealthChanged arrived that way too.
    const file = interfaceElement(readFileSync(XML, 'utf8'), INTERFACE);
    const declared = file.children.filter((c) => c.tag === 'signal').map((c) => c.attrs.name);
    assert.deepEqual(out.find((l) => 'connectedSignals' in l)?.connectedSignals, declared);
    assert.ok(last.delivered.includes('HealthChanged'), JSON.stringify(last));
  });

  it('ApplyConfig and RestartService through the proxy: results, and the contract error names', async () => {
    await waitHealthy();
    const out = await qt(
      [
        'call',
        'ApplyConfig:wifi',
        'ApplyConfig:wifi',
        'ApplyConfig:bogus',
        'RestartService:hostapd',
        'RestartService:sshd',
      ],
      APP_USER,
      60_000,
    );
    assert.deepEqual(warnings(out), []);
    const [first, second, bogus, restart, sshd] = out;
    assert.equal(first?.error, undefined, JSON.stringify(first));
    assert.equal(typeof first?.changed, 'boolean');
    assert.deepEqual(second, { call: 'ApplyConfig:wifi', changed: false, restarted: [] });
    assert.equal(bogus?.error, 'org.openauto.System1.Error.UnknownSection');
    assert.deepEqual(restart, { call: 'RestartService:hostapd', ok: true });
    assert.equal(sshd?.error, 'org.openauto.System1.Error.UnknownService');
    assert.match(String(sshd?.message), /unknown service 'sshd'/);

    // A password WPA2 refuses: InvalidConfig, naming the field; then the valid one back.
    await sb.execOk(['sed', '-i', 's/q7GkL2xPz9RbT4mW/short/', APP_CONFIG]);
    try {
      const [invalid] = await qt(['call', 'ApplyConfig:wifi'], APP_USER);
      assert.equal(invalid?.error, 'org.openauto.System1.Error.InvalidConfig', JSON.stringify(invalid));
      assert.match(String(invalid?.message), /password/);
    } finally {
      await sb.execOk(['sed', '-i', 's/password: short/password: q7GkL2xPz9RbT4mW/', APP_CONFIG]);
    }
  });

  it('stranger reads health but gets AccessDenied from ApplyConfig and RestartService', async () => {
    await waitHealthy();
    const read = await qt(['read'], OTHER_USER);
    assert.deepEqual(read.find((l) => 'GetHealth' in l)?.GetHealth, {
      hostapd: 'active',
      networkd: 'active',
      bluetooth: 'active',
    });
    const out = await qt(['call', 'ApplyConfig:wifi', 'RestartService:hostapd'], OTHER_USER);
    for (const l of out) assert.equal(l.error, 'org.freedesktop.DBus.Error.AccessDenied', JSON.stringify(l));
    assert.equal(out.length, 2);
  });

  it('the QLocalSocket client reads result.ok, result.name, result.state, result.error and error.message', async () => {
    await waitHealthy();
    const out = await qt(
      [
        'socket',
        SOCKET,
        '{"method":"get_health"}',
        '{"method":"apply_config","params":{"section":"wifi"}}',
        '{"method":"apply_config","params":{"section":"bogus"}}',
        '{"method":"restart_service","params":{"name":"hostapd"}}',
        '{"method":"restart_service","params":{"name":"sshd"}}',
        '{"method":"get_proxy_status"}',
      ],
      APP_USER,
      60_000,
    );
    assert.deepEqual(warnings(out), []);
    const [health, apply, bogus, restart, sshd, proxy] = out;
    assert.deepEqual(health?.result, { hostapd: 'active', networkd: 'active', bluetooth: 'active' });
    assert.equal(health?.id, '1');
    assert.equal(apply?.ok, true, JSON.stringify(apply));
    assert.equal(bogus?.ok, undefined);
    assert.match(String(bogus?.message), /bogus/);
    assert.deepEqual(
      { ok: restart?.ok, name: restart?.name },
      { ok: true, name: 'hostapd' },
      JSON.stringify(restart),
    );
    assert.match(String(sshd?.message), /unknown service 'sshd'/);
    // The proxy route lands separately: once the daemon answers get_proxy_status, the app's fields must be
    // there (state always; error as a string or null).
    if (proxy?.message === undefined) {
      assert.match(String(proxy?.state), /^(disabled|active|degraded|failed)$/, JSON.stringify(proxy));
    } else {
      assert.match(String(proxy.message), /get_proxy_status|unknown method/i);
    }
  });

  it('a proxy generated from the live introspection equals the one from the XML, and compiles', async () => {
    const r = await sb.busctl(['introspect', '--xml-interface', BUS_NAME, OBJECT_PATH], { user: OTHER_USER });
    assert.equal(r.code, 0, r.stderr);
    const liveDir = join(dir, 'live');
    mkdirSync(liveDir, { recursive: true });
    const liveXml = join(liveDir, 'introspection.xml');
    writeFileSync(liveXml, r.stdout);
    await generateProxy(liveXml, liveDir, INTERFACE);
    // The generated files differ only in their header comment (the command line that made them).
    const body = (f: string) => readFileSync(f, 'utf8').replace(/^\/\*[\s\S]*?\*\/\n/, '');
    for (const f of ['system1.h', 'system1.cpp'])
      assert.equal(body(join(liveDir, f)), body(join(dir, f)), `${f} from the live introspection`);
    await compile(liveDir, ['-fsyntax-only', join(liveDir, 'system1.cpp')]);
  });

  it("the README's Qt example builds as it stands and prints what the daemon reports", async () => {
    const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
    const code = /```cpp\n([\s\S]*?)```/.exec(readme.slice(readme.indexOf('### Qt clients')))?.[1];
    assert.ok(code, 'a cpp block under "### Qt clients"');
    const exDir = join(dir, 'example');
    mkdirSync(exDir, { recursive: true });
    // Its own file as written, with the generated proxy (from the XML) in the same translation unit.
    writeFileSync(join(exDir, 'example.cpp'), code);
    writeFileSync(
      join(exDir, 'build.cpp'),
      '#include "example.cpp"\n#include "system1.cpp"\n#include "moc_system1.cpp"\n',
    );
    await compile(dir, ['-I', exDir, join(exDir, 'build.cpp'), '-o', join(exDir, 'example')]);
    await sb.writeFile('/usr/local/bin/openauto-qt-example', readFileSync(join(exDir, 'example')), 0o755);
    await waitHealthy();
    // It keeps running for HealthChanged: stopped after 6 s.
    const r = await sb.exec(['/usr/local/bin/openauto-qt-example'], { user: APP_USER, timeoutMs: 6000 });
    assert.equal(r.code, 124, `${r.stderr}${r.stdout}`);
    assert.match(r.stderr, /hostapd is "active"/);
    assert.match(r.stderr, /up \d+ s; hostapd unit "active"/);
    assert.doesNotMatch(r.stderr, /Unexpected|org\.freedesktop\.DBus\.Error|openauto\.System1\.Error/);
  });
});
