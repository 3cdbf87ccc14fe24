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
// Left out of the bundle: native addons (systemd-journald, usocket, sockopt, sd-notify, openauto-notify: loaded from
// node_modules at run time) and x11 (an optional require of dbus-next's that is never taken on the system bus).
import { writeFileSync } from 'node:fs';
import { build } from 'esbuild';

const result = await build({
  entryPoints: {
    'openauto-system': 'dist/src/main.js',
    openautoctl: 'dist/src/ctl/openautoctl.js',
  },
  outdir: 'dist/bin',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'none',
  external: ['systemd-journald', 'usocket', 'sockopt', 'sd-notify', 'openauto-notify', 'x11'],
  // CommonJS dependencies (dbus-next, xml2js) call require(); an ES module has none of its own.
  banner: {
    js: "import { createRequire as __ccr } from 'node:module'; const require = __ccr(import.meta.url);",
  },
  logLevel: 'warning',
  metafile: true,
});
// The files each bundle holds: scripts/deb.sh names the bundled packages and their licences from it.
writeFileSync('dist/bundle-inputs.json', JSON.stringify(Object.keys(result.metafile.inputs).sort(), null, 1));
