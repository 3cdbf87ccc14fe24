// The clock's timezone through org.freedesktop.timedate1 (bus-activated timedated), never timedatectl.
import dbus from 'dbus-next';
import type { Bus } from '../bus/connection.js';

const TIMEDATE = {
  destination: 'org.freedesktop.timedate1',
  path: '/org/freedesktop/timedate1',
} as const;

export async function getTimezone(bus: Bus): Promise<string> {
  const reply = await bus.call({
    ...TIMEDATE,
    interface: 'org.freedesktop.DBus.Properties',
    member: 'Get',
    signature: 'ss',
    body: ['org.freedesktop.timedate1', 'Timezone'],
  });
  const v = reply.body[0];
  return String(v instanceof dbus.Variant ? v.value : v);
}

export async function setTimezone(bus: Bus, tz: string): Promise<void> {
  // interactive=false: we are root; timedated asks polkit about us, which always says yes to root.
  await bus.call({
    ...TIMEDATE,
    interface: 'org.freedesktop.timedate1',
    member: 'SetTimezone',
    signature: 'sb',
    body: [tz, false],
  });
}
