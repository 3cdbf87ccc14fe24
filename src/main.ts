#!/usr/bin/env node
// openauto-system: the daemon's entry point. Start-up order is the contract's readiness order: connect,
// export objects, run one full health check, open the socket, and only then claim the bus name (what
// Type=dbus and D-Bus activation wait for).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import dbus from 'dbus-next';
import { setAdapter } from './bluez/adapter.js';
import { BluezProfiles } from './bluez/profiles.js';
import { UnixFdGuard } from './bluez/unix-fds.js';
import { Bus } from './bus/connection.js';
import { Authorizer } from './bus/polkit.js';
import { BUS_NAME, System1Export } from './bus/system1.js';
import { ConfigApplier } from './config/applier.js';
import { loadSection } from './config/load.js';
import { NETWORK_FILE } from './config/render.js';
import { stallFromEnv } from './config/stall.js';
import { Daemon } from './daemon.js';
import { type ApExpectation, reconfigureLink } from './health/functional.js';
import { HealthMonitor } from './health/monitor.js';
import { SocketServer, socketFromSystemd } from './ipc/index.js';
import { errText, log } from './log/journal.js';
import { HeapTrimmer } from './memory/heap-trim.js';
import { subnetOf } from './proxy/request.js';
import { ProxyRoute } from './proxy/route.js';
import { PACKAGE_ROOT, parseSettings, type Settings, UsageError, usage } from './settings.js';
import { SystemdManager } from './systemd/manager.js';
import { UnitRestarter } from './systemd/restarts.js';
import { StartLimits } from './systemd/start-limit.js';
import { getTimezone, setTimezone } from './systemd/timedate.js';
import { startWatchdog } from './systemd/watchdog.js';

function packageVersion(): string {
  try {
    return String(
      (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version,
    );
  } catch {
    return 'unknown';
  }
}

/** What the AP link must carry under a validated network section. */
function expectationOf(settings: Settings, n: { interface: string; ap_ip: string }): ApExpectation {
  return { iface: n.interface, apIp: n.ap_ip, networkFile: join(settings.networkDir, NETWORK_FILE) };
}

/** At start, before anything is known to be in effect: config.yaml's network section; the contract's
 * defaults when unreadable. */
async function readExpectation(settings: Settings): Promise<ApExpectation> {
  try {
    return expectationOf(
      settings,
      await loadSection(settings.config, 'network', {
        zoneinfoDir: settings.zoneinfo,
        apInterface: settings.apInterface,
      }),
    );
  } catch (err) {
    log.warning('network section unreadable; checking the default AP address', { error: errText(err) });
    return expectationOf(settings, { interface: settings.apInterface, ap_ip: '10.0.0.1' });
  }
}

/** Heap growth past the last collection or the floor that the trimmer gives back (the soak's growth target). */
const HEAP_SLACK_BYTES = 2 * 1024 * 1024;

/** A call to the bus daemon itself (name ownership). */
function nameCall(member: string, signature: string, body: unknown[]) {
  return {
    destination: 'org.freedesktop.DBus',
    path: '/org/freedesktop/DBus',
    interface: 'org.freedesktop.DBus',
    member,
    signature,
    body,
  };
}

async function run(settings: Settings): Promise<void> {
  // First: start-up itself (an interrupted apply's restarts included) must not look like a hang.
  const watchdog = startWatchdog();
  const version = packageVersion();
  const bus = await Bus.connect();
  // Before anything can send us descriptors (BlueZ's NewConnection): see unix-fds.ts.
  const fds = UnixFdGuard.install(bus);
  const systemd = new SystemdManager(bus);
  await systemd.start();
  const restarter = new UnitRestarter(systemd, settings.restartTimeoutMs, new StartLimits(bus, systemd));
  // What the AP link must carry; set once the applier has looked at the .network file in place (below).
  // The monitor reads it only from start() on.
  let expectation!: ApExpectation;
  const monitor = new HealthMonitor({
    bus,
    systemd,
    restarter,
    pollMs: settings.pollMs,
    recovery: {
      fastRetries: settings.fastRetries,
      fastRetryIntervalMs: settings.fastRetryMs,
      slowRetryIntervalMs: settings.slowRetryMs,
      activatingTimeoutMs: settings.activatingTimeoutMs,
      healthyResetMs: settings.healthyResetMs,
      degradedGraceMs: settings.degradedGraceMs,
      resetOnRecovery: settings.resetOnRecovery,
    },
    expectation: () => expectation,
  });
  const applier = new ConfigApplier({
    paths: settings,
    // Runs inside the apply's hold on the unit (withUnitLock), so it takes no hold of its own.
    restartUnit: async (unit, link) => {
      const result = await restarter.runRestart(unit);
      if (result !== 'done') throw new Error(`${unit} restart job ${result}`);
      if (link !== undefined) {
        // The file may have changed the AP's address: drop the old one networkd's restart left behind.
        await reconfigureLink(bus, link).catch((err: unknown) =>
          log.warning('reconfiguring the AP link failed', { unit, interface: link, error: errText(err) }),
        );
      }
    },
    withUnitLock: (unit, fn) => restarter.hold(unit, 'apply', fn),
    unitActivity: (unit) => systemd.refresh(unit),
    ...stallFromEnv(process.env.OPENAUTO_TEST_STALL),
    setAdapter: (props) => setAdapter(bus, props),
    getTimezone: () => getTimezone(bus),
    setTimezone: (tz) => setTimezone(bus, tz),
  });
  const removed = await applier.cleanup();
  // An apply a crash or power cut interrupted is finished or undone before anything else looks at the units.
  await applier.recover();
  await applier.inspect();
  // When the .network file in place already holds config.yaml's section, that is what the link carries
  // (no second read of config.yaml); otherwise config.yaml says what it should carry.
  expectation = applier.network ? expectationOf(settings, applier.network) : await readExpectation(settings);
  if (removed > 0)
    log.notice(`removed ${removed} temporary file(s) left by an interrupted write`, { count: removed });
  const authorizer = new Authorizer(bus);
  // The proxy route: adopts a route left running by a previous instance (or removes one nobody accounts for).
  const proxy = new ProxyRoute({
    bus,
    systemd,
    dir: settings.proxyDir,
    templates: settings.templates,
    groupFile: settings.groupFile,
    link: () => expectation.iface,
    verifyMs: settings.proxyVerifyMs,
    jobTimeoutMs: settings.restartTimeoutMs,
    rules: {
      fastRetries: settings.fastRetries,
      fastRetryMs: settings.fastRetryMs,
      slowRetryMs: settings.slowRetryMs,
      healthyResetMs: settings.healthyResetMs,
      resetOnRecovery: settings.resetOnRecovery,
    },
  });
  await proxy
    .start()
    .catch((err: unknown) =>
      log.err('adopting the proxy route failed', { error: errText(err), error_code: 'ProxyStartFailed' }),
    );
  const profiles = new BluezProfiles({ bus, fds, enabled: settings.btProfiles });
  const daemon = new Daemon({
    version,
    monitor,
    restarter,
    authorizer,
    profiles: profiles.claims,
    extraStatus: () => ({ profiles: profiles.status(), proxy: proxy.summary() }),
    proxy: { route: proxy, apSubnet: () => subnetOf(expectation.apIp) },
    applier: {
      apply: async (section) => {
        const result = await applier.apply(section);
        if (section === 'network' || section === 'wifi') {
          // What was just applied, not config.yaml re-read (it may have changed since it was validated).
          if (applier.network) expectation = expectationOf(settings, applier.network);
          // Check against the new address now, not at the next poll.
          monitor.poke('hostapd');
          monitor.poke('networkd');
        }
        return result;
      },
      summary: () => applier.appliedSummary(),
    },
  });
  const face = new System1Export(bus, daemon, version, settings.interfaceXml, authorizer);
  face.export();
  profiles.export();
  daemon.on('healthChanged', (h) => face.healthChanged(h));
  daemon.on('proxyChanged', (s: { state: string }) => face.proxyChanged(s.state));

  await monitor.start();

  let socket: SocketServer | undefined;
  if (settings.socketEnabled) {
    socket = new SocketServer(daemon, {
      path: settings.socket,
      groupFile: settings.groupFile,
      // Answers still in flight get half a second; the whole stop is bounded at 1 s.
      closeGraceMs: 500,
      // The socket unit's listening socket, and the connections a previous instance left in the fd store.
      ...socketFromSystemd(),
    });
    await socket.start();
  }

  // Through our bounded call (dbus-next's requestName has no timeout).
  const reply = Number(
    (await bus.call(nameCall('RequestName', 'su', [BUS_NAME, dbus.NameFlag.DO_NOT_QUEUE]))).body[0],
  );
  if (reply !== dbus.RequestNameReply.PRIMARY_OWNER && reply !== dbus.RequestNameReply.ALREADY_OWNER) {
    log.err(`${BUS_NAME} is owned by another process`, { error_code: 'NameTaken' });
    monitor.stop();
    profiles.stop();
    await socket?.close().catch(() => undefined);
    bus.close();
    process.exitCode = 1;
    return;
  }
  // Only the owner of the name registers with BlueZ (a second instance must not). In the background and
  // retried forever: BlueZ being absent never delays readiness.
  profiles.start();
  // The first check (one interval after ready) also gives back what start-up left on the heap.
  const trimmer = new HeapTrimmer({ intervalMs: settings.heapTrimMs, slackBytes: HEAP_SLACK_BYTES });
  trimmer.start();
  log.info(`openauto-system ${version} ready`, { version, health: JSON.stringify(daemon.getHealth()) });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    // Exit within a second whatever happens below.
    setTimeout(() => process.exit(0), 900).unref();
    log.info(`stopping on ${signal}`, { signal });
    monitor.stop();
    profiles.stop();
    proxy.stop();
    trimmer.stop();
    watchdog?.stop();
    await socket?.close().catch(() => undefined);
    try {
      await bus.call({ ...nameCall('ReleaseName', 's', [BUS_NAME]), timeoutMs: 300 });
    } catch (err) {
      log.warning('releasing the bus name failed', { error: errText(err) });
    }
    bus.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  bus.onClose(() => {
    if (stopping) return;
    // Without the bus there is nothing to serve; systemd's Restart=always brings us back.
    log.err('lost the system bus connection', { error_code: 'Disconnected' });
    process.exit(1);
  });
}

function main(): void {
  let settings: Settings;
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(usage());
    return;
  }
  try {
    settings = parseSettings(argv, process.env);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`openauto-system: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  run(settings).catch((err: unknown) => {
    log.err('start-up failed', { error: errText(err), error_code: 'StartupFailed' });
    process.exit(1);
  });
}

main();
