#!/bin/bash
# Remove what scripts/install.sh added, exactly as recorded in /usr/lib/openauto-system/install-manifest.
#
#   scripts/uninstall.sh [--root DIR] [--no-reload]
#
# The group "openauto" is deleted only if install.sh created it; an app user that install.sh added to an
# existing group is taken out of it again. /etc/default/openauto-system is deleted only if install.sh
# created it. The app's own config.yaml is never touched.
set -euo pipefail

usage() { sed -n '2,9s/^# \{0,1\}//p' "$0"; }
die() { echo "uninstall.sh: $*" >&2; exit 1; }
note() { echo "uninstall.sh: $*"; }

ROOT=/
RELOAD=1
while [ $# -gt 0 ]; do
  case $1 in
    --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=$2; shift 2 ;;
    --root=*) ROOT=${1#--root=}; shift ;;
    --no-reload) RELOAD=0; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[ "$(id -u)" -eq 0 ] || die "must run as root"
[ -d "$ROOT" ] || die "root directory $ROOT does not exist"
ROOT=$(cd "$ROOT" && pwd -P)
if [ "$ROOT" = / ]; then R=; else R=$ROOT; fi

MANIFEST=/usr/lib/openauto-system/install-manifest
[ -f "$R$MANIFEST" ] || die "no install manifest at $ROOT${MANIFEST#/}: nothing to uninstall"

LIVE=0
if [ -z "$R" ] && [ -d /run/systemd/system ]; then LIVE=1; fi
rootopt=()
[ -n "$R" ] && rootopt=(--root "$R")

files=() links=() dirs=() trees=() units=() groups=() members=() defaults=()
while read -r kind a b; do
  case $kind in
    '' | '#'*) ;;
    file) files+=("$a") ;;
    link) links+=("$a") ;;
    dir) dirs+=("$a") ;;
    tree) trees+=("$a") ;;
    unit) units+=("$a") ;;
    group) groups+=("$a") ;;
    member) members+=("$a:$b") ;;
    etc-default) defaults+=("$a") ;;
    *) note "WARNING: ignoring unknown manifest entry: $kind $a $b" ;;
  esac
done <"$R$MANIFEST"

# Refuse anything that is not an absolute path below the root (a damaged manifest must not rm -rf /).
safe() { case $1 in /?*) case $1 in *..*) return 1 ;; esac ;; *) return 1 ;; esac; }

# A proxy route still on: its units are not enabled (the daemon starts them), so stop them here, after the
# daemon (which would restart them); stopping the route unit deletes its nftables table and default route.
if [ "$LIVE" = 1 ]; then
  systemctl stop --quiet openauto-system.socket openauto-system.service 2>/dev/null || true
  systemctl stop --quiet openauto-proxy-route.service openauto-proxy.service 2>/dev/null || true
fi

for u in "${units[@]}"; do
  if [ "$LIVE" = 1 ]; then
    systemctl disable --now --quiet "$u" || true
  else
    systemctl --root="$ROOT" disable --quiet "$u" || true
  fi
done

for f in "${files[@]}" "${links[@]}"; do
  safe "$f" || { note "WARNING: skipping unsafe path $f"; continue; }
  rm -f "$R$f"
done
for t in "${trees[@]}"; do
  safe "$t" || { note "WARNING: skipping unsafe path $t"; continue; }
  rm -rf -- "$R$t"
done
for d in "${defaults[@]}"; do
  safe "$d" && rm -f "$R$d"
done
# The daemon's own state (systemd made it for StateDirectory=): the record of an apply in progress, useless
# without the daemon. Its parent goes only if nothing else is in it.
rm -rf -- "$R/var/lib/openauto-system/apply"
rm -f -- "$R/var/lib/openauto-system/snapshot.env" # install.sh's start-up snapshot verdict
rmdir "$R/var/lib/openauto-system" 2>/dev/null || true
# The daemon's own V8 code cache (CacheDirectory=, src/code-cache.ts): rebuilt by the next start of any install.
rm -rf -- "$R/var/cache/openauto-system"
# Deepest first; only if empty (something else may have put files there since).
for ((i = ${#dirs[@]} - 1; i >= 0; i--)); do
  d=${dirs[$i]}
  safe "$d" || continue
  [ -d "$R$d" ] && rmdir "$R$d" 2>/dev/null || true
done

deleted_groups=" "
for g in "${groups[@]}"; do
  if groupdel "${rootopt[@]}" "$g" 2>/dev/null; then
    note "deleted group $g"
    deleted_groups+="$g "
  fi
done
for m in "${members[@]}"; do
  g=${m%%:*} u=${m#*:}
  case $deleted_groups in *" $g "*) continue ;; esac
  gpasswd ${R:+--root "$R"} -d "$u" "$g" >/dev/null 2>&1 && note "removed $u from group $g" || true
done

if [ "$LIVE" = 1 ] && [ "$RELOAD" = 1 ]; then
  systemctl daemon-reload
  busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig >/dev/null 2>&1 ||
    systemctl reload dbus.service 2>/dev/null || true
fi
note "done"
