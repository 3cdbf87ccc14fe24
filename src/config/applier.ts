// ApplyConfig: config.yaml section → system. Kept free of D-Bus: the bus-facing pieces (restarting a unit
// through systemd1, BlueZ Adapter1, timedate1) are injected, so every path here is testable with plain fakes.
//
// Order per section: read and validate everything first (a failure touches nothing), render, compare with the
// file in place (identical → no write and, above all, no restart that would drop the phone's connection),
// write atomically, restart the unit, and on a failed restart put the previous file back and restart again.
import path from 'node:path';
import { ServiceError, toServiceError } from '../errors.js';
import type { ServiceName } from '../health/states.js';
import { errText, log } from '../log/journal.js';
import type { ApplyResult, Json } from '../service.js';
import {
  cleanTempFiles,
  ensureMeta,
  type FileMeta,
  type FileSnapshot,
  lookupGroupId,
  readSnapshot,
  restoreSnapshot,
  writeAtomic,
} from './atomic.js';
import { rawSection, readConfig, validateRaw } from './load.js';
import {
  countryFromHostapdConf,
  NETWORK_FILE,
  renderHostapdConf,
  renderNetworkFile,
  TemplateError,
} from './render.js';
import { type FileSectionName, HEX_PSK, type SectionConfigs, type SectionName } from './schema.js';
import { ApplyJournal, contentOf, sha256, snapshotOf, type TxnRecord } from './transaction.js';

export interface ApplierPaths {
  /** config.yaml */
  config: string;
  /** e.g. /etc/hostapd/hostapd.conf */
  hostapdConf: string;
  /** e.g. /etc/systemd/network (the file inside is 10-openauto-ap.network) */
  networkDir: string;
  /** directory holding hostapd.conf.tmpl and 10-openauto-ap.network.tmpl */
  templates: string;
  /** e.g. /usr/share/zoneinfo */
  zoneinfo: string;
  /** e.g. /etc/group (for the `openauto` group that may read hostapd.conf) */
  groupFile: string;
  /** The installation's AP interface (not a path, but a setting like them); default wlan0. */
  apInterface?: string;
  /** e.g. /var/lib/openauto-system/apply: the record of an apply in progress. Without it an apply is not
   * durable (its rollback lives in memory only). */
  stateDir?: string;
}

export interface AdapterProps {
  alias: string;
  discoverable: boolean;
}

export interface ApplierDeps {
  paths: ApplierPaths;
  /** Restarts `unit` (e.g. hostapd.service) and resolves once it is active again; throws when it is not.
   * `link`, for networkd: the interface the validated .network file configures (its old address must go). */
  restartUnit(unit: string, link?: string): Promise<void>;
  /** Sets BlueZ Adapter1 Alias and Discoverable; `changed` says whether either differed before. */
  setAdapter(props: AdapterProps): Promise<{ changed: boolean }>;
  getTimezone(): Promise<string>;
  setTimezone(tz: string): Promise<void>;
  /** Runs `fn` (write, restart, and any rollback with its second restart) while the health monitor keeps its
   * hands off `unit`, so the two never restart it at the same time. Defaults to just running `fn`. */
  withUnitLock?<T>(unit: string, fn: () => Promise<T>): Promise<T>;
  /** How many applies may wait behind the running one before callers get Busy (default 8). */
  maxWaiting?: number;
  /** Clock for the summary's applied_at (tests). */
  now?: () => Date;
  /** The unit's ActiveState and when it last became active (CLOCK_MONOTONIC µs), read fresh from systemd:
   * start-up recovery decides with it whether a unit became active with the file in place. */
  unitActivity?(unit: string): Promise<{ activeState: string; activeEnterMonotonicUs: bigint }>;
  /** Test knob (OPENAUTO_TEST_STALL): waits at a named step of an apply, so a test can kill the daemon there. */
  stall?(step: 'before-write' | 'after-rename'): Promise<void>;
}

/** The unit each file-backed section restarts, and the name callers see in `restarted`. */
const FILE_SECTIONS = {
  wifi: { service: 'hostapd', unit: 'hostapd.service', label: 'hostapd' },
  network: { service: 'networkd', unit: 'systemd-networkd.service', label: 'systemd-networkd' },
} as const satisfies Record<FileSectionName, { service: ServiceName; unit: string; label: string }>;

/** What GetStatus shows of a section: everything but the secret. */
export function summarizeSection<S extends SectionName>(
  section: S,
  cfg: SectionConfigs[S],
): { [key: string]: Json } {
  switch (section) {
    case 'wifi': {
      const w = cfg as SectionConfigs['wifi'];
      return {
        ssid: w.ssid,
        password: '(set)',
        key_type: HEX_PSK.test(w.password) ? 'psk' : 'passphrase',
        band: w.band,
        channel: w.channel,
        interface: w.interface,
        country_code: w.country_code,
      };
    }
    case 'network': {
      const n = cfg as SectionConfigs['network'];
      return {
        ap_ip: n.ap_ip,
        dhcp_range_start: n.dhcp_range_start,
        dhcp_range_end: n.dhcp_range_end,
        interface: n.interface,
      };
    }
    case 'bluetooth': {
      const b = cfg as SectionConfigs['bluetooth'];
      return { name: b.name, discoverable: b.discoverable };
    }
    default: {
      const t = cfg as SectionConfigs['time'];
      return { timezone: t.timezone };
    }
  }
}

/** Journal record of one apply; turned into exactly one entry. */
interface ApplyRecord {
  changed: boolean;
  restarted: string[];
  rollback?: 'restored' | 'restored-not-started' | 'not-restored';
  detail?: string;
}

export class ConfigApplier {
  private readonly paths: ApplierPaths;
  private readonly maxWaiting: number;
  private tail: Promise<unknown> = Promise.resolve();
  private inFlight = 0;
  private readonly applied: Partial<Record<SectionName, { [key: string]: Json }>> = {};
  private recorded = 0;
  /** The network section in effect: last applied, or found already in place at start. */
  private inEffect: SectionConfigs['network'] | undefined;
  private readonly journal: ApplyJournal | undefined;

  constructor(private readonly deps: ApplierDeps) {
    this.paths = deps.paths;
    this.maxWaiting = deps.maxWaiting ?? 8;
    this.journal = deps.paths.stateDir ? new ApplyJournal(deps.paths.stateDir) : undefined;
  }

  get networkFile(): string {
    return path.join(this.paths.networkDir, NETWORK_FILE);
  }

  /** Start-up housekeeping: removes temp files a crash mid-write may have left. Returns how many. */
  async cleanup(): Promise<number> {
    const a = await cleanTempFiles(path.dirname(this.paths.hostapdConf), [this.paths.hostapdConf]);
    const b = await cleanTempFiles(this.paths.networkDir, [this.networkFile]);
    return a + b;
  }

  /**
   * Start-up, before the monitor runs: finishes or undoes every apply a crash or power cut interrupted. The
   * file in place stays when its unit became active with it (active, and started after the file was put
   * there); otherwise the unit is restarted to find out, and a new file it does not start
   * with is replaced by the previous one (restarted again). A file someone else changed meanwhile is left
   * alone. Each outcome is logged; the record is removed. Never throws.
   */
  async recover(): Promise<void> {
    if (!this.journal) return;
    let pending: Awaited<ReturnType<ApplyJournal['pending']>>;
    try {
      // A record being written when the crash came (never renamed into place): nothing was changed yet.
      const torn = await this.journal.cleanTemp();
      if (torn > 0) log.notice(`removed ${torn} unfinished record(s) of an apply`, { COUNT: torn });
      pending = await this.journal.pending();
    } catch (err) {
      log.err('reading the record of an interrupted apply failed', { DETAIL: errText(err) });
      return;
    }
    for (const section of pending.bad) {
      log.err('the record of an interrupted apply is unreadable; removed, nothing undone', {
        SECTION: section,
      });
      await this.journal.end(section as TxnRecord['section']).catch(() => undefined);
    }
    for (const rec of pending.records) {
      try {
        // Before the monitor starts: nothing else restarts the units yet, so no hold on them (a hold would
        // have the monitor evaluate before it knows what to expect).
        await this.recoverOne(rec);
      } catch (err) {
        log.err('finishing an interrupted apply failed', {
          SECTION: rec.section,
          UNIT: rec.unit,
          PHASE: rec.phase,
          DETAIL: errText(err),
        });
      }
    }
  }

  private async recoverOne(rec: TxnRecord): Promise<void> {
    const journal = this.journal as ApplyJournal;
    const fields = { SECTION: rec.section, UNIT: rec.unit, FILE: rec.file, PHASE: rec.phase };
    const done = async (outcome: string, message: string, level: 'notice' | 'warning' | 'err' = 'notice') => {
      await journal.end(rec.section);
      log[level](`interrupted apply of ${rec.section}: ${message}`, { ...fields, OUTCOME: outcome });
    };
    // The record only ever names this section's own file and unit: anything else is not acted upon.
    const own = FILE_SECTIONS[rec.section];
    const file = rec.section === 'wifi' ? this.paths.hostapdConf : this.networkFile;
    if (rec.file !== file || rec.unit !== own.unit) {
      return done('left-alone', 'the record names another file or unit; ignored', 'err');
    }
    const current = (await readSnapshot(rec.file))?.data ?? null;
    const holds = contentOf(rec, current);
    if (holds === 'other') {
      return done('left-alone', 'the file was changed by someone else since; left as it is', 'warning');
    }
    if (rec.phase === 'prepared' && holds === 'previous') {
      return done('nothing-written', 'stopped before the new file was written; nothing to undo');
    }
    if (await this.startedWith(rec, holds)) {
      return done(
        holds === 'new' ? 'kept-new' : 'kept-previous',
        `${rec.unit} is active with the ${holds} file; kept`,
      );
    }
    // Not known to run with the file in place: restart it and see.
    try {
      await this.deps.restartUnit(rec.unit, rec.link);
      return done(
        holds === 'new' ? 'kept-new' : 'kept-previous',
        `${rec.unit} started with the ${holds} file; kept`,
      );
    } catch (err) {
      if (holds === 'previous') {
        return done(
          'previous-not-started',
          `${rec.unit} does not start with the previous file either (${errText(err)})`,
          'err',
        );
      }
      log.warning(
        `interrupted apply of ${rec.section}: ${rec.unit} does not start with the new file; restoring the previous one`,
        {
          ...fields,
          DETAIL: errText(err),
        },
      );
    }
    await restoreSnapshot(rec.file, snapshotOf(rec));
    await journal.placed(rec, 'restored');
    try {
      await this.deps.restartUnit(rec.unit, rec.link);
    } catch (err) {
      return done(
        'restored-not-started',
        `previous file restored, but ${rec.unit} did not start with it (${errText(err)})`,
        'err',
      );
    }
    return done('rolled-back', `previous file restored and ${rec.unit} started with it`);
  }

  /**
   * Whether the unit is active and was started after the file in place was put there. Both times are
   * CLOCK_MONOTONIC, exact within a boot. After a power cut the comparison means little, but it errs only in
   * harmless ways: a unit active in a later boot was started with the file on disk, so keeping it is right,
   * and a "no" costs one restart to find out.
   */
  private async startedWith(rec: TxnRecord, holds: 'new' | 'previous'): Promise<boolean> {
    if (!this.deps.unitActivity) return false;
    const placed =
      (rec.phase === 'written' && holds === 'new') || (rec.phase === 'restored' && holds === 'previous');
    if (!placed || rec.placedAtUs === undefined) return false;
    const u = await this.deps.unitActivity(rec.unit);
    return u.activeState === 'active' && u.activeEnterMonotonicUs > BigInt(rec.placedAtUs);
  }

  private lockUnit<T>(unit: string, fn: () => Promise<T>): Promise<T> {
    return this.deps.withUnitLock ? this.deps.withUnitLock(unit, fn) : fn();
  }

  /** The validated network section the .network file holds now (undefined until known): what the health
   * checks must expect on the AP link. Not config.yaml as it reads now, which may hold unapplied edits. */
  get network(): SectionConfigs['network'] | undefined {
    return this.inEffect;
  }

  /** Grows with every section recorded as applied: GetStatus's text is rebuilt only after one. */
  get revision(): number {
    return this.recorded;
  }

  /** Summary of what was last applied (or found already in place) per section since start, secrets removed. */
  appliedSummary(): { [section: string]: Json } {
    const out: { [section: string]: Json } = {};
    for (const [k, v] of Object.entries(this.applied)) if (v) out[k] = v;
    return out;
  }

  /** Applies one section of config.yaml (the service layer checked its name). The one queue of applies: one
   * runs at a time, others wait their turn, and beyond maxWaiting callers get ServiceError('Busy'). Throws
   * ServiceError only. */
  async apply(s: SectionName): Promise<ApplyResult> {
    if (this.inFlight > this.maxWaiting) {
      throw new ServiceError('Busy', 'too many configuration changes are waiting; try again shortly');
    }
    this.inFlight++;
    const run = this.tail.then(() => this.applyLogged(s));
    this.tail = run.catch(() => undefined);
    try {
      return await run;
    } finally {
      this.inFlight--;
    }
  }

  private record(section: SectionName, summary: { [key: string]: Json }): void {
    this.applied[section] = summary;
    this.recorded++;
  }

  private async applyLogged(section: SectionName): Promise<ApplyResult> {
    const rec: ApplyRecord = { changed: false, restarted: [] };
    const started = Date.now();
    try {
      const result = await this.applySection(section, rec);
      log.info(`config section ${section} ${result.changed ? 'applied' : 'unchanged'}`, {
        SECTION: section,
        CHANGED: result.changed,
        RESTARTED: result.restarted.join(','),
        DURATION_MS: Date.now() - started,
      });
      return result;
    } catch (err) {
      const se = toServiceError(err);
      // Messages never carry values (validation names fields only), so none of this can hold the password.
      log.warning(`config section ${section} not applied: ${se.message}`, {
        SECTION: section,
        CHANGED: false,
        RESTARTED: rec.restarted.join(','),
        ERROR_CODE: se.code,
        ROLLBACK: rec.rollback,
        DETAIL: rec.detail ?? (err instanceof ServiceError ? undefined : errText(err)),
        DURATION_MS: Date.now() - started,
      });
      throw se;
    }
  }

  private async applySection(section: SectionName, rec: ApplyRecord): Promise<ApplyResult> {
    switch (section) {
      case 'wifi':
        return this.applyWifi(rec);
      case 'network':
        return this.applyNetwork(rec);
      case 'bluetooth':
        return this.applyBluetooth();
      case 'time':
        return this.applyTime();
    }
  }

  /** Reads and validates the wifi section and renders hostapd.conf; touches nothing. `read`: config.yaml
   * already being read (start-up reads and parses it once for both sections). */
  private async planWifi(read = readConfig(this.paths.config)) {
    const doc = await read;
    const previous = await this.snapshot(this.paths.hostapdConf);
    const cfg = await validateRaw('wifi', rawSection(doc, 'wifi'), {
      defaultCountry: countryFromHostapdConf(previous?.data),
      zoneinfoDir: this.paths.zoneinfo,
      apInterface: this.paths.apInterface,
    });
    const text = await this.render(() => renderHostapdConf(this.paths.templates, cfg), 'hostapd.conf');
    return { cfg, text, previous };
  }

  /** Reads and validates the network section and renders the .network file; touches nothing. */
  private async planNetwork(read = readConfig(this.paths.config)) {
    const doc = await read;
    const cfg = await validateRaw('network', rawSection(doc, 'network'), {
      zoneinfoDir: this.paths.zoneinfo,
      apInterface: this.paths.apInterface,
    });
    const text = await this.render(() => renderNetworkFile(this.paths.templates, cfg), NETWORK_FILE);
    const previous = await this.snapshot(this.networkFile);
    return { cfg, text, previous };
  }

  /**
   * Start-up: a file-backed section whose system file already holds exactly what config.yaml renders counts
   * as applied, so GetStatus shows it before anyone calls ApplyConfig. Changes nothing; problems are only
   * logged (they will be reported to whoever applies the section).
   */
  async inspect(): Promise<void> {
    // One read of config.yaml for both sections; each still reports a failure to read it as its own.
    const read = readConfig(this.paths.config);
    read.catch(() => undefined);
    await this.inspectOne('wifi', () => this.planWifi(read));
    this.inEffect = await this.inspectOne('network', () => this.planNetwork(read));
  }

  /** One section of inspect(): its validated config when the system file already holds it. */
  private async inspectOne<S extends keyof typeof FILE_SECTIONS>(
    section: S,
    plan: () => Promise<{ cfg: SectionConfigs[S]; text: string; previous: FileSnapshot | null }>,
  ): Promise<SectionConfigs[S] | undefined> {
    try {
      const { cfg, text, previous } = await plan();
      if (!previous?.data.equals(Buffer.from(text))) return undefined;
      this.record(section, { ...summarizeSection(section, cfg), applied_at: 'before start' });
      return cfg;
    } catch (err) {
      log.debug(`config section ${section} not inspected`, { SECTION: section, DETAIL: errText(err) });
      return undefined;
    }
  }

  private async applyWifi(rec: ApplyRecord): Promise<ApplyResult> {
    const { cfg, text, previous } = await this.planWifi();
    const gid = await lookupGroupId('openauto', this.paths.groupFile);
    // The app (group openauto) reads the passphrase from here; nobody else may.
    const meta: FileMeta = gid === undefined ? { mode: 0o600 } : { mode: 0o640, gid };
    const result = await this.replaceAndRestart('wifi', this.paths.hostapdConf, text, previous, meta, rec);
    this.record('wifi', this.stamp(summarizeSection('wifi', cfg)));
    return result;
  }

  private async applyNetwork(rec: ApplyRecord): Promise<ApplyResult> {
    const { cfg, text, previous } = await this.planNetwork();
    // networkd reads it as user systemd-network; nothing secret in it.
    const result = await this.replaceAndRestart(
      'network',
      this.networkFile,
      text,
      previous,
      { mode: 0o644 },
      rec,
      cfg.interface,
    );
    this.inEffect = cfg;
    this.record('network', this.stamp(summarizeSection('network', cfg)));
    return result;
  }

  private async applyBluetooth(): Promise<ApplyResult> {
    const doc = await readConfig(this.paths.config);
    const cfg = await validateRaw('bluetooth', rawSection(doc, 'bluetooth'));
    let changed: boolean;
    try {
      ({ changed } = await this.deps.setAdapter({ alias: cfg.name, discoverable: cfg.discoverable }));
    } catch (err) {
      if (err instanceof ServiceError) throw err;
      log.err('setting the Bluetooth adapter failed', { SECTION: 'bluetooth', DETAIL: errText(err) });
      throw new ServiceError('Internal', 'the Bluetooth adapter did not accept the new settings');
    }
    this.record('bluetooth', this.stamp(summarizeSection('bluetooth', cfg)));
    return { changed, restarted: [] };
  }

  private async applyTime(): Promise<ApplyResult> {
    const doc = await readConfig(this.paths.config);
    const cfg = await validateRaw('time', rawSection(doc, 'time'), { zoneinfoDir: this.paths.zoneinfo });
    let changed = false;
    try {
      if ((await this.deps.getTimezone()) !== cfg.timezone) {
        await this.deps.setTimezone(cfg.timezone);
        changed = true;
      }
    } catch (err) {
      if (err instanceof ServiceError) throw err;
      log.err('setting the time zone failed', { SECTION: 'time', DETAIL: errText(err) });
      throw new ServiceError('Internal', 'the time zone could not be set');
    }
    this.record('time', this.stamp(summarizeSection('time', cfg)));
    return { changed, restarted: [] };
  }

  private stamp(summary: { [key: string]: Json }): { [key: string]: Json } {
    return { ...summary, applied_at: (this.deps.now?.() ?? new Date()).toISOString() };
  }

  private async snapshot(file: string): Promise<FileSnapshot | null> {
    try {
      return await readSnapshot(file);
    } catch (err) {
      log.err('reading the current system file failed', { FILE: file, DETAIL: errText(err) });
      throw new ServiceError(
        'Internal',
        'the current configuration file could not be read; nothing was changed',
      );
    }
  }

  private async render(fn: () => Promise<string>, what: string): Promise<string> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof ServiceError) throw err;
      // A missing or broken template is a packaging fault: journal the detail, tell the caller plainly.
      log.err(`rendering ${what} failed`, {
        DETAIL: err instanceof TemplateError ? err.message : errText(err),
      });
      throw new ServiceError('Internal', `the ${what} template could not be rendered; nothing was changed`);
    }
  }

  private async replaceAndRestart(
    section: keyof typeof FILE_SECTIONS,
    file: string,
    text: string,
    previous: FileSnapshot | null,
    meta: FileMeta,
    rec: ApplyRecord,
    link?: string,
  ): Promise<ApplyResult> {
    const { service, unit, label } = FILE_SECTIONS[section];
    // A crash in an earlier apply may have left a temp file; this is the one place that writes here.
    await cleanTempFiles(path.dirname(file), [file]).catch(() => 0);
    const bytes = Buffer.from(text, 'utf8');
    if (previous?.data.equals(bytes)) {
      // Same content: no write and no restart (it would drop the phone). Permissions are still put right.
      await ensureMeta(file, meta).catch((err) =>
        log.warning('fixing file mode failed', { DETAIL: errText(err) }),
      );
      return { changed: false, restarted: [] };
    }
    return this.lockUnit(unit, async () => {
      const journal = this.journal;
      let txn: TxnRecord | undefined;
      if (journal) {
        // The previous file, durably, before anything changes: what start-up puts back after a crash.
        txn = {
          version: 1,
          section,
          file,
          unit,
          ...(link !== undefined ? { link } : {}),
          phase: 'prepared',
          previous:
            previous === null
              ? null
              : {
                  data: previous.data.toString('base64'),
                  mode: previous.mode,
                  uid: previous.uid,
                  gid: previous.gid,
                },
          newSha256: sha256(bytes),
        };
        try {
          await journal.write(txn);
        } catch (err) {
          rec.detail = errText(err);
          throw new ServiceError('Internal', `the apply could not be recorded; nothing was changed`);
        }
      }
      try {
        await this.deps.stall?.('before-write');
        try {
          await writeAtomic(file, bytes, meta);
        } catch (err) {
          rec.detail = errText(err);
          throw new ServiceError(
            'Internal',
            `the new ${label} configuration could not be written; nothing was changed`,
          );
        }
        await this.deps.stall?.('after-rename');
        if (journal && txn) {
          // Not fatal: a record still saying 'prepared' makes start-up check the unit with a restart.
          txn = await journal.placed(txn, 'written').catch((err: unknown) => {
            log.warning('updating the record of the apply failed', {
              SECTION: section,
              DETAIL: errText(err),
            });
            return txn;
          });
        }
        rec.changed = true;
        try {
          await this.deps.restartUnit(unit, link);
        } catch (err) {
          rec.detail = errText(err);
          throw await this.rollBack(file, previous, unit, label, rec, link, txn);
        }
        rec.restarted.push(service);
        return { changed: true, restarted: [service] };
      } finally {
        await journal?.end(section).catch((err: unknown) =>
          log.warning('removing the record of the apply failed', {
            SECTION: section,
            DETAIL: errText(err),
          }),
        );
      }
    });
  }

  /** Puts the previous file back and restarts once more; returns the RestartFailed error to throw. */
  private async rollBack(
    file: string,
    previous: FileSnapshot | null,
    unit: string,
    label: string,
    rec: ApplyRecord,
    link?: string,
    txn?: TxnRecord,
  ): Promise<ServiceError> {
    const head = `${label} failed to start with the new configuration`;
    try {
      await restoreSnapshot(file, previous);
    } catch (err) {
      rec.rollback = 'not-restored';
      rec.detail = `${rec.detail ?? ''}; restore: ${errText(err)}`;
      return new ServiceError('RestartFailed', `${head}; the previous configuration could not be restored`);
    }
    rec.changed = false;
    if (txn) {
      await this.journal
        ?.placed(txn, 'restored')
        .catch((err: unknown) =>
          log.warning('updating the record of the apply failed', { DETAIL: errText(err) }),
        );
    }
    try {
      // The same link: the failed file's address must not stay behind either.
      await this.deps.restartUnit(unit, link);
    } catch (err) {
      rec.rollback = 'restored-not-started';
      rec.detail = `${rec.detail ?? ''}; second restart: ${errText(err)}`;
      return new ServiceError(
        'RestartFailed',
        `${head}; the previous configuration was restored, but ${label} did not start with it either`,
      );
    }
    rec.rollback = 'restored';
    const none = previous === null ? ' (there was no file before, so the new one was removed)' : '';
    return new ServiceError('RestartFailed', `${head}; the previous configuration was restored${none}`);
  }
}
