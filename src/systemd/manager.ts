// A small client of org.freedesktop.systemd1 on the daemon's bus connection: load units once, subscribe
// to their property changes, read their state, and restart them while waiting for the job's result.
// Never `systemctl`: no child processes, and the answer is systemd's own.
import dbus from 'dbus-next';
import { type Bus, CALL_TIMEOUT_MS, type DBusMessage } from './../bus/connection.js';
import { PreparedCall } from '../bus/prepared-call.js';
import { errText, log } from '../log/journal.js';

const SYSTEMD = 'org.freedesktop.systemd1';
const MANAGER_PATH = '/org/freedesktop/systemd1';
const MANAGER_IFACE = 'org.freedesktop.systemd1.Manager';
const UNIT_IFACE = 'org.freedesktop.systemd1.Unit';
const PROPS_IFACE = 'org.freedesktop.DBus.Properties';

/** The unit properties the daemon reads; timestamps are CLOCK_MONOTONIC microseconds (0 = never). */
export interface UnitState {
  loadState: string;
  activeState: string;
  subState: string;
  /** When the unit last left 'inactive' (i.e. began activating). */
  inactiveExitMonotonicUs: bigint;
  /** When the unit last entered 'active'. */
  activeEnterMonotonicUs: bigint;
  /** Path of the job queued for the unit, '/' when none. */
  jobPath: string;
}

export type UnitListener = (unit: string, state: UnitState) => void;

function variantValue(v: unknown): unknown {
  return v instanceof dbus.Variant ? v.value : v;
}

function toBig(v: unknown): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') return BigInt(v);
  return 0n;
}

export function parseUnitProps(props: Record<string, unknown>, prev?: UnitState): UnitState {
  const get = (k: string) => variantValue(props[k]);
  const job = get('Job');
  return {
    loadState: String(get('LoadState') ?? prev?.loadState ?? 'unknown'),
    activeState: String(get('ActiveState') ?? prev?.activeState ?? 'unknown'),
    subState: String(get('SubState') ?? prev?.subState ?? 'unknown'),
    inactiveExitMonotonicUs:
      'InactiveExitTimestampMonotonic' in props
        ? toBig(get('InactiveExitTimestampMonotonic'))
        : (prev?.inactiveExitMonotonicUs ?? 0n),
    activeEnterMonotonicUs:
      'ActiveEnterTimestampMonotonic' in props
        ? toBig(get('ActiveEnterTimestampMonotonic'))
        : (prev?.activeEnterMonotonicUs ?? 0n),
    // Job is (uo): [id, path].
    jobPath: Array.isArray(job) ? String(job[1]) : (prev?.jobPath ?? '/'),
  };
}

/** Result of a finished job as systemd reports it in JobRemoved: done, canceled, timeout, failed, dependency, skipped. */
export type JobResult = string;

export class SystemdManager {
  private readonly unitPaths = new Map<string, string>();
  private readonly pathUnits = new Map<string, string>();
  private readonly states = new Map<string, UnitState>();
  private readonly policies = new Map<string, { restarts: boolean; delayMs: number }>();
  private readonly listeners = new Set<UnitListener>();
  private readonly jobWaiters = new Map<string, (result: JobResult) => void>();
  /** Results that arrived before anyone waited (the reply to RestartUnit can trail the signal). */
  private readonly earlyResults = new Map<string, JobResult>();
  private changes = 0;
  /** The safety-net poll's ListUnitsByNames, per list of units (one list in practice). Each keeps the
   * last listing only while it agrees with the states the signals gave: then the same bytes mean the same. */
  private readonly listCalls = new Map<string, PreparedCall>();

  constructor(private readonly bus: Bus) {}

  /** Subscribes to systemd's signals; without Subscribe() systemd sends no PropertiesChanged for units. */
  async start(): Promise<void> {
    // Anyone may send a unicast signal to our unique name: the bus passes on only those of systemd's
    // current owner, known before Subscribe so none of systemd's is missed.
    await this.bus.trackOwner(SYSTEMD);
    if (!this.bus.ownerOf(SYSTEMD)) throw new Error('systemd is not on the bus');
    await this.bus.addMatch(
      `type='signal',sender='${SYSTEMD}',path='${MANAGER_PATH}',interface='${MANAGER_IFACE}',member='JobRemoved'`,
    );
    this.bus.onSignal(
      { sender: SYSTEMD, interface: MANAGER_IFACE, member: 'JobRemoved', path: MANAGER_PATH },
      (msg) => this.onJobRemoved(msg),
    );
    this.bus.onSignal({ sender: SYSTEMD, interface: PROPS_IFACE, member: 'PropertiesChanged' }, (msg) =>
      this.onPropertiesChanged(msg),
    );
    await this.managerCall('Subscribe', '', []).catch((err) => {
      // Already subscribed on this connection is fine; anything else is worth knowing.
      if (!(err instanceof dbus.DBusError && /already/i.test(err.text))) throw err;
    });
  }

  onUnitChanged(listener: UnitListener): void {
    this.listeners.add(listener);
  }

  /** Loads a unit (once) and starts watching its properties. Returns its object path. */
  async watch(unit: string): Promise<string> {
    const known = this.unitPaths.get(unit);
    if (known) return known;
    const reply = await this.managerCall('LoadUnit', 's', [unit]);
    const path = String(reply.body[0]);
    await this.bus.addMatch(
      `type='signal',sender='${SYSTEMD}',path='${path}',interface='${PROPS_IFACE}',member='PropertiesChanged'`,
    );
    this.unitPaths.set(unit, path);
    this.pathUnits.set(path, unit);
    return path;
  }

  /** Reads the unit's state with GetAll (the safety-net poll and the first read). */
  async refresh(unit: string): Promise<UnitState> {
    const path = await this.watch(unit);
    const reply = await this.bus.call({
      destination: SYSTEMD,
      path,
      interface: PROPS_IFACE,
      member: 'GetAll',
      signature: 's',
      body: [UNIT_IFACE],
    });
    const state = parseUnitProps(reply.body[0] as Record<string, unknown>);
    this.update(unit, state);
    return state;
  }

  /**
   * The cheap safety-net read: one ListUnitsByNames call for all units, compared with what the signals last
   * said. Returns the units whose load/active/sub state or queued job differ (read those with refresh()).
   */
  async changedSince(units: string[]): Promise<string[]> {
    const key = units.join('\n');
    let list = this.listCalls.get(key);
    if (!list) {
      list = new PreparedCall(this.bus, {
        destination: SYSTEMD,
        path: MANAGER_PATH,
        interface: MANAGER_IFACE,
        member: 'ListUnitsByNames',
        signature: 'as',
        body: [units],
      });
      this.listCalls.set(key, list);
    }
    // The same bytes as a listing that agreed with the states, which have not changed since: nothing did.
    const answer = await list.call();
    if (answer.same) return [];
    const { reply } = answer;
    // a(ssssssouso): name, description, load, active, sub, following, path, job id, job type, job path
    const rows = reply.body[0] as [
      string,
      string,
      string,
      string,
      string,
      string,
      string,
      number,
      string,
      string,
    ][];
    const changed: string[] = [];
    for (const unit of units) {
      const row = rows.find((r) => r[0] === unit);
      const known = this.states.get(unit);
      if (
        !row ||
        !known ||
        known.loadState !== row[2] ||
        known.activeState !== row[3] ||
        known.subState !== row[4] ||
        known.jobPath !== row[9]
      ) {
        changed.push(unit);
      }
    }
    if (changed.length > 0) list.forget();
    return changed;
  }

  /**
   * Whether systemd restarts the unit by itself (its Restart= is not "no") and after how long (RestartSec).
   * Read on demand and cached: it only changes with a daemon-reload.
   */
  async restartPolicy(unit: string): Promise<{ restarts: boolean; delayMs: number }> {
    const known = this.policies.get(unit);
    if (known) return known;
    const path = await this.watch(unit);
    const service = { destination: SYSTEMD, path, interface: 'org.freedesktop.systemd1.Service' };
    const get = (prop: string) => this.bus.getProperty(service, prop);
    const policy = {
      restarts: String(await get('Restart')) !== 'no',
      delayMs: Number(toBig(await get('RestartUSec')) / 1000n),
    };
    this.policies.set(unit, policy);
    return policy;
  }

  state(unit: string): UnitState | undefined {
    return this.states.get(unit);
  }

  /** Grows whenever a unit's state is recorded: GetStatus's text is rebuilt only when it (or another part) moved. */
  get revision(): number {
    return this.changes;
  }

  /**
   * Restarts a unit and waits for its job to finish. Resolves with systemd's job result ('done' on success).
   * The wait is bounded by timeoutMs (a unit that takes longer is reported as 'timeout' by us, and its job
   * keeps running in systemd: we never abandon a job by cancelling it).
   */
  async restart(unit: string, timeoutMs = CALL_TIMEOUT_MS): Promise<JobResult> {
    return this.runJob('RestartUnit', unit, timeoutMs);
  }

  async startUnit(unit: string, timeoutMs = CALL_TIMEOUT_MS): Promise<JobResult> {
    return this.runJob('StartUnit', unit, timeoutMs);
  }

  async stopUnit(unit: string, timeoutMs = CALL_TIMEOUT_MS): Promise<JobResult> {
    return this.runJob('StopUnit', unit, timeoutMs);
  }

  private async runJob(method: string, unit: string, timeoutMs: number): Promise<JobResult> {
    const deadline = Date.now() + timeoutMs;
    const reply = await this.managerCall(method, 'ss', [unit, 'replace'], timeoutMs);
    const job = String(reply.body[0]);
    const early = this.earlyResults.get(job);
    if (early !== undefined) {
      this.earlyResults.delete(job);
      return early;
    }
    return new Promise<JobResult>((resolve) => {
      const timer = setTimeout(
        () => {
          this.jobWaiters.delete(job);
          resolve('timeout');
        },
        Math.max(0, deadline - Date.now()),
      );
      this.jobWaiters.set(job, (result) => {
        clearTimeout(timer);
        resolve(result);
      });
    });
  }

  private managerCall(member: string, signature: string, body: unknown[], timeoutMs = CALL_TIMEOUT_MS) {
    return this.bus.call({
      destination: SYSTEMD,
      path: MANAGER_PATH,
      interface: MANAGER_IFACE,
      member,
      signature,
      body,
      timeoutMs,
    });
  }

  private onJobRemoved(msg: DBusMessage): void {
    // JobRemoved(u id, o job, s unit, s result)
    const [, job, , result] = msg.body as [number, string, string, string];
    const waiter = this.jobWaiters.get(job);
    if (waiter) {
      this.jobWaiters.delete(job);
      waiter(result);
      return;
    }
    // Keep a few unclaimed results for the RestartUnit reply that may still be on its way.
    this.earlyResults.set(job, result);
    if (this.earlyResults.size > 64) {
      const first = this.earlyResults.keys().next().value;
      if (first !== undefined) this.earlyResults.delete(first);
    }
  }

  private onPropertiesChanged(msg: DBusMessage): void {
    const unit = this.pathUnits.get(msg.path);
    if (!unit) return;
    const [iface, changed] = msg.body as [string, Record<string, unknown>];
    if (iface !== UNIT_IFACE) return;
    const prev = this.states.get(unit);
    this.update(unit, parseUnitProps(changed, prev));
  }

  private update(unit: string, state: UnitState): void {
    // A listing kept from before no longer stands for what we know (also a reply read but not yet compared:
    // the reader runs before the poll's comparison does).
    for (const list of this.listCalls.values()) list.forget();
    this.states.set(unit, state);
    this.changes++;
    for (const l of this.listeners) {
      try {
        l(unit, state);
      } catch (err) {
        log.err('unit listener failed', { unit, error: errText(err) });
      }
    }
  }
}
