// GetStatus answered from a body marshalled once per change of its content. dbus-next marshals the nested
// a{sv} in ~2.4 ms on the interpreter-only node the unit runs, so a caller asking GetStatus in a loop would
// buy the daemon's CPU with no permission at all. The status object itself is cheap to build; its JSON text
// is the cache key, and only the small header is encoded per call (raw-reply.ts).
import dbus from 'dbus-next';
import type { Json } from '../service.js';
import type { DBusMessage } from './connection.js';
import { marshallMessage } from './dbus-next-private.js';
import type { RawReplies } from './raw-reply.js';
import { toVariantDict } from './variant.js';

const SIGNATURE = 'a{sv}';

export class StatusReplyCache {
  private key: string | undefined;
  private body: Buffer | undefined;
  /** Bodies built: how often the content changed. */
  builds = 0;

  constructor(private readonly replies: RawReplies) {}

  /** The marshalled a{sv} body for this status: rebuilt only when the content differs from the last. */
  bodyFor(status: { [key: string]: Json }): Buffer {
    const key = JSON.stringify(status);
    if (key === this.key && this.body) return this.body;
    const template = new dbus.Message({
      type: dbus.MessageType.METHOD_RETURN,
      replySerial: 1 as unknown as string, // dbus-next's typings have it as a string
      signature: SIGNATURE,
      body: [toVariantDict(status)],
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
  reply(call: DBusMessage, status: { [key: string]: Json }): boolean {
    return this.replies.methodReturn(call, SIGNATURE, this.bodyFor(status));
  }
}
