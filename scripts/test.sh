#!/usr/bin/env bash
# scripts/test.sh -- run the tests of ftp-alg.
#
# As root on Debian: installs the packages the lab needs when they are missing,
# builds the release binary, then runs every test target: unit tests, the
# scripted-session integration tests, and the root-only tests (rules, netlink,
# and tests/e2e_netns.rs, which drives scripts/lab.sh in network namespaces
# with real vsftpd, curl and lftp). The root-only tests FAIL, they do not skip,
# when run without root.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib-deps.sh
source scripts/lib-deps.sh

if [[ $(id -u) -eq 0 ]]; then
    deps_ensure
else
    deps_log "not root: not installing packages; the root-only tests will fail"
fi

command -v cargo >/dev/null 2>&1 || {
    echo "cargo not found: install the Rust toolchain (rustup) first" >&2
    exit 1
}

echo "== cargo build --locked --release"
cargo build --locked --release
# Tier 1, pure: the core's unit, session, property and conformance-table
# tests and the daemon's unit tests; what a normal user's `cargo test` runs.
echo "== cargo test --locked --workspace --all-targets"
cargo test --locked --workspace --all-targets
# Tier 2, root: netns labs with real servers and clients, rules, netlink.
echo "== cargo test --locked --features root-tests (root tier)"
cargo test --locked --features root-tests --test '*_root' --test '*_netns' 
# Fuzzing smoke run: every cargo-fuzz target for 20 s (fails on any crash).
# Longer runs by hand: scripts/fuzz.sh 600
echo "== scripts/fuzz.sh 20"
bash scripts/fuzz.sh 20
