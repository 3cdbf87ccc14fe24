// The service layer: the one implementation of SystemService, and all that both faces (bus/system1.ts, ipc/)
// call. A method that changes something reads its arguments, validates them (a clear error, nothing
// changed), asks polkit for D-Bus callers, acts and replies. Skipping what did not change is part of acting
// (the applier compares before it writes), so an unchanged apply is still authorized first. Changes reach
// clients through the monitor's healthChanged.
import { EventEmitter } from 'node:events';
import type { ProfileClaims } from './bluez/claims-service.js';
import type { Authorizer } from './bus/polkit.js';
import { ACTIONS, type Action } from './bus/polkit.js';
import { monotonicMs } from './clock.js';
import { checkSection } from './config/load.js';
import type { SectionName } from './config/schema.js';
import { printable, ServiceError } from './errors.js';
import type { HealthMonitor } from './health/monitor.js';
import { type HealthMap, resolveServiceName, SERVICES } from './health/states.js';
import { log } from './log/journal.js';
import { parseProxyRequest } from './proxy/request.js';
import type { ProxyRoute } from './proxy/route.js';
import type { ProxyStatus } from './proxy/state.js';
import type { ApplyResult, Caller, Json, ProxyReply, SystemService } from './service.js';
import type { UnitRestarter } from './systemd/restarts.js';

export interface ConfigApplierLike {
  apply(section: SectionName): Promise<ApplyResult>;
  /** Applied config per section, secrets removed. */
  summary(): { [section: string]: Json };
  /** Grows whenever summary() may have changed (without it, GetStatus is built per call). */
  readonly revision?: number;
}

export interface DaemonDeps {
  version: string;
  monitor: HealthMonitor;
  restarter: UnitRestarter;
  authorizer: Pick<Authorizer, 'check'>;
  applier?: ConfigApplierLike;
  /** The Bluetooth profiles' claims; without it ClaimProfile and ReleaseProfile fail with InvalidArgs. */
  profiles?: ProfileClaims;
  /** Extra status sections (e.g. BlueZ profiles) keyed by name. */
  extraStatus?: () => { [key: string]: Json };
  /** Grows whenever extraStatus() may have changed (without it, GetStatus is built per call). */
  extraStatusRevision?: () => number;
  /** Milliseconds on a clock that only runs forwards (the uptime's); injected by tests. */
  now?: () => number;
  /** The proxy route and the AP's /24 (a default skip network). */
  proxy?: { route: ProxyRoute; apSubnet: () => string };
}

export class Daemon extends EventEmitter implements SystemService {
  private readonly startedAt: number;
  private readonly now: () => number;
  private healthText: string | undefined;
  /** GetStatus's text and what it was made from: the parts' revisions and the uptime's second. */
  private statusText: string | undefined;
  private readonly statusKey = [-1, -1, -1, -1];

  constructor(private readonly deps: DaemonDeps) {
    super();
    // Monotonic: a Pi without a real-time clock jumps years when it first syncs; its uptime must not.
    this.now = deps.now ?? monotonicMs;
    this.startedAt = this.now();
    deps.monitor.on('healthChanged', (h: HealthMap) => {
      this.healthText = undefined;
      this.emit('healthChanged', h);
    });
    deps.proxy?.route.on('changed', (s: ProxyStatus) => this.emit('proxyChanged', s));
  }

  getHealth(): HealthMap {
    return this.deps.monitor.health();
  }

  /** The health map changes only with healthChanged: its JSON text is made once per change, not per call. */
  healthJson(): string {
    this.healthText ??= JSON.stringify(this.getHealth());
    return this.healthText;
  }

  /**
   * GetStatus's dump as JSON text, made once per change rather than per call: every part says by a revision
   * number when it may have changed (the monitor: unit states, checks and its trackers' inputs; the applied
   * config; the profiles and the proxy route), and the uptime changes once a second. A part without a
   * revision (a stand-in in tests) makes it build per call.
   */
  statusJson(): string {
    const monitor = this.deps.monitor.statusRevision;
    const applier = this.deps.applier ? this.deps.applier.revision : 0;
    const extra = this.deps.extraStatus ? this.deps.extraStatusRevision?.() : 0;
    if (monitor === undefined || applier === undefined || extra === undefined)
      return JSON.stringify(this.getStatus());
    const uptime = this.uptime();
    const key = this.statusKey;
    if (
      this.statusText === undefined ||
      key[0] !== monitor ||
      key[1] !== applier ||
      key[2] !== extra ||
      key[3] !== uptime
    ) {
      this.statusText = JSON.stringify(this.getStatus());
      key[0] = monitor;
      key[1] = applier;
      key[2] = extra;
      key[3] = uptime;
    }
    return this.statusText;
  }

  private uptime(): number {
    return Math.floor((this.now() - this.startedAt) / 1000);
  }

  getStatus(): { [key: string]: Json } {
    return {
      services: this.deps.monitor.status(),
      config: this.deps.applier?.summary() ?? {},
      ...(this.deps.extraStatus?.() ?? {}),
      uptime: this.uptime(),
      version: this.deps.version,
    };
  }

  async restartService(name: string, caller: Caller): Promise<void> {
    const service = resolveServiceName(name);
    if (!service) {
      throw new ServiceError(
        'UnknownService',
        `unknown service '${printable(name)}': use hostapd, networkd or bluetooth`,
      );
    }
    await this.authorize(caller, ACTIONS.restartService);
    const unit = SERVICES[service].unit;
    log.info(`restart of ${service} requested`, { service, unit, caller: caller.kind });
    const result = await this.deps.restarter.restart(unit, 'caller');
    this.deps.monitor.poke(service);
    if (result !== 'done') {
      log.err(`restart of ${service} failed`, {
        service,
        unit,
        job_result: result,
        error_code: 'RestartFailed',
      });
      throw new ServiceError('RestartFailed', `${service} failed to restart (${result})`);
    }
    log.info(`${service} restarted`, { service, unit });
  }

  async applyConfig(name: string, caller: Caller): Promise<ApplyResult> {
    const section = checkSection(name);
    const applier = this.deps.applier;
    if (!applier) throw new ServiceError('UnknownSection', `unknown section '${section}'`);
    await this.authorize(caller, ACTIONS.applyConfig);
    return applier.apply(section);
  }

  async claimProfile(uuid: string, handler: string, caller: Caller): Promise<void> {
    const claims = this.profileClaims();
    const profile = claims.resolve(uuid);
    if (caller.kind !== 'dbus') {
      throw new ServiceError('InvalidArgs', 'a profile handler is a D-Bus object: claim it over D-Bus');
    }
    if (!OBJECT_PATH.test(handler)) throw new ServiceError('InvalidArgs', 'handler must be an object path');
    // polkit may take seconds: a caller that leaves the bus meanwhile must not end up holding the profile.
    const watch = claims.watch(caller.sender);
    try {
      await this.authorize(caller, ACTIONS.claimProfile);
    } finally {
      claims.unwatch(watch);
    }
    claims.claim(profile, watch, handler);
  }

  async releaseProfile(uuid: string, caller: Caller): Promise<void> {
    const claims = this.profileClaims();
    const profile = claims.resolve(uuid);
    // Only the caller's own claim can end, so there is nothing to authorize; other callers hold none.
    if (caller.kind !== 'dbus') return;
    claims.release(profile, caller.sender);
  }

  private profileClaims(): ProfileClaims {
    if (!this.deps.profiles) throw new ServiceError('InvalidArgs', 'no Bluetooth profiles are managed here');
    return this.deps.profiles;
  }

  async setProxyRoute(params: unknown, caller: Caller): Promise<ProxyReply> {
    const proxy = this.proxy();
    const req = parseProxyRequest(params, proxy.apSubnet());
    await this.authorize(caller, ACTIONS.setProxyRoute);
    const status = await proxy.route.set(req);
    return { ok: req.active ? status.state !== 'failed' : status.state === 'disabled', ...status };
  }

  async getProxyStatus(verify: boolean): Promise<ProxyReply> {
    const route = this.proxy().route;
    const status = verify ? await route.verify() : route.status();
    return { ok: status.state !== 'failed', ...status };
  }

  proxyStatus(): ProxyStatus {
    return this.proxy().route.status();
  }

  private proxy(): NonNullable<DaemonDeps['proxy']> {
    if (!this.deps.proxy) throw new ServiceError('InvalidArgs', 'the proxy route is not managed here');
    return this.deps.proxy;
  }

  private async authorize(caller: Caller, action: Action): Promise<void> {
    // Socket callers were admitted by the kernel (0660, group openauto), which the shipped polkit rules
    // grant every action; internal callers are the daemon itself.
    if (caller.kind !== 'dbus') return;
    await this.deps.authorizer.check(caller.sender, action, caller.interactive);
  }
}

const OBJECT_PATH = /^\/([A-Za-z0-9_]+(\/[A-Za-z0-9_]+)*)?$/;
