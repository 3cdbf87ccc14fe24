// The repairs beyond a restart: what the monitor and an apply ask networkd and BlueZ to do (functional.ts
// only reads).
import { adapterTarget } from '../bluez/adapter.js';
import { type Bus, NO_AUTO_START } from '../bus/connection.js';
import { readIfindex } from './functional.js';

const NETWORK1 = 'org.freedesktop.network1';

/**
 * Asks networkd to reconfigure one link from its current .network file. A restart of networkd keeps addresses
 * it no longer configures (a changed ap_ip would leave the old one on wlan0); reconfiguring drops them.
 */
export async function reconfigureLink(bus: Bus, iface: string): Promise<void> {
  const index = readIfindex(iface);
  if (index === undefined) throw new Error(`${iface} does not exist`);
  await bus.call({
    destination: NETWORK1,
    path: '/org/freedesktop/network1',
    interface: `${NETWORK1}.Manager`,
    member: 'ReconfigureLink',
    signature: 'i',
    body: [index],
    flags: NO_AUTO_START,
  });
}

export async function powerOnAdapter(bus: Bus, adapter = 'hci0'): Promise<void> {
  await bus.setProperty(adapterTarget(adapter), 'Powered', 'b', true);
}
