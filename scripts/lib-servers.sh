# shellcheck shell=bash
# scripts/lib-servers.sh -- FTP servers besides vsftpd for the lab.
#
# Debian's FTP servers conflict with each other (all provide ftp-server), so
# installing proftpd would remove vsftpd. proftpd is therefore downloaded with
# `apt-get download` and unpacked with `dpkg -x` into a cache directory of the
# lab's own, and run from there; its shared-library dependencies do not
# conflict and come from scripts/lib-deps.sh (DEPS_APT_PACKAGES).
#
# Sourced after scripts/lib-lab.sh (uses lab_log, lab_die, lab_record,
# lab_ftp_user and LAB_STATE).

# Where the unpacked packages live (kept across runs: a fresh machine
# downloads them once).
PROFTPD_CACHE=${PROFTPD_CACHE:-/var/cache/ftp-alg-lab/proftpd}
PROFTPD_PACKAGES=(proftpd-core proftpd-mod-crypto)

# proftpd_prepare: makes sure $PROFTPD_CACHE/root holds proftpd and its
# modules (mod_tls is in proftpd-mod-crypto); prints the binary's path.
proftpd_prepare() {
    local root=$PROFTPD_CACHE/root bin=$PROFTPD_CACHE/root/usr/sbin/proftpd
    if [[ ! -x $bin || ! -e $root/usr/lib/proftpd/mod_tls.so ]]; then
        local dl=$PROFTPD_CACHE/debs
        rm -rf "$dl" "$root"
        mkdir -p "$dl" "$root"
        # apt's sandbox user cannot write into a root-owned directory.
        chmod 755 "$PROFTPD_CACHE"
        (cd "$dl" && timeout 300 apt-get download -q "${PROFTPD_PACKAGES[@]}" >&2 2>/dev/null) ||
            (cd "$dl" && timeout 300 apt-get -o APT::Sandbox::User=root download -q "${PROFTPD_PACKAGES[@]}" >&2) ||
            lab_die "apt-get download ${PROFTPD_PACKAGES[*]} failed (run apt-get update?)"
        local deb
        for deb in "$dl"/*.deb; do dpkg -x "$deb" "$root" || lab_die "dpkg -x $deb failed"; done
    fi
    if ldd "$bin" | grep -q 'not found'; then
        lab_die "proftpd misses libraries: $(ldd "$bin" | grep 'not found' | tr -s ' \t' ' ')"
    fi
    echo "$bin"
}

# lab_proftpd NAME NS ROOT DIRECTIVES...: an anonymous proftpd (downloads and
# uploads under ROOT) in namespace NS, in the foreground of a background job
# recorded as proftpd-NAME. DIRECTIVES are extra configuration lines (Port,
# DefaultAddress, PassivePorts, MasqueradeAddress, TLS settings, ...);
# mod_tls is loaded, so TLS* directives work. Log: $LAB_STATE/proftpd-NAME.log.
lab_proftpd() {
    local name=$1 ns=$2 root=$3
    shift 3
    local bin conf="$LAB_STATE/proftpd-$name.conf" user
    bin=$(proftpd_prepare) || exit 2
    user=$(lab_ftp_user)
    {
        cat <<EOC
ServerName "ftp-alg lab $name"
ServerType standalone
DefaultServer on
ModulePath $PROFTPD_CACHE/root/usr/lib/proftpd
LoadModule mod_tls.c
ScoreboardFile $LAB_STATE/proftpd-$name.scoreboard
PidFile $LAB_STATE/proftpd-$name.pid
DelayTable none
WtmpLog off
UseReverseDNS off
UseIPv6 on
SystemLog $LAB_STATE/proftpd-$name.log
TransferLog none
ServerIdent on "ftp-alg lab $name"
User $user
Group nogroup
MaxInstances 64
TimeoutIdle 60
TimeoutNoTransfer 60
AllowOverwrite on
<Anonymous $root>
  User $user
  Group nogroup
  UserAlias anonymous $user
  RequireValidShell off
  AnonRequirePassword off
  <Limit WRITE>
    AllowAll
  </Limit>
</Anonymous>
EOC
        printf '%s\n' "$@"
    } >"$conf"
    ip netns exec "$ns" "$bin" --nodaemon --config "$conf" </dev/null >"$LAB_STATE/proftpd-$name.out" 2>&1 &
    lab_record "proftpd-$name" "$!"
}
