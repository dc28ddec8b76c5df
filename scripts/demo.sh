#!/usr/bin/env bash
# scripts/demo.sh -- the whole thing in one command, as root on Debian:
#
#   1. installs the packages it needs when they are missing (vsftpd, lftp,
#      curl, iptables, nftables, conntrack, ...);
#   2. builds ftp-alg (cargo build --release --locked);
#   3. builds a lab of network namespaces: a gateway with a default-drop,
#      stateful firewall and NAT (SNAT that lengthens and shortens the PORT
#      text, a port-forwarded inside server, IPv6 without NAT), vsftpd servers,
#      curl and lftp clients;
#   4. runs real downloads and uploads (sha256-checked) through the gateway in
#      every mode -- none (no ALG: data connections are blocked), kernel (the
#      kernel's nf_conntrack_ftp helper, for comparison) and alg (ftp-alg on
#      the gateway) -- and prints the result table;
#   5. removes the lab (also on failure or Ctrl-C).
#
# Exit status: 0 when every mode did what it should (see scripts/lab.sh).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib-deps.sh
source scripts/lib-deps.sh

if [[ $(id -u) -ne 0 ]]; then
    echo "demo.sh needs root (network namespaces, netfilter): run it as root" >&2
    exit 2
fi
deps_ensure
command -v cargo >/dev/null 2>&1 || {
    echo "cargo not found: install the Rust toolchain (rustup) first" >&2
    exit 2
}

echo "== building ftp-alg"
cargo build --release --locked
export FTP_ALG_BIN=$PWD/target/release/ftp-alg

echo "(\`target/release/ftp-alg rules\` prints the rules it installs on a gateway)"

echo
echo "== transfers through the lab gateway: none, kernel helper, ftp-alg"
exec bash scripts/lab.sh matrix --mode "${DEMO_MODES:-none,kernel,alg}"
