#!/bin/bash
# `npm run bench`: build, then every benchmark in turn (each prints a small table and writes
# bench/results/NAME.json), then a summary of the figures against the targets (bench/summary.ts).
#
#   scripts/bench.sh [NAME...]       NAME: startup memory latency detection idle socket soak soak-capped chaos flood
#                                    versus (the Python baseline side by side: PY_BASELINE=its path)
#                                    socket-python (the socket's request path beside the baseline, host)
#                                    socket-cpu (the installed daemon's socket CPU per request beside it)
#                                    (default: all but soak-capped, the soak with V8's old space capped at
#                                    32 MB, where a leak cannot hide in the heap's slack)
#   BENCH_QUICK=1 scripts/bench.sh   shortened runs of everything (a smoke test, not figures)
#
# Must run as root (sandboxes: systemd-nspawn), except `socket`. A full run takes about an hour, mostly the
# soak (SOAK_MINUTES, default 30) and the chaos run (CHAOS_MINUTES, default 10); every benchmark's own
# settings are environment variables listed at the top of its file in bench/. The exit status is non-zero
# when a benchmark failed (the soak and the chaos run fail on a failed check).
set -uo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$SRC"
DEFAULT=(startup memory latency detection idle socket socket-python socket-cpu soak chaos flood versus)
ALL=("${DEFAULT[@]}" soak-capped)
if [ $# -gt 0 ]; then SELECTED=("$@"); else SELECTED=("${DEFAULT[@]}"); fi
for n in "${SELECTED[@]}"; do
  case " ${ALL[*]} " in *" $n "*) ;; *) echo "bench: unknown benchmark '$n' (one of: ${ALL[*]})" >&2; exit 2 ;; esac
done
QUICK=${BENCH_QUICK:-0}
export BENCH_QUICK=$QUICK

echo "=== build"
npm run --silent build || { echo "bench: build failed" >&2; exit 1; }

# shellcheck source=scripts/lib.sh
source scripts/lib.sh

soak_min=${SOAK_MINUTES:-30}
chaos_min=${CHAOS_MINUTES:-10}
if [ "$QUICK" = 1 ]; then
  soak_min=${SOAK_MINUTES:-1}
  chaos_min=${CHAOS_MINUTES:-1}
fi
socket_args=()
[ "$QUICK" = 1 ] && socket_args=(--requests 2000 --per-client 200)

for n in "${SELECTED[@]}"; do
  case $n in
    startup) stage startup 1200 node dist/bench/startup.js ;;
    memory) stage memory 2400 node dist/bench/memory.js ;;
    latency) stage latency 1200 node dist/bench/latency.js ;;
    detection) stage detection 1800 node dist/bench/detection.js ;;
    idle) stage idle 900 node dist/bench/idle.js ;;
    socket) stage socket 600 node dist/bench/socket-bench.js "${socket_args[@]}" ;;
    socket-python) stage socket-python 600 node dist/bench/socket-python.js ;;
    socket-cpu) stage socket-cpu 900 node dist/bench/socket-cpu.js ;;
    soak) stage soak $(((soak_min + 15) * 60)) node dist/bench/soak.js ;;
    soak-capped) stage soak-capped $(((soak_min + 15) * 60)) env SOAK_NODE_OPTIONS=--max-old-space-size=32 node dist/bench/soak.js ;;
    chaos) stage chaos $(((chaos_min + 15) * 60)) node dist/bench/chaos.js ;;
    flood) stage flood 600 node dist/bench/flood.js ;;
    versus) stage versus 600 node dist/bench/versus.js ;;
  esac
done

# No clean-up of containers here: other people's sandboxes may be running on the same machine. The harness
# stops a benchmark's containers when it exits or is signalled, and the next start collects the containers
# of a benchmark that was killed outright (scripts/sandbox.sh: the owner PID is gone).

echo
echo "=== figures (bench/results/*.json)"
node dist/bench/summary.js
echo
echo "=== summary"
printf '  %s\n' "${RESULTS[@]}"
exit $FAILED
