// Bundles the two programs into single files, dist/bin/openauto-system.js and dist/bin/openautoctl.js, after
// `tsc` has compiled src/ to dist/src/ (`npm run build` runs both).
//
// Why: node 20 loads ~250 ES modules one by one (zod alone is ~100): a module record, a URL, the full source
// text and a compiled top level for each. One file with unused exports dropped (zod's 40 locales, most of its
// JSON-schema code) started the daemon in 225 instead of 325 ms (median) and took importing the dependencies
// from 62 to 50 MB of RSS (the running daemon gained ~2 MB); bench/startup.ts and bench/memory.ts measure the
// shipped bundle. Identifiers are kept (no name mangling)
// so the stack traces in the journal stay readable.
//
// Left out of the bundle: native addons (systemd-journald, usocket, sockopt, sd-notify, openauto-notify,
// openauto-memory, openauto-transport: loaded from
// node_modules at run time) and x11 (an optional require of dbus-next's that is never taken on the system bus).
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { build } from 'esbuild';

// dbus-next's modules that start-up never uses, each replaced by a stand-in loading the real one at first use
// (scripts/bundle-shims/: why each): nothing evaluated or compiled before ready that ready does not need.
const LAZY = { crypto: 'crypto.cjs', assert: 'assert.cjs', xml2js: 'xml2js.cjs' };
const lazyForDbusNext = {
  name: 'lazy-for-dbus-next',
  setup(b) {
    b.onResolve({ filter: /^(node:)?(crypto|assert|xml2js)$/ }, (args) => {
      if (!/[\\/]node_modules[\\/]dbus-next[\\/]/.test(args.importer)) return undefined;
      return { path: resolvePath('scripts/bundle-shims', LAZY[args.path.replace(/^node:/, '')]) };
    });
  },
};

const common = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  external: [
    'systemd-journald',
    'usocket',
    'sockopt',
    'sd-notify',
    'openauto-notify',
    'openauto-memory',
    'openauto-transport',
    'x11',
  ],
  logLevel: 'warning',
  metafile: true,
  plugins: [lazyForDbusNext],
};
// Both programs are CommonJS scripts (dist/bin/package.json, written below, says so for dist/bin): an ES module
// entry makes node load and compile its ES module loader at every start (in the interpreter, under the unit's
// flags), ~6 ms of CPU. import.meta.url is read when used, from where the file runs.
const metaUrl = {
  define: { 'import.meta.url': '__oas_meta.url' },
  banner: {
    js: "var __oas_meta = { get url() { return require('node:url').pathToFileURL(globalThis.__oasBundleFile ?? __filename).href; } };",
  },
};
const ctl = await build({
  ...common,
  ...metaUrl,
  entryPoints: { openautoctl: 'dist/src/ctl/openautoctl.js' },
  outdir: 'dist/bin',
  format: 'cjs',
});
// The daemon: a CommonJS script body that dist/bin/openauto-system.js compiles with V8's code cache
// (scripts/code-cache.mjs). vm.Script takes a cache, an ES module cannot on node 20.
const daemon = await build({
  ...common,
  entryPoints: { 'openauto-system-main': 'dist/src/main.js' },
  outdir: 'dist/bin',
  outExtension: { '.js': '.cjs' },
  format: 'cjs',
  // import.meta.url read when used: in a start-up snapshot (scripts/snapshot.mjs) the bundle was loaded at
  // build time, elsewhere; the snapshot's loader sets __oasBundleFile to where it runs from.
  ...metaUrl,
});
const main = 'dist/bin/openauto-system-main.cjs';
// The file is the whole script the loader compiles: the bundle wrapped in a function as node's CommonJS loader
// does (so it sees require, module and __filename), written here rather than by the loader so the loader
// can map the file as it is (native/memory's mapSource: the source stays file-backed, not on V8's heap).
// A shebang line would be a syntax error inside the wrapper.
writeFileSync(
  main,
  `(function (exports, require, module, __filename, __dirname) {${readFileSync(main, 'utf8').replace(/^#!.*/, '')}\n})`,
);
copyFileSync('scripts/daemon-loader.cjs', 'dist/bin/openauto-system.js');
writeFileSync('dist/bin/package.json', '{ "type": "commonjs" }\n');
chmodSync('dist/bin/openauto-system.js', 0o755);
// The code cache, made by the node that runs the build with the unit's flags (scripts/code-cache.mjs). A node
// that cannot make it (one refusing a flag) gets an empty cache, which V8 rejects: start-up as without one.
const cache = spawnSync(process.execPath, ['scripts/code-cache.mjs'], { stdio: 'inherit' });
if (cache.status !== 0) {
  console.warn('bundle: WARNING: no code cache made; the daemon compiles its bundle at every start');
  writeFileSync('dist/bin/openauto-system-main.cache', '');
}
// The start-up snapshot, made the same way (scripts/snapshot.mjs); none (and a warning) when this node cannot.
const snapshot = spawnSync(process.execPath, ['scripts/snapshot.mjs'], { stdio: 'inherit' });
if (snapshot.status !== 0)
  console.warn('bundle: WARNING: no start-up snapshot made; the daemon starts without it');
// The files each bundle holds: scripts/deb.sh names the bundled packages and their licences from it.
const inputs = new Set([...Object.keys(ctl.metafile.inputs), ...Object.keys(daemon.metafile.inputs)]);
writeFileSync('dist/bundle-inputs.json', JSON.stringify([...inputs].sort(), null, 1));
