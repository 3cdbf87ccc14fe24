// Authorization of mutating calls: root passes without asking; everyone else is decided by polkit, with the
// caller's unique bus name as the subject (race-free, unlike a pid).
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
/** A human may be typing a password when the caller allowed interaction; otherwise the usual bound. */
const INTERACTIVE_TIMEOUT_MS = 60_000;

export class Authorizer {
  constructor(private readonly bus: Bus) {}

  /** Resolves when `sender` may perform `action`; throws ServiceError(AccessDenied|InteractiveAuthorizationRequired). */
  async check(sender: string, action: Action, interactive: boolean): Promise<void> {
    let uid: number;
    try {
      uid = await this.bus.unixUser(sender);
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
