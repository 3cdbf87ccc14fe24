// Functional checks: is the service doing its job, beyond systemd saying "active"? No child processes:
// interface addresses come from getifaddrs (os.networkInterfaces), networkd's view from
// org.freedesktop.network1, the adapter from BlueZ on the daemon's one bus connection.
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import dbus from 'dbus-next';
import type { Bus } from '../bus/connection.js';
import { errText } from '../log/journal.js';

export interface FunctionalResult {
  ok: boolean;
  detail: string;
}

export interface ApExpectation {
  iface: string;
  apIp: string;
  /** networkd's DHCP pool, as PoolOffset/PoolSize. */
  poolOffset: number;
  poolSize: number;
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
 * Asks networkd whether it configured the link: its administrative state must be 'configured' and its
 * description must show the DHCP server with our pool. systemd 252 exposes Link.Describe() (JSON) on the bus.
 */
export async function checkNetworkd(bus: Bus, exp: ApExpectation): Promise<FunctionalResult> {
  const addr = checkAddress(exp);
  if (!addr.ok) return addr;
  let json: Record<string, unknown>;
  try {
    const reply = await bus.call({
      destination: NETWORK1,
      path: '/org/freedesktop/network1',
      interface: `${NETWORK1}.Manager`,
      member: 'DescribeLink',
      signature: 'i',
      body: [ifindex(exp.iface)],
    });
    json = JSON.parse(String(reply.body[0])) as Record<string, unknown>;
  } catch (err) {
    return { ok: false, detail: `networkd did not describe ${exp.iface}: ${errText(err)}` };
  }
  const state = String(json.AdministrativeState ?? 'unknown');
  if (state !== 'configured') return { ok: false, detail: `networkd reports ${exp.iface} ${state}` };
  const server = json.DHCPServer as { PoolOffset?: number; PoolSize?: number } | undefined;
  if (!server) return { ok: false, detail: `networkd runs no DHCP server on ${exp.iface}` };
  if (server.PoolOffset !== exp.poolOffset || server.PoolSize !== exp.poolSize) {
    return {
      ok: false,
      detail: `DHCP pool is offset ${server.PoolOffset} size ${server.PoolSize}, expected ${exp.poolOffset}/${exp.poolSize}`,
    };
  }
  return { ok: true, detail: `${exp.iface} configured with ${exp.apIp} and DHCP pool ${exp.poolOffset}+${exp.poolSize}` };
}

/** The kernel's index of an interface, read from sysfs (no netlink in Node). */
function ifindex(name: string): number {
  const idx = readIfindex(name);
  if (idx === undefined) throw new Error(`${name} has no ifindex`);
  return idx;
}

function readIfindex(name: string): number | undefined {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name)) return undefined;
  try {
    return Number.parseInt(readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8'), 10);
  } catch {
    return undefined;
  }
}

const BLUEZ = 'org.bluez';

/** hci0 exists and is powered, read from BlueZ's Adapter1 (hciconfig is deprecated). */
export async function checkAdapter(bus: Bus, adapter = 'hci0'): Promise<FunctionalResult> {
  try {
    const reply = await bus.call({
      destination: BLUEZ,
      path: `/org/bluez/${adapter}`,
      interface: 'org.freedesktop.DBus.Properties',
      member: 'Get',
      signature: 'ss',
      body: ['org.bluez.Adapter1', 'Powered'],
    });
    const v = reply.body[0];
    const powered = v instanceof dbus.Variant ? v.value === true : v === true;
    return powered ? { ok: true, detail: `${adapter} is powered` } : { ok: false, detail: `${adapter} is not powered` };
  } catch (err) {
    if (err instanceof dbus.DBusError && /UnknownObject|UnknownMethod|UnknownInterface/.test(err.type)) {
      return { ok: false, detail: `${adapter} does not exist` };
    }
    return { ok: false, detail: `BlueZ did not answer about ${adapter}: ${errText(err)}` };
  }
}

export async function powerOnAdapter(bus: Bus, adapter = 'hci0'): Promise<void> {
  await bus.call({
    destination: BLUEZ,
    path: `/org/bluez/${adapter}`,
    interface: 'org.freedesktop.DBus.Properties',
    member: 'Set',
    signature: 'ssv',
    body: ['org.bluez.Adapter1', 'Powered', new dbus.Variant('b', true)],
  });
}
