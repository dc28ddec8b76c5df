#!/usr/bin/env bash
# scripts/durable.sh -- sessions survive kill -9 of ftp-alg (run as root).
#
#   scripts/durable.sh            all cases
#   scripts/durable.sh CASE...    some of them (see CASES below)
#
# Each case: a control session whose text ftp-alg rewrote with a length
# change (PORT +1, PORT -3, 227 +1 under DNAT) makes a first transfer; then
# ftp-alg is killed (-9), the client sends NOOP while no instance runs, a new
# `ftp-alg run` starts 1-1.6 s after the kill, and the same session makes a second
# transfer. Passes when the NOOP is answered 200 (the server received it
# exact: a stream passed unadjusted makes it "OOP" -> 500), both transfers'
# sha256 match, the gateway counted 0 INVALID, and the new instance exits 0
# on SIGTERM. Scripted peers (scripts/durable_peer.py) for the exact bytes,
# and real lftp with sha256-checked files. At the end the ruleset must be as
# it was before ftp-alg first started (SIGTERM removes everything).
#
# Prints per case: gap (NOOP sent -> answered), packets held by the hold
# chain while no instance ran, time from the new start to "ready".
#
# Exit status: 0 all passed, 1 a case failed, 2 setup error.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib-lab.sh
source "$HERE/lib-lab.sh"

ALL_CASES=(active-plus active-minus passive-dnat lftp-active lftp-passive-dnat)
CASES=("$@")
((${#CASES[@]})) || CASES=("${ALL_CASES[@]}")
for c in "${CASES[@]}"; do
    [[ " ${ALL_CASES[*]} " == *" $c "* ]] || lab_die "unknown case $c (cases: ${ALL_CASES[*]})"
done

PEER_PID=
bench_extra_cleanup() {
    if [[ -n $PEER_PID ]]; then stop_pid "$PEER_PID" >/dev/null 2>&1 || true; fi
}
bench_lab_up "du$(($$ % 1000000))" durable

ms() { echo $(($(date +%s%N) / 1000000)); }

# held_packets: packets of edited connections the hold rules (mangle
# FORWARD, the ones matching connmark) dropped or queued without bypass
# while no instance ran.
held_packets() {
    ipt4 -t mangle -L FORWARD -v -n -x | awk '/connmark/ { s += $1 } END { print s + 0 }'
}

# wait_for_line FILE TEXT SECS
wait_for_line() {
    local i
    for ((i = 0; i < $3 * 20; i++)); do
        if grep -q "$2" "$1" 2>/dev/null; then return 0; fi
        if [[ -n $PEER_PID ]] && ! kill -0 "$PEER_PID" 2>/dev/null; then return 1; fi
        sleep 0.05
    done
    return 1
}

# crash_and_restart TAG GOFILE OUTAGE: kill -9, let the client send, start
# again after OUTAGE seconds. Sets HELD (packets the hold rules caught meanwhile) and
# READY_MS (new start to "ready").
crash_and_restart() {
    local before
    kill -KILL "$ALG_PID"
    wait "$ALG_PID" 2>/dev/null || true
    ALG_PID=
    before=$(held_packets)
    if [[ -n $2 ]]; then touch "$2"; fi
    sleep "$3"
    HELD=$(($(held_packets) - before))
    local t0
    t0=$(ms)
    alg_start "$1-after" || return 1
    READY_MS=$(($(ms) - t0))
}

# peer_case NAME NS HOST SOURCE MODE
peer_case() {
    local name=$1 ns=$2 host=$3 source=$4 mode=$5
    local out="$RES_DIR/$name.peer" go="$LAB_STATE/$name.go"
    rm -f "$go" "$out"
    alg_start "$name" || return 1
    lab_zero_counters
    nsx "$ns" timeout -k 2 60 python3 "$HERE/durable_peer.py" --host "$host" --source "$source" \
        --mode "$mode" --sha "$(sha "$LAB_STATE/data/small.bin")" --go "$go" </dev/null >"$out" 2>&1 &
    PEER_PID=$!
    lab_record peer "$PEER_PID"
    if ! wait_for_line "$out" CRASH-ME 20; then
        CASE_NOTE="first transfer failed: $(tail -n 1 "$out")"
        return 1
    fi
    crash_and_restart "$name" "$go" 1 || {
        CASE_NOTE="the new instance did not start"
        return 1
    }
    local rc=0
    wait "$PEER_PID" || rc=$?
    PEER_PID=
    GAP=$(sed -n 's/.*gap_ms=\(-\?[0-9]*\).*/\1/p' "$out" | tail -n 1)
    CASE_NOTE=$(grep RESULT "$out" | tail -n 1 || echo "no RESULT line")
    return "$rc"
}

# lftp_case NAME NS HOST MODE: one lftp session, two downloads; the NOOP of
# `quote` goes out while no instance runs.
lftp_case() {
    local name=$1 ns=$2 host=$3 pm=on
    [[ $4 == active ]] && pm=off
    local ready="$LAB_STATE/$name.ready" a="$LAB_STATE/out/$name.1" b="$LAB_STATE/out/$name.2"
    local log="$RES_DIR/$name.lftp" dbg="$RES_DIR/$name.lftp-debug"
    rm -f "$ready" "$a" "$b"
    alg_start "$name" || return 1
    lab_zero_counters
    # One command a line: lftp's `!` takes the rest of its line.
    local script="$LAB_STATE/$name.lftp"
    cat >"$script" <<EOF
debug -o $dbg 3
set cmd:fail-exit yes
set net:timeout 10
set net:max-retries 1
set ftp:passive-mode $pm
set ftp:prefer-epsv no
set ftp:ssl-allow no
set xfer:clobber yes
set cmd:interactive no
open -u anonymous,lab@ ftp://$host
get small.bin -o $a
!touch $ready
!sleep 1
quote NOOP
get file.bin -o $b
quit
EOF
    nsx "$ns" env HOME="$LAB_STATE/home" timeout -k 2 60 lftp -f "$script" </dev/null >"$log" 2>&1 &
    PEER_PID=$!
    lab_record lftp "$PEER_PID"
    local i
    for ((i = 0; i < 400; i++)); do
        if [[ -e $ready ]]; then break; fi
        sleep 0.05
    done
    if [[ ! -e $ready ]]; then
        CASE_NOTE="first download failed: $(tail -n 1 "$log")"
        return 1
    fi
    local t0
    t0=$(ms)
    # The NOOP leaves 1 s after "ready", 0.9 s after the kill; the new
    # instance starts 1.6 s after the kill.
    sleep 0.1
    crash_and_restart "$name" "" 1.6 || {
        CASE_NOTE="the new instance did not start"
        return 1
    }
    local rc=0
    wait "$PEER_PID" || rc=$?
    PEER_PID=
    GAP="n/a"
    if ((rc != 0)); then
        CASE_NOTE="lftp exit $rc: $(grep -v '^$' "$log" | tail -n 1)"
        return 1
    fi
    local want1 want2
    want1=$(sha "$LAB_STATE/data/small.bin")
    want2=$(sha "$LAB_STATE/data/file.bin")
    if [[ ! -f $a || $(sha "$a") != "$want1" || ! -f $b || $(sha "$b") != "$want2" ]]; then
        CASE_NOTE="sha256 mismatch"
        return 1
    fi
    # One session: lftp logs in again after a broken control connection.
    local logins
    logins=$(grep -c "Connecting to" "$dbg" || true)
    if [[ $logins != 1 ]]; then
        CASE_NOTE="the session did not survive: lftp connected $logins times"
        return 1
    fi
    CASE_NOTE="one session, both downloads sha256 ok ($(($(ms) - t0)) ms from the crash to the end)"
}

RULES_BEFORE=$(lab_ruleset)
failed=0
SUMMARY=()
for c in "${CASES[@]}"; do
    CASE_NOTE= GAP= HELD= READY_MS=
    ok=1
    case $c in
    active-plus) peer_case "$c" "$NS_CL" 203.0.113.10 198.51.100.2 active || ok=0 ;;
    active-minus) peer_case "$c" "$NS_CS" 203.0.113.10 198.51.100.222 active || ok=0 ;;
    passive-dnat) peer_case "$c" "$NS_CO" 203.0.113.1 203.0.113.20 passive || ok=0 ;;
    lftp-active) lftp_case "$c" "$NS_CL" 203.0.113.10 active || ok=0 ;;
    lftp-passive-dnat) lftp_case "$c" "$NS_CO" 203.0.113.1 passive || ok=0 ;;
    esac
    inv=$(($(invalid_count 4 FORWARD) + $(invalid_count 4 INPUT)))
    if ((inv != 0)); then
        ok=0
        CASE_NOTE+=" INVALID=$inv"
    fi
    alg_stop
    if [[ $ALG_RC != 0 ]]; then
        ok=0
        CASE_NOTE+=" exit-on-SIGTERM=$ALG_RC"
    fi
    row="$c: ok=$ok gap_ms=${GAP:-?} held=${HELD:-?} ready_ms=${READY_MS:-?} invalid=$inv -- $CASE_NOTE"
    lab_log "$row"
    SUMMARY+=("$row")
    ((ok)) || failed=1
    lab_flush_conntrack
done

RULES_AFTER=$(lab_ruleset)
if [[ $RULES_BEFORE != "$RULES_AFTER" ]]; then
    failed=1
    SUMMARY+=("ruleset after SIGTERM differs from before:")
    SUMMARY+=("$(diff <(echo "$RULES_BEFORE") <(echo "$RULES_AFTER") || true)")
else
    SUMMARY+=("ruleset after the last SIGTERM identical to before")
fi
printf '%s\n' "${SUMMARY[@]}"
exit "$failed"
