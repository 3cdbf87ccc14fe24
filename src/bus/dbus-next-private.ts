// Every reach into dbus-next's private fields (and usocket's, the socket dbus-next reads from) lives here.
// dbus-next has no API for the two things the daemon needs beyond it: noticing that the connection's
// stream ended (pending calls never fail otherwise) and forgetting a timed-out call's reply handler; and the
// unix-fd guard (src/bluez/unix-fds.ts) must see the socket's descriptor queue; the replies a caller can ask
// for in bulk are written on that stream with dbus-next's own marshaller (raw-reply.ts, reply-cache.ts); and
// the safety-net poll's call is written there too, its reply peeked at before dbus-next parses it
// (prepared-call.ts). package.json pins dbus-next to the exact version these were read from;
// test/unit/dbus-next-private.test.ts and prepared-call.test.ts fail loudly when an upgrade moves any of them.
import type { MessageBus } from 'dbus-next';
import { marshallMessage as marshall } from 'dbus-next/lib/marshall-compat.js';

/** The socket dbus-next reads messages from: a net.Socket, or a usocket.USocket when fds are negotiated. */
export interface RawStream extends NodeJS.EventEmitter {
  destroyed?: boolean;
  writable?: boolean;
  /** usocket's flag: writes then take `{ data, fds }`. */
  supportsUnixFd?: boolean;
  /** usocket's native handle; its `fds` queue holds descriptors received and not yet handed out. */
  _wrap?: { fds: number[] } | null;
  read(size?: number, fdSize?: number | null): unknown;
  write(chunk: unknown, encoding?: unknown, cb?: unknown): boolean;
}

interface RawBus {
  _methodReturnHandlers: Record<number, unknown>;
  _connection: { stream: RawStream };
}

/** The connection's underlying stream. */
export function connectionStream(bus: MessageBus): RawStream {
  return (bus as unknown as RawBus)._connection.stream;
}

/** A message as dbus-next hands it to a reply handler (a Message). */
export interface RawReply {
  type: number;
  errorName?: string;
  body: unknown[];
}

/** Has dbus-next hand the reply (method return or error) to `serial` to handler: for a call we wrote ourselves. */
export function expectReply(bus: MessageBus, serial: number, handler: (reply: RawReply) => void): void {
  (bus as unknown as RawBus)._methodReturnHandlers[serial] = handler;
}

const METHOD_RETURN = 2;
const LITTLE_ENDIAN = 0x6c; // 'l'
const REPLY_SERIAL_FIELD = 5;
const SIGNATURE_FIELD = 8;

/**
 * Shows each method return's body bytes to `peek(replySerial, body)` before dbus-next parses the message;
 * when peek returns true, dbus-next does not parse the body (nor convert it): the reply reaches its handler
 * with an empty body. How: dbus-next's reader (lib/message.js, unmarshalMessages) reads the 16-byte fixed
 * header, then fields and body in one read, and parses the body only when a SIGNATURE field is present; the
 * copy handed to it has that field's code set to 0 (INVALID), which its header parser files under a name
 * nothing reads. Installed once per connection; peek runs only when `active()` says a peek is wanted.
 */
export function peekReplies(
  bus: MessageBus,
  active: () => boolean,
  peek: (replySerial: number, body: Buffer) => boolean,
): void {
  const stream = connectionStream(bus);
  const original = stream.read.bind(stream);
  // dbus-next alternates: a fixed header, then that message's fields and body (whichever wrapper asks). A
  // chunk that is not the length the header announced was no header's continuation: looked at afresh.
  let header: Buffer | undefined;
  stream.read = (size?: number, fdSize?: number | null): unknown => {
    const chunk = original(size, fdSize);
    if (chunk === null || chunk === undefined) return chunk;
    // usocket hands out { data, fds } for fields and body (with unix fds negotiated), net.Socket a Buffer.
    const data = Buffer.isBuffer(chunk) ? chunk : (chunk as { data?: unknown }).data;
    if (!Buffer.isBuffer(data)) return chunk;
    const fixed = header;
    header = undefined;
    const fieldsLength = fixed?.readUInt32LE(12) ?? 0;
    const bodyAt = (fieldsLength + 7) & ~7;
    if (fixed === undefined || data.length !== bodyAt + fixed.readUInt32LE(4)) {
      if (data.length === 16 && data[0] === LITTLE_ENDIAN && data[3] === 1) header = data;
      return chunk;
    }
    if (fixed[1] !== METHOD_RETURN || !active()) return chunk;
    const fields = headerFields(data, fieldsLength);
    if (fields?.replySerial === undefined || fields.signatureAt === undefined) return chunk;
    if (!peek(fields.replySerial, data.subarray(bodyAt))) return chunk;
    const copy = Buffer.from(data);
    copy[fields.signatureAt] = 0;
    return Buffer.isBuffer(chunk) ? copy : { ...(chunk as object), data: copy };
  };
}

/** The REPLY_SERIAL value and where the SIGNATURE field starts, from a little-endian fields array (a(yv)). */
function headerFields(
  buf: Buffer,
  length: number,
): { replySerial?: number; signatureAt?: number } | undefined {
  const end = Math.min(length, buf.length);
  const out: { replySerial?: number; signatureAt?: number } = {};
  let o = 0;
  while (o < end) {
    o = (o + 7) & ~7;
    if (o + 3 > end) return undefined;
    const code = buf[o] as number;
    const sigLen = buf[o + 1] as number;
    if (sigLen !== 1) return undefined; // every header field's variant holds one basic type
    const type = String.fromCharCode(buf[o + 2] as number);
    const at = o;
    o += 4;
    if (type === 'u' || type === 'h') {
      o = (o + 3) & ~3;
      if (o + 4 > end) return undefined;
      if (code === REPLY_SERIAL_FIELD) out.replySerial = buf.readUInt32LE(o);
      o += 4;
    } else if (type === 's' || type === 'o') {
      o = (o + 3) & ~3;
      if (o + 4 > end) return undefined;
      o += 4 + buf.readUInt32LE(o) + 1;
    } else if (type === 'g') {
      if (code === SIGNATURE_FIELD) out.signatureAt = at;
      o += 1 + (buf[o] as number) + 1;
    } else {
      return undefined;
    }
  }
  return out;
}

/** Drops the reply handler dbus-next keeps for a call we gave up on (it would otherwise live forever). */
export function forgetReplyHandler(bus: MessageBus, serial: number): void {
  delete (bus as unknown as RawBus)._methodReturnHandlers[serial];
}

/** The descriptors received on the stream and not yet handed to a message; undefined without usocket. */
export function receivedFdQueue(stream: RawStream): number[] | undefined {
  return typeof stream._wrap === 'object' && stream._wrap !== null ? stream._wrap.fds : undefined;
}

/** dbus-next's writer of a whole Message (body of plain values and Variants): [bytes, fds]. Imported, not
 * required at run time, so the bundle uses the very copy of dbus-next (and its Variant class) the rest of the
 * daemon uses. */
export const marshallMessage: (msg: unknown) => [Buffer, number[]] = marshall;
