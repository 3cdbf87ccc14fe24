// Copies the node modules the bundle loads at run time (the `native` lines of packaging/files) into
// OUT/node_modules, with exactly the files that loading them reads: their JavaScript, the compiled .node
// addon, the package.json of each package involved (bindings looks for it) and its licence. Build-time
// dependencies (nan, node-gyp), sources, tests and documentation stay behind.
//
//   node scripts/runtime-modules.mjs OUT NAME...      (run from the repository root, after npm ci)
//
// Why by loading rather than by package.json: usocket lists node-gyp and nan as dependencies, which a
// production install would carry (npm's own 100 packages); what require() really reads is the exact set.
import { copyFileSync, existsSync, mkdirSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, sep } from 'node:path';

const [out, ...names] = process.argv.slice(2);
if (!out || names.length === 0) {
  console.error('usage: node scripts/runtime-modules.mjs OUT NAME...');
  process.exit(2);
}
const root = process.cwd();
const nodeModules = join(root, 'node_modules');
const require = createRequire(join(root, 'package.json'));
for (const name of names) require(name);

/** The package directory holding `file`: the closest directory with a package.json below node_modules. */
function packageDir(file) {
  let d = dirname(file);
  while (d.startsWith(nodeModules + sep)) {
    if (existsSync(join(d, 'package.json'))) return d;
    d = dirname(d);
  }
  throw new Error(`${file} is in no package`);
}

// A package of this repository (a `file:` dependency such as native/notify) is a symbolic link in
// node_modules; require.cache names its real files: give them back their node_modules path.
const linked = names
  .map((n) => [realpathSync(join(nodeModules, n)), join(nodeModules, n)])
  .filter(([real, link]) => real !== link);
function underNodeModules(f) {
  for (const [real, link] of linked) if (f.startsWith(real + sep)) return link + f.slice(real.length);
  return f;
}

const files = new Set();
const packages = new Set();
for (const cached of Object.keys(require.cache)) {
  const f = underNodeModules(cached);
  if (!f.startsWith(nodeModules + sep)) continue;
  files.add(f);
  packages.add(packageDir(f));
}
for (const p of packages) {
  files.add(join(p, 'package.json'));
  for (const e of readdirSync(p)) if (/^(licen[cs]e|copying)/i.test(e)) files.add(join(p, e));
}
for (const f of [...files].sort()) {
  const dest = join(out, 'node_modules', relative(nodeModules, f));
  mkdirSync(dirname(dest), { recursive: true, mode: 0o755 });
  copyFileSync(f, dest);
  if (!statSync(dest).isFile()) throw new Error(`${dest}: not a file`);
}
console.log(`${packages.size} packages, ${files.size} files`);
