// Replies written straight onto the daemon's bus connection, with a header encoded here. dbus-next's
// general marshaller costs ~0.13 ms for a reply's header alone and ~2.4 ms for GetStatus's nested a{sv} on
// the interpreter-only node the unit runs: a caller flooding the daemon would buy its CPU with that. Only
// the replies a caller can ask for in bulk go this way: Busy refusals and GetStatus (whose body is
// marshalled once per change of content, reply-cache.ts). The bytes are those dbus-next would write (a
// unit test compares them).
import type { Bus, DBusMessage } from './connection.js';
import { connectionStream } from './dbus-next-private.js';

const METHOD_RETURN = 2;
const ERROR = 3;

// Header field codes (D-Bus specification, "Header Fields").
const ERROR_NAME = 4;
const REPLY_SERIAL = 5;
const DESTINATION = 6;
const SIGNATURE = 8;

type Field = [code: number, type: 'u' | 's' | 'g', value: number | string];

const pad = (n: number, a: number) => (a - (n % a)) % a;

/** Encodes a little-endian message header (fixed part and fields, padded to 8) for a body of bodyLength. */
export function encodeHeader(type: number, serial: number, bodyLength: number, fields: Field[]): Buffer {
  let size = 16;
  for (const [, t, v] of fields) {
    size += pad(size, 8) + 4; // code, signature length, type, NUL
    if (t === 'u') size += pad(size, 4) + 4;
    else if (t === 's') size += pad(size, 4) + 4 + Buffer.byteLength(String(v)) + 1;
    else size += 1 + Buffer.byteLength(String(v)) + 1;
  }
  const buf = Buffer.alloc(size + pad(size, 8));
  buf.write('l', 0, 'latin1');
  buf[1] = type;
  buf[2] = 0; // flags: none, as dbus-next's replies
  buf[3] = 1;
  buf.writeUInt32LE(bodyLength, 4);
  buf.writeUInt32LE(serial, 8);
  let o = 16;
  for (const [code, t, v] of fields) {
    o += pad(o, 8);
    buf[o] = code;
    buf[o + 1] = 1;
    buf.write(t, o + 2, 'latin1');
    o += 4;
    if (t === 'u') {
      o += pad(o, 4);
      buf.writeUInt32LE(Number(v), o);
      o += 4;
    } else if (t === 's') {
      o += pad(o, 4);
      const n = buf.write(String(v), o + 4, 'utf8');
      buf.writeUInt32LE(n, o);
      o += 4 + n + 1;
    } else {
      const n = buf.write(String(v), o + 1, 'latin1');
      buf[o] = n;
      o += 1 + n + 1;
    }
  }
  // The fields array's length counts from its first element (offset 16) to the end of its last one.
  buf.writeUInt32LE(o - 16, 12);
  return buf;
}

/** A body of one string ('s'). */
export function stringBody(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const buf = Buffer.alloc(4 + bytes.length + 1);
  buf.writeUInt32LE(bytes.length, 0);
  bytes.copy(buf, 4);
  return buf;
}

export class RawReplies {
  constructor(private readonly bus: Bus) {}

  /** A method return for `call` with an already marshalled body; false when the connection cannot take it
   * (the caller then answers the ordinary way). */
  methodReturn(call: DBusMessage, signature: string, body: Buffer): boolean {
    const fields: Field[] = [
      [REPLY_SERIAL, 'u', call.serial ?? 0],
      [DESTINATION, 's', call.sender],
      [SIGNATURE, 'g', signature],
    ];
    return this.write(METHOD_RETURN, fields, body);
  }

  /** An error reply (name, message) for `call`; false when the connection cannot take it. */
  error(call: DBusMessage, name: string, text: string): boolean {
    const fields: Field[] = [
      [ERROR_NAME, 's', name],
      [REPLY_SERIAL, 'u', call.serial ?? 0],
      [DESTINATION, 's', call.sender],
      [SIGNATURE, 'g', 's'],
    ];
    return this.write(ERROR, fields, stringBody(text));
  }

  private write(type: number, fields: Field[], body: Buffer): boolean {
    const stream = connectionStream(this.bus.raw);
    if (!stream.writable || this.bus.isClosed) return false;
    const header = encodeHeader(type, this.bus.raw.newSerial(), body.length, fields);
    const data = Buffer.concat([header, body]);
    // On the connection's own stream, in order with everything dbus-next writes there.
    if (stream.supportsUnixFd) stream.write({ data, fds: [] });
    else stream.write(data);
    return true;
  }
}
