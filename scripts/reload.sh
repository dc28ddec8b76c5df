#!/usr/bin/env bash
# scripts/reload.sh -- firewall reloads while ftp-alg runs (run as root).
#
#   scripts/reload.sh [STEP...]     (default: restore flush nftconf)
#
# Builds a private lab and starts ftp-alg on its gateway, then reloads the
# gateway's firewall the ways admins do, each of which took ftp-alg's rules
# away without a word before the repair (issue 13, item 2):
#
#   restore   iptables-restore / ip6tables-restore of the admin's rules,
#             saved before ftp-alg started (netfilter-persistent reload):
#             the accept rule in filter FORWARD is gone;
#   flush     `nft flush ruleset`, then the lab's firewall set up again:
#             ftp-alg's table with its pinholes, its queue rules and its
#             accept rule are gone;
#   nftconf   a native nftables firewall (accept_rule = "nft inet lab_fw
#             forward"), reloaded with `nft -f` of a file that starts with
#             `flush ruleset` (what `systemctl reload nftables` does with
#             Debian's /etc/nftables.conf). Runs a second ftp-alg instance.
#
# Before each reload a client holds a pinhole (PASV answered, no data
# connection yet); after it, ftp-alg's log must name what it repaired
# within 2 s, the held data connection must then go through the pinhole
# put back, and real transfers in every mode on every path (SNAT +1, SNAT
# -3, DNAT, IPv6) must work; the metric ftp_alg_rule_repairs_total must
# count the pieces. Each instance must exit 0 on SIGTERM, leaving the
# ruleset as it was before it started.
#
# Exit status: 0 as expected, 1 a reload was not repaired, 2 setup error.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib-lab.sh
source "$HERE/lib-lab.sh"

STEPS=("$@")
((${#STEPS[@]})) || STEPS=(restore flush nftconf)
for s in "${STEPS[@]}"; do
    [[ $s =~ ^(restore|flush|nftconf)$ ]] || lab_die "unknown step '$s' (restore, flush, nftconf)"
done
REPAIR_SECS=2

HOLD_PID=
bench_extra_cleanup() {
    if [[ -n $HOLD_PID ]]; then stop_pid "$HOLD_PID" 2 >/dev/null 2>&1 || true; fi
}
bench_lab_up "rl$(($$ % 1000000))" reload
LAB_RUN_TAG=reload$$

# Downloads in every client mode on every path.
MATRIX_ROWS=()
for p in "${LAB_PATHS[@]}"; do
    for c in "${LAB_CLIENTS[@]}"; do MATRIX_ROWS+=("$p|$c|download"); done
done

FAILS=()
fail() {
    FAILS+=("$*")
    lab_log "FAIL: $*"
}

# hold_start: a client in cl logs in, sends PASV and waits (bounded) for
# $LAB_STATE/go before it opens the data connection and downloads.
hold_start() {
    rm -f "$LAB_STATE/go" "$RES_DIR/hold.out"
    nsx "$NS_CL" timeout -k 2 90 python3 - "$LAB_STATE/go" >"$RES_DIR/hold.out" 2>&1 <<'PY' &
import ftplib, hashlib, os, socket, sys, time
go = sys.argv[1]
f = ftplib.FTP()
f.connect("203.0.113.10", 21, timeout=10)
f.login()
f.voidcmd("TYPE I")
host, port = ftplib.parse227(f.sendcmd("PASV"))
print("held", host, port, flush=True)
deadline = time.time() + 60
while not os.path.exists(go):
    if time.time() > deadline:
        sys.exit(3)
    time.sleep(0.05)
data = socket.create_connection((host, port), timeout=5)
f.sendcmd("RETR file.bin")
h = hashlib.sha256()
while True:
    b = data.recv(65536)
    if not b:
        break
    h.update(b)
data.close()
f.voidresp()
f.quit()
print("sha256", h.hexdigest(), flush=True)
PY
    HOLD_PID=$!
    lab_record hold "$HOLD_PID"
    local i
    for ((i = 0; i < 100; i++)); do
        grep -q '^held' "$RES_DIR/hold.out" 2>/dev/null && return 0
        kill -0 "$HOLD_PID" 2>/dev/null || break
        sleep 0.1
    done
    fail "$1: the held session got no PASV answer: $(tail -n 2 "$RES_DIR/hold.out" | tr '\n' ' ')"
    return 1
}

# hold_finish STEP: let the held client download through its pinhole.
hold_finish() {
    touch "$LAB_STATE/go"
    local rc=0
    wait "$HOLD_PID" || rc=$?
    HOLD_PID=
    if grep -q "^sha256 $(sha "$LAB_STATE/data/file.bin")" "$RES_DIR/hold.out"; then
        lab_log "$1: the pinhole held across the reload carried its data connection"
    else
        fail "$1: the data connection of the pinhole held across the reload failed (exit $rc): $(tail -n 1 "$RES_DIR/hold.out")"
    fi
}

# wait_repaired STEP OFFSET PIECE...: ftp-alg's log after byte OFFSET must
# name every PIECE in its repair lines within REPAIR_SECS.
wait_repaired() {
    local step=$1 off=$2 t0 i piece missing
    shift 2
    t0=$(date +%s%N)
    for ((i = 0; i < REPAIR_SECS * 20; i++)); do
        missing=
        for piece in "$@"; do
            tail -c +"$((off + 1))" "$ALG_ERR" | grep 'repaired' | grep -qF "$piece" || missing+="[$piece] "
        done
        [[ -z $missing ]] && break
        sleep 0.05
    done
    local ms=$((($(date +%s%N) - t0) / 1000000))
    if [[ -n $missing ]]; then
        fail "$step: no repair logged within ${REPAIR_SECS} s for $missing"
    else
        lab_log "$step: repair logged ${ms} ms after the reload ended"
    fi
    tail -c +"$((off + 1))" "$ALG_ERR" | grep -iE 'repair' | sed 's/^/    | /' >&2 || true
}

# metric NAME{LABELS}: its value from the daemon's endpoint (0 if absent).
metric() {
    nsx "$NS_GW" curl -s -m 3 "http://127.0.0.1:9721/metrics" |
        awk -v k="$1" '$1 == k { v = $2 } END { print v + 0 }'
}

# check_metric STEP WHAT AT-LEAST: ftp_alg_rule_repairs_total{what=WHAT},
# published once a second, must reach AT-LEAST within 3 s.
check_metric() {
    local i v=0
    for ((i = 0; i < 30; i++)); do
        v=$(metric "ftp_alg_rule_repairs_total{what=\"$2\"}")
        ((v >= $3)) && return 0
        sleep 0.1
    done
    fail "$1: ftp_alg_rule_repairs_total{what=\"$2\"} is $v, expected at least $3"
}

# transfers STEP: every row of the matrix must pass.
transfers() {
    matrix_run_cases "alg-$1"
    ((${MODE_BAD[alg-$1]} == 0)) || fail "$1: ${MODE_BAD[alg-$1]} of ${#MATRIX_ROWS[@]} transfers failed"
}

# reload STEP COMMAND...: hold a pinhole, run the reload, check the repair
# of the pieces in EXPECT (an array), the held pinhole and the transfers.
reload() {
    local step=$1 off held=0
    shift
    off=$(stat -c %s "$ALG_ERR")
    hold_start "$step" && held=1
    lab_log "=== $step: $* ==="
    "$@"
    wait_repaired "$step" "$off" "${EXPECT[@]}"
    ((held)) && hold_finish "$step"
    transfers "$step"
    kill -0 "$ALG_PID" 2>/dev/null || fail "$step: ftp-alg is not running any more"
}

# stop_and_compare NAME BEFORE-FILE: SIGTERM, exit 0, ruleset as before.
stop_and_compare() {
    alg_stop
    [[ $ALG_RC == 0 ]] || fail "$1: exit status after SIGTERM $ALG_RC (expected 0)"
    lab_ruleset_by_table >"$LAB_LOGS/ruleset-after-$1.txt"
    if diff -u "$2" "$LAB_LOGS/ruleset-after-$1.txt" >"$RES_DIR/ruleset-$1.diff"; then
        lab_log "$1: exit 0 and the ruleset is as before ftp-alg started"
    else
        fail "$1: the ruleset after SIGTERM differs from before (see $RES_DIR/ruleset-$1.diff)"
        head -n 30 "$RES_DIR/ruleset-$1.diff" >&2
    fi
}

restore_saved() {
    nsx "$NS_GW" iptables-nft-restore <"$LAB_STATE/admin.v4"
    nsx "$NS_GW" ip6tables-nft-restore <"$LAB_STATE/admin.v6"
}
flush_and_restore() {
    nsx "$NS_GW" nft flush ruleset
    lab_firewall
}

has_step() { [[ " ${STEPS[*]} " == *" $1 "* ]]; }

# ---- iptables-nft firewall: the lab's own ----
if has_step restore || has_step flush; then
    nsx "$NS_GW" iptables-nft-save >"$LAB_STATE/admin.v4"
    nsx "$NS_GW" ip6tables-nft-save >"$LAB_STATE/admin.v6"
    lab_ruleset_by_table >"$LAB_LOGS/ruleset-before-iptables.txt"
    alg_start iptables || exit 2
    ALG_ERR="$LAB_LOGS/alg-iptables.stderr"
    transfers base
    if has_step restore; then
        EXPECT=("accept rule in ip filter FORWARD" "accept rule in ip6 filter FORWARD")
        reload restore restore_saved
        check_metric restore accept_rule 2
    fi
    if has_step flush; then
        EXPECT=("table inet ftp_alg" "queue rule in ip raw PREROUTING" "queue rule in ip6 mangle FORWARD"
            "accept rule in ip filter FORWARD" "accept rule in ip6 filter FORWARD")
        reload flush flush_and_restore
        check_metric flush table 1
        check_metric flush queue_rule 4
    fi
    stop_and_compare iptables "$LAB_LOGS/ruleset-before-iptables.txt"
fi

# ---- native nftables firewall, reloaded like `systemctl reload nftables` ----
if has_step nftconf; then
    cat >"$LAB_STATE/nftables.conf" <<NFT
flush ruleset

table inet lab_fw {
	chain input {
		type filter hook input priority filter; policy drop;
		ct state invalid drop
		ct state established,related accept
		iif "lo" accept
		meta l4proto { icmp, ipv6-icmp } accept
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state invalid counter drop
		ct state established,related accept
		iifname "$GW_CLI" oifname "$GW_OUT" ip saddr 198.51.100.0/24 ip daddr 203.0.113.10 tcp dport 21 ct state new accept
		iifname "$GW_OUT" oifname "$GW_SRV" ip daddr 192.0.2.10 tcp dport 21 ct original ip daddr 203.0.113.1 ct state new accept
		iifname "$GW_CLI" oifname "$GW_OUT" ip6 saddr 2001:db8:1::/64 ip6 daddr 2001:db8:2::10 tcp dport 21 ct state new accept
	}
}
table ip lab_nat {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr 203.0.113.1 tcp dport 21 dnat to 192.0.2.10
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "$GW_OUT" ip saddr 198.51.100.2 snat to 203.0.113.254
		oifname "$GW_OUT" ip saddr 198.51.100.222 snat to 203.0.113.1
		oifname "$GW_OUT" ip saddr 192.0.2.0/24 snat to 203.0.113.1
	}
}
NFT
    # The admin switches the gateway to it (as at boot).
    nsx "$NS_GW" nft -f "$LAB_STATE/nftables.conf"
    lab_flush_conntrack
    lab_ruleset_by_table >"$LAB_LOGS/ruleset-before-native.txt"
    ALG_EXTRA_CONFIG=$'accept_rule = "nft inet lab_fw forward"\n'
    alg_start native || exit 2
    ALG_ERR="$LAB_LOGS/alg-native.stderr"
    transfers native-base
    EXPECT=("table inet ftp_alg" "accept rule in inet lab_fw forward" "queue rule in ip raw PREROUTING")
    reload nftconf nsx "$NS_GW" nft -f "$LAB_STATE/nftables.conf"
    check_metric nftconf table 1
    check_metric nftconf accept_rule 1
    stop_and_compare native "$LAB_LOGS/ruleset-before-native.txt"
fi

if ((${#FAILS[@]})); then
    printf 'firewall reloads: %d problem(s):\n' "${#FAILS[@]}"
    printf '  %s\n' "${FAILS[@]}"
    exit 1
fi
echo "firewall reloads: ${STEPS[*]}: repaired within ${REPAIR_SECS} s, every transfer passed, exit 0, ruleset restored"
exit 0
