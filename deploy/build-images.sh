#!/usr/bin/env bash
# Builds the `coffer` Docker image locally, without pulling anything from a registry.
#
# The image is FROM scratch (deploy/Dockerfile): this script stages its build context —
#   rootfs/usr/local/bin/coffer      the binary (debug info stripped from the copy)
#   rootfs/<lib paths>               every shared library `ldd` lists, and the dynamic loader
#   rootfs/bin/busybox (+ /bin/sh)   a static busybox: health checks (`busybox wget`), debugging
#   rootfs/etc/{passwd,group,nsswitch.conf}
# — and runs `docker build` on it. The image is labelled with a hash of the binary, the
# Dockerfile and this script; when the image already has that label the build is skipped
# (--force rebuilds anyway).
#
# Usage: deploy/build-images.sh [--release] [--build] [--force] [--tag IMAGE]
#   --release   use (and build if missing) the release binary instead of the debug one
#   --build     run cargo build even when the binary exists (picks up source changes)
#   --force     rebuild the image even if one with the same binary exists
#   --tag IMAGE image name (default: $COFFER_IMAGE or coffer:dev)
#
# Environment:
#   CARGO_TARGET_DIR  where cargo builds (default: $HOME/.cache/coffer-target)
#   COFFER_BIN        use this binary instead of the one in CARGO_TARGET_DIR (nothing is built)
#   COFFER_IMAGE      image name (default: coffer:dev)
#   BUSYBOX           a statically linked busybox to use (default: /bin/busybox if static,
#                     else the Debian package busybox-static, downloaded with apt-get)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/coffer-target}"
IMAGE="${COFFER_IMAGE:-coffer:dev}"
PROFILE=debug
FORCE_BUILD=0
FORCE_IMAGE=0

die() {
  echo "build-images: $*" >&2
  exit 1
}
log() { echo "build-images: $*" >&2; }

while [[ $# -gt 0 ]]; do
  case "$1" in
  --release) PROFILE=release ;;
  --build) FORCE_BUILD=1 ;;
  --force) FORCE_IMAGE=1 ;;
  --tag)
    [[ $# -ge 2 ]] || die "--tag needs a value"
    IMAGE="$2"
    shift
    ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done

command -v docker >/dev/null 2>&1 || die "docker is not installed"
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (docker info fails)"

# ---------------------------------------------------------------------------------------------
# The binary.
# ---------------------------------------------------------------------------------------------
if [[ -n "${COFFER_BIN:-}" ]]; then
  BIN="$COFFER_BIN"
  [[ -x "$BIN" ]] || die "COFFER_BIN=$BIN is not an executable file"
else
  BIN="$CARGO_TARGET_DIR/$PROFILE/coffer"
  if [[ ! -x "$BIN" || $FORCE_BUILD -eq 1 ]]; then
    command -v cargo >/dev/null 2>&1 || die "cargo not found and no binary at $BIN"
    log "building $BIN"
    # The project's one build command (same feature resolution as the tests, so RocksDB is
    # compiled once per profile).
    if [[ $PROFILE == release ]]; then
      (cd "$ROOT" && cargo build --release --workspace --bins --benches) # as the README builds the benches
    else
      (cd "$ROOT" && cargo build --workspace --bins --tests --benches)
    fi
    [[ -x "$BIN" ]] || die "the build did not produce $BIN"
  fi
fi
BIN_SHA="$(sha256sum "$BIN" | cut -d' ' -f1)"
# What the image is made of: the binary, the Dockerfile and this script.
BUILD_KEY="$(cat <(echo "$BIN_SHA") "$ROOT/deploy/Dockerfile" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"

existing="$(docker image inspect -f '{{ index .Config.Labels "coffer.build.key" }}' "$IMAGE" 2>/dev/null || true)"
previous_id="$(docker image inspect -f '{{ .Id }}' "$IMAGE" 2>/dev/null || true)"
if [[ $FORCE_IMAGE -eq 0 && "$existing" == "$BUILD_KEY" ]]; then
  log "$IMAGE is up to date (binary $BIN, sha256 ${BIN_SHA:0:12})"
  echo "$IMAGE"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# A static busybox.
# ---------------------------------------------------------------------------------------------
is_static() {
  # `ldd` says "not a dynamic executable" (glibc) or "statically linked" for static binaries.
  local out
  out="$(LC_ALL=C ldd "$1" 2>&1 || true)"
  [[ "$out" == *"not a dynamic executable"* || "$out" == *"statically linked"* ]]
}

BUSYBOX_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/coffer-docker"
find_busybox() {
  if [[ -n "${BUSYBOX:-}" ]]; then
    is_static "$BUSYBOX" || die "BUSYBOX=$BUSYBOX is not a statically linked executable"
    echo "$BUSYBOX"
    return
  fi
  local c
  for c in /bin/busybox /usr/bin/busybox "$BUSYBOX_CACHE/bin/busybox"; do
    if [[ -x "$c" ]] && is_static "$c"; then
      echo "$c"
      return
    fi
  done
  # Download the Debian package busybox-static and unpack it in the cache: no root needed, and
  # it does not replace a dynamically linked busybox the machine may have installed.
  command -v apt-get >/dev/null 2>&1 || die "no static busybox found; set BUSYBOX=/path/to/static/busybox"
  local tmp
  tmp="$(mktemp -d)"
  chmod 0755 "$tmp" # apt's download user (_apt) writes there
  if ! (cd "$tmp" && apt-get download busybox-static >&2); then
    log "apt-get download failed; refreshing the package lists"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq >&2 || die "apt-get update failed; install busybox-static or set BUSYBOX"
    (cd "$tmp" && apt-get download busybox-static >&2) || die "cannot download busybox-static"
  fi
  dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/x"
  mkdir -p "$BUSYBOX_CACHE/bin"
  install -m 0755 "$tmp/x/bin/busybox" "$BUSYBOX_CACHE/bin/busybox"
  rm -rf "$tmp"
  is_static "$BUSYBOX_CACHE/bin/busybox" || die "the downloaded busybox is not static"
  echo "$BUSYBOX_CACHE/bin/busybox"
}
BB="$(find_busybox)"

# ---------------------------------------------------------------------------------------------
# The build context.
# ---------------------------------------------------------------------------------------------
CTX="$(mktemp -d "${TMPDIR:-/tmp}/coffer-image.XXXXXX")"
trap 'rm -rf "$CTX"' EXIT
RFS="$CTX/rootfs"
mkdir -p "$RFS/usr/local/bin" "$RFS/bin" "$RFS/etc"

# The binary, without its DWARF sections (the symbol table stays, so backtraces keep names):
# the debug binary is several hundred MB with them.
if command -v objcopy >/dev/null 2>&1; then
  objcopy --strip-debug "$BIN" "$RFS/usr/local/bin/coffer"
else
  cp "$BIN" "$RFS/usr/local/bin/coffer"
fi
chmod 0755 "$RFS/usr/local/bin/coffer"

# Shared libraries and the loader, at the paths the binary asks for.
copy_lib() {
  local src="$1"
  [[ -e "$src" ]] || die "shared library $src (from ldd $BIN) not found"
  mkdir -p "$RFS$(dirname "$src")"
  cp -L "$src" "$RFS$src"
}
if is_static "$BIN"; then
  log "the binary is statically linked"
else
  while read -r line; do
    case "$line" in
    *"=> not found"*) die "ldd: $line" ;;
    *"=> /"*) copy_lib "$(echo "$line" | sed -E 's/.*=> (\/[^ ]+) .*/\1/')" ;;
    /*) copy_lib "${line%% *}" ;;
    esac
  done < <(LC_ALL=C ldd "$BIN")
fi

install -m 0755 "$BB" "$RFS/bin/busybox"
ln -s busybox "$RFS/bin/sh"

cat >"$RFS/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
coffer:x:10001:10001:coffer:/data:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$RFS/etc/group" <<'EOF'
root:x:0:
coffer:x:10001:
nogroup:x:65534:
EOF
# Service names (meta1, kms, ...) come from Docker's DNS; /etc/hosts and /etc/resolv.conf are
# mounted by Docker. glibc >= 2.34 has the files and dns modules built in.
echo 'hosts: files dns' >"$RFS/etc/nsswitch.conf"

cp "$ROOT/deploy/Dockerfile" "$CTX/Dockerfile"

VERSION="$("$BIN" --version 2>/dev/null | head -n1 | awk '{print $2}')"
REV="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"

# `docker build` uses BuildKit through the buildx plugin when it is there; without the plugin
# (as on engines installed from distribution packages) the classic builder does the same job.
if ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi
log "building $IMAGE from $BIN (${VERSION:-?}, $REV, sha256 ${BIN_SHA:0:12})"
docker build -q \
  --build-arg "COFFER_VERSION=${VERSION:-unknown}+$REV" \
  --build-arg "COFFER_BINARY_SHA256=$BIN_SHA" \
  --build-arg "COFFER_BUILD_KEY=$BUILD_KEY" \
  -t "$IMAGE" "$CTX" >&2
# The image must run: the binary finds its libraries and the health-check tool is there.
docker run --rm --entrypoint /usr/local/bin/coffer "$IMAGE" --version >&2 ||
  die "the image $IMAGE does not run coffer"
docker run --rm --entrypoint /bin/busybox "$IMAGE" true || die "the image $IMAGE has no busybox"
# The image this tag named before is left without a name: remove it unless a container uses it.
if [[ -n "$previous_id" && "$previous_id" != "$(docker image inspect -f '{{ .Id }}' "$IMAGE")" ]]; then
  docker rmi "$previous_id" >/dev/null 2>&1 || true
fi
log "built $IMAGE"
echo "$IMAGE"
