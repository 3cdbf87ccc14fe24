// Every reach into dbus-next's private fields (and usocket's, the socket dbus-next reads from) lives here.
// dbus-next has no API for the two things the daemon needs beyond it: noticing that the connection's
// stream ended (pending calls never fail otherwise) and forgetting a timed-out call's reply handler; and the
// unix-fd guard (src/bluez/unix-fds.ts) must see the socket's descriptor queue; the replies a caller can ask
// for in bulk are written on that stream with dbus-next's own marshaller (raw-reply.ts, reply-cache.ts).
// package.json pins dbus-next
// to the exact version these were read from; test/unit/dbus-next-private.test.ts fails loudly when an
// upgrade moves any of them.
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
