#!/usr/bin/env bash
# scripts/package.sh -- build the Debian package of ftp-alg.
#
#   scripts/package.sh            -> target/debian/ftp-alg_VERSION-1_ARCH.deb
#
# 1. builds the release binary (cargo build --release --locked);
# 2. generates from that binary, into target/deb-assets/, what the package
#    ships besides it: the man page (section 8, gzipped) and the bash, zsh and
#    fish completions (`ftp-alg man`, `ftp-alg completions SHELL`), so they
#    always describe the binary they come with;
# 3. runs `cargo deb --no-build` with the metadata in Cargo.toml
#    ([package.metadata.deb]); installs cargo-deb first when it is missing.
#
# The last line printed is the path of the .deb. Install it with
# `dpkg -i PATH` (then `systemctl daemon-reload; systemctl enable --now
# ftp-alg`: the package does not start the service, it changes the firewall).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Pinned, so that every machine builds the same package layout.
CARGO_DEB_VERSION=3.8.0

log() { printf '[package] %s\n' "$*" >&2; }

command -v cargo >/dev/null 2>&1 || {
    echo "cargo not found: install the Rust toolchain (rustup) first" >&2
    exit 2
}
if ! cargo deb --version >/dev/null 2>&1; then
    log "installing cargo-deb $CARGO_DEB_VERSION (cargo install, a few minutes)"
    timeout 1200 cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" >&2
fi

log "cargo build --release --locked"
cargo build --release --locked -p ftp-alg >&2
bin=target/release/ftp-alg

assets=target/deb-assets
rm -rf "$assets"
mkdir -p "$assets"
# -n: no name or time stamp in the gzip header, so the page is reproducible.
"$bin" man | gzip -9n >"$assets/ftp-alg.8.gz"
"$bin" completions bash >"$assets/ftp-alg.bash"
"$bin" completions zsh >"$assets/_ftp-alg"
"$bin" completions fish >"$assets/ftp-alg.fish"
for f in "$assets"/*; do
    [[ -s $f ]] || {
        log "generated file $f is empty"
        exit 1
    }
done

log "cargo deb --no-build"
deb=$(cargo deb -p ftp-alg --no-build --locked --output target/debian/ | tail -n 1)
[[ -f $deb ]] || {
    log "cargo deb did not report a package file (got: $deb)"
    exit 1
}
log "built $deb"
echo "$deb"
