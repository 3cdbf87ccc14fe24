// packaging/files, the one list of installed files (install.sh and the Debian package read it): it names
// every file of the system integration folders, only places under /usr, and the same run-time modules as the
// bundler leaves out of the bundle. A unit, template or native module added elsewhere and forgotten here
// fails this test instead of a device.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const entries = readFileSync(join(ROOT, 'packaging', 'files'), 'utf8')
  .split('\n')
  .map((l) => l.replace(/#.*/, '').trim())
  .filter((l) => l !== '')
  .map((l) => l.split(/\s+/) as [string, string, string?, string?]);
const of = (kind: string) => entries.filter(([k]) => k === kind);

describe('packaging/files', () => {
  test('every line is a known kind with its fields', () => {
    for (const e of entries) {
      const [kind] = e;
      const want = { unit: 3, file: 4, tree: 3, link: 3, native: 2, absent: 2 }[kind];
      assert.ok(want !== undefined, `unknown kind: ${e.join(' ')}`);
      assert.equal(e.length, want, `wrong number of fields: ${e.join(' ')}`);
      if (kind === 'file') assert.match(e[3] ?? '', /^0[0-7]{3}$/, `mode: ${e.join(' ')}`);
    }
  });

  test('installs under /usr only, from sources that exist', () => {
    for (const [kind, src, dest] of [...of('unit'), ...of('file'), ...of('tree'), ...of('link')]) {
      assert.match(dest ?? '', /^\/usr\/[^\s]+$/, `${kind} ${src} ${dest}`);
      // dist/ is build output: present only after npm run build.
      if (kind !== 'link' && !src.startsWith('dist/'))
        assert.ok(existsSync(join(ROOT, src)), `${src} is missing`);
    }
    for (const [, src, dest] of of('unit')) assert.match(dest ?? '', /^\/usr\/lib\/systemd\/system\//, src);
  });

  test('names every unit, D-Bus, polkit and template file of the repository', () => {
    const listed = new Set([...of('unit'), ...of('file'), ...of('tree')].map(([, src]) => src));
    for (const dir of ['systemd', 'dbus', 'polkit']) {
      for (const f of readdirSync(join(ROOT, dir))) {
        assert.ok(listed.has(`${dir}/${f}`), `${dir}/${f} is not in packaging/files`);
      }
    }
    assert.ok(listed.has('templates'), 'templates/ is not in packaging/files');
  });

  test('declares exactly the modules scripts/bundle.mjs leaves out of the bundle', () => {
    const bundle = readFileSync(join(ROOT, 'scripts', 'bundle.mjs'), 'utf8');
    const m = /external:\s*\[([^\]]*)\]/.exec(bundle);
    assert.ok(m, 'no external list in scripts/bundle.mjs');
    const external = [...(m[1] ?? '').matchAll(/'([^']+)'/g)].map((x) => x[1]).sort();
    const declared = [...of('native'), ...of('absent')].map(([, name]) => name).sort();
    assert.deepEqual(declared, external);
    assert.ok(of('native').length > 0);
  });
});
