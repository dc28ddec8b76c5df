# shellcheck shell=bash disable=SC2034  # globals are shared with the scripts that source this file
# scripts/lib-lab.sh -- the network-namespace FTP lab of ftp-alg.
#
# Sourced by scripts/lab.sh, scripts/bench-sessions.sh and scripts/demo.sh.
# Everything here runs as root and touches only namespaces named
# "fa-lab-<ID>-*" (LAB_NS_BASE replaces "fa-lab-") that it created itself,
# addresses from the documentation ranges (192.0.2.0/24, 198.51.100.0/24,
# 203.0.113.0/24, 2001:db8::/32) and processes it started (ended by PID,
# or found with `ip netns pids` inside its own namespaces). Every wait is
# bounded in count and time.
#
# Topology (one lab):
#
#   cl 198.51.100.2   2001:db8:1::2 --+                       +-- so 203.0.113.10 2001:db8:2::10 (vsftpd v4 + v6)
#   cs 198.51.100.222 -----------------+ brc  [sw]  bro       +-- co 203.0.113.20 2001:db8:2::20
#                                      |                      |
#                          gw c0 198.51.100.1        gw o0 203.0.113.1, 203.0.113.254
#                                2001:db8:1::1             2001:db8:2::1
#                          gw s0 192.0.2.1 ---- si 192.0.2.10 (vsftpd, DNAT 203.0.113.1:21)
#
#   SNAT 198.51.100.2   -> 203.0.113.254  ("198,51,100,2"   -> "203,0,113,254": +1)
#   SNAT 198.51.100.222 -> 203.0.113.1    ("198,51,100,222" -> "203,0,113,1":   -3)
#   SNAT 192.0.2.0/24   -> 203.0.113.1    (active mode from si)
#   DNAT 203.0.113.1:21 -> 192.0.2.10:21
#   IPv6 routed without NAT: cl 2001:db8:1::2 -> so 2001:db8:2::10.
#
# The two bridges live in their own namespace "sw" (with bridge netfilter
# off), so that bridged traffic never crosses the gateway's firewall.

LAB_REPO=${LAB_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# State shared with the scripts that source this file.
# shellcheck disable=SC2034
KERNEL_HELPER_ON=0 PCAP_ON=0 PCAP_PID=

lab_log() { printf '[lab] %s\n' "$*" >&2; }
lab_die() {
    printf '[lab] ERROR: %s\n' "$*" >&2
    exit 2
}

# ---------------------------------------------------------------- naming ---

# lab_names ID: set every global name of lab ID.
lab_names() {
    LAB_ID=$1
    [[ $LAB_ID =~ ^[A-Za-z0-9]{1,8}$ ]] || lab_die "lab id must be 1-8 letters/digits, got '$LAB_ID'"
    # LAB_NS_BASE: the namespaces' name prefix (a lab run next to other
    # people's labs on one machine may need its own).
    LAB_PREFIX="${LAB_NS_BASE:-fa-lab-}$LAB_ID-"
    NS_GW=${LAB_PREFIX}gw
    NS_SW=${LAB_PREFIX}sw
    NS_CL=${LAB_PREFIX}cl
    NS_CS=${LAB_PREFIX}cs
    NS_SO=${LAB_PREFIX}so
    NS_CO=${LAB_PREFIX}co
    NS_SI=${LAB_PREFIX}si
    LAB_ALL_NS=("$NS_GW" "$NS_SW" "$NS_CL" "$NS_CS" "$NS_SO" "$NS_CO" "$NS_SI")
    LAB_STATE=${LAB_STATE_BASE:-/tmp}/fa-lab-$LAB_ID
    LAB_LOGS=${LAB_LOG_DIR:-$LAB_REPO/target/lab-logs}/$LAB_ID
    # gateway interface names (inside the gw namespace)
    GW_OUT=o0
    GW_CLI=c0
    GW_SRV=s0
}

nsx() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

# iptables-nft explicitly: the lab must never create legacy xtables rules.
# FW_NS names the namespace whose firewall these helpers (and ipt4/ipt6,
# invalid_count, lab_ruleset, lab_zero_counters, lab_flush_conntrack,
# alg_start) act on: the gateway unless a script sets it, e.g. the host lab
# (scripts/host.sh), where ftp-alg runs on the server or client host itself.
ipt4() { nsx "${FW_NS:-$NS_GW}" iptables-nft -w 5 "$@"; }
ipt6() { nsx "${FW_NS:-$NS_GW}" ip6tables-nft -w 5 "$@"; }

lab_exists() { [[ -e /run/netns/$NS_GW ]]; }

# ------------------------------------------------------------- preflight ---

lab_preflight() {
    [[ $(id -u) -eq 0 ]] || lab_die "the lab needs root and network namespaces (run as root)"
    local c
    for c in ip iptables-nft ip6tables-nft nft vsftpd lftp curl conntrack ethtool timeout sha256sum ss ping tcpdump; do
        command -v "$c" >/dev/null 2>&1 || lab_die "missing command '$c' (run scripts/test.sh or scripts/demo.sh, which install the lab's packages)"
    done
    if ! iptables -V 2>/dev/null | grep -q nf_tables; then
        lab_log "warning: 'iptables' is not the nf_tables variant ($(iptables -V 2>&1)); the lab uses iptables-nft explicitly"
    fi
    # Can we create a namespace at all?
    local probe="${LAB_NS_BASE:-fa-lab-}probe$$"
    ip netns add "$probe" 2>/dev/null || lab_die "cannot create network namespaces (ip netns add failed): root and netns support are required"
    ip netns del "$probe"
}

# ------------------------------------------------------------ processes ---

# lab_record NAME PID: remember a process we started.
lab_record() { echo "$1 $2" >>"$LAB_STATE/pids"; }

# pid_in_lab PID: true if PID lives in one of this lab's namespaces.
pid_in_lab() {
    local n
    n=$(ip netns identify "$1" 2>/dev/null) || return 1
    [[ $n == "$LAB_PREFIX"* ]]
}

# stop_pid PID [SECONDS]: TERM, wait (bounded), KILL. Only for lab processes.
stop_pid() {
    local pid=$1 secs=${2:-5} i
    kill -0 "$pid" 2>/dev/null || return 0
    pid_in_lab "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    if pid_in_lab "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
}

# ------------------------------------------------------------------- up ---

lab_veth() { # nsA devA nsB devB
    ip link add name "$2" netns "$1" type veth peer name "$4" netns "$3"
    local ns dev ns_dev
    for ns_dev in "$1:$2" "$3:$4"; do
        ns=${ns_dev%%:*}
        dev=${ns_dev#*:}
        nsx "$ns" ethtool -K "$dev" gro off gso off tso off
        nsx "$ns" ip link set dev "$dev" up
    done
}

lab_ftp_user() {
    if getent passwd ftp >/dev/null; then echo ftp; else echo nobody; fi
}

# lab_vsftpd NAME NS ROOT LISTEN-LINES...
lab_vsftpd() {
    local name=$1 ns=$2 root=$3
    shift 3
    local conf="$LAB_STATE/vsftpd-$name.conf"
    {
        printf '%s\n' "$@"
        cat <<EOF
background=NO
anonymous_enable=YES
local_enable=NO
write_enable=YES
anon_upload_enable=YES
anon_mkdir_write_enable=NO
anon_other_write_enable=NO
anon_world_readable_only=YES
no_anon_password=YES
anon_root=$root
ftp_username=$(lab_ftp_user)
secure_chroot_dir=$LAB_STATE/empty
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
pasv_enable=YES
port_enable=YES
connect_from_port_20=NO
pasv_promiscuous=NO
port_promiscuous=NO
connect_timeout=5
accept_timeout=10
data_connection_timeout=20
idle_session_timeout=60
max_clients=0
max_per_ip=0
tcp_wrappers=NO
dirmessage_enable=NO
xferlog_enable=YES
xferlog_std_format=NO
log_ftp_protocol=YES
syslog_enable=NO
dual_log_enable=NO
vsftpd_log_file=$LAB_STATE/vsftpd-$name.log
ftpd_banner=ftp-alg lab $name
EOF
    } >"$conf"
    chmod 600 "$conf"
    ip netns exec "$ns" vsftpd "$conf" </dev/null >"$LAB_STATE/vsftpd-$name.out" 2>&1 &
    local pid=$!
    lab_record "vsftpd-$name" "$pid"
}

# lab_wait_listen NS ADDR:PORT: bounded wait for a listening socket.
lab_wait_listen() {
    local ns=$1 want=$2 i
    for ((i = 0; i < 50; i++)); do
        if nsx "$ns" ss -Hltn 2>/dev/null | awk '{print $4}' | grep -qxF "$want"; then return 0; fi
        sleep 0.1
    done
    lab_die "nothing listens on $want in $ns after 5 s (see $LAB_STATE/vsftpd-*.out)"
}

# lab_namespaces: creates every namespace of LAB_ALL_NS (loopback up, no
# router advertisements, no duplicate address detection), and keeps
# netfilter off bridged frames in the switch namespace NS_SW.
lab_namespaces() {
    local ns
    for ns in "${LAB_ALL_NS[@]}"; do
        ip netns add "$ns"
        nsx "$ns" ip link set lo up
        nsx "$ns" sysctl -qw net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0 \
            net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 >/dev/null
    done
    nsx "$NS_SW" sysctl -qw net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0 \
        net.bridge.bridge-nf-call-arptables=0 >/dev/null 2>&1 || true
}

# lab_state_init: a fresh state directory (pid list, server roots, data)
# and log directory for lab LAB_ID; keeps the logs of the 30 most recent labs.
lab_state_init() {
    case $LAB_STATE in /tmp/fa-lab-* | */fa-lab-*) ;; *) lab_die "odd state dir $LAB_STATE" ;; esac
    rm -rf "$LAB_STATE" "$LAB_LOGS"
    local old
    if [[ -d ${LAB_LOGS%/*} ]]; then
        while read -r old; do
            if [[ -n $old && -d $old ]]; then rm -rf -- "$old"; fi
        done < <(find "${LAB_LOGS%/*}" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' | sort -rn | tail -n +31 | cut -d' ' -f2-)
    fi
    mkdir -p "$LAB_STATE" "$LAB_LOGS"
    chmod 755 "$LAB_STATE"
    : >"$LAB_STATE/pids"
    lab_log "building lab $LAB_ID (namespaces ${LAB_PREFIX}*, state $LAB_STATE, logs $LAB_LOGS)"
}

# lab_files SERVER...: the transfer files (file.bin and up.bin, 1 MiB each,
# small.bin) and, for each SERVER, an anonymous root
# $LAB_STATE/srv-SERVER/root with the download files and a writable up/.
lab_files() {
    mkdir -p "$LAB_STATE/empty" "$LAB_STATE/data" "$LAB_STATE/out" "$LAB_STATE/home"
    chmod 755 "$LAB_STATE/empty"
    head -c 1048576 /dev/urandom >"$LAB_STATE/data/file.bin"
    head -c 1048576 /dev/urandom >"$LAB_STATE/data/up.bin"
    head -c 4096 /dev/urandom >"$LAB_STATE/data/small.bin"
    local srv user
    user=$(lab_ftp_user)
    for srv in "$@"; do
        mkdir -p "$LAB_STATE/srv-$srv/root/up"
        cp "$LAB_STATE/data/file.bin" "$LAB_STATE/data/small.bin" "$LAB_STATE/srv-$srv/root/"
        chmod 755 "$LAB_STATE/srv-$srv" "$LAB_STATE/srv-$srv/root"
        chmod 644 "$LAB_STATE/srv-$srv/root/"*.bin
        chown "$user" "$LAB_STATE/srv-$srv/root/up"
        chmod 755 "$LAB_STATE/srv-$srv/root/up"
    done
}

lab_up() {
    lab_preflight
    if lab_exists; then lab_die "lab $LAB_ID already exists (scripts/lab.sh down --id $LAB_ID)"; fi
    lab_state_init

    lab_namespaces
    # The switch: two bridges.
    nsx "$NS_SW" ip link add name bro type bridge stp_state 0 forward_delay 0
    nsx "$NS_SW" ip link add name brc type bridge stp_state 0 forward_delay 0
    nsx "$NS_SW" ip link set dev bro up
    nsx "$NS_SW" ip link set dev brc up

    lab_veth "$NS_GW" "$GW_OUT" "$NS_SW" gwo
    lab_veth "$NS_SO" eth0 "$NS_SW" so
    lab_veth "$NS_CO" eth0 "$NS_SW" co
    lab_veth "$NS_GW" "$GW_CLI" "$NS_SW" gwc
    lab_veth "$NS_CL" eth0 "$NS_SW" cl
    lab_veth "$NS_CS" eth0 "$NS_SW" cs
    lab_veth "$NS_GW" "$GW_SRV" "$NS_SI" eth0
    local p
    for p in gwo so co; do nsx "$NS_SW" ip link set dev "$p" master bro; done
    for p in gwc cl cs; do nsx "$NS_SW" ip link set dev "$p" master brc; done

    # Gateway.
    nsx "$NS_GW" ip addr add 203.0.113.1/24 dev "$GW_OUT"
    nsx "$NS_GW" ip addr add 203.0.113.254/24 dev "$GW_OUT"
    nsx "$NS_GW" ip addr add 2001:db8:2::1/64 dev "$GW_OUT" nodad
    nsx "$NS_GW" ip addr add 198.51.100.1/24 dev "$GW_CLI"
    nsx "$NS_GW" ip addr add 2001:db8:1::1/64 dev "$GW_CLI" nodad
    nsx "$NS_GW" ip addr add 192.0.2.1/24 dev "$GW_SRV"
    nsx "$NS_GW" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 >/dev/null
    # Inside clients.
    nsx "$NS_CL" ip addr add 198.51.100.2/24 dev eth0
    nsx "$NS_CL" ip addr add 2001:db8:1::2/64 dev eth0 nodad
    nsx "$NS_CL" ip route add default via 198.51.100.1
    nsx "$NS_CL" ip -6 route add default via 2001:db8:1::1
    nsx "$NS_CS" ip addr add 198.51.100.222/24 dev eth0
    nsx "$NS_CS" ip route add default via 198.51.100.1
    # Outside hosts: no IPv4 default route (inside addresses are not routable
    # "on the internet"), IPv6 routed through the gateway.
    nsx "$NS_SO" ip addr add 203.0.113.10/24 dev eth0
    nsx "$NS_SO" ip addr add 2001:db8:2::10/64 dev eth0 nodad
    nsx "$NS_SO" ip -6 route add default via 2001:db8:2::1
    nsx "$NS_CO" ip addr add 203.0.113.20/24 dev eth0
    nsx "$NS_CO" ip addr add 2001:db8:2::20/64 dev eth0 nodad
    nsx "$NS_CO" ip -6 route add default via 2001:db8:2::1
    # Inside server.
    nsx "$NS_SI" ip addr add 192.0.2.10/24 dev eth0
    nsx "$NS_SI" ip route add default via 192.0.2.1

    [[ ${LAB_NO_FW:-0} == 1 ]] || lab_firewall

    # Files and servers.
    lab_files so si
    # LAB_NO_SERVERS=1: the plain vsftpds stay off (a script that runs
    # servers of its own on these addresses, e.g. scripts/ftps.sh).
    if [[ ${LAB_NO_SERVERS:-0} != 1 ]]; then
        lab_vsftpd so4 "$NS_SO" "$LAB_STATE/srv-so/root" listen=YES listen_ipv6=NO listen_address=203.0.113.10
        lab_vsftpd so6 "$NS_SO" "$LAB_STATE/srv-so/root" listen=NO listen_ipv6=YES listen_address6=2001:db8:2::10
        lab_vsftpd si4 "$NS_SI" "$LAB_STATE/srv-si/root" listen=YES listen_ipv6=NO listen_address=192.0.2.10
        lab_wait_listen "$NS_SO" 203.0.113.10:21
        lab_wait_listen "$NS_SO" "[2001:db8:2::10]:21"
        lab_wait_listen "$NS_SI" 192.0.2.10:21
    fi

    # Reachability of the gateway itself (ICMP to the gateway is allowed).
    local pair
    [[ ${LAB_NO_FW:-0} == 1 ]] || for pair in "$NS_CL:198.51.100.1" "$NS_CS:198.51.100.1" "$NS_SO:203.0.113.1" "$NS_CO:203.0.113.254" \
        "$NS_SI:192.0.2.1" "$NS_CL:2001:db8:1::1" "$NS_SO:2001:db8:2::1"; do
        nsx "${pair%%:*}" ping -q -c 1 -W 2 "${pair#*:}" >/dev/null 2>&1 ||
            lab_die "lab self-check: ping ${pair#*:} from ${pair%%:*} failed"
    done
    lab_log "lab $LAB_ID is up"
}

# The gateway's firewall: default drop, stateful, INVALID dropped and counted
# first, NEW allowed only for the FTP control connections.
lab_firewall() {
    local t
    for t in ipt4 ipt6; do
        $t -t filter -P INPUT DROP
        $t -t filter -P FORWARD DROP
        $t -t filter -P OUTPUT ACCEPT
        $t -t filter -A INPUT -m conntrack --ctstate INVALID -j DROP
        $t -t filter -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
        $t -t filter -A INPUT -i lo -j ACCEPT
        $t -t filter -A FORWARD -m conntrack --ctstate INVALID -j DROP
        $t -t filter -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
    done
    ipt4 -t filter -A INPUT -p icmp -j ACCEPT
    ipt6 -t filter -A INPUT -p ipv6-icmp -j ACCEPT
    # Control connections only.
    ipt4 -t filter -A FORWARD -i "$GW_CLI" -o "$GW_OUT" -s 198.51.100.0/24 -d 203.0.113.10 \
        -p tcp --dport 21 -m conntrack --ctstate NEW -j ACCEPT
    ipt4 -t filter -A FORWARD -i "$GW_OUT" -o "$GW_SRV" -d 192.0.2.10 \
        -p tcp --dport 21 -m conntrack --ctstate NEW --ctorigdst 203.0.113.1 -j ACCEPT
    ipt6 -t filter -A FORWARD -i "$GW_CLI" -o "$GW_OUT" -s 2001:db8:1::/64 -d 2001:db8:2::10 \
        -p tcp --dport 21 -m conntrack --ctstate NEW -j ACCEPT
    # NAT.
    ipt4 -t nat -A PREROUTING -d 203.0.113.1 -p tcp --dport 21 -j DNAT --to-destination 192.0.2.10
    ipt4 -t nat -A POSTROUTING -s 198.51.100.2 -o "$GW_OUT" -j SNAT --to-source 203.0.113.254
    ipt4 -t nat -A POSTROUTING -s 198.51.100.222 -o "$GW_OUT" -j SNAT --to-source 203.0.113.1
    ipt4 -t nat -A POSTROUTING -s 192.0.2.0/24 -o "$GW_OUT" -j SNAT --to-source 203.0.113.1
}

# Reference mode: the kernel's FTP helper (nf_conntrack_ftp + nf_nat_ftp).
# Used ONLY for comparison; ftp-alg's own setup never attaches it.
lab_kernel_helper() { # on|off
    local op=-A
    if [[ $1 == off ]]; then op=-D; fi
    KERNEL_HELPER_ON=1
    ipt4 -t raw "$op" PREROUTING -p tcp --dport 21 -j CT --helper ftp
    ipt6 -t raw "$op" PREROUTING -p tcp --dport 21 -j CT --helper ftp
    # RELATED is accepted by the second FORWARD rule of the base firewall.
    if [[ $1 == off ]]; then KERNEL_HELPER_ON=0; fi
}

# none_wait_servers: the fast-failing clients of mode none give up before
# vsftpd does (its accept_timeout and connect_timeout); wait, at most 15 s,
# until the servers have closed those control connections too, so that
# their late FINs do not reach the next mode after its conntrack flush,
# where they would count as INVALID.
none_wait_servers() {
    local i n
    for ((i = 0; i < 150; i++)); do
        n=$( {
            nsx "$NS_GW" conntrack -L -f ipv4 -p tcp --dport 21 2>/dev/null
            nsx "$NS_GW" conntrack -L -f ipv6 -p tcp --dport 21 2>/dev/null
        } | grep -cE 'ESTABLISHED|FIN_WAIT|CLOSE_WAIT|LAST_ACK|SYN_' || true)
        ((n == 0)) && return 0
        sleep 0.1
    done
    lab_log "mode none: $n control connections still open after 15 s"
}

lab_flush_conntrack() {
    nsx "${FW_NS:-$NS_GW}" conntrack -F >/dev/null 2>&1 || true
    nsx "${FW_NS:-$NS_GW}" conntrack -F expect >/dev/null 2>&1 || true
}

# -------------------------------------------------------------- host lab ---
# The host-mode lab (issue 11, scripts/host.sh; reusable by other host-mode
# labs, e.g. FTPS): ftp-alg runs on the FTP server or client host itself,
# whose INPUT is `policy drop`. One bridge (namespace sw) joins every
# outside host; two hosts have an inside link of their own:
#
#   srv 203.0.113.10 2001:db8:2::10  server host: vsftpd (.10/::10) and
#       203.0.113.11 2001:db8:2::11  proftpd (.11/::11), INPUT policy drop
#   cl  203.0.113.20 2001:db8:2::20  client of the servers
#   th  203.0.113.30 2001:db8:2::30  a third host (must not use cl's pinholes)
#   ch  203.0.113.40 2001:db8:2::40  client host, INPUT policy drop
#   os  203.0.113.50 2001:db8:2::50  an outside server (vsftpd, no firewall)
#   rt  203.0.113.61 (own), 203.0.113.60 (1:1 NAT of sn) --eth1-- 192.0.2.1
#       sn 192.0.2.10               server host behind rt's 1:1 NAT, which
#                                   it cannot see; INPUT policy drop
#   gs  203.0.113.70 (own vsftpd), 203.0.113.71 (port 21 forwarded to gi)
#       --eth1-- 198.51.100.1       gateway and server at once: INPUT and
#       gi 198.51.100.10            FORWARD policy drop, SNAT of gi to .71
#
# The host firewalls accept ct state established (no RELATED rule: only
# ftp-alg's marked pinholes can admit a data connection), new tcp dport 21
# on the server hosts, loopback and ICMP (IPv6 neighbour discovery), and
# drop and count INVALID first (invalid_count INPUT with FW_NS=host).

# host_lab_names ID [PREFIX]: the names of host lab ID; its namespaces are
# "PREFIX-ID-*" (PREFIX default "hl"), its state and logs those of lab_names.
host_lab_names() {
    lab_names "$1"
    local pfx=${2:-hl}
    [[ $pfx =~ ^[a-z0-9]{1,6}$ ]] || lab_die "host lab prefix must be 1-6 lower-case letters/digits, got '$pfx'"
    LAB_PREFIX="$pfx-$1-"
    NS_SW=${LAB_PREFIX}sw NS_SRV=${LAB_PREFIX}srv NS_CL=${LAB_PREFIX}cl NS_TH=${LAB_PREFIX}th
    NS_CH=${LAB_PREFIX}ch NS_OS=${LAB_PREFIX}os NS_RT=${LAB_PREFIX}rt NS_SN=${LAB_PREFIX}sn
    NS_GS=${LAB_PREFIX}gs NS_GI=${LAB_PREFIX}gi
    # The lab's only gateway; the main lab's other names do not exist here.
    NS_GW=$NS_GS NS_CS= NS_SO= NS_CO= NS_SI=
    LAB_ALL_NS=("$NS_SW" "$NS_SRV" "$NS_CL" "$NS_TH" "$NS_CH" "$NS_OS" "$NS_RT" "$NS_SN" "$NS_GS" "$NS_GI")
}

# host_addr NS ADDR4 ADDR6...: addresses on eth0 (an empty ADDR6 skips it).
host_addr() {
    local ns=$1 a
    shift
    for a in "$@"; do
        [[ -n $a ]] || continue
        if [[ $a == *:* ]]; then nsx "$ns" ip addr add "$a/64" dev eth0 nodad; else nsx "$ns" ip addr add "$a/24" dev eth0; fi
    done
}

# host_lab_up: the namespaces, links, addresses, NAT and host firewalls of
# the host lab named by host_lab_names, plus the transfer files and server
# roots (srv-hv srv-hp srv-os srv-sn srv-gs srv-gi); no server runs yet
# (host_lab_servers starts the plain ones).
host_lab_up() {
    lab_preflight
    [[ ! -e /run/netns/$NS_SRV ]] || lab_die "host lab $LAB_ID already exists"
    lab_state_init
    lab_namespaces
    nsx "$NS_SW" ip link add name br0 type bridge stp_state 0 forward_delay 0
    nsx "$NS_SW" ip link set dev br0 up
    local h ns
    for h in srv cl th ch os rt gs; do
        ns=${LAB_PREFIX}$h
        lab_veth "$ns" eth0 "$NS_SW" "$h"
        nsx "$NS_SW" ip link set dev "$h" master br0
    done
    lab_veth "$NS_RT" eth1 "$NS_SN" eth0
    lab_veth "$NS_GS" eth1 "$NS_GI" eth0
    host_addr "$NS_SRV" 203.0.113.10 203.0.113.11 2001:db8:2::10 2001:db8:2::11
    host_addr "$NS_CL" 203.0.113.20 2001:db8:2::20
    host_addr "$NS_TH" 203.0.113.30 2001:db8:2::30
    host_addr "$NS_CH" 203.0.113.40 2001:db8:2::40
    host_addr "$NS_OS" 203.0.113.50 2001:db8:2::50
    # The 1:1 NAT in front of sn: everything to .60 goes to sn, sn's
    # connections leave as .60; nothing filtered, no ALG.
    host_addr "$NS_RT" 203.0.113.61 203.0.113.60
    nsx "$NS_RT" ip addr add 192.0.2.1/24 dev eth1
    nsx "$NS_RT" sysctl -qw net.ipv4.ip_forward=1 >/dev/null
    host_addr "$NS_SN" 192.0.2.10
    nsx "$NS_SN" ip route add default via 192.0.2.1
    (
        FW_NS=$NS_RT
        ipt4 -t nat -A PREROUTING -d 203.0.113.60 -j DNAT --to-destination 192.0.2.10
        ipt4 -t nat -A POSTROUTING -s 192.0.2.10 -o eth0 -j SNAT --to-source 203.0.113.60
    )
    # The gateway-and-server: its own vsftpd on .70, a port forward of
    # .71:21 to gi (the container-host shape).
    host_addr "$NS_GS" 203.0.113.70 203.0.113.71 2001:db8:2::70
    nsx "$NS_GS" ip addr add 198.51.100.1/24 dev eth1
    nsx "$NS_GS" sysctl -qw net.ipv4.ip_forward=1 >/dev/null
    nsx "$NS_GI" ip addr add 198.51.100.10/24 dev eth0
    nsx "$NS_GI" ip route add default via 198.51.100.1
    (
        FW_NS=$NS_GS
        ipt4 -t nat -A PREROUTING -d 203.0.113.71 -p tcp --dport 21 -j DNAT --to-destination 198.51.100.10
        ipt4 -t nat -A POSTROUTING -s 198.51.100.0/24 -o eth0 -j SNAT --to-source 203.0.113.71
    )
    host_firewall "$NS_SRV" server
    host_firewall "$NS_CH" client
    host_firewall "$NS_SN" server
    host_firewall "$NS_GS" gateway
    lab_files hv hp os sn gs gi
    lab_log "host lab $LAB_ID is up (no servers yet)"
}

# host_firewall NS server|client|gateway: INPUT policy drop with only
# established, loopback, ICMP and (server, gateway) new control connections
# to port 21 accepted; a gateway's FORWARD too, with the control connections
# of its port forward.
host_firewall() {
    local FW_NS=$1 role=$2 t
    for t in ipt4 ipt6; do
        $t -t filter -P INPUT DROP
        $t -t filter -P OUTPUT ACCEPT
        $t -t filter -A INPUT -m conntrack --ctstate INVALID -j DROP
        $t -t filter -A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT
        $t -t filter -A INPUT -i lo -j ACCEPT
        if [[ $role != client ]]; then
            $t -t filter -A INPUT -p tcp --dport 21 -m conntrack --ctstate NEW -j ACCEPT
        fi
        if [[ $role == gateway ]]; then
            $t -t filter -P FORWARD DROP
            $t -t filter -A FORWARD -m conntrack --ctstate INVALID -j DROP
            $t -t filter -A FORWARD -m conntrack --ctstate ESTABLISHED -j ACCEPT
        fi
    done
    ipt4 -t filter -A INPUT -p icmp -j ACCEPT
    ipt6 -t filter -A INPUT -p ipv6-icmp -j ACCEPT
    if [[ $role == gateway ]]; then
        ipt4 -t filter -A FORWARD -d 198.51.100.10 -p tcp --dport 21 -m conntrack --ctstate NEW --ctorigdst 203.0.113.71 -j ACCEPT
    fi
}

# host_kernel_helper NS server|client|gateway on|off: the reference, the
# kernel's FTP helper in host mode: attached to the local control
# connections (raw PREROUTING for a local server, raw OUTPUT for a local
# client) plus a RELATED accept rule in INPUT (and FORWARD on a gateway).
# Used ONLY for comparison; ftp-alg's own setup never attaches it.
host_kernel_helper() {
    local FW_NS=$1 role=$2 op=-A t chain=PREROUTING
    [[ $3 == off ]] && op=-D
    [[ $role == client ]] && chain=OUTPUT
    for t in ipt4 ipt6; do
        $t -t raw "$op" "$chain" -p tcp --dport 21 -j CT --helper ftp
        $t -t filter "$op" INPUT -m conntrack --ctstate RELATED -j ACCEPT
        if [[ $role == gateway ]]; then $t -t filter "$op" FORWARD -m conntrack --ctstate RELATED -j ACCEPT; fi
    done
}

# host_lab_servers: the plain anonymous servers of the host lab (vsftpd on
# srv, os, sn, gs, gi; proftpd on srv: lab_proftpd of scripts/lib-servers.sh,
# which the caller sources), each listening before it returns.
host_lab_servers() {
    lab_vsftpd hv4 "$NS_SRV" "$LAB_STATE/srv-hv/root" listen=YES listen_ipv6=NO listen_address=203.0.113.10
    lab_vsftpd hv6 "$NS_SRV" "$LAB_STATE/srv-hv/root" listen=NO listen_ipv6=YES listen_address6=2001:db8:2::10
    lab_vsftpd os4 "$NS_OS" "$LAB_STATE/srv-os/root" listen=YES listen_ipv6=NO listen_address=203.0.113.50
    lab_vsftpd os6 "$NS_OS" "$LAB_STATE/srv-os/root" listen=NO listen_ipv6=YES listen_address6=2001:db8:2::50
    lab_vsftpd sn4 "$NS_SN" "$LAB_STATE/srv-sn/root" listen=YES listen_ipv6=NO listen_address=192.0.2.10
    lab_vsftpd gs4 "$NS_GS" "$LAB_STATE/srv-gs/root" listen=YES listen_ipv6=NO listen_address=203.0.113.70
    lab_vsftpd gi4 "$NS_GI" "$LAB_STATE/srv-gi/root" listen=YES listen_ipv6=NO listen_address=198.51.100.10
    lab_proftpd hp4 "$NS_SRV" "$LAB_STATE/srv-hp/root" "DefaultAddress 203.0.113.11" "SocketBindTight on" "Port 21"
    lab_proftpd hp6 "$NS_SRV" "$LAB_STATE/srv-hp/root" "DefaultAddress 2001:db8:2::11" "SocketBindTight on" "Port 21"
    lab_wait_listen "$NS_SRV" 203.0.113.10:21
    lab_wait_listen "$NS_SRV" "[2001:db8:2::10]:21"
    lab_wait_listen "$NS_OS" 203.0.113.50:21
    lab_wait_listen "$NS_OS" "[2001:db8:2::50]:21"
    lab_wait_listen "$NS_SN" 192.0.2.10:21
    lab_wait_listen "$NS_GS" 203.0.113.70:21
    lab_wait_listen "$NS_GI" 198.51.100.10:21
    lab_wait_listen "$NS_SRV" 203.0.113.11:21
    lab_wait_listen "$NS_SRV" "[2001:db8:2::11]:21"
}

# host_lab_down: stops what the lab started and deletes its namespaces
# (lab_down over the host lab's names).
host_lab_down() { lab_down; }

# ----------------------------------------------------------------- down ---

lab_down() {
    local name pid ns i
    if [[ -f $LAB_STATE/pids ]]; then
        # Reverse order: the daemon and tcpdump before the servers.
        while read -r name pid; do
            stop_pid "$pid" 5
        done < <(tac "$LAB_STATE/pids")
    fi
    # Anything still running inside our own namespaces was started by us
    # (vsftpd session children, stray clients): end it by PID.
    for ns in "${LAB_ALL_NS[@]}"; do
        [[ -e /run/netns/$ns ]] || continue
        for i in 1 2; do
            local pids
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            [[ -n $pids ]] || break
            for pid in $pids; do
                if [[ $i == 1 ]]; then kill -TERM "$pid" 2>/dev/null || true; else kill -KILL "$pid" 2>/dev/null || true; fi
            done
            sleep 0.5
        done
    done
    if [[ -d $LAB_STATE && -d $LAB_LOGS ]]; then
        cp "$LAB_STATE"/vsftpd-*.log "$LAB_STATE"/vsftpd-*.out "$LAB_STATE"/proftpd-*.log "$LAB_STATE"/proftpd-*.out "$LAB_LOGS/" 2>/dev/null || true
    fi
    for ns in "${LAB_ALL_NS[@]}"; do
        if [[ -e /run/netns/$ns ]]; then ip netns del "$ns" 2>/dev/null || true; fi
    done
    if [[ -d $LAB_STATE && $LAB_STATE == */fa-lab-"$LAB_ID" ]]; then rm -rf "$LAB_STATE"; fi
    local left=()
    for ns in "${LAB_ALL_NS[@]}"; do [[ -e /run/netns/$ns ]] && left+=("$ns"); done
    if ((${#left[@]})); then
        lab_log "warning: namespaces left behind: ${left[*]}"
        return 1
    fi
    return 0
}

# ------------------------------------------------------------- tcpdump ---

lab_pcap_start() {
    # One capture per gateway interface (an "any" capture would show the
    # interface names of the reader's namespace, not the gateway's).
    local dev
    PCAP_PID=
    for dev in "$GW_OUT" "$GW_CLI" "$GW_SRV"; do
        ip netns exec "$NS_GW" timeout 1800 tcpdump -i "$dev" -n -U -s 256 -c 2000000 -Z root \
            -w "$LAB_LOGS/gw-$dev.pcap" 'tcp or icmp or icmp6' >"$LAB_LOGS/tcpdump-$dev.out" 2>&1 &
        PCAP_PID+="$! "
        lab_record "tcpdump-$dev" "$!"
    done
    PCAP_ON=1
    sleep 0.5
}

lab_pcap_stop() {
    local pid
    for pid in ${PCAP_PID:-}; do stop_pid "$pid" 3; done
    PCAP_ON=0
}

# ------------------------------------------------------------- ftp-alg ---

ALG_PID=
alg_bin() { echo "${FTP_ALG_BIN:-$LAB_REPO/target/release/ftp-alg}"; }

# alg_start TAG: start the daemon in the gateway (FW_NS), wait for "ready"
# (15 s). ALG_EXTRA_CONFIG: TOML lines appended to the lab's configuration;
# ALG_RUN_ARGS: arguments added to `run --config FILE` (e.g. --paths local).
alg_start() {
    local tag=$1 bin i
    bin=$(alg_bin)
    [[ -x $bin ]] || lab_die "ftp-alg binary not found or not executable: $bin (build it, or set FTP_ALG_BIN)"
    local out="$LAB_LOGS/alg-$tag.stdout" err="$LAB_LOGS/alg-$tag.stderr"
    : >"$out"
    : >"$err"
    # The lab's own configuration: metrics on the gateway's loopback and a
    # status socket private to this lab (several labs may run at once).
    ALG_CONFIG="$LAB_STATE/ftp-alg.toml"
    ALG_STATUS_SOCKET="$LAB_STATE/ftp-alg.sock"
    ALG_METRICS="127.0.0.1:9721"
    printf 'metrics_address = "%s"\nstatus_socket = "%s"\n%s' "$ALG_METRICS" "$ALG_STATUS_SOCKET" "${ALG_EXTRA_CONFIG:-}" >"$ALG_CONFIG"
    # shellcheck disable=SC2086
    ip netns exec "${FW_NS:-$NS_GW}" env NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" "$bin" ${FTP_ALG_ARGS:-run --config $ALG_CONFIG ${ALG_RUN_ARGS:-}} </dev/null >"$out" 2>"$err" &
    ALG_PID=$!
    lab_record ftp-alg "$ALG_PID"
    for ((i = 0; i < ${ALG_READY_TIMEOUT:-15} * 10; i++)); do
        if grep -q ready "$out"; then return 0; fi
        if ! kill -0 "$ALG_PID" 2>/dev/null; then
            local rc=0
            wait "$ALG_PID" || rc=$?
            ALG_PID=
            lab_log "ftp-alg exited with status $rc before 'ready'; stderr tail:"
            tail -n 30 "$err" >&2
            return 1
        fi
        sleep 0.1
    done
    lab_log "ftp-alg printed no 'ready' within ${ALG_READY_TIMEOUT:-15} s; stderr tail:"
    tail -n 30 "$err" >&2
    return 1
}

# alg_stop: SIGTERM, wait up to 10 s; sets ALG_RC (exit status, or 'killed').
alg_stop() {
    ALG_RC=none
    [[ -n $ALG_PID ]] || return 0
    local i
    if kill -0 "$ALG_PID" 2>/dev/null; then
        kill -TERM "$ALG_PID" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$ALG_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$ALG_PID" 2>/dev/null; then
            kill -KILL "$ALG_PID" 2>/dev/null || true
            wait "$ALG_PID" 2>/dev/null || true
            ALG_PID=
            ALG_RC=killed
            return 0
        fi
    fi
    ALG_RC=0
    wait "$ALG_PID" 2>/dev/null || ALG_RC=$?
    ALG_PID=
}

# alg_observability_check: after the alg transfers, `ftp-alg status` must
# answer over its socket and the metrics scraped from the gateway must
# account for the transfers made. Sets OBS_NOTE; returns 1 on a mismatch.
alg_observability_check() {
    local mode=${1:-alg} bin passed=0 row m status opened sessions rewrites
    bin=$(alg_bin)
    for row in "${MATRIX_ROWS[@]}"; do
        IFS='|' read -r _ _ what <<<"$row"
        [[ $what != control && ${RES["$mode|$row"]:-} == pass ]] && passed=$((passed + 1))
    done
    sleep 2.5 # the daemon publishes once a second
    m="$LAB_LOGS/metrics-$mode.txt"
    status="$LAB_LOGS/status-$mode.txt"
    if ! nsx "${FW_NS:-$NS_GW}" curl -s -m 5 "http://$ALG_METRICS/metrics" >"$m"; then
        OBS_NOTE="metrics: scrape of http://$ALG_METRICS/metrics FAILED"
        return 1
    fi
    if ! "$bin" status --socket "$ALG_STATUS_SOCKET" >"$status" 2>&1 || ! grep -qE '^[0-9]+ sessions, [0-9]+ pinholes$' "$status"; then
        OBS_NOTE="status: ftp-alg status FAILED: $(tail -n 2 "$status")"
        return 1
    fi
    opened=$(awk '$1 == "ftp_alg_pinholes_total{form=\"exact\",outcome=\"opened\"}" {print $2}' "$m")
    sessions=$(awk '$1 == "ftp_alg_sessions_opened_total" {print $2}' "$m")
    rewrites=$(awk '$1 == "ftp_alg_rewrites_total" {print $2}' "$m")
    OBS_NOTE="metrics: ${opened:-?} pinholes opened, ${sessions:-?} sessions, ${rewrites:-?} rewrites for $passed data transfers; status: $(tail -n 1 "$status")"
    # Every data transfer that passed needed its own session and pinhole,
    # and the SNAT/DNAT paths needed rewrites.
    if [[ -z $opened || -z $sessions || -z $rewrites ]] || ((opened < passed || sessions < passed || rewrites == 0)); then
        OBS_NOTE="$OBS_NOTE -- MISMATCH"
        return 1
    fi
    return 0
}

lab_ruleset() { nsx "${FW_NS:-$NS_GW}" nft -s list ruleset 2>/dev/null; }

# lab_queue_packets: "QUEUE:PACKETS ..." for every queue bound in the
# gateway (the kernel's count: the id of the last packet handed out).
# shellcheck disable=SC2016 # awk's own $ fields
lab_queue_packets() { nsx "${FW_NS:-$NS_GW}" awk '{ printf "%s%s:%s", sep, $1, $8; sep = " " }' /proc/net/netfilter/nfnetlink_queue; }

# lab_ruleset_by_table: the same, tables sorted by name (restoring a table
# with iptables-restore moves it to the end of the listing).
lab_ruleset_by_table() {
    lab_ruleset | awk '/^table / { if (b != "") print b; b = $0; next } { b = b "\x1f" $0 } END { if (b != "") print b }' |
        sort | tr '\037' '\n'
}

# invalid_count 4|6 CHAIN: packets counted by the INVALID drop rule (and, for
# FORWARD, by the native firewall's of mode alg-native while it is loaded).
invalid_count() {
    local t=ipt4 n=0
    [[ $1 == 6 ]] && t=ipt6
    if [[ $2 == FORWARD ]] && nsx "${FW_NS:-$NS_GW}" nft list chain inet lab_fw forward >/dev/null 2>&1; then
        n=$(nsx "${FW_NS:-$NS_GW}" nft list chain inet lab_fw forward |
            awk -v f="$1" '$0 ~ "nfproto ipv" f " ct state invalid counter" { for (i = 1; i < NF; i++) if ($i == "packets") s += $(i + 1) } END { print s + 0 }')
    fi
    $t -t filter -L "$2" -v -n -x | awk -v n="$n" '/ctstate INVALID/ && $3 == "DROP" { s += $1 } END { print s + n }'
}

lab_zero_counters() {
    ipt4 -t filter -Z
    ipt6 -t filter -Z
}

# ------------------------------------------------- admin-managed rules ---
# Modes alg-files and alg-native put the gateway in the hands of an admin
# who manages the rules, with the very files and keys the README gives.

# lab_deploy_rules load|unload: the iptables-nft files of deploy/rules/
# (ftp-alg then runs with install_rules = false). Unloading deletes exactly
# the loaded rules (each `-I CHAIN [N] SPEC` becomes `-D CHAIN SPEC`).
lab_deploy_rules() {
    local dir="$LAB_REPO/deploy/rules" f t
    if [[ $1 == load ]]; then
        # iptables-restore creates raw and mangle if they are missing; an
        # admin unloading would delete them again, so remember which.
        : >"$LAB_STATE/implicit-tables"
        for t in "ip raw" "ip mangle" "ip6 raw" "ip6 mangle"; do
            # shellcheck disable=SC2086 # "family table" splits on purpose
            nsx "$NS_GW" nft list table $t >/dev/null 2>&1 || echo "$t" >>"$LAB_STATE/implicit-tables"
        done
        nsx "$NS_GW" nft -f "$dir/iptables-nft.nft"
        nsx "$NS_GW" iptables-nft-restore --noflush <"$dir/iptables-nft.rules.v4"
        nsx "$NS_GW" ip6tables-nft-restore --noflush <"$dir/iptables-nft.rules.v6"
        return
    fi
    for f in v4 v6; do
        sed -E 's/^-I ([A-Z]+)( [0-9]+)? /-D \1 /' "$dir/iptables-nft.rules.$f" >"$LAB_STATE/unload.$f"
    done
    nsx "$NS_GW" iptables-nft-restore --noflush <"$LAB_STATE/unload.v4"
    nsx "$NS_GW" ip6tables-nft-restore --noflush <"$LAB_STATE/unload.v6"
    nsx "$NS_GW" nft delete table inet ftp_alg
    while read -r t; do
        # shellcheck disable=SC2086
        nsx "$NS_GW" nft delete table $t
    done <"$LAB_STATE/implicit-tables"
}

# lab_native_filter on|off: the gateway's forward filter becomes a native
# nftables table (inet lab_fw, policy drop, the FORWARD rules of
# lab_firewall); iptables-nft keeps INPUT and NAT. ftp-alg then inserts its
# accept rule there (accept_rule = "nft inet lab_fw forward").
lab_native_filter() {
    if [[ $1 == on ]]; then
        nsx "$NS_GW" iptables-nft-save -t filter >"$LAB_STATE/filter.v4"
        nsx "$NS_GW" ip6tables-nft-save -t filter >"$LAB_STATE/filter.v6"
        nsx "$NS_GW" nft -f - <<NFT
table inet lab_fw {
	chain forward {
		type filter hook forward priority filter; policy drop;
		meta nfproto ipv4 ct state invalid counter drop
		meta nfproto ipv6 ct state invalid counter drop
		ct state established,related accept
		iifname "$GW_CLI" oifname "$GW_OUT" ip saddr 198.51.100.0/24 ip daddr 203.0.113.10 tcp dport 21 ct state new accept
		iifname "$GW_OUT" oifname "$GW_SRV" ip daddr 192.0.2.10 tcp dport 21 ct original ip daddr 203.0.113.1 ct state new accept
		iifname "$GW_CLI" oifname "$GW_OUT" ip6 saddr 2001:db8:1::/64 ip6 daddr 2001:db8:2::10 tcp dport 21 ct state new accept
	}
}
NFT
        ipt4 -t filter -F FORWARD
        ipt4 -t filter -P FORWARD ACCEPT
        ipt6 -t filter -F FORWARD
        ipt6 -t filter -P FORWARD ACCEPT
        return
    fi
    nsx "$NS_GW" nft delete table inet lab_fw
    nsx "$NS_GW" iptables-nft-restore -T filter <"$LAB_STATE/filter.v4"
    nsx "$NS_GW" ip6tables-nft-restore -T filter <"$LAB_STATE/filter.v6"
}

# ----------------------------------------------------------- benchmarks ---

# bench_lab_up ID RESULTS: what every benchmark script starts with. Builds
# lab ID, with a teardown on exit (also on failure or interrupt) that stops
# ftp-alg, detaches the kernel helper, calls the script's own
# bench_extra_cleanup if it defines one, and removes the lab. Sets RES_DIR to
# $LAB_LOGS/RESULTS, created, without the results of an earlier run.
# noop_load_start CONNS SECS: CONNS control connections from the SNAT
# client, each sending NOOP round trips for SECS seconds
# (scripts/ftp_peers.py load), in the background; output in
# $RES_DIR/load.log. Call after bench_lab_up; its teardown stops the load.
# noop_load_wait waits for it and sets load_rc (0: every NOOP answered).
LOAD_PID=
noop_load_start() {
    nsx "$NS_CL" timeout -k 2 $(($2 + 30)) python3 "$LAB_REPO/scripts/ftp_peers.py" load \
        --host 203.0.113.10 --port 21 --source 198.51.100.2 --conns "$1" --seconds "$2" \
        </dev/null >"$RES_DIR/load.log" 2>&1 &
    LOAD_PID=$!
    lab_record load "$LOAD_PID"
    sleep 2
}
noop_load_wait() {
    load_rc=0
    wait "$LOAD_PID" || load_rc=$?
    LOAD_PID=
}

bench_lab_up() {
    lab_names "$1"
    trap bench_teardown EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    [[ -x $(alg_bin) ]] || lab_die "ftp-alg binary not found: $(alg_bin) (cargo build --release, or set FTP_ALG_BIN)"
    lab_up
    RES_DIR="$LAB_LOGS/$2"
    mkdir -p "$RES_DIR"
    rm -f "$RES_DIR"/*.txt "$RES_DIR"/*.fail
}

# shellcheck disable=SC2317 # invoked by the EXIT trap
bench_teardown() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    alg_stop >/dev/null 2>&1
    if [[ -n $LOAD_PID ]]; then stop_pid "$LOAD_PID" >/dev/null 2>&1; fi
    if [[ ${KERNEL_HELPER_ON:-0} == 1 ]]; then lab_kernel_helper off >/dev/null 2>&1; fi
    if declare -F bench_extra_cleanup >/dev/null; then bench_extra_cleanup; fi
    lab_log "tearing down lab $LAB_ID"
    lab_down || rc=2
    exit "$rc"
}

# ------------------------------------------------------------- clients ---

LAB_PATHS=(cl-so4 cs-so4 co-si4 cl-so6)
LAB_CLIENTS=(curl-epsv curl-pasv curl-eprt curl-port lftp-pasv lftp-port)

# path_info PATH: sets P_NS P_HOST P_SRV P_DESC
path_info() {
    case $1 in
    cl-so4) P_NS=$NS_CL P_HOST=203.0.113.10 P_SRV=so P_DESC="198.51.100.2 -> 203.0.113.10, SNAT to .254 (+1)" ;;
    cs-so4) P_NS=$NS_CS P_HOST=203.0.113.10 P_SRV=so P_DESC="198.51.100.222 -> 203.0.113.10, SNAT to .1 (-3)" ;;
    co-si4) P_NS=$NS_CO P_HOST=203.0.113.1 P_SRV=si P_DESC="203.0.113.20 -> 203.0.113.1, DNAT to 192.0.2.10" ;;
    cl-so6) P_NS=$NS_CL P_HOST='[2001:db8:2::10]' P_SRV=so P_DESC="2001:db8:1::2 -> 2001:db8:2::10, no NAT" ;;
    # FTPS (scripts/ftps.sh): vsftpd on 203.0.113.10, 2001:db8:2::10 and
    # 192.0.2.10 (21 explicit, 990 implicit), proftpd on 203.0.113.11 and
    # 192.0.2.11 (21 explicit), through the gateway, behind its DNAT, and
    # straight to the server's own host (IPv4 and IPv6).
    cl-sov) P_NS=$NS_CL P_HOST=203.0.113.10 P_SRV=so P_DESC="198.51.100.2 -> vsftpd 203.0.113.10, through the gateway (SNAT)" ;;
    cl-sop) P_NS=$NS_CL P_HOST=203.0.113.11 P_SRV=so P_DESC="198.51.100.2 -> proftpd 203.0.113.11, through the gateway (SNAT)" ;;
    co-siv) P_NS=$NS_CO P_HOST=203.0.113.1 P_SRV=si P_DESC="203.0.113.20 -> 203.0.113.1, DNAT to vsftpd 192.0.2.10 (pasv_address)" ;;
    co-sip) P_NS=$NS_CO P_HOST=203.0.113.2 P_SRV=si P_DESC="203.0.113.20 -> 203.0.113.2, DNAT to proftpd 192.0.2.11 (MasqueradeAddress)" ;;
    co-sov) P_NS=$NS_CO P_HOST=203.0.113.10 P_SRV=so P_DESC="203.0.113.20 -> vsftpd 203.0.113.10, on the server's own host" ;;
    co-sop) P_NS=$NS_CO P_HOST=203.0.113.11 P_SRV=so P_DESC="203.0.113.20 -> proftpd 203.0.113.11, on the server's own host" ;;
    co-so6) P_NS=$NS_CO P_HOST='[2001:db8:2::10]' P_SRV=so P_DESC="2001:db8:2::20 -> vsftpd 2001:db8:2::10 (21 explicit, 990 implicit), on the server's own host" ;;
    # The host lab (host_lab_up): ftp-alg on the server or client host.
    hv4) P_NS=$NS_CL P_HOST=203.0.113.10 P_SRV=hv P_DESC="cl -> vsftpd on the server host srv (203.0.113.10)" ;;
    hv6) P_NS=$NS_CL P_HOST='[2001:db8:2::10]' P_SRV=hv P_DESC="cl -> vsftpd on the server host srv (2001:db8:2::10)" ;;
    hp4) P_NS=$NS_CL P_HOST=203.0.113.11 P_SRV=hp P_DESC="cl -> proftpd on the server host srv (203.0.113.11)" ;;
    hp6) P_NS=$NS_CL P_HOST='[2001:db8:2::11]' P_SRV=hp P_DESC="cl -> proftpd on the server host srv (2001:db8:2::11)" ;;
    ch4) P_NS=$NS_CH P_HOST=203.0.113.50 P_SRV=os P_DESC="client host ch -> outside vsftpd os (203.0.113.50)" ;;
    ch6) P_NS=$NS_CH P_HOST='[2001:db8:2::50]' P_SRV=os P_DESC="client host ch -> outside vsftpd os (2001:db8:2::50)" ;;
    nat4) P_NS=$NS_CL P_HOST=203.0.113.60 P_SRV=sn P_DESC="cl -> 203.0.113.60, 1:1 NAT to vsftpd on the server host sn (192.0.2.10)" ;;
    gl4) P_NS=$NS_CL P_HOST=203.0.113.70 P_SRV=gs P_DESC="cl -> vsftpd on the gateway gs itself (203.0.113.70, local path)" ;;
    gf4) P_NS=$NS_CL P_HOST=203.0.113.71 P_SRV=gi P_DESC="cl -> 203.0.113.71, DNAT by gs to vsftpd on gi (198.51.100.10, forward path)" ;;
    *) lab_die "unknown path $1" ;;
    esac
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# Client timeouts (seconds): connect, whole command, lftp's net:timeout, the
# outer kill. XFER_FAST=1 (mode none, where every data connection is expected
# to be blocked) fails fast: a blocked passive connect gives up after 1 s, a
# blocked active one after 3 s, instead of 5-15 s; the control connection
# still has ample time on the lab's loopback-speed links.
xfer_timeouts() {
    if [[ ${XFER_FAST:-0} == 1 ]]; then
        T_CONNECT=1 T_MAX=3 T_LFTP=1 T_KILL=5
    else
        T_CONNECT=3 T_MAX=15 T_LFTP=5 T_KILL=25
    fi
}

# client_cmd CLIENT HOST download|upload|control LOCALFILE REMOTENAME -> CMD array
client_cmd() {
    local client=$1 host=$2 what=$3 local=$4 remote=$5
    CMD=()
    xfer_timeouts
    case $client in
    curl | curl-*)
        CMD=(curl -q -sS --connect-timeout "$T_CONNECT" -m "$T_MAX")
        # FTPS (RFC 4217): explicit (AUTH TLS on 21, --ssl-reqd) or
        # implicit (ftps://, TLS from the first byte on 990); -k: the
        # lab's self-signed certificate.
        local scheme=ftp
        case $client in
        curl | curl-epsv) ;;
        curl-pasv) CMD+=(--disable-epsv) ;;
        # curl ignores the 227 address by default (--ftp-skip-pasv-ip);
        # this one connects to it, so it needs a rewrite to be right.
        curl-pasv-ip) CMD+=(--disable-epsv --no-ftp-skip-pasv-ip) ;;
        curl-eprt) CMD+=(-P -) ;;
        curl-port) CMD+=(-P - --disable-eprt) ;;
        curl-tls-epsv) CMD+=(--ssl-reqd -k --ftp-pasv) ;;
        curl-tls-pasv) CMD+=(--ssl-reqd -k --ftp-pasv --disable-epsv) ;;
        curl-ftps) CMD+=(-k --ftp-pasv) scheme=ftps ;;
        *) lab_die "unknown client $client" ;;
        esac
        case $what in
        download) CMD+=(-o "$local" "$scheme://$host/file.bin") ;;
        upload) CMD+=(-T "$local" "$scheme://$host/up/$remote") ;;
        control) CMD+=(-I "$scheme://$host/file.bin") ;;
        esac
        ;;
    lftp-*)
        local pm=on tls="set ftp:ssl-allow no;" scheme=ftp
        [[ $client == lftp-port ]] && pm=off
        # lftp-tls: explicit FTPS (AUTH TLS, PROT P); lftp-ftps: implicit
        # (ftps://, port 990).
        case $client in
        lftp-tls | lftp-ftps) tls="set ftp:ssl-force true; set ftp:ssl-protect-data true; set ssl:verify-certificate no;" ;;
        esac
        [[ $client == lftp-ftps ]] && scheme=ftps
        local s="set cmd:fail-exit yes; set net:timeout $T_LFTP; set net:max-retries 1;"
        s+=" set net:reconnect-interval-base 1; set net:reconnect-interval-max 1;"
        s+=" set ftp:passive-mode $pm; set ftp:prefer-epsv no; $tls"
        s+=" set xfer:clobber yes; set cmd:interactive no;"
        s+=" open -u anonymous,lab@ $scheme://$host;"
        case $what in
        download) s+=" get file.bin -o $local" ;;
        upload) s+=" put $local -o up/$remote" ;;
        control) s+=" cls -1 --sort=none file.bin >/dev/null" ;;
        esac
        CMD=(lftp -c "$s")
        ;;
    *) lab_die "unknown client $client" ;;
    esac
}

# run_xfer MODE PATH CLIENT WHAT: one transfer; sets X_OK (1/0), X_ERR.
run_xfer() {
    local mode=$1 path=$2 client=$3 what=$4
    path_info "$path"
    local tag="$mode.$path.$client.$what"
    local log="$LAB_LOGS/xfer/$tag.log"
    mkdir -p "$LAB_LOGS/xfer"
    local out="$LAB_STATE/out/$tag.bin" remote="${LAB_RUN_TAG}-$mode-$path-$client.bin"
    local src="$LAB_STATE/data/up.bin" srvfile="$LAB_STATE/srv-$P_SRV/root/up/$remote"
    rm -f "$out"
    local lf=$out
    [[ $what == upload ]] && lf=$src
    # LAB_FAIL_MODES: the modes whose data connections are expected to be
    # blocked (fail fast there).
    local XFER_FAST=0
    [[ " ${LAB_FAIL_MODES:-none} " == *" $mode "* ]] && XFER_FAST=1
    client_cmd "$client" "$P_HOST" "$what" "$lf" "$remote"
    local rc=0 t0 t1
    t0=$(date +%s%N)
    {
        printf '# ns %s: %s\n' "$P_NS" "${CMD[*]}"
        nsx "$P_NS" env HOME="$LAB_STATE/home" timeout -k 2 "$T_KILL" "${CMD[@]}" </dev/null 2>&1 || rc=$?
        t1=$(date +%s%N)
        printf '# exit %s after %d ms\n' "$rc" $(((t1 - t0) / 1000000))
    } >"$log" 2>&1
    X_OK=0
    X_MS=$(((t1 - t0) / 1000000))
    if ((rc != 0)); then
        X_ERR="exit $rc: $(grep -v '^#' "$log" | grep -v '^[[:space:]]*$' | tail -n 1 | cut -c1-120)"
    else
        case $what in
        download)
            if [[ ! -f $out ]]; then
                X_ERR="no output file"
            elif [[ $(sha "$out") != "$(sha "$LAB_STATE/data/file.bin")" ]]; then
                X_ERR="sha256 mismatch ($(stat -c %s "$out") bytes)"
            else X_OK=1; fi
            ;;
        upload)
            if [[ ! -f $srvfile ]]; then
                X_ERR="nothing arrived on the server"
            elif [[ $(sha "$srvfile") != "$(sha "$src")" ]]; then
                X_ERR="sha256 mismatch on the server ($(stat -c %s "$srvfile") bytes)"
            else X_OK=1; fi
            ;;
        control) X_OK=1 ;;
        esac
    fi
    rm -f "$out"
    [[ $X_OK == 1 ]] && X_ERR=
    echo "# result ok=$X_OK ${X_ERR}" >>"$log"
}

# ------------------------------------------------------------- matrix ---

declare -A RES=() ERR=()
declare -A MODE_NOTE=() MODE_BAD=()
MATRIX_ROWS=()

# expectation MODE WHAT [PATH CLIENT] -> pass|fail|any (a script with other
# expectations names its own function in EXPECTATION_FN).
expectation() {
    local mode=$1 what=$2
    if [[ $what == control ]]; then
        echo pass
        return
    fi
    case $mode in
    alg*) echo pass ;;
    none) echo fail ;;
    *) echo any ;;
    esac
}

matrix_rows() {
    MATRIX_ROWS=()
    local p c
    for p in "${LAB_PATHS[@]}"; do
        MATRIX_ROWS+=("$p|curl|control")
        for c in "${LAB_CLIENTS[@]}"; do
            MATRIX_ROWS+=("$p|$c|download" "$p|$c|upload")
        done
    done
}

# matrix_run_cases MODE
matrix_run_cases() {
    local mode=$1 row path client what exp got
    local n=0 bad=0
    for row in "${MATRIX_ROWS[@]}"; do
        IFS='|' read -r path client what <<<"$row"
        run_xfer "$mode" "$path" "$client" "$what"
        got=fail
        [[ $X_OK == 1 ]] && got=pass
        RES["$mode|$row"]=$got
        ERR["$mode|$row"]=$X_ERR
        exp=$(${EXPECTATION_FN:-expectation} "$mode" "$what" "$path" "$client")
        n=$((n + 1))
        if [[ $exp != any && $exp != "$got" ]]; then bad=$((bad + 1)); fi
        printf '[lab] %-6s %-7s %-9s %-8s %-4s %5d ms %s\n' "$mode" "$path" "$client" "$what" "$got" "$X_MS" "$X_ERR" >&2
    done
    MODE_BAD[$mode]=$bad
}

matrix_invalid_note() {
    local f4 i4 f6 i6
    f4=$(invalid_count 4 FORWARD)
    i4=$(invalid_count 4 INPUT)
    f6=$(invalid_count 6 FORWARD)
    i6=$(invalid_count 6 INPUT)
    INVALID_TOTAL=$((f4 + i4 + f6 + i6))
    INVALID_NOTE="INVALID drops: v4 FORWARD $f4, v4 INPUT $i4, v6 FORWARD $f6, v6 INPUT $i6"
}

# matrix_mode MODE: run one mode on the current lab; returns 0 unless a setup
# error happened (expectation failures are counted in MODE_BAD).
matrix_mode() {
    local mode=$1 t0=$SECONDS
    lab_log "=== mode $mode ==="
    lab_flush_conntrack
    lab_zero_counters
    local extra=()
    case $mode in
    none)
        matrix_run_cases none
        matrix_invalid_note
        extra+=("$INVALID_NOTE")
        none_wait_servers
        ;;
    kernel)
        lab_kernel_helper on
        matrix_run_cases kernel
        matrix_invalid_note
        extra+=("$INVALID_NOTE")
        lab_kernel_helper off
        ;;
    alg | alg-files | alg-native)
        local before admin after restored ALG_EXTRA_CONFIG=${LAB_ALG_CONFIG:-}
        before=$(lab_ruleset_by_table)
        case $mode in
        alg-files)
            lab_deploy_rules load
            ALG_EXTRA_CONFIG+=$'install_rules = false\n'
            ;;
        alg-native)
            lab_native_filter on
            ALG_EXTRA_CONFIG+=$'accept_rule = "nft inet lab_fw forward"\n'
            ;;
        esac
        # What the admin set up: ftp-alg must leave exactly this behind.
        admin=$(lab_ruleset)
        printf '%s\n' "$admin" >"$LAB_LOGS/ruleset-before-$mode.txt"
        if ! alg_start "$mode"; then
            MODE_BAD[$mode]=setup
            MODE_NOTE[$mode]="ftp-alg did not become ready (log: $LAB_LOGS/alg-$mode.stderr)"
            return 0
        fi
        lab_ruleset >"$LAB_LOGS/ruleset-with-$mode.txt" || true
        matrix_run_cases "$mode"
        local alive=yes
        kill -0 "$ALG_PID" 2>/dev/null || alive=no
        matrix_invalid_note
        extra+=("$INVALID_NOTE")
        local obs_bad=0
        alg_observability_check "$mode" || obs_bad=1
        extra+=("$OBS_NOTE")
        # Packets per queue (kernel's count: the id of the last packet).
        extra+=("packets per queue: $(lab_queue_packets)")
        # Pinholes left in the daemon's table (for the record).
        nsx "$NS_GW" nft list table inet ftp_alg >"$LAB_LOGS/ftp_alg-table-after-$mode.txt" 2>&1 || true
        alg_stop
        after=$(lab_ruleset)
        printf '%s\n' "$after" >"$LAB_LOGS/ruleset-after-$mode.txt"
        case $mode in
        alg-files) lab_deploy_rules unload ;;
        alg-native) lab_native_filter off ;;
        esac
        restored=$(lab_ruleset_by_table)
        printf '%s\n' "$before" >"$LAB_LOGS/ruleset-lab-before-$mode.txt"
        printf '%s\n' "$restored" >"$LAB_LOGS/ruleset-lab-after-$mode.txt"
        local bad=${MODE_BAD[$mode]}
        bad=$((bad + obs_bad))
        if [[ $alive != yes ]]; then
            extra+=("ftp-alg was NOT running any more after the transfers")
            bad=$((bad + 1))
        fi
        if ((INVALID_TOTAL != 0)); then
            extra+=("expected 0 INVALID drops")
            bad=$((bad + 1))
        fi
        if [[ $ALG_RC == 0 ]]; then
            extra+=("ftp-alg exit status after SIGTERM: 0")
        else
            extra+=("ftp-alg exit status after SIGTERM: $ALG_RC (expected 0)")
            bad=$((bad + 1))
        fi
        if [[ $admin == "$after" ]]; then
            extra+=("ruleset after SIGTERM: identical to before")
        else
            extra+=("ruleset after SIGTERM DIFFERS from before:")
            extra+=("$({ diff -u "$LAB_LOGS/ruleset-before-$mode.txt" "$LAB_LOGS/ruleset-after-$mode.txt" || true; } | head -n 40)")
            bad=$((bad + 1))
        fi
        if [[ $restored != "$before" ]]; then
            extra+=("the lab's own ruleset was NOT restored after mode $mode:")
            extra+=("$({ diff -u "$LAB_LOGS/ruleset-lab-before-$mode.txt" "$LAB_LOGS/ruleset-lab-after-$mode.txt" || true; } | head -n 40)")
            bad=$((bad + 1))
        fi
        MODE_BAD[$mode]=$bad
        ;;
    *) lab_die "unknown mode $mode (alg|alg-files|alg-native|none|kernel)" ;;
    esac
    extra+=("time: $((SECONDS - t0)) s")
    MODE_NOTE[$mode]=$(printf '%s\n' "${extra[@]}")
    return 0
}

# matrix_report MODES...: print the table; returns 0 if all expectations met.
matrix_report() {
    local modes=("$@") row path client what m got exp cell
    local ok=0
    printf '\n%-8s %-10s %-9s' "path" "client" "transfer"
    for m in "${modes[@]}"; do printf ' %-8s' "$m"; done
    printf '\n'
    for row in "${MATRIX_ROWS[@]}"; do
        IFS='|' read -r path client what <<<"$row"
        printf '%-8s %-10s %-9s' "$path" "$client" "$what"
        for m in "${modes[@]}"; do
            got=${RES["$m|$row"]:-"-"}
            exp=$(expectation "$m" "$what")
            cell=$got
            [[ $got == pass ]] && cell=pass
            [[ $got == fail ]] && cell=FAIL
            if [[ $got != "-" && $exp != any && $exp != "$got" ]]; then cell="$cell(!)"; fi
            printf ' %-8s' "$cell"
        done
        printf '\n'
    done
    printf '\n(!) = differs from the expectation: alg -> every transfer passes; none -> every data transfer fails;\n'
    printf '      kernel (reference helper) -> report only; control (login + SIZE, no data connection) passes in every mode.\n'
    local p
    for p in "${LAB_PATHS[@]}"; do
        path_info "$p"
        printf '  %-7s %s\n' "$p" "$P_DESC"
    done
    printf '  clients: curl-epsv (default), curl-pasv (--disable-epsv), curl-eprt (-P -), curl-port (-P - --disable-eprt),\n'
    printf '           lftp-pasv (passive, PASV on IPv4), lftp-port (active, PORT on IPv4); over IPv6 both use EPSV/EPRT\n'
    for m in "${modes[@]}"; do
        local n=0 pass=0 cn=0 cpass=0
        for row in "${MATRIX_ROWS[@]}"; do
            [[ -n ${RES["$m|$row"]:-} ]] || continue
            if [[ $row == *"|control" ]]; then
                cn=$((cn + 1))
                [[ ${RES["$m|$row"]} == pass ]] && cpass=$((cpass + 1))
            else
                n=$((n + 1))
                [[ ${RES["$m|$row"]} == pass ]] && pass=$((pass + 1))
            fi
        done
        local verdict=OK
        if [[ ${MODE_BAD[$m]:-0} != 0 ]]; then
            verdict="NOT AS EXPECTED (${MODE_BAD[$m]})"
            ok=1
        fi
        [[ $m == kernel && ${MODE_BAD[$m]:-0} == 0 ]] && verdict="reference only"
        printf '\nmode %s: %d/%d data transfers passed (control-only checks %d/%d) -- %s\n' \
            "$m" "$pass" "$n" "$cpass" "$cn" "$verdict"
        if [[ -n ${MODE_NOTE[$m]:-} ]]; then printf '%s\n' "${MODE_NOTE[$m]}" | sed 's/^/  /'; fi
        if [[ $m == alg* && ${MODE_BAD[$m]:-0} != 0 && -f $LAB_LOGS/alg-$m.stderr ]]; then
            printf '  ftp-alg stderr, last 40 lines (%s):\n' "$LAB_LOGS/alg-$m.stderr"
            tail -n 40 "$LAB_LOGS/alg-$m.stderr" | sed 's/^/    | /'
        fi
        # Details of unexpected results.
        for row in "${MATRIX_ROWS[@]}"; do
            got=${RES["$m|$row"]:-}
            [[ -n $got ]] || continue
            IFS='|' read -r path client what <<<"$row"
            exp=$(expectation "$m" "$what")
            if [[ $exp != any && $exp != "$got" ]] || [[ $m == kernel && $got == fail ]]; then
                printf '  %-7s %-9s %-8s %s: %s (log %s)\n' "$path" "$client" "$what" "$got" \
                    "${ERR["$m|$row"]:-"transfer succeeded"}" "$LAB_LOGS/xfer/$m.$path.$client.$what.log"
            fi
        done
    done
    return $ok
}
