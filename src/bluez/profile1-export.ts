// Our org.bluez.Profile1 objects: only org.bluez's owner may call them; NewConnection's socket goes on to the
// claimant's own Profile1 object or is refused (Rejected), and our copy is closed before we answer.
import dbus from 'dbus-next';
import { type Bus, type DBusMessage, errorReply, NO_AUTO_START } from '../bus/connection.js';
import { errText, type Fields, log } from '../log/journal.js';
import type { ProfileClaims } from './claims-service.js';
import { PROFILE_IFACE, type ProfileDef, type ProfileKey, profileFields } from './profile-catalogue.js';
import type { UnixFdGuard } from './unix-fds.js';

const { Message } = dbus;
type V = InstanceType<typeof dbus.Variant>;

const BLUEZ_ERROR_REJECTED = 'org.bluez.Error.Rejected';
const ACCESS_DENIED = 'org.freedesktop.DBus.Error.AccessDenied';
const INVALID_ARGS = 'org.freedesktop.DBus.Error.InvalidArgs';
const SIGNATURES = { Release: '', NewConnection: 'oha{sv}', RequestDisconnection: 'o' } as const;
type Member = keyof typeof SIGNATURES;

/** Per-profile counts for GetStatus. */
export interface ConnectionCounts {
  forwarded: number;
  rejected: number;
  /** Calls refused because the caller was not BlueZ. */
  refused: number;
}

export interface Profile1ExportDeps {
  bus: Bus;
  fds: UnixFdGuard;
  defs: readonly ProfileDef[];
  claims: ProfileClaims;
  /** org.bluez's current unique name (undefined: BlueZ is not on the bus). */
  bluezOwner: () => string | undefined;
  /** BlueZ called Release: the registration is gone. */
  onRelease: (key: ProfileKey) => void;
  /** Bound on handing a connection to the claimant (BlueZ itself waits 25 s for our answer). */
  forwardTimeoutMs: number;
}

export class Profile1Export {
  private readonly counts = new Map<ProfileKey, ConnectionCounts>();
  private changes = 0;

  constructor(private readonly deps: Profile1ExportDeps) {
    for (const def of deps.defs) this.counts.set(def.key, { forwarded: 0, rejected: 0, refused: 0 });
  }

  /** Grows with every change GetStatus shows: its text is rebuilt only after one. */
  get revision(): number {
    return this.changes;
  }

  counters(key: ProfileKey): ConnectionCounts {
    return { ...(this.counts.get(key) ?? { forwarded: 0, rejected: 0, refused: 0 }) };
  }

  /** Exports the objects (introspectable) and routes their calls. */
  export(): void {
    class Profile1 extends dbus.interface.Interface {}
    Profile1.configureMembers({
      methods: {
        Release: { inSignature: '', outSignature: '' },
        NewConnection: { inSignature: 'oha{sv}', outSignature: '' },
        RequestDisconnection: { inSignature: 'o', outSignature: '' },
      },
    });
    // The calls are answered by the method handler below (it needs the sender and the descriptors);
    // these stand-ins only give the objects their introspection data.
    const proto = Profile1.prototype as unknown as Record<string, unknown>;
    for (const m of Object.keys(SIGNATURES)) {
      proto[m] = () => {
        throw new dbus.DBusError('org.freedesktop.DBus.Error.Failed', 'not available');
      };
    }
    const byPath = new Map(this.deps.defs.map((d) => [d.path, d]));
    const bus = this.deps.bus;
    bus.raw.addMethodHandler((msg: DBusMessage) => {
      const def = byPath.get(msg.path);
      if (!def) return false;
      if (msg.interface !== undefined && msg.interface !== PROFILE_IFACE) return false;
      if (!Object.hasOwn(SIGNATURES, msg.member)) return false;
      // Read the sender and take the descriptors before anything else: both belong to this dispatch only.
      const fds = this.deps.fds.take(msg);
      this.onCall(def, msg, fds);
      return true;
    });
    for (const d of this.deps.defs) bus.raw.export(d.path, new Profile1(PROFILE_IFACE));
  }

  private onCall(def: ProfileDef, msg: DBusMessage, fds: number[]): void {
    const closeAll = () => {
      for (const fd of fds) this.deps.fds.closeWhenSent(fd);
    };
    const sender = String(msg.sender ?? '');
    const owner = this.deps.bluezOwner();
    if (owner === undefined || sender !== owner) {
      closeAll();
      this.count(def).refused++;
      log.warning(`${msg.member} on ${def.name} refused: the caller is not BlueZ`, {
        ...profileFields(def, { caller: sender, bluez_owner: owner ?? '' }),
        member: msg.member,
        error_code: 'AccessDenied',
      });
      this.replyError(msg, ACCESS_DENIED, 'only BlueZ (the owner of org.bluez) may call this object');
      return;
    }
    const expected = SIGNATURES[msg.member as Member];
    if ((msg.signature ?? '') !== expected) {
      closeAll();
      log.warning(`${msg.member} on ${def.name} with wrong arguments`, {
        ...profileFields(def, { caller: sender }),
        signature: msg.signature ?? '',
        error_code: 'InvalidArgs',
      });
      this.replyError(msg, INVALID_ARGS, `${msg.member} takes arguments of signature '${expected}'`);
      return;
    }
    switch (msg.member as Member) {
      case 'NewConnection':
        void this.newConnection(def, msg, fds);
        return;
      case 'RequestDisconnection':
        closeAll();
        void this.requestDisconnection(def, msg);
        return;
      case 'Release':
        closeAll();
        log.notice(`BlueZ released ${def.name}`, profileFields(def, { bluez_owner: sender }));
        this.deps.onRelease(def.key);
        this.replyOk(msg);
        return;
    }
  }

  private async newConnection(def: ProfileDef, msg: DBusMessage, fds: number[]): Promise<void> {
    const [device, fd, props] = msg.body as [string, number, Record<string, V>];
    const fields = profileFields(def, { device: String(device) });
    // Our copy of every descriptor is closed before we answer (so a refused peer sees EOF by then).
    const release = () => {
      for (const x of fds) this.deps.fds.closeWhenSent(x);
    };
    if (!fds.includes(fd)) {
      release();
      log.warning(`NewConnection on ${def.name} without its descriptor`, {
        ...fields,
        error_code: 'InvalidArgs',
      });
      this.replyError(msg, INVALID_ARGS, 'the file descriptor did not arrive');
      return;
    }
    const claim = this.deps.claims.get(def.key);
    if (!claim) {
      release();
      this.count(def).rejected++;
      log.notice(`connection to ${def.name} from ${device} refused: no application has claimed it`, {
        ...fields,
        error_code: 'NoClaimant',
      });
      this.replyError(msg, BLUEZ_ERROR_REJECTED, `no application handles ${def.name}`);
      return;
    }
    const handlerFields: Fields = { ...fields, claimant: claim.sender, handler: claim.handler };
    try {
      await this.deps.bus.call({
        destination: claim.sender,
        path: claim.handler,
        interface: PROFILE_IFACE,
        member: 'NewConnection',
        signature: 'oha{sv}',
        body: [device, fd, props],
        timeoutMs: this.deps.forwardTimeoutMs,
        flags: NO_AUTO_START,
      });
    } catch (err) {
      release();
      this.count(def).rejected++;
      log.warning(`the handler of ${def.name} did not take the connection from ${device}`, {
        ...handlerFields,
        error: errText(err),
        error_code: 'HandlerFailed',
      });
      this.replyError(
        msg,
        BLUEZ_ERROR_REJECTED,
        `the application handling ${def.name} refused the connection`,
      );
      return;
    }
    release();
    this.count(def).forwarded++;
    log.info(`connection to ${def.name} from ${device} handed to ${claim.sender}`, handlerFields);
    this.replyOk(msg);
  }

  private async requestDisconnection(def: ProfileDef, msg: DBusMessage): Promise<void> {
    const [device] = msg.body as [string];
    const claim = this.deps.claims.get(def.key);
    if (claim) {
      try {
        await this.deps.bus.call({
          destination: claim.sender,
          path: claim.handler,
          interface: PROFILE_IFACE,
          member: 'RequestDisconnection',
          signature: 'o',
          body: [device],
          timeoutMs: this.deps.forwardTimeoutMs,
          flags: NO_AUTO_START,
        });
      } catch (err) {
        // The application owns the connection; BlueZ tears down its side anyway.
        log.warning(`the handler of ${def.name} failed RequestDisconnection`, {
          ...profileFields(def, { device: String(device), claimant: claim.sender, handler: claim.handler }),
          error: errText(err),
          error_code: 'HandlerFailed',
        });
      }
    }
    this.replyOk(msg);
  }

  /** The counters of `def`, to increment. */
  private count(def: ProfileDef): ConnectionCounts {
    this.changes++;
    let c = this.counts.get(def.key);
    if (!c) {
      c = { forwarded: 0, rejected: 0, refused: 0 };
      this.counts.set(def.key, c);
    }
    return c;
  }

  private replyOk(msg: DBusMessage): void {
    this.deps.bus.send(Message.newMethodReturn(msg, '', []));
  }

  private replyError(msg: DBusMessage, name: string, text: string): void {
    this.deps.bus.send(errorReply(msg, name, text));
  }
}
