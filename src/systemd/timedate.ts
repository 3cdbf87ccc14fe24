// The clock's timezone through org.freedesktop.timedate1 (bus-activated timedated), never timedatectl.
import type { Bus } from '../bus/connection.js';

const TIMEDATE = {
  destination: 'org.freedesktop.timedate1',
  path: '/org/freedesktop/timedate1',
} as const;

export async function getTimezone(bus: Bus): Promise<string> {
  return String(await bus.getProperty({ ...TIMEDATE, interface: 'org.freedesktop.timedate1' }, 'Timezone'));
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
