// Signals are accepted only from the current owner of the name a handler trusts, on a real (private)
// dbus-daemon: a unicast signal any client sends to our unique name is dropped, ownership changes are
// followed through the bus driver's NameOwnerChanged, and a forged NameOwnerChanged moves nothing.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import dbus from 'dbus-next';
import { BUS_DRIVER, Bus } from '../../src/bus/connection.js';
import { type PrivateBus, privateBusUnavailable, startPrivateBus } from './helpers/bluez-private-bus.js';

const NAME = 'org.example.Trusted';
const IFACE = 'org.example.Signals';
const PATH = '/org/example';

function signal(from: Bus, body: string, destination?: string): void {
  const msg = dbus.Message.newSignal(PATH, IFACE, 'Ping', 's', [body]);
  if (destination) msg.destination = destination;
  from.send(msg);
}

function driverCall(bus: Bus, member: string, signature = '', body: unknown[] = []) {
  return bus.call({
    destination: BUS_DRIVER,
    path: '/org/freedesktop/DBus',
    interface: BUS_DRIVER,
    member,
    signature,
    body,
  });
}

async function waitFor(pred: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('signals from the current owner only', { skip: privateBusUnavailable() }, () => {
  let pb: PrivateBus;
  let daemon: Bus;
  let owner: Bus;
  let intruder: Bus;
  const got: string[] = [];
  const driverSignals: string[] = [];

  /**
   * Everything `from` sent before this call has reached the daemon once the returned promise settles: a
   * round trip through the bus orders `from`'s messages, and a marker from `owner` follows them.
   */
  const flush = async (from: Bus, marker: string, markerFrom: Bus, to?: string) => {
    await driverCall(from, 'GetId');
    signal(markerFrom, marker, to);
    await waitFor(() => got.includes(marker), marker);
  };

  before(async () => {
    pb = await startPrivateBus();
    process.env.DBUS_SYSTEM_BUS_ADDRESS = pb.address;
    process.env.OPENAUTO_LOG_STDERR = '1';
    daemon = await Bus.connect();
    owner = await Bus.connect();
    intruder = await Bus.connect();
    await driverCall(owner, 'RequestName', 'su', [NAME, 4]);
    daemon.onSignal({ sender: NAME, interface: IFACE, member: 'Ping' }, (m) => got.push(String(m.body[0])));
    daemon.onSignal(
      {
        sender: BUS_DRIVER,
        interface: BUS_DRIVER,
        member: 'NameOwnerChanged',
        path: '/org/freedesktop/DBus',
      },
      (m) => driverSignals.push(`${m.body[0]} ${m.body[2]}`),
    );
    await daemon.trackOwner(NAME);
    await daemon.addMatch(`type='signal',sender='${NAME}',interface='${IFACE}'`);
  });
  after(async () => {
    for (const b of [daemon, owner, intruder]) b?.close();
    await pb?.stop();
  });

  it("accepts the owner's broadcast and unicast signals and drops anyone else's", async () => {
    assert.equal(daemon.ownerOf(NAME), owner.uniqueName);
    signal(owner, 'broadcast');
    signal(owner, 'unicast', daemon.uniqueName);
    for (let i = 0; i < 50; i++) signal(intruder, `forged-${i}`, daemon.uniqueName);
    await flush(intruder, 'marker-1', owner, daemon.uniqueName);
    assert.deepEqual(got, ['broadcast', 'unicast', 'marker-1']);
  });

  it('a forged NameOwnerChanged from a client moves nothing', async () => {
    got.length = 0;
    const forged = dbus.Message.newSignal('/org/freedesktop/DBus', BUS_DRIVER, 'NameOwnerChanged', 'sss', [
      NAME,
      owner.uniqueName,
      intruder.uniqueName,
    ]);
    forged.destination = daemon.uniqueName;
    intruder.send(forged);
    signal(intruder, 'forged-after', daemon.uniqueName);
    await flush(intruder, 'marker-2', owner, daemon.uniqueName);
    assert.equal(daemon.ownerOf(NAME), owner.uniqueName);
    assert.deepEqual(got, ['marker-2']);
    assert.deepEqual(driverSignals, [], 'a handler trusting the bus driver saw a client forgery');
  });

  it('follows a change of owner: the new owner is trusted, the old one no longer', async () => {
    got.length = 0;
    await driverCall(owner, 'ReleaseName', 's', [NAME]);
    await driverCall(intruder, 'RequestName', 'su', [NAME, 4]);
    await waitFor(() => daemon.ownerOf(NAME) === intruder.uniqueName, 'the new owner');
    assert.deepEqual(driverSignals, [`${NAME} `, `${NAME} ${intruder.uniqueName}`]);
    signal(owner, 'old-owner', daemon.uniqueName);
    await flush(owner, 'new-owner', intruder, daemon.uniqueName);
    assert.deepEqual(got, ['new-owner']);
    await driverCall(intruder, 'ReleaseName', 's', [NAME]);
    await waitFor(() => daemon.ownerOf(NAME) === undefined, 'no owner');
  });
});
