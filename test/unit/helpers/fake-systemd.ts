// A small org.freedesktop.systemd1 on a private bus: the Manager calls the daemon makes (Subscribe, LoadUnit,
// ListUnitsByNames, RestartUnit with its JobRemoved) and the units' properties with their PropertiesChanged.
// A restart job takes `jobMs` and ends with what `result` says; the unit is active after a 'done'.
import { EventEmitter } from 'node:events';
import dbus from 'dbus-next';
import { Bus, type DBusMessage } from '../../../src/bus/connection.js';

const SYSTEMD = 'org.freedesktop.systemd1';
const MANAGER_PATH = '/org/freedesktop/systemd1';
const MANAGER = `${SYSTEMD}.Manager`;
const UNIT = `${SYSTEMD}.Unit`;
const PROPS = 'org.freedesktop.DBus.Properties';

export interface FakeUnit {
  name: string;
  path: string;
  activeState: string;
  subState: string;
  loadState: string;
  /** systemd's own Restart= ('no' or e.g. 'on-failure') and RestartSec. */
  restart: string;
  restartSec: number;
  activeEnterUs: bigint;
}

const monoUs = () => process.hrtime.bigint() / 1000n;
const v = (sig: string, value: unknown) => new dbus.Variant(sig, value);

/** Emits 'restart' (unit) when a RestartUnit arrives and 'job' (unit, result) when its job ends. */
export class FakeSystemd extends EventEmitter {
  readonly units = new Map<string, FakeUnit>();
  /** Every RestartUnit, in order, with when it came (ms on the monotonic clock). */
  readonly restarts: { unit: string; atMs: number }[] = [];
  jobMs = 20;
  result: (unit: string) => string = () => 'done';
  private jobs = 0;

  private constructor(readonly bus: Bus) {
    super();
  }

  static async start(units: string[]): Promise<FakeSystemd> {
    const fake = new FakeSystemd(await Bus.connect());
    for (const [i, name] of units.entries()) fake.add(name, i);
    fake.bus.raw.addMethodHandler((msg: DBusMessage) => fake.handle(msg));
    await fake.bus.raw.requestName(SYSTEMD, dbus.NameFlag.DO_NOT_QUEUE);
    return fake;
  }

  private add(name: string, i: number): void {
    this.units.set(name, {
      name,
      path: `${MANAGER_PATH}/unit/u${i}`,
      activeState: 'active',
      subState: 'running',
      loadState: 'loaded',
      restart: 'no',
      restartSec: 0,
      activeEnterUs: monoUs(),
    });
  }

  unit(name: string): FakeUnit {
    const u = this.units.get(name);
    if (!u) throw new Error(`no fake unit ${name}`);
    return u;
  }

  /** Changes a unit's state and signals it as systemd does. */
  set(name: string, activeState: string, subState: string): void {
    const u = this.unit(name);
    u.activeState = activeState;
    u.subState = subState;
    if (activeState === 'active') u.activeEnterUs = monoUs();
    this.bus.send(
      dbus.Message.newSignal(u.path, PROPS, 'PropertiesChanged', 'sa{sv}as', [UNIT, this.props(u), []]),
    );
  }

  close(): void {
    this.bus.close();
  }

  private props(u: FakeUnit): Record<string, InstanceType<typeof dbus.Variant>> {
    return {
      LoadState: v('s', u.loadState),
      ActiveState: v('s', u.activeState),
      SubState: v('s', u.subState),
      ActiveEnterTimestampMonotonic: v('t', u.activeEnterUs),
      InactiveExitTimestampMonotonic: v('t', u.activeEnterUs),
      Job: v('(uo)', [0, '/']),
    };
  }

  private reply(msg: DBusMessage, signature = '', body: unknown[] = []): true {
    this.bus.send(dbus.Message.newMethodReturn(msg, signature, body));
    return true;
  }

  private handle(msg: DBusMessage): boolean {
    const byPath = [...this.units.values()].find((u) => u.path === msg.path);
    if (msg.interface === PROPS && byPath) {
      if (msg.member === 'GetAll') return this.reply(msg, 'a{sv}', [this.props(byPath)]);
      if (msg.member === 'Get') {
        const prop = String(msg.body[1]);
        const value =
          prop === 'Restart' ? v('s', byPath.restart) : v('t', BigInt(byPath.restartSec) * 1_000_000n);
        return this.reply(msg, 'v', [value]);
      }
    }
    if (msg.path !== MANAGER_PATH || msg.interface !== MANAGER) return false;
    switch (msg.member) {
      case 'Subscribe':
        return this.reply(msg);
      case 'LoadUnit':
        return this.reply(msg, 'o', [this.unit(String(msg.body[0])).path]);
      case 'ListUnitsByNames': {
        const rows = (msg.body[0] as string[]).map((n) => {
          const u = this.unit(n);
          return [n, '', u.loadState, u.activeState, u.subState, '', u.path, 0, '', '/'];
        });
        return this.reply(msg, 'a(ssssssouso)', [rows]);
      }
      case 'RestartUnit': {
        const name = String(msg.body[0]);
        const id = ++this.jobs;
        const job = `${MANAGER_PATH}/job/${id}`;
        this.restarts.push({ unit: name, atMs: Number(monoUs() / 1000n) });
        this.reply(msg, 'o', [job]);
        this.emit('restart', name);
        setTimeout(() => {
          const result = this.result(name);
          if (result === 'done') this.set(name, 'active', 'running');
          else this.set(name, 'failed', 'failed');
          this.bus.send(
            dbus.Message.newSignal(MANAGER_PATH, MANAGER, 'JobRemoved', 'uoss', [id, job, name, result]),
          );
          this.emit('job', name, result);
        }, this.jobMs);
        return true;
      }
      default:
        return false;
    }
  }
}
