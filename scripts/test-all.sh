#!/bin/bash
# `npm test`: build, lint, unit tests, then the sandbox tests (real systemd in containers; need root).
# Runs every stage even after a failure; the exit status is non-zero if any stage failed.
set -uo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$SRC"
export NODE_OPTIONS=${NODE_OPTIONS:-}
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# Debian packages and node_modules, installed when missing (a fresh Debian 12 machine).
bash scripts/deps.sh || { echo "=== deps failed" >&2; exit 1; }

# Everything the stages print is kept too, to sum the runners' own counts into one closing line.
OUTPUT=$(mktemp)
trap 'rm -f "$OUTPUT"' EXIT

stage build 600 npm run --silent build
stage lint 300 npx biome check .

shopt -s globstar nullglob
unit=(dist/test/unit/**/*.test.js)
if [ ${#unit[@]} -gt 0 ]; then
  stage unit 900 node --test --test-timeout=120000 --test-reporter=spec "${unit[@]}"
else
  RESULTS+=("SKIP  unit (no tests)")
fi

sandbox=(dist/test/sandbox/*.test.js)
if [ ${#sandbox[@]} -eq 0 ]; then
  RESULTS+=("SKIP  sandbox (no tests)")
elif [ "$(id -u)" != 0 ]; then
  RESULTS+=("SKIP  sandbox (needs root)")
else
  stage sandbox 4500 node --test --test-concurrency=1 --test-timeout=900000 --test-reporter=spec "${sandbox[@]}"
  # The harness stops its containers even when a test file fails or is signalled; a test process that was
  # SIGKILLed leaves its containers to this (others' running containers are left alone).
  bash scripts/sandbox.sh gc
fi

echo
echo "=== summary"
printf '  %s\n' "${RESULTS[@]}"
# node:test's spec reporter ends each run with "ℹ pass N" and "ℹ fail N".
passed=$(grep -aE '^\S+ pass [0-9]+$' "$OUTPUT" | awk '{ n += $3 } END { print n + 0 }')
failed=$(grep -aE '^\S+ fail [0-9]+$' "$OUTPUT" | awk '{ n += $3 } END { print n + 0 }')
# A stage that failed without a failing test (build, lint, a crashed runner) still counts as a failure.
if [ "$FAILED" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "tests: $passed passed, $failed failed"
exit $FAILED
