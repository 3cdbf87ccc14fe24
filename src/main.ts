#!/usr/bin/env node
// openauto-system: the daemon's entry point. Start-up order is the contract's readiness order: connect,
// export objects, run one full health check, open the socket, and only then claim the bus name (what
// Type=dbus and D-Bus activation wait for).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import dbus from 'dbus-next';
import { Bus } from './bus/connection.js';
import { Authorizer } from './bus/polkit.js';
import { BUS_NAME, System1Export } from './bus/system1.js';
import { Daemon } from './daemon.js';
import { HealthMonitor } from './health/monitor.js';
import { errText, log } from './log/journal.js';
import { PACKAGE_ROOT, parseSettings, type Settings, UsageError, usage } from './settings.js';
import { SystemdManager } from './systemd/manager.js';
import { UnitRestarter } from './systemd/restarts.js';

function packageVersion(): string {
  try {
    return String((JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version);
  } catch {
    return 'unknown';
  }
}

async function run(settings: Settings): Promise<void> {
  const version = packageVersion();
  const bus = await Bus.connect();
  const systemd = new SystemdManager(bus);
  await systemd.start();
  const restarter = new UnitRestarter(systemd, settings.restartTimeoutMs);
  const monitor = new HealthMonitor({
    bus,
    systemd,
    restarter,
    settings,
    expectation: () => ({ iface: 'wlan0', apIp: '10.0.0.1', poolOffset: 10, poolSize: 40 }),
  });
  const daemon = new Daemon({ version, monitor, restarter, authorizer: new Authorizer(bus) });
  const face = new System1Export(bus, daemon, version, settings.interfaceXml);
  face.export();
  daemon.on('healthChanged', (h) => face.healthChanged(h));

  await monitor.start();

  const reply = await bus.raw.requestName(BUS_NAME, dbus.NameFlag.DO_NOT_QUEUE);
  if (reply !== dbus.RequestNameReply.PRIMARY_OWNER && reply !== dbus.RequestNameReply.ALREADY_OWNER) {
    log.err(`${BUS_NAME} is owned by another process`, { error_code: 'NameTaken' });
    monitor.stop();
    bus.close();
    process.exitCode = 1;
    return;
  }
  log.info(`openauto-system ${version} ready`, { version, health: JSON.stringify(daemon.getHealth()) });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    // Exit within a second whatever happens below.
    setTimeout(() => process.exit(0), 900).unref();
    log.info(`stopping on ${signal}`, { signal });
    monitor.stop();
    try {
      await bus.raw.releaseName(BUS_NAME);
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
