// D-Bus answers whose content changes only now and then, replied from a body marshalled once per change of
// that content. dbus-next would marshal header and body anew for every call on the interpreter-only node the
// unit runs: ~2.4 ms for GetStatus's nested a{sv}, so a caller asking in a loop would buy the daemon's CPU
// with no permission at all; GetHealth's a{ss} changes only with healthChanged. The key is the content's
// JSON text, and only the small header is encoded per call (raw-reply.ts).
import dbus from 'dbus-next';
import type { HealthMap } from '../health/states.js';
import type { Json } from '../service.js';
import type { DBusMessage } from './connection.js';
import { marshallMessage } from './dbus-next-private.js';
import type { RawReplies } from './raw-reply.js';
import { toVariantDict } from './variant.js';

/** One method's reply body, marshalled again only when its key differs from the last. */
class ReplyBodyCache {
  private key: string | undefined;
  private body: Buffer | undefined;
  /** Bodies built: how often the content changed. */
  builds = 0;

  constructor(
    private readonly replies: RawReplies,
    private readonly signature: string,
  ) {}

  /** The marshalled body for the content whose JSON text is `key`; `values` is called only on a change. */
  protected bodyFor(key: string, values: () => unknown[]): Buffer {
    if (key === this.key && this.body) return this.body;
    const template = new dbus.Message({
      type: dbus.MessageType.METHOD_RETURN,
      replySerial: 1 as unknown as string, // dbus-next's typings have it as a string
      signature: this.signature,
      body: values(),
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
  protected send(call: DBusMessage, key: string, values: () => unknown[]): boolean {
    return this.replies.methodReturn(call, this.signature, this.bodyFor(key, values));
  }
}

/** GetHealth: keyed by the map's JSON text, which the daemon itself keeps once per change (healthJson). */
export class HealthReplyCache extends ReplyBodyCache {
  constructor(replies: RawReplies) {
    super(replies, 'a{ss}');
  }

  /** `health` is read only when `key` changed. */
  reply(call: DBusMessage, key: string, health: () => HealthMap): boolean {
    return this.send(call, key, () => [health()]);
  }
}

/** GetStatus: keyed by the dump's JSON text, which the daemon keeps once per change (statusJson). */
export class StatusReplyCache extends ReplyBodyCache {
  constructor(replies: RawReplies) {
    super(replies, 'a{sv}');
  }

  /** `status` is read only when `key` changed. */
  reply(call: DBusMessage, key: string, status: () => { [key: string]: Json }): boolean {
    return this.send(call, key, () => [toVariantDict(status())]);
  }
}
