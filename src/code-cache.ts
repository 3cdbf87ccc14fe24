// The daemon's own V8 code cache, which scripts/daemon-loader.cjs compiles the bundle with when there is one.
// A few seconds after ready V8 holds the bytecode of everything a start runs (the bus connection, systemd, the
// health checks, the exports, the socket), where the build's cache (scripts/code-cache.mjs) holds only what
// loading the bundle and the warm-up compile: ~20 ms less CPU per start. Written into the unit's
// CacheDirectory= once, by a start that compiled with no such cache (the first after an install or upgrade) or
// with one V8 refused (node upgraded); every later start takes it.
import { readdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Script } from 'node:vm';
import { writeAtomic } from './config/atomic.js';
import { errText, log } from './log/journal.js';

/** What the loader left for us: the compiled bundle, which cache it took, and where our own one goes. */
interface LoaderInfo {
  script: Script;
  from: string;
  own?: string;
}

const KEY = Symbol.for('openauto-system.code-cache');
/** Our caches and their temporary files, of any build of the bundle. */
const OURS = /^\.?openauto-system-main\./;

function loaderInfo(): LoaderInfo | undefined {
  return (globalThis as Record<symbol, unknown>)[KEY] as LoaderInfo | undefined;
}

/** The cache this start compiled its bundle with: own, package or none, "(rejected)" when V8 refused it;
 * undefined when the daemon started from the start-up snapshot (no bundle compiled). */
export function codeCacheUsed(): string | undefined {
  return loaderInfo()?.from;
}

/** Saves this start's code cache after `delayMs`, unless it already compiled with its own one. */
export function saveCodeCacheLater(delayMs = 5000): void {
  const info = loaderInfo();
  if (!info?.own || info.from === 'own') return;
  const { script, own } = info;
  setTimeout(() => void save(script, own), delayMs).unref();
}

async function save(script: Script, file: string): Promise<void> {
  try {
    const data = script.createCachedData();
    await writeAtomic(file, data, { mode: 0o600 });
    // A cache of an earlier build of the bundle is never taken again.
    const dir = path.dirname(file);
    for (const name of await readdir(dir)) {
      if (OURS.test(name) && name !== path.basename(file))
        await unlink(path.join(dir, name)).catch(() => undefined);
    }
    log.info('code cache saved for the next start', { file, bytes: data.length });
  } catch (err) {
    log.warning("saving the code cache failed; the next start compiles with the package's", {
      file,
      error: errText(err),
      error_code: 'CodeCacheFailed',
    });
  }
}
