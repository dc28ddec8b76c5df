#!/usr/bin/env bash
# scripts/scale.sh -- SESSIONS concurrent FTP control sessions through the
# gateway with ftp-alg (default 1000).
#
# A python asyncio client (scripts/ftp_peers.py scale) in the inside client
# namespace (cl, 198.51.100.2, SNAT to 203.0.113.254) opens SESSIONS control
# connections to the lab's outside vsftpd (203.0.113.10:21; its config has
# max_clients=0 and max_per_ip=0, i.e. no limit), logs each in (anonymous, as
# the lab's ftp user), and holds them ALL open at once. At that peak this
# script reads the daemon's metrics gauge ftp_alg_sessions, `ftp-alg status`
# and the daemon's VmRSS. Then every session does one passive (EPSV) RETR of
# the lab's 4 KiB small.bin (size and sha256 checked) and QUITs.
#
# Afterwards: no pinhole may be left (nft sets inet ftp_alg pin4/pin6 empty,
# `ftp-alg status` "... 0 pinholes", gauge ftp_alg_pinholes 0), the gateway's
# INVALID counters must be 0, and the daemon must still run and exit 0 on
# SIGTERM. Report only: sessions still tracked after the linger time
# (LINGER_WAIT s), the ruleset after SIGTERM compared with before.
#
#   SESSIONS=1000 scripts/scale.sh
#
# Reference: SCALE_MODE=kernel runs the same client with the kernel's FTP
# helper attached instead of ftp-alg (report only: sessions, times, INVALID,
# expectations left), to tell the daemon's share from the client's and
# vsftpd's.
#
# Environment: SESSIONS (1..5000), SCALE_MODE (alg|kernel, default alg),
# FTP_ALG_BIN (default target/release/ftp-alg), RUST_LOG (daemon; default
# info), CONNECT_CONCURRENCY (opening handshakes in flight, default 32 =
# vsftpd's listen backlog), XFER_CONCURRENCY (sessions in their transfer + QUIT
# phase at once, default all of them), STEP_TIMEOUT (seconds a session waits for each
# reply or connection, default 20), LINGER_WAIT (default 40). The whole run
# is bounded to about 4 minutes.
# Exit status: 0 all sessions completed and all checks passed, 1 a check
# failed, 2 setup error.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib-lab.sh
source "$HERE/lib-lab.sh"

SESSIONS=${SESSIONS:-1000}
CONNECT_CONCURRENCY=${CONNECT_CONCURRENCY:-32}
LINGER_WAIT=${LINGER_WAIT:-40}
STEP_TIMEOUT=${STEP_TIMEOUT:-20}
XFER_CONCURRENCY=${XFER_CONCURRENCY:-$SESSIONS}
if ! [[ $XFER_CONCURRENCY =~ ^[0-9]+$ ]] || ((XFER_CONCURRENCY < 1)); then lab_die "XFER_CONCURRENCY must be a number >= 1"; fi
SCALE_MODE=${SCALE_MODE:-alg}
[[ $SESSIONS =~ ^[0-9]+$ && $CONNECT_CONCURRENCY =~ ^[0-9]+$ && $LINGER_WAIT =~ ^[0-9]+$ && $STEP_TIMEOUT =~ ^[0-9]+$ ]] ||
    lab_die "SESSIONS, CONNECT_CONCURRENCY, STEP_TIMEOUT and LINGER_WAIT must be numbers"
((STEP_TIMEOUT >= 1 && STEP_TIMEOUT <= 60)) || lab_die "STEP_TIMEOUT 1..60"
[[ $SCALE_MODE == alg || $SCALE_MODE == kernel ]] || lab_die "SCALE_MODE must be alg or kernel"
((SESSIONS >= 1 && SESSIONS <= 5000)) || lab_die "SESSIONS out of range 1..5000"
((CONNECT_CONCURRENCY >= 1 && CONNECT_CONCURRENCY <= 1000 && LINGER_WAIT <= 120)) ||
    lab_die "CONNECT_CONCURRENCY 1..1000, LINGER_WAIT 0..120"
command -v python3 >/dev/null || lab_die "python3 is needed"
PEERS="$HERE/ftp_peers.py"

lab_names "sc$(($$ % 1000000))"
SAMPLER_PID='' CLIENT_PID=''
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    local p
    for p in $CLIENT_PID $SAMPLER_PID; do stop_pid "$p" 3; done
    alg_stop >/dev/null 2>&1
    lab_log "tearing down lab $LAB_ID"
    lab_down || rc=2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

T_START=$SECONDS
BIN=$(alg_bin)
[[ -x $BIN ]] || lab_die "ftp-alg binary not found: $BIN (cargo build --release, or set FTP_ALG_BIN)"
lab_up
RES="$LAB_LOGS/scale"
mkdir -p "$RES"
SYNC="$LAB_STATE/scale-sync"
mkdir -p "$SYNC"
FILE=small.bin
SRC="$LAB_STATE/srv-so/root/$FILE"
FILE_SHA=$(sha "$SRC")
FILE_SIZE=$(stat -c %s "$SRC")

metric() { # FILE NAME -> value or empty
    awk -v n="$2" '$1 == n {print $2}' "$1"
}
scrape() { # FILE: metrics into FILE; false if the scrape fails
    nsx "$NS_GW" curl -s -m 5 "http://$ALG_METRICS/metrics" >"$1" 2>/dev/null
}
rss_kb() { awk '$1 == "VmRSS:" {print $2}' "/proc/$ALG_PID/status" 2>/dev/null || true; }
status_summary() { # -> last line of `ftp-alg status`, or "FAILED: ..."
    local out="$RES/status-$1.txt"
    if "$BIN" status --socket "$ALG_STATUS_SOCKET" >"$out" 2>&1; then tail -n 1 "$out"; else echo "FAILED: $(tail -n 1 "$out")"; fi
}
set_elements() { # pin4|pin6 -> number of elements, or "?"
    local n
    n=$(nsx "$NS_GW" nft -j list set inet ftp_alg "$1" 2>/dev/null | python3 "$PEERS" nft-elements 2>/dev/null) || n="?"
    echo "${n:-?}"
}

before=$(lab_ruleset)
RSS_IDLE=- ALG_PID=
if [[ $SCALE_MODE == alg ]]; then
    alg_start scale || lab_die "ftp-alg did not start"
    [[ $(cat "/proc/$ALG_PID/comm" 2>/dev/null) == ftp-alg ]] || lab_die "PID $ALG_PID is not the ftp-alg process"
    RSS_IDLE=$(rss_kb)
    nsx "$NS_GW" python3 "$PEERS" sample --pid "$ALG_PID" --metrics "http://$ALG_METRICS/metrics" \
        --out "$RES/samples.txt" --interval 0.5 --max-seconds 300 </dev/null >"$RES/sampler.log" 2>&1 &
    SAMPLER_PID=$!
    lab_record sampler "$SAMPLER_PID"
    WHO="ftp-alg (PID $ALG_PID, idle RSS ${RSS_IDLE} kB)"
else
    lab_kernel_helper on
    WHO="the kernel's FTP helper (reference; ftp-alg not running)"
fi
lab_flush_conntrack
lab_zero_counters

lab_log "scale: $SESSIONS concurrent sessions cl 198.51.100.2 -> vsftpd 203.0.113.10:21 through $WHO"
T_CLIENT=$SECONDS
nsx "$NS_CL" timeout -k 5 160 python3 "$PEERS" scale --host 203.0.113.10 --port 21 \
    --sessions "$SESSIONS" --file "$FILE" --sha256 "$FILE_SHA" --size "$FILE_SIZE" --sync "$SYNC" \
    --connect-concurrency "$CONNECT_CONCURRENCY" --step-timeout "$STEP_TIMEOUT" --xfer-concurrency "$XFER_CONCURRENCY" \
    --open-timeout 60 --hold-timeout 20 --xfer-timeout 60 \
    </dev/null >"$RES/client.out" 2>"$RES/client.err" &
CLIENT_PID=$!
lab_record client "$CLIENT_PID"

# Peak: every session open (or failed), all held.
for ((i = 0; i < 800; i++)); do
    [[ -e $SYNC/open ]] && break
    kill -0 "$CLIENT_PID" 2>/dev/null || break
    sleep 0.1
done
read -r _ OPEN_LIVE OPEN_FAILED <"$SYNC/open" 2>/dev/null || { OPEN_LIVE=0 OPEN_FAILED='?'; }
PEAK_GAUGE=- PEAK_STATUS=- PEAK_RSS=- PEAK_CT='?' PEAK_VSFTPD='?'
if [[ -e $SYNC/open ]]; then
    if [[ $SCALE_MODE == alg ]]; then
        # The daemon publishes once a second: wait (bounded) until the gauge counts them all.
        PEAK_GAUGE='?'
        for ((i = 0; i < 20; i++)); do
            if scrape "$RES/metrics-peak.txt"; then
                PEAK_GAUGE=$(metric "$RES/metrics-peak.txt" ftp_alg_sessions)
                [[ -n $PEAK_GAUGE ]] && ((PEAK_GAUGE >= OPEN_LIVE)) && break
            fi
            sleep 0.5
        done
        PEAK_RSS=$(rss_kb)
        PEAK_STATUS=$(status_summary peak)
    fi
    PEAK_CT=$(nsx "$NS_GW" conntrack -C 2>/dev/null || echo ?)
    PEAK_VSFTPD=$(ip netns pids "$NS_SO" 2>/dev/null | wc -l)
    lab_log "peak: client holds $OPEN_LIVE sessions ($OPEN_FAILED failed to open); gauge ftp_alg_sessions $PEAK_GAUGE; status '$PEAK_STATUS'; RSS $PEAK_RSS kB; conntrack entries $PEAK_CT; $PEAK_VSFTPD processes in the server namespace"
    touch "$SYNC/go"
else
    lab_log "the client never reported its sessions open"
fi

CLIENT_RC=0
wait "$CLIENT_PID" || CLIENT_RC=$?
CLIENT_PID=
T_CLIENT_END=$((SECONDS - T_CLIENT))
lab_log "client finished with status $CLIENT_RC after $T_CLIENT_END s"
cat "$RES/client.out" >&2

LEFT4=- LEFT6=- LEFT_GAUGE=- LEFT_STATUS=- T_PINHOLES_GONE=- AFTER_SESSIONS_GAUGE=- LINGER_SESSIONS=- T_LINGER=- LINGER_STATUS=-
QSTATS=- MAX_GAUGE=- MAX_RSS=- EXPECT_LEFT=-
if [[ $SCALE_MODE == alg ]]; then
    # After: every session has QUIT; its pinholes must be gone at once (the
    # data pinholes were consumed by their connections or closed with the session).
    T_AFTER=$SECONDS
    for ((i = 0; i < 30; i++)); do
        sleep 0.5
        LEFT4=$(set_elements pin4)
        LEFT6=$(set_elements pin6)
        LEFT_GAUGE='?'
        if scrape "$RES/metrics-after.txt"; then LEFT_GAUGE=$(metric "$RES/metrics-after.txt" ftp_alg_pinholes); fi
        LEFT_STATUS=$(status_summary after)
        [[ $LEFT4 == 0 && $LEFT6 == 0 && $LEFT_GAUGE == 0 && $LEFT_STATUS == *" 0 pinholes" ]] && break
    done
    T_PINHOLES_GONE=$((SECONDS - T_AFTER))
    nsx "$NS_GW" nft list table inet ftp_alg >"$RES/ftp_alg-table-after.txt" 2>&1 || true
    AFTER_SESSIONS_GAUGE=$(metric "$RES/metrics-after.txt" ftp_alg_sessions)
    # Report only: closed sessions are kept for the linger time (30 s), then forgotten.
    LINGER_SESSIONS='?'
    for ((i = 0; i < LINGER_WAIT * 2; i++)); do
        if scrape "$RES/metrics-linger.txt"; then
            LINGER_SESSIONS=$(metric "$RES/metrics-linger.txt" ftp_alg_sessions)
            [[ $LINGER_SESSIONS == 0 ]] && break
        fi
        sleep 0.5
    done
    T_LINGER=$((SECONDS - T_AFTER))
    LINGER_STATUS=$(status_summary linger)
    scrape "$RES/metrics-final.txt" || true
    # Kernel side of the queue: queue_total queue_dropped (queue full) user_dropped (socket buffer full).
    QSTATS=$(nsx "$NS_GW" cat /proc/net/netfilter/nfnetlink_queue 2>/dev/null |
        awk '$1 == 21 { printf "waiting %s, dropped (queue full) %s, dropped (socket buffer full) %s", $3, $6, $7 }')
    stop_pid "$SAMPLER_PID" 3
    SAMPLER_PID=
    read -r MAX_GAUGE MAX_RSS < <(awk '{ if ($2 > s) s = $2; if ($4 > r) r = $4 } END { print s + 0, r + 0 }' "$RES/samples.txt" 2>/dev/null || echo "? ?")
else
    sleep 2
    EXPECT_LEFT=$(nsx "$NS_GW" conntrack -L expect 2>/dev/null | grep -c . || true)
fi
OPENED=$(metric "$RES/metrics-final.txt" 'ftp_alg_pinholes_total{form="exact",outcome="opened"}' 2>/dev/null || true)
S_OPENED=$(metric "$RES/metrics-final.txt" ftp_alg_sessions_opened_total 2>/dev/null || true)
S_CLOSED=$(metric "$RES/metrics-final.txt" ftp_alg_sessions_closed_total 2>/dev/null || true)
PH_ERR=$(metric "$RES/metrics-final.txt" ftp_alg_pinhole_errors_total 2>/dev/null || true)
V_ERR=$(metric "$RES/metrics-final.txt" ftp_alg_verdict_errors_total 2>/dev/null || true)
PKTS=$(metric "$RES/metrics-final.txt" ftp_alg_packets_total 2>/dev/null || true)
PROC_SUM=$(metric "$RES/metrics-final.txt" ftp_alg_packet_processing_seconds_sum 2>/dev/null || true)
PROC_CNT=$(metric "$RES/metrics-final.txt" ftp_alg_packet_processing_seconds_count 2>/dev/null || true)
PROC_SLOW=$(awk '$1 == "ftp_alg_packet_processing_seconds_bucket{le=\"+Inf\"}" { t = $2 }
    $1 == "ftp_alg_packet_processing_seconds_bucket{le=\"0.005\"}" { f = $2 }
    END { if (t != "") print t - f }' "$RES/metrics-final.txt" 2>/dev/null || true)

F4=$(invalid_count 4 FORWARD)
I4=$(invalid_count 4 INPUT)
F6=$(invalid_count 6 FORWARD)
I6=$(invalid_count 6 INPUT)
INVALID=$((F4 + I4 + F6 + I6))

ALIVE=- RULESET=- N_WARN=- N_ERROR=-
ERR="$LAB_LOGS/alg-scale.stderr"
if [[ $SCALE_MODE == alg ]]; then
    ALIVE=yes
    kill -0 "$ALG_PID" 2>/dev/null || ALIVE=no
    alg_stop
    after=$(lab_ruleset)
    RULESET=identical
    [[ $before == "$after" ]] || RULESET=DIFFERS
    N_WARN=$(grep -c ' WARN ' "$ERR" || true)
    N_ERROR=$(grep -c ' ERROR ' "$ERR" || true)
else
    lab_kernel_helper off
fi

val() { awk -F= -v k="$1" '$1 == k {print $2}' "$RES/client.out"; }
COMPLETED=$(val completed)
FAILED=$(val failed)
[[ -n $COMPLETED ]] || COMPLETED=0
[[ -n $FAILED ]] || FAILED=$SESSIONS

echo
if [[ $SCALE_MODE == alg ]]; then
    echo "ftp-alg scale test: $SESSIONS concurrent control sessions through ftp-alg, cl 198.51.100.2 (SNAT 203.0.113.254) -> vsftpd 203.0.113.10:21"
else
    echo "scale REFERENCE run: $SESSIONS concurrent control sessions through the KERNEL FTP HELPER (no ftp-alg), cl 198.51.100.2 (SNAT 203.0.113.254) -> vsftpd 203.0.113.10:21"
fi
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, Linux $(uname -r); each session: login, held open with all others, EPSV + RETR $FILE ($FILE_SIZE bytes, sha256 checked), QUIT; ${STEP_TIMEOUT} s per step, $XFER_CONCURRENCY sessions in transfer + QUIT at once"
printf '  sessions completed          %s / %s (failed %s)\n' "$COMPLETED" "$SESSIONS" "$FAILED"
grep '^failure=' "$RES/client.out" | sed 's/^failure=/    failure: /' || true
printf '  client wall time            %s s (all open after %s s, held %s s, transfers + QUIT %s s)\n' \
    "$(val client_wall_seconds)" "$(val open_seconds)" "$(val hold_seconds)" "$(val transfer_seconds)"
printf '  at the peak                 client holds %s sessions; %s conntrack entries in the gateway; %s processes in the server namespace\n' \
    "$OPEN_LIVE" "$PEAK_CT" "$PEAK_VSFTPD"
if [[ $SCALE_MODE == alg ]]; then
    printf '  peak live sessions          metrics gauge ftp_alg_sessions %s (max sampled %s); status "%s"\n' "$PEAK_GAUGE" "$MAX_GAUGE" "$PEAK_STATUS"
    printf '  daemon RSS (VmRSS)          idle %s kB, at the peak %s kB, max sampled %s kB\n' "$RSS_IDLE" "$PEAK_RSS" "$MAX_RSS"
    printf '  pinholes left after QUIT    nft pin4 %s, pin6 %s elements; gauge ftp_alg_pinholes %s; status "%s" (checked until %s s after the client ended)\n' \
        "$LEFT4" "$LEFT6" "$LEFT_GAUGE" "$LEFT_STATUS" "$T_PINHOLES_GONE"
    printf '  sessions tracked            %s right after QUIT; %s after %s s (linger 30 s; status "%s") [report only]\n' \
        "${AFTER_SESSIONS_GAUGE:-?}" "$LINGER_SESSIONS" "$T_LINGER" "$LINGER_STATUS"
    printf '  daemon counters             sessions opened %s, closed %s; pinholes opened %s; pinhole errors %s; verdict errors %s; packets %s\n' \
        "${S_OPENED:-?}" "${S_CLOSED:-?}" "${OPENED:-?}" "${PH_ERR:-?}" "${V_ERR:-?}" "${PKTS:-?}"
    if [[ -n $PROC_SUM && -n $PROC_CNT && $PROC_CNT != 0 ]]; then
        awk -v s="$PROC_SUM" -v c="$PROC_CNT" -v slow="${PROC_SLOW:-?}" 'BEGIN {
            printf "  daemon processing           %.2f s in total, mean %.1f us per queued packet; %s packets took over 5 ms\n", s, s / c * 1e6, slow }'
    fi
    printf '  NFQUEUE 21 (kernel side)    %s\n' "${QSTATS:-?}"
else
    printf '  conntrack expectations left %s (2 s after the client ended)\n' "$EXPECT_LEFT"
fi
printf '  INVALID drops               v4 FORWARD %s, v4 INPUT %s, v6 FORWARD %s, v6 INPUT %s\n' "$F4" "$I4" "$F6" "$I6"
if [[ $SCALE_MODE == alg ]]; then
    printf '  daemon log                  %s warnings, %s errors (%s)\n' "$N_WARN" "$N_ERROR" "$ERR"
    grep -E ' (WARN|ERROR) ' "$ERR" | sed -E 's/^[^ ]+ +//; s/(client|pinhole|src|dst)=[^ ]+/\1=*/g' |
        sort | uniq -c | sort -rn | head -n 8 | sed 's/^/    /' || true
    printf '  daemon after the run        running: %s; exit status after SIGTERM: %s; ruleset after SIGTERM: %s\n' "$ALIVE" "$ALG_RC" "$RULESET"
fi
printf '  total script time           %s s (lab up to report)\n' "$((SECONDS - T_START))"
echo "logs: $LAB_LOGS (scale/, alg-scale.stderr)"

bad=()
((COMPLETED == SESSIONS && FAILED == 0)) || bad+=("$FAILED session(s) failed")
((INVALID == 0)) || bad+=("$INVALID INVALID drops")
if [[ $SCALE_MODE == alg ]]; then
    [[ $LEFT4 == 0 && $LEFT6 == 0 ]] || bad+=("pinholes left in the nft sets (pin4 $LEFT4, pin6 $LEFT6)")
    [[ $LEFT_STATUS == *" 0 pinholes" ]] || bad+=("status does not say 0 pinholes: $LEFT_STATUS")
    [[ $LEFT_GAUGE == 0 ]] || bad+=("gauge ftp_alg_pinholes is $LEFT_GAUGE")
    [[ $PEAK_GAUGE =~ ^[0-9]+$ ]] && ((PEAK_GAUGE >= SESSIONS)) || bad+=("peak gauge ftp_alg_sessions $PEAK_GAUGE < $SESSIONS")
    [[ $ALIVE == yes ]] || bad+=("ftp-alg was not running any more")
    [[ $ALG_RC == 0 ]] || bad+=("ftp-alg exit status after SIGTERM $ALG_RC")
fi
if ((${#bad[@]})); then
    printf 'RESULT: FAILED (%s): %s\n' "$SCALE_MODE" "$(
        IFS=';'
        echo "${bad[*]}"
    )"
    exit 1
fi
echo "RESULT: all $SESSIONS sessions completed ($SCALE_MODE), 0 INVALID$([[ $SCALE_MODE == alg ]] && echo ', no pinhole left')"
