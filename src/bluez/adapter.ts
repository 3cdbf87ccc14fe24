// BlueZ Adapter1 settings (name and discoverability) on the daemon's one bus connection.
import dbus from 'dbus-next';
import type { Bus, PropertyTarget } from '../bus/connection.js';

const ADAPTER = 'org.bluez.Adapter1';

/** BlueZ's Adapter1 interface of one adapter (hci0), for Bus.getProperty / setProperty. */
export function adapterTarget(adapter: string): PropertyTarget {
  return { destination: 'org.bluez', path: `/org/bluez/${adapter}`, interface: ADAPTER };
}

function props(bus: Bus, adapter: string) {
  const target = adapterTarget(adapter);
  return {
    getAll: async (): Promise<Record<string, unknown>> => {
      const reply = await bus.call({
        destination: target.destination,
        path: target.path,
        interface: 'org.freedesktop.DBus.Properties',
        member: 'GetAll',
        signature: 's',
        body: [ADAPTER],
      });
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(reply.body[0] as Record<string, unknown>)) {
        out[k] = v instanceof dbus.Variant ? v.value : v;
      }
      return out;
    },
    set: (name: string, signature: string, value: unknown) => bus.setProperty(target, name, signature, value),
  };
}

/**
 * Sets Alias and Discoverable (with DiscoverableTimeout 0 = forever when discoverable), writing only what
 * differs. Discoverable fails while the adapter is powered off, so it is powered on first when needed.
 */
export async function setAdapter(
  bus: Bus,
  want: { alias: string; discoverable: boolean },
  adapter = 'hci0',
): Promise<{ changed: boolean }> {
  const p = props(bus, adapter);
  const now = await p.getAll();
  let changed = false;
  if (now.Alias !== want.alias) {
    await p.set('Alias', 's', want.alias);
    changed = true;
  }
  if (want.discoverable && now.DiscoverableTimeout !== 0) {
    await p.set('DiscoverableTimeout', 'u', 0);
    changed = true;
  }
  if (now.Discoverable !== want.discoverable) {
    if (want.discoverable && now.Powered !== true) await p.set('Powered', 'b', true);
    await p.set('Discoverable', 'b', want.discoverable);
    changed = true;
  }
  return { changed };
}
