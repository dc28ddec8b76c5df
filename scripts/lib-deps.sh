# shellcheck shell=bash
# scripts/lib-deps.sh -- install the Debian packages the build and the lab need,
# only those that are missing. Sourced by scripts/test.sh and scripts/demo.sh.

# What the netns lab uses (scripts/lib-lab.sh; conntrackd for scripts/ha.sh)
# and what building needs.
DEPS_APT_PACKAGES=(
    iproute2 iptables nftables conntrack ethtool tcpdump iputils-ping procps coreutils
    vsftpd lftp curl python3 systemd conntrackd
    man-db podman runc openssl
    # proftpd's libraries (proftpd itself is unpacked: scripts/lib-servers.sh)
    libhiredis0.14 libmemcached11 libmemcachedutil2 libpcre2-posix3
)

deps_log() { printf '[deps] %s\n' "$*" >&2; }

# deps_missing: print the packages of DEPS_APT_PACKAGES (plus a C toolchain if
# there is no `cc`) that are not installed.
deps_missing() {
    local want=("${DEPS_APT_PACKAGES[@]}") p
    command -v cc >/dev/null 2>&1 || want+=(gcc libc6-dev)
    for p in "${want[@]}"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
    done
}

# deps_ensure: install what is missing (apt-get update first). Services of the
# installed packages (vsftpd) are kept from starting in the host namespace with
# a temporary policy-rc.d, removed again afterwards.
deps_ensure() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        deps_log "not a Debian system (no dpkg-query): install the lab's tools yourself: ${DEPS_APT_PACKAGES[*]}"
        return 0
    fi
    local missing
    mapfile -t missing < <(deps_missing)
    if ((${#missing[@]} == 0)); then
        deps_log "all packages present"
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        deps_log "missing packages: ${missing[*]} (run as root to install them)"
        return 1
    fi
    deps_log "installing: ${missing[*]}"
    (
        set -e
        prc=/usr/sbin/policy-rc.d
        if [[ ! -e $prc ]]; then
            printf '#!/bin/sh\n# temporary, from ftp-alg scripts/lib-deps.sh\nexit 101\n' >"$prc"
            chmod 755 "$prc"
            trap 'rm -f "$prc"' EXIT
        fi
        export DEBIAN_FRONTEND=noninteractive
        timeout 900 apt-get update -q
        timeout 1200 apt-get install -y -q --no-install-recommends "${missing[@]}"
    )
    mapfile -t missing < <(deps_missing)
    if ((${#missing[@]})); then
        deps_log "still missing after apt-get install: ${missing[*]}"
        return 1
    fi
}
