#!/usr/bin/env node
// openauto-system's entry point (installed as dist/bin/openauto-system.js): compiles the daemon's bundle,
// openauto-system-main.cjs, with the V8 code cache next to it (scripts/code-cache.mjs) and runs it. With the
// cache V8 deserializes the bytecode of the bundle's start-up code instead of parsing and compiling 700 KB
// in its interpreter at every start. A cache made by another node or with other V8 flags is rejected by V8
// itself (it checks the version, the flags and the source), and the bundle is then compiled as usual.
// The bundle's text is mapped from its file (native/memory's mapSource) rather than read: V8 keeps a
// script's source for the whole run (functions are compiled lazily from it), and mapped it is 700 KB of
// file-backed pages instead of 700 KB of the daemon's anonymous memory. Read as before when the addon is
// missing or the file is not plain ASCII.
//
// A CommonJS script (dist/bin/package.json says so), not an ES module: an ES module entry makes node load and
// compile its ES module loader at every start, and importing node:fs from one evaluates every lazy export of
// fs (its streams among them). With the unit's flags node compiles its own modules in the interpreter too, so
// that was ~6 ms of CPU per start (scripts/bundle.mjs).
'use strict';
const { readFileSync, statSync } = require('node:fs');
const { join } = require('node:path');
const { Script } = require('node:vm');

const file = join(__dirname, 'openauto-system-main.cjs');
const cacheFile = join(__dirname, 'openauto-system-main.cache');
// The daemon's own cache (src/code-cache.ts), in the unit's CacheDirectory=: the build's cache holds what
// loading the bundle and the warm-up compile, this one also what a real start compiled (the bus connection,
// systemd, the health checks, the exports, the socket), written after an earlier start. Named after the bundle
// file's size and modification time, so a cache of another build of the bundle is never taken for this one
// (V8 itself checks only the source's length, its own version and flags).
let own;
const dirs = process.env.CACHE_DIRECTORY;
if (dirs) {
  try {
    const st = statSync(file, { bigint: true });
    own = join(dirs.split(':')[0], `openauto-system-main.${st.size}-${st.mtimeNs}.cache`);
  } catch {
    // the bundle's own read below says what is wrong with it
  }
}
let cachedData;
let from = 'none';
for (const [name, path] of [
  ['own', own],
  ['package', cacheFile],
]) {
  if (!path) continue;
  try {
    cachedData = readFileSync(path);
    from = name;
    break;
  } catch {
    // none there: the next, or compiled as usual
  }
}
let source;
try {
  source = require('openauto-memory').mapSource(file);
} catch {
  source = readFileSync(file, 'utf8');
}
// The file is the bundle wrapped as node's CommonJS loader would (scripts/bundle.mjs): a function taking
// exports, require, module, __filename and __dirname.
const script = new Script(source, { filename: file, ...(cachedData ? { cachedData } : {}) });
// V8 has what it needs from the cache: do not keep half a megabyte alive for the daemon's lifetime.
cachedData = undefined;
// For the daemon (src/code-cache.ts): which cache this start compiled with, and where to keep its own.
globalThis[Symbol.for('openauto-system.code-cache')] = {
  script,
  from: from !== 'none' && script.cachedDataRejected ? `${from} (rejected)` : from,
  own,
};
const bundle = { exports: {} };
script.runInThisContext()(bundle.exports, require, bundle, file, __dirname);
// For scripts/code-cache.mjs (it warms up through the bundle's exports, src/main.ts) and the tests.
exports.script = script;
exports.bundle = bundle.exports;
