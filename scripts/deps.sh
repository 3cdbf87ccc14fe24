#!/bin/bash
# Installs what building, running the sandbox and testing need on Debian 12 / Raspberry Pi OS, when it is
# missing: the Debian packages below (as root, with apt-get) and node_modules (npm ci). Quiet and quick when
# everything is there already. Used by `npm test`, `npm run sandbox` and CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# systemd-container: systemd-nspawn for the sandbox (and the matching systemd). dbus, polkitd: the system bus
# and polkit inside the sandbox. python3-dbusmock: the BlueZ stand-in. hostapd: config parsing by the hostapd
# stand-in and the rendering tests. iproute2: the wlan0 veth pair. libsystemd-dev, build-essential,
# pkg-config, python3: native modules (systemd-journald, usocket) built by npm ci. util-linux, passwd,
# procps: unshare/nsenter/setpriv, useradd/groupadd, pgrep. tzdata: the zone database. redsocks, nftables:
# the proxy route's units; microsocks, curl: the phone's SOCKS5 server and the head unit's HTTP client in
# the proxy route's sandbox tests. qt6-base-dev: the Qt client test (qdbusxml2cpp, moc, QtDBus, QtNetwork).
# dpkg-dev, lintian: building the Debian package (dpkg-shlibdeps) and checking it (test/sandbox/deb.test.ts).
PACKAGES=(systemd systemd-container dbus polkitd python3 python3-dbusmock hostapd iproute2
  libsystemd-dev build-essential pkg-config util-linux passwd procps tzdata ca-certificates
  redsocks nftables microsocks curl qt6-base-dev dpkg-dev lintian)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Node 20 comes from the image or NodeSource (Debian 12's own nodejs is 18, too old).
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' 2>/dev/null || {
  echo "deps: Node.js >= 20 is required (found $(node --version 2>/dev/null || echo none))" >&2
  exit 1
}

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "deps: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=warn
fi
