#!/usr/bin/env bash
# scripts/ftps-exact.sh -- exact FTPS pinholes on the server's own host
# (issue 12, item 2), live (run as root; about 40 s).
#
# A small lab of its own (namespaces fx-<ID>-*): a switch, the server host
# srv (203.0.113.10, 2001:db8:2::10) running vsftpd with ssl_enable=YES
# (explicit TLS, certificate made here with openssl, listen_ipv6=YES: IPv4
# clients reach it as ::ffff:203.0.113.10, so its data listeners are IPv6
# sockets with a mapped address), passive ports 40000-40049, behind its own
# INPUT policy drop (host_firewall of lib-lab.sh: established and new
# tcp/21 only); the client cl (203.0.113.20) and a third host th
# (203.0.113.30) without a session.
#
#   1. without ftp-alg: curl --ssl-reqd EPSV download fails (the check can
#      fail);
#   2. `ftp-alg run --paths local`, NOTHING configured (no [[ftps]]):
#      curl --ssl-reqd downloads over EPSV (IPv4, IPv6) and PASV, and an
#      upload, sha256 equal; every one through an exact pinhole found from
#      the server's new listener (metrics ftp_alg_ftps_exact_pinholes_total,
#      no fallback);
#   3. scope, with a held FTPS session of cl (ftp_peers.py tls-hold): th
#      cannot reach the session's passive port, cl cannot reach a port of
#      the range that the server did not open (a spare listener), the
#      session's own transfer works;
#   4. 0 INVALID on srv; SIGTERM exits 0 with srv's ruleset as before.
#
# Exit status: 0 all as expected, 1 something was not, 2 setup error.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib-lab.sh
source "$HERE/lib-lab.sh"

ID=${FX_ID:-x$$}
# Every namespace of this script, the preflight's probe included, is fx-*.
LAB_NS_BASE=fx-
lab_names "$ID"
LAB_PREFIX="fx-$ID-"
NS_SW=${LAB_PREFIX}sw NS_SRV=${LAB_PREFIX}srv NS_CL=${LAB_PREFIX}cl NS_TH=${LAB_PREFIX}th
NS_GW=$NS_SRV NS_CS= NS_SO= NS_CO= NS_SI=
LAB_ALL_NS=("$NS_SW" "$NS_SRV" "$NS_CL" "$NS_TH")
FW_NS=$NS_SRV
SRV4=203.0.113.10 SRV6=2001:db8:2::10 SPARE=40049
command -v openssl >/dev/null || lab_die "missing command 'openssl' (scripts/lib-deps.sh installs it)"

FAILS=0 ALG_PID=
fail() {
    printf 'ftps-exact FAIL: %s\n' "$*"
    FAILS=$((FAILS + 1))
}
ok() { printf 'ftps-exact ok: %s\n' "$*"; }

cleanup() {
    alg_stop 2>/dev/null || true
    lab_down || true
}
trap cleanup EXIT
trap 'exit 2' INT TERM

lab_preflight
lab_state_init
lab_namespaces
nsx "$NS_SW" ip link add name br0 type bridge stp_state 0 forward_delay 0
nsx "$NS_SW" ip link set dev br0 up
for h in srv cl th; do
    lab_veth "${LAB_PREFIX}$h" eth0 "$NS_SW" "$h"
    nsx "$NS_SW" ip link set dev "$h" master br0
done
host_addr "$NS_SRV" $SRV4 $SRV6
host_addr "$NS_CL" 203.0.113.20 2001:db8:2::20
host_addr "$NS_TH" 203.0.113.30 2001:db8:2::30
host_firewall "$NS_SRV" server
lab_files srv

TLS_DIR=$LAB_STATE/tls
mkdir -p "$TLS_DIR"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=ftps-exact.lab.example" \
    -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" 2>"$LAB_LOGS/openssl.log" ||
    lab_die "openssl could not make the lab certificate (see $LAB_LOGS/openssl.log)"
lab_vsftpd srv "$NS_SRV" "$LAB_STATE/srv-srv/root" listen=NO listen_ipv6=YES \
    ssl_enable=YES allow_anon_ssl=YES force_anon_logins_ssl=YES force_anon_data_ssl=YES \
    "rsa_cert_file=$TLS_DIR/cert.pem" "rsa_private_key_file=$TLS_DIR/key.pem" \
    require_ssl_reuse=NO ssl_ciphers=HIGH pasv_min_port=40000 pasv_max_port=40048
for ((i = 0; i < 50; i++)); do
    nsx "$NS_SRV" ss -Hltn 2>/dev/null | awk '$4 ~ /:21$/ { found = 1 } END { exit !found }' && break
    sleep 0.1
done
((i < 50)) || lab_die "vsftpd does not listen on port 21 (see $LAB_STATE/vsftpd-srv.out)"
# A port of the range that vsftpd never opened: the spare listener.
nsx "$NS_SRV" timeout -k 2 300 python3 "$HERE/ftp_peers.py" listen --host $SRV4 --port $SPARE \
    --seconds 290 </dev/null >"$LAB_LOGS/spare.log" 2>&1 &
lab_record spare $!

# curl_tls NAME URL [ARGS...]: an explicit-TLS transfer from cl.
curl_tls() {
    local name=$1 url=$2
    shift 2
    nsx "$NS_CL" timeout -k 2 40 curl -sS -g --ssl-reqd -k --connect-timeout 4 -m 30 "$@" "$url" \
        >"$LAB_LOGS/curl-$name.out" 2>"$LAB_LOGS/curl-$name.err"
}

# download NAME URL [ARGS...] -> 0 when the file arrived whole
download() {
    local name=$1 url=$2 out=$LAB_STATE/out/$1.bin
    shift 2
    rm -f "$out"
    curl_tls "$name" "$url" -o "$out" "$@" || return 1
    [[ $(sha "$out") == "$(sha "$LAB_STATE/data/file.bin")" ]]
}

# probe NS HOST PORT -> reachable|blocked
probe() {
    local r
    r=$(nsx "$1" timeout -k 1 10 python3 "$HERE/ftp_peers.py" probe --host "$2" --port "$3" --timeout 2 2>&1 || true)
    case $r in
    connected | refused) echo reachable ;;
    timeout) echo blocked ;;
    *) echo "error($r)" ;;
    esac
}

expect() { # NAME GOT WANT
    if [[ $2 == "$3" ]]; then ok "$1: $2"; else fail "$1: $2, expected $3"; fi
}

metric() { awk -v k="$1" '$1 == k { print $2 }' "$LAB_LOGS/metrics.txt"; }

# 1. Without ftp-alg the passive data connection meets srv's drop.
t0=$SECONDS
if download none-epsv "ftp://$SRV4/file.bin"; then
    fail "without ftp-alg the EPSV download passed: the check cannot fail"
else
    ok "without ftp-alg the EPSV download fails ($((SECONDS - t0)) s)"
fi

# 2. ftp-alg on srv, local path, nothing configured.
lab_flush_conntrack
lab_zero_counters
before=$(lab_ruleset)
ALG_RUN_ARGS="--paths local"
alg_start srv || lab_die "ftp-alg did not become ready (log: $LAB_LOGS/alg-srv.stderr)"
xfers=0
for row in "v4-epsv|ftp://$SRV4/file.bin" "v4-pasv|ftp://$SRV4/file.bin|--disable-epsv" "v6-epsv|ftp://[$SRV6]/file.bin"; do
    IFS='|' read -r name url extra <<<"$row"
    # shellcheck disable=SC2086
    if download "$name" "$url" $extra; then ok "download $name, sha256 equal"; xfers=$((xfers + 1)); else fail "download $name (see $LAB_LOGS/curl-$name.err)"; fi
done
if curl_tls upload "ftp://$SRV4/up/up-v4.bin" -T "$LAB_STATE/data/up.bin" &&
    [[ $(sha "$LAB_STATE/srv-srv/root/up/up-v4.bin") == "$(sha "$LAB_STATE/data/up.bin")" ]]; then
    ok "upload v4-epsv, sha256 equal"
    xfers=$((xfers + 1))
else
    fail "upload v4-epsv (see $LAB_LOGS/curl-upload.err)"
fi

# 3. Scope around a held session of cl.
sync=$LAB_STATE/hold out=$LAB_LOGS/hold.log
mkdir -p "$sync"
nsx "$NS_CL" timeout -k 2 120 python3 "$HERE/ftp_peers.py" tls-hold --host $SRV4 --sync "$sync" \
    --sha256 "$(sha "$LAB_STATE/data/small.bin")" --wait-timeout 60 </dev/null >"$out" 2>&1 &
hold=$!
lab_record hold "$hold"
for ((i = 0; i < 150; i++)); do
    [[ -e $sync/held ]] && break
    kill -0 "$hold" 2>/dev/null || break
    sleep 0.1
done
port=$(awk '$1 == "held" { print $2 }' "$out")
if [[ -z $port ]]; then
    fail "the held FTPS session got no PASV answer: $(tail -n 2 "$out" | tr '\n' ' ')"
else
    expect "third host -> srv:21 (the route works)" "$(probe "$NS_TH" $SRV4 21)" reachable
    expect "third host -> the session's passive port $port" "$(probe "$NS_TH" $SRV4 "$port")" blocked
    expect "session's client -> a range port the server did not open ($SPARE)" "$(probe "$NS_CL" $SRV4 $SPARE)" blocked
    touch "$sync/go1"
    for ((i = 0; i < 200; i++)); do
        [[ -e $sync/used ]] && break
        kill -0 "$hold" 2>/dev/null || break
        sleep 0.1
    done
    if grep -q '^transfer ok' "$out"; then xfer=ok; xfers=$((xfers + 1)); else xfer=failed; fi
    expect "the held session's own transfer on $port" "$xfer" ok
    touch "$sync/go2"
fi
for ((i = 0; i < 100; i++)); do
    kill -0 "$hold" 2>/dev/null || break
    sleep 0.1
done
wait "$hold" 2>/dev/null || true

# 4. What ftp-alg says, INVALID, and the exit.
sleep 2.5 # the daemon publishes its counters once a second
nsx "$NS_SRV" curl -s -m 5 "http://$ALG_METRICS/metrics" >"$LAB_LOGS/metrics.txt" || fail "metrics scrape"
exact=$(metric ftp_alg_ftps_exact_pinholes_total)
fallbacks=$(metric ftp_alg_ftps_fallbacks_total)
if [[ -n $exact ]] && ((exact >= xfers && xfers > 0)) && [[ $fallbacks == 0 ]]; then
    ok "metrics: $exact exact FTPS pinholes for $xfers transfers, $fallbacks fallbacks"
else
    fail "metrics: ${exact:-?} exact FTPS pinholes for $xfers transfers, ${fallbacks:-?} fallbacks"
fi
n=$(grep -c 'exact pinhole' "$LAB_LOGS/alg-srv.stderr" || true)
((n >= xfers)) && ok "log: $n lines 'FTPS data listener tied to the session: exact pinhole'" || fail "log: $n exact-pinhole lines for $xfers transfers"
inv=$(($(invalid_count 4 INPUT) + $(invalid_count 6 INPUT)))
expect "INVALID packets dropped on srv" "$inv" 0
alg_stop
expect "ftp-alg exit status after SIGTERM" "$ALG_RC" 0
[[ $(lab_ruleset) == "$before" ]] && ok "ruleset after SIGTERM identical" || fail "ruleset after SIGTERM differs"

if ((FAILS)); then
    printf 'ftps-exact: %d checks NOT as expected (logs: %s)\n' "$FAILS" "$LAB_LOGS"
    exit 1
fi
printf 'ftps-exact: all as expected (%d transfers through exact pinholes)\n' "$xfers"
