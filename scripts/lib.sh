# Shared by scripts/test-all.sh and scripts/bench.sh (sourced, not run).

declare -a RESULTS=()
FAILED=0

# stage NAME LIMIT_SECONDS CMD...: runs CMD with a time limit (a backstop against a hung runner), records
# "PASS/FAIL NAME (… s)" in RESULTS and sets FAILED on failure. With OUTPUT set, the output is also appended
# to that file (test-all.sh sums the runners' counts from it).
stage() {
  local name=$1 limit=$2
  shift 2
  echo
  echo "=== $name: $*"
  local t0=$SECONDS rc
  if [ -n "${OUTPUT:-}" ]; then
    timeout --kill-after=30 "$limit" "$@" 2>&1 | tee -a "$OUTPUT"
    rc=${PIPESTATUS[0]}
  else
    timeout --kill-after=30 "$limit" "$@"
    rc=$?
  fi
  [ $rc -eq 124 ] && echo "=== $name: stopped after $limit s"
  if [ $rc -eq 0 ]; then
    RESULTS+=("PASS  $name ($((SECONDS - t0)) s)")
  else
    RESULTS+=("FAIL  $name (exit $rc, $((SECONDS - t0)) s)")
    FAILED=1
  fi
  return $rc
}
