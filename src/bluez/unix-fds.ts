// Unix descriptors on the daemon's bus connection. dbus-next 0.10 gives a message every descriptor queued on
// the socket, not the count its header declares, so two queued messages carrying descriptors crash the
// process ("No FDs available"): here each message gets exactly its own, and none is ever left open.
import { closeSync } from 'node:fs';
import type { Bus, DBusMessage } from '../bus/connection.js';
import { connectionStream, type RawStream, receivedFdQueue } from '../bus/dbus-next-private.js';
import { errText, log } from '../log/journal.js';

/** The descriptor count declared by a message's header fields (code 9, UNIX_FDS), 0 when absent. */
export function declaredUnixFds(header: Buffer, fieldsAndBody: Buffer): number {
  if (header.length < 16) return 0;
  const le = header[0] === 0x6c; // 'l'
  const u32 = (b: Buffer, at: number) => (le ? b.readUInt32LE(at) : b.readUInt32BE(at));
  const fieldsLength = u32(header, 12);
  const end = Math.min(fieldsLength, fieldsAndBody.length);
  let pos = 0;
  // Header fields: array of struct (byte code, variant value), each struct 8-aligned. The array starts at
  // message offset 16, itself 8-aligned, so alignment relative to the fields buffer is the same.
  const align = (n: number) => {
    pos = (pos + n - 1) & ~(n - 1);
  };
  while (pos < end) {
    align(8);
    if (pos + 3 > end) return 0;
    const code = fieldsAndBody[pos] as number;
    const sigLen = fieldsAndBody[pos + 1] as number;
    const sig = fieldsAndBody.toString('latin1', pos + 2, pos + 2 + sigLen);
    pos += 2 + sigLen + 1;
    switch (sig) {
      case 'o':
      case 's': {
        align(4);
        if (pos + 4 > end) return 0;
        pos += 4 + u32(fieldsAndBody, pos) + 1;
        break;
      }
      case 'g': {
        if (pos + 1 > end) return 0;
        pos += 1 + (fieldsAndBody[pos] as number) + 1;
        break;
      }
      case 'u': {
        align(4);
        if (pos + 4 > end) return 0;
        const v = u32(fieldsAndBody, pos);
        if (code === 9) return v;
        pos += 4;
        break;
      }
      case 'y':
        pos += 1;
        break;
      default:
        // Not a type the header fields use: stop rather than guess.
        return 0;
    }
  }
  return 0;
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}

export class UnixFdGuard {
  /** Whether descriptors can arrive on this connection at all (fd passing negotiated, usocket present). */
  readonly supported: boolean;
  /** Descriptors of the message being parsed / dispatched right now, by message. */
  private readonly owned = new WeakMap<object, number[]>();
  private lastHeader: Buffer | undefined;
  private lastFds: number[] = [];
  /** Descriptors inside messages not yet written to the socket, with how many such messages hold each. */
  private readonly inFlight = new Map<number, number>();
  private readonly closeAfterSend = new Set<number>();
  private dropped = 0;

  private constructor(bus: Bus) {
    const stream = connectionStream(bus.raw);
    this.supported = receivedFdQueue(stream) !== undefined;
    if (!this.supported) return;
    this.patchRead(stream);
    this.patchReadable(stream);
    this.patchWrite(stream);
    // Runs before dbus-next dispatches the message (bus.js emits 'message' first): from here on the
    // message's descriptors are ours to track; whatever no handler took is closed once dispatch is over.
    bus.raw.on('message', (msg: DBusMessage) => {
      const fds = this.lastFds;
      this.lastFds = [];
      if (fds.length === 0) return;
      this.owned.set(msg, fds);
      queueMicrotask(() => {
        const left = this.owned.get(msg);
        if (!left) return;
        this.owned.delete(msg);
        for (const fd of left) closeQuietly(fd);
      });
    });
  }

  /** Installs the guard on the bus connection (once, before anything can send us descriptors). */
  static install(bus: Bus): UnixFdGuard {
    const existing = guards.get(bus);
    if (existing) return existing;
    const g = new UnixFdGuard(bus);
    guards.set(bus, g);
    if (!g.supported)
      log.warning('unix fd passing is not available on the bus connection', { error_code: 'NoUnixFd' });
    return g;
  }

  /**
   * Takes the descriptors that came with msg: the caller now owns them (and must close them). Call it
   * synchronously while the message is dispatched; afterwards they are already closed.
   */
  take(msg: DBusMessage): number[] {
    const fds = this.owned.get(msg) ?? [];
    this.owned.delete(msg);
    return fds;
  }

  /** Closes fd now, or once every message carrying it has been written to the socket. */
  closeWhenSent(fd: number): void {
    if (this.inFlight.has(fd)) this.closeAfterSend.add(fd);
    else closeQuietly(fd);
  }

  /** Messages dropped because they could not be parsed. */
  get droppedMessages(): number {
    return this.dropped;
  }

  // dbus-next reads a 16-byte fixed header with read(16), then fields and body with read(n, null).
  private patchRead(stream: RawStream): void {
    const original = stream.read.bind(stream);
    stream.read = (size?: number, fdSize?: number | null): unknown => {
      if (fdSize === undefined) {
        const chunk = original(size);
        if (size === 16 && Buffer.isBuffer(chunk)) this.lastHeader = chunk;
        return chunk;
      }
      if (fdSize !== null) return original(size, fdSize);
      const data = original(size);
      if (!Buffer.isBuffer(data)) return data;
      const want = this.lastHeader ? declaredUnixFds(this.lastHeader, data) : 0;
      const queue = receivedFdQueue(stream) ?? [];
      const fds = want > 0 ? queue.splice(0, want) : [];
      this.lastFds = fds;
      return { data, fds };
    };
  }

  // A message dbus-next cannot parse (e.g. an fd index beyond the descriptors sent) throws inside its
  // 'readable' handler. By then it has consumed the message and reset its state to the next header, so
  // dropping the message and calling the handler again keeps the stream in step.
  private patchReadable(stream: RawStream): void {
    for (const listener of stream.listeners('readable') as ((...a: unknown[]) => void)[]) {
      stream.removeListener('readable', listener);
      stream.on('readable', (...args: unknown[]) => {
        for (let i = 0; i < 1000; i++) {
          try {
            listener.apply(stream, args);
            return;
          } catch (err) {
            const fds = this.lastFds;
            this.lastFds = [];
            for (const fd of fds) closeQuietly(fd);
            this.dropped++;
            log.warning('dropped a D-Bus message that could not be parsed', {
              error: errText(err),
              fds: fds.length,
              error_code: 'BadMessage',
            });
          }
        }
      });
    }
  }

  private patchWrite(stream: RawStream): void {
    const original = stream.write.bind(stream);
    stream.write = (chunk: unknown, encoding?: unknown, cb?: unknown): boolean => {
      const fds = (chunk as { fds?: number[] } | null)?.fds;
      if (!Array.isArray(fds) || fds.length === 0) return original(chunk, encoding, cb);
      for (const fd of fds) this.inFlight.set(fd, (this.inFlight.get(fd) ?? 0) + 1);
      const callback = typeof encoding === 'function' ? encoding : cb;
      const done = (...args: unknown[]) => {
        for (const fd of fds) {
          const n = (this.inFlight.get(fd) ?? 1) - 1;
          if (n > 0) {
            this.inFlight.set(fd, n);
            continue;
          }
          this.inFlight.delete(fd);
          if (this.closeAfterSend.delete(fd)) closeQuietly(fd);
        }
        if (typeof callback === 'function') (callback as (...a: unknown[]) => void)(...args);
      };
      return original(chunk, typeof encoding === 'function' ? undefined : encoding, done);
    };
  }
}

const guards = new WeakMap<Bus, UnixFdGuard>();
