// Stopping: on SIGTERM/SIGINT every part stops, the socket closes, the name is released, and the process
// exits within a second whatever hangs; losing the bus exits at once (Restart=always brings us back).
import type { Bus } from './bus/connection.js';
import { releaseName } from './bus/name.js';
import { errText, log } from './log/journal.js';

export interface Stoppable {
  stop(): void;
}

export function stopOnSignals(
  bus: Bus,
  parts: (Stoppable | undefined)[],
  socket?: { close(): Promise<void> },
): void {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(0), 900).unref();
    log.info(`stopping on ${signal}`, { signal });
    for (const part of parts) part?.stop();
    await socket?.close().catch(() => undefined);
    await releaseName(bus, 300).catch((err: unknown) =>
      log.warning('releasing the bus name failed', { error: errText(err) }),
    );
    bus.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  bus.onClose(() => {
    if (stopping) return;
    log.err('lost the system bus connection', { error_code: 'Disconnected' });
    process.exit(1);
  });
}
