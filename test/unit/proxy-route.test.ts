// ProxyRoute's wiring with systemd, the checks and systemd-resolved replaced by fakes (the sandbox tests run
// the real ones: test/sandbox/proxy.test.ts, and proxy-dns.test.ts with a real resolved): what it writes,
// which jobs it asks for in which order, the states it reports and emits, the restart after a unit died,
// adoption.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import dbus from 'dbus-next';
import type { Bus } from '../../src/bus/connection.js';
import { parseProxyRequest } from '../../src/proxy/request.js';
import { PROXY_UNIT, ProxyRoute, ROUTE_UNIT } from '../../src/proxy/route.js';
import type { ProxyStatus } from '../../src/proxy/state.js';
import type { SystemdManager, UnitListener, UnitState } from '../../src/systemd/manager.js';
import { TEMPLATES } from '../fixtures/config/harness.js';
import { revisionWatch } from './helpers/revision-watch.js';

const root = mkdtempSync(path.join(tmpdir(), 'proxy-route-'));
after(() => rmSync(root, { recursive: true, force: true }));

function unitState(active: string): UnitState {
  return {
    loadState: 'loaded',
    activeState: active,
    subState: active === 'active' ? 'running' : 'dead',
    inactiveExitMonotonicUs: 0n,
    activeEnterMonotonicUs: 0n,
    jobPath: '/',
  };
}

/** systemd as far as ProxyRoute uses it: jobs change the unit's state at once. */
class FakeSystemd {
  states = new Map<string, string>([
    [PROXY_UNIT, 'inactive'],
    [ROUTE_UNIT, 'inactive'],
  ]);
  jobs: string[] = [];
  unitListeners: UnitListener[] = [];
  failStart = new Set<string>();
  onUnitChanged(l: UnitListener) {
    this.unitListeners.push(l);
  }
  async refresh(unit: string) {
    return unitState(this.states.get(unit) ?? 'inactive');
  }
  state(unit: string) {
    return unitState(this.states.get(unit) ?? 'inactive');
  }
  private async job(kind: string, unit: string, to: string) {
    this.jobs.push(`${kind} ${unit}`);
    if (kind !== 'stop' && this.failStart.has(unit)) {
      this.states.set(unit, 'failed');
      return 'failed';
    }
    this.states.set(unit, to);
    return 'done';
  }
  startUnit(unit: string) {
    return this.job('start', unit, 'active');
  }
  restart(unit: string) {
    return this.job('restart', unit, 'active');
  }
  stopUnit(unit: string) {
    return this.job('stop', unit, 'inactive');
  }
  /** The unit dies (as systemd would signal it). */
  die(unit: string) {
    this.states.set(unit, 'failed');
    for (const l of this.unitListeners) l(unit, unitState('failed'));
  }
}

class FakeBus {
  calls: { member: string; body: unknown[]; destination?: string }[] = [];
  resolved = true;
  /** resolved answers LinkBusy, as it does for a link systemd-networkd manages. */
  busy = false;
  async nameOwner() {
    return this.resolved ? ':1.9' : undefined;
  }
  async call(spec: { member: string; body: unknown[]; destination: string }) {
    if (this.busy) {
      this.calls.push({ member: spec.member, body: spec.body, destination: spec.destination });
      if (spec.destination === 'org.freedesktop.resolve1')
        throw new dbus.DBusError('org.freedesktop.resolve1.LinkBusy', 'Link lo is managed.');
    } else this.calls.push({ member: spec.member, body: spec.body });
    return { body: [] };
  }
}

function make(dir: string, over: { upstream?: boolean } = {}) {
  const systemd = new FakeSystemd();
  const bus = new FakeBus();
  const checks = { upstream: over.upstream ?? true };
  let now = 1_000_000;
  const route = new ProxyRoute({
    bus: bus as unknown as Bus,
    systemd: systemd as unknown as SystemdManager,
    dir,
    templates: TEMPLATES,
    groupFile: '/nonexistent',
    link: () => 'lo',
    verifyMs: 60_000,
    jobTimeoutMs: 1000,
    rules: {
      fastRetries: 3,
      fastRetryMs: 5000,
      slowRetryMs: 60000,
      healthyResetMs: 120000,
      resetOnRecovery: true,
    },
    now: () => now,
    probe: async () => checks.upstream,
    listening: async () => systemd.states.get(PROXY_UNIT) === 'active',
    routePresent: async () => systemd.states.get(ROUTE_UNIT) === 'active',
  });
  const events: ProxyStatus[] = [];
  route.on('changed', (s: ProxyStatus) => events.push(s));
  return { systemd, bus, route, events, checks, tick: (ms: number) => (now += ms) };
}

const req = parseProxyRequest(
  { active: true, host: '10.0.0.31', port: 1080, user: 'oap', password: 'pw-secret' },
  '10.0.0.0/24',
);

describe('ProxyRoute', () => {
  it('on: files, redsocks before the route, DNS through resolved, active; off: everything reverted', async () => {
    const dir = mkdtempSync(path.join(root, 'a-'));
    const { systemd, bus, route, events } = make(dir);
    await route.start();
    const s = await route.set(req);
    assert.equal(s.state, 'active');
    assert.deepEqual(systemd.jobs, [`restart ${PROXY_UNIT}`, `restart ${ROUTE_UNIT}`]);
    assert.deepEqual(readdirSync(dir).sort(), [
      'openauto-proxy-route.env',
      'openauto-proxy-route.json',
      'openauto-proxy-route.nft',
      'redsocks.conf',
    ]);
    // No group redsocks in the group file given: only root reads it.
    assert.equal(statSync(path.join(dir, 'redsocks.conf')).mode & 0o777, 0o600);
    for (const f of readdirSync(dir).filter((f) => f !== 'redsocks.conf'))
      assert.ok(!readFileSync(path.join(dir, f), 'utf8').includes('pw-secret'), f);
    const index = Number(readFileSync('/sys/class/net/lo/ifindex', 'utf8'));
    assert.deepEqual(
      bus.calls.map((c) => c.member),
      ['SetLinkDNS', 'SetLinkDomains'],
    );
    assert.deepEqual(bus.calls[0]?.body, [index, [[2, Buffer.from([1, 1, 1, 1])]]]);
    assert.deepEqual(
      events.map((e) => e.state),
      ['active'],
    );
    assert.doesNotMatch(JSON.stringify(route.summary()), /pw-secret/);

    // The same request again: nothing restarted.
    systemd.jobs = [];
    await route.set(req);
    assert.deepEqual(systemd.jobs, []);

    const off = await route.set({ active: false });
    assert.equal(off.state, 'disabled');
    assert.deepEqual(systemd.jobs, [`stop ${ROUTE_UNIT}`, `stop ${PROXY_UNIT}`]);
    assert.deepEqual(readdirSync(dir), []);
    assert.deepEqual(bus.calls.at(-1), { member: 'RevertLink', body: [index] });
    assert.deepEqual(
      events.map((e) => e.state),
      ['active', 'disabled'],
    );
    route.stop();
  });

  it('without resolved on the bus, DNS is left alone', async () => {
    const { bus, route } = make(mkdtempSync(path.join(root, 'b-')));
    bus.resolved = false;
    await route.start();
    await route.set(req);
    await route.set({ active: false });
    assert.deepEqual(bus.calls, []);
    route.stop();
  });

  it('a link networkd manages (resolved: LinkBusy): the same DNS settings go to networkd', async () => {
    const { bus, route } = make(mkdtempSync(path.join(root, 'busy-')));
    bus.busy = true;
    await route.start();
    await route.set(req);
    await route.set({ active: false });
    const index = Number(readFileSync('/sys/class/net/lo/ifindex', 'utf8'));
    assert.deepEqual(
      bus.calls.map((c) => `${c.destination} ${c.member}`),
      [
        'org.freedesktop.resolve1 SetLinkDNS',
        'org.freedesktop.network1 SetLinkDNS',
        'org.freedesktop.network1 SetLinkDomains',
        'org.freedesktop.resolve1 RevertLink',
        'org.freedesktop.network1 RevertLinkDNS',
      ],
    );
    assert.deepEqual(bus.calls[1]?.body, [index, [[2, Buffer.from([1, 1, 1, 1])]]]);
    assert.deepEqual(bus.calls[2]?.body, [index, [['.', true]]]);
    assert.deepEqual(bus.calls[4]?.body, [index]);
    route.stop();
  });

  it('redsocks dies → failed at once, restarted → active; the upstream down → degraded', async () => {
    const { systemd, route, events, checks } = make(mkdtempSync(path.join(root, 'c-')));
    await route.start();
    await route.set(req);
    systemd.jobs = [];
    systemd.die(PROXY_UNIT);
    assert.equal(route.state, 'failed');
    assert.equal(route.status().error_code, 'listener_down');
    await new Promise((r) => setTimeout(r, 20)); // the repair is due at once: its timer fires
    await route.verify(); // and waits for it
    assert.deepEqual(systemd.jobs, [`start ${PROXY_UNIT}`]);
    assert.equal(route.state, 'active');
    assert.deepEqual(
      events.map((e) => e.state),
      ['active', 'failed', 'active'],
    );
    checks.upstream = false;
    const v = await route.verify();
    assert.equal(v.state, 'degraded');
    assert.equal(v.error_code, 'upstream_unreachable');
    assert.equal(v.live_check, true);
    route.stop();
  });

  it("GetStatus's proxy section changes only with the route's revision (its cached text is never stale)", async () => {
    const { systemd, route, checks, tick } = make(mkdtempSync(path.join(root, 'r-')));
    const watch = revisionWatch(
      () => route.summary(),
      () => route.revision,
      'the proxy summary',
    );
    route.on('changed', watch);
    watch();
    await route.start();
    watch();
    await route.set(req);
    watch();
    systemd.die(PROXY_UNIT);
    watch();
    await new Promise((r) => setTimeout(r, 20));
    await route.verify();
    watch();
    tick(1000);
    checks.upstream = false;
    await route.verify();
    watch();
    systemd.die(ROUTE_UNIT);
    watch();
    await route.set(parseProxyRequest({ active: false }, '10.0.0.0/24'));
    watch();
    for (let i = 0; i < 3; i++) watch(); // nothing changed: the same revision
    // on, failed, repaired, degraded, route down, off (and the checks between): each moved the revision.
    assert.ok(watch.moves >= 6, `the revision moved ${watch.moves} times`);
    route.stop();
  });

  it('a unit that fails to start: failed with the reason, ok false for the caller to see', async () => {
    const { systemd, route } = make(mkdtempSync(path.join(root, 'd-')));
    systemd.failStart.add(ROUTE_UNIT);
    await route.start();
    const s = await route.set(req);
    assert.equal(s.state, 'failed');
    assert.equal(s.error_code, 'start_failed');
    assert.match(String(s.error), /openauto-proxy-route\.service did not start/);
    route.stop();
  });

  it('start-up adopts a route whose files are in place, and removes one it cannot account for', async () => {
    const dir = mkdtempSync(path.join(root, 'e-'));
    const first = make(dir);
    await first.route.start();
    await first.route.set(req);
    first.route.stop();

    // A new daemon: the units still run, the files are there → adopted, nothing restarted.
    const second = make(dir);
    second.systemd.states = new Map(first.systemd.states);
    await second.route.start();
    assert.equal(second.route.state, 'active');
    assert.deepEqual(second.systemd.jobs, []);
    second.route.stop();

    // Without the route's description the running units belong to nobody: stopped, files removed.
    rmSync(path.join(dir, 'openauto-proxy-route.json'));
    const third = make(dir);
    third.systemd.states = new Map(first.systemd.states);
    await third.route.start();
    assert.equal(third.route.state, 'disabled');
    assert.deepEqual(third.systemd.jobs, [`stop ${ROUTE_UNIT}`, `stop ${PROXY_UNIT}`]);
    assert.deepEqual(readdirSync(dir), []);
    third.route.stop();
  });

  it('a damaged description file is not adopted', async () => {
    const dir = mkdtempSync(path.join(root, 'f-'));
    writeFileSync(path.join(dir, 'openauto-proxy-route.json'), '{"host": 1}');
    const { route, systemd } = make(dir);
    await route.start();
    assert.equal(route.state, 'disabled');
    assert.deepEqual(readdirSync(dir), []);
    assert.deepEqual(systemd.jobs, [`stop ${ROUTE_UNIT}`, `stop ${PROXY_UNIT}`]);
    route.stop();
  });
});
