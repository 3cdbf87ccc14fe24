// The one owner of ApplyConfig below the service layer: builds the applier on the real bus pieces, finishes an
// interrupted apply at start, and after each apply updates what the AP link must carry and tells the monitor.
import { join } from 'node:path';
import { setAdapter } from '../bluez/adapter.js';
import type { Bus } from '../bus/connection.js';
import type { ApExpectation } from '../health/functional.js';
import { reconfigureLink } from '../health/repairs.js';
import type { ServiceName } from '../health/states.js';
import { errText, log } from '../log/journal.js';
import type { ApplyResult, Json } from '../service.js';
import type { SystemdManager } from '../systemd/manager.js';
import type { UnitRestarter } from '../systemd/restarts.js';
import { getTimezone, setTimezone } from '../systemd/timedate.js';
import { type ApplierPaths, ConfigApplier } from './applier.js';
import { loadSection } from './load.js';
import { NETWORK_FILE } from './render.js';
import type { SectionName } from './schema.js';
import { stallFromEnv } from './stall.js';

/** The AP address checked when config.yaml's network section cannot be read at start (the contract's). */
const DEFAULT_AP_IP = '10.0.0.1';

export interface ApplyCoordinatorDeps {
  bus: Bus;
  systemd: SystemdManager;
  restarter: UnitRestarter;
  paths: ApplierPaths & { apInterface: string };
  /** OPENAUTO_TEST_STALL (a test knob); unset in production. */
  stall?: string;
}

/** Whoever must re-check a service at once after an apply (the health monitor). */
export interface Pokeable {
  poke(service: ServiceName): void;
}

export class ApplyCoordinator {
  private readonly applier: ConfigApplier;
  private current: ApExpectation;
  private monitor: Pokeable | undefined;

  constructor(private readonly deps: ApplyCoordinatorDeps) {
    const { bus, restarter, systemd } = deps;
    this.current = this.expect(deps.paths.apInterface, DEFAULT_AP_IP);
    this.applier = new ConfigApplier({
      paths: deps.paths,
      // Runs inside the apply's hold on the unit (withUnitLock), so it takes no hold of its own.
      restartUnit: async (unit, link) => {
        const result = await restarter.runRestart(unit);
        if (result !== 'done') throw new Error(`${unit} restart job ${result}`);
        // The file may have changed the AP's address: drop the old one networkd's restart left behind.
        if (link !== undefined) {
          await reconfigureLink(bus, link).catch((err: unknown) =>
            log.warning('reconfiguring the AP link failed', { unit, interface: link, error: errText(err) }),
          );
        }
      },
      withUnitLock: (unit, fn) => restarter.hold(unit, 'apply', fn),
      unitActivity: (unit) => systemd.refresh(unit),
      ...stallFromEnv(deps.stall),
      setAdapter: (props) => setAdapter(bus, props),
      getTimezone: () => getTimezone(bus),
      setTimezone: (tz) => setTimezone(bus, tz),
    });
  }

  /** What the AP link must carry now (the monitor and the proxy read it on each use). */
  readonly expectation = (): ApExpectation => this.current;

  /** The monitor to poke after an apply of wifi or network. */
  tell(monitor: Pokeable): void {
    this.monitor = monitor;
  }

  /** Start-up, before the monitor runs: temp files, an interrupted apply, what is already in effect. */
  async start(): Promise<void> {
    const removed = await this.applier.cleanup();
    // An apply a crash or power cut interrupted is finished or undone before anything else looks at the units.
    await this.applier.recover();
    await this.applier.inspect();
    // The .network file in place holding config.yaml's section is what the link carries (no second read);
    // otherwise config.yaml says what it should carry.
    this.current = this.applier.network
      ? this.expect(this.applier.network.interface, this.applier.network.ap_ip)
      : await this.readExpectation();
    if (removed > 0)
      log.notice(`removed ${removed} temporary file(s) left by an interrupted write`, { count: removed });
  }

  /** One section; the applier serializes and answers Busy beyond its queue. Throws ServiceError only. */
  async apply(section: SectionName): Promise<ApplyResult> {
    const result = await this.applier.apply(section);
    if (section === 'network' || section === 'wifi') {
      // What was just applied, not config.yaml re-read (it may have changed since it was validated).
      const n = this.applier.network;
      if (n) this.current = this.expect(n.interface, n.ap_ip);
      // Check against the new address now, not at the next poll.
      this.monitor?.poke('hostapd');
      this.monitor?.poke('networkd');
    }
    return result;
  }

  /** Applied config per section, secrets removed. */
  summary(): { [section: string]: Json } {
    return this.applier.appliedSummary();
  }

  /** Grows whenever summary() may have changed. */
  get revision(): number {
    return this.applier.revision;
  }

  private expect(iface: string, apIp: string): ApExpectation {
    return { iface, apIp, networkFile: join(this.deps.paths.networkDir, NETWORK_FILE) };
  }

  private async readExpectation(): Promise<ApExpectation> {
    const { paths } = this.deps;
    try {
      const n = await loadSection(paths.config, 'network', {
        zoneinfoDir: paths.zoneinfo,
        apInterface: paths.apInterface,
      });
      return this.expect(n.interface, n.ap_ip);
    } catch (err) {
      log.warning('network section unreadable; checking the default AP address', { error: errText(err) });
      return this.expect(paths.apInterface, DEFAULT_AP_IP);
    }
  }
}
