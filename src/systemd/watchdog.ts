// systemd's watchdog (WatchdogSec= in the unit): WATCHDOG=1 sent to $NOTIFY_SOCKET from a timer on the event
// loop, so a blocked loop or a deadlock stops the pings and systemd kills and restarts us. Node's core cannot
// send a Unix datagram; sd-notify wraps libsystemd's sd_notify (a native module, like systemd-journald).
import { createRequire } from 'node:module';
import { errText, log } from '../log/journal.js';

interface SdNotify {
  watchdog(): void;
}

export interface Watchdog {
  intervalMs: number;
  stop(): void;
}

/**
 * How often to ping for systemd's WATCHDOG_USEC: at half of it, what sd_watchdog_enabled(3) recommends. Every
 * ping is a wake-up of an otherwise idle daemon (README, "Performance": idle CPU); half still leaves a whole
 * interval for a ping that a busy moment delays.
 */
export function watchdogPingMs(usec: number): number {
  return Math.max(50, Math.floor(usec / 1000 / 2));
}

/** Pings systemd's watchdog twice per WatchdogSec, when the unit asks for it (WATCHDOG_USEC for our PID);
 * undefined otherwise. */
export function startWatchdog(env: NodeJS.ProcessEnv = process.env): Watchdog | undefined {
  const usec = Number(env.WATCHDOG_USEC ?? 0);
  if (!Number.isFinite(usec) || usec <= 0) return undefined;
  if (env.WATCHDOG_PID !== undefined && Number(env.WATCHDOG_PID) !== process.pid) return undefined;
  let notify: SdNotify;
  try {
    notify = createRequire(import.meta.url)('sd-notify') as SdNotify;
  } catch (err) {
    log.err('WatchdogSec= is set but sd-notify cannot be loaded: systemd will restart us', {
      DETAIL: errText(err),
    });
    return undefined;
  }
  const intervalMs = watchdogPingMs(usec);
  notify.watchdog();
  const timer = setInterval(() => notify.watchdog(), intervalMs);
  // The pings alone must not keep the process alive.
  timer.unref();
  log.info(`watchdog: pinging systemd every ${intervalMs} ms`, { WATCHDOG_MS: Math.floor(usec / 1000) });
  return { intervalMs, stop: () => clearInterval(timer) };
}
