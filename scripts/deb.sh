#!/bin/bash
# Build the Debian package: dist/openauto-system_<version>_<arch>.deb for this machine's architecture
# (dpkg --print-architecture), from the same file list as scripts/install.sh (packaging/files, through
# scripts/payload.sh). Build it where the native modules can be built for the Pi: on the Pi itself.
#
#   scripts/deb.sh [--version V] [--no-build] [--out DIR]
#
#   --version V   the package version (default: "version" in package.json); also what the daemon reports
#   --no-build    do not run npm ci / npm run build; package dist/ as it is
#   --out DIR     where the .deb goes (default: dist/)
#
# Prints the path of the .deb. Needs dpkg-dev (dpkg-shlibdeps) and binutils (strip); no root needed.
set -euo pipefail

usage() { sed -n '2,12s/^# \{0,1\}//p' "$0"; }
die() { echo "deb.sh: $*" >&2; exit 1; }

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$SRC"
VERSION=
BUILD=1
OUT=$SRC/dist
while [ $# -gt 0 ]; do
  case $1 in
    --version) [ $# -ge 2 ] || die "--version needs a value"; VERSION=$2; shift 2 ;;
    --version=*) VERSION=${1#--version=}; shift ;;
    --no-build) BUILD=0; shift ;;
    --out) [ $# -ge 2 ] || die "--out needs a directory"; OUT=$2; shift 2 ;;
    --out=*) OUT=${1#--out=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[ -n "$VERSION" ] || VERSION=$(node -p 'require("./package.json").version')
# A native package's version: no revision (no "-"), nothing dpkg would refuse.
[[ $VERSION =~ ^[0-9][A-Za-z0-9.+~]*$ ]] || die "bad version '$VERSION' (digits, letters, . + ~; starting with a digit)"
ARCH=$(dpkg --print-architecture)
NAME=openauto-system
MAINTAINER="${DEBFULLNAME:-OpenAuto Prodigy developers} <${DEBEMAIL:-openauto-prodigy@users.noreply.github.com}>"
for tool in dpkg-deb dpkg-shlibdeps strip; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install dpkg-dev binutils)"
done

if [ "$BUILD" = 1 ]; then
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=warn >&2
  fi
  npm run --silent build >&2
fi
[ -f dist/bundle-inputs.json ] || die "dist/ is not built (npm run build)"

# ---- the tree ------------------------------------------------------------------------------------------
ROOT=$SRC/dist/deb/${NAME}_${VERSION}_$ARCH
rm -rf "$ROOT"
mkdir -p "$ROOT"
umask 022
# shellcheck source=scripts/payload.sh
source "$SRC/scripts/payload.sh"
payload_install "$ROOT"
PKG=$ROOT$PAYLOAD_PKG
# The daemon reports the version of its package.json (D-Bus property Version): the package's.
node -e '
  const fs = require("node:fs");
  const [file, version] = process.argv.slice(1);
  const p = JSON.parse(fs.readFileSync(file, "utf8"));
  fs.writeFileSync(file, `${JSON.stringify({ ...p, version }, null, 2)}\n`);
' "$PKG/package.json" "$VERSION"
# The addons carry symbols and build notes nobody on a head unit reads.
mapfile -t addons < <(find "$PKG/node_modules" -name '*.node' -type f | sort)
for f in "${addons[@]}"; do
  strip --strip-unneeded --remove-section=.comment --remove-section=.note "$f"
  chmod 0644 "$f"
done

# The one file in /etc: the settings, a conffile.
install -D -m 0644 packaging/deb/default "$ROOT/etc/default/$NAME"

# ---- documentation: copyright (with every bundled and installed package's licence) and changelog ---------
DOC=$ROOT/usr/share/doc/$NAME
mkdir -p "$DOC/licenses"
years=$(git log --format=%cd --date=format:%Y 2>/dev/null | sort -u | sed -n '1p;$p' | uniq | paste -sd- -) || true
node - "$DOC" "$PKG/node_modules" "${years:-$(date +%Y)}" <<'JS' >"$DOC/copyright"
const fs = require('node:fs');
const path = require('node:path');
const [doc, installed, years] = process.argv.slice(2);
const inputs = JSON.parse(fs.readFileSync('dist/bundle-inputs.json', 'utf8'));
const pkgOf = (f) => {
  const m = /^node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(f);
  return m ? m[1] : undefined;
};
const bundled = [...new Set(inputs.map(pkgOf).filter(Boolean))].sort();
const natives = fs.existsSync(installed)
  ? fs.readdirSync(installed).flatMap((d) =>
      d.startsWith('@') ? fs.readdirSync(path.join(installed, d)).map((e) => `${d}/${e}`) : [d],
    )
  : [];
const licenceOf = (name) => {
  const p = JSON.parse(fs.readFileSync(path.join('node_modules', name, 'package.json'), 'utf8'));
  const l = typeof p.license === 'string' ? p.license : (p.license?.type ?? p.licenses?.[0]?.type);
  const dir = path.join('node_modules', name);
  const file = fs.readdirSync(dir).find((e) => /^(licen[cs]e|copying)/i.test(e));
  return { version: p.version, licence: l ?? 'see-license-file', file: file && path.join(dir, file) };
};
const out = [
  'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/',
  'Upstream-Name: openauto-system',
  'Source: https://github.com/mrmees/openauto-prodigy',
  '',
  'Files: *',
  `Copyright: ${years} OpenAuto Prodigy contributors`,
  'License: GPL-3+',
  ' On Debian systems, the complete text of the GNU General Public License',
  ' version 3 can be found in "/usr/share/common-licenses/GPL-3".',
];
const stanza = (files, name, comment) => {
  const { version, licence, file } = licenceOf(name);
  const flat = name.replace('/', '+');
  if (file) fs.copyFileSync(file, path.join(doc, 'licenses', flat));
  out.push(
    '',
    `Files: ${files}`,
    `Copyright: the authors of ${name} ${version} (npm)`,
    `License: ${licence}`,
    ` ${comment}; the licence text, with its copyright notice, is in`,
    ` /usr/share/doc/openauto-system/licenses/${flat}.`,
  );
};
for (const name of bundled)
  stanza('usr/lib/openauto-system/dist/bin/*', name, `Part of the bundled programs`);
// A native module of this repository (a `file:` dependency, linked in node_modules) is under `Files: *`.
for (const name of natives.filter((n) => !fs.lstatSync(path.join('node_modules', n)).isSymbolicLink()))
  stanza(`usr/lib/openauto-system/node_modules/${name}/*`, name, 'Installed as it is');
console.log(out.join('\n'));
JS
chmod 0644 "$DOC/copyright" "$DOC"/licenses/*
when=$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
printf '%s (%s) unstable; urgency=medium\n\n  * Built from the repository at commit %s.\n\n -- %s  %s\n' \
  "$NAME" "$VERSION" "$commit" "$MAINTAINER" "$when" | gzip -9n >"$DOC/changelog.gz"
chmod 0644 "$DOC/changelog.gz"

# Manual pages: each program's --help text (lintian wants one per program in /usr/bin).
manpage() { # manpage PROGRAM SECTION SUMMARY
  local help
  help=$(node "dist/bin/$1.js" --help) || die "$1 --help failed"
  mkdir -p "$ROOT/usr/share/man/man$2"
  {
    printf '.TH %s %s "" "%s %s"\n.SH NAME\n%s \\- %s\n.SH DESCRIPTION\n.nf\n' \
      "${1^^}" "$2" "$NAME" "$VERSION" "$1" "$3"
    # Backslashes escaped; a line starting with . or ' would be a request.
    sed -e 's/\\/\\e/g' -e "s/^[.']/\\\\\&&/" <<<"$help"
    printf '.fi\n.SH SEE ALSO\nopenauto-system(8), openautoctl(1), /usr/share/doc/openauto-system/\n'
  } | gzip -9n >"$ROOT/usr/share/man/man$2/$1.$2.gz"
  chmod 0644 "$ROOT/usr/share/man/man$2/$1.$2.gz"
}
manpage openauto-system 8 "OpenAuto Prodigy head unit system service"
manpage openautoctl 1 "query and control openauto-system"

# lintian: each override says why (packaging/deb/lintian-overrides).
mkdir -p "$ROOT/usr/share/lintian/overrides"
install -m 0644 packaging/deb/lintian-overrides "$ROOT/usr/share/lintian/overrides/$NAME"

# ---- control -------------------------------------------------------------------------------------------
mkdir -p "$ROOT/DEBIAN"
units=$(payload_units | tr '\n' ' ')
units=${units% }
for s in preinst postinst prerm postrm; do
  sed "s|@UNITS@|$units|" "packaging/deb/$s" >"$ROOT/DEBIAN/$s"
  chmod 0755 "$ROOT/DEBIAN/$s"
done
echo "/etc/default/$NAME" >"$ROOT/DEBIAN/conffiles"

# The libraries the addons link (libc6, libstdc++6, libsystemd0...), with their versions, from dpkg-shlibdeps.
shlibs=
if [ ${#addons[@]} -gt 0 ]; then
  work=$(mktemp -d)
  mkdir "$work/debian"
  printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$NAME" "$NAME" >"$work/debian/control"
  shlibs=$(cd "$work" && dpkg-shlibdeps -O "${addons[@]}" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
  rm -rf "$work"
  [ -n "$shlibs" ] || die "dpkg-shlibdeps found no library dependencies for ${addons[*]}"
fi
# nodejs >= 20: the bundle's syntax and node:test-era APIs (Debian 12's own nodejs is 18: use NodeSource's).
# polkitd >= 121: JavaScript rules in /usr/share/polkit-1/rules.d (bookworm's policykit-1 is the same polkit).
# systemd >= 247: ProtectProc= and ProcSubset= in the unit. passwd: groupadd/usermod/gpasswd in the scripts.
# redsocks, nftables: the proxy route's units.
depends="nodejs (>= 20), dbus, hostapd, polkitd (>= 121) | policykit-1 (>= 121), systemd (>= 247), passwd, redsocks, nftables"
[ -z "$shlibs" ] || depends="$depends, $shlibs"
size=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
control=$(<packaging/deb/control.in)
control=${control//@VERSION@/$VERSION}
control=${control//@ARCH@/$ARCH}
control=${control//@MAINTAINER@/$MAINTAINER}
control=${control//@SIZE@/$size}
control=${control//@DEPENDS@/$depends}
printf '%s\n' "$control" >"$ROOT/DEBIAN/control"
(cd "$ROOT" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) >"$ROOT/DEBIAN/md5sums"
chmod 0644 "$ROOT/DEBIAN/control" "$ROOT/DEBIAN/conffiles" "$ROOT/DEBIAN/md5sums"

mkdir -p "$OUT"
DEB=$(cd "$OUT" && pwd -P)/${NAME}_${VERSION}_$ARCH.deb
dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$DEB" >/dev/null
echo "$DEB"
