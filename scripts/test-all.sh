#!/bin/bash
# `npm test`: build, lint, unit tests, then the sandbox tests (real systemd in containers; need root).
# Runs every stage even after a failure; the exit status is non-zero if any stage failed.
set -uo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$SRC"
export NODE_OPTIONS=${NODE_OPTIONS:-}
declare -a RESULTS=()
FAILED=0

stage() { # stage NAME LIMIT_SECONDS CMD...   (the limit is a backstop against a hung runner)
  local name=$1 limit=$2
  shift 2
  echo
  echo "=== $name: $*"
  local t0=$SECONDS
  timeout --kill-after=30 "$limit" "$@"
  local rc=$?
  [ $rc -eq 124 ] && echo "=== $name: stopped after $limit s"
  if [ $rc -eq 0 ]; then
    RESULTS+=("PASS  $name ($((SECONDS - t0)) s)")
  else
    RESULTS+=("FAIL  $name (exit $rc, $((SECONDS - t0)) s)")
    FAILED=1
  fi
  return $rc
}

# Debian packages and node_modules, installed when missing (a fresh Debian 12 machine).
bash scripts/deps.sh || { echo "=== deps failed" >&2; exit 1; }

# The runners' own counts, summed into one closing line.
COUNTS=$(mktemp)
trap 'rm -f "$COUNTS"' EXIT
count() { # count CMD...: runs a node:test command, copying its output and keeping its pass/fail counts
  "$@" 2>&1 | tee >(grep -E '^\S+ (pass|fail) [0-9]+$' >>"$COUNTS")
  return "${PIPESTATUS[0]}"
}

stage build 600 npx tsc -p tsconfig.json
stage lint 300 npx biome check .

shopt -s globstar nullglob
unit=(dist/test/unit/**/*.test.js)
if [ ${#unit[@]} -gt 0 ]; then
  stage unit 900 count node --test --test-timeout=120000 --test-reporter=spec "${unit[@]}"
else
  RESULTS+=("SKIP  unit (no tests)")
fi

sandbox=(dist/test/sandbox/*.test.js)
if [ ${#sandbox[@]} -eq 0 ]; then
  RESULTS+=("SKIP  sandbox (no tests)")
elif [ "$(id -u)" != 0 ]; then
  RESULTS+=("SKIP  sandbox (needs root)")
else
  stage sandbox 4500 count node --test --test-concurrency=1 --test-timeout=900000 --test-reporter=spec "${sandbox[@]}"
  # The harness stops its containers even when a test file fails or is signalled; a test process that was
  # SIGKILLed leaves its containers to this (others' running containers are left alone).
  bash scripts/sandbox.sh gc
fi

echo
echo "=== summary"
printf '  %s\n' "${RESULTS[@]}"
sleep 0.2 # let tee's grep finish writing
passed=$(awk '$2 == "pass" { n += $3 } END { print n + 0 }' "$COUNTS")
failed=$(awk '$2 == "fail" { n += $3 } END { print n + 0 }' "$COUNTS")
# A stage that failed without a failing test (build, lint, a crashed runner) still counts as a failure.
if [ "$FAILED" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "tests: $passed passed, $failed failed"
exit $FAILED
