// Every reach into dbus-next's private fields (and usocket's, the socket dbus-next reads from) lives here.
// dbus-next has no API for the two things the daemon needs beyond it: noticing that the connection's
// stream ended (pending calls never fail otherwise) and forgetting a timed-out call's reply handler; and the
// unix-fd guard (src/bluez/unix-fds.ts) must see the socket's descriptor queue. package.json pins dbus-next
// to the exact version these were read from; test/unit/dbus-next-private.test.ts fails loudly when an
// upgrade moves any of them.
import type { MessageBus } from 'dbus-next';

/** The socket dbus-next reads messages from: a net.Socket, or a usocket.USocket when fds are negotiated. */
export interface RawStream extends NodeJS.EventEmitter {
  destroyed?: boolean;
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
