// The legacy NDJSON socket (/run/openauto/system.sock): connections, framing, limits. The protocol itself is
// in protocol.ts; every answer comes from the SystemService, so the shim has no logic of its own.
//
// Behaviour a client can rely on:
// - One JSON object per line each way. "\r\n" is accepted, blank lines are skipped (not answered), a line
//   may arrive in any number of pieces. Every other line gets exactly one answer.
// - Pipelining: lines are handled in the order they arrive. Fast methods (get_health, get_status, ping,
//   subscribe, unsubscribe, every error) answer at once, so their answers keep request order. apply_config
//   and restart_service answer when the service finishes, so a later fast request can be answered before an
//   earlier slow one: match answers by id.
// - At most `maxInFlight` slow requests run per connection; further lines wait (the connection is not read)
//   until one finishes. Likewise a connection whose answers are not being read stops being read itself, and
//   one whose unread output still grows past `maxWriteBufferBytes` (events to a subscriber that never
//   reads) is dropped, so a slow reader never stalls anyone else.
// - A line longer than `maxLineBytes` gets LINE_TOO_LONG (id null), earlier requests still get their
//   answers, then the connection is closed. The rest of the long line is neither buffered nor even read.
// - Fair share of the `maxClients` slots: each connection's peer process is known (SO_PEERCRED, peer.ts).
//   When all slots are taken, a newcomer from a process holding fewer connections than the process holding
//   the most takes one of that process's slots: its oldest connection that has not sent a request yet, else
//   its oldest idle one, else its oldest, gets one INTERNAL_ERROR line and is closed. Otherwise the newcomer
//   gets one INTERNAL_ERROR line ("too many clients") and is closed. So one process holding every slot (a
//   slowloris) cannot lock the app out.
// - A connection that has not completed a request line within `firstLineTimeoutMs` of connecting gets one
//   INTERNAL_ERROR line and is closed, however many bytes it trickles in (the app asks at once).
// - Idle policy, after `idleTimeoutMs` without a byte read or written (checked by one sweep per server at an
//   eighth of it, so up to a quarter later; the sweep runs only while there are connections): a connection
//   with nothing in flight
//   and no subscription gets one INTERNAL_ERROR line ("idle …; closing") and is closed; a subscriber is
//   kept (waiting for events is what it is for); one whose answers have not moved at all in that time (it
//   does not read) is dropped.
// - A client may shut down its sending side after its requests: it still gets every answer (a last line
//   without a newline counts), then the connection ends.
// - Every response line carries the request's id byte for byte; a request without an id, or a line that
//   is not a JSON object, is answered with "id":null.
import type { Socket } from 'node:net';
import net from 'node:net';
import type { HealthMap } from '../health/states.js';
import { errText, log } from '../log/journal.js';
import type { ProxyStatus } from '../proxy/state.js';
import type { SystemService } from '../service.js';
import {
  CONN_PREFIX,
  type FdStore,
  NEW_SUFFIX,
  type StoredConnection,
  SUBSCRIBED_SUFFIX,
  storeBase,
  storeName,
} from './fdstore.js';
import { peerPid } from './peer.js';
import {
  errorLine,
  handleLine,
  healthChangedLine,
  isBlank,
  proxyChangedLine,
  type Session,
} from './protocol.js';
import { type BoundPath, bindPath, listenOn, resolveGroupId, unlinkIfOurs } from './socket-file.js';
import { handleOf, NativeWire, nativeWire, transport, type Wire } from './wire.js';

export interface SocketServerOptions {
  /** Where the socket lives (also used for logs when listenFd is given). */
  path: string;
  /** File mode of the socket; default 0o660. Not applied to a socket passed in by systemd. */
  mode?: number;
  /** Group owning the socket when it exists in groupFile; default 'openauto'. */
  group?: string;
  /** group(5) file to resolve `group` in; default '/etc/group'. */
  groupFile?: string;
  /** Simultaneous connections; default 64. */
  maxClients?: number;
  /** Longest request line in bytes, without its line ending; default 65536. */
  maxLineBytes?: number;
  /** Idle connections (nothing in flight, not subscribed) are closed after this long, and ones that do not
   * read their answers are dropped; default 600000 (10 minutes); 0 disables both. */
  idleTimeoutMs?: number;
  /** An already-listening socket from systemd socket activation (see listenFdsFromEnv). The path is then
   * neither created, chmod'ed nor removed. */
  listenFd?: number;
  /** Slow requests (apply_config, restart_service) running at once per connection; default 4. */
  maxInFlight?: number;
  /** Unread output a connection may pile up before it is dropped; default 1 MiB. */
  maxWriteBufferBytes?: number;
  /** How long close() and closing connections wait for in-flight answers; default 2000 ms. */
  closeGraceMs?: number;
  /** A connection must complete its first request line this soon after connecting; default 10000; 0
   * disables. */
  firstLineTimeoutMs?: number;
  /** systemd's fd store: every accepted connection is stored, so it survives our restart (fdstore.ts). */
  fdStore?: FdStore;
  /** Connections a previous instance stored, adopted by start(). */
  adopt?: StoredConnection[];
}

type Resolved = Required<Omit<SocketServerOptions, 'listenFd' | 'fdStore' | 'adopt'>> & {
  listenFd: number | undefined;
};

const TOO_LONG = Symbol('line too long');
/** Answers are written together up to about this many characters (below the stream's 16 KiB high-water
 * mark for ASCII answers). */
const BATCH_CHARS = 8192;
type Queued = Buffer | typeof TOO_LONG;

export class SocketServer {
  private readonly opts: Resolved;
  private server: net.Server | undefined;
  private bound: BoundPath | undefined;
  private readonly connections = new Set<Connection>();
  private readonly strays = new Set<Socket>();
  private nextId = 1;
  /** Stored connections' names start with this: unique to this instance, so never one a predecessor used. */
  private readonly storePrefix = `${CONN_PREFIX}${process.pid.toString(36)}${Date.now().toString(36)}-`;
  /** Handing over: connections that close now are not taken out of the store. */
  private handingOver = false;
  /** One coarse timer for every connection's idle policy (see sweepIdle). */
  private idleSweep: NodeJS.Timeout | undefined;
  private readonly onHealthChanged = (health: HealthMap) => this.broadcastHealth(health);
  private readonly onProxyChanged = (status: ProxyStatus) => this.broadcast(proxyChangedLine(status));

  private readonly fdStore: FdStore | undefined;
  private adopt: StoredConnection[];

  constructor(
    private readonly service: SystemService,
    opts: SocketServerOptions,
  ) {
    this.fdStore = opts.fdStore;
    this.adopt = opts.adopt ?? [];
    this.opts = {
      path: opts.path,
      mode: opts.mode ?? 0o660,
      group: opts.group ?? 'openauto',
      groupFile: opts.groupFile ?? '/etc/group',
      maxClients: opts.maxClients ?? 64,
      maxLineBytes: opts.maxLineBytes ?? 65536,
      idleTimeoutMs: opts.idleTimeoutMs ?? 600_000,
      listenFd: opts.listenFd,
      maxInFlight: opts.maxInFlight ?? 4,
      maxWriteBufferBytes: opts.maxWriteBufferBytes ?? 1024 * 1024,
      closeGraceMs: opts.closeGraceMs ?? 2000,
      firstLineTimeoutMs: opts.firstLineTimeoutMs ?? 10_000,
    };
  }

  /** Listens (binding the path, or adopting listenFd). Rejects if the path is taken by a live socket or by
   * something that is not a socket. May be called again after close(). */
  async start(): Promise<void> {
    if (this.server) throw new Error('socket server already started');
    // Half-open allowed: a client may send its requests and shut down its side (`socat`, `nc -N`) and still
    // receive every answer; the connection ends once they are all written.
    // Paused: with the transport addon a connection's bytes never go through node's stream (wire.ts).
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: transport !== undefined });
    server.on('connection', (socket) => this.accept(socket));
    server.on('error', (err) =>
      log.err('socket server error', { PATH: this.opts.path, ERROR: errText(err) }),
    );
    this.server = server;
    try {
      if (this.opts.listenFd !== undefined) {
        await listenOn(server, { fd: this.opts.listenFd });
      } else {
        const gid = await resolveGroupId(this.opts.group, this.opts.groupFile);
        if (gid === undefined) {
          log.notice('socket group does not exist; only root can connect', { GROUP: this.opts.group });
        }
        this.bound = await bindPath(server, this.opts.path, this.opts.mode, gid);
      }
    } catch (err) {
      this.server = undefined;
      throw err;
    }
    this.service.on('healthChanged', this.onHealthChanged);
    this.service.on('proxyChanged', this.onProxyChanged);
    this.adoptStored();
    log.info('socket listening', {
      PATH: this.opts.path,
      ACTIVATED: this.opts.listenFd !== undefined,
    });
  }

  /** Stops serving. With an fd store the connections are handed over (handOver), not closed: stopping is
   * then always a hand-over, whoever stops us; systemd closes them if the unit stops for good. */
  async close(): Promise<void> {
    return this.fdStore ? this.handOver() : this.closeAll();
  }

  /** Stops accepting, removes the socket file it created, lets in-flight answers out for up to closeGraceMs,
   * then closes every connection. */
  private async closeAll(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    this.stopSweep();
    this.service.off('healthChanged', this.onHealthChanged);
    this.service.off('proxyChanged', this.onProxyChanged);
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    if (this.bound) {
      await unlinkIfOurs(this.bound);
      this.bound = undefined;
    }
    for (const c of this.connections) c.shutdown();
    for (const s of this.strays) s.destroy();
    await closed;
    // node's server counts only the connections it reads itself, not the ones on the transport addon.
    while (this.connections.size > 0) await new Promise((r) => setTimeout(r, 5));
  }

  /**
   * Graceful stop with the fd store: stop accepting and reading, answer every complete request already
   * read (and finish a line half read), let the answers out, then close our copies only: systemd's stored
   * copies keep the connections open for the next instance. Bounded by closeGraceMs; without a store this
   * is close().
   */
  async handOver(): Promise<void> {
    const server = this.server;
    if (!server) return;
    if (!this.fdStore) return this.closeAll();
    this.server = undefined;
    this.handingOver = true;
    this.stopSweep();
    this.service.off('healthChanged', this.onHealthChanged);
    this.service.off('proxyChanged', this.onProxyChanged);
    server.close();
    if (this.bound) {
      await unlinkIfOurs(this.bound);
      this.bound = undefined;
    }
    for (const s of this.strays) s.destroy();
    const conns = [...this.connections];
    for (const c of conns) c.beginHandOver();
    const deadline = Date.now() + this.opts.closeGraceMs;
    while (conns.some((c) => !c.handedOver) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
    let unfinished = 0;
    for (const c of conns) {
      if (!c.handedOver) unfinished++;
      // One we were closing anyway (idle, over-long line) is not handed on.
      if (c.closing && c.storeName !== undefined) this.fdStore.remove(c.storeName);
      c.release();
    }
    log.info('socket connections handed over to systemd', {
      COUNT: conns.length,
      UNFINISHED: unfinished,
    });
  }

  /** Arms the idle sweep (while there are connections: an idle daemon without clients never wakes for it). */
  private armSweep(): void {
    if (this.idleSweep || this.opts.idleTimeoutMs <= 0 || !this.server) return;
    // Why not socket.setTimeout: it re-arms a timer on every read and every write, which costs more per
    // request than the request itself under --jitless. A sweep at an eighth of the timeout closes an idle
    // connection between 1 and 1.25 timeouts after its last byte.
    this.idleSweep = setInterval(
      () => this.sweepIdle(),
      Math.max(5, Math.floor(this.opts.idleTimeoutMs / 8)),
    );
    this.idleSweep.unref();
  }

  /** Whether the idle sweep's timer is armed (GetStatus does not show it; the tests read it). */
  get sweeping(): boolean {
    return this.idleSweep !== undefined;
  }

  private stopSweep(): void {
    if (this.idleSweep) clearInterval(this.idleSweep);
    this.idleSweep = undefined;
  }

  /** Applies the idle policy to every connection that has had no byte read or written since the sweep
   * before last. */
  private sweepIdle(): void {
    if (this.connections.size === 0) {
      this.stopSweep();
      return;
    }
    const now = Date.now();
    for (const c of this.connections) c.checkIdle(now);
  }

  /** Open connections (not counting ones being turned away). */
  get clientCount(): number {
    return this.connections.size;
  }

  /** Takes over the connections a previous instance stored (their names stay, so do their entries). */
  private adoptStored(): void {
    const stored = this.adopt;
    this.adopt = [];
    let adopted = 0;
    for (const { fd, name } of stored) {
      let socket: Wire;
      try {
        socket = transport
          ? new NativeWire(transport, fd)
          : new net.Socket({ fd, readable: true, writable: true, allowHalfOpen: true });
      } catch (err) {
        log.warning('a stored socket connection cannot be adopted; dropping it', {
          FDNAME: name,
          ERROR: errText(err),
        });
        this.fdStore?.remove(name);
        continue;
      }
      this.accept(socket, name);
      adopted++;
    }
    if (stored.length > 0) log.info(`adopted ${adopted} socket connection(s)`, { COUNT: adopted });
  }

  /** Renames a stored connection when its state changes (first request, subscription). Taken out first:
   * systemd ignores a descriptor it already stores, whatever its new name (a crash between the two
   * messages loses it). */
  private restore(conn: Connection): void {
    const store = this.fdStore;
    const old = conn.storeName;
    const fd = handleOf(conn.socket)?.fd;
    if (!store || old === undefined || fd === undefined || fd < 0) return;
    const name = storeName(storeBase(old), conn.requested, conn.session.subscribed);
    if (name === old) return;
    store.remove(old);
    conn.storeName = store.store(name, fd) ? name : undefined;
  }

  private accept(accepted: Wire, storedAs?: string): void {
    accepted.on('error', () => {}); // EPIPE/ECONNRESET from a vanished client: 'close' follows.
    const peer =
      accepted instanceof NativeWire
        ? transport?.peerPid(accepted.handle.fd ?? -1) || undefined
        : peerPid(accepted as Socket);
    const victim = this.connections.size >= this.opts.maxClients ? this.victimFor(peer) : undefined;
    if (victim) {
      log.notice('socket client closed to make room for another process', {
        CLIENT: victim.id,
        PEER_PID: victim.peer,
        FOR_PID: peer,
        LIMIT: this.opts.maxClients,
      });
      this.connections.delete(victim);
      victim.evict();
    }
    if (this.connections.size >= this.opts.maxClients) {
      log.warning('socket client turned away: too many clients', { LIMIT: this.opts.maxClients });
      const socket = accepted as Socket;
      if (!(socket instanceof net.Socket)) {
        // An adopted connection (the limit may have changed since it was stored): told, then closed.
        const wire = accepted as NativeWire;
        wire.write(
          `${errorLine('null', 'INTERNAL_ERROR', `too many clients (limit ${this.opts.maxClients})`)}\n`,
        );
        wire.end();
        setTimeout(() => wire.destroy(), this.opts.closeGraceMs).unref();
        return;
      }
      this.strays.add(socket);
      socket.on('close', () => this.strays.delete(socket));
      socket.resume(); // read and discard, so closing never resets the line below
      socket.end(
        `${errorLine('null', 'INTERNAL_ERROR', `too many clients (limit ${this.opts.maxClients})`)}\n`,
      );
      setTimeout(() => socket.destroy(), this.opts.closeGraceMs).unref();
      return;
    }
    const socket = accepted instanceof net.Socket ? (nativeWire(accepted) ?? accepted) : accepted;
    if (socket !== accepted) (socket as Wire).on('error', () => {}); // as on `accepted` above
    const conn = new Connection(
      this.nextId++,
      socket,
      this.service,
      this.opts,
      peer,
      () => {
        this.connections.delete(conn);
        // Closed for good (not handed over): systemd's copy would keep the peer waiting.
        if (!this.handingOver && conn.storeName !== undefined) this.fdStore?.remove(conn.storeName);
      },
      storedAs !== undefined && !storedAs.endsWith(NEW_SUFFIX),
      () => this.restore(conn),
    );
    this.connections.add(conn);
    this.armSweep();
    if (storedAs !== undefined) {
      conn.storeName = storedAs;
      conn.session.subscribed = storedAs.endsWith(SUBSCRIBED_SUFFIX);
    } else if (this.fdStore) {
      const fd = handleOf(socket)?.fd;
      const name = storeName(`${this.storePrefix}${conn.id}`, false, false);
      if (fd !== undefined && fd >= 0 && this.fdStore.store(name, fd)) conn.storeName = name;
    }
  }

  /** The connection to close for a newcomer from `peer` when every slot is taken: one of the process that
   * holds the most connections, if it holds more than the newcomer's process would. */
  private victimFor(peer: number | undefined): Connection | undefined {
    if (peer === undefined) return undefined;
    const byPeer = new Map<number, Connection[]>();
    for (const c of this.connections) {
      if (c.peer === undefined) continue;
      const list = byPeer.get(c.peer);
      if (list) list.push(c);
      else byPeer.set(c.peer, [c]);
    }
    const mine = (byPeer.get(peer)?.length ?? 0) + 1;
    let worst: Connection[] | undefined;
    for (const list of byPeer.values()) {
      if (list.length > mine && (!worst || list.length > worst.length)) worst = list;
    }
    if (!worst) return undefined;
    // Set order is connection order: the first found of each kind is the oldest.
    return worst.find((c) => !c.requested) ?? worst.find((c) => c.idle) ?? worst[0];
  }

  private broadcastHealth(health: HealthMap): void {
    let line: string;
    try {
      line = healthChangedLine(health);
    } catch (err) {
      log.err('cannot serialise a health event', { ERROR: errText(err) });
      return;
    }
    for (const c of this.connections) if (c.session.subscribed) c.send(line);
  }

  private broadcast(line: string): void {
    for (const c of this.connections) if (c.session.subscribed) c.send(line);
  }
}

class Connection {
  readonly session: Session = { subscribed: false };
  /** A request line (not blank) has arrived. */
  requested = false;
  /** Its name in systemd's fd store, when stored. */
  storeName: string | undefined;
  /** Handing over (SocketServer.handOver): nothing more is read once no line is half read. */
  private handingOver = false;
  private firstLineTimer: NodeJS.Timeout | undefined;
  private inflight = 0;
  private queue: Queued[] = [];
  private qHead = 0;
  private partial: Buffer[] = [];
  private partialLen = 0;
  private writeBlocked = false;
  private paused = false;
  /** Input is ignored from now on (after LINE_TOO_LONG, an idle close or server shutdown). */
  private discarding = false;
  /** The connection ends once nothing is in flight. */
  private ending = false;
  /** The client shut down its side: end ours once every answer is written. */
  private peerEnded = false;
  private closed = false;
  private graceTimer: NodeJS.Timeout | undefined;
  /** A byte was read or written since the last idle sweep. */
  private active = true;
  /** When a sweep last found it active (the idle clock starts there). */
  private quietSince = Date.now();
  /** Answers of the lines being handled, written together (one write per chunk read, not per line). */
  private out = '';
  private batching = false;

  constructor(
    readonly id: number,
    readonly socket: Wire,
    private readonly service: SystemService,
    private readonly opts: Resolved,
    /** The connecting process (SO_PEERCRED), when known. */
    readonly peer: number | undefined,
    onClose: () => void,
    /** Adopted from a previous instance after its first request: no first-line deadline. */
    adopted: boolean,
    /** Its first request, or its subscription changed (the stored name says both). */
    private readonly onStateChange: () => void,
  ) {
    if (adopted) this.requested = true;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('drain', () => {
      this.active = true;
      this.writeBlocked = false;
      this.pumpCorked();
    });
    socket.on('end', () => this.onEnd());
    socket.on('close', () => {
      this.closed = true;
      this.queue = [];
      this.partial = [];
      if (this.graceTimer) clearTimeout(this.graceTimer);
      if (this.firstLineTimer) clearTimeout(this.firstLineTimer);
      onClose();
    });
    if (opts.firstLineTimeoutMs > 0 && !adopted) {
      this.firstLineTimer = setTimeout(() => this.onNoRequest(), opts.firstLineTimeoutMs);
      this.firstLineTimer.unref();
    }
    log.debug('socket client connected', { CLIENT: id });
  }

  private onData(chunk: Buffer): void {
    this.active = true;
    if (this.discarding || this.closed) return;
    const max = this.opts.maxLineBytes;
    let start = 0;
    let queued = false;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl === -1) break;
      let line: Buffer;
      if (this.partialLen > 0) {
        this.partial.push(chunk.subarray(start, nl));
        line = Buffer.concat(this.partial, this.partialLen + (nl - start));
        this.partial = [];
        this.partialLen = 0;
      } else {
        line = chunk.subarray(start, nl);
      }
      start = nl + 1;
      if (line.length > 0 && line[line.length - 1] === 0x0d) line = line.subarray(0, line.length - 1);
      queued = true;
      if (line.length > max) {
        this.tooLong();
        break;
      }
      if (!this.requested && !isBlank(line)) this.markRequested();
      this.queue.push(line);
    }
    if (!this.discarding && start < chunk.length) {
      this.partial.push(chunk.subarray(start));
      this.partialLen += chunk.length - start;
      // One byte of slack for a '\r' that may precede the '\n'.
      if (this.partialLen > max + 1) {
        this.tooLong();
        queued = true;
      }
    }
    if (queued) this.pumpCorked();
    if (this.handingOver) this.readOnlyToLineEnd();
  }

  /** Handing over: read on only while a line is half read (its rest is still in the kernel), so the
   * successor starts at a line boundary. */
  private readOnlyToLineEnd(): void {
    const h = handleOf(this.socket);
    if (!h) return;
    // `reading` stays true: node's stream would otherwise start reading again when it is resumed.
    h.reading = true;
    if (this.partialLen > 0 && !this.discarding) h.readStart();
    else h.readStop();
  }

  /** Stops reading from the kernel; what node has already read is still handled (see handOver). */
  beginHandOver(): void {
    if (this.closed) return;
    this.handingOver = true;
    if (this.firstLineTimer) clearTimeout(this.firstLineTimer);
    this.readOnlyToLineEnd();
    // Lines node buffered before the stop still come in as 'data'.
    if (!this.writeBlocked && this.inflight < this.opts.maxInFlight) this.setPaused(false);
  }

  /** Being closed by us (idle, over-long line, evicted, shutdown). */
  get closing(): boolean {
    return this.ending;
  }

  /** Every line read is answered, the answers are written, and nothing is half read. */
  get handedOver(): boolean {
    if (this.closed || this.ending) return true;
    return (
      this.qHead >= this.queue.length &&
      this.inflight === 0 &&
      this.partialLen === 0 &&
      this.out === '' &&
      this.socket.readableLength === 0 &&
      this.socket.writableLength === 0
    );
  }

  /** Closes our descriptor only (no shutdown: systemd's copy keeps the connection open). */
  release(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.destroy();
  }

  private markRequested(): void {
    this.requested = true;
    if (this.firstLineTimer) clearTimeout(this.firstLineTimer);
    this.firstLineTimer = undefined;
    this.onStateChange();
  }

  /** Nothing in flight, not subscribed, not closing: closing it loses nobody an answer or an event. */
  get idle(): boolean {
    return this.inflight === 0 && !this.session.subscribed && !this.ending;
  }

  /** No request line within firstLineTimeoutMs of connecting (a slowloris holding a slot). */
  private onNoRequest(): void {
    this.firstLineTimer = undefined;
    if (this.closed || this.ending || this.requested) return;
    log.notice('socket client sent no request in time; closing it', {
      CLIENT: this.id,
      PEER_PID: this.peer,
      LIMIT: this.opts.firstLineTimeoutMs,
    });
    this.send(
      errorLine(
        'null',
        'INTERNAL_ERROR',
        `no request within ${this.opts.firstLineTimeoutMs / 1000} s; closing`,
      ),
    );
    this.beginEnd(false);
  }

  /** Its slot goes to another process (see SocketServer.victimFor). */
  evict(): void {
    if (this.closed) return;
    this.send(errorLine('null', 'INTERNAL_ERROR', 'closed: this process holds too many connections'));
    this.beginEnd(false);
  }

  /** The client will send no more. A last line without its newline still counts as a line. */
  private onEnd(): void {
    this.peerEnded = true;
    if (this.discarding || this.closed) return;
    if (this.partialLen > 0) {
      this.queue.push(Buffer.concat(this.partial, this.partialLen));
      this.partial = [];
      this.partialLen = 0;
    }
    this.pumpCorked();
  }

  /** Ends our side after a half-close once nothing is queued or in flight. */
  private finishIfDone(): void {
    if (!this.peerEnded || this.ending || this.closed) return;
    if (this.qHead < this.queue.length || this.inflight > 0) return;
    this.flush();
    if (!this.socket.writableEnded) this.socket.end();
  }

  private tooLong(): void {
    this.queue.push(TOO_LONG);
    this.partial = [];
    this.partialLen = 0;
    this.discarding = true;
  }

  /** pump(), its answers written together once it stops. */
  private pumpCorked(): void {
    this.batching = true;
    try {
      this.pump();
    } finally {
      this.batching = false;
      this.flush();
    }
  }

  /** Handles queued lines until the queue is empty or the connection must wait. */
  private pump(): void {
    while (this.qHead < this.queue.length) {
      if (this.closed) return;
      if (this.writeBlocked || this.inflight >= this.opts.maxInFlight) {
        this.setPaused(true);
        return;
      }
      const item = this.queue[this.qHead++] as Queued;
      if (item === TOO_LONG) {
        log.warning('socket client sent an over-long line; closing it', {
          CLIENT: this.id,
          LIMIT: this.opts.maxLineBytes,
        });
        this.send(
          errorLine('null', 'LINE_TOO_LONG', `request line longer than ${this.opts.maxLineBytes} bytes`),
        );
        this.beginEnd(false);
        return;
      }
      this.handle(item);
    }
    this.queue = [];
    this.qHead = 0;
    if (!this.discarding) this.setPaused(false);
    this.finishIfDone();
  }

  private setPaused(on: boolean): void {
    if (on === this.paused) return;
    this.paused = on;
    if (on) this.socket.pause();
    else this.socket.resume();
  }

  private handle(line: Buffer): void {
    if (isBlank(line)) return;
    const subscribed = this.session.subscribed;
    const outcome = handleLine(line, this.service, this.session);
    if (this.session.subscribed !== subscribed) this.onStateChange();
    if (typeof outcome === 'string') {
      this.send(outcome);
      return;
    }
    this.inflight++;
    void outcome.then((answer) => {
      this.inflight--;
      if (this.closed) return;
      this.send(answer);
      if (this.ending) {
        if (this.inflight === 0 && !this.socket.writableEnded) this.socket.end();
      } else {
        this.pumpCorked();
      }
    });
  }

  /** Writes one line (while pumping: once the batch is big enough, or pumping stops); drops the connection if
   * its unread output has grown past the limit. */
  send(line: string): void {
    if (this.closed) return;
    this.out += `${line}\n`;
    // A batch stays below the stream's high-water mark, so writeBlocked says what it said line by line.
    if (!this.batching || this.out.length >= BATCH_CHARS) this.flush();
  }

  private flush(): void {
    const s = this.socket;
    const text = this.out;
    if (text === '') return;
    this.out = '';
    if (this.closed || s.writableEnded || s.destroyed) return;
    this.active = true;
    const ok = s.write(text);
    if (s.writableLength > this.opts.maxWriteBufferBytes) {
      log.warning('socket client dropped: it does not read its answers', {
        CLIENT: this.id,
        LIMIT: this.opts.maxWriteBufferBytes,
      });
      this.closed = true;
      s.destroy();
      return;
    }
    if (!ok) this.writeBlocked = true;
  }

  /** Ignore further input; end (FIN) once in-flight answers are out; force-close after the grace period.
   * `readRest`: keep reading (and discarding) until the peer closes, for a clean close. False after an
   * over-long line: nothing more is read, so a client can make us read at most maxLineBytes + one chunk; it
   * has the grace period to read our last lines before the connection is destroyed (destroying at once
   * would reset the connection while the client is still writing, and it might never see the error). */
  private beginEnd(readRest: boolean): void {
    this.discarding = true;
    this.ending = true;
    this.queue = [];
    this.qHead = 0;
    if (readRest) {
      this.setPaused(false);
    } else {
      this.setPaused(true);
    }
    this.flush();
    if (this.inflight === 0 && !this.socket.writableEnded) this.socket.end();
    this.graceTimer ??= setTimeout(() => this.socket.destroy(), this.opts.closeGraceMs);
    this.graceTimer.unref();
  }

  /** Called by the server's idle sweep. */
  checkIdle(now: number): void {
    if (this.active) {
      this.active = false;
      this.quietSince = now;
    } else if (now - this.quietSince >= this.opts.idleTimeoutMs) {
      // The policy below keeps some idle connections: their clock starts again, as a re-armed timeout's.
      this.quietSince = now;
      this.onIdle();
    }
  }

  /** Nothing was read or written for idleTimeoutMs. */
  private onIdle(): void {
    if (this.closed || this.ending) return;
    if (this.inflight > 0) return;
    if (this.writeBlocked || this.socket.writableEnded) {
      // Its answers have not moved for the whole period: it does not read. Nothing more can be said to it.
      log.warning('socket client dropped: it has not read its answers', { CLIENT: this.id });
      this.closed = true;
      this.socket.destroy();
      return;
    }
    if (this.session.subscribed) return;
    log.debug('socket client idle; closing it', { CLIENT: this.id });
    this.send(errorLine('null', 'INTERNAL_ERROR', `idle for ${this.opts.idleTimeoutMs / 1000} s; closing`));
    this.beginEnd(true);
  }

  /** Server shutdown. */
  shutdown(): void {
    if (this.closed) return;
    this.beginEnd(true);
  }
}
