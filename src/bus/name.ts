// Owning the well-known name: the last step of start-up (what Type=dbus and activation wait for), through our
// bounded call (dbus-next's requestName has no timeout).
import dbus from 'dbus-next';
import { log } from '../log/journal.js';
import type { Bus } from './connection.js';
import { BUS_NAME } from './system1.js';

function nameCall(member: string, signature: string, body: unknown[]) {
  return {
    destination: 'org.freedesktop.DBus',
    path: '/org/freedesktop/DBus',
    interface: 'org.freedesktop.DBus',
    member,
    signature,
    body,
  };
}

/** Whether we own BUS_NAME now (false, logged: another process does; we do not queue). */
export async function requestName(bus: Bus): Promise<boolean> {
  const reply = Number(
    (await bus.call(nameCall('RequestName', 'su', [BUS_NAME, dbus.NameFlag.DO_NOT_QUEUE]))).body[0],
  );
  if (reply === dbus.RequestNameReply.PRIMARY_OWNER || reply === dbus.RequestNameReply.ALREADY_OWNER)
    return true;
  log.err(`${BUS_NAME} is owned by another process`, { error_code: 'NameTaken' });
  return false;
}

export async function releaseName(bus: Bus, timeoutMs: number): Promise<void> {
  await bus.call({ ...nameCall('ReleaseName', 's', [BUS_NAME]), timeoutMs });
}
