// A socket connection's bytes through the openauto-transport addon (native/transport) instead of node's
// net.Socket: under --jitless, node's streams, their timers and write requests cost several times what
// answering a request does. NativeWire offers the part of net.Socket's interface that Connection uses
// (socket-server.ts), with the same events: 'data', 'drain', 'end', 'close', 'error'.
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { errText, log } from '../log/journal.js';

type Addon = typeof import('openauto-transport');

/** The addon, or undefined when it cannot be loaded (connections then use net.Socket, as before). */
export const transport: Addon | undefined = (() => {
  try {
    // A native addon, loaded from node_modules at run time (left out of the bundle).
    return createRequire(import.meta.url)('openauto-transport') as Addon;
  } catch (err) {
    log.warning('the socket transport addon is not available; using node streams', { ERROR: errText(err) });
    return undefined;
  }
})();

/** What Connection needs of a connection: net.Socket has it, and so has NativeWire. */
export interface Wire {
  on(event: 'data', fn: (chunk: Buffer) => void): unknown;
  on(event: 'drain' | 'end' | 'close', fn: () => void): unknown;
  on(event: 'error', fn: (err: Error) => void): unknown;
  pause(): unknown;
  resume(): unknown;
  write(text: string): boolean;
  end(): unknown;
  destroy(): unknown;
  readonly writableLength: number;
  readonly writableEnded: boolean;
  readonly destroyed: boolean;
  readonly readableLength: number;
}

/** A connection's descriptor with reading switched on and off below the stream's pause/resume (the
 * hand-over stops reading whatever the stream wants). Node's stream handle has the same members. */
export interface StreamHandle {
  fd?: number;
  reading?: boolean;
  readStop(): number;
  readStart(): number;
}

export function handleOf(socket: Wire): StreamHandle | undefined {
  if (socket instanceof NativeWire) return socket.handle;
  return (socket as unknown as { _handle?: StreamHandle | null })._handle ?? undefined;
}

export class NativeWire extends EventEmitter implements Wire {
  writableLength = 0;
  writableEnded = false;
  destroyed = false;
  readonly readableLength = 0;
  private readonly h;
  private peerEnded = false;
  private paused = false;
  private handleReading = true;
  readonly handle: StreamHandle;

  /** Takes over fd (closed by destroy()). */
  constructor(
    private readonly addon: Addon,
    fd: number,
  ) {
    super();
    this.h = addon.open(fd, (chunk, code) => this.onEvent(chunk, code));
    const self = this;
    this.handle = {
      get fd() {
        return addon.fd(self.h);
      },
      reading: true,
      readStop() {
        self.handleReading = false;
        self.rewatch();
        return 0;
      },
      readStart() {
        self.handleReading = true;
        self.rewatch();
        return 0;
      },
    };
  }

  private onEvent(chunk: Buffer | null | undefined, code?: number): void {
    if (this.destroyed) return;
    if (chunk) {
      this.emit('data', chunk);
    } else if (chunk === undefined) {
      this.writableLength = 0;
      this.emit('drain');
      this.closeIfDone();
    } else if (code === 0) {
      this.peerEnded = true;
      this.emit('end');
      this.closeIfDone();
    } else {
      // Like net.Socket: 'error' (ECONNRESET from a client gone with answers unread), then 'close'. Never
      // unheard: an unheard 'error' would throw out of the event loop.
      if (this.listenerCount('error') > 0) this.emit('error', new Error(`socket error ${code}`));
      this.destroy();
    }
  }

  private rewatch(): void {
    if (!this.destroyed) this.addon.reading(this.h, this.handleReading && !this.paused);
  }

  pause(): this {
    this.paused = true;
    this.rewatch();
    return this;
  }

  resume(): this {
    this.paused = false;
    this.rewatch();
    return this;
  }

  /** False once the kernel has refused some of it: wait for 'drain'. */
  write(text: string): boolean {
    if (this.destroyed || this.writableEnded) return false;
    const r = this.addon.write(this.h, text);
    if (r < 0) {
      // The peer is gone (EPIPE, ECONNRESET): closed after this call returns, as net.Socket does.
      this.writableLength = 0;
      process.nextTick(() => this.destroy());
      return false;
    }
    this.writableLength = r;
    return r === 0;
  }

  /** Half-close once everything queued is written; closed when the peer has ended too. */
  end(): this {
    if (this.destroyed || this.writableEnded) return this;
    this.writableEnded = true;
    this.addon.end(this.h);
    this.closeIfDone();
    return this;
  }

  private closeIfDone(): void {
    if (this.writableEnded && this.peerEnded && this.writableLength === 0) this.destroy();
  }

  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.addon.close(this.h);
    process.nextTick(() => this.emit('close'));
    return this;
  }
}

/** A wire for a connection node accepted (paused): its descriptor duplicated into a NativeWire, node's
 * copy closed. Undefined without the addon or when dup fails (the caller keeps the net.Socket). */
export function nativeWire(socket: Socket): NativeWire | undefined {
  const fd = transport ? handleOf(socket)?.fd : undefined;
  if (!transport || fd === undefined || fd < 0) return undefined;
  const copy = transport.dup(fd);
  if (copy < 0) return undefined;
  socket.destroy();
  return new NativeWire(transport, copy);
}
