// A method call made again and again with the same arguments (the safety-net poll's ListUnitsByNames, every
// 5 s for the daemon's whole life): marshalled once, written with a new serial each time, and its reply's
// body compared as bytes with the last one before dbus-next parses it. On the interpreter-only node the unit
// runs, dbus-next's marshaller was the largest part of an idle daemon's CPU (README, "Performance": idle CPU).
import dbus from 'dbus-next';
import {
  type Bus,
  CALL_TIMEOUT_MS,
  type CallSpec,
  callMessage,
  type DBusMessage,
  DisconnectedError,
} from './connection.js';
import { connectionStream, expectReply, marshallMessage, peekReplies } from './dbus-next-private.js';

const ERROR = 3;

/** What a prepared call's reply said: its parsed message, or that its body is byte for byte the last one. */
export type PreparedReply = { same: false; reply: DBusMessage } | { same: true };

/** Per connection: the prepared calls waiting for a reply that may be left unparsed, by serial. */
const peeking = new WeakMap<Bus, Map<number, PreparedCall>>();

function waitingOn(bus: Bus): Map<number, PreparedCall> {
  let calls = peeking.get(bus);
  if (!calls) {
    const map = new Map<number, PreparedCall>();
    calls = map;
    peeking.set(bus, map);
    peekReplies(
      bus.raw,
      () => map.size > 0,
      (serial, body) => map.get(serial)?.sameBody(serial, body) ?? false,
    );
  }
  return calls;
}

export class PreparedCall {
  private readonly bytes: Buffer;
  private readonly what: string;
  private readonly timeoutMs: number;
  /** The body of the last reply, kept while the caller says it still stands for what it knows. */
  private last: Buffer | undefined;
  /** Serials whose reply was found the same as `last` (and so left unparsed). */
  private readonly sameSerials = new Set<number>();

  constructor(
    private readonly bus: Bus,
    spec: CallSpec,
  ) {
    const msg = callMessage(spec);
    msg.serial = 1;
    [this.bytes] = marshallMessage(msg);
    this.what = `${spec.interface}.${spec.member}`;
    this.timeoutMs = spec.timeoutMs ?? CALL_TIMEOUT_MS;
  }

  /** Forgets the last reply: the next one is parsed whatever it holds. */
  forget(): void {
    this.last = undefined;
  }

  /**
   * Sends the call and resolves with its parsed reply, or with `same` when its body equals the last reply's
   * (only while one is kept: see forget()). Bounded like Bus.call; rejects with DBusError for an error reply.
   */
  async call(): Promise<PreparedReply> {
    const { bus } = this;
    const waiting = waitingOn(bus);
    const serial = bus.raw.newSerial();
    waiting.set(serial, this);
    try {
      const reply = await bus.bounded(serial, this.what, this.timeoutMs, () => this.send(serial));
      if (this.sameSerials.delete(serial)) return { same: true };
      return { same: false, reply };
    } finally {
      waiting.delete(serial);
      this.sameSerials.delete(serial);
    }
  }

  /** From the connection's reader, before parsing: whether the reply to serial can stay unparsed. */
  sameBody(serial: number, body: Buffer): boolean {
    if (this.last?.equals(body)) {
      this.sameSerials.add(serial);
      return true;
    }
    this.last = Buffer.from(body);
    return false;
  }

  private send(serial: number): Promise<DBusMessage> {
    return new Promise((resolve, reject) => {
      expectReply(this.bus.raw, serial, (reply) => {
        if (reply.type === ERROR) reject(new dbus.DBusError(String(reply.errorName), String(reply.body[0])));
        else resolve(reply as unknown as DBusMessage);
      });
      const stream = connectionStream(this.bus.raw);
      if (!stream.writable) {
        reject(new DisconnectedError());
        return;
      }
      const data = Buffer.from(this.bytes);
      data.writeUInt32LE(serial, 8);
      // On the connection's own stream, in order with everything dbus-next writes there (raw-reply.ts too).
      if (stream.supportsUnixFd) stream.write({ data, fds: [] });
      else stream.write(data);
    });
  }
}
