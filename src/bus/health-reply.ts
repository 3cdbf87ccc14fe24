// GetHealth answered from an a{ss} body marshalled once per change of the health map, as GetStatus is
// (status-reply.ts): the map changes only with healthChanged, yet dbus-next would marshal header and body
// anew for every call on the interpreter-only node the unit runs. The key is the map's JSON text, which the
// daemon itself keeps once per change (Daemon.healthJson).
import dbus from 'dbus-next';
// dbus-next's writer is imported, not required at run time: the bundle must use the very copy of dbus-next
// the rest of the daemon uses.
import { marshallMessage } from 'dbus-next/lib/marshall-compat.js';
import type { HealthMap } from '../health/states.js';
import type { DBusMessage } from './connection.js';
import type { RawReplies } from './raw-reply.js';

const SIGNATURE = 'a{ss}';

export class HealthReplyCache {
  private key: string | undefined;
  private body: Buffer | undefined;
  /** Bodies built: how often the map changed. */
  builds = 0;

  constructor(private readonly replies: RawReplies) {}

  /** The marshalled a{ss} body for the map whose JSON text is `key`; `health` is read only on a change. */
  bodyFor(key: string, health: () => HealthMap): Buffer {
    if (key === this.key && this.body) return this.body;
    const template = new dbus.Message({
      type: dbus.MessageType.METHOD_RETURN,
      replySerial: 1 as unknown as string, // dbus-next's typings have it as a string
      signature: SIGNATURE,
      body: [health()],
    });
    template.serial = 1;
    const [whole] = marshallMessage(template);
    // A body starts 8-aligned in a message, as at offset 0: its bytes do not depend on the header.
    const bodyLength = whole.readUInt32LE(4);
    this.body = Buffer.from(whole.subarray(whole.length - bodyLength));
    this.key = key;
    this.builds++;
    return this.body;
  }

  /** Sends the method return for `call`; false when it could not (dbus-next then answers as usual). */
  reply(call: DBusMessage, key: string, health: () => HealthMap): boolean {
    return this.replies.methodReturn(call, SIGNATURE, this.bodyFor(key, health));
  }
}
