#!/bin/bash
# Install openauto-system from this source tree.
#
#   scripts/install.sh [--root DIR] [--user NAME] [--no-build] [--no-reload]
#
#   --root DIR    install into DIR instead of / (like DESTDIR for packagers; an image or a container tree)
#   --user NAME   the head-unit app's account: added to group "openauto", and its ~/.openauto/config.yaml
#                 becomes the daemon's OPENAUTO_CONFIG (default: $SUDO_USER, if any)
#   --no-build    do not run npm ci / npm run build; install dist/ as it is
#   --no-reload   installing to a running system: do not daemon-reload, reload D-Bus or restart the service
#   --node PATH   the node (>= 20) the unit runs (default: /usr/bin/node if the target has it, else the
#                 `node` on PATH when installing to /)
#   --ap-interface NAME  the Wi-Fi access point's interface (default wlan0, or what an earlier install
#                 recorded); config.yaml may repeat it but not name another
#
# Safe to run again (upgrades in place; a running daemon is restarted). Everything it adds is recorded in
# /usr/lib/openauto-system/install-manifest, which scripts/uninstall.sh reads to remove exactly that.
set -euo pipefail

usage() { sed -n '2,18s/^# \{0,1\}//p' "$0"; }
die() { echo "install.sh: $*" >&2; exit 1; }
note() { echo "install.sh: $*"; }

ROOT=/
APP_USER=${SUDO_USER:-}
BUILD=1
RELOAD=1
NODE_BIN=
AP_IFACE=
while [ $# -gt 0 ]; do
  case $1 in
    --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=$2; shift 2 ;;
    --root=*) ROOT=${1#--root=}; shift ;;
    --user) [ $# -ge 2 ] || die "--user needs a name"; APP_USER=$2; shift 2 ;;
    --user=*) APP_USER=${1#--user=}; shift ;;
    --no-build) BUILD=0; shift ;;
    --no-reload) RELOAD=0; shift ;;
    --node) [ $# -ge 2 ] || die "--node needs a path"; NODE_BIN=$2; shift 2 ;;
    --node=*) NODE_BIN=${1#--node=}; shift ;;
    --ap-interface) [ $# -ge 2 ] || die "--ap-interface needs a name"; AP_IFACE=$2; shift 2 ;;
    --ap-interface=*) AP_IFACE=${1#--ap-interface=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[ "$(id -u)" -eq 0 ] || die "must run as root"
# The daemon's own rule for interface names (src/config/schema.ts).
if [ -n "$AP_IFACE" ] && ! [[ $AP_IFACE =~ ^[A-Za-z0-9_.-]{1,15}$ && $AP_IFACE != . && $AP_IFACE != .. ]]; then
  die "--ap-interface: not a network interface name: $AP_IFACE"
fi
[ -d "$ROOT" ] || die "root directory $ROOT does not exist"
ROOT=$(cd "$ROOT" && pwd -P)
if [ "$ROOT" = / ]; then R=; else R=$ROOT; fi

# A copy installed from the Debian package belongs to dpkg (apt upgrades and removes it): do not mix the two.
pkg_state=$(dpkg-query --admindir="$R/var/lib/dpkg" -W -f='${db:Status-Status}' openauto-system 2>/dev/null) || true
case ${pkg_state:-not-installed} in
  not-installed) ;;
  *) die "the Debian package openauto-system is installed in ${ROOT} (state: $pkg_state): upgrade it with apt, or remove it first (apt purge openauto-system)" ;;
esac

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PKG=/usr/lib/openauto-system
UNIT=openauto-system.service
SOCKET_UNIT=openauto-system.socket
GROUP=openauto
MANIFEST=$PKG/install-manifest

# The unit says ExecStart=/usr/bin/node (Raspberry Pi OS with NodeSource, Debian's own nodejs). Elsewhere
# (a node from nodejs.org in /usr/local/bin, say) the installed unit gets the node found here instead.
if [ -z "$NODE_BIN" ]; then
  if [ -x "$R/usr/bin/node" ]; then
    NODE_BIN=/usr/bin/node
  elif [ -z "$R" ] && command -v node >/dev/null; then
    NODE_BIN=$(command -v node)
  else
    NODE_BIN=/usr/bin/node
    note "WARNING: no node at $ROOT/usr/bin/node: the service will not start until Node.js >= 20 is there (or use --node)"
  fi
fi
case $NODE_BIN in /*) ;; *) die "--node needs an absolute path" ;; esac
case $NODE_BIN in *[!A-Za-z0-9/._+-]*) die "--node: unsupported characters in the path" ;; esac
if [ -z "$R" ] && [ -x "$NODE_BIN" ]; then
  "$NODE_BIN" -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' ||
    die "$NODE_BIN is older than Node.js 20"
fi

# systemd is "running" only when we install to / of a booted systemd system.
LIVE=0
if [ -z "$R" ] && [ -d /run/systemd/system ]; then LIVE=1; fi

# ---- build ---------------------------------------------------------------------------------------------
cd "$SRC"
if [ "$BUILD" = 1 ]; then
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    note "npm ci"
    npm ci --no-audit --no-fund --loglevel=warn
  fi
  note "npm run build"
  npm run --silent build
fi
[ -f dist/bin/openauto-system.js ] || note "WARNING: dist/bin/openauto-system.js is missing: the service will not start until it is built"

# ---- manifest ------------------------------------------------------------------------------------------
# One entry per line: "file PATH", "link PATH", "dir PATH", "group NAME", "member GROUP USER",
# "etc-default PATH", "unit NAME". PATH is as seen on the target system. A reinstall keeps the old entries
# (so "this install created the group" survives an upgrade).
declare -A SEEN=()
ENTRIES=()
record() {
  local e="$*"
  if [ -z "${SEEN[$e]:-}" ]; then SEEN[$e]=1; ENTRIES+=("$e"); fi
}
if [ -f "$R$MANIFEST" ]; then
  while IFS= read -r line; do
    case $line in '' | '#'*) continue ;; esac
    record "$line"
  done <"$R$MANIFEST"
fi

# mkdir -p that records every directory it had to create (so uninstall can remove them again, if empty).
mkdirs() {
  local d=$1 missing=()
  while [ ! -d "$R$d" ]; do missing+=("$d"); d=$(dirname "$d"); done
  local i
  for ((i = ${#missing[@]} - 1; i >= 0; i--)); do
    mkdir -m 0755 "$R${missing[$i]}"
    record dir "${missing[$i]}"
  done
}

# ---- package payload -----------------------------------------------------------------------------------
# Every installed file comes from packaging/files (scripts/payload.sh), the list the Debian package uses too.
# shellcheck source=scripts/payload.sh
source "$SRC/scripts/payload.sh"
payload_mkdir() { mkdirs "$1"; }
payload_record() { # the package directory is recorded once, as a tree
  case $2 in "$PKG" | "$PKG"/*) ;; *) record "$1" "$2" ;; esac
}
note "installing to ${ROOT}"
mkdirs "$PKG"
# Replace the payload wholesale so files removed upstream do not linger.
rm -rf "${R}${PKG:?}/dist" "$R$PKG/node_modules" "$R$PKG/templates" "$R$PKG/dbus"
payload_install "$R"
record tree "$PKG"
mapfile -t UNITS < <(payload_units)

# ---- system integration --------------------------------------------------------------------------------
# The unit's node flags are V8's memory settings (see the unit); V8 flags are not a stable interface, so a
# node that refuses one (it would not start at all) gets the unit without it, and a warning.
exec_line=$(grep -m1 '^ExecStart=/usr/bin/node ' systemd/$UNIT)
flags=() kept=()
read -r -a flags <<<"${exec_line#ExecStart=/usr/bin/node }"
script=${flags[-1]}
unset 'flags[-1]'
for f in "${flags[@]}"; do
  case $f in '$'*) kept+=("$f") && continue ;; esac # the unit's own variables ($OPENAUTO_SNAPSHOT)
  if [ -z "$R" ] && [ -x "$NODE_BIN" ] && ! "$NODE_BIN" "$f" -e 0 >/dev/null 2>&1; then
    note "WARNING: $NODE_BIN does not take $f: the unit runs without it (more memory)"
  else
    kept+=("$f")
  fi
done
mdwe=yes
case " ${kept[*]} " in *" --jitless "*) ;; *) mdwe=no ;; esac # V8 with a JIT aborts under it
sed -i -e "s#^ExecStart=/usr/bin/node .*#ExecStart=$NODE_BIN ${kept[*]} $script#" \
  -e "s#^MemoryDenyWriteExecute=yes#MemoryDenyWriteExecute=$mdwe#" "$R/usr/lib/systemd/system/$UNIT"
# The start-up snapshot works only with the node (and V8 flags) it was made with: one this node refuses is
# turned off (the unit reads OPENAUTO_SNAPSHOT= from snapshot.env) and the daemon starts without it.
if [ -z "$R" ] && [ -x "$NODE_BIN" ]; then
  node_flags=()
  for f in "${kept[@]}"; do case $f in '$'*) ;; *) node_flags+=("$f") ;; esac; done
  mkdir -p -m 0755 /var/lib/openauto-system
  rm -f /run/openauto/snapshot.env # the verdict of a start since boot, for the previous install
  if "$NODE_BIN" "${node_flags[@]}" "--snapshot-blob=$PKG/dist/bin/openauto-system.blob" "$script" --help \
    >/dev/null 2>&1; then
    rm -f /var/lib/openauto-system/snapshot.env
  else
    note "WARNING: $NODE_BIN refuses the start-up snapshot (made by another node?): the daemon starts without it"
    echo "OPENAUTO_SNAPSHOT=" >/var/lib/openauto-system/snapshot.env
  fi
fi
# The proxy route's units need Debian's redsocks and nftables (the package depends on them).
[ -x "$R/usr/sbin/redsocks" ] && [ -x "$R/usr/sbin/nft" ] ||
  note "WARNING: redsocks or nft is missing: the proxy route will fail until both are installed (apt-get install redsocks nftables)"

# ---- group and app user --------------------------------------------------------------------------------
passwd_entry() { # passwd_entry USER -> the passwd line, from the target system
  if [ -z "$R" ]; then getent passwd "$1"; else grep -m1 "^$1:" "$R/etc/passwd"; fi
}
group_exists() {
  if [ -z "$R" ]; then getent group "$1" >/dev/null; else grep -q "^$1:" "$R/etc/group"; fi
}
rootopt=()
[ -n "$R" ] && rootopt=(--root "$R")

if ! group_exists "$GROUP"; then
  groupadd --system "${rootopt[@]}" "$GROUP"
  record group "$GROUP"
  note "created system group $GROUP"
fi

CONFIG_PATH=
if [ -n "$APP_USER" ]; then
  pw=$(passwd_entry "$APP_USER") || die "user $APP_USER does not exist in $ROOT"
  home=$(echo "$pw" | cut -d: -f6)
  CONFIG_PATH=$home/.openauto/config.yaml
  if [ -z "$R" ]; then
    members=$(getent group "$GROUP" | cut -d: -f4)
  else
    members=$(grep -m1 "^$GROUP:" "$R/etc/group" | cut -d: -f4)
  fi
  if ! echo ",$members," | grep -q ",$APP_USER,"; then
    usermod "${rootopt[@]}" -a -G "$GROUP" "$APP_USER"
    record member "$GROUP" "$APP_USER"
    note "added $APP_USER to group $GROUP"
  fi
else
  note "WARNING: no --user given: OPENAUTO_CONFIG is not set and nobody is in group $GROUP"
fi

# /etc/default/openauto-system: only the OPENAUTO_CONFIG and OPENAUTO_AP_INTERFACE lines are ours; other
# lines are the admin's.
DEFAULTS=/etc/default/openauto-system
if [ -n "$CONFIG_PATH" ]; then
  mkdirs /etc/default
  if [ ! -e "$R$DEFAULTS" ]; then
    {
      echo "# Environment of openauto-system.service (see openauto-system --help)."
      echo "OPENAUTO_CONFIG=$CONFIG_PATH"
    } >"$R$DEFAULTS"
    chmod 0644 "$R$DEFAULTS"
    record etc-default "$DEFAULTS"
  elif grep -q '^OPENAUTO_CONFIG=' "$R$DEFAULTS"; then
    sed -i "s|^OPENAUTO_CONFIG=.*|OPENAUTO_CONFIG=$CONFIG_PATH|" "$R$DEFAULTS"
  else
    echo "OPENAUTO_CONFIG=$CONFIG_PATH" >>"$R$DEFAULTS"
  fi
fi
# The AP interface is the installation's: written when given, or when none is recorded yet.
if [ -e "$R$DEFAULTS" ] && grep -q '^OPENAUTO_AP_INTERFACE=' "$R$DEFAULTS"; then
  [ -z "$AP_IFACE" ] || sed -i "s|^OPENAUTO_AP_INTERFACE=.*|OPENAUTO_AP_INTERFACE=$AP_IFACE|" "$R$DEFAULTS"
else
  if [ ! -e "$R$DEFAULTS" ]; then
    mkdirs /etc/default
    echo "# Environment of openauto-system.service (see openauto-system --help)." >"$R$DEFAULTS"
    chmod 0644 "$R$DEFAULTS"
    record etc-default "$DEFAULTS"
  fi
  echo "OPENAUTO_AP_INTERFACE=${AP_IFACE:-wlan0}" >>"$R$DEFAULTS"
fi

# ---- enable --------------------------------------------------------------------------------------------
# "systemctl enable" may create these directories; record the ones it did create.
wants_dirs=(/etc/systemd /etc/systemd/system /etc/systemd/system/multi-user.target.wants
  /etc/systemd/system/sockets.target.wants)
absent=()
for d in "${wants_dirs[@]}"; do [ -d "$R$d" ] || absent+=("$d"); done
if [ "$LIVE" = 1 ]; then
  if [ "$RELOAD" = 1 ]; then systemctl daemon-reload; fi
  systemctl enable --quiet "${UNITS[@]}"
else
  systemctl --root="$ROOT" enable --quiet "${UNITS[@]}"
fi
for d in "${absent[@]}"; do [ -d "$R$d" ] && record dir "$d"; done
for u in "${UNITS[@]}"; do record unit "$u"; done

# Write the manifest before touching the running system, so a failed restart can still be uninstalled.
{
  echo "# Written by openauto-system's install.sh: what it added. uninstall.sh removes exactly this."
  printf '%s\n' "${ENTRIES[@]}"
} >"$R$MANIFEST"
chmod 0644 "$R$MANIFEST"

if [ "$LIVE" = 1 ] && [ "$RELOAD" = 1 ]; then
  # dbus-daemon watches system.d itself, but reload explicitly so the policy applies before we return.
  busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig >/dev/null 2>&1 ||
    systemctl reload dbus.service 2>/dev/null || true
  # polkitd picks up new actions and rules by itself (inotify).
  # The socket first, so a restarted daemon is handed the listening socket.
  systemctl start "$SOCKET_UNIT" || note "WARNING: $SOCKET_UNIT did not start (is group $GROUP there?)"
  if systemctl --quiet is-active "$UNIT"; then
    note "restarting the running $UNIT"
    systemctl try-restart "$UNIT"
  else
    note "installed; start it with: systemctl start $UNIT (or any D-Bus call to org.openauto.System)"
  fi
fi
note "done"
