#!/usr/bin/env bash
# scripts/ftps.sh -- FTPS (RFC 4217) through ftp-alg, and what it opens (run as root).
#
#   scripts/ftps.sh [--modes alg,kernel,open,none] [--places gw,dnat,host]
#
# (default: modes alg,kernel,open on all three placements, about 110 s;
# FTPS_ALG_CONFIG replaces the gateway's [[ftps]] configuration.)
#
# Builds a private lab (scripts/lib-lab.sh, its plain vsftpds off) and runs
# FTPS servers in it, with a certificate made here with openssl:
#
#   so 203.0.113.10  vsftpd ssl_enable=YES on 21 (explicit, AUTH TLS), a
#                    second one on [2001:db8:2::10]:21, and a third with
#                    implicit_ssl=YES on 990 of every address
#                    (listen_ipv6=YES, dual-stack: IPv4 clients reach it as
#                    ::ffff:203.0.113.10, so its data listeners are IPv6
#                    sockets with a mapped address); passive ports
#                    40000-40049
#   so 203.0.113.11  proftpd + mod_tls on 21 (explicit), PassivePorts
#                    40100-40149
#   si 192.0.2.10    vsftpd explicit on 21 and implicit on 990 behind the
#                    gateway's DNAT (203.0.113.1:21 and :990 forwarded; the
#                    passive range 40200-40249 is NOT forwarded),
#                    pasv_address=203.0.113.1: inside TLS nothing can be
#                    rewritten, the server must announce its public address
#   si 192.0.2.11    proftpd + mod_tls behind the DNAT of 203.0.113.2:21,
#                    PassivePorts 40300-40349, MasqueradeAddress 203.0.113.2
#
# Placements (--places):
#   gw    client cl (behind SNAT) -> so through the default-drop gateway
#   dnat  client co -> 203.0.113.1 -> si (the gateway's port forward)
#   host  client co -> so directly, over IPv4 and IPv6; so's own INPUT
#         is policy drop (host_firewall of lib-lab.sh: established and new
#         tcp 21, plus 990 here; no RELATED): the server's own host. Without
#         ftp-alg (modes kernel, none) every transfer fails here, IPv6 too.
#
# Modes (--modes):
#   alg     ftp-alg: on the gateway with only [[ftps]] entries configured
#           (server + passive_ports: session-scoped range pinholes), on the
#           server's host with `--paths local` and nothing configured
#           (exact pinholes: the listener the session's server process opened)
#   kernel  the kernel's FTP helper attached to port 21 (reference only; it
#           cannot read TLS, so it opens nothing: transfers fail)
#   open    a plain open passive range (what admins do without an ALG:
#           accept, and behind DNAT forward, the whole range to the server)
#   none    nothing opened (transfers fail)
# In kernel and none every data connection is blocked: downloads only.
#
# Clients: curl --ssl-reqd (explicit, EPSV and PASV), curl ftps:// (implicit,
# 990), lftp with ftp:ssl-force (explicit, and ftps:// implicit); a 1 MiB
# download and upload each, sha256 compared.
#
# Scope checks, in modes alg and open (a spare listener runs on a port of
# the range that no FTP server opened; a held explicit-TLS session from
# scripts/ftp_peers.py tls-hold has its PASV port P):
#   own-range      the session's client -> the spare port, during the session
#                  (range pinhole: reachable; exact pinhole: blocked)
#   second-port    a second client without a session -> P, during the session
#   second-range   the second client -> the spare port, during the session
#   own-transfer   the session's own data connection to P (must work)
#   after-quit     the session's client -> the spare port after QUIT
# "reachable" = connected or refused (the packet reached the host),
# "blocked" = no answer (dropped). On a plain open range every check but
# own-transfer must come out reachable: that shows the checks can fail.
#
# The firewall running ftp-alg must count 0 INVALID packets, and its ruleset
# after SIGTERM (exit 0) must be identical to before; its metrics must
# count an FTPS range (gateway) or an exact pinhole (host) per transfer
# (host: no fallback to a range, and the log names an exact pinhole per
# IPv6 transfer: "ftps exact ..."), and `ftp-alg status` must answer.
# Prints one line per case ("ftps case PLACE MODE PATH ..."), per scope
# check ("ftps scope ..."), one summary
# per placement and mode ("ftps summary ...") and a comparison table.
#
# Exit status: 0 every mode as expected, 1 something was not, 2 setup error.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib-lab.sh
source "$HERE/lib-lab.sh"
# shellcheck source=scripts/lib-servers.sh
source "$HERE/lib-servers.sh"

MODES=(alg kernel open)
PLACES=(gw dnat host)
while (($#)); do
    case $1 in
    --modes) IFS=, read -r -a MODES <<<"$2" && shift 2 ;;
    --places) IFS=, read -r -a PLACES <<<"$2" && shift 2 ;;
    *) lab_die "usage: scripts/ftps.sh [--modes alg,kernel,open,none] [--places gw,dnat,host]" ;;
    esac
done
for m in "${MODES[@]}"; do [[ $m =~ ^(alg|kernel|open|none)$ ]] || lab_die "unknown mode '$m'"; done
for p in "${PLACES[@]}"; do [[ $p =~ ^(gw|dnat|host)$ ]] || lab_die "unknown placement '$p'"; done
command -v openssl >/dev/null || lab_die "missing command 'openssl' (scripts/lib-deps.sh installs it)"

# The passive ranges: the servers' configuration and ftp-alg's [[ftps]].
SO_LOW=40000 SO_HIGH=40049 # vsftpd 203.0.113.10 (21 and 990)
SP_LOW=40100 SP_HIGH=40149 # proftpd 203.0.113.11
SI_LOW=40200 SI_HIGH=40249 # vsftpd 192.0.2.10 behind DNAT (203.0.113.1)
SIP_LOW=40300 SIP_HIGH=40349 # proftpd 192.0.2.11 behind DNAT (203.0.113.2)
SECOND_SRC=203.0.113.21    # co's second address: the second client outside
PROBE_SECS=1.5

SPARE_PIDS=()
HOLD_PID=
bench_extra_cleanup() {
    local pid
    if [[ -n $HOLD_PID ]]; then stop_pid "$HOLD_PID" 2; fi
    for pid in "${SPARE_PIDS[@]}"; do stop_pid "$pid" 2; done
}
LAB_NO_SERVERS=1 bench_lab_up "ft$(($$ % 1000000))" ftps
LAB_RUN_TAG=ftps$$
LAB_FAIL_MODES="none kernel"
FAILS=()
declare -A BAD=()
# fail PLACES MODE MESSAGE: a result not as expected, for each placement
# of the space-separated PLACES.
fail() {
    local p
    for p in $1; do BAD[$p.$2]=$((${BAD[$p.$2]:-0} + 1)); done
    FAILS+=("$1 $2: $3")
    lab_log "FAIL: $1 $2: $3"
}

# ------------------------------------------------------------ servers ---

TLS_DIR=$LAB_STATE/tls
mkdir -p "$TLS_DIR"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=ftps.lab.example" \
    -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" 2>"$LAB_LOGS/openssl.log" ||
    lab_die "openssl could not make the lab certificate (see $LAB_LOGS/openssl.log)"
chmod 600 "$TLS_DIR/key.pem"

# vsftpd_tls NAME NS ADDR PORT explicit|implicit LOW HIGH [PASV-ADDRESS]
# ADDR: an IPv4 address, an IPv6 one, or '*': every address of both
# families on one IPv6 socket (listen_ipv6=YES, the way Debian ships it).
vsftpd_tls() {
    local name=$1 ns=$2 addr=$3 port=$4 kind=$5 low=$6 high=$7 pub=${8:-}
    local srv=so lines
    [[ $ns == "$NS_SI" ]] && srv=si
    case $addr in
    '*') lines=(listen=NO listen_ipv6=YES) ;;
    *:*) lines=(listen=NO listen_ipv6=YES "listen_address6=$addr") ;;
    *) lines=(listen=YES listen_ipv6=NO "listen_address=$addr") ;;
    esac
    lines+=("listen_port=$port"
        ssl_enable=YES allow_anon_ssl=YES force_anon_logins_ssl=YES force_anon_data_ssl=YES
        "rsa_cert_file=$TLS_DIR/cert.pem" "rsa_private_key_file=$TLS_DIR/key.pem"
        require_ssl_reuse=NO ssl_ciphers=HIGH "pasv_min_port=$low" "pasv_max_port=$high")
    [[ $kind == implicit ]] && lines+=(implicit_ssl=YES)
    # No ALG can rewrite a 227 inside TLS: behind DNAT the server announces
    # the public address itself.
    [[ -n $pub ]] && lines+=("pasv_address=$pub")
    lab_vsftpd "$name" "$ns" "$LAB_STATE/srv-$srv/root" "${lines[@]}"
}

# proftpd_tls NAME NS ADDR LOW HIGH [MASQUERADE-ADDRESS]: proftpd with
# mod_tls (lab_proftpd of lib-servers.sh), explicit FTPS required on 21.
proftpd_tls() {
    local name=$1 ns=$2 addr=$3 low=$4 high=$5 pub=${6:-} srv=so
    [[ $ns == "$NS_SI" ]] && srv=si
    local d=("DefaultAddress $addr" "SocketBindTight on" "Port 21" "PassivePorts $low $high"
        "TLSEngine on" "TLSRequired on" "TLSProtocol TLSv1.2 TLSv1.3"
        "TLSRSACertificateFile $TLS_DIR/cert.pem" "TLSRSACertificateKeyFile $TLS_DIR/key.pem"
        "TLSOptions NoSessionReuseRequired" "TLSVerifyClient off" "TLSLog $LAB_STATE/proftpd-$name.tls.log")
    # As vsftpd's pasv_address: the 227 inside TLS carries the public address.
    [[ -n $pub ]] && d+=("MasqueradeAddress $pub")
    lab_proftpd "$name" "$ns" "$LAB_STATE/srv-$srv/root" "${d[@]}"
}

nsx "$NS_SO" ip addr add 203.0.113.11/24 dev eth0
nsx "$NS_SI" ip addr add 192.0.2.11/24 dev eth0
nsx "$NS_GW" ip addr add 203.0.113.2/24 dev "$GW_OUT"
nsx "$NS_CO" ip addr add "$SECOND_SRC/24" dev eth0
vsftpd_tls so-x "$NS_SO" 203.0.113.10 21 explicit "$SO_LOW" "$SO_HIGH"
vsftpd_tls so-x6 "$NS_SO" 2001:db8:2::10 21 explicit "$SO_LOW" "$SO_HIGH"
vsftpd_tls so-i "$NS_SO" '*' 990 implicit "$SO_LOW" "$SO_HIGH"
vsftpd_tls si-x "$NS_SI" 192.0.2.10 21 explicit "$SI_LOW" "$SI_HIGH" 203.0.113.1
vsftpd_tls si-i "$NS_SI" 192.0.2.10 990 implicit "$SI_LOW" "$SI_HIGH" 203.0.113.1
proftpd_tls so-p "$NS_SO" 203.0.113.11 "$SP_LOW" "$SP_HIGH"
proftpd_tls si-p "$NS_SI" 192.0.2.11 "$SIP_LOW" "$SIP_HIGH" 203.0.113.2
for l in "$NS_SO 203.0.113.10:21" "$NS_SO [2001:db8:2::10]:21" "$NS_SO *:990" "$NS_SO 203.0.113.11:21" \
    "$NS_SI 192.0.2.10:21" "$NS_SI 192.0.2.10:990" "$NS_SI 192.0.2.11:21"; do
    lab_wait_listen "${l% *}" "${l#* }"
done
# ss shows a dual-stack IPv6 listener as *:PORT ([::]:PORT is IPV6_V6ONLY):
# the implicit vsftpd must be the former, or the ::ffff: case is not run.
SO_I_LISTENER=$(nsx "$NS_SO" ss -Hltn6 'sport = :990' | awk '{ print $4; exit }')
printf 'ftps listener so vsftpd-implicit %s (listen_ipv6=YES)\n' "$SO_I_LISTENER"
[[ $SO_I_LISTENER == '*:990' ]] || lab_die "the implicit vsftpd listens on '$SO_I_LISTENER', not dual-stack *:990"

# The spare listeners: the last port of each vsftpd range, opened by no
# FTP server (vsftpd and proftpd pick another port when one is taken).
spare_start() { # NS ADDR PORT
    nsx "$1" timeout -k 2 600 python3 "$HERE/ftp_peers.py" listen --host "$2" --port "$3" --seconds 590 \
        </dev/null >"$LAB_LOGS/spare-$2-$3.log" 2>&1 &
    SPARE_PIDS+=("$!")
    lab_record spare "$!"
    lab_wait_listen "$1" "$2:$3"
}
spare_start "$NS_SO" 203.0.113.10 "$SO_HIGH"
spare_start "$NS_SI" 192.0.2.10 "$SI_HIGH"

# The gateway also lets the FTPS control connections through: 990 to the
# outside vsftpd, 21 to proftpd, and the port forward of 990.
ipt4 -t filter -A FORWARD -i "$GW_CLI" -o "$GW_OUT" -s 198.51.100.0/24 -d 203.0.113.10 \
    -p tcp --dport 990 -m conntrack --ctstate NEW -j ACCEPT
ipt4 -t filter -A FORWARD -i "$GW_CLI" -o "$GW_OUT" -s 198.51.100.0/24 -d 203.0.113.11 \
    -p tcp --dport 21 -m conntrack --ctstate NEW -j ACCEPT
ipt4 -t filter -A FORWARD -i "$GW_OUT" -o "$GW_SRV" -d 192.0.2.10 \
    -p tcp --dport 990 -m conntrack --ctstate NEW --ctorigdst 203.0.113.1 -j ACCEPT
ipt4 -t nat -A PREROUTING -d 203.0.113.1 -p tcp --dport 990 -j DNAT --to-destination 192.0.2.10
ipt4 -t filter -A FORWARD -i "$GW_OUT" -o "$GW_SRV" -d 192.0.2.11 \
    -p tcp --dport 21 -m conntrack --ctstate NEW --ctorigdst 203.0.113.2 -j ACCEPT
ipt4 -t nat -A PREROUTING -d 203.0.113.2 -p tcp --dport 21 -j DNAT --to-destination 192.0.2.11

# so as the server's own host: host_firewall of lib-lab.sh (INPUT policy
# drop, established and new control connections to 21 accepted), plus 990.
so_host_firewall() {
    host_firewall "$NS_SO" server
    FW_NS=$NS_SO ipt4 -t filter -A INPUT -p tcp --dport 990 -m conntrack --ctstate NEW -j ACCEPT
    FW_NS=$NS_SO ipt6 -t filter -A INPUT -p tcp --dport 990 -m conntrack --ctstate NEW -j ACCEPT
}

# open_range PLACE on|off: the plain open passive range, as admins open it
# without an ALG: any source, the whole range, forwarded behind DNAT.
open_range() {
    local op=-A
    [[ $2 == off ]] && op=-D
    case $1 in
    gw)
        ipt4 -t filter "$op" FORWARD -d 203.0.113.10 -p tcp --dport "$SO_LOW:$SO_HIGH" -m conntrack --ctstate NEW -j ACCEPT
        ipt4 -t filter "$op" FORWARD -d 203.0.113.11 -p tcp --dport "$SP_LOW:$SP_HIGH" -m conntrack --ctstate NEW -j ACCEPT
        ;;
    dnat)
        ipt4 -t nat "$op" PREROUTING -d 203.0.113.1 -p tcp --dport "$SI_LOW:$SI_HIGH" -j DNAT --to-destination 192.0.2.10
        ipt4 -t filter "$op" FORWARD -d 192.0.2.10 -p tcp --dport "$SI_LOW:$SI_HIGH" -m conntrack --ctstate NEW -j ACCEPT
        ipt4 -t nat "$op" PREROUTING -d 203.0.113.2 -p tcp --dport "$SIP_LOW:$SIP_HIGH" -j DNAT --to-destination 192.0.2.11
        ipt4 -t filter "$op" FORWARD -d 192.0.2.11 -p tcp --dport "$SIP_LOW:$SIP_HIGH" -m conntrack --ctstate NEW -j ACCEPT
        ;;
    host)
        ipt4 -t filter "$op" INPUT -p tcp -m multiport --dports "$SO_LOW:$SO_HIGH,$SP_LOW:$SP_HIGH" -m conntrack --ctstate NEW -j ACCEPT
        ipt6 -t filter "$op" INPUT -p tcp --dport "$SO_LOW:$SO_HIGH" -m conntrack --ctstate NEW -j ACCEPT
        ;;
    esac
}

# ---------------------------------------------------------------- cases ---

# place_rows PLACE MODE: the transfers of a placement (path|client|what);
# in the modes where every data connection is blocked (LAB_FAIL_MODES),
# downloads only: each costs the clients' connect timeout. The server's
# host also gets IPv6 (co-so6; no PASV: its 227 carries IPv4 only, RFC
# 2428 section 1).
place_rows() {
    local v p v6= c w rows=() whats=(download upload)
    [[ " $LAB_FAIL_MODES " == *" $2 "* ]] && whats=(download)
    case $1 in
    gw) v=cl-sov p=cl-sop ;;
    dnat) v=co-siv p=co-sip ;;
    host) v=co-sov p=co-sop v6=co-so6 ;;
    esac
    for w in "${whats[@]}"; do
        for c in curl-tls-epsv curl-tls-pasv lftp-tls curl-ftps lftp-ftps; do rows+=("$v|$c|$w"); done
        if [[ -n $p ]]; then
            for c in curl-tls-epsv curl-tls-pasv lftp-tls; do rows+=("$p|$c|$w"); done
        fi
        if [[ -n $v6 ]]; then
            for c in curl-tls-epsv lftp-tls curl-ftps lftp-ftps; do rows+=("$v6|$c|$w"); done
        fi
    done
    printf '%s\n' "${rows[@]}"
}

# server_of PATH CLIENT: the server a case talks to, for the summary.
server_of() {
    case $1 in
    *-sop | *-sip) echo proftpd-explicit ;;
    *) if [[ $2 == *ftps ]]; then echo vsftpd-implicit; else echo vsftpd-explicit; fi ;;
    esac
}

# ftps_expect MODE WHAT PATH CLIENT (EXPECTATION_FN): FTPS data
# connections pass with ftp-alg and through an open range, fail with nothing
# opened or with the kernel helper.
EXPECTATION_FN=ftps_expect
ftps_expect() {
    case $1 in
    alg | open) echo pass ;;
    *) echo fail ;;
    esac
}

declare -A PASSED=() PASSED6=() TOTAL=() SCOPE_OK=() SCOPE_N=() SCOPE_BAD=() CHECK=()

# run_cases PLACE MODE
run_cases() {
    local place=$1 mode=$2 row path client what got
    mapfile -t MATRIX_ROWS < <(place_rows "$place" "$mode")
    matrix_run_cases "$mode"
    PASSED[$place.$mode]=0
    TOTAL[$place.$mode]=${#MATRIX_ROWS[@]}
    for row in "${MATRIX_ROWS[@]}"; do
        IFS='|' read -r path client what <<<"$row"
        got=${RES["$mode|$row"]}
        [[ $got == pass ]] && PASSED[$place.$mode]=$((${PASSED[$place.$mode]} + 1))
        [[ $got == pass && $path == co-so6 ]] && PASSED6[$place.$mode]=$((${PASSED6[$place.$mode]:-0} + 1))
        printf 'ftps case %-4s %-6s %-6s %-16s %-13s %-8s %s%s\n' "$place" "$mode" "$path" "$(server_of "$path" "$client")" \
            "$client" "$what" "$got" "${ERR["$mode|$row"]:+ (${ERR["$mode|$row"]})}"
    done
    ((${MODE_BAD[$mode]} == 0)) || fail "$place" "$mode" "${MODE_BAD[$mode]} of ${#MATRIX_ROWS[@]} transfers not as expected"
}

# ---------------------------------------------------------------- scope ---

# probe NS HOST PORT [SOURCE] -> reachable|blocked
probe() {
    local r
    r=$(nsx "$1" timeout -k 1 10 python3 "$HERE/ftp_peers.py" probe --host "$2" --port "$3" \
        ${4:+--source "$4"} --timeout "$PROBE_SECS" 2>&1 || true)
    case $r in
    connected | refused) echo reachable ;;
    timeout) echo blocked ;;
    *) echo "error($r)" ;;
    esac
}

# check PLACE MODE NAME GOT WANT
check() {
    local key=$1.$2 ok=ok
    SCOPE_N[$key]=$((${SCOPE_N[$key]:-0} + 1))
    if [[ $4 == "$5" ]]; then
        SCOPE_OK[$key]=$((${SCOPE_OK[$key]:-0} + 1))
    else
        ok="NOT AS EXPECTED"
        SCOPE_BAD[$key]=$((${SCOPE_BAD[$key]:-0} + 1))
        fail "$1" "$2" "scope $3: $4, expected $5"
    fi
    CHECK[$1.$2.$3]=$4
    printf 'ftps scope %-4s %-6s %-13s %-10s (expected %s) %s\n' "$1" "$2" "$3" "$4" "$5" "$ok"
}

# scope PLACE MODE: the held session and the probes around it.
scope() {
    local place=$1 mode=$2 cns host sns sec= spare
    case $place in
    gw) cns=$NS_CL host=203.0.113.10 sns=$NS_CS spare=$SO_HIGH ;;
    dnat) cns=$NS_CO host=203.0.113.1 sns=$NS_CO sec=$SECOND_SRC spare=$SI_HIGH ;;
    host) cns=$NS_CO host=203.0.113.10 sns=$NS_CO sec=$SECOND_SRC spare=$SO_HIGH ;;
    esac
    # What each check must show: ftp-alg opens the range (gateway) or the
    # exact port (host) for the session's client only, while it lives; a
    # plain open range opens everything to everyone, always.
    local w_own=reachable w_blk=blocked
    [[ $mode == alg && $place == host ]] && w_own=blocked
    [[ $mode == open ]] && w_blk=reachable
    local sync=$LAB_STATE/hold-$place-$mode out=$LAB_LOGS/hold-$place-$mode.log i port
    rm -rf "$sync"
    mkdir -p "$sync"
    nsx "$cns" timeout -k 2 120 python3 "$HERE/ftp_peers.py" tls-hold --host "$host" --sync "$sync" \
        --sha256 "$(sha "$LAB_STATE/data/small.bin")" --wait-timeout 90 </dev/null >"$out" 2>&1 &
    HOLD_PID=$!
    lab_record hold "$HOLD_PID"
    for ((i = 0; i < 150; i++)); do
        [[ -e $sync/held ]] && break
        kill -0 "$HOLD_PID" 2>/dev/null || break
        sleep 0.1
    done
    port=$(awk '$1 == "held" { print $2 }' "$out")
    if [[ -z $port ]]; then
        fail "$place" "$mode" "scope: the held FTPS session got no PASV answer: $(tail -n 2 "$out" | tr '\n' ' ')"
        stop_pid "$HOLD_PID" 2
        HOLD_PID=
        return
    fi
    lab_log "$place $mode: held FTPS session, PASV port $port"
    # The second client can reach the server's control port: a blocked
    # data port below is the firewall's doing, not a dead route.
    check "$place" "$mode" second-ctrl "$(probe "$sns" "$host" 21 "$sec")" reachable
    check "$place" "$mode" own-range "$(probe "$cns" "$host" "$spare")" "$w_own"
    check "$place" "$mode" second-port "$(probe "$sns" "$host" "$port" "$sec")" "$w_blk"
    check "$place" "$mode" second-range "$(probe "$sns" "$host" "$spare" "$sec")" "$w_blk"
    touch "$sync/go1"
    for ((i = 0; i < 200; i++)); do
        [[ -e $sync/used ]] && break
        kill -0 "$HOLD_PID" 2>/dev/null || break
        sleep 0.1
    done
    local xfer=failed
    grep -q '^transfer ok' "$out" && xfer=ok
    # On an open range the second client's connect to P may have taken the
    # server's one accept, so the session's own transfer is not asserted there.
    local w_x=ok
    [[ $mode == open ]] && w_x=$xfer
    check "$place" "$mode" own-transfer "$xfer" "$w_x"
    touch "$sync/go2"
    for ((i = 0; i < 100; i++)); do
        kill -0 "$HOLD_PID" 2>/dev/null || break
        sleep 0.1
    done
    wait "$HOLD_PID" 2>/dev/null || true
    HOLD_PID=
    grep -q '^quit' "$out" || fail "$place" "$mode" "scope: the held session did not QUIT cleanly: $(tail -n 2 "$out" | tr '\n' ' ')"
    # The session's end (its FIN) removes its pinholes.
    sleep 1
    check "$place" "$mode" after-quit "$(probe "$cns" "$host" "$spare")" "$w_blk"
}

# ---------------------------------------------------------------- modes ---

declare -A INV=() RULESET=()

# ftp-alg's configuration on the gateway: only the FTPS servers. Set
# FTPS_ALG_CONFIG (even empty) to replace it, e.g. to see the checks fail
# without [[ftps]].
ALG_FTPS_CONFIG=${FTPS_ALG_CONFIG-"ftps_control_ports = [990]
[[ftps]]
server = \"203.0.113.10\"
passive_ports = \"$SO_LOW-$SO_HIGH\"
[[ftps]]
server = \"203.0.113.11\"
passive_ports = \"$SP_LOW-$SP_HIGH\"
[[ftps]]
server = \"192.0.2.10\"
passive_ports = \"$SI_LOW-$SI_HIGH\"
[[ftps]]
server = \"192.0.2.11\"
passive_ports = \"$SIP_LOW-$SIP_HIGH\"
"}

# metric FILE NAME: a sample's value in a scraped metrics file (0 if absent).
metric() { awk -v k="$2" '$1 == k { v = $2 } END { print v + 0 }' "$1"; }

# ftps_observability GROUP PLACES...: `ftp-alg status` answers, and the
# metrics account for the FTPS transfers that passed: on the gateway an
# FTPS session with a range for each (ftp_alg_ftps_sessions_total, range
# pinholes opened, none live after the sessions ended), on the server's
# host an exact pinhole for each and no fallback to a range.
ftps_observability() {
    local group=$1 p passed=0 passed6 m=$LAB_LOGS/metrics-$group.txt
    shift
    for p in "$@"; do passed=$((passed + ${PASSED[$p.alg]:-0})); done
    sleep 2.5 # the daemon publishes once a second
    "$(alg_bin)" status --socket "$ALG_STATUS_SOCKET" >"$LAB_LOGS/status-$group.txt" 2>&1 ||
        fail "$*" alg "ftp-alg status failed: $(tail -n 1 "$LAB_LOGS/status-$group.txt")"
    if ! nsx "${FW_NS:-$NS_GW}" curl -s -m 5 "http://$ALG_METRICS/metrics" >"$m"; then
        fail "$*" alg "metrics: the scrape of http://$ALG_METRICS/metrics failed"
        return
    fi
    local sessions ranges live exact fallbacks
    sessions=$(metric "$m" ftp_alg_ftps_sessions_total)
    ranges=$(metric "$m" 'ftp_alg_pinholes_total{form="range",outcome="opened"}')
    live=$(metric "$m" ftp_alg_ftps_ranges)
    exact=$(metric "$m" ftp_alg_ftps_exact_pinholes_total)
    fallbacks=$(metric "$m" ftp_alg_ftps_fallbacks_total)
    local note="metrics for $passed FTPS transfers: ftps sessions $sessions, range pinholes opened $ranges, live ranges $live, exact pinholes $exact, fallbacks $fallbacks"
    lab_log "$group alg: $note"
    if [[ $group == host ]]; then
        # The log names each exact pinhole's address: one to so's IPv6
        # address per IPv6 transfer that passed.
        local lines6
        passed6=${PASSED6[host.alg]:-0}
        lines6=$(grep -c 'exact pinhole .*-> \[\?2001:db8:2::10\]\?:' "$LAB_LOGS/alg-$group.stderr" || true)
        printf 'ftps exact host alg: transfers %d (IPv6 %d), exact pinholes %d, fallbacks %d, IPv6 exact-pinhole log lines %d\n' \
            "$passed" "$passed6" "$exact" "$fallbacks" "$lines6"
        ((passed > 0 && exact >= passed && fallbacks == 0)) || fail "$*" alg "$note: expected an exact pinhole per transfer, no fallback"
        ((passed6 > 0 && lines6 >= passed6)) || fail "$*" alg "$lines6 exact-pinhole log lines to 2001:db8:2::10 for $passed6 IPv6 transfers"
    else
        ((sessions >= passed && ranges >= passed && live == 0)) ||
            fail "$*" alg "$note: expected a session and a range per transfer, none live at the end"
    fi
}

# phase GROUP MODE PLACES...: one mode for the placements of one firewall
# (the gateway: gw and dnat; the server's host: host).
phase() {
    local group=$1 mode=$2 p
    shift 2
    lab_log "=== $group: mode $mode ($*) ==="
    local t0=$SECONDS
    lab_flush_conntrack
    lab_zero_counters
    local admin after
    admin=$(lab_ruleset)
    printf '%s\n' "$admin" >"$LAB_LOGS/ruleset-before-$group-$mode.txt"
    case $mode in
    alg)
        local ALG_EXTRA_CONFIG=
        local ALG_RUN_ARGS=
        if [[ $group == host ]]; then
            # Nothing configured: exact pinholes from the server's sockets.
            ALG_RUN_ARGS="--paths local"
        else
            ALG_EXTRA_CONFIG=$ALG_FTPS_CONFIG
        fi
        if ! alg_start "$group"; then
            fail "$*" alg "ftp-alg did not become ready (log: $LAB_LOGS/alg-$group.stderr)"
            return
        fi
        ;;
    kernel) if [[ $group == host ]]; then host_kernel_helper "$NS_SO" server on; else lab_kernel_helper on; fi ;;
    open) for p in "$@"; do open_range "$p" on; done ;;
    none) ;;
    esac
    for p in "$@"; do run_cases "$p" "$mode"; done
    if [[ $mode == alg || $mode == open ]]; then
        for p in "$@"; do scope "$p" "$mode"; done
    fi
    matrix_invalid_note
    for p in "$@"; do INV[$p.$mode]=$INVALID_TOTAL; done
    lab_log "$group $mode: $INVALID_NOTE"
    case $mode in
    alg)
        kill -0 "$ALG_PID" 2>/dev/null || fail "$*" alg "ftp-alg was not running any more after the cases"
        ftps_observability "$group" "$@"
        ((INVALID_TOTAL == 0)) || fail "$*" alg "$INVALID_NOTE (expected 0)"
        alg_stop
        [[ $ALG_RC == 0 ]] || fail "$*" alg "exit status after SIGTERM $ALG_RC (expected 0)"
        after=$(lab_ruleset)
        printf '%s\n' "$after" >"$LAB_LOGS/ruleset-after-$group-$mode.txt"
        local same=identical
        if [[ $after != "$admin" ]]; then
            same=differs
            fail "$*" alg "the ruleset after SIGTERM differs from before (diff $LAB_LOGS/ruleset-{before,after}-$group-$mode.txt)"
        fi
        for p in "$@"; do RULESET[$p]=$same; done
        ;;
    kernel) if [[ $group == host ]]; then host_kernel_helper "$NS_SO" server off; else lab_kernel_helper off; fi ;;
    open) for p in "$@"; do open_range "$p" off; done ;;
    esac
    lab_log "$group $mode: $((SECONDS - t0)) s"
}

GW_PLACES=() HOST_PLACE=0
for p in "${PLACES[@]}"; do
    if [[ $p == host ]]; then HOST_PLACE=1; else GW_PLACES+=("$p"); fi
done
if ((${#GW_PLACES[@]})); then
    for m in "${MODES[@]}"; do phase gateway "$m" "${GW_PLACES[@]}"; done
fi
if ((HOST_PLACE)); then
    # The host phase comes last: so's firewall stays until the teardown.
    so_host_firewall
    FW_NS=$NS_SO
    for m in "${MODES[@]}"; do phase host "$m" host; done
    FW_NS=
fi

# -------------------------------------------------------------- summary ---

echo
for p in "${PLACES[@]}"; do
    for m in "${MODES[@]}"; do
        k=$p.$m
        line="ftps summary $p $m: transfers ${PASSED[$k]:-0}/${TOTAL[$k]:-0}"
        if [[ $m == alg || $m == open ]]; then line+=", scope checks as expected ${SCOPE_OK[$k]:-0}/${SCOPE_N[$k]:-0}"; fi
        line+=", INVALID ${INV[$k]:-?}"
        [[ $m == alg ]] && line+=", ruleset after SIGTERM ${RULESET[$p]:-?}"
        verdict=OK
        ((${BAD[$k]:-0} == 0)) || verdict="NOT AS EXPECTED (${BAD[$k]})"
        echo "$line: $verdict"
    done
done

# The comparison table for README's FTPS section (markdown).
cell() { # PLACE MODE CHECK
    local v=${CHECK[$1.$2.$3]:-}
    case $v in
    reachable) echo "reachable" ;;
    blocked) echo "blocked" ;;
    ok) echo "works" ;;
    failed) echo "fails" ;;
    "") echo "-" ;;
    *) echo "$v" ;;
    esac
}
echo
echo "| placement | | $(for m in "${MODES[@]}"; do printf '%s | ' "$m"; done)"
echo "|---|---|$(for m in "${MODES[@]}"; do printf -- '---|'; done)"
for p in "${PLACES[@]}"; do
    printf '| %s | transfers |' "$p"
    for m in "${MODES[@]}"; do printf ' %s/%s |' "${PASSED[$p.$m]:-0}" "${TOTAL[$p.$m]:-0}"; done
    echo
    for c in own-range second-port second-range after-quit; do
        printf '| %s | %s |' "$p" "$c"
        for m in "${MODES[@]}"; do printf ' %s |' "$(cell "$p" "$m" "$c")"; done
        echo
    done
done

if ((${#FAILS[@]})); then
    printf '\nftps result: %d problem(s):\n' "${#FAILS[@]}"
    printf '  %s\n' "${FAILS[@]}"
    exit 1
fi
echo
echo "ftps result: OK (${MODES[*]} on ${PLACES[*]})"
exit 0
