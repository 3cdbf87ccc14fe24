// BlueZ profiles against real systemd, dbus and polkit, with python3-dbusmock's bluez5 template as
// bluetooth.service. The mock records RegisterProfile (GetCalls) but never calls back, so the test plays
// BlueZ from inside the mock: it adds a method to the mock (org.freedesktop.DBus.Mock.AddMethod) whose
// Python code makes socket pairs and calls our NewConnection from the mock's own connection, the owner of
// org.bluez, the only caller the daemon accepts. The head-unit app is a Python client running as the app
// user that claims the Android Auto profile and writes down what arrives on the sockets it is handed.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  APP_USER,
  BUS_NAME,
  INTERFACE,
  OBJECT_PATH,
  OTHER_USER,
  Sandbox,
  sandboxUnavailable,
} from './harness.js';

const AA = '4de17a00-52cb-11e6-bdf4-0800200c9a66';
const HFP = '0000111f-0000-1000-8000-00805f9b34fb';
const HSP = '00001108-0000-1000-8000-00805f9b34fb';
const PATHS: Record<string, string> = {
  [AA]: '/org/openauto/System/bluez/android_auto',
  [HFP]: '/org/openauto/System/bluez/hfp_ag',
  [HSP]: '/org/openauto/System/bluez/hsp_hs',
};
const LIB = '/usr/local/lib/openauto-sandbox';
const WORK = '/var/tmp/bluez-test';
const CLAIMANT_LOG = `${WORK}/claimant.log`;
const MOCK = ['org.bluez', '/org/bluez', 'org.freedesktop.DBus.Mock'] as const;

// The head-unit app: claims a profile and, for each connection, reads the socket to EOF and writes one JSON
// line (device, data, properties); the first line says it holds the claim.
const CLAIMANT_PY = `import sys, os, json, dbus, dbus.service, dbus.mainloop.glib
from gi.repository import GLib
dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
uuid, log_path = sys.argv[1], sys.argv[2]
bus = dbus.SystemBus()
out = open(log_path, 'a', buffering=1)
def emit(obj):
    out.write(json.dumps(obj) + '\\n')
class Handler(dbus.service.Object):
    @dbus.service.method('org.bluez.Profile1', in_signature='oha{sv}', out_signature='')
    def NewConnection(self, device, fd, props):
        fd = fd.take()
        chunks = []
        def on_io(_source, cond):
            data = b''
            if cond & GLib.IO_IN:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b''
            if data:
                chunks.append(data)
                return True
            emit({'device': str(device), 'data': b''.join(chunks).decode('utf-8', 'replace'),
                  'props': {str(k): int(v) for k, v in props.items()}})
            os.close(fd)
            return False
        GLib.io_add_watch(fd, GLib.PRIORITY_DEFAULT, GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR, on_io)
    @dbus.service.method('org.bluez.Profile1', in_signature='o', out_signature='')
    def RequestDisconnection(self, device):
        emit({'disconnect': str(device)})
    @dbus.service.method('org.bluez.Profile1', in_signature='', out_signature='')
    def Release(self):
        pass
Handler(bus, '/org/example/aa')
system = bus.get_object('org.openauto.System', '/org/openauto/System')
system.ClaimProfile(uuid, dbus.ObjectPath('/org/example/aa'), dbus_interface='org.openauto.System1')
emit({'claimed': bus.get_unique_name()})
GLib.MainLoop().run()
`;

// Runs inside the mock (AddMethod code: "args" and "self" are given, "ret" is the reply). Plays BlueZ:
// COUNT times, a socket pair; one end goes to our NewConnection, PAYLOAD (with {i}) is written on the other
// end once accepted; with CHECK_EOF the other end must then read EOF (nobody kept a copy).
const CONNECT_PY = `import socket, json, dbus
dest, path, count, payload, check_eof = args
res = {'ok': 0, 'rejected': 0, 'errors': [], 'eof': 0, 'no_eof': 0}
for i in range(int(count)):
    a, b = socket.socketpair()
    ufd = dbus.types.UnixFd(a.fileno())
    a.close()
    try:
        self.connection.call_blocking(dest, path, 'org.bluez.Profile1', 'NewConnection', 'oha{sv}',
            (dbus.ObjectPath('/org/bluez/hci0/dev_00_11_22_33_44_55'), ufd, {'Version': dbus.UInt16(0x0102)}),
            timeout=10)
        res['ok'] += 1
        if payload:
            b.sendall(payload.replace('{i}', str(i)).encode())
    except dbus.exceptions.DBusException as e:
        if e.get_dbus_name() == 'org.bluez.Error.Rejected':
            res['rejected'] += 1
        elif len(res['errors']) < 5:
            res['errors'].append('%s: %s' % (e.get_dbus_name(), e.get_dbus_message()))
    del ufd
    if check_eof:
        b.settimeout(2)
        try:
            res['eof' if b.recv(1) == b'' else 'no_eof'] += 1
        except socket.timeout:
            res['no_eof'] += 1
    b.close()
ret = json.dumps(res)
`;

// Someone who is not BlueZ calling our NewConnection (as root: the bus policy lets root through).
const INTRUDER_PY = `import socket, json, sys, dbus
path, count = sys.argv[1], int(sys.argv[2])
bus = dbus.SystemBus()
res = {'accepted': 0, 'errors': {}, 'eof': 0, 'no_eof': 0}
for i in range(count):
    a, b = socket.socketpair()
    ufd = dbus.types.UnixFd(a.fileno())
    a.close()
    try:
        bus.call_blocking('org.openauto.System', path, 'org.bluez.Profile1', 'NewConnection', 'oha{sv}',
            (dbus.ObjectPath('/org/bluez/hci0/dev_00_11_22_33_44_55'), ufd, {}), timeout=10)
        res['accepted'] += 1
    except dbus.exceptions.DBusException as e:
        res['errors'][e.get_dbus_name()] = res['errors'].get(e.get_dbus_name(), 0) + 1
    del ufd
    b.settimeout(2)
    try:
        res['eof' if b.recv(1) == b'' else 'no_eof'] += 1
    except socket.timeout:
        res['no_eof'] += 1
    b.close()
print(json.dumps(res))
`;

interface ConnectResult {
  ok: number;
  rejected: number;
  errors: string[];
  eof: number;
  no_eof: number;
}

type Plain = Record<string, unknown>;

/** busctl --json's {type, data} variants to plain values. */
function unwrap(v: unknown): unknown {
  if (v && typeof v === 'object' && 'type' in v && 'data' in v) {
    const { type, data } = v as { type: string; data: unknown };
    if (type === 'a{sv}')
      return Object.fromEntries(Object.entries(data as Plain).map(([k, x]) => [k, unwrap(x)]));
    if (type === 'av') return (data as unknown[]).map(unwrap);
    return data;
  }
  return v;
}

const skip = sandboxUnavailable();

describe('BlueZ profiles in the sandbox', { skip }, () => {
  let sb: Sandbox;

  const daemonName = async () =>
    String(
      (
        await sb.call(
          'org.freedesktop.DBus',
          '/org/freedesktop/DBus',
          'org.freedesktop.DBus',
          'GetNameOwner',
          ['s', BUS_NAME],
        )
      )[0],
    );

  const profiles = async (): Promise<Record<string, Plain>> => {
    const [st] = await sb.call(BUS_NAME, OBJECT_PATH, INTERFACE, 'GetStatus');
    return unwrap((st as Plain).profiles) as Record<string, Plain>;
  };

  /** RegisterProfile calls the current mock recorded: [object path, uuid, options]. */
  const registerCalls = async (): Promise<{ path: string; uuid: string; options: Plain }[]> => {
    const [calls] = await sb.call(...MOCK, 'GetCalls');
    return (calls as [number, string, unknown[]][])
      .filter(([, method]) => method === 'RegisterProfile')
      .map(([, , args]) => ({
        path: String(unwrap(args[0])),
        uuid: String(unwrap(args[1])),
        options: unwrap(args[2]) as Plain,
      }));
  };

  const installConnect = () =>
    sb.call(...MOCK, 'AddMethod', ['sssss', 'org.openauto.Test', 'Connect', 'ssusb', 's', CONNECT_PY]);

  /** Plays BlueZ from inside the mock (see CONNECT_PY). */
  const connect = async (
    uuid: string,
    count: number,
    payload = '',
    checkEof = false,
  ): Promise<ConnectResult> => {
    const dest = await daemonName();
    const [out] = await sb.call(
      'org.bluez',
      '/org/bluez',
      'org.openauto.Test',
      'Connect',
      ['ssusb', dest, PATHS[uuid] as string, count, payload, checkEof ? 'true' : 'false'],
      { timeoutMs: 120_000 },
    );
    return JSON.parse(String(out)) as ConnectResult;
  };

  const daemonFds = async (): Promise<number> => {
    const pid = (await sb.systemctl(['show', '-P', 'MainPID', 'openauto-system'])).stdout.trim();
    return Number((await sb.execOk(['sh', '-c', `ls /proc/${pid}/fd | wc -l`])).trim());
  };

  const claimantLines = async (): Promise<Plain[]> => {
    const text = await sb.readFile(CLAIMANT_LOG).catch(() => '');
    return text
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Plain);
  };

  const startClaimant = async () => {
    await sb.exec(['rm', '-f', CLAIMANT_LOG]);
    await sb.execOk([
      'systemd-run',
      '--unit=aa-claimant',
      `--uid=${APP_USER}`,
      '/usr/bin/python3',
      `${LIB}/bluez-claimant.py`,
      AA,
      CLAIMANT_LOG,
    ]);
    const first = await sb.waitFor(async () => (await claimantLines())[0], 10_000);
    return String(first.claimed);
  };

  const restartDaemon = async () => {
    await sb.systemctl(['restart', 'openauto-system']);
    assert.equal(await sb.unitState('openauto-system.service'), 'active');
  };

  before(async () => {
    sb = await Sandbox.start({ name: 'bluez' });
    await sb.writeFile(`${LIB}/bluez-claimant.py`, CLAIMANT_PY);
    await sb.writeFile(`${LIB}/bluez-intruder.py`, INTRUDER_PY);
    await sb.execOk(['mkdir', '-p', '-m', '1777', WORK]);
  });

  after(async () => {
    await sb?.stop();
  });

  it('exports three Profile1 objects and registers each with BlueZ, with the right UUIDs and options', async () => {
    const tree = await sb.busctl(['tree', '--list', BUS_NAME]);
    assert.equal(tree.code, 0, tree.stderr);
    for (const p of Object.values(PATHS))
      assert.ok(tree.stdout.split('\n').includes(p), `${p} in ${tree.stdout}`);
    const intro = await sb.busctl(['introspect', BUS_NAME, PATHS[AA] as string, 'org.bluez.Profile1']);
    assert.match(intro.stdout, /\.NewConnection\s+method\s+oha\{sv\}/);
    assert.match(intro.stdout, /\.RequestDisconnection\s+method\s+o\s/);
    assert.match(intro.stdout, /\.Release\s+method\s/);

    const calls = await sb.waitFor(async () => {
      const c = await registerCalls();
      return c.length >= 3 ? c : undefined;
    });
    assert.equal(calls.length, 3);
    assert.deepEqual(calls.map((c) => [c.uuid, c.path]).sort(), Object.entries(PATHS).sort());
    const byUuid = Object.fromEntries(calls.map((c) => [c.uuid, c.options]));
    assert.deepEqual(byUuid[AA], {
      Name: 'OpenAuto Android Auto Wireless',
      Role: 'server',
      Channel: 8,
      RequireAuthentication: true,
      RequireAuthorization: false,
    });
    for (const u of [HFP, HSP]) {
      assert.equal(byUuid[u]?.RequireAuthentication, true);
      assert.equal(byUuid[u]?.RequireAuthorization, false);
      assert.equal(typeof byUuid[u]?.Name, 'string');
    }
    const st = await profiles();
    assert.deepEqual(Object.keys(st).sort(), ['aa', 'hfp-ag', 'hsp-hs']);
    for (const p of Object.values(st)) {
      assert.equal(p.registered, true);
      assert.equal(p.claimed, false);
      assert.equal(p.conflict, false);
    }
  });

  it('systemctl restart bluetooth: all three are registered again within 1 s', async () => {
    const before = await profiles();
    const oldOwner = before.aa?.bluez_owner;
    const r = await sb.systemctl(['restart', 'bluetooth']);
    assert.equal(r.code, 0, r.stderr);
    const t1 = Date.now();
    const calls = await sb.waitFor(
      async () => {
        const c = await registerCalls();
        return c.length >= 3 ? c : undefined;
      },
      1000,
      20,
    );
    const elapsed = Date.now() - t1;
    assert.deepEqual(calls.map((c) => c.uuid).sort(), [AA, HFP, HSP].sort());
    assert.ok(elapsed < 1000, `re-registered after ${elapsed} ms`);
    const st = await profiles();
    for (const p of Object.values(st)) {
      assert.equal(p.registered, true);
      assert.notEqual(p.bluez_owner, oldOwner);
      assert.equal(p.registrations, 2);
    }
    console.log(
      `# re-registered ${elapsed} ms after systemctl restart bluetooth returned (polling included)`,
    );
  });

  it('the app claims the Android Auto profile; bytes written by the "phone" arrive at the app', async () => {
    await installConnect();
    const claimant = await startClaimant();
    const st = await profiles();
    assert.equal(st.aa?.claimed, true);
    assert.equal(st.aa?.claimant, claimant);
    assert.equal(st.aa?.handler, '/org/example/aa');
    const r = await connect(AA, 1, 'hello from the phone');
    assert.deepEqual(r, { ok: 1, rejected: 0, errors: [], eof: 0, no_eof: 0 });
    const got = await sb.waitFor(async () => (await claimantLines()).find((l) => 'data' in l));
    assert.deepEqual(got, {
      device: '/org/bluez/hci0/dev_00_11_22_33_44_55',
      data: 'hello from the phone',
      props: { Version: 0x0102 },
    });
    assert.equal((await profiles()).aa?.forwarded, 1);
  });

  it('an unclaimed profile refuses with org.bluez.Error.Rejected and closes the socket', async () => {
    const r = await connect(HSP, 3, '', true);
    assert.deepEqual(r, { ok: 0, rejected: 3, errors: [], eof: 3, no_eof: 0 });
    assert.equal((await profiles())['hsp-hs']?.rejected, 3);
  });

  it('only the owner of org.bluez may call the Profile1 objects', async () => {
    // Root (allowed by the bus policy) gets AccessDenied from the daemon, and the socket is closed.
    const out = await sb.execOk(['/usr/bin/python3', `${LIB}/bluez-intruder.py`, PATHS[AA] as string, '3']);
    assert.deepEqual(JSON.parse(out), {
      accepted: 0,
      errors: { 'org.freedesktop.DBus.Error.AccessDenied': 3 },
      eof: 3,
      no_eof: 0,
    });
    const st = await profiles();
    assert.equal(st.aa?.refused_callers, 3);
    assert.equal(st.aa?.forwarded, 1, 'nothing reached the app');
    const entries = await sb.journal('openauto-system', {
      match: { ERROR_CODE: 'AccessDenied', PROFILE: 'aa' },
    });
    assert.ok(entries.length >= 3);
    // Any other user is stopped by the bus policy before reaching us.
    const stranger = await sb.exec(
      ['/usr/bin/python3', `${LIB}/bluez-intruder.py`, PATHS[AA] as string, '1'],
      {
        user: OTHER_USER,
      },
    );
    assert.match(stranger.stdout, /org\.freedesktop\.DBus\.Error\.AccessDenied/);
  });

  it('ClaimProfile needs polkit (a stranger is refused) and knows only the enabled UUIDs', async () => {
    await assert.rejects(
      sb.call(BUS_NAME, OBJECT_PATH, INTERFACE, 'ClaimProfile', ['so', HSP, '/x'], { user: OTHER_USER }),
      /Access denied|AccessDenied|not authorized/,
    );
    await assert.rejects(
      sb.call(BUS_NAME, OBJECT_PATH, INTERFACE, 'ClaimProfile', [
        'so',
        '0000110a-0000-1000-8000-00805f9b34fb',
        '/x',
      ]),
      /unknown profile uuid/,
    );
    // Held by the app: anybody else gets Busy.
    await assert.rejects(
      sb.call(BUS_NAME, OBJECT_PATH, INTERFACE, 'ClaimProfile', ['so', AA, '/x']),
      /claimed by another client/,
    );
    assert.equal((await profiles())['hsp-hs']?.claimed, false);
  });

  it('no descriptor leaks: the daemon holds as many fds after 1,000 forwarded and 1,000 refused connections', async () => {
    // Warm up (first-use allocations), then count.
    await connect(AA, 5, 'warm-up {i}');
    await connect(HSP, 5, '', true);
    await sb.waitFor(async () => (await claimantLines()).filter((l) => 'data' in l).length === 6);
    const baseline = await daemonFds();
    const t0 = Date.now();
    const fwd = await connect(AA, 1000, 'connection {i}');
    assert.deepEqual(fwd, { ok: 1000, rejected: 0, errors: [], eof: 0, no_eof: 0 });
    const rej = await connect(HSP, 1000, '', true);
    assert.deepEqual(rej, { ok: 0, rejected: 1000, errors: [], eof: 1000, no_eof: 0 });
    const denied = JSON.parse(
      await sb.execOk(['/usr/bin/python3', `${LIB}/bluez-intruder.py`, PATHS[AA] as string, '100']),
    ) as { eof: number };
    assert.equal(denied.eof, 100);
    const ms = Date.now() - t0;
    const lines = await sb.waitFor(async () => {
      const l = (await claimantLines()).filter((x) => 'data' in x);
      return l.length === 1006 ? l : undefined;
    }, 20_000);
    assert.equal(lines.at(-1)?.data, 'connection 999');
    const now = await sb
      .waitFor(async () => ((await daemonFds()) === baseline ? baseline : undefined), 5000)
      .catch(async () => daemonFds());
    assert.equal(now, baseline, `daemon fds: ${baseline} before, ${now} after`);
    console.log(`# 2,100 connections in ${ms} ms; daemon fds ${baseline} before and after`);
  });

  it('the claimant leaves the bus: its claim is gone and connections are refused again', async () => {
    await sb.systemctl(['stop', 'aa-claimant']);
    const st = await sb.waitFor(async () => {
      const p = await profiles();
      return p.aa?.claimed === false ? p : undefined;
    });
    assert.equal(st.aa?.claimant, undefined);
    const r = await connect(AA, 2, '', true);
    assert.deepEqual(r, { ok: 0, rejected: 2, errors: [], eof: 2, no_eof: 0 });
    const released = await sb.journalMessages('openauto-system', { match: { PROFILE: 'aa' } });
    assert.ok(released.some((m) => /released: its claimant left the bus/.test(m)));
  });

  it('a failing RegisterProfile is retried with backoff and succeeds once BlueZ accepts it', async () => {
    await sb.call(...MOCK, 'AddMethod', [
      'sssss',
      'org.bluez.ProfileManager1',
      'RegisterProfile',
      'osa{sv}',
      '',
      "raise dbus.exceptions.DBusException('not today', name='org.bluez.Error.Failed')",
    ]);
    await sb.call(...MOCK, 'ClearCalls');
    await restartDaemon();
    // 0 s, 1 s, 3 s: at least two failed attempts per profile.
    const st = await sb.waitFor(
      async () => {
        const p = await profiles();
        return Object.values(p).every((x) => Number(x.failures) >= 2) ? p : undefined;
      },
      8000,
      200,
    );
    for (const p of Object.values(st)) {
      assert.equal(p.registered, false);
      assert.equal(p.state, 'retrying');
      assert.equal(p.last_error, 'org.bluez.Error.Failed: not today');
      assert.equal(typeof p.next_attempt, 'string');
    }
    const failed = await registerCalls();
    assert.ok(failed.length >= 6, `${failed.length} calls`);
    const warnings = await sb.journal('openauto-system', { match: { ERROR_CODE: 'RegisterFailed' } });
    assert.ok(warnings.length >= 3);
    assert.ok(warnings.every((e) => e.UUID && e.PROFILE && e.RETRY_IN_MS));
    // BlueZ accepts again: the next retry (at most 4 s away now) registers everything.
    await sb.call(...MOCK, 'AddMethod', [
      'sssss',
      'org.bluez.ProfileManager1',
      'RegisterProfile',
      'osa{sv}',
      '',
      '',
    ]);
    const done = await sb.waitFor(
      async () => {
        const p = await profiles();
        return Object.values(p).every((x) => x.registered) ? p : undefined;
      },
      10_000,
      200,
    );
    for (const p of Object.values(done)) {
      assert.equal(p.failures, 0);
      assert.equal(p.last_error, 'org.bluez.Error.Failed: not today', 'the last error stays visible');
    }
  });

  it('a UUID held by another program is reported as a conflict, not swallowed', async () => {
    await sb.call(...MOCK, 'AddMethod', [
      'sssss',
      'org.bluez.ProfileManager1',
      'RegisterProfile',
      'osa{sv}',
      '',
      `if args[1] == '${HFP}':\n    raise dbus.exceptions.DBusException('UUID already registered', name='org.bluez.Error.NotPermitted')`,
    ]);
    await restartDaemon();
    const st = await sb.waitFor(async () => {
      const p = await profiles();
      return p['hfp-ag']?.conflict === true && p.aa?.registered && p['hsp-hs']?.registered ? p : undefined;
    });
    assert.equal(st['hfp-ag']?.registered, false);
    assert.match(
      String(st['hfp-ag']?.last_error),
      /held by another program.*NotPermitted: UUID already registered/,
    );
    const conflicts = await sb.journal('openauto-system', {
      match: { ERROR_CODE: 'ProfileConflict', UUID: HFP },
    });
    assert.ok(conflicts.length >= 1);
    assert.equal(conflicts[0]?.PRIORITY, '4');
    await sb.call(...MOCK, 'AddMethod', [
      'sssss',
      'org.bluez.ProfileManager1',
      'RegisterProfile',
      'osa{sv}',
      '',
      '',
    ]);
  });

  it('the btProfiles setting decides which profiles exist (e.g. without HFP AG, left to PipeWire)', async () => {
    const defaults = await sb.readFile('/etc/default/openauto-system');
    try {
      await sb.writeFile('/etc/default/openauto-system', `${defaults}\nOPENAUTO_BT_PROFILES=aa,hsp-hs\n`);
      await sb.call(...MOCK, 'ClearCalls');
      await restartDaemon();
      // Every enabled profile registered (the daemon's own status says so): no RegisterProfile is pending.
      await sb.waitFor(async () => {
        const p = await profiles();
        const all = Object.values(p);
        return (
          (all.length >= 2 && all.every((x) => (x as { state?: unknown }).state === 'registered')) ||
          undefined
        );
      });
      assert.deepEqual((await registerCalls()).map((c) => c.uuid).sort(), [AA, HSP].sort());
      const tree = await sb.busctl(['tree', '--list', BUS_NAME]);
      assert.ok(!tree.stdout.includes(PATHS[HFP] as string));
      assert.deepEqual(Object.keys(await profiles()).sort(), ['aa', 'hsp-hs']);
      await assert.rejects(
        sb.call(BUS_NAME, OBJECT_PATH, INTERFACE, 'ClaimProfile', ['so', HFP, '/x']),
        /not enabled on this system/,
      );
    } finally {
      await sb.writeFile('/etc/default/openauto-system', defaults);
    }
  });
});
