// Authorization of mutating calls: root passes without asking; everyone else is decided by polkit, with the
// caller's unique bus name as the subject (race-free, unlike a pid).
//
// Every check is a call on the daemon's one bus connection, and the bus allows a connection only so many
// calls awaiting a reply (dbus-daemon's max_replies_per_connection, 128 on the system bus): a flood of
// denied calls must never use up the room the monitor's own systemd and BlueZ calls need. So checks are
// admitted by the limits below, and a call over them is answered at once with Busy, without asking polkit.
import dbus from 'dbus-next';
import { ServiceError } from '../errors.js';
import { errText, log } from '../log/journal.js';
import type { Bus } from './connection.js';

export const ACTIONS = {
  applyConfig: 'org.openauto.system.apply-config',
  restartService: 'org.openauto.system.restart-service',
  claimProfile: 'org.openauto.system.claim-profile',
  setProxyRoute: 'org.openauto.system.set-proxy-route',
} as const;
export type Action = (typeof ACTIONS)[keyof typeof ACTIONS];

const ALLOW_USER_INTERACTION = 0x1;

export interface AuthorizerLimits {
  /** polkit checks in flight in all; the rest of the bus's 128 pending replies stays the daemon's own. */
  global: number;
  /** ... in flight for one Unix user (however many connections it opens). */
  perUid: number;
  /** ... in flight for one bus connection. */
  perSender: number;
  /** Denials one Unix user may collect per second, after a burst of `deniedBurst` (a token bucket, refilled
   * continuously; only checks polkit denied take a token, so an authorized caller is never slowed): keeps
   * a flood of refused calls from spending polkitd's CPU. */
  deniedPerSecond: number;
  deniedBurst: number;
}

export const DEFAULT_AUTHORIZER_LIMITS: AuthorizerLimits = {
  global: 16,
  perUid: 4,
  perSender: 2,
  deniedPerSecond: 5,
  deniedBurst: 20,
};

/** What a caller over a limit is told (D-Bus error org.openauto.System1.Error.Busy). */
export const BUSY_MESSAGE = 'too many authorization checks in progress; try again later';

/** Unique names are never reused on a bus, so a sender's uid can be remembered; bounded, oldest dropped. */
const UID_CACHE_SIZE = 512;
/** Refusals over the limits are logged at most once per user per this period, with their count. */
const REFUSAL_LOG_MS = 10_000;

interface UidState {
  inFlight: number;
  tokens: number;
  refilledAt: number;
  refused: number;
  loggedAt: number;
}
/** A human may be typing a password when the caller allowed interaction; otherwise the usual bound. */
const INTERACTIVE_TIMEOUT_MS = 60_000;

export class Authorizer {
  private readonly limits: AuthorizerLimits;
  private readonly uids = new Map<string, Promise<number>>();
  /** The same, for the senders whose answer has come (read synchronously by refusesNow). */
  private readonly knownUids = new Map<string, number>();
  private readonly perUid = new Map<number, UidState>();
  private readonly perSender = new Map<string, number>();
  private inFlight = 0;

  constructor(
    private readonly bus: Bus,
    limits: Partial<AuthorizerLimits> = {},
    private readonly now: () => number = () => performance.now(),
  ) {
    this.limits = { ...DEFAULT_AUTHORIZER_LIMITS, ...limits };
  }

  /** polkit checks in flight now. */
  get checksInFlight(): number {
    return this.inFlight;
  }

  /** Resolves when `sender` may perform `action`; throws ServiceError(AccessDenied|InteractiveAuthorizationRequired|Busy). */
  async check(sender: string, action: Action, interactive: boolean): Promise<void> {
    let uid: number;
    try {
      uid = await this.unixUser(sender);
    } catch (err) {
      log.warning('could not identify caller', {
        sender,
        action,
        error: errText(err),
        error_code: 'AccessDenied',
      });
      throw new ServiceError('AccessDenied', 'could not identify the caller');
    }
    if (uid === 0) return;

    const st = this.admit(sender, uid, action);
    st.inFlight++;
    this.inFlight++;
    this.perSender.set(sender, (this.perSender.get(sender) ?? 0) + 1);
    try {
      await this.ask(sender, uid, action, interactive);
    } catch (err) {
      st.tokens -= 1;
      throw err;
    } finally {
      st.inFlight--;
      this.inFlight--;
      const left = (this.perSender.get(sender) ?? 1) - 1;
      if (left === 0) this.perSender.delete(sender);
      else this.perSender.set(sender, left);
    }
  }

  /** The caller's uid, asked of the bus once per connection. */
  private unixUser(sender: string): Promise<number> {
    let p = this.uids.get(sender);
    if (!p) {
      p = this.bus.unixUser(sender);
      this.uids.set(sender, p);
      p.then(
        (uid) => {
          if (this.uids.get(sender) === p) this.knownUids.set(sender, uid);
        },
        () => this.uids.delete(sender),
      );
      if (this.uids.size > UID_CACHE_SIZE) {
        const oldest = this.uids.keys().next().value;
        if (oldest !== undefined) {
          this.uids.delete(oldest);
          this.knownUids.delete(oldest);
        }
      }
    }
    return p;
  }

  /**
   * True when a check for `sender` would be refused right now (its uid is known, not root, and it is over a
   * limit): the face then answers Busy before doing anything else, so a refused call costs next to nothing.
   * Counted and logged as a refusal.
   */
  refusesNow(sender: string): boolean {
    const uid = this.knownUids.get(sender);
    if (uid === undefined || uid === 0) return false;
    return this.over(sender, uid, undefined) !== undefined;
  }

  /** Takes a place for one check, or throws Busy (logged, rate-limited) when the caller is over a limit. */
  private admit(sender: string, uid: number, action: Action): UidState {
    if (this.over(sender, uid, action) !== undefined) throw new ServiceError('Busy', BUSY_MESSAGE);
    return this.perUid.get(uid) as UidState;
  }

  /** Which limit a check for this caller would exceed now (the refusal is counted and logged), if any. */
  private over(sender: string, uid: number, action: Action | undefined): string | undefined {
    const now = this.now();
    let st = this.perUid.get(uid);
    if (!st) {
      if (this.perUid.size >= UID_CACHE_SIZE) {
        for (const [k, v] of this.perUid) if (v.inFlight === 0) this.perUid.delete(k);
      }
      st = { inFlight: 0, tokens: this.limits.deniedBurst, refilledAt: now, refused: 0, loggedAt: -Infinity };
      this.perUid.set(uid, st);
    }
    const rate = this.limits.deniedPerSecond;
    st.tokens = Math.min(this.limits.deniedBurst, st.tokens + ((now - st.refilledAt) / 1000) * rate);
    st.refilledAt = now;
    let over: string | undefined;
    if (this.inFlight >= this.limits.global) over = 'global';
    else if (st.inFlight >= this.limits.perUid) over = 'per-user';
    else if ((this.perSender.get(sender) ?? 0) >= this.limits.perSender) over = 'per-connection';
    else if (st.tokens < 1) over = 'per-user denial rate';
    if (over === undefined) return undefined;
    st.refused++;
    if (now - st.loggedAt >= REFUSAL_LOG_MS) {
      log.notice('authorization checks refused: too many from this user', {
        sender,
        uid,
        ...(action ? { action } : {}),
        limit: over,
        refused: st.refused,
        error_code: 'Busy',
      });
      st.loggedAt = now;
      st.refused = 0;
    }
    return over;
  }

  private async ask(sender: string, uid: number, action: Action, interactive: boolean): Promise<void> {
    let authorized = false;
    let challenge = false;
    try {
      const reply = await this.bus.call({
        destination: 'org.freedesktop.PolicyKit1',
        path: '/org/freedesktop/PolicyKit1/Authority',
        interface: 'org.freedesktop.PolicyKit1.Authority',
        member: 'CheckAuthorization',
        signature: '(sa{sv})sa{ss}us',
        body: [
          ['system-bus-name', { name: new dbus.Variant('s', sender) }],
          action,
          {},
          interactive ? ALLOW_USER_INTERACTION : 0,
          '',
        ],
        ...(interactive ? { timeoutMs: INTERACTIVE_TIMEOUT_MS } : {}),
      });
      const [isAuthorized, isChallenge] = reply.body[0] as [boolean, boolean, Record<string, string>];
      authorized = isAuthorized;
      challenge = isChallenge;
    } catch (err) {
      log.err('polkit check failed', {
        sender,
        uid,
        action,
        error: errText(err),
        error_code: 'AccessDenied',
      });
      throw new ServiceError('AccessDenied', 'authorization could not be checked');
    }
    if (authorized) return;
    log.notice('caller not authorized', { sender, uid, action, error_code: 'AccessDenied' });
    if (challenge) {
      throw new ServiceError(
        'InteractiveAuthorizationRequired',
        `interactive authorization required for ${action}`,
      );
    }
    throw new ServiceError('AccessDenied', `not authorized for ${action}`);
  }
}
