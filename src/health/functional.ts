// Functional checks (reads only; the repairs are in repairs.ts): is the service doing its job, beyond systemd
// saying "active"? No child processes:
// interface addresses come from getifaddrs (os.networkInterfaces), networkd's view from
// org.freedesktop.network1, the adapter from BlueZ on the daemon's one bus connection.
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import dbus from 'dbus-next';
import { adapterTarget } from '../bluez/adapter.js';
import { type Bus, NO_AUTO_START } from '../bus/connection.js';
import { errText } from '../log/journal.js';

export interface FunctionalResult {
  ok: boolean;
  detail: string;
}

export interface ApExpectation {
  iface: string;
  apIp: string;
  /** The .network file networkd must have used for the interface (our rendered one), when known. */
  networkFile?: string;
}

export function checkAddress(exp: ApExpectation): FunctionalResult {
  const addrs = networkInterfaces()[exp.iface];
  if (!addrs) return { ok: false, detail: `${exp.iface} does not exist` };
  const v4 = addrs.filter((a) => a.family === 'IPv4').map((a) => a.address);
  if (v4.includes(exp.apIp)) return { ok: true, detail: `${exp.iface} has ${exp.apIp}` };
  return {
    ok: false,
    detail: `${exp.iface} lacks ${exp.apIp} (has ${v4.length ? v4.join(', ') : 'no IPv4 address'})`,
  };
}

const NETWORK1 = 'org.freedesktop.network1';

/**
 * Asks networkd whether it configured the link from our file and runs the DHCP server there. systemd 252's
 * DescribeLink JSON carries AdministrativeState and NetworkFile but not the DHCP pool; the link object has an
 * org.freedesktop.network1.DHCPServer interface only while the server runs, so reading its Leases proves it.
 * The pool itself is what our own rendered file says (NetworkFile must be that file).
 */
export async function checkNetworkd(bus: Bus, exp: ApExpectation): Promise<FunctionalResult> {
  const addr = checkAddress(exp);
  if (!addr.ok) return addr;
  const index = readIfindex(exp.iface);
  if (index === undefined) return { ok: false, detail: `${exp.iface} does not exist` };
  const manager = {
    destination: NETWORK1,
    path: '/org/freedesktop/network1',
    interface: `${NETWORK1}.Manager`,
  };
  let json: Record<string, unknown>;
  let linkPath: string;
  try {
    const link = await bus.call({ ...manager, member: 'GetLinkByIndex', signature: 'i', body: [index] });
    linkPath = String(link.body[1]);
    const reply = await bus.call({ ...manager, member: 'DescribeLink', signature: 'i', body: [index] });
    json = JSON.parse(String(reply.body[0])) as Record<string, unknown>;
  } catch (err) {
    return { ok: false, detail: `networkd did not describe ${exp.iface}: ${errText(err)}` };
  }
  const state = String(json.AdministrativeState ?? 'unknown');
  if (state !== 'configured') return { ok: false, detail: `networkd reports ${exp.iface} ${state}` };
  if (exp.networkFile !== undefined && json.NetworkFile !== exp.networkFile) {
    return {
      ok: false,
      detail: `networkd configured ${exp.iface} from another file than ${exp.networkFile}`,
    };
  }
  try {
    await bus.getProperty(
      { destination: NETWORK1, path: linkPath, interface: `${NETWORK1}.DHCPServer`, flags: NO_AUTO_START },
      'Leases',
    );
  } catch {
    return { ok: false, detail: `networkd runs no DHCP server on ${exp.iface}` };
  }
  return { ok: true, detail: `${exp.iface} configured by networkd with ${exp.apIp} and its DHCP server` };
}

/** The kernel's index of an interface, from sysfs (Node has no netlink API). */
export function readIfindex(name: string): number | undefined {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name)) return undefined;
  try {
    return Number.parseInt(readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8'), 10);
  } catch {
    return undefined;
  }
}

/** hci0 exists and is powered, read from BlueZ's Adapter1 (hciconfig is deprecated). */
export async function checkAdapter(bus: Bus, adapter = 'hci0'): Promise<FunctionalResult> {
  try {
    const powered =
      (await bus.getProperty({ ...adapterTarget(adapter), flags: NO_AUTO_START }, 'Powered')) === true;
    return powered
      ? { ok: true, detail: `${adapter} is powered` }
      : { ok: false, detail: `${adapter} is not powered` };
  } catch (err) {
    if (err instanceof dbus.DBusError && /UnknownObject|UnknownMethod|UnknownInterface/.test(err.type)) {
      return { ok: false, detail: `${adapter} does not exist` };
    }
    return { ok: false, detail: `BlueZ did not answer about ${adapter}: ${errText(err)}` };
  }
}
