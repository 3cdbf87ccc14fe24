// What the benches that compare with the Python baseline share: where py-baseline.py is, and the node flags
// the shipped unit runs the daemon with. No sandbox imports: bench/socket-python.ts runs on the host.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository (this file runs from dist/bench/). */
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** py-baseline.py: PY_BASELINE, or the shared folder next to the checkout (or next to its parent). */
export function baselinePath(): string {
  const candidates = process.env.PY_BASELINE
    ? [process.env.PY_BASELINE]
    : [
        join(REPO, '..', 'shared', 'bench', 'py-baseline.py'),
        join(REPO, '..', '..', 'shared', 'bench', 'py-baseline.py'),
      ];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`no Python baseline at ${candidates.join(' or ')}: set PY_BASELINE`);
  return resolve(found);
}

/** The node flags of the unit's ExecStart (what the daemon runs with; not its $OPENAUTO_SNAPSHOT word). */
export function unitNodeFlags(): string[] {
  const unit = readFileSync(join(REPO, 'systemd', 'openauto-system.service'), 'utf8');
  const exec = /^ExecStart=\S*node\s+(.*)$/m.exec(unit)?.[1] ?? '';
  return exec.split(/\s+/).filter((a) => a.startsWith('--'));
}
