// What ClaimProfile / ReleaseProfile do: which enabled profile a UUID names and who holds it (claims.ts),
// until its holder's bus connection ends. daemon.ts validates and authorizes before calling this.
import { printable, ServiceError } from '../errors.js';
import { log } from '../log/journal.js';
import { type Claim, ClaimTable } from './claims.js';
import { PROFILES, type ProfileDef, type ProfileKey, profileFields } from './profile-catalogue.js';

/** A caller between its ClaimProfile and the stored claim (polkit may take seconds): did it leave meanwhile? */
export interface ClaimWatch {
  readonly sender: string;
  gone: boolean;
}

export class ProfileClaims {
  private readonly table = new ClaimTable<ProfileKey>();
  private readonly watches = new Map<string, Set<ClaimWatch>>();

  /** `now` is monotonic milliseconds (the claim's `since`). */
  constructor(
    private readonly enabled: readonly ProfileDef[],
    private readonly now: () => number,
  ) {}

  /** The enabled profile a UUID names (any case); InvalidArgs for a disabled or unknown one. */
  resolve(uuid: string): ProfileDef {
    const want = uuid.trim().toLowerCase();
    const def = this.enabled.find((d) => d.uuid === want);
    if (def) return def;
    const known = Object.values(PROFILES).find((d) => d.uuid === want);
    if (known) throw new ServiceError('InvalidArgs', `${known.name} is not enabled on this system`);
    const enabled = this.enabled.map((d) => d.uuid).join(', ') || 'none';
    throw new ServiceError('InvalidArgs', `unknown profile uuid '${printable(uuid)}' (enabled: ${enabled})`);
  }

  /** Starts noting whether `sender` leaves the bus; pair with unwatch(). */
  watch(sender: string): ClaimWatch {
    const w: ClaimWatch = { sender, gone: false };
    let set = this.watches.get(sender);
    if (!set) {
      set = new Set();
      this.watches.set(sender, set);
    }
    set.add(w);
    return w;
  }

  unwatch(w: ClaimWatch): void {
    const set = this.watches.get(w.sender);
    set?.delete(w);
    if (set?.size === 0) this.watches.delete(w.sender);
  }

  /** Stores the watched caller's claim, unless it left the bus meanwhile. Throws Busy when held by another. */
  claim(def: ProfileDef, w: ClaimWatch, handler: string): void {
    const fields = profileFields(def, { claimant: w.sender, handler });
    if (w.gone) {
      log.notice(`claim of ${def.name} dropped: the caller left the bus`, fields);
      return;
    }
    const r = this.table.claim(def.key, w.sender, handler, this.now());
    if (!r.ok) {
      log.notice(`claim of ${def.name} refused: held by ${r.heldBy}`, {
        ...fields,
        held_by: r.heldBy,
        error_code: 'Busy',
      });
      throw new ServiceError('Busy', `${def.name} is claimed by another client (${r.heldBy})`);
    }
    log.notice(`${def.name} ${r.replaced ? 're-claimed' : 'claimed'} by ${w.sender}`, fields);
  }

  /** Releases the profile if `sender` holds it; anyone else's release changes nothing. */
  release(def: ProfileDef, sender: string): void {
    if (this.table.release(def.key, sender))
      log.notice(`${def.name} released by ${sender}`, profileFields(def, { claimant: sender }));
  }

  /** A connection left the bus: its claims end, and a claim it is still waiting for will be dropped. */
  senderGone(sender: string): void {
    for (const w of this.watches.get(sender) ?? []) w.gone = true;
    for (const key of this.table.senderGone(sender)) {
      const def = this.enabled.find((d) => d.key === key);
      if (def)
        log.notice(
          `${def.name} released: its claimant left the bus`,
          profileFields(def, { claimant: sender }),
        );
    }
  }

  /** Grows with every change GetStatus shows: its text is rebuilt only after one. */
  get revision(): number {
    return this.table.revision;
  }

  get(key: ProfileKey): Claim | undefined {
    return this.table.get(key);
  }
}
