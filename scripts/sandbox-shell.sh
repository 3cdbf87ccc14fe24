#!/bin/bash
# `npm run sandbox`: build, boot a throw-away head unit with openauto-system installed, and open a root
# shell inside it. Leaving the shell powers it off. Needs root (see scripts/sandbox.sh).
#
#   scripts/sandbox-shell.sh [NAME]        (default name: shell)
#   SANDBOX_DAEMON_ENV="OPENAUTO_POLL_MS=1000" npm run sandbox     extra daemon environment
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
NAME=${1:-shell}
cd "$SRC"
[ "$(id -u)" = 0 ] || { echo "sandbox: run as root (sudo npm run sandbox)" >&2; exit 1; }

bash scripts/deps.sh
echo "sandbox: building..." >&2
if ! npm run --silent build >&2; then
  # tsc emits even with type errors; carry on with what it produced.
  echo "sandbox: WARNING: the build reported errors; using what was emitted" >&2
fi
[ -f dist/bin/openauto-system.js ] || echo "sandbox: WARNING: dist/bin/openauto-system.js is missing; openauto-system will not start" >&2

SANDBOX_OWNER_PID=$$ bash scripts/sandbox.sh start "$NAME" >/dev/null
trap 'bash "$SRC/scripts/sandbox.sh" stop "$NAME"' EXIT

cat <<BANNER

  openauto-system sandbox "$NAME": real systemd, dbus, networkd (wlan0 = 10.0.0.1), polkit, timedated,
  a hostapd stand-in (real hostapd, driver=none) and a BlueZ stand-in (dbusmock, hci0). Root shell.

  Try:
    busctl call org.openauto.System /org/openauto/System org.openauto.System1 GetHealth
    openautoctl health
    openautoctl status
    runuser -u appuser -- openautoctl apply wifi        (appuser is in group openauto)
    runuser -u stranger -- openautoctl restart hostapd  (denied by polkit)
    systemctl status openauto-system
    journalctl -t openauto-system -o verbose
    cat /home/appuser/.openauto/config.yaml /etc/hostapd/hostapd.conf

  Stand-in knobs: /etc/openauto-sandbox/hostapd.env (HOSTAPD_REFUSE=1, HOSTAPD_EXIT_AFTER=N, ...),
  see scripts/sandbox.sh. From another terminal: scripts/sandbox.sh exec $NAME -- CMD...
  Leave with "exit": the sandbox is powered off and nothing remains.

BANNER
set +e
bash scripts/sandbox.sh shell "$NAME"
