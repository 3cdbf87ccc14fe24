// Makes dist/bin/openauto-system.blob, the daemon's V8 start-up snapshot: the heap after loading the bundle
// (openauto-system-main.cjs) with every module evaluated and node's own modules it uses already compiled.
// The unit runs `node FLAGS --snapshot-blob=…/openauto-system.blob …/openauto-system.js`: node deserializes that
// heap instead of compiling and running 700 KB of JavaScript in its interpreter, then calls the daemon's main
// (src/main.ts registers it with v8.startupSnapshot). V8 takes a snapshot only from the same node binary and
// the same V8 flags, so it is built here under the flags of the unit's ExecStart; a node that refuses it exits
// with status 14 before running anything, and the unit then starts without it (see the unit).
//
// Node 20 snapshots one script and only node's own modules: the bundle is wrapped in a script whose require
// hands out node's modules, and the native addons (loaded from node_modules at run time) as stand-ins that load
// the real addon at first use, after the snapshot is deserialized, from where the daemon is installed.
//
//   node scripts/snapshot.mjs      (after scripts/bundle.mjs; with the node the unit runs)
import { spawnSync } from 'node:child_process';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(root, 'dist', 'bin');
const bundle = join(bin, 'openauto-system-main.cjs');
const blob = join(bin, 'openauto-system.blob');
const entry = join(bin, '.snapshot-entry.cjs');
// The native addons left out of the bundle: the `native` lines of packaging/files (which a unit test holds
// equal to scripts/bundle.mjs's `external`, but x11, which is never loaded).
const NATIVES = readFileSync(join(root, 'packaging', 'files'), 'utf8')
  .split('\n')
  .map((l) => /^native\s+(\S+)/.exec(l)?.[1])
  .filter((n) => n !== undefined);

const prelude = `'use strict';
const { startupSnapshot } = require('node:v8');
const Module = require('node:module');
const { dirname, join } = require('node:path');
const natives = new Set(${JSON.stringify(NATIVES)});
let restored = false;
startupSnapshot.addDeserializeCallback(() => {
  restored = true;
  // The bundle's import.meta.url (scripts/bundle.mjs): next to the entry point this start runs.
  if (process.argv[1]) globalThis.__oasBundleFile = join(dirname(process.argv[1]), 'openauto-system-main.cjs');
});
const load = (name) => Module.createRequire(globalThis.__oasBundleFile ?? ${JSON.stringify(bundle)})(name);
// An addon asked for while the snapshot is built (a module's top level): a stand-in loading it at first use.
function later(name) {
  let real;
  const get = () => (real ??= load(name));
  return new Proxy(function () {}, {
    get: (_, key) => (...args) => get()[key](...args),
    apply: (_, self, args) => get()(...args),
    construct: (_, args) => new (get())(...args),
  });
}
function bundleRequire(name) {
  if (name === 'node:module' || name === 'module') return moduleShim;
  if (natives.has(name)) return restored ? load(name) : later(name);
  return require(name);
}
const moduleShim = Object.assign(Object.create(Module), { createRequire: () => bundleRequire });
`;

const unit = readFileSync(join(root, 'systemd', 'openauto-system.service'), 'utf8');
const exec = /^ExecStart=\S+ (.*) \S+$/m.exec(unit);
if (!exec?.[1]) throw new Error('no ExecStart= line in systemd/openauto-system.service');
const flags = exec[1].split(' ').filter((f) => f.startsWith('--'));
writeFileSync(
  entry,
  // The bundle file is already a function expression (scripts/bundle.mjs): called here.
  `${prelude}${readFileSync(bundle, 'utf8')}({}, bundleRequire, { exports: {} }, ${JSON.stringify(bundle)}, ${JSON.stringify(bin)});\n`,
);
try {
  const r = spawnSync(
    process.argv[2] ?? process.execPath,
    [...flags, '--no-warnings', '--snapshot-blob', `${blob}.tmp`, '--build-snapshot', entry],
    { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' },
  );
  if (r.status !== 0) {
    process.stderr.write(r.stderr);
    process.exit(1);
  }
  renameSync(`${blob}.tmp`, blob);
} finally {
  rmSync(entry, { force: true });
  rmSync(`${blob}.tmp`, { force: true });
}
