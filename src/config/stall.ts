// Test knob OPENAUTO_TEST_STALL=STEP:MS (STEP: before-write, after-rename): every file-backed apply waits MS
// at that step, so a test can kill the daemon exactly there. Unset in production; a malformed value is ignored.
import { log } from '../log/journal.js';

type Step = 'before-write' | 'after-rename';

export function stallFromEnv(raw: string | undefined): { stall?: (step: Step) => Promise<void> } {
  const m = /^(before-write|after-rename):(\d{1,6})$/.exec(raw ?? '');
  if (!m) return {};
  const [, at, ms] = m;
  return {
    stall: async (step) => {
      if (step !== at) return;
      log.notice(`apply stalled at ${step} for ${ms} ms (OPENAUTO_TEST_STALL)`, { STEP: step });
      await new Promise((r) => setTimeout(r, Number(ms)));
    },
  };
}
