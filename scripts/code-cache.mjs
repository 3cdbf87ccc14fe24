// Makes dist/bin/openauto-system-main.cache, the V8 code cache the daemon's entry point
// (scripts/daemon-loader.cjs) compiles its bundle with. V8 accepts a cache only from the same node and the
// same V8 flags, so the bundle is run here under the flags of the unit's ExecStart: as `--help`, which
// evaluates every module (what each start compiles first) and prints the usage. Run by scripts/bundle.mjs at
// build only: another node rejects the cache, and the bundle is then compiled as usual. (Since the start-up
// snapshot, scripts/snapshot.mjs, the cache serves the starts without it.)
//
//   node scripts/code-cache.mjs [NODE]      (NODE: the node the unit runs; default this one)
import { spawnSync } from 'node:child_process';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const loader = join(root, 'dist', 'bin', 'openauto-system.js');

if (process.env.OPENAUTO_CODE_CACHE_CHILD === '1') {
  // In the child, with the unit's flags: compile and run without a cache, then save what was compiled:
  // every module's top level (run by `--help`) and what start-up's file work compiles (src/warmup.ts: a
  // sample config.yaml read, validated and rendered in a temporary directory), as the start-up snapshot
  // holds it (scripts/snapshot.mjs); V8's cache keeps the bytecode of every function compiled so far.
  const cacheFile = join(root, 'dist', 'bin', 'openauto-system-main.cache');
  rmSync(cacheFile, { force: true });
  process.argv = [process.argv[0] ?? 'node', loader, '--help'];
  const { script, bundle } = await import(loader);
  await bundle.warmUp();
  writeFileSync(`${cacheFile}.tmp`, script.createCachedData());
  renameSync(`${cacheFile}.tmp`, cacheFile);
} else {
  const unit = readFileSync(join(root, 'systemd', 'openauto-system.service'), 'utf8');
  const exec = /^ExecStart=\S+ (.*) \S+$/m.exec(unit);
  if (!exec?.[1]) throw new Error('no ExecStart= line in systemd/openauto-system.service');
  const flags = exec[1].split(' ').filter((f) => f.startsWith('--'));
  const node = process.argv[2] ?? process.execPath;
  const r = spawnSync(node, [...flags, fileURLToPath(import.meta.url)], {
    env: { ...process.env, OPENAUTO_CODE_CACHE_CHILD: '1' },
    stdio: ['ignore', 'ignore', 'pipe'],
    encoding: 'utf8',
  });
  if (r.status !== 0) {
    process.stderr.write(r.stderr);
    process.exit(1);
  }
}
