// The vocabulary of health shared by the monitor, the D-Bus interface and the socket shim.

/** Health states, exactly as the contract lists them. */
export const HEALTH_STATES = [
  'active',
  'degraded',
  'activating',
  'inactive',
  'failed',
  'missing',
  'unknown',
] as const;
export type HealthState = (typeof HEALTH_STATES)[number];

/** The services the daemon watches, by the short name callers use, with the systemd unit behind each. */
export const SERVICES = {
  hostapd: { unit: 'hostapd.service' },
  networkd: { unit: 'systemd-networkd.service' },
  bluetooth: { unit: 'bluetooth.service' },
} as const;
export type ServiceName = keyof typeof SERVICES;
export const SERVICE_NAMES = Object.keys(SERVICES) as ServiceName[];

/**
 * Every name RestartService / restart_service accepts: the short names and their aliases. A Map, so a
 * caller's "constructor" or "__proto__" is not found on Object's prototype.
 */
const SERVICE_BY_NAME: ReadonlyMap<string, ServiceName> = new Map<string, ServiceName>([
  ...(Object.keys(SERVICES) as ServiceName[]).map((n) => [n, n] as const),
  ['systemd-networkd', 'networkd'],
]);

/** Maps a caller-supplied name to a service, or undefined when it is not one of ours. */
export function resolveServiceName(name: string): ServiceName | undefined {
  return SERVICE_BY_NAME.get(name);
}

export type HealthMap = Record<ServiceName, HealthState>;

export function initialHealth(): HealthMap {
  return { hostapd: 'unknown', networkd: 'unknown', bluetooth: 'unknown' };
}
