// BlueZ profiles owned by the daemon, on its one bus connection (BlueZ calls a profile back on the
// connection that registered it):
// - one org.bluez.Profile1 object per enabled profile, under /org/openauto/System/bluez/;
// - registration through org.bluez.ProfileManager1.RegisterProfile at start-up, whenever org.bluez gets a
//   new owner (bluetoothd restarted, by us, by the health monitor or by anyone), after BlueZ calls Release,
//   and after failures with bounded backoff, forever (the rules live in registration.ts);
// - incoming connections (NewConnection with the RFCOMM socket) are handed to the client that claimed the
//   profile (org.openauto.System1.ClaimProfile): the daemon calls NewConnection on the claimant's own
//   Profile1 object, passing the descriptor on, then closes its copy. Without a claimant the connection is
//   refused with org.bluez.Error.Rejected and the descriptor closed. Only the current owner of org.bluez may
//   call our Profile1 objects.
//
// Which profiles are registered is a setting (settings.btProfiles: aa, hfp-ag, hsp-hs; all by default).
// HFP AG trade-off: BlueZ lets one program register a UUID. On systems where PipeWire (WirePlumber's bluez5
// native backend) or oFono provides HFP for call audio, they register 0000111f (HFP AG) themselves; if we
// register it first, theirs fails ("UUID already registered") and call audio is gone, and if they come
// first, ours fails and shows up as a conflict in GetStatus and the journal. There, leave hfp-ag out of the
// setting (OPENAUTO_BT_PROFILES=aa,hsp-hs). Keeping it here means HFP connections reach the head-unit app
// (when it claims the profile) instead of the audio server; unclaimed, they are refused.
import dbus from 'dbus-next';
import {
  type Bus,
  CallTimeoutError,
  type DBusMessage,
  DisconnectedError,
  NO_AUTO_START,
} from '../bus/connection.js';
import { ACTIONS, type Action } from '../bus/polkit.js';
import { ServiceError } from '../errors.js';
import { errText, type Fields, log } from '../log/journal.js';
import type { Caller, Json } from '../service.js';
import { ClaimTable } from './claims.js';
import {
  type Attempt,
  type BackoffSettings,
  type Command,
  DEFAULT_BACKOFF,
  type Note,
  type RegisterOutcome,
  RegistrationMachine,
} from './registration.js';
import type { UnixFdGuard } from './unix-fds.js';

const { Message, Variant } = dbus;
type V = InstanceType<typeof Variant>;

export const BLUEZ = 'org.bluez';
export const PROFILE_IFACE = 'org.bluez.Profile1';
const PROFILE_MANAGER_IFACE = 'org.bluez.ProfileManager1';
const BLUEZ_ERROR_REJECTED = 'org.bluez.Error.Rejected';
const ACCESS_DENIED = 'org.freedesktop.DBus.Error.AccessDenied';
const INVALID_ARGS = 'org.freedesktop.DBus.Error.InvalidArgs';
export const PROFILE_ROOT = '/org/openauto/System/bluez';

export type ProfileKey = 'aa' | 'hfp-ag' | 'hsp-hs';

export interface ProfileDef {
  key: ProfileKey;
  uuid: string;
  /** Human-readable, also the SDP service name. */
  name: string;
  /** Our org.bluez.Profile1 object. */
  path: string;
  /** RegisterProfile options. */
  options: () => Record<string, V>;
}

/**
 * The profiles the daemon can own. Options follow BlueZ's profile API: Android Auto wireless is an RFCOMM
 * server on channel 8 (what phones look for); HFP AG and HSP HS use BlueZ's defaults for their well-known
 * UUIDs (channel and SDP record). All require an authenticated (paired) link; none asks an agent to
 * authorize each connection: a head unit has nobody to click "allow" while driving, and BlueZ still only
 * lets paired devices in.
 */
export const PROFILES: Record<ProfileKey, ProfileDef> = {
  aa: {
    key: 'aa',
    uuid: '4de17a00-52cb-11e6-bdf4-0800200c9a66',
    name: 'OpenAuto Android Auto Wireless',
    path: `${PROFILE_ROOT}/android_auto`,
    options: () => ({
      Name: new Variant('s', 'OpenAuto Android Auto Wireless'),
      Role: new Variant('s', 'server'),
      Channel: new Variant('q', 8),
      RequireAuthentication: new Variant('b', true),
      RequireAuthorization: new Variant('b', false),
    }),
  },
  'hfp-ag': {
    key: 'hfp-ag',
    uuid: '0000111f-0000-1000-8000-00805f9b34fb',
    name: 'OpenAuto HFP Audio Gateway',
    path: `${PROFILE_ROOT}/hfp_ag`,
    options: () => ({
      Name: new Variant('s', 'OpenAuto HFP Audio Gateway'),
      RequireAuthentication: new Variant('b', true),
      RequireAuthorization: new Variant('b', false),
    }),
  },
  'hsp-hs': {
    key: 'hsp-hs',
    uuid: '00001108-0000-1000-8000-00805f9b34fb',
    name: 'OpenAuto HSP Headset',
    path: `${PROFILE_ROOT}/hsp_hs`,
    options: () => ({
      Name: new Variant('s', 'OpenAuto HSP Headset'),
      RequireAuthentication: new Variant('b', true),
      RequireAuthorization: new Variant('b', false),
    }),
  },
};

/** The enabled profiles from the btProfiles setting (unknown names are logged and skipped, duplicates once). */
export function enabledProfiles(names: readonly string[]): ProfileDef[] {
  const out: ProfileDef[] = [];
  for (const raw of names) {
    const name = raw.trim().toLowerCase();
    const def = (PROFILES as Record<string, ProfileDef | undefined>)[name];
    if (!def) {
      log.warning(`unknown Bluetooth profile '${raw}' in the btProfiles setting; use aa, hfp-ag or hsp-hs`, {
        profile: raw,
        error_code: 'UnknownProfile',
      });
      continue;
    }
    if (!out.includes(def)) out.push(def);
  }
  return out;
}

/** What org.openauto.System1's ClaimProfile and ReleaseProfile call. Both throw ServiceError. */
export interface ProfileClaimService {
  claimProfile(uuid: string, handler: string, caller: Caller): Promise<void>;
  releaseProfile(uuid: string, caller: Caller): Promise<void>;
}

export interface AuthorizerLike {
  check(sender: string, action: Action, interactive: boolean): Promise<void>;
}

export interface Clock {
  /** Monotonic milliseconds. */
  now(): number;
  setTimer(fn: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

function monotonicMs(): number {
  return Number(process.hrtime.bigint() / 1_000_000n);
}

const realClock: Clock = {
  now: monotonicMs,
  setTimer: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimer: (h) => clearTimeout(h as NodeJS.Timeout),
};

export interface BluezProfilesDeps {
  bus: Bus;
  fds: UnixFdGuard;
  authorizer: AuthorizerLike;
  /** settings.btProfiles */
  enabled: readonly string[];
  backoff?: BackoffSettings;
  /** Bound on handing a connection to the claimant (BlueZ itself waits 25 s for our answer). */
  forwardTimeoutMs?: number;
  clock?: Clock;
}

interface Entry {
  def: ProfileDef;
  machine: RegistrationMachine;
  timer?: unknown;
  forwarded: number;
  rejected: number;
  refused: number;
}

/** Pending ClaimProfile calls by sender: set when the sender leaves the bus while we are still checking. */
type Pending = { gone: boolean };

export class BluezProfiles implements ProfileClaimService {
  private readonly bus: Bus;
  private readonly clock: Clock;
  private readonly entries: Entry[];
  private readonly claims = new ClaimTable<ProfileKey>();
  private readonly pending = new Map<string, Set<Pending>>();
  private readonly forwardTimeoutMs: number;
  private owner: string | undefined;
  /** Bumped by every org.bluez NameOwnerChanged: a GetNameOwner answer older than a signal is stale. */
  private ownerEpoch = 0;
  /** Date.now() − clock.now(), as status() last settled it. */
  private wallOffset: number | undefined;
  private started = false;
  private stopped = false;
  private setupTimer: unknown;
  private setupFailures = 0;

  constructor(private readonly deps: BluezProfilesDeps) {
    this.bus = deps.bus;
    this.clock = deps.clock ?? realClock;
    this.forwardTimeoutMs = deps.forwardTimeoutMs ?? 5000;
    const backoff = deps.backoff ?? DEFAULT_BACKOFF;
    this.entries = enabledProfiles(deps.enabled).map((def) => ({
      def,
      machine: new RegistrationMachine(backoff),
      forwarded: 0,
      rejected: 0,
      refused: 0,
    }));
  }

  /** Exports the Profile1 objects (introspectable) and routes their calls; call before start(). */
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
    for (const m of ['Release', 'NewConnection', 'RequestDisconnection']) {
      proto[m] = () => {
        throw new dbus.DBusError('org.freedesktop.DBus.Error.Failed', 'not available');
      };
    }
    const byPath = new Map(this.entries.map((e) => [e.def.path, e]));
    this.bus.raw.addMethodHandler((msg: DBusMessage) => {
      const entry = byPath.get(msg.path);
      if (!entry) return false;
      if (msg.interface !== undefined && msg.interface !== PROFILE_IFACE) return false;
      if (!['Release', 'NewConnection', 'RequestDisconnection'].includes(msg.member)) return false;
      // Read the sender and take the descriptors before anything else: both belong to this dispatch only.
      const fds = this.deps.fds.take(msg);
      this.onProfileCall(entry, msg, fds);
      return true;
    });
    for (const e of this.entries) this.bus.raw.export(e.def.path, new Profile1(PROFILE_IFACE));
  }

  /** Starts watching org.bluez and registering, in the background: never blocks start-up on BlueZ. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.bus.onSignal(
      {
        sender: 'org.freedesktop.DBus',
        path: '/org/freedesktop/DBus',
        interface: 'org.freedesktop.DBus',
        member: 'NameOwnerChanged',
      },
      (msg) => {
        const [name, , newOwner] = msg.body as [string, string, string];
        if (name === BLUEZ) {
          this.ownerEpoch++;
          this.setOwner(newOwner === '' ? undefined : newOwner);
        } else if (newOwner === '' && name.startsWith(':')) {
          this.senderGone(name);
        }
      },
    );
    void this.setup();
  }

  stop(): void {
    this.stopped = true;
    if (this.setupTimer !== undefined) this.clock.clearTimer(this.setupTimer);
    for (const e of this.entries) {
      if (e.timer !== undefined) this.clock.clearTimer(e.timer);
      e.timer = undefined;
    }
  }

  /** The GetStatus "profiles" section: per profile, registration, last error and claim. */
  status(): { [key: string]: Json } {
    // The clocks' offset is kept while it holds within a second: read anew each call, it would move every
    // time by a millisecond now and then, and GetStatus's answer is cached only while its content is the same.
    const offset = Date.now() - this.clock.now();
    if (this.wallOffset === undefined || Math.abs(offset - this.wallOffset) > 1000) this.wallOffset = offset;
    const wallOffset = this.wallOffset;
    const iso = (t: number | undefined): Json =>
      t === undefined ? null : new Date(wallOffset + t).toISOString();
    const out: { [key: string]: Json } = {};
    for (const e of this.entries) {
      const v = e.machine.view();
      const claim = this.claims.get(e.def.key);
      out[e.def.key] = {
        uuid: e.def.uuid,
        name: e.def.name,
        object_path: e.def.path,
        registered: v.registered,
        state: v.phase,
        conflict: v.conflict,
        last_error: v.lastError ?? null,
        last_error_at: iso(v.lastErrorAt),
        failures: v.failures,
        next_attempt: iso(v.nextAttemptAt),
        registered_at: iso(v.registeredAt),
        registrations: v.registrations,
        bluez_owner: v.owner ?? null,
        claimed: claim !== undefined,
        claimant: claim?.sender ?? null,
        handler: claim?.handler ?? null,
        claimed_at: iso(claim?.since),
        forwarded: e.forwarded,
        rejected: e.rejected,
        refused_callers: e.refused,
      };
    }
    return out;
  }

  // ---- ClaimProfile / ReleaseProfile ---------------------------------------------------------------

  async claimProfile(uuid: string, handler: string, caller: Caller): Promise<void> {
    const entry = this.entryForUuid(uuid);
    if (caller.kind !== 'dbus') {
      throw new ServiceError('InvalidArgs', 'a profile handler is a D-Bus object: claim it over D-Bus');
    }
    if (!/^\/([A-Za-z0-9_]+(\/[A-Za-z0-9_]+)*)?$/.test(handler)) {
      throw new ServiceError('InvalidArgs', 'handler must be an object path');
    }
    // The caller may leave the bus while polkit is asked: remember that, so a claim never outlives it.
    const mark: Pending = { gone: false };
    let marks = this.pending.get(caller.sender);
    if (!marks) {
      marks = new Set();
      this.pending.set(caller.sender, marks);
    }
    marks.add(mark);
    try {
      await this.deps.authorizer.check(caller.sender, ACTIONS.claimProfile, caller.interactive);
    } finally {
      marks.delete(mark);
      if (marks.size === 0) this.pending.delete(caller.sender);
    }
    const fields = this.fields(entry, { claimant: caller.sender, handler });
    if (mark.gone) {
      log.notice(`claim of ${entry.def.name} dropped: the caller left the bus`, fields);
      return;
    }
    const r = this.claims.claim(entry.def.key, caller.sender, handler, this.clock.now());
    if (!r.ok) {
      log.notice(`claim of ${entry.def.name} refused: held by ${r.heldBy}`, {
        ...fields,
        held_by: r.heldBy,
        error_code: 'Busy',
      });
      throw new ServiceError('Busy', `${entry.def.name} is claimed by another client (${r.heldBy})`);
    }
    log.notice(`${entry.def.name} ${r.replaced ? 're-claimed' : 'claimed'} by ${caller.sender}`, fields);
  }

  async releaseProfile(uuid: string, caller: Caller): Promise<void> {
    const entry = this.entryForUuid(uuid);
    // Only the holder's own claim is released (nothing to authorize beyond that); anything else is a no-op.
    if (caller.kind !== 'dbus') return;
    if (this.claims.release(entry.def.key, caller.sender)) {
      log.notice(
        `${entry.def.name} released by ${caller.sender}`,
        this.fields(entry, { claimant: caller.sender }),
      );
    }
  }

  private entryForUuid(uuid: string): Entry {
    const want = uuid.trim().toLowerCase();
    const entry = this.entries.find((e) => e.def.uuid === want);
    if (entry) return entry;
    const known = Object.values(PROFILES).find((d) => d.uuid === want);
    if (known) throw new ServiceError('InvalidArgs', `${known.name} is not enabled on this system`);
    const enabled = this.entries.map((e) => e.def.uuid).join(', ') || 'none';
    throw new ServiceError('InvalidArgs', `unknown profile uuid '${printable(uuid)}' (enabled: ${enabled})`);
  }

  private senderGone(sender: string): void {
    for (const mark of this.pending.get(sender) ?? []) mark.gone = true;
    for (const key of this.claims.senderGone(sender)) {
      const entry = this.entries.find((e) => e.def.key === key);
      if (!entry) continue;
      log.notice(
        `${entry.def.name} released: its claimant left the bus`,
        this.fields(entry, { claimant: sender }),
      );
    }
  }

  // ---- registration ------------------------------------------------------------------------------

  /** Subscribes to NameOwnerChanged and learns the current org.bluez owner; retried until it works. */
  private async setup(): Promise<void> {
    this.setupTimer = undefined;
    if (this.stopped) return;
    const rule =
      "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged'";
    try {
      // org.bluez coming and going, and any connection leaving the bus (claimants).
      await this.bus.addMatch(`${rule},arg0='${BLUEZ}'`);
      await this.bus.addMatch(`${rule},arg2=''`);
      const epoch = this.ownerEpoch;
      const owner = await this.bus.nameOwner(BLUEZ);
      if (epoch === this.ownerEpoch) this.setOwner(owner);
      this.setupFailures = 0;
    } catch (err) {
      this.setupFailures++;
      const ms = Math.min(30_000, 1000 * 2 ** Math.min(this.setupFailures - 1, 5));
      log.warning('watching org.bluez failed; retrying', {
        error: errText(err),
        retry_in_ms: ms,
        error_code: 'BluezWatchFailed',
      });
      this.setupTimer = this.clock.setTimer(() => void this.setup(), ms);
    }
  }

  private setOwner(owner: string | undefined): void {
    if (this.stopped || owner === this.owner) return;
    const previous = this.owner;
    this.owner = owner;
    if (owner)
      log.info(`org.bluez is owned by ${owner}: registering profiles`, {
        bluez_owner: owner,
        previous_owner: previous ?? '',
      });
    else
      log.notice('org.bluez left the bus: profiles are unregistered until it returns', {
        previous_owner: previous ?? '',
      });
    const now = this.clock.now();
    for (const e of this.entries) this.apply(e, e.machine.ownerChanged(owner, now));
  }

  private apply(e: Entry, cmd: Command): void {
    switch (cmd.kind) {
      case 'register':
        void this.register(e, cmd.attempt);
        break;
      case 'wait':
        if (e.timer !== undefined) this.clock.clearTimer(e.timer);
        e.timer = this.clock.setTimer(() => {
          e.timer = undefined;
          if (!this.stopped) this.apply(e, e.machine.timerFired(this.clock.now()));
        }, cmd.ms);
        break;
      case 'cancel-timer':
        if (e.timer !== undefined) this.clock.clearTimer(e.timer);
        e.timer = undefined;
        break;
      case 'none':
        break;
    }
    for (const note of e.machine.takeNotes()) this.logNote(e, note);
  }

  private async register(e: Entry, attempt: Attempt): Promise<void> {
    let outcome: RegisterOutcome;
    try {
      // To the owner's unique name: a reply always belongs to the owner the attempt was made for.
      await this.bus.call({
        destination: attempt.owner,
        path: '/org/bluez',
        interface: PROFILE_MANAGER_IFACE,
        member: 'RegisterProfile',
        signature: 'osa{sv}',
        body: [e.def.path, e.def.uuid, e.def.options()],
        flags: NO_AUTO_START,
      });
      outcome = { ok: true };
    } catch (err) {
      outcome = toOutcome(err);
    }
    if (this.stopped) return;
    this.apply(e, e.machine.finished(attempt, outcome, this.clock.now()));
  }

  private logNote(e: Entry, note: Note): void {
    const fields = this.fields(e, { bluez_owner: this.owner ?? '' });
    switch (note.kind) {
      case 'registered':
        if (note.afterFailures > 0)
          log.notice(`${e.def.name} registered with BlueZ after ${note.afterFailures} failed attempt(s)`, {
            ...fields,
            failures: note.afterFailures,
          });
        else
          log.info(
            `${e.def.name} registered with BlueZ${note.alreadyExisted ? ' (already was)' : ''}`,
            fields,
          );
        break;
      case 'failed': {
        const detail = { ...fields, error: `${note.name}: ${note.message}`, retry_in_ms: note.retryInMs };
        if (note.conflict) {
          // Another program holds the UUID: say so every time it is seen anew, never swallow it.
          const text = `${e.def.name} (${e.def.uuid}) is registered by another program; retrying in ${note.retryInMs} ms`;
          if (note.repeat) log.debug(text, { ...detail, error_code: 'ProfileConflict' });
          else log.warning(text, { ...detail, error_code: 'ProfileConflict' });
        } else {
          const text = `registering ${e.def.name} failed (${note.name}); retrying in ${note.retryInMs} ms`;
          if (note.repeat) log.debug(text, { ...detail, error_code: 'RegisterFailed' });
          else log.warning(text, { ...detail, error_code: 'RegisterFailed' });
        }
        break;
      }
      case 'lost':
        log.info(`${e.def.name} registration lost (${note.reason})`, { ...fields, reason: note.reason });
        break;
    }
  }

  // ---- org.bluez.Profile1, called by BlueZ ------------------------------------------------------------

  private onProfileCall(e: Entry, msg: DBusMessage, fds: number[]): void {
    const closeAll = () => {
      for (const fd of fds) this.deps.fds.closeWhenSent(fd);
    };
    const sender = String(msg.sender ?? '');
    if (this.owner === undefined || sender !== this.owner) {
      closeAll();
      e.refused++;
      log.warning(`${msg.member} on ${e.def.name} refused: the caller is not BlueZ`, {
        ...this.fields(e, { caller: sender, bluez_owner: this.owner ?? '' }),
        member: msg.member,
        error_code: 'AccessDenied',
      });
      this.replyError(msg, ACCESS_DENIED, 'only BlueZ (the owner of org.bluez) may call this object');
      return;
    }
    const expected = { Release: '', NewConnection: 'oha{sv}', RequestDisconnection: 'o' }[
      msg.member as 'Release' | 'NewConnection' | 'RequestDisconnection'
    ];
    if ((msg.signature ?? '') !== expected) {
      closeAll();
      log.warning(`${msg.member} on ${e.def.name} with wrong arguments`, {
        ...this.fields(e, { caller: sender }),
        signature: msg.signature ?? '',
        error_code: 'InvalidArgs',
      });
      this.replyError(msg, INVALID_ARGS, `${msg.member} takes arguments of signature '${expected}'`);
      return;
    }
    switch (msg.member) {
      case 'NewConnection':
        void this.newConnection(e, msg, fds);
        return;
      case 'RequestDisconnection':
        closeAll();
        void this.requestDisconnection(e, msg);
        return;
      case 'Release':
        closeAll();
        log.notice(`BlueZ released ${e.def.name}`, this.fields(e, { bluez_owner: sender }));
        this.apply(e, e.machine.released(this.clock.now()));
        this.replyOk(msg);
        return;
    }
  }

  private async newConnection(e: Entry, msg: DBusMessage, fds: number[]): Promise<void> {
    const [device, fd, props] = msg.body as [string, number, Record<string, V>];
    const fields = this.fields(e, { device: String(device) });
    // Our copy of every descriptor is closed before we answer (so a refused peer sees EOF by then).
    const release = () => {
      for (const x of fds) this.deps.fds.closeWhenSent(x);
    };
    if (!fds.includes(fd)) {
      release();
      log.warning(`NewConnection on ${e.def.name} without its descriptor`, {
        ...fields,
        error_code: 'InvalidArgs',
      });
      this.replyError(msg, INVALID_ARGS, 'the file descriptor did not arrive');
      return;
    }
    const claim = this.claims.get(e.def.key);
    if (!claim) {
      release();
      e.rejected++;
      log.notice(`connection to ${e.def.name} from ${device} refused: no application has claimed it`, {
        ...fields,
        error_code: 'NoClaimant',
      });
      this.replyError(msg, BLUEZ_ERROR_REJECTED, `no application handles ${e.def.name}`);
      return;
    }
    const handlerFields = { ...fields, claimant: claim.sender, handler: claim.handler };
    try {
      await this.bus.call({
        destination: claim.sender,
        path: claim.handler,
        interface: PROFILE_IFACE,
        member: 'NewConnection',
        signature: 'oha{sv}',
        body: [device, fd, props],
        timeoutMs: this.forwardTimeoutMs,
        flags: NO_AUTO_START,
      });
    } catch (err) {
      release();
      e.rejected++;
      log.warning(`the handler of ${e.def.name} did not take the connection from ${device}`, {
        ...handlerFields,
        error: errText(err),
        error_code: 'HandlerFailed',
      });
      this.replyError(
        msg,
        BLUEZ_ERROR_REJECTED,
        `the application handling ${e.def.name} refused the connection`,
      );
      return;
    }
    release();
    e.forwarded++;
    log.info(`connection to ${e.def.name} from ${device} handed to ${claim.sender}`, handlerFields);
    this.replyOk(msg);
  }

  private async requestDisconnection(e: Entry, msg: DBusMessage): Promise<void> {
    const [device] = msg.body as [string];
    const claim = this.claims.get(e.def.key);
    if (claim) {
      try {
        await this.bus.call({
          destination: claim.sender,
          path: claim.handler,
          interface: PROFILE_IFACE,
          member: 'RequestDisconnection',
          signature: 'o',
          body: [device],
          timeoutMs: this.forwardTimeoutMs,
          flags: NO_AUTO_START,
        });
      } catch (err) {
        // The application owns the connection; BlueZ tears down its side anyway.
        log.warning(`the handler of ${e.def.name} failed RequestDisconnection`, {
          ...this.fields(e, { device: String(device), claimant: claim.sender, handler: claim.handler }),
          error: errText(err),
          error_code: 'HandlerFailed',
        });
      }
    }
    this.replyOk(msg);
  }

  private replyOk(msg: DBusMessage): void {
    this.bus.send(Message.newMethodReturn(msg, '', []));
  }

  private replyError(msg: DBusMessage, name: string, text: string): void {
    this.bus.send(
      (Message.newError as unknown as (m: DBusMessage, n: string, t: string) => DBusMessage)(msg, name, text),
    );
  }

  private fields(e: Entry, extra: Fields = {}): Fields {
    return { profile: e.def.key, uuid: e.def.uuid, ...extra };
  }
}

function toOutcome(err: unknown): RegisterOutcome {
  if (err instanceof dbus.DBusError) {
    const indeterminate =
      err.type === 'org.freedesktop.DBus.Error.NoReply' || err.type === 'org.freedesktop.DBus.Error.Timeout';
    return { ok: false, name: err.type, message: err.text, indeterminate };
  }
  if (err instanceof CallTimeoutError)
    return { ok: false, name: 'Timeout', message: err.message, indeterminate: true };
  if (err instanceof DisconnectedError)
    return { ok: false, name: 'Disconnected', message: err.message, indeterminate: true };
  return { ok: false, name: 'Failed', message: errText(err) };
}

/** A caller's string, safe to echo in a message: bounded and without control characters. */
function printable(s: string): string {
  const clean = s.replace(/[\p{Cc}\p{Cf}]/gu, '?');
  return clean.length > 64 ? `${clean.slice(0, 64)}…` : clean;
}
