// BlueZ Adapter1 settings (name and discoverability) on the daemon's one bus connection.
import dbus from 'dbus-next';
import type { Bus } from '../bus/connection.js';

const BLUEZ = 'org.bluez';
const ADAPTER = 'org.bluez.Adapter1';

function props(bus: Bus, adapter: string) {
  const base = {
    destination: BLUEZ,
    path: `/org/bluez/${adapter}`,
    interface: 'org.freedesktop.DBus.Properties',
  };
  return {
    getAll: async (): Promise<Record<string, unknown>> => {
      const reply = await bus.call({ ...base, member: 'GetAll', signature: 's', body: [ADAPTER] });
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(reply.body[0] as Record<string, unknown>)) {
        out[k] = v instanceof dbus.Variant ? v.value : v;
      }
      return out;
    },
    set: async (name: string, signature: string, value: unknown): Promise<void> => {
      await bus.call({
        ...base,
        member: 'Set',
        signature: 'ssv',
        body: [ADAPTER, name, new dbus.Variant(signature, value)],
      });
    },
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
