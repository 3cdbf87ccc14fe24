// Who handles each profile's incoming connections: at most one client (unique name and object path) per
// profile, until it releases the claim or leaves the bus. Pure bookkeeping, tested without a bus.

export interface Claim {
  /** The claimant's unique bus name (":1.42"). */
  readonly sender: string;
  /** The claimant's org.bluez.Profile1 object. */
  readonly handler: string;
  readonly since: number;
}

export type ClaimResult = { ok: true; replaced: boolean } | { ok: false; heldBy: string };

export class ClaimTable<K extends string = string> {
  private readonly claims = new Map<K, Claim>();
  private changes = 0;

  /** A client claims a profile; the same client claiming again replaces its handler. */
  claim(profile: K, sender: string, handler: string, now: number): ClaimResult {
    const current = this.claims.get(profile);
    if (current && current.sender !== sender) return { ok: false, heldBy: current.sender };
    this.claims.set(profile, { sender, handler, since: now });
    this.changes++;
    return { ok: true, replaced: current !== undefined };
  }

  /** Releases the profile if `sender` holds it; true when something was released. */
  release(profile: K, sender: string): boolean {
    const current = this.claims.get(profile);
    if (!current || current.sender !== sender) return false;
    this.claims.delete(profile);
    this.changes++;
    return true;
  }

  /** A client left the bus: every claim it held ends. Returns the profiles released. */
  senderGone(sender: string): K[] {
    const released: K[] = [];
    for (const [profile, claim] of this.claims) {
      if (claim.sender !== sender) continue;
      this.claims.delete(profile);
      this.changes++;
      released.push(profile);
    }
    return released;
  }

  /** Grows with every change GetStatus shows: its text is rebuilt only after one. */
  get revision(): number {
    return this.changes;
  }

  get(profile: K): Claim | undefined {
    return this.claims.get(profile);
  }
}
