// The daemon's one system-bus connection, with the guards dbus-next lacks: every call is bounded, pending
// calls fail when the connection drops, match rules are added once and never churned, stream errors
// never crash the process, and a signal reaches a handler only from the current owner of the name the
// handler trusts (anyone may send a unicast signal to our unique name).
import dbus from 'dbus-next';
import { errText, log } from '../log/journal.js';
import { connectionStream, forgetReplyHandler } from './dbus-next-private.js';
import { silenceUsocketDebug } from './usocket-quiet.js';

const { Message } = dbus;
export type DBusMessage = InstanceType<typeof dbus.Message>;
export type MessageBus = dbus.MessageBus;

/** Every call out of the process is bounded; this is the default bound. */
export const CALL_TIMEOUT_MS = 5000;

/** A bus call that got no answer in time, or was cut off by the connection closing. */
export class CallTimeoutError extends Error {
  constructor(what: string, ms: number) {
    super(`${what}: no reply within ${ms} ms`);
    this.name = 'CallTimeoutError';
  }
}
export class DisconnectedError extends Error {
  constructor() {
    super('the bus connection is closed');
    this.name = 'DisconnectedError';
  }
}

export interface CallSpec {
  destination: string;
  path: string;
  interface: string;
  member: string;
  signature?: string;
  body?: unknown[];
  timeoutMs?: number;
  /** D-Bus header flags, e.g. ALLOW_INTERACTIVE_AUTHORIZATION (0x4). */
  flags?: number;
}

/** The method call `spec` describes, without a serial yet (Bus.call, prepared-call.ts). */
export function callMessage(spec: CallSpec): DBusMessage {
  return new Message({
    destination: spec.destination,
    path: spec.path,
    interface: spec.interface,
    member: spec.member,
    signature: spec.signature ?? '',
    body: spec.body ?? [],
    flags: spec.flags ?? 0,
  });
}

/** An object's interface on a peer, for property reads and writes. */
export interface PropertyTarget {
  destination: string;
  path: string;
  interface: string;
  flags?: number;
}

/** The bus driver's name; its own signals (NameOwnerChanged) carry it as sender, which no client can. */
export const BUS_DRIVER = 'org.freedesktop.DBus';
const BUS_DRIVER_PATH = '/org/freedesktop/DBus';

export interface SignalFilter {
  path?: string;
  /** Matches this path and everything below it. */
  pathNamespace?: string;
  interface: string;
  member: string;
  /**
   * Who may send it: a well-known name (only its current owner's signals pass; the owner is followed
   * through the bus driver's NameOwnerChanged), BUS_DRIVER, or a unique name.
   */
  sender: string;
}

/** What we know of a trusted well-known name's owner. */
interface OwnerTrack {
  /** Its current unique name; undefined while it has none or before the first answer. */
  owner: string | undefined;
  /** Bumped by every NameOwnerChanged for the name: a GetNameOwner answer older than one is stale. */
  changes: number;
  /** Settles when the owner is known (rejects when asking failed; then asked again on the next use). */
  ready?: Promise<void>;
  retryTimer?: NodeJS.Timeout;
  failures: number;
}

const WELL_KNOWN_NAME = /^[A-Za-z_-][A-Za-z0-9_-]*(\.[A-Za-z_-][A-Za-z0-9_-]*)+$/;

type SignalHandler = (msg: DBusMessage) => void;

export class Bus {
  private readonly pending = new Map<number, (err: Error) => void>();
  private readonly matches = new Set<string>();
  private readonly signalHandlers = new Set<{ filter: SignalFilter; handler: SignalHandler }>();
  private readonly closeHandlers = new Set<() => void>();
  private readonly owners = new Map<string, OwnerTrack>();
  private closed = false;

  private constructor(readonly raw: MessageBus) {
    raw.on('error', (err: unknown) => {
      log.err('bus connection error', { error: errText(err) });
      this.markClosed();
    });
    const stream = connectionStream(raw);
    stream.on('close', () => this.markClosed());
    stream.on('end', () => this.markClosed());
    raw.on('message', (msg: DBusMessage) => {
      if (msg.type !== dbus.MessageType.SIGNAL) return;
      // The owner first, so handlers of this same signal already judge by the new owner.
      if (
        msg.sender === BUS_DRIVER &&
        msg.path === BUS_DRIVER_PATH &&
        msg.interface === BUS_DRIVER &&
        msg.member === 'NameOwnerChanged'
      )
        this.ownerChanged(msg);
      for (const { filter, handler } of this.signalHandlers) {
        if (filter.member !== msg.member || filter.interface !== msg.interface) continue;
        if (filter.path !== undefined && filter.path !== msg.path) continue;
        if (
          filter.pathNamespace !== undefined &&
          msg.path !== filter.pathNamespace &&
          !msg.path.startsWith(`${filter.pathNamespace}/`)
        )
          continue;
        if (!this.isFrom(filter.sender, msg.sender)) continue;
        try {
          handler(msg);
        } catch (err) {
          log.err('signal handler failed', { member: msg.member, error: errText(err) });
        }
      }
    });
  }

  /** Connects to the system bus (DBUS_SYSTEM_BUS_ADDRESS honoured) with unix fd passing negotiated. */
  static async connect(timeoutMs = CALL_TIMEOUT_MS): Promise<Bus> {
    silenceUsocketDebug();
    const raw = dbus.systemBus({ negotiateUnixFd: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new CallTimeoutError('connecting to the system bus', timeoutMs)),
        timeoutMs,
      );
      raw.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
      raw.once('error', (err: unknown) => {
        clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      });
    });
    return new Bus(raw);
  }

  /** Our unique name on the bus (":1.42"). */
  get uniqueName(): string {
    return (this.raw as unknown as { name: string }).name;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Calls a method, bounded by spec.timeoutMs (default 5 s). Rejects with DBusError for error replies. */
  async call(spec: CallSpec): Promise<DBusMessage> {
    if (this.closed) throw new DisconnectedError();
    const timeoutMs = spec.timeoutMs ?? CALL_TIMEOUT_MS;
    const msg = callMessage(spec);
    msg.serial = this.raw.newSerial();
    return this.bounded(msg.serial, `${spec.interface}.${spec.member}`, timeoutMs, () => this.raw.call(msg));
  }

  /**
   * Waits for the reply to a call sent by `send` (dbus-next's call(), or prepared-call.ts's own write), bounded
   * by timeoutMs and failed when the connection drops, like call(). `send` resolves with the reply to serial.
   */
  bounded(
    serial: number,
    what: string,
    timeoutMs: number,
    send: () => Promise<DBusMessage | null>,
  ): Promise<DBusMessage> {
    if (this.closed) return Promise.reject(new DisconnectedError());
    return new Promise<DBusMessage>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.forget(serial);
        reject(new CallTimeoutError(what, timeoutMs));
      }, timeoutMs);
      this.pending.set(serial, (err) => {
        clearTimeout(timer);
        reject(err);
      });
      send().then(
        (reply) => {
          clearTimeout(timer);
          this.pending.delete(serial);
          // call() only resolves null for NO_REPLY_EXPECTED, which we never set.
          resolve(reply as DBusMessage);
        },
        (err: unknown) => {
          clearTimeout(timer);
          this.pending.delete(serial);
          reject(err);
        },
      );
    });
  }

  /** Sends a message that expects no reply (signals, replies). A closed connection drops it. */
  send(msg: DBusMessage): void {
    if (this.closed) return;
    try {
      this.raw.send(msg);
    } catch (err) {
      log.err('sending on the bus failed', { member: msg.member, error: errText(err) });
    }
  }

  /** Adds a match rule once for the life of the connection (dbus-next's own helper never removes rules). */
  async addMatch(rule: string): Promise<void> {
    if (this.matches.has(rule)) return;
    await this.call({
      destination: 'org.freedesktop.DBus',
      path: '/org/freedesktop/DBus',
      interface: 'org.freedesktop.DBus',
      member: 'AddMatch',
      signature: 's',
      body: [rule],
    });
    this.matches.add(rule);
  }

  /**
   * Routes matching signals from filter.sender to handler; the caller adds the match rule. A well-known
   * sender's owner is followed from now on (see trackOwner). Returns an unsubscribe function.
   */
  onSignal(filter: SignalFilter, handler: SignalHandler): () => void {
    if (filter.sender !== BUS_DRIVER && !filter.sender.startsWith(':')) {
      // A typo here would silently drop every signal: refuse it at once instead.
      if (!WELL_KNOWN_NAME.test(filter.sender)) throw new Error(`not a bus name: ${filter.sender}`);
      this.followOwner(filter.sender);
    }
    const entry = { filter, handler };
    this.signalHandlers.add(entry);
    return () => this.signalHandlers.delete(entry);
  }

  /**
   * Follows the owner of a well-known name: NameOwnerChanged from the bus driver, and GetNameOwner once.
   * Resolves when the current owner (or that it has none) is known; until then its signals are dropped.
   */
  trackOwner(name: string): Promise<void> {
    if (!WELL_KNOWN_NAME.test(name)) return Promise.reject(new Error(`not a well-known bus name: ${name}`));
    let t = this.owners.get(name);
    if (!t) {
      t = { owner: undefined, changes: 0, failures: 0 };
      this.owners.set(name, t);
    }
    if (t.ready) return t.ready;
    const track = t;
    const ready = this.learnOwner(name, track).catch((err: unknown) => {
      track.ready = undefined;
      throw err;
    });
    track.ready = ready;
    return ready;
  }

  /** The current owner of a followed well-known name, as far as the bus has told us. */
  ownerOf(name: string): string | undefined {
    return this.owners.get(name)?.owner;
  }

  onClose(handler: () => void): void {
    this.closeHandlers.add(handler);
  }

  /** Reads one property (org.freedesktop.DBus.Properties.Get), unwrapped from its variant. */
  async getProperty(target: PropertyTarget, name: string): Promise<unknown> {
    const reply = await this.call({
      destination: target.destination,
      path: target.path,
      interface: 'org.freedesktop.DBus.Properties',
      member: 'Get',
      signature: 'ss',
      body: [target.interface, name],
      flags: target.flags ?? 0,
    });
    const v = reply.body[0];
    return v instanceof dbus.Variant ? v.value : v;
  }

  /** Writes one property (org.freedesktop.DBus.Properties.Set) with the given D-Bus signature. */
  async setProperty(target: PropertyTarget, name: string, signature: string, value: unknown): Promise<void> {
    await this.call({
      destination: target.destination,
      path: target.path,
      interface: 'org.freedesktop.DBus.Properties',
      member: 'Set',
      signature: 'ssv',
      body: [target.interface, name, new dbus.Variant(signature, value)],
      flags: target.flags ?? 0,
    });
  }

  /** Asks the bus for a unique name's Unix uid (used to let root pass without asking polkit). */
  async unixUser(name: string): Promise<number> {
    const reply = await this.call({
      destination: 'org.freedesktop.DBus',
      path: '/org/freedesktop/DBus',
      interface: 'org.freedesktop.DBus',
      member: 'GetConnectionUnixUser',
      signature: 's',
      body: [name],
    });
    return Number(reply.body[0]);
  }

  /** The unique name owning a well-known name, or undefined when it has none. */
  async nameOwner(name: string): Promise<string | undefined> {
    try {
      const reply = await this.call({
        destination: 'org.freedesktop.DBus',
        path: '/org/freedesktop/DBus',
        interface: 'org.freedesktop.DBus',
        member: 'GetNameOwner',
        signature: 's',
        body: [name],
      });
      return String(reply.body[0]);
    } catch (err) {
      if (err instanceof dbus.DBusError && err.type === 'org.freedesktop.DBus.Error.NameHasNoOwner')
        return undefined;
      throw err;
    }
  }

  close(): void {
    if (this.closed) return;
    try {
      this.raw.disconnect();
    } catch {
      // already gone
    }
    this.markClosed();
  }

  /** Whether a signal from `sender` (the header the bus set) comes from what `trusted` names. */
  private isFrom(trusted: string, sender: string | undefined): boolean {
    if (sender === undefined) return false;
    if (trusted === BUS_DRIVER || trusted.startsWith(':')) return sender === trusted;
    const owner = this.owners.get(trusted)?.owner;
    return owner !== undefined && owner === sender;
  }

  private ownerChanged(msg: DBusMessage): void {
    const [name, , newOwner] = msg.body as [string, string, string];
    const t = this.owners.get(name);
    if (!t) return;
    t.changes++;
    t.owner = newOwner === '' ? undefined : newOwner;
  }

  private async learnOwner(name: string, t: OwnerTrack): Promise<void> {
    await this.addMatch(
      `type='signal',sender='${BUS_DRIVER}',path='${BUS_DRIVER_PATH}',interface='${BUS_DRIVER}',member='NameOwnerChanged',arg0='${name}'`,
    );
    const changes = t.changes;
    const owner = await this.nameOwner(name);
    // A NameOwnerChanged that arrived meanwhile is newer than this answer.
    if (changes === t.changes) t.owner = owner;
  }

  /** trackOwner in the background, retried with backoff (1 s doubling to 30 s) until it works. */
  private followOwner(name: string): void {
    this.trackOwner(name).then(
      () => {
        const t = this.owners.get(name);
        if (t) t.failures = 0;
      },
      (err: unknown) => {
        const t = this.owners.get(name);
        if (!t || this.closed || t.retryTimer) return;
        t.failures++;
        const ms = Math.min(30_000, 1000 * 2 ** Math.min(t.failures - 1, 5));
        log.warning('following the owner of a bus name failed; its signals are ignored until it works', {
          bus_name: name,
          error: errText(err),
          retry_in_ms: ms,
          error_code: 'OwnerTrackFailed',
        });
        t.retryTimer = setTimeout(() => {
          t.retryTimer = undefined;
          if (!this.closed) this.followOwner(name);
        }, ms);
        t.retryTimer.unref();
      },
    );
  }

  private forget(serial: number): void {
    this.pending.delete(serial);
    forgetReplyHandler(this.raw, serial);
  }

  private markClosed(): void {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.owners.values()) if (t.retryTimer) clearTimeout(t.retryTimer);
    for (const [serial, fail] of this.pending) {
      this.forget(serial);
      fail(new DisconnectedError());
    }
    for (const h of this.closeHandlers) h();
  }
}

/** Header flag: do not bus-activate the destination (a health check must not start what it checks). */
export const NO_AUTO_START = 0x2;

/** The D-Bus header flag a caller sets when it is willing to wait for interactive authorization. */
export const ALLOW_INTERACTIVE_AUTHORIZATION = 0x4;

/** An error reply to `msg` (dbus-next's typings lack Message.newError, which it has). */
export function errorReply(msg: DBusMessage, name: string, text: string): DBusMessage {
  return (dbus.Message.newError as unknown as (m: DBusMessage, n: string, t: string) => DBusMessage)(
    msg,
    name,
    text,
  );
}
