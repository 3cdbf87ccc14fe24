// Puts the BlueZ profiles together on the daemon's one bus connection (BlueZ calls a profile back on the
// connection that registered it), follows org.bluez's owner and departing clients, and reports status.
import type { Bus } from '../bus/connection.js';
import { monotonicMs, WallClock } from '../clock.js';
import { errText, log } from '../log/journal.js';
import { ProfileClaims } from './claims-service.js';
import { BLUEZ, enabledProfiles, type ProfileDef } from './profile-catalogue.js';
import { Profile1Export } from './profile1-export.js';
import type { BackoffSettings } from './registration.js';
import { RegistrationDriver } from './registration-driver.js';
import type { UnixFdGuard } from './unix-fds.js';

export interface BluezProfilesDeps {
  bus: Bus;
  fds: UnixFdGuard;
  /** settings.btProfiles */
  enabled: readonly string[];
  backoff?: BackoffSettings;
  /** Bound on handing a connection to the claimant (BlueZ itself waits 25 s for our answer). */
  forwardTimeoutMs?: number;
}

/** One profile in the GetStatus "profiles" section (times are ISO 8601, null when never). */
export type ProfileStatus = {
  uuid: string;
  name: string;
  object_path: string;
  registered: boolean;
  state: string;
  conflict: boolean;
  last_error: string | null;
  last_error_at: string | null;
  failures: number;
  next_attempt: string | null;
  registered_at: string | null;
  registrations: number;
  bluez_owner: string | null;
  claimed: boolean;
  claimant: string | null;
  handler: string | null;
  claimed_at: string | null;
  forwarded: number;
  rejected: number;
  refused_callers: number;
};

export class BluezProfiles {
  readonly claims: ProfileClaims;
  private readonly bus: Bus;
  private readonly defs: readonly ProfileDef[];
  private readonly registration: RegistrationDriver;
  private readonly objects: Profile1Export;
  private owner: string | undefined;
  /** Bumped by every org.bluez NameOwnerChanged: a GetNameOwner answer older than a signal is stale. */
  private ownerEpoch = 0;
  private readonly wall = new WallClock();
  private started = false;
  private stopped = false;
  private setupTimer: NodeJS.Timeout | undefined;
  private setupFailures = 0;

  constructor(deps: BluezProfilesDeps) {
    this.bus = deps.bus;
    this.defs = enabledProfiles(deps.enabled);
    this.claims = new ProfileClaims(this.defs, monotonicMs);
    this.registration = new RegistrationDriver(deps.bus, this.defs, monotonicMs, deps.backoff);
    this.objects = new Profile1Export({
      bus: deps.bus,
      fds: deps.fds,
      defs: this.defs,
      claims: this.claims,
      bluezOwner: () => this.owner,
      onRelease: (key) => this.registration.released(key),
      forwardTimeoutMs: deps.forwardTimeoutMs ?? 5000,
    });
  }

  /** Exports the Profile1 objects; call before start(). */
  export(): void {
    this.objects.export();
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
          this.claims.senderGone(name);
        }
      },
    );
    void this.setup();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.setupTimer);
    this.registration.stop();
  }

  /** Grows whenever status() may have changed: a registration's, a claim's or a counter's change. */
  get statusRevision(): number {
    return this.registration.revision + this.claims.revision + this.objects.revision;
  }

  /** The GetStatus "profiles" section: per profile, registration, last error and claim. */
  status(): { [key: string]: ProfileStatus } {
    const iso = this.wall.converter();
    const out: { [key: string]: ProfileStatus } = {};
    for (const def of this.defs) {
      const v = this.registration.view(def.key);
      if (!v) continue;
      const claim = this.claims.get(def.key);
      const n = this.objects.counters(def.key);
      out[def.key] = {
        uuid: def.uuid,
        name: def.name,
        object_path: def.path,
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
        forwarded: n.forwarded,
        rejected: n.rejected,
        refused_callers: n.refused,
      };
    }
    return out;
  }

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
      this.setupTimer = setTimeout(() => void this.setup(), ms);
      this.setupTimer.unref();
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
    this.registration.ownerChanged(owner);
  }
}
