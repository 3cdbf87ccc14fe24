# The installed files, from packaging/files: shared by scripts/install.sh and scripts/deb.sh (sourced, not
# run), so a checkout install and the Debian package carry exactly the same payload.
#
#   payload_lines                  the manifest's entries (KIND ARGS...), comments and blank lines dropped
#   payload_units                  the unit names, in manifest order
#   payload_stage_modules          stages the `native` modules once per build state; sets PAYLOAD_MODULES
#   payload_install DESTROOT       copies every entry below DESTROOT ("" for /), node_modules included
#
# payload_install calls two hooks, which the caller may redefine: payload_mkdir DIR (create DIR and its
# parents, 0755, below PAYLOAD_ROOT) and payload_record KIND PATH (KIND: file, link). Both get paths as on
# the target system.

PAYLOAD_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PAYLOAD_MANIFEST=$PAYLOAD_SRC/packaging/files
PAYLOAD_PKG=/usr/lib/openauto-system

payload_mkdir() { mkdir -p -m 0755 "$PAYLOAD_ROOT$1"; }
payload_record() { :; }

payload_lines() {
  local line
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%%#*}
    [ -n "${line//[[:space:]]/}" ] || continue
    echo "$line"
  done <"$PAYLOAD_MANIFEST"
}

payload_units() {
  local kind src dest
  payload_lines | while read -r kind src dest _; do
    [ "$kind" = unit ] && basename "$dest"
  done
  return 0
}

payload_natives() {
  local kind name
  payload_lines | while read -r kind name _; do
    [ "$kind" = native ] && echo "$name"
  done
  return 0
}

# The runtime node_modules, staged once per state of the lockfile, the installed modules and the native list
# (under dist/, which is build output). Each state gets its own directory, made under a lock and renamed into
# place, never changed afterwards: concurrent installs (parallel sandboxes) share it.
payload_stage_modules() {
  local base=$PAYLOAD_SRC/dist/.install-stage natives stamp tmp
  natives=$(payload_natives)
  stamp=$( {
    cat "$PAYLOAD_SRC/package-lock.json"
    cat "$PAYLOAD_SRC/node_modules/.package-lock.json" 2>/dev/null || true
    echo "$natives"
    cat "$PAYLOAD_SRC/scripts/runtime-modules.mjs"
  } | sha256sum | cut -c1-16)
  PAYLOAD_MODULES=$base/$stamp/node_modules
  [ -d "$PAYLOAD_MODULES" ] && return 0
  [ -d "$PAYLOAD_SRC/node_modules" ] || { echo "payload: node_modules is missing: run npm ci" >&2; return 1; }
  mkdir -p "$base"
  (
    flock 9
    [ -d "$PAYLOAD_MODULES" ] && exit 0
    tmp=$(mktemp -d "$base/.tmp.XXXXXX")
    # shellcheck disable=SC2086 # one name per word
    (cd "$PAYLOAD_SRC" && node scripts/runtime-modules.mjs "$tmp" $natives) >/dev/null
    mkdir -p "$tmp/node_modules"
    chmod -R u=rwX,go=rX "$tmp"
    # Older states are of no use any more.
    find "$base" -mindepth 1 -maxdepth 1 -type d ! -name "$(basename "$tmp")" -exec rm -rf {} +
    mv "$tmp" "$base/$stamp"
  ) 9>"$base/.lock"
}

# payload_put MODE SRC DEST: the new file gets its name by rename only. polkitd, dbus-daemon and systemd
# watch these directories on a live system; a file rewritten in place can be read half written (polkitd
# then runs without our rules until the next change).
payload_put() {
  install -m "$1" "$2" "$3.payload-new"
  mv -f "$3.payload-new" "$3"
}

payload_install() {
  PAYLOAD_ROOT=$1
  local R=$1 kind a b mode
  payload_stage_modules
  while read -r kind a b mode; do
    case $kind in
      unit | file | tree | link)
        case $b in /?*/?*) ;; *) echo "payload: bad destination $b" >&2; return 1 ;; esac
        payload_mkdir "$(dirname "$b")" ;;
    esac
    case $kind in
      unit)
        payload_put 0644 "$PAYLOAD_SRC/$a" "$R$b"
        payload_record file "$b" ;;
      file)
        [ -f "$PAYLOAD_SRC/$a" ] || { echo "payload: $a is missing (not built?)" >&2; return 1; }
        payload_put "$mode" "$PAYLOAD_SRC/$a" "$R$b"
        payload_record file "$b" ;;
      tree)
        # Replaced whole, so files removed upstream do not linger.
        rm -rf "$R$b.payload-new"
        cp -r "$PAYLOAD_SRC/$a" "$R$b.payload-new"
        chmod -R u=rwX,go=rX "$R$b.payload-new"
        find "$R$b.payload-new" -type f -exec chmod 0644 {} +
        rm -rf "$R$b"
        mv "$R$b.payload-new" "$R$b"
        payload_record file "$b" ;;
      link)
        ln -sfn "$a" "$R$b"
        payload_record link "$b" ;;
      native | absent) ;;
      *) echo "payload: unknown entry in packaging/files: $kind" >&2; return 1 ;;
    esac
  done < <(payload_lines)
  payload_mkdir "$PAYLOAD_PKG"
  rm -rf "$R$PAYLOAD_PKG/node_modules"
  cp -r "$PAYLOAD_MODULES" "$R$PAYLOAD_PKG/node_modules"
  chmod -R u=rwX,go=rX "$R$PAYLOAD_PKG/node_modules"
  find "$R$PAYLOAD_PKG/node_modules" -type f -exec chmod 0644 {} + # modules are loaded, never run
}
