// Carries out what each profile's RegistrationMachine (registration.ts) decides: RegisterProfile calls to
// org.bluez's current owner, the retry timers, and a journal line for every note.
import dbus from 'dbus-next';
import { type Bus, CallTimeoutError, DisconnectedError, NO_AUTO_START } from '../bus/connection.js';
import { errText, log } from '../log/journal.js';
import { type ProfileDef, type ProfileKey, profileFields } from './profile-catalogue.js';
import {
  type Attempt,
  type BackoffSettings,
  type Command,
  DEFAULT_BACKOFF,
  type Note,
  type RegisterOutcome,
  RegistrationMachine,
  type RegistrationView,
} from './registration.js';

const PROFILE_MANAGER_IFACE = 'org.bluez.ProfileManager1';

interface Entry {
  def: ProfileDef;
  machine: RegistrationMachine;
  timer?: NodeJS.Timeout;
}

export class RegistrationDriver {
  private readonly entries = new Map<ProfileKey, Entry>();
  private owner: string | undefined;
  private stopped = false;

  /** `now` is monotonic milliseconds, the machines' clock. */
  constructor(
    private readonly bus: Bus,
    defs: readonly ProfileDef[],
    private readonly now: () => number,
    backoff: BackoffSettings = DEFAULT_BACKOFF,
  ) {
    for (const def of defs) this.entries.set(def.key, { def, machine: new RegistrationMachine(backoff) });
  }

  /** org.bluez has a new owner (undefined: it left the bus): every profile registers with it afresh. */
  ownerChanged(owner: string | undefined): void {
    if (this.stopped) return;
    this.owner = owner;
    const now = this.now();
    for (const e of this.entries.values()) this.apply(e, e.machine.ownerChanged(owner, now));
  }

  /** BlueZ called Release on the profile's object: it no longer holds our registration. */
  released(key: ProfileKey): void {
    const e = this.entries.get(key);
    if (e) this.apply(e, e.machine.released(this.now()));
  }

  /** Grows with every change GetStatus shows: its text is rebuilt only after one. */
  get revision(): number {
    let n = 0;
    for (const e of this.entries.values()) n += e.machine.revision;
    return n;
  }

  view(key: ProfileKey): RegistrationView | undefined {
    return this.entries.get(key)?.machine.view();
  }

  stop(): void {
    this.stopped = true;
    for (const e of this.entries.values()) {
      clearTimeout(e.timer);
      e.timer = undefined;
    }
  }

  private apply(e: Entry, cmd: Command): void {
    switch (cmd.kind) {
      case 'register':
        void this.register(e, cmd.attempt);
        break;
      case 'wait':
        clearTimeout(e.timer);
        e.timer = setTimeout(() => {
          e.timer = undefined;
          if (!this.stopped) this.apply(e, e.machine.timerFired(this.now()));
        }, cmd.ms);
        // Retrying forever must not keep the process alive on its own.
        e.timer.unref();
        break;
      case 'cancel-timer':
        clearTimeout(e.timer);
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
    this.apply(e, e.machine.finished(attempt, outcome, this.now()));
  }

  private logNote(e: Entry, note: Note): void {
    const fields = profileFields(e.def, { bluez_owner: this.owner ?? '' });
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
}

/** A failed call as the machine sees it: no answer at all (timeout, disconnect) may still have registered us. */
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
