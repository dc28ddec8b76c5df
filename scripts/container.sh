#!/usr/bin/env bash
# scripts/container.sh -- build ftp-alg's container image without a registry:
# a statically linked binary (glibc, crt-static) on an empty base
# (deploy/Containerfile), tagged localhost/ftp-alg:VERSION and :latest.
#
#   scripts/container.sh        -> prints the image name
#
# Needs podman (Debian package podman). Run it with deploy/ftp-alg-podman.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
log() { printf '[container] %s\n' "$*" >&2; }
command -v podman >/dev/null 2>&1 || {
    echo "podman not found: apt-get install podman" >&2
    exit 2
}

target=$(rustc -vV | sed -n 's/^host: //p')
log "static build for $target"
RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked -p ftp-alg --target "$target" >&2
bin=target/$target/release/ftp-alg
# A static binary has no interpreter: the empty base has no ld.so.
if readelf -l "$bin" | grep -q 'Requesting program interpreter'; then
    log "$bin is not statically linked"
    exit 1
fi

ctx=target/container
rm -rf "$ctx"
mkdir -p "$ctx"
# No debug info in the image: it is for running, not debugging.
objcopy --strip-debug "$bin" "$ctx/ftp-alg"
cp deploy/ftp-alg.toml "$ctx/ftp-alg.toml"
version=$("$ctx/ftp-alg" --version | awk '{print $2}')
image=localhost/ftp-alg:$version
log "podman build $image"
timeout 600 podman build --quiet -f deploy/Containerfile -t "$image" -t localhost/ftp-alg:latest "$ctx" >&2
echo "$image"
