#!/usr/bin/env node
// openauto-system: the daemon's entry point, wiring only. Start-up order is the contract's readiness order:
// connect, export objects, run one full health check, open the socket, and only then claim the bus name (what
// Type=dbus and D-Bus activation wait for).
import { createRequire } from 'node:module';
import { BluezProfiles } from './bluez/profiles.js';
import { UnixFdGuard } from './bluez/unix-fds.js';
import { Bus } from './bus/connection.js';
import { requestName } from './bus/name.js';
import { Authorizer } from './bus/polkit.js';
import { System1Export } from './bus/system1.js';
import { codeCacheUsed, saveCodeCacheLater } from './code-cache.js';
import { ApplyCoordinator } from './config/apply-coordinator.js';
import { Daemon } from './daemon.js';
import { HealthMonitor } from './health/monitor.js';
import { SocketServer, socketFromSystemd } from './ipc/index.js';
import { errText, log, setDebug } from './log/journal.js';
import { HeapTrimmer } from './memory/heap-trim.js';
import { subnetOf } from './proxy/request.js';
import { startProxyRoute } from './proxy/start.js';
import { packageVersion, readSettings, recoveryRules, type Settings } from './settings.js';
import { stopOnSignals } from './shutdown.js';
import { SystemdManager } from './systemd/manager.js';
import { UnitRestarter } from './systemd/restarts.js';
import { StartLimits } from './systemd/start-limit.js';
import { startWatchdog } from './systemd/watchdog.js';
import { warmUp } from './warmup.js';

// For scripts/code-cache.mjs: the code cache is taken after a warm-up, like the start-up snapshot.
export { warmUp };

/** Anonymous memory grown past the last collection or the floor that the trimmer gives back (the soak's
 * growth target is < 1 MB; an idle daemon holds ~10 MB). */
const HEAP_SLACK_BYTES = 256 * 1024;

async function run(settings: Settings): Promise<void> {
  // Where start-up's time goes (ms since the process started, in the ready entry's STARTUP_MS): bench/versus.ts.
  // process.uptime(), not performance.now(): the first use of \`performance\` loads node's perf_hooks.
  const now = () => process.uptime() * 1000;
  const marks: Record<string, number> = { main: now() };
  const mark = (name: string) => {
    marks[name] = Math.round((now() - (marks.main ?? 0)) * 10) / 10;
  };
  // First: start-up itself (an interrupted apply's restarts included) must not look like a hang.
  const watchdog = startWatchdog();
  const version = packageVersion();
  const bus = await Bus.connect();
  mark('bus');
  // Before anything can send us descriptors (BlueZ's NewConnection): see unix-fds.ts.
  const fds = UnixFdGuard.install(bus);
  const systemd = new SystemdManager(bus);
  await systemd.start();
  mark('systemd');
  const restarter = new UnitRestarter(systemd, settings.restartTimeoutMs, new StartLimits(bus, systemd));
  const stall = process.env.OPENAUTO_TEST_STALL;
  const applies = new ApplyCoordinator({ bus, systemd, restarter, paths: settings, stall });
  const recovery = recoveryRules(settings);
  const { pollMs } = settings;
  const monitor = new HealthMonitor({
    bus,
    systemd,
    restarter,
    pollMs,
    recovery,
    expectation: applies.expectation,
  });
  applies.tell(monitor);
  // The proxy route's adoption touches only its own units and files: its bus round trips run while the
  // applies' start reads and checks the files (it is not waited for until the daemon needs it).
  const proxyStarted = startProxyRoute(bus, systemd, settings, () => applies.expectation().iface);
  await applies.start();
  mark('applies');
  const authorizer = new Authorizer(bus);
  const proxy = await proxyStarted;
  mark('proxy');
  const profiles = new BluezProfiles({ bus, fds, enabled: settings.btProfiles });
  const daemon = new Daemon({
    version,
    monitor,
    restarter,
    authorizer,
    profiles: profiles.claims,
    applier: applies,
    extraStatus: () => ({ profiles: profiles.status(), proxy: proxy.summary() }),
    extraStatusRevision: () => profiles.statusRevision + proxy.revision,
    proxy: { route: proxy, apSubnet: () => subnetOf(applies.expectation().apIp) },
  });
  const face = new System1Export(bus, daemon, version, settings.interfaceXml, authorizer);
  face.export();
  profiles.export();
  daemon.on('healthChanged', (h) => face.healthChanged(h));
  daemon.on('proxyChanged', (s: { state: string }) => face.proxyChanged(s.state));

  mark('export');
  await monitor.start();
  mark('health');

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
  mark('socket');

  if (!(await requestName(bus))) {
    for (const part of [monitor, profiles]) part.stop();
    await socket?.close().catch(() => undefined);
    bus.close();
    process.exitCode = 1;
    return;
  }
  mark('name');
  // Only the owner of the name registers with BlueZ (a second instance must not). In the background and
  // retried forever: BlueZ being absent never delays readiness.
  profiles.start();
  // The first check (one interval after ready) also gives back what start-up left on the heap.
  const trimmer = new HeapTrimmer({ intervalMs: settings.heapTrimMs, slackBytes: HEAP_SLACK_BYTES });
  trimmer.start();
  marks.main = Math.round((marks.main ?? 0) * 10) / 10;
  log.info(`openauto-system ${version} ready`, {
    version,
    health: JSON.stringify(daemon.getHealth()),
    startup_ms: JSON.stringify(marks),
    code_cache: codeCacheUsed(),
  });
  saveCodeCacheLater();

  stopOnSignals(bus, [monitor, profiles, proxy, trimmer, watchdog], socket);
}

function main(): void {
  const settings = readSettings(process.argv.slice(2), process.env);
  if (settings) {
    run(settings).catch((err: unknown) => {
      log.err('start-up failed', { error: errText(err), error_code: 'StartupFailed' });
      process.exit(1);
    });
  }
}

// Inside a start-up snapshot's build (scripts/snapshot.mjs) only the modules are loaded; the daemon starts when
// the snapshot is, with that start's environment (read again: the snapshot holds the build's).
// Told by node's own argument rather than v8.startupSnapshot.isBuildingSnapshot(): node:v8 is not loaded at every
// start for it (~0.8 ms under the unit's flags).
if (process.execArgv.includes('--build-snapshot')) {
  const { startupSnapshot } = createRequire(import.meta.url)('node:v8') as typeof import('node:v8');
  // A failed warm-up only leaves more to compile at each start.
  warmUp().catch(() => undefined);
  startupSnapshot.setDeserializeMainFunction(() => {
    setDebug(process.env.OPENAUTO_DEBUG === '1');
    main();
  });
} else {
  main();
}
