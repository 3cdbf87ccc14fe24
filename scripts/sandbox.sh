#!/bin/bash
# A throw-away head unit: real systemd (PID 1), dbus, journald, systemd-networkd, polkitd and timedated,
# booted with systemd-nspawn from the host's own root through an overlay held in memory, with
# openauto-system installed into it by scripts/install.sh. Nothing is written to the host's root.
#
#   scripts/sandbox.sh start NAME      boot a container; prints its leader PID when it is up
#   scripts/sandbox.sh exec NAME [--user USER] [--cwd DIR] -- CMD...
#                                      run CMD inside (as root, or as USER: appuser, stranger)
#   scripts/sandbox.sh shell NAME      interactive bash inside
#   scripts/sandbox.sh stop NAME       power it off, wait, kill leftovers, forget it
#   scripts/sandbox.sh status NAME     print the state directory's contents
#   scripts/sandbox.sh list            names of running sandboxes
#   scripts/sandbox.sh gc              stop sandboxes whose owner process (SANDBOX_OWNER_PID) is gone
#
# Must run as root (Linux, systemd-container installed). State: /run/openauto-sandbox/NAME/
# (leader = host PID of the container's systemd; root = /proc/LEADER/root, its file system from outside).
#
# The source tree is mounted read-only at /usr/src/openauto-system inside (to run install.sh there).
# What the container has (see the "populate" section): users appuser (group openauto, the app account,
# with ~/.openauto/config.yaml) and stranger; wlan0 = a veth with peer wlan0-peer in the container's own
# network namespace, configured by systemd-networkd from /etc/systemd/network/10-openauto-ap.network
# (10.0.0.1/24, DHCP server); stand-ins for hostapd.service (real hostapd with driver=none: parses the
# config) and bluetooth.service (python3-dbusmock's bluez5 template with adapter hci0).
#
# Environment for "start":
#   SANDBOX_DAEMON_ENV    "K=V K2=V2": extra lines for /etc/default/openauto-system (daemon timings...)
#   SANDBOX_NO_DAEMON=1   do not start openauto-system.service at boot (it stays installed)
#   SANDBOX_NO_INSTALL=1  do not install openauto-system at all (to install it some other way, e.g. the .deb);
#                         SANDBOX_DAEMON_ENV is then ignored and hostapd.conf stays in group root
#   SANDBOX_BOOT_TIMEOUT  seconds to wait for the boot (default 60)
#   SANDBOX_OWNER_PID     the sandbox belongs to this process: a later "start" stops it once the process is gone
#
# Stand-in knobs (files inside the container, read at each start of the unit):
#   /etc/hostapd/hostapd.conf containing the line "# sandbox-refuse"  -> hostapd.service fails to start
#   /etc/openauto-sandbox/hostapd.env (shell "K=V" lines):
#     HOSTAPD_REFUSE=1         fail to start
#     HOSTAPD_REFUSE_SSID=NAME fail to start while hostapd.conf has the line "ssid=NAME" (refuses one
#                              rendered config, accepts another: for rollback tests)
#     HOSTAPD_START_DELAY=N    stay "activating" N seconds before starting
#     HOSTAPD_EXIT_AFTER=N     run N seconds, then exit 1 (a crash)
#     HOSTAPD_MODE=sleep       do not run hostapd, just stay up (default: real hostapd, driver=none)
#   Every start of hostapd.service appends a line to /run/openauto-sandbox/hostapd.starts.
#   /etc/openauto-sandbox/bluetooth.env: BLUETOOTH_REFUSE=1 (fail to start), BLUETOOTH_ADAPTER=0 (no hci0),
#     BLUETOOTH_START_DELAY=N (stay "activating" N seconds before starting: a slow bluetoothd at boot)
set -euo pipefail

STATE_BASE=${SANDBOX_STATE_BASE:-/run/openauto-sandbox}
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
SELF=$SRC/scripts/sandbox.sh
APP_USER=appuser
OTHER_USER=stranger
CONTAINER_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

die() { echo "sandbox: $*" >&2; exit 1; }
log() { echo "sandbox: $*" >&2; }
now_ms() { date +%s%3N; }

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$SELF"; }

check_name() {
  [[ ${1:-} =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$ ]] || die "bad sandbox name '${1:-}' (letters, digits, . _ -; at most 48)"
}

# A process that exists and is not a zombie (our background processes get reparented to whatever PID 1
# is outside, which may reap them late).
alive() {
  [ -n "${1:-}" ] || return 1
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

leader_of() { # leader_of NAME -> PID of the container's systemd, if it is running
  local st=$STATE_BASE/$1 pid
  [ -f "$st/leader" ] || return 1
  pid=$(cat "$st/leader")
  alive "$pid" || return 1
  echo "$pid"
}

# ---- inside the private mount namespace ----------------------------------------------------------------
# Runs as "unshare --mount" child, in the background; lives exactly as long as the container.
inner() {
  local name=$1 st=$STATE_BASE/$1
  local fs=$st/fs
  local M=$fs/merged
  local t0
  t0=$(now_ms)

  # nspawn keeps lock files in /run/systemd/nspawn: keep them off the host's /run (on disk here).
  mount -t tmpfs -o mode=0755 tmpfs /run/systemd
  mkdir -p "$fs"
  mount -t tmpfs -o mode=0755 tmpfs "$fs"
  mkdir "$fs/upper" "$fs/work" "$M"
  mount -t overlay overlay -o "lowerdir=/,upperdir=$fs/upper,workdir=$fs/work" "$M"

  populate "$M"
  echo $(($(now_ms) - t0)) >"$st/prepare-ms"

  local unit=openauto-sandbox.target
  systemd-nspawn --quiet -D "$M" -M "oa-$name" --register=no --keep-unit --private-network \
    --link-journal=no --console=read-only --timezone=off --resolv-conf=off \
    --bind-ro="$SRC:/usr/src/openauto-system" \
    --setenv=SYSTEMD_LOG_LEVEL=info -b -- "systemd.unit=$unit" &
  local nspawn=$!
  echo "$nspawn" >"$st/nspawn.pid"

  # The leader is the process whose PID is 1 in a child PID namespace of nspawn.
  local leader="" i
  for ((i = 0; i < 500; i++)); do
    for c in $(pgrep -P "$nspawn" 2>/dev/null) $(pgrep -P "$(pgrep -P "$nspawn" 2>/dev/null | head -1)" 2>/dev/null); do
      if [ "$(awk '/^NSpid:/ {print $NF}' "/proc/$c/status" 2>/dev/null)" = 1 ]; then leader=$c; break 2; fi
    done
    alive "$nspawn" || break
    sleep 0.01
  done
  if [ -n "$leader" ]; then echo "$leader" >"$st/leader"; else echo "no leader found" >"$st/failed"; fi
  local rc=0
  wait "$nspawn" || rc=$?
  echo "$rc" >"$st/exited"
}

# Write a file inside the container tree: put PATH MODE <<content
put() {
  mkdir -p "$(dirname "$1")"
  cat >"$1"
  chmod "$2" "$1"
}

populate() {
  local M=$1

  # Users: the app account and somebody else. Homes are private (0700) as on Raspberry Pi OS.
  for u in "$APP_USER" "$OTHER_USER"; do
    grep -q "^$u:" "$M/etc/passwd" || useradd --root "$M" --create-home --user-group --shell /bin/bash "$u"
    chmod 0700 "$M/home/$u"
  done

  # The shipping app's config (its older layout), with a valid WPA2 passphrase.
  local cfgdir=$M/home/$APP_USER/.openauto
  put "$cfgdir/config.yaml" 0600 <<'EOF'
connection:
  wifi_ap: {interface: wlan0, ssid: Prodigy_3fa9, password: q7GkL2xPz9RbT4mW, channel: 36, band: a}
  bt_name: Prodigy_3fa9
  bt_discoverable: true
  tcp_port: 5277
identity: {head_unit_name: OpenAuto Prodigy}
EOF
  chown -R --reference="$M/home/$APP_USER" "$cfgdir"
  chmod 0700 "$cfgdir"

  # The daemon, installed the way a device gets it.
  if [ "${SANDBOX_NO_INSTALL:-0}" != 1 ]; then
    bash "$SRC/scripts/install.sh" --root "$M" --user "$APP_USER" --no-build >"$STATE_BASE/$NAME/install.log" 2>&1 ||
      { cat "$STATE_BASE/$NAME/install.log" >&2; die "install.sh failed"; }
  fi
  if [ -n "${SANDBOX_DAEMON_ENV:-}" ] && [ "${SANDBOX_NO_INSTALL:-0}" != 1 ]; then
    local kv
    for kv in $SANDBOX_DAEMON_ENV; do echo "$kv" >>"$M/etc/default/openauto-system"; done
  fi

  # What the head unit's installer leaves behind: the AP config and the networkd file.
  local gid
  gid=$(awk -F: '$1 == "openauto" {print $3}' "$M/etc/group")
  put "$M/etc/hostapd/hostapd.conf" 0640 <<'EOF'
# hostapd configuration for the OpenAuto Prodigy access point
interface=wlan0
driver=nl80211
ctrl_interface=/run/hostapd
ssid=Prodigy_3fa9
country_code=DE
hw_mode=a
channel=36
ieee80211n=1
ieee80211ac=1
wmm_enabled=1
auth_algs=1
wpa=2
wpa_key_mgmt=WPA-PSK
rsn_pairwise=CCMP
wpa_passphrase=q7GkL2xPz9RbT4mW
EOF
  [ -z "$gid" ] || chgrp "$gid" "$M/etc/hostapd/hostapd.conf"
  put "$M/etc/systemd/network/10-openauto-ap.network" 0644 <<'EOF'
[Match]
Name=wlan0

[Network]
Address=10.0.0.1/24
DHCPServer=yes
ConfigureWithoutCarrier=yes

[DHCPServer]
PoolOffset=10
PoolSize=40
EOF

  local lib=/usr/local/lib/openauto-sandbox
  mkdir -p "$M/etc/openauto-sandbox"
  : >"$M/etc/openauto-sandbox/hostapd.env"
  : >"$M/etc/openauto-sandbox/bluetooth.env"

  # ---- stand-in: hostapd ----
  put "$M$lib/hostapd" 0755 <<'EOF'
#!/bin/bash
# hostapd stand-in: no cfg80211 here, so run the real hostapd with driver=none (it parses the whole
# config and stays up), or just stay up. Knobs: /etc/openauto-sandbox/hostapd.env, see sandbox.sh.
set -u
HOSTAPD_REFUSE=0 HOSTAPD_REFUSE_SSID= HOSTAPD_START_DELAY=0 HOSTAPD_EXIT_AFTER=0 HOSTAPD_MODE=real
. /etc/openauto-sandbox/hostapd.env
conf=/etc/hostapd/hostapd.conf
case ${1:-} in
  pre)
    mkdir -p /run/openauto-sandbox
    echo "$(date +%s.%N) start" >>/run/openauto-sandbox/hostapd.starts
    [ "$HOSTAPD_START_DELAY" != 0 ] && sleep "$HOSTAPD_START_DELAY"
    if [ "$HOSTAPD_REFUSE" = 1 ]; then echo "refusing to start (HOSTAPD_REFUSE=1)" >&2; exit 1; fi
    if [ -n "$HOSTAPD_REFUSE_SSID" ] && grep -qxF "ssid=$HOSTAPD_REFUSE_SSID" "$conf" 2>/dev/null; then
      echo "refusing to start: $conf has ssid=$HOSTAPD_REFUSE_SSID (HOSTAPD_REFUSE_SSID)" >&2; exit 1
    fi
    if grep -qx '# sandbox-refuse' "$conf" 2>/dev/null; then
      echo "refusing to start: $conf contains '# sandbox-refuse'" >&2; exit 1
    fi
    [ -s "$conf" ] || { echo "$conf is missing or empty" >&2; exit 1; }
    exit 0 ;;
  run)
    # Like the real unit (Type=forking, hostapd -B): config errors fail the start itself.
    pidfile=/run/hostapd.pid
    if [ "$HOSTAPD_MODE" = sleep ]; then
      sleep infinity &
      echo $! >"$pidfile"
    else
      run=/run/openauto-sandbox/hostapd-none.conf
      sed 's/^driver=.*/driver=none/' "$conf" >"$run"
      grep -q '^driver=' "$run" || echo driver=none >>"$run"
      /usr/sbin/hostapd -B -P "$pidfile" "$run" || exit 1
      for _ in $(seq 100); do [ -s "$pidfile" ] && break; sleep 0.01; done
    fi
    if [ "$HOSTAPD_EXIT_AFTER" != 0 ]; then
      # A crash: SIGKILL, so systemd sees a failure (result "signal").
      (sleep "$HOSTAPD_EXIT_AFTER"; echo "crashing (HOSTAPD_EXIT_AFTER)"; kill -9 "$(cat "$pidfile")") &
    fi
    exit 0 ;;
esac
echo "usage: $0 pre|run" >&2; exit 2
EOF
  put "$M/etc/systemd/system/hostapd.service" 0644 <<EOF
# Sandbox stand-in for hostapd.service (see scripts/sandbox.sh).
[Unit]
Description=Access point stand-in (sandbox)
After=openauto-sandbox-wlan0.service
# systemd's default start limit (5 starts per 10 s), as Debian's hostapd.service has.

[Service]
Type=forking
PIDFile=/run/hostapd.pid
ExecStartPre=$lib/hostapd pre
ExecStart=$lib/hostapd run
Restart=no
TimeoutStartSec=90
EOF

  # ---- stand-in: bluetoothd ----
  put "$M$lib/bluetooth-post" 0755 <<'EOF'
#!/bin/bash
BLUETOOTH_ADAPTER=1
. /etc/openauto-sandbox/bluetooth.env
[ "$BLUETOOTH_ADAPTER" = 1 ] || exit 0
exec busctl call org.bluez /org/bluez org.bluez.Mock AddAdapter ss hci0 OpenAuto
EOF
  put "$M$lib/bluetooth-pre" 0755 <<'EOF'
#!/bin/bash
BLUETOOTH_REFUSE=0 BLUETOOTH_START_DELAY=0
. /etc/openauto-sandbox/bluetooth.env
[ "$BLUETOOTH_START_DELAY" != 0 ] && sleep "$BLUETOOTH_START_DELAY"
if [ "$BLUETOOTH_REFUSE" = 1 ]; then echo "refusing to start (BLUETOOTH_REFUSE=1)" >&2; exit 1; fi
EOF
  put "$M/etc/systemd/system/bluetooth.service" 0644 <<EOF
# Sandbox stand-in for bluetoothd: python3-dbusmock's bluez5 template (the kernel here has no Bluetooth).
[Unit]
Description=Bluetooth stand-in (dbusmock bluez5, sandbox)
# systemd's default start limit (5 starts per 10 s), as Debian's bluetooth.service has.

[Service]
Type=dbus
BusName=org.bluez
ExecStartPre=$lib/bluetooth-pre
ExecStart=/usr/bin/python3 -m dbusmock --system --template bluez5
ExecStartPost=$lib/bluetooth-post
Restart=no
EOF
  put "$M/etc/dbus-1/system.d/openauto-sandbox-bluez.conf" 0644 <<'EOF'
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <policy user="root">
    <allow own="org.bluez"/>
    <allow send_destination="org.bluez"/>
    <allow send_interface="org.bluez.Profile1"/>
  </policy>
  <policy context="default">
    <allow send_destination="org.bluez"/>
  </policy>
</busconfig>
EOF

  # ---- wlan0: a veth pair inside the container's network namespace ----
  put "$M/etc/systemd/system/openauto-sandbox-wlan0.service" 0644 <<'EOF'
[Unit]
Description=Sandbox wlan0 (veth pair wlan0/wlan0-peer)
DefaultDependencies=no
Before=systemd-networkd.service network-pre.target
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'ip link show wlan0 >/dev/null 2>&1 || ip link add wlan0 type veth peer name wlan0-peer; ip link set wlan0-peer up'
EOF

  # ---- the target the container boots into ----
  local daemon=openauto-system.service
  [ "${SANDBOX_NO_DAEMON:-0}" = 1 ] && daemon=
  put "$M/etc/systemd/system/openauto-sandbox.target" 0644 <<EOF
[Unit]
Description=openauto-system sandbox
Requires=dbus.socket dbus.service
Wants=systemd-journald.service openauto-sandbox-wlan0.service systemd-networkd.service
Wants=hostapd.service bluetooth.service openauto-system.socket $daemon
After=dbus.service systemd-networkd.service
AllowIsolate=yes
EOF

  # Keep the journal in memory and complete (tests read it).
  put "$M/etc/systemd/journald.conf.d/50-sandbox.conf" 0644 <<'EOF'
[Journal]
Storage=volatile
RateLimitIntervalSec=0
EOF
  # A container has no use for these at boot; skipping them makes the boot faster.
  local u
  for u in systemd-timesyncd.service systemd-resolved.service e2scrub_reap.service apt-daily.timer \
    apt-daily-upgrade.timer man-db.timer logrotate.timer fstrim.timer dpkg-db-backup.timer \
    systemd-networkd-wait-online.service systemd-sysusers.service systemd-remount-fs.service \
    dev-hugepages.mount systemd-update-utmp.service systemd-journal-flush.service systemd-sysctl.service; do
    ln -sfn /dev/null "$M/etc/systemd/system/$u"
  done
}

# ---- commands ------------------------------------------------------------------------------------------
cmd_start() {
  local name=${1:-}
  check_name "$name"
  [ "$(id -u)" = 0 ] || die "must run as root"
  command -v systemd-nspawn >/dev/null || die "systemd-nspawn is missing (apt-get install systemd-container)"
  local st=$STATE_BASE/$name
  collect_orphans
  if leader_of "$name" >/dev/null; then die "sandbox $name is already running (scripts/sandbox.sh stop $name)"; fi
  [ -d "$st" ] && cleanup_state "$name"
  mkdir -p "$st"
  if [ -n "${SANDBOX_OWNER_PID:-}" ]; then echo "$SANDBOX_OWNER_PID" >"$st/owner"; fi
  local t0
  t0=$(now_ms)
  # setsid: the sandbox must not die with the caller's terminal or process group.
  NAME=$name setsid unshare --mount --propagation private -- bash "$SELF" __inner "$name" \
    </dev/null >"$st/console.log" 2>&1 &
  echo $! >"$st/unshare.pid"

  local timeout=${SANDBOX_BOOT_TIMEOUT:-60} deadline leader=""
  deadline=$(($(date +%s) + timeout))
  while :; do
    if [ -f "$st/leader" ]; then leader=$(cat "$st/leader"); break; fi
    if [ -f "$st/failed" ] || [ -f "$st/exited" ] || ! alive "$(cat "$st/unshare.pid")"; then
      cat "$st/console.log" >&2 || true
      cmd_stop "$name" >/dev/null 2>&1 || true
      die "sandbox $name failed to start"
    fi
    [ "$(date +%s)" -lt "$deadline" ] || { cmd_stop "$name" || true; die "timed out starting $name"; }
    sleep 0.02
  done
  # Wait for the boot to finish (all start jobs done), then check the bus.
  # (systemctl fails at once until PID 1 has opened its private socket: retry until then.)
  local state=""
  while :; do
    state=$(timeout "$timeout" nsenter -t "$leader" -m -u -i -n -p -r -w -- env -i PATH=$CONTAINER_PATH \
      systemctl is-system-running --wait 2>/dev/null) || true
    case $state in running | degraded | maintenance | stopping) break ;; esac
    alive "$leader" && [ "$(date +%s)" -lt "$deadline" ] || break
    sleep 0.02
  done
  case $state in
    running | degraded) ;;
    *)
      tail -50 "$st/console.log" >&2 || true
      cmd_stop "$name" >/dev/null 2>&1 || true
      die "sandbox $name did not boot (state: ${state:-none})" ;;
  esac
  echo $(($(now_ms) - t0)) >"$st/boot-ms"
  echo "/proc/$leader/root" >"$st/root"
  echo "$state" >"$st/state"
  log "$name is up ($state) in $(cat "$st/boot-ms") ms (prepare $(cat "$st/prepare-ms" 2>/dev/null || echo ?) ms); leader PID $leader"
  echo "$leader"
}

# Sandboxes started for a process (SANDBOX_OWNER_PID, e.g. a test file) that no longer exists, because it
# was killed before it could stop them: stop them now.
collect_orphans() {
  local d n owner
  for d in "$STATE_BASE"/*/; do
    [ -f "$d/owner" ] || continue
    n=$(basename "$d")
    owner=$(cat "$d/owner")
    alive "$owner" && continue
    log "stopping $n: its owner (PID $owner) is gone"
    cmd_stop "$n" >/dev/null 2>&1 || true
  done
  return 0
}

cmd_exec() {
  local name=${1:-}
  check_name "$name"
  shift
  local user="" cwd=""
  while [ $# -gt 0 ]; do
    case $1 in
      --user) user=$2; shift 2 ;;
      --cwd) cwd=$2; shift 2 ;;
      --) shift; break ;;
      *) break ;;
    esac
  done
  [ $# -gt 0 ] || die "exec: no command"
  local leader
  leader=$(leader_of "$name") || die "sandbox $name is not running"
  # The directory is changed inside (env -C): nsenter's --wd would resolve the path on the host.
  local wd=(-C "${cwd:-/}")
  if [ -z "$user" ] || [ "$user" = root ]; then
    exec nsenter -t "$leader" -m -u -i -n -p -r -w -- \
      env -i "${wd[@]}" PATH=$CONTAINER_PATH HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM="${TERM:-dumb}" "$@"
  fi
  # setpriv: exact uid/gid and supplementary groups of USER, clean environment, no new privileges.
  exec nsenter -t "$leader" -m -u -i -n -p -r -w -- \
    setpriv --reuid="$user" --regid="$user" --init-groups --reset-env -- \
    env "${wd[@]}" LANG=C.UTF-8 "$@"
}

cmd_shell() {
  local name=${1:-}
  check_name "$name"
  local leader
  leader=$(leader_of "$name") || die "sandbox $name is not running"
  exec nsenter -t "$leader" -m -u -i -n -p -r -w -- \
    env -i -C /root PATH=$CONTAINER_PATH HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM="${TERM:-xterm}" \
    PS1='[sandbox \W]# ' bash --norc -i
}

cleanup_state() {
  local st=$STATE_BASE/$1
  # The tmpfs lived in the sandbox's mount namespace only; here "fs" is an empty directory.
  rmdir "$st/fs" 2>/dev/null || true
  rm -rf "$st"
}

cmd_stop() {
  local name=${1:-}
  check_name "$name"
  local st=$STATE_BASE/$name
  [ -d "$st" ] || { log "sandbox $name is not running"; return 0; }
  local up="" ns="" leader=""
  [ -f "$st/unshare.pid" ] && up=$(cat "$st/unshare.pid")
  [ -f "$st/nspawn.pid" ] && ns=$(cat "$st/nspawn.pid")
  leader=$(leader_of "$name" 2>/dev/null) || leader=""
  if [ -n "$leader" ]; then
    # SIGRTMIN+4 asks systemd (PID 1 of the container) for a poweroff; nspawn then exits.
    kill -s RTMIN+4 "$leader" 2>/dev/null || true
  fi
  local i
  for ((i = 0; i < 500; i++)); do
    alive "$up" || alive "$ns" || break
    sleep 0.02
  done
  if alive "$ns" || alive "$up"; then
    log "sandbox $name did not power off within 10 s: killing it"
    # Killing PID 1 of the container's PID namespace kills everything in it.
    [ -n "$leader" ] && kill -9 "$leader" 2>/dev/null || true
    [ -n "$ns" ] && kill -9 "$ns" 2>/dev/null || true
    [ -n "$up" ] && kill -9 -- "-$up" 2>/dev/null || true
    for ((i = 0; i < 250; i++)); do
      alive "$up" || alive "$ns" || break
      sleep 0.02
    done
  fi
  cleanup_state "$name"
  log "$name stopped"
}

cmd_status() {
  local name=${1:-}
  check_name "$name"
  local st=$STATE_BASE/$name
  [ -d "$st" ] || die "no sandbox $name"
  local f
  for f in leader unshare.pid nspawn.pid root state boot-ms prepare-ms exited failed; do
    [ -f "$st/$f" ] && printf '%-12s %s\n' "$f" "$(cat "$st/$f")"
  done
  if leader_of "$name" >/dev/null; then echo "running      yes"; else echo "running      no"; fi
}

cmd_list() {
  local d
  for d in "$STATE_BASE"/*/; do
    [ -d "$d" ] || continue
    d=$(basename "$d")
    leader_of "$d" >/dev/null && echo "$d"
  done
  return 0
}

case ${1:-} in
  start) shift; cmd_start "$@" ;;
  exec) shift; cmd_exec "$@" ;;
  shell) shift; cmd_shell "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  status) shift; cmd_status "$@" ;;
  list) shift; cmd_list ;;
  gc) shift; collect_orphans ;;
  __inner) shift; NAME=$1; inner "$1" ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
