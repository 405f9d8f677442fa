#!/usr/bin/env bash
# Proves the README's main command works on a fresh Debian 12: makes a minimal Debian 12 root
# (mmdebstrap --variant=minbase bookworm; debootstrap --variant=minbase as fallback), copies the
# checkout in (tracked + untracked-not-ignored files: no build dirs, no node_modules), runs
# ./scripts/run-demo.sh inside it with chroot, checks that a PNG came out, and runs the README's
# Python example there (scripts/run-readme-python.sh).
#
#   scripts/check-fresh-install.sh                 # as root, or through sudo
#   FRESH_CMD='./scripts/build.sh && ctest --test-dir build -R Precision' scripts/check-fresh-install.sh
#
# Environment:
#   FRESH_CMD      command run in the checkout inside the root (default: ./scripts/run-demo.sh &&
#                  ./scripts/run-readme-python.sh);
#                  the PNG check only applies to the default command
#   FRESH_KEEP=1   keep the root (unmounted) and print its path; default: removed at the end
#   FRESH_CACHE=0  no caches. Default 1: the bootstrapped minbase root is kept as a tarball and the
#                  downloaded .debs in a folder, both under $FRESH_CACHE_DIR (default
#                  ${XDG_CACHE_HOME:-$HOME/.cache}/duet/fresh-root), outside the checkout; the tarball
#                  is rebuilt when older than FRESH_CACHE_DAYS (7). Packages are still installed from
#                  scratch every run; only the download is saved.
#   FRESH_PARENT   where the root's folder is made (default /var/tmp; must be outside the checkout)
#   FRESH_MIRROR   Debian mirror for the bootstrap (default: the tool's, deb.debian.org)
#   FRESH_VERBOSE=1  stream the command's output (default: to a log, last 80 lines on failure)
#   FRESH_NPM_CONFIG=1  copy this machine's npm settings in (for a FRESH_CMD that runs npm, e.g.
#                  the tests): the user's ~/.npmrc to /root/.npmrc, and the CA file that
#                  `npm config get cafile` names to /etc/duet-host-ca.crt (cafile then points
#                  there; Debian's ca-certificates would overwrite the bundle's usual path)
#
# Mounts (/proc, /sys, /dev, /dev/pts, /dev/shm, the .deb cache) are made inside a private mount
# namespace (unshare --mount): the host never sees them, and they vanish with the namespace even
# when the script is killed. A trap also unmounts them on every exit path, and the root is only
# removed after checking that nothing under it is mounted (rm --one-file-system).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd -P)

if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "check-fresh-install: needs root (chroot, mount) and sudo is missing" >&2; exit 1; }
  exec sudo --preserve-env=FRESH_CMD,FRESH_KEEP,FRESH_CACHE,FRESH_CACHE_DIR,FRESH_CACHE_DAYS,FRESH_PARENT,FRESH_MIRROR,FRESH_VERBOSE,FRESH_NPM_CONFIG,XDG_CACHE_HOME,http_proxy,https_proxy,no_proxy \
    "$0" "$@"
fi

# The main command, then the README's Python example (`python3 -c "import duet"` must work after it).
DEFAULT_CMD='./scripts/run-demo.sh && ./scripts/run-readme-python.sh'
CMD=${FRESH_CMD:-$DEFAULT_CMD}
KEEP=${FRESH_KEEP:-0}
CACHE=${FRESH_CACHE:-1}
CACHE_DIR=${FRESH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/duet/fresh-root}
CACHE_DAYS=${FRESH_CACHE_DAYS:-7}
PARENT=${FRESH_PARENT:-/var/tmp}
SUITE=bookworm
GUEST_DIR=/root/duet   # the checkout inside the root

T0=$(date +%s)
T_PHASE=$T0
TIMINGS=()
PHASE="minbase root"   # the phase in progress, named in the timings if it is interrupted
phase_done() { # NAME: records the time since the previous phase
  local now
  now=$(date +%s)
  PHASE=""
  TIMINGS+=("$(printf '%-28s %5d s' "$1" $((now - T_PHASE)))")
  echo "== fresh-root: $1 done in $((now - T_PHASE)) s" >&2
  T_PHASE=$now
}
print_timings() {
  echo "== fresh-root timings:"
  local t
  for t in "${TIMINGS[@]}"; do echo "   $t"; done
  echo "   $(printf '%-28s %5d s' total $(($(date +%s) - T0)))"
}
die() { echo "check-fresh-install: $*" >&2; exit 1; }

case "$CACHE" in 0 | 1) ;; *) die "FRESH_CACHE must be 0 or 1, got '$CACHE'" ;; esac
case "$KEEP" in 0 | 1) ;; *) die "FRESH_KEEP must be 0 or 1, got '$KEEP'" ;; esac
mkdir -p "$PARENT" || die "FRESH_PARENT=$PARENT cannot be created"
PARENT=$(cd "$PARENT" && pwd -P)
case "$PARENT/" in "$REPO/"*) die "FRESH_PARENT=$PARENT is inside the checkout $REPO; choose a folder outside it" ;; esac
free_kb=$(df -Pk "$PARENT" | awk 'NR == 2 { print $4 }')
[ "$free_kb" -ge $((8 * 1024 * 1024)) ] || die "only $((free_kb / 1024)) MiB free under $PARENT; the root needs about 8 GiB (FRESH_PARENT=...)"

# The bootstrap tool: mmdebstrap, else debootstrap, installed from Debian when neither is there.
if ! command -v mmdebstrap >/dev/null 2>&1 && ! command -v debootstrap >/dev/null 2>&1; then
  echo "== fresh-root: installing mmdebstrap" >&2
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap >/dev/null ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null ||
    die "could not install mmdebstrap or debootstrap with apt-get"
fi
command -v unshare >/dev/null 2>&1 || die "unshare (util-linux) is missing"

WORK=$(mktemp -d "$PARENT/duet-fresh.XXXXXX")
ROOT=$WORK/root
LOG=$WORK/fresh.log
mkdir "$ROOT"

# Lines of /proc/self/mountinfo whose mount point is the root or below it (host namespace).
mounts_under_root() { awk -v r="$ROOT" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM HUP
  # Nothing is mounted in this namespace by design; unmount anything found anyway (deepest first).
  local m
  for m in $(mounts_under_root | sort -r); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  if [ -n "$(mounts_under_root)" ]; then
    echo "check-fresh-install: still mounted under $ROOT, NOT removing it:" >&2
    mounts_under_root >&2
    exit 1
  fi
  if [ "$KEEP" = 1 ]; then
    echo "== fresh-root: kept at $ROOT (FRESH_KEEP=1; remove with rm -rf --one-file-system $WORK)" >&2
  else
    rm -rf --one-file-system "$ROOT"
    if [ "$rc" = 0 ]; then rm -rf "$WORK"; else echo "== fresh-root: root removed; log kept at $LOG" >&2; fi
  fi
  [ -z "$PHASE" ] || { phase_done "$PHASE (exit $rc)"; T_PHASE=$(date +%s); }
  phase_done cleanup
  print_timings >&2
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# --- phase 1: the minimal root -------------------------------------------------------------
bootstrap() { # DEST: a folder, or a .tar file
  local dest=$1 dir=$1
  if command -v mmdebstrap >/dev/null 2>&1; then
    mmdebstrap --quiet --variant=minbase "$SUITE" "$dest" ${FRESH_MIRROR:+"$FRESH_MIRROR"}
    return
  fi
  case "$dest" in *.tar) dir=$dest.d; mkdir -p "$dir" ;; esac
  debootstrap --variant=minbase "$SUITE" "$dir" ${FRESH_MIRROR:+"$FRESH_MIRROR"}
  if [ "$dir" != "$dest" ]; then tar -C "$dir" -cf "$dest" . && rm -rf --one-file-system "$dir"; fi
}
TARBALL=$CACHE_DIR/$SUITE-minbase-amd64.tar
exec 9>/dev/null
if [ "$CACHE" = 1 ]; then
  mkdir -p "$CACHE_DIR/debs/partial"
  exec 9>"$CACHE_DIR/lock"
  flock 9   # one run at a time uses the cache (apt locks the .deb folder)
  if [ -f "$TARBALL" ] && [ -z "$(find "$TARBALL" -mtime +"$CACHE_DAYS")" ]; then
    echo "== fresh-root: minbase $SUITE root from the cached $TARBALL" >&2
  else
    echo "== fresh-root: bootstrapping minbase $SUITE into the cache ($TARBALL)" >&2
    rm -rf --one-file-system "$CACHE_DIR/new.tar" "$CACHE_DIR/new.tar.d"
    bootstrap "$CACHE_DIR/new.tar" >"$LOG" 2>&1 || { tail -n 40 "$LOG" >&2; die "bootstrap failed"; }
    mv "$CACHE_DIR/new.tar" "$TARBALL"
  fi
  tar -C "$ROOT" -xf "$TARBALL"
else
  echo "== fresh-root: bootstrapping minbase $SUITE into $ROOT" >&2
  bootstrap "$ROOT" >"$LOG" 2>&1 || { tail -n 40 "$LOG" >&2; die "bootstrap failed"; }
fi
[ -x "$ROOT/usr/bin/apt-get" ] || die "the bootstrapped root at $ROOT has no apt-get"
# apt inside: name resolution and the host's proxy / date-check settings (if any).
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
apt-config dump 2>/dev/null |
  grep -E '^Acquire::(https?::Proxy|ftp::Proxy|Check-Valid-Until|Check-Date) ' \
    >"$ROOT/etc/apt/apt.conf.d/90host-acquire" || rm -f "$ROOT/etc/apt/apt.conf.d/90host-acquire"
# What the Debian installer writes and minbase lacks: /etc/hosts (localhost names), /etc/hostname.
[ -f "$ROOT/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
[ -f "$ROOT/etc/hostname" ] || echo duet-fresh >"$ROOT/etc/hostname"
# A throw-away root: dpkg need not fsync every file (the same packages get installed, only faster).
echo force-unsafe-io >"$ROOT/etc/dpkg/dpkg.cfg.d/90duet-unsafe-io"
if [ "${FRESH_NPM_CONFIG:-0}" = 1 ]; then
  user_home=$HOME
  [ -n "${SUDO_USER:-}" ] && user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
  [ -f "$user_home/.npmrc" ] && grep -v '^cafile' "$user_home/.npmrc" >"$ROOT/root/.npmrc"
  cafile=""
  command -v npm >/dev/null 2>&1 && cafile=$(npm config get cafile 2>/dev/null || true)
  if [ -n "$cafile" ] && [ "$cafile" != null ] && [ "$cafile" != undefined ] && [ -f "$cafile" ]; then
    cp -L "$cafile" "$ROOT/etc/duet-host-ca.crt"
    echo "cafile=/etc/duet-host-ca.crt" >>"$ROOT/root/.npmrc"
  fi
  echo "== fresh-root: npm settings copied in ($([ -n "$cafile" ] && echo "cafile $cafile, ")$user_home/.npmrc)" >&2
fi
phase_done "minbase root"
PHASE="copy checkout"

# --- phase 2: the checkout -----------------------------------------------------------------
mkdir -p "$ROOT$GUEST_DIR"
(
  cd "$REPO"
  git ls-files -co --exclude-standard -z |
    while IFS= read -r -d '' f; do if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi; done |
    tar --null -T - -cf -
) | tar -C "$ROOT$GUEST_DIR" -xf -
echo "== fresh-root: copied $(find "$ROOT$GUEST_DIR" -type f | wc -l) files ($(du -sh "$ROOT$GUEST_DIR" | cut -f1)) to $GUEST_DIR" >&2
phase_done "copy checkout"
PHASE="command in the root"

# --- phase 3: the command inside the root (private mount namespace) -------------------------
echo "== fresh-root: running '$CMD' in $GUEST_DIR inside the root (log: $LOG)" >&2
inner='
set -eu
R=$1 CMD=$2 GUEST=$3 DEBS=$4
MOUNTED=()   # deepest first
umount_all() { local m; for m in "${MOUNTED[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" || true; done; }
trap umount_all EXIT
trap "exit 130" INT
trap "exit 143" TERM
mnt() { # OPTIONS... SOURCE TARGET (the target last)
  mount "$@"
  MOUNTED=("${!#}" "${MOUNTED[@]}")
}
mnt -t proc proc "$R/proc"
mnt -t sysfs sysfs "$R/sys"
mnt --bind /dev "$R/dev"
mnt --bind /dev/pts "$R/dev/pts"
mnt -t tmpfs -o mode=1777 tmpfs "$R/dev/shm"
if [ -n "$DEBS" ]; then mkdir -p "$R/var/cache/apt/archives"; mnt --bind "$DEBS" "$R/var/cache/apt/archives"; fi
rc=0
chroot "$R" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  /bin/bash -c "cd \"$GUEST\" && $CMD" || rc=$?
exit $rc
'
debs=""
[ "$CACHE" = 1 ] && debs=$CACHE_DIR/debs
rc=0
if [ "${FRESH_VERBOSE:-0}" = 1 ]; then
  unshare --mount --propagation private -- bash -c "$inner" inner "$ROOT" "$CMD" "$GUEST_DIR" "$debs" 2>&1 |
    tee -a "$LOG" || rc=$?
else
  unshare --mount --propagation private -- bash -c "$inner" inner "$ROOT" "$CMD" "$GUEST_DIR" "$debs" \
    >>"$LOG" 2>&1 || rc=$?
fi
phase_done "command in the root"
if [ "$rc" != 0 ]; then
  [ "${FRESH_VERBOSE:-0}" = 1 ] || { echo "---- last 80 lines of $LOG" >&2; tail -n 80 "$LOG" >&2; echo "----" >&2; }
  die "'$CMD' failed inside the fresh $SUITE root (exit $rc)"
fi

# --- phase 4: the PNG ----------------------------------------------------------------------
PHASE="PNG check"
if [ "$CMD" = "$DEFAULT_CMD" ]; then
  png=$ROOT$GUEST_DIR/duet-output.png
  [ -f "$png" ] || die "run-demo.sh succeeded but wrote no $GUEST_DIR/duet-output.png"
  sig=$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')
  [ "$sig" = 89504e470d0a1a0a ] || die "duet-output.png is not a PNG (first bytes $sig)"
  [ "$(head -c 16 "$png" | tail -c 4)" = IHDR ] || die "duet-output.png has no IHDR chunk first"
  w=$(head -c 20 "$png" | tail -c 4 | od -An -tu1 | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }')
  h=$(head -c 24 "$png" | tail -c 4 | od -An -tu1 | awk '{ print $1 * 16777216 + $2 * 65536 + $3 * 256 + $4 }')
  size=$(stat -c %s "$png")
  [ "$w" -ge 16 ] && [ "$h" -ge 16 ] || die "duet-output.png is only ${w}x$h pixels"
  [ "$size" -ge 300 ] || die "duet-output.png is only $size bytes"
  [ "$(tail -c 8 "$png" | head -c 4)" = IEND ] || die "duet-output.png does not end with IEND (truncated?)"
  echo "== fresh-root: duet-output.png: PNG ${w}x$h, $size bytes" >&2
  phase_done "PNG check"
fi
echo "== fresh-root: PASSED ('$CMD' in a fresh minbase Debian $SUITE root)" >&2
