# shellcheck shell=bash disable=SC2034  # globals are shared with scripts/ha.sh
# scripts/ha/lib-ha.sh -- the HA lab of ftp-alg: two gateways, one address set.
#
# Sourced by scripts/ha.sh after scripts/lib-lab.sh (whose helpers it uses:
# nsx, lab_veth, lab_vsftpd, lab_wait_listen, lab_firewall, stop_pid,
# alg_start, invalid_count). Everything here runs as root and touches only
# namespaces named "fa-ha-<ID>-*" that it created, addresses of the
# documentation ranges and processes it started (ended by PID).
#
#        cl 198.51.100.2, 2001:db8:1::2            so 203.0.113.10, 2001:db8:2::10 (vsftpd)
#              |                                   co 203.0.113.20
#       [sw] brc ---------- c0 gw1 o0 ---------- bro [sw]
#              \----------- c0 gw2 o0 ----------/   |
#                           s0 y0  y0 s0             |
#       [sw] brs -----------/  \sync/  \----------- brs: si 192.0.2.10 (vsftpd)
#
# The gateway addresses (VIPs) live on one gateway at a time: c0
# 198.51.100.1/24 + 2001:db8:1::1/64 (the clients' default gateway), o0
# 203.0.113.1 (DNAT to si, SNAT of si) + 203.0.113.254 (SNAT of cl: PORT
# "198,51,100,2" -> "203,0,113,254" is 1 byte longer) + 2001:db8:2::1, s0
# 192.0.2.1/25 (si's gateway). y0 is the dedicated sync link (192.0.2.249
# and .250/30), where conntrackd runs FTFW over UDP. The gateways have no
# other address on the shared segments, so the backup forwards nothing
# until it takes the VIPs over.

HA_VIPS=(
    "c0 198.51.100.1/24" "c0 2001:db8:1::1/64"
    "o0 203.0.113.1/24" "o0 203.0.113.254/24" "o0 2001:db8:2::1/64"
    "s0 192.0.2.1/25"
)

# ha_names ID: every global name of HA lab ID.
ha_names() {
    LAB_ID=$1
    [[ $LAB_ID =~ ^[A-Za-z0-9]{1,8}$ ]] || lab_die "lab id must be 1-8 letters/digits, got '$LAB_ID'"
    LAB_PREFIX="fa-ha-$LAB_ID-"
    NS_SW=${LAB_PREFIX}sw NS_CL=${LAB_PREFIX}cl NS_CO=${LAB_PREFIX}co
    NS_SO=${LAB_PREFIX}so NS_SI=${LAB_PREFIX}si
    NS_GW1=${LAB_PREFIX}gw1 NS_GW2=${LAB_PREFIX}gw2
    LAB_ALL_NS=("$NS_GW1" "$NS_GW2" "$NS_SW" "$NS_CL" "$NS_CO" "$NS_SO" "$NS_SI")
    HA_STATE=${LAB_STATE_BASE:-/tmp}/fa-ha-$LAB_ID
    LAB_STATE=$HA_STATE
    LAB_LOGS=${LAB_LOG_DIR:-$LAB_REPO/target/lab-logs}/ha-$LAB_ID
    # Interface names inside each gateway, as lab_firewall expects them.
    GW_CLI=c0 GW_OUT=o0 GW_SRV=s0
}

# ha_gw N: the namespace of gateway N (1 or 2).
ha_gw() { if [[ $1 == 1 ]]; then echo "$NS_GW1"; else echo "$NS_GW2"; fi; }

# ha_vips add|del N: the gateway addresses on gateway N.
ha_vips() {
    local op=$1 ns v extra=()
    ns=$(ha_gw "$2")
    for v in "${HA_VIPS[@]}"; do
        extra=()
        [[ $op == add && $v == *:* ]] && extra=(nodad)
        nsx "$ns" ip addr "$op" "${v#* }" dev "${v%% *}" "${extra[@]}"
    done
}

# ha_flush_neigh: what the peers do on the new primary's gratuitous ARP and
# unsolicited NA (keepalived sends them): forget the old MAC of the VIPs.
ha_flush_neigh() {
    local ns
    for ns in "$NS_CL" "$NS_CO" "$NS_SO" "$NS_SI"; do nsx "$ns" ip neigh flush dev eth0; done
}

ha_topology() {
    local ns n p
    lab_namespaces
    for p in brc bro brs; do
        nsx "$NS_SW" ip link add name "$p" type bridge stp_state 0 forward_delay 0
        nsx "$NS_SW" ip link set dev "$p" up
    done
    for n in 1 2; do
        ns=$(ha_gw "$n")
        lab_veth "$ns" c0 "$NS_SW" "g${n}c"
        lab_veth "$ns" o0 "$NS_SW" "g${n}o"
        lab_veth "$ns" s0 "$NS_SW" "g${n}s"
        nsx "$NS_SW" ip link set dev "g${n}c" master brc
        nsx "$NS_SW" ip link set dev "g${n}o" master bro
        nsx "$NS_SW" ip link set dev "g${n}s" master brs
        nsx "$ns" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 >/dev/null
    done
    lab_veth "$NS_GW1" y0 "$NS_GW2" y0
    nsx "$NS_GW1" ip addr add 192.0.2.249/30 dev y0
    nsx "$NS_GW2" ip addr add 192.0.2.250/30 dev y0
    for p in cl:brc co:bro so:bro si:brs; do
        lab_veth "${LAB_PREFIX}${p%%:*}" eth0 "$NS_SW" "${p%%:*}"
        nsx "$NS_SW" ip link set dev "${p%%:*}" master "${p#*:}"
    done
    nsx "$NS_CL" ip addr add 198.51.100.2/24 dev eth0
    nsx "$NS_CL" ip addr add 2001:db8:1::2/64 dev eth0 nodad
    nsx "$NS_CL" ip route add default via 198.51.100.1
    nsx "$NS_CL" ip -6 route add default via 2001:db8:1::1
    nsx "$NS_SO" ip addr add 203.0.113.10/24 dev eth0
    nsx "$NS_SO" ip addr add 2001:db8:2::10/64 dev eth0 nodad
    nsx "$NS_SO" ip -6 route add default via 2001:db8:2::1
    nsx "$NS_CO" ip addr add 203.0.113.20/24 dev eth0
    nsx "$NS_SI" ip addr add 192.0.2.10/25 dev eth0
    nsx "$NS_SI" ip route add default via 192.0.2.1
}

# ha_gateway N: the main lab's firewall and NAT (lab_firewall: default drop,
# stateful, SNAT/DNAT), a rule that uses ct labels (the kernel gives an
# entry room for labels only while such a rule exists, and a commit drops
# replicated labels silently without it: shared/DESIGN.md), conntrackd.
ha_gateway() {
    local n=$1
    NS_GW=$(ha_gw "$n") lab_firewall
    # No mid-stream pick-up of TCP connections by conntrack: a packet of a
    # connection the node has no entry for is INVALID (dropped), so a
    # session continues on the new primary only through the entry
    # conntrackd committed. With the default (1), gw2 adopts the control
    # connections as new ones, accepted by the port-21 NEW rule and NATed
    # again: measured, the unrewritten sessions then survive a failover
    # without any replication, and the lab would prove nothing.
    nsx "$(ha_gw "$n")" sysctl -qw net.netfilter.nf_conntrack_tcp_loose=0
    # conntrackd's sync traffic on the dedicated link.
    NS_GW=$(ha_gw "$n") ipt4 -t filter -I INPUT 1 -i y0 -p udp --dport 3780 -j ACCEPT
    # HA_LABEL_RULE=0 leaves it out (ftp-alg's own table may carry one).
    [[ ${HA_LABEL_RULE:-1} == 0 ]] || nsx "$(ha_gw "$n")" nft -f - <<'NFT'
table inet ha_lab {
	chain labels {
		type filter hook prerouting priority mangle; policy accept;
		ct label 127 counter
	}
}
NFT
    ha_conntrackd_start "$n"
}

# ha_conntrackd_conf N: FTFW over UDP on y0, everything TCP replicated
# except the sync link's own traffic; private lock, socket and log.
ha_conntrackd_conf() {
    local n=$1 me peer dir="$HA_STATE/gw$1"
    me=192.0.2.249 peer=192.0.2.250
    [[ $n == 2 ]] && me=192.0.2.250 peer=192.0.2.249
    mkdir -p "$dir"
    cat >"$dir/conntrackd.conf" <<EOF
# Generated by scripts/ha/lib-ha.sh for gateway $n of HA lab $LAB_ID.
Sync {
	Mode FTFW {
		DisableExternalCache Off
		PurgeTimeout 5
	}
	UDP {
		IPv4_address $me
		IPv4_Destination_Address $peer
		Port 3780
		Interface y0
		SndSocketBuffer 1249280
		RcvSocketBuffer 1249280
		Checksum on
	}
}
General {
	Systemd off
	HashSize 8192
	HashLimit 65536
	LogFile $LAB_LOGS/conntrackd-gw$n.log
	Syslog off
	LockFile $dir/conntrackd.lock
	UNIX {
		Path $dir/conntrackd.ctl
	}
	NetlinkBufferSize 2097152
	NetlinkBufferSizeMaxGrowth 8388608
	Filter From Userspace {
		Protocol Accept {
			TCP
		}
		Address Ignore {
			IPv4_address 127.0.0.1
			IPv6_address ::1
			IPv4_address 192.0.2.248/30
		}
	}
}
EOF
    echo "$dir/conntrackd.conf"
}

# ctd N ARGS...: conntrackd's client mode against gateway N's daemon.
ctd() {
    local n=$1
    shift
    nsx "$(ha_gw "$n")" conntrackd -C "$HA_STATE/gw$n/conntrackd.conf" "$@"
}

ha_conntrackd_start() {
    local n=$1 conf i
    conf=$(ha_conntrackd_conf "$n")
    # In the foreground (no -d), so that the PID is ours to stop.
    ip netns exec "$(ha_gw "$n")" conntrackd -C "$conf" </dev/null >"$LAB_LOGS/conntrackd-gw$n.out" 2>&1 &
    lab_record "conntrackd-gw$n" "$!"
    for ((i = 0; i < 50; i++)); do
        if ctd "$n" -s >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    lab_die "conntrackd on gw$n did not answer within 5 s (see $LAB_LOGS/conntrackd-gw$n.*)"
}

# ha_alg_start N: ftp-alg on gateway N, with a configuration and status
# socket of its own (lib-lab.sh's alg_start, pointed at gw N's state).
ha_alg_start() {
    local n=$1
    mkdir -p "$HA_STATE/gw$n"
    LAB_STATE=$HA_STATE/gw$n NS_GW=$(ha_gw "$n") alg_start "gw$n" || return 1
    printf -v "ALG_PID_GW$n" '%s' "$ALG_PID"
    ALG_PID=
}

ha_up() {
    lab_preflight
    command -v conntrackd >/dev/null 2>&1 || lab_die "missing conntrackd (Debian package conntrackd; scripts/test.sh installs it)"
    [[ ! -e /run/netns/$NS_GW1 ]] || lab_die "HA lab $LAB_ID already exists"
    case $HA_STATE in */fa-ha-*) ;; *) lab_die "odd state dir $HA_STATE" ;; esac
    rm -rf "$HA_STATE" "$LAB_LOGS"
    mkdir -p "$HA_STATE/empty" "$HA_STATE/data" "$HA_STATE/sync" "$LAB_LOGS"
    chmod 755 "$HA_STATE" "$HA_STATE/empty"
    : >"$HA_STATE/pids"
    lab_log "building HA lab $LAB_ID (namespaces ${LAB_PREFIX}*, state $HA_STATE, logs $LAB_LOGS)"
    ha_topology
    ha_gateway 1
    ha_gateway 2
    ha_vips add 1
    local srv user
    user=$(lab_ftp_user)
    head -c 4096 /dev/urandom >"$HA_STATE/data/small.bin"
    head -c 2097152 /dev/urandom >"$HA_STATE/data/big.bin"
    for srv in so si; do
        mkdir -p "$HA_STATE/srv-$srv/root"
        cp "$HA_STATE/data/small.bin" "$HA_STATE/data/big.bin" "$HA_STATE/srv-$srv/root/"
        chmod 755 "$HA_STATE/srv-$srv" "$HA_STATE/srv-$srv/root"
        chmod 644 "$HA_STATE/srv-$srv/root/"*.bin
    done
    lab_vsftpd so4 "$NS_SO" "$HA_STATE/srv-so/root" listen=YES listen_ipv6=NO listen_address=203.0.113.10
    lab_vsftpd so6 "$NS_SO" "$HA_STATE/srv-so/root" listen=NO listen_ipv6=YES listen_address6=2001:db8:2::10
    lab_vsftpd si4 "$NS_SI" "$HA_STATE/srv-si/root" listen=YES listen_ipv6=NO listen_address=192.0.2.10
    lab_wait_listen "$NS_SO" 203.0.113.10:21
    lab_wait_listen "$NS_SO" "[2001:db8:2::10]:21"
    lab_wait_listen "$NS_SI" 192.0.2.10:21
    local pair
    for pair in "$NS_CL:198.51.100.1" "$NS_CL:2001:db8:1::1" "$NS_SO:203.0.113.254" "$NS_CO:203.0.113.1" \
        "$NS_SI:192.0.2.1" "$NS_GW1:192.0.2.250"; do
        nsx "${pair%%:*}" ping -q -c 1 -W 2 "${pair#*:}" >/dev/null 2>&1 ||
            lab_die "lab self-check: ping ${pair#*:} from ${pair%%:*} failed"
    done
    lab_log "HA lab $LAB_ID is up"
}

# ha_down: stop what we started (by PID, newest first), end whatever else
# still runs in our namespaces (vsftpd's session children), delete them.
ha_down() {
    local name pid ns i f pids
    for f in "$HA_STATE"/gw*/pids "$HA_STATE/pids"; do
        [[ -f $f ]] || continue
        while read -r name pid; do stop_pid "$pid" 5; done < <(tac "$f")
    done
    for ns in "${LAB_ALL_NS[@]}"; do
        [[ -e /run/netns/$ns ]] || continue
        for i in 1 2; do
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            [[ -n $pids ]] || break
            for pid in $pids; do
                if [[ $i == 1 ]]; then kill -TERM "$pid" 2>/dev/null || true; else kill -KILL "$pid" 2>/dev/null || true; fi
            done
            sleep 0.5
        done
    done
    cp "$HA_STATE"/vsftpd-*.log "$LAB_LOGS/" 2>/dev/null || true
    for ns in "${LAB_ALL_NS[@]}"; do
        if [[ -e /run/netns/$ns ]]; then ip netns del "$ns" 2>/dev/null || true; fi
    done
    if [[ -d $HA_STATE && $HA_STATE == */fa-ha-"$LAB_ID" ]]; then rm -rf "$HA_STATE"; fi
    for ns in "${LAB_ALL_NS[@]}"; do
        if [[ -e /run/netns/$ns ]]; then
            lab_log "warning: namespace left behind: $ns"
            return 1
        fi
    done
}
