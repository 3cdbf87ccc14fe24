// usocket (dbus-next's transport when unix fds are negotiated) logs through the `debug` package, which the
// daemon never turns on (DEBUG=usocket): loading it costs ~4 ms of every start under the unit's flags (it loads
// tty, util's inspect and tries an optional module). Before dbus-next first loads usocket, node's module cache
// gets a silent stand-in for usocket's copy of `debug`, as node documents for require.cache. When usocket or
// debug is not where node would find them, nothing is put there and usocket loads its own.
import { createRequire } from 'node:module';
import path from 'node:path';

type DebugFn = ((...args: unknown[]) => void) & { enabled: boolean; namespace: string };

/** `debug(namespace)`: a logger that is never enabled. */
function silentDebug(namespace: string): DebugFn {
  return Object.assign(() => undefined, { enabled: false, namespace });
}

let done = false;

export function silenceUsocketDebug(): void {
  if (done) return;
  done = true;
  try {
    const require = createRequire(import.meta.url);
    const usocket = require.resolve('usocket');
    const debug = createRequire(usocket).resolve('debug');
    if (path.isAbsolute(debug) && !require.cache[debug]) {
      require.cache[debug] = {
        id: debug,
        filename: debug,
        loaded: true,
        exports: Object.assign(silentDebug, {
          enable: () => undefined,
          disable: () => '',
          enabled: () => false,
        }),
      } as unknown as NodeJS.Module;
    }
  } catch {
    // usocket loads its own
  }
}
