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
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';

const dir = dirname(fileURLToPath(import.meta.url));
const file = join(dir, 'openauto-system-main.cjs');
export const cacheFile = join(dir, 'openauto-system-main.cache');
let cachedData;
try {
  cachedData = readFileSync(cacheFile);
} catch {
  // no cache: compiled as usual
}
const require = createRequire(file);
let source;
try {
  source = require('openauto-memory').mapSource(file);
} catch {
  source = readFileSync(file, 'utf8');
}
// The file is the bundle wrapped as node's CommonJS loader would (scripts/bundle.mjs): a function taking
// exports, require, module, __filename and __dirname.
export const script = new Script(source, { filename: file, ...(cachedData ? { cachedData } : {}) });
// V8 has what it needs from the cache: do not keep half a megabyte alive for the daemon's lifetime.
cachedData = undefined;
const module = { exports: {} };
script.runInThisContext()(module.exports, require, module, file, dir);
/** The bundle's exports (src/main.ts): scripts/code-cache.mjs warms up through them. */
export const bundle = module.exports;
