// Attacks by local users on what the daemon trusts, against the real daemon in the sandbox:
// - forged signals: `stranger` sends unicast systemd, networkd, BlueZ and bus-driver signals to the daemon's
//   unique name (anyone may send a signal to anyone on the system bus); none may restart a unit, flap the
//   health, answer a caller's RestartService early or move the BlueZ profile registration;
// - prototype keys: names like "constructor" or "__proto__" in every method, on D-Bus and the socket, are
//   refused as unknown names with a clean message, and nothing reaches the journal as an error.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  APP_USER,
  BUS_NAME,
  daemonSuiteSkip,
  INTERFACE,
  OBJECT_PATH,
  OTHER_USER,
  Sandbox,
} from './harness.js';
import { getHealth, getStatus, hostapdStarts, waitAllActive } from './helpers-health.js';
import { SOCKET_LINES_CLIENT } from './helpers-socket.js';

const skip = daemonSuiteSkip();
const PYTHON = '/usr/bin/python3';
const PROTO_NAMES = ['constructor', '__proto__', 'toString', 'valueOf', 'hasOwnProperty'];

/**
 * The forger, run as stranger with dbus-python. argv: MODE SECONDS.
 *   state: floods forged unit "failed" PropertiesChanged (hostapd, networkd, bluetooth), JobRemoved for a
 *          range of job ids, networkd link and BlueZ adapter PropertiesChanged, BlueZ ObjectManager
 *          InterfacesRemoved and bus-driver NameOwnerChanged for org.bluez (gone, and taken by the forger);
 *   jobs:  answers every JobNew systemd broadcasts with a forged JobRemoved "failed" for that job, and
 *          plants "failed" results for the next job ids.
 * Meanwhile it counts the daemon's HealthChanged signals. Prints one JSON line: {sent, health_changed}.
 */
const FORGER = `
import json, sys, time
import dbus, dbus.lowlevel
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

DBusGMainLoop(set_as_default=True)
mode, seconds = sys.argv[1], float(sys.argv[2])
bus = dbus.SystemBus()
daemon = bus.get_name_owner('org.openauto.System')
bluez = bus.get_name_owner('org.bluez')
me = bus.get_unique_name()
manager = dbus.Interface(bus.get_object('org.freedesktop.systemd1', '/org/freedesktop/systemd1'),
                         'org.freedesktop.systemd1.Manager')
units = {u: str(manager.GetUnit(u)) for u in ('hostapd.service', 'systemd-networkd.service', 'bluetooth.service')}
state = {'sent': 0, 'health_changed': [], 'last_job': 0}
PROPS = 'org.freedesktop.DBus.Properties'
MANAGER = 'org.freedesktop.systemd1.Manager'

def send(path, iface, member, sig, *args):
    m = dbus.lowlevel.SignalMessage(path, iface, member)
    m.set_destination(daemon)
    m.append(*args, signature=sig)
    bus.send_message(m)
    state['sent'] += 1

def job_removed(job_id, unit):
    send('/org/freedesktop/systemd1', MANAGER, 'JobRemoved', 'uoss', dbus.UInt32(job_id),
         dbus.ObjectPath('/org/freedesktop/systemd1/job/%d' % job_id), unit, 'failed')

def on_health(*args, **kw):
    state['health_changed'].append(' '.join('%s=%s' % kv for kv in sorted(args[0].items())))

bus.add_signal_receiver(on_health, signal_name='HealthChanged', dbus_interface='org.openauto.System1',
                        bus_name='org.openauto.System')

def on_job_new(job_id, path, unit):
    state['last_job'] = max(state['last_job'], int(job_id))
    for _ in range(3):
        job_removed(int(job_id), str(unit))

bus.add_signal_receiver(on_job_new, signal_name='JobNew', dbus_interface=MANAGER,
                        bus_name='org.freedesktop.systemd1')

def failed_props():
    return dbus.Dictionary({
        'ActiveState': dbus.String('failed', variant_level=1),
        'SubState': dbus.String('failed', variant_level=1),
        'Job': dbus.Struct((dbus.UInt32(0), dbus.ObjectPath('/')), signature='uo', variant_level=1),
    }, signature='sv')

def state_batch():
    for path in units.values():
        send(path, PROPS, 'PropertiesChanged', 'sa{sv}as', 'org.freedesktop.systemd1.Unit', failed_props(), [])
    base = state['last_job'] or 1
    for i in range(base, base + 20):
        job_removed(i, 'hostapd.service')
    send('/org/freedesktop/network1/link/_31', PROPS, 'PropertiesChanged', 'sa{sv}as',
         'org.freedesktop.network1.Link',
         dbus.Dictionary({'AdministrativeState': dbus.String('failed', variant_level=1)}, signature='sv'), [])
    send('/org/bluez/hci0', PROPS, 'PropertiesChanged', 'sa{sv}as', 'org.bluez.Adapter1',
         dbus.Dictionary({'Powered': dbus.Boolean(False, variant_level=1)}, signature='sv'), [])
    send('/org/bluez', 'org.freedesktop.DBus.ObjectManager', 'InterfacesRemoved', 'oas',
         dbus.ObjectPath('/org/bluez/hci0'), ['org.bluez.Adapter1'])
    send('/org/freedesktop/DBus', 'org.freedesktop.DBus', 'NameOwnerChanged', 'sss', 'org.bluez', bluez, '')
    send('/org/freedesktop/DBus', 'org.freedesktop.DBus', 'NameOwnerChanged', 'sss', 'org.bluez', '', me)
    return True

def plant_batch():
    if state['last_job']:
        for i in range(state['last_job'] + 1, state['last_job'] + 9):
            job_removed(i, 'hostapd.service')
    return True

loop = GLib.MainLoop()
GLib.timeout_add(5 if mode == 'state' else 20, state_batch if mode == 'state' else plant_batch)
GLib.timeout_add(int(seconds * 1000), loop.quit)
print('READY', flush=True)
loop.run()
print(json.dumps({'sent': state['sent'], 'health_changed': state['health_changed']}), flush=True)
`;

/** Prints the D-Bus error name of RestartService, ApplyConfig and ClaimProfile called with argv[1]. */
const ERROR_NAMES = `
import sys, dbus
name = sys.argv[1]
obj = dbus.SystemBus().get_object('org.openauto.System', '/org/openauto/System')
iface = dbus.Interface(obj, 'org.openauto.System1')
for call in (lambda: iface.RestartService(name), lambda: iface.ApplyConfig(name),
             lambda: iface.ClaimProfile(name, dbus.ObjectPath('/handler'))):
    try:
        call()
        print('no error')
    except dbus.exceptions.DBusException as e:
        print(e.get_dbus_name())
`;

interface ForgerResult {
  sent: number;
  health_changed: string[];
}

function parseForger(stdout: string): ForgerResult {
  const last = stdout.trim().split('\n').pop() ?? '';
  return JSON.parse(last) as ForgerResult;
}

describe('attacks on what the daemon trusts', { skip }, () => {
  let sb: Sandbox;
  const profileView = async () => {
    const st = (await getStatus(sb)) as unknown as { profiles?: Record<string, Record<string, unknown>> };
    return Object.fromEntries(
      Object.entries(st.profiles ?? {}).map(([k, v]) => [
        k,
        { registered: v.registered, owner: v.bluez_owner, registrations: v.registrations },
      ]),
    );
  };
  /** Journal entries of the daemon at priority err or worse since `since` (a journalctl --since value). */
  const errorsSince = async (since: string) =>
    (await sb.journal('openauto-system', { since })).filter((e) => Number(e.PRIORITY) <= 3);
  const since = async () => `@${(await sb.execOk(['date', '+%s.%N'])).trim()}`;

  before(async () => {
    sb = await Sandbox.start({ name: 'attack-signals' });
    await waitAllActive(sb, 30_000);
    // The profiles register with BlueZ in the background; start from a settled registration.
    await sb.waitFor(
      async () => Object.values(await profileView()).every((p) => p.registered === true),
      15_000,
    );
  });
  after(async () => {
    await sb?.stop();
  });

  it('forged systemd, networkd, BlueZ and bus signals from stranger for 10 s change nothing', async () => {
    const startsBefore = await hostapdStarts(sb);
    const profilesBefore = await profileView();
    const t0 = await since();
    const r = await sb.exec([PYTHON, '-c', FORGER, 'state', '10'], { user: OTHER_USER, timeoutMs: 30_000 });
    assert.equal(r.code, 0, `forger failed: ${r.stderr}`);
    const forged = parseForger(r.stdout);
    console.log(`# forged signals sent: ${forged.sent}`);
    assert.ok(forged.sent > 1000, `only ${forged.sent} forged signals were sent`);
    assert.deepEqual(forged.health_changed, [], 'HealthChanged was emitted during the forgery');
    // Let any delayed reaction (a recovery timer, a deferred restart) happen before looking.
    await new Promise((res) => setTimeout(res, 3000));
    assert.equal(await hostapdStarts(sb), startsBefore, 'hostapd was started by a forged signal');
    assert.deepEqual(await getHealth(sb), { hostapd: 'active', networkd: 'active', bluetooth: 'active' });
    assert.deepEqual(await profileView(), profilesBefore, 'the BlueZ profile registration moved');
    const restarts = await sb.journal('openauto-system', { since: t0, match: { SERVICE: 'hostapd' } });
    assert.deepEqual(
      restarts.map((e) => e.MESSAGE),
      [],
      'the daemon logged something about hostapd while only forged signals arrived',
    );
    assert.deepEqual(await errorsSince(t0), []);
  });

  it("forged JobRemoved signals do not answer a caller's RestartService early", async () => {
    await waitAllActive(sb, 30_000);
    const startsBefore = await hostapdStarts(sb);
    const forger = sb.exec([PYTHON, '-c', FORGER, 'jobs', '12'], { user: OTHER_USER, timeoutMs: 30_000 });
    await new Promise((res) => setTimeout(res, 1500));
    // Each answer, with the unit's state right after it: a restart answered only when systemd's job ended
    // leaves the unit active.
    const answers: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await sb.busctl(
        ['call', BUS_NAME, OBJECT_PATH, INTERFACE, 'RestartService', 's', 'hostapd'],
        {
          user: APP_USER,
        },
      );
      answers.push(`${r.code === 0 ? 'ok' : r.stderr.trim()} (${await sb.unitState('hostapd.service')})`);
      await new Promise((res) => setTimeout(res, 500));
    }
    const r = await forger;
    assert.equal(r.code, 0, `forger failed: ${r.stderr}`);
    console.log(`# forged JobRemoved sent: ${parseForger(r.stdout).sent}`);
    assert.deepEqual(answers, Array(4).fill('ok (active)'));
    assert.equal(await hostapdStarts(sb), startsBefore + 4, 'one start of hostapd per RestartService');
    await waitAllActive(sb);
  });

  it('prototype names are unknown services, sections and methods on D-Bus and the socket', async () => {
    const t0 = await since();
    for (const name of PROTO_NAMES) {
      const restart = await sb.busctl(
        ['call', BUS_NAME, OBJECT_PATH, INTERFACE, 'RestartService', 's', name],
        {
          user: APP_USER,
        },
      );
      assert.notEqual(restart.code, 0);
      assert.match(
        restart.stderr,
        /unknown service '.*': use hostapd, networkd or bluetooth/,
        restart.stderr,
      );
      const apply = await sb.busctl(['call', BUS_NAME, OBJECT_PATH, INTERFACE, 'ApplyConfig', 's', name], {
        user: APP_USER,
      });
      assert.notEqual(apply.code, 0);
      assert.match(apply.stderr, /unknown section/, apply.stderr);
      const claim = await sb.busctl(
        ['call', BUS_NAME, OBJECT_PATH, INTERFACE, 'ClaimProfile', 'so', name, '/handler'],
        { user: APP_USER },
      );
      assert.notEqual(claim.code, 0);
      assert.match(claim.stderr, /unknown profile uuid/, claim.stderr);
      // busctl prints only the message: read the error names with dbus-python.
      const names = await sb.execOk([PYTHON, '-c', ERROR_NAMES, name], { user: APP_USER });
      assert.deepEqual(
        names.trim().split('\n'),
        [
          'org.openauto.System1.Error.UnknownService',
          'org.openauto.System1.Error.UnknownSection',
          'org.freedesktop.DBus.Error.InvalidArgs',
        ],
        name,
      );

      const lines = (
        await sb.execOk(
          [
            'node',
            '-e',
            SOCKET_LINES_CLIENT,
            JSON.stringify({ id: 1, method: 'restart_service', params: { name } }),
            JSON.stringify({ id: 2, method: 'apply_config', params: { section: name } }),
            JSON.stringify({ id: 3, method: name }),
          ],
          { user: APP_USER },
        )
      )
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { id: number; error?: { code: string; message: string } });
      const byId = new Map(lines.map((l) => [l.id, l.error?.code]));
      assert.deepEqual(
        [byId.get(1), byId.get(2), byId.get(3)],
        ['UNKNOWN_SERVICE', 'UNKNOWN_SECTION', 'UNKNOWN_METHOD'],
        `${name}: ${JSON.stringify(lines)}`,
      );
    }
    assert.deepEqual(await errorsSince(t0), [], 'a prototype name logged an error');
  });
});
