// The proxy route's I/O: files in /run/openauto, the two shipped units started and stopped through
// org.freedesktop.systemd1 (redsocks in openauto-proxy.service; the nftables table and the default route over
// the AP link in the oneshot openauto-proxy-route.service), DNS through systemd-resolved when it runs, and the
// checks. The daemon runs no child process. The decisions are state.ts's; requests are validated by
// request.ts before anything here is touched.
import { EventEmitter } from 'node:events';
import { readFile, unlink } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import dbus from 'dbus-next';
import type { Bus } from '../bus/connection.js';
import { hasContent, lookupGroupId, writeAtomic } from '../config/atomic.js';
import { errText, log } from '../log/journal.js';
import type { Json } from '../service.js';
import type { JobResult, SystemdManager, UnitState } from '../systemd/manager.js';
import { LISTEN_PORT, type RenderedRoute, ROUTE_METRIC, renderRoute } from './render.js';
import type { ProxyConfig, ProxyRequest } from './request.js';
import {
  errorOf,
  isoSeconds,
  NO_CHECKS,
  type ProxyChecks,
  type ProxyState,
  type ProxyStatus,
  type RestartRules,
  RestartSchedule,
  stateOf,
} from './state.js';

export const PROXY_UNIT = 'openauto-proxy.service';
export const ROUTE_UNIT = 'openauto-proxy-route.service';
export const REDSOCKS_CONF = 'redsocks.conf';
export const NFT_FILE = 'openauto-proxy-route.nft';
export const ENV_FILE = 'openauto-proxy-route.env';
/** What the route was set up with (no password): lets a restarted daemon account for a running route. */
export const STATE_FILE = 'openauto-proxy-route.json';

/** The public DNS server the Python service gave the AP link while the route is on. */
const DNS_SERVER = [1, 1, 1, 1];
const RESOLVED = {
  destination: 'org.freedesktop.resolve1',
  path: '/org/freedesktop/resolve1',
  interface: 'org.freedesktop.resolve1.Manager',
};
const NETWORKD = {
  destination: 'org.freedesktop.network1',
  path: '/org/freedesktop/network1',
  interface: 'org.freedesktop.network1.Manager',
};
/** resolved's answer for a link another manager (networkd) owns. */
const LINK_BUSY = 'org.freedesktop.resolve1.LinkBusy';
/** networkd's names where they differ from resolved's. */
const NETWORKD_MEMBER: Record<string, string> = { RevertLink: 'RevertLinkDNS' };

export interface ProxyRouteDeps {
  bus?: Bus;
  systemd: SystemdManager;
  /** Directory of the rendered files (/run/openauto). */
  dir: string;
  templates: string;
  groupFile: string;
  /** The AP interface and its /24 (skip network), as the installation has them. */
  link: () => string;
  verifyMs: number;
  jobTimeoutMs: number;
  rules: RestartRules;
  now?: () => number;
  /** TCP connect test; injectable for unit tests. */
  probe?: (host: string, port: number, timeoutMs: number) => Promise<boolean>;
  /** Whether redsocks listens on 127.0.0.1:port; injectable for unit tests. */
  listening?: (port: number) => Promise<boolean>;
  /** Whether the default route over `link` with our metric exists; injectable for unit tests. */
  routePresent?: (link: string, metric: number) => Promise<boolean>;
}

interface Upstream {
  host: string;
  port: number;
  user: string;
  link: string;
}

export function tcpProbe(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** /proc/self/net/tcp: a socket listening on 127.0.0.1:`port` (read, not connected to: a connection would
 * make redsocks open one to the phone for nothing). */
export async function listening(port: number): Promise<boolean> {
  let text: string;
  try {
    text = await readFile('/proc/self/net/tcp', 'utf8');
  } catch {
    return false;
  }
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return text
    .split('\n')
    .slice(1)
    .some((line) => {
      const f = line.trim().split(/\s+/);
      return f[1] === local && f[3] === '0A';
    });
}

/** /proc/self/net/route: a default route (destination and mask 0) on `link` with our metric. */
export async function defaultRoutePresent(link: string, metric: number): Promise<boolean> {
  let text: string;
  try {
    text = await readFile('/proc/self/net/route', 'utf8');
  } catch {
    return false;
  }
  return text
    .split('\n')
    .slice(1)
    .some((line) => {
      const f = line.trim().split(/\s+/);
      return f[0] === link && f[1] === '00000000' && f[7] === '00000000' && Number(f[6]) === metric;
    });
}

export class ProxyRoute extends EventEmitter {
  private upstream: Upstream | undefined;
  private checks: ProxyChecks = { ...NO_CHECKS };
  private current: ProxyState = 'disabled';
  private err: { error_code: string | null; error: string | null } = { error_code: null, error: null };
  private verifiedAt: string | null = null;
  /** What summary() was last seen made of, and how often that changed (see revision). */
  private seen: [ProxyState, unknown, unknown, unknown, unknown, number] | undefined;
  private seenChanges = 0;
  private readonly schedule: RestartSchedule;
  private readonly now: () => number;
  private readonly probe: NonNullable<ProxyRouteDeps['probe']>;
  private readonly routePresent: NonNullable<ProxyRouteDeps['routePresent']>;
  private readonly listening: NonNullable<ProxyRouteDeps['listening']>;
  private queue: Promise<unknown> = Promise.resolve();
  private verifyTimer: NodeJS.Timeout | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Our own start/stop jobs are running: their unit transitions are not failures. */
  private changing = false;

  constructor(private readonly deps: ProxyRouteDeps) {
    super();
    this.now = deps.now ?? Date.now;
    this.probe = deps.probe ?? tcpProbe;
    this.routePresent = deps.routePresent ?? defaultRoutePresent;
    this.listening = deps.listening ?? listening;
    this.schedule = new RestartSchedule(deps.rules);
  }

  get state(): ProxyState {
    return this.current;
  }

  status(liveCheck = false): ProxyStatus {
    return {
      state: this.current,
      checks: { ...this.checks },
      error_code: this.err.error_code,
      error: this.err.error,
      verified_at: this.verifiedAt,
      live_check: liveCheck,
    };
  }

  /**
   * Grows whenever summary() would differ: GetStatus's text is rebuilt only then. Compared by reference:
   * the route replaces its checks, error and upstream objects on every change, never edits them in place.
   */
  get revision(): number {
    const s = this.seen;
    const retries = this.schedule.retries;
    if (
      s === undefined ||
      s[0] !== this.current ||
      s[1] !== this.err ||
      s[2] !== this.checks ||
      s[3] !== this.verifiedAt ||
      s[4] !== this.upstream ||
      s[5] !== retries
    ) {
      this.seen = [this.current, this.err, this.checks, this.verifiedAt, this.upstream, retries];
      this.seenChanges++;
    }
    return this.seenChanges;
  }

  /** For GetStatus: no password, ever. */
  summary(): { [key: string]: Json } {
    const s = this.status();
    return {
      ...s,
      checks: { ...s.checks },
      upstream: this.upstream ? `${this.upstream.host}:${this.upstream.port}` : null,
      user: this.upstream?.user ?? null,
      link: this.upstream?.link ?? null,
      retries: this.schedule.retries,
    };
  }

  /** At start-up: adopt a route that is running with our files in place; remove one we cannot account for. */
  async start(): Promise<void> {
    this.deps.systemd.onUnitChanged((unit, st) => this.onUnit(unit, st));
    const units = await Promise.all([PROXY_UNIT, ROUTE_UNIT].map((u) => this.unitState(u)));
    const running = units.some((s) => s && s.activeState !== 'inactive' && s.activeState !== 'failed');
    const saved = await this.readSaved();
    const haveFiles =
      saved !== undefined && (await this.exists(REDSOCKS_CONF)) && (await this.exists(NFT_FILE));
    if (haveFiles) {
      this.upstream = saved;
      log.notice('adopting the proxy route in place', {
        upstream: `${saved.host}:${saved.port}`,
        running,
      });
      await this.serial(async () => {
        await this.ensureUnits();
        // Kept by resolved (or networkd) across our restart; set again in case it was lost meanwhile.
        await this.setDns(saved.link, true);
        await this.verifyNow();
      });
      this.armVerify();
      return;
    }
    const leftovers = (
      await Promise.all([REDSOCKS_CONF, NFT_FILE, ENV_FILE, STATE_FILE].map((f) => this.exists(f)))
    ).some(Boolean);
    if (running || leftovers) {
      log.notice('removing a proxy route nobody accounts for', { running, leftovers });
      await this.serial(() => this.teardown());
    }
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.verifyTimer);
    clearTimeout(this.restartTimer);
  }

  /** Applies a validated request. Resolves with the status after the change. */
  set(req: ProxyRequest): Promise<ProxyStatus> {
    return this.serial(async () => {
      if (!req.active) {
        if (this.upstream === undefined && this.current === 'disabled') return this.status();
        await this.teardown();
        log.info('proxy route turned off', {});
        return this.status();
      }
      const link = this.deps.link();
      // Everything rendered in memory first: a refusal here writes and starts nothing.
      const files = await renderRoute(this.deps.templates, req, link);
      const unchanged =
        this.upstream !== undefined &&
        (await this.holds(REDSOCKS_CONF, files.redsocks)) &&
        (await this.holds(NFT_FILE, files.nft)) &&
        (await this.holds(ENV_FILE, files.env)) &&
        this.active(PROXY_UNIT) &&
        this.active(ROUTE_UNIT);
      if (unchanged) {
        await this.verifyNow();
        return this.status();
      }
      await this.bringUp(req, link, files);
      return this.status();
    });
  }

  /** get_proxy_status {verify:true}: checks now. */
  verify(): Promise<ProxyStatus> {
    return this.serial(async () => {
      if (this.upstream !== undefined) await this.verifyNow();
      return this.status(this.upstream !== undefined);
    });
  }

  // ---------------------------------------------------------------------------------------------------

  private async bringUp(c: ProxyConfig, link: string, files: RenderedRoute): Promise<void> {
    const gid = await lookupGroupId('redsocks', this.deps.groupFile);
    const up: Upstream = { host: c.host, port: c.port, user: c.user, link };
    this.upstream = up;
    this.schedule.reset();
    const changedRedsocks = !(await this.holds(REDSOCKS_CONF, files.redsocks));
    const changedRoute = !(await this.holds(NFT_FILE, files.nft)) || !(await this.holds(ENV_FILE, files.env));
    try {
      // Readable by redsocks only (it runs as its own user); without that group nobody but root reads it.
      await writeAtomic(this.file(REDSOCKS_CONF), files.redsocks, {
        mode: gid === undefined ? 0o600 : 0o640,
        ...(gid === undefined ? {} : { gid }),
      });
      await writeAtomic(this.file(NFT_FILE), files.nft, { mode: 0o600 });
      await writeAtomic(this.file(ENV_FILE), files.env, { mode: 0o600 });
      await writeAtomic(this.file(STATE_FILE), `${JSON.stringify(up)}\n`, { mode: 0o600 });
    } catch (err) {
      log.err('writing the proxy route files failed', { error: errText(err), error_code: 'WriteFailed' });
      this.fail('write_failed', 'the proxy route files could not be written (see the journal)');
      return;
    }
    // redsocks first, so the redirect never points at a port nobody listens on.
    this.changing = true;
    let r1: JobResult;
    let r2: JobResult;
    try {
      r1 = await this.job(changedRedsocks ? 'restart' : 'start', PROXY_UNIT);
      r2 = await this.job(changedRoute ? 'restart' : 'start', ROUTE_UNIT);
    } finally {
      this.changing = false;
    }
    await this.waitListener();
    await this.setDns(link, true);
    log.info('proxy route set', { upstream: `${c.host}:${c.port}`, link, redsocks_job: r1, route_job: r2 });
    await this.verifyNow();
    if (r1 !== 'done' || r2 !== 'done') {
      const unit = r1 !== 'done' ? PROXY_UNIT : ROUTE_UNIT;
      const result = r1 !== 'done' ? r1 : r2;
      log.err('proxy route unit did not start', { unit, job_result: result, error_code: 'StartFailed' });
      this.fail('start_failed', `${unit} did not start (${result})`);
    }
    this.armVerify();
  }

  /** Stops both units (the route unit's stop deletes the table and the route), reverts DNS, removes files. */
  private async teardown(): Promise<void> {
    const link = this.upstream?.link;
    this.upstream = undefined;
    clearInterval(this.verifyTimer);
    this.verifyTimer = undefined;
    clearTimeout(this.restartTimer);
    this.schedule.reset();
    this.changing = true;
    let r1: JobResult;
    let r2: JobResult;
    try {
      r2 = await this.job('stop', ROUTE_UNIT);
      r1 = await this.job('stop', PROXY_UNIT);
    } finally {
      this.changing = false;
    }
    if (link !== undefined) await this.setDns(link, false);
    for (const f of [REDSOCKS_CONF, NFT_FILE, ENV_FILE, STATE_FILE]) {
      await unlink(this.file(f)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT')
          log.warning('removing a proxy route file failed', { file: f, error: errText(err) });
      });
    }
    this.checks = { ...NO_CHECKS };
    this.verifiedAt = null;
    if (r1 !== 'done' || r2 !== 'done') {
      log.err('stopping the proxy route failed', {
        redsocks_job: r1,
        route_job: r2,
        error_code: 'StopFailed',
      });
      this.fail('stop_failed', 'the proxy route could not be stopped (see the journal)');
      return;
    }
    this.setState('disabled', { error_code: null, error: null });
  }

  private async verifyNow(): Promise<void> {
    const up = this.upstream;
    if (!up) return;
    const [listener, route, upstream] = await Promise.all([
      this.listening(LISTEN_PORT),
      this.routePresent(up.link, ROUTE_METRIC),
      this.probe(up.host, up.port, 3000),
    ]);
    if (this.upstream !== up) return; // turned off or replaced meanwhile
    const checks: ProxyChecks = {
      listener: listener && this.active(PROXY_UNIT),
      iptables: route && this.active(ROUTE_UNIT),
      upstream,
    };
    this.checks = checks;
    this.verifiedAt = isoSeconds(this.now());
    const next = stateOf(checks);
    // A broken local pipeline is repaired (restart of the unit whose check failed) under the recovery rules.
    if (!checks.listener || !checks.iptables) this.unitDown();
    else this.schedule.up(this.now());
    this.setState(next, errorOf(checks, up, LISTEN_PORT));
  }

  private onUnit(unit: string, st: UnitState): void {
    if (unit !== PROXY_UNIT && unit !== ROUTE_UNIT) return;
    if (this.upstream === undefined || this.stopped || this.changing) return;
    if (st.activeState === 'failed' || st.activeState === 'inactive') {
      // Seen from systemd's signal at once: no need to wait for the next check.
      if (unit === PROXY_UNIT) this.checks = { ...this.checks, listener: false };
      else this.checks = { ...this.checks, iptables: false };
      const up = this.upstream;
      log.warning(`${unit} stopped while the proxy route is on`, { unit, active_state: st.activeState });
      this.setState('failed', errorOf(this.checks, up, LISTEN_PORT));
      this.unitDown();
    } else if (st.activeState === 'active' && unit === PROXY_UNIT) {
      // Started by someone else (systemctl): check as soon as it listens.
      void this.serial(async () => {
        await this.waitListener();
        await this.verifyNow();
      });
    }
  }

  /** Schedules the next restart attempt under the recovery rules. */
  private unitDown(): void {
    const at = this.schedule.down(this.now());
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(
      () => void this.serial(() => this.recover()),
      Math.max(0, at - this.now()),
    );
    this.restartTimer.unref();
  }

  private async recover(): Promise<void> {
    if (this.upstream === undefined || this.stopped || !this.schedule.due(this.now())) return;
    const attempt = this.schedule.attempt(this.now());
    const broken = {
      [PROXY_UNIT]: !this.checks.listener || !this.active(PROXY_UNIT),
      [ROUTE_UNIT]: !this.checks.iptables || !this.active(ROUTE_UNIT),
    };
    log.notice('repairing the proxy route', {
      attempt,
      redsocks: broken[PROXY_UNIT],
      route: broken[ROUTE_UNIT],
    });
    await this.ensureUnits(broken);
    await this.verifyNow();
  }

  /** Starts (or restarts, when running but broken) the units, redsocks first; waits until it listens. */
  private async ensureUnits(broken?: Record<string, boolean>): Promise<void> {
    this.changing = true;
    try {
      for (const unit of [PROXY_UNIT, ROUTE_UNIT]) {
        const running = this.active(unit);
        if (running && !broken?.[unit]) continue;
        const result = await this.job(running ? 'restart' : 'start', unit);
        if (result !== 'done')
          log.err('proxy route unit did not start', { unit, job_result: result, error_code: 'StartFailed' });
      }
    } finally {
      this.changing = false;
    }
    await this.waitListener();
  }

  /** redsocks' unit is active as soon as it is forked; its socket is open a moment later (bounded: 2 s). */
  private async waitListener(): Promise<void> {
    const until = Date.now() + 2000;
    while (Date.now() < until && this.active(PROXY_UNIT)) {
      if (await this.listening(LISTEN_PORT)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private armVerify(): void {
    if (this.verifyTimer || this.stopped) return;
    this.verifyTimer = setInterval(() => {
      if (this.upstream !== undefined)
        void this.serial(async () => {
          await this.verifyNow();
          await this.keepDns();
        });
    }, this.deps.verifyMs);
    this.verifyTimer.unref();
  }

  private fail(code: string, message: string): void {
    this.setState('failed', { error_code: code, error: message });
  }

  private setState(next: ProxyState, err: { error_code: string | null; error: string | null }): void {
    const changed = next !== this.current || err.error_code !== this.err.error_code;
    const prev = this.current;
    this.current = next;
    this.err = err;
    if (!changed) return;
    const fields = { state: next, previous: prev, error_code: err.error_code ?? undefined };
    if (next === 'failed' || next === 'degraded') log.warning(`proxy route ${next}`, fields);
    else log.info(`proxy route ${next}`, fields);
    this.emit('changed', this.status());
  }

  private async job(kind: 'start' | 'restart' | 'stop', unit: string): Promise<JobResult> {
    const s = this.deps.systemd;
    const t = this.deps.jobTimeoutMs;
    try {
      if (kind === 'start') return await s.startUnit(unit, t);
      if (kind === 'restart') return await s.restart(unit, t);
      return await s.stopUnit(unit, t);
    } catch (err) {
      log.err(`${kind} of ${unit} failed`, { unit, error: errText(err), error_code: 'JobFailed' });
      return 'failed';
    } finally {
      await s.refresh(unit).catch(() => undefined);
    }
  }

  /**
   * DNS for the AP link through systemd-resolved, only when it runs (as the Python service did with
   * resolvectl). resolved refuses a link systemd-networkd manages (LinkBusy, as the AP link is): then the
   * same settings go to networkd, which hands them to resolved, which is what resolvectl does too.
   */
  private async setDns(link: string, on: boolean): Promise<void> {
    const bus = this.deps.bus;
    if (!bus) return;
    try {
      if (!(await bus.nameOwner(RESOLVED.destination))) {
        log.info('systemd-resolved is not running: the AP link DNS is left alone', { link, on });
        return;
      }
      const index = Number((await readFile(`/sys/class/net/${link}/ifindex`, 'utf8')).trim());
      const calls: [member: string, signature: string, body: unknown[]][] = on
        ? [
            ['SetLinkDNS', 'ia(iay)', [index, [[2, Buffer.from(DNS_SERVER)]]]],
            ['SetLinkDomains', 'ia(sb)', [index, [['.', true]]]],
          ]
        : [['RevertLink', 'i', [index]]];
      try {
        for (const [member, signature, body] of calls)
          await bus.call({ ...RESOLVED, member, signature, body });
      } catch (err) {
        if (!(err instanceof dbus.DBusError) || err.type !== LINK_BUSY) throw err;
        for (const [member, signature, body] of calls)
          await bus.call({ ...NETWORKD, member: NETWORKD_MEMBER[member] ?? member, signature, body });
      }
    } catch (err) {
      const text = err instanceof dbus.DBusError ? err.text : errText(err);
      log.warning('setting the AP link DNS through systemd-resolved failed', {
        link,
        on,
        error: text,
        error_code: 'DnsFailed',
      });
    }
  }

  /**
   * networkd forgets the DNS it was given over D-Bus when it restarts or reconfigures the link (our own
   * repairs and config applies do both): while the route is on, set it again when resolved no longer has it.
   */
  private async keepDns(): Promise<void> {
    const up = this.upstream;
    const bus = this.deps.bus;
    if (!up || !bus) return;
    try {
      if (!(await bus.nameOwner(RESOLVED.destination))) return;
      const index = Number((await readFile(`/sys/class/net/${up.link}/ifindex`, 'utf8')).trim());
      const reply = await bus.call({ ...RESOLVED, member: 'GetLink', signature: 'i', body: [index] });
      const servers = (await bus.getProperty(
        {
          destination: RESOLVED.destination,
          path: String(reply.body[0]),
          interface: 'org.freedesktop.resolve1.Link',
        },
        'DNS',
      )) as [number, Buffer][];
      const ours = Buffer.from(DNS_SERVER);
      if (servers.some(([family, address]) => family === 2 && Buffer.from(address).equals(ours))) return;
    } catch (err) {
      const text = err instanceof dbus.DBusError ? err.text : errText(err);
      log.warning('reading the AP link DNS from systemd-resolved failed', {
        link: up.link,
        error: text,
        error_code: 'DnsFailed',
      });
      return;
    }
    if (this.upstream !== up) return;
    log.notice('the AP link lost its DNS while the proxy route is on: setting it again', { link: up.link });
    await this.setDns(up.link, true);
  }

  private unitState(unit: string): Promise<UnitState | undefined> {
    return this.deps.systemd.refresh(unit).catch((err: unknown) => {
      log.warning('cannot read a proxy route unit', { unit, error: errText(err) });
      return undefined;
    });
  }

  private active(unit: string): boolean {
    return this.deps.systemd.state(unit)?.activeState === 'active';
  }

  private file(name: string): string {
    return path.join(this.deps.dir, name);
  }

  private holds(name: string, content: string): Promise<boolean> {
    return hasContent(this.file(name), content).catch(() => false);
  }

  private async exists(name: string): Promise<boolean> {
    return readFile(this.file(name)).then(
      () => true,
      () => false,
    );
  }

  private async readSaved(): Promise<Upstream | undefined> {
    try {
      const v = JSON.parse(await readFile(this.file(STATE_FILE), 'utf8')) as Partial<Upstream>;
      if (
        typeof v.host === 'string' &&
        typeof v.port === 'number' &&
        typeof v.user === 'string' &&
        typeof v.link === 'string'
      )
        return { host: v.host, port: v.port, user: v.user, link: v.link };
    } catch {
      // absent or unreadable: nothing to adopt
    }
    return undefined;
  }

  /** One change or check at a time. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}
