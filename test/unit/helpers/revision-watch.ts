// GetStatus's text is rebuilt only when a part's revision number moved (Daemon.statusJson). This checks a
// part keeps its side of that: read after every step of a test, its content never changes while its revision
// stays the same (which would leave a stale answer cached).
import assert from 'node:assert/strict';

export interface RevisionWatch {
  /** Reads the part and its revision; fails when the content changed but the revision did not. */
  (): void;
  /** How many reads saw a new revision. */
  readonly moves: number;
}

export function revisionWatch(read: () => unknown, revision: () => number, what: string): RevisionWatch {
  let last: { rev: number; text: string } | undefined;
  let moves = 0;
  const check = () => {
    const rev = revision();
    const text = JSON.stringify(read());
    if (last && last.rev === rev) {
      assert.equal(text, last.text, `${what} changed without a new revision`);
    } else if (last) {
      moves++;
    }
    last = { rev, text };
  };
  return Object.defineProperty(check, 'moves', { get: () => moves }) as RevisionWatch;
}
