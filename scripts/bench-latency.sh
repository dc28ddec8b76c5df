#!/usr/bin/env bash
# scripts/bench-latency.sh -- latency that ftp-alg adds to each control packet.
#
# One control connection from the inside client (cl, 198.51.100.2, SNAT to
# 203.0.113.254) to the outside vsftpd (203.0.113.10:21): greeting, anonymous
# login, WARMUP untimed NOOPs, then NOOP round trips timed one by one with
# time.perf_counter_ns in python (TCP_NODELAY; scripts/ftp_peers.py latency).
# Each round trip crosses the gateway twice -- the NOOP command and the 200
# reply -- and with ftp-alg each of the two packets is queued once to
# userspace through NFQUEUE: per round trip = 2 queued packets.
#
# Three modes on the same lab, interleaved in rounds (A B C A B C ...), a new
# control connection per mode and round, N/ROUNDS timed round trips each:
#   A  ftp-alg running on the gateway (kernel helper not attached)
#   B  the kernel's FTP helper attached instead (reference)
#   C  neither: the plain gateway (its firewall accepts NEW tcp/21 by itself)
# Prints p50/p90/p99 of the round-trip time per mode, the latency added by A
# and by B over C at p50 and p99 (per round trip and per packet), and A/B.
#
#   N=10000 ROUNDS=10 scripts/bench-latency.sh
#
# Needs root; FTP_ALG_BIN as in scripts/lab.sh (default target/release/ftp-alg).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib-lab.sh
source "$HERE/lib-lab.sh"

N=${N:-10000}
ROUNDS=${ROUNDS:-10}
WARMUP=${WARMUP:-50}
[[ $N =~ ^[0-9]+$ && $ROUNDS =~ ^[0-9]+$ && $WARMUP =~ ^[0-9]+$ ]] || lab_die "N, ROUNDS and WARMUP must be numbers"
((ROUNDS >= 1 && ROUNDS <= 1000 && N >= ROUNDS && N <= 10000000 && WARMUP <= 100000)) ||
    lab_die "out of range: ROUNDS 1..1000, N ROUNDS..10000000, WARMUP ..100000"
PER_ROUND=$((N / ROUNDS))
command -v python3 >/dev/null || lab_die "python3 is needed"

bench_lab_up "lt$(($$ % 1000000))" bench-latency

# probe MODE ROUND: one control connection, PER_ROUND timed NOOPs; appends
# nanoseconds per round trip to $RES_DIR/MODE.txt.
probe() {
    local mode=$1 r=$2 rc=0
    # The bound: 5 s to connect and log in, then generous for PER_ROUND+WARMUP NOOPs.
    nsx "$NS_CL" timeout -k 2 $((30 + (PER_ROUND + WARMUP) / 200)) \
        python3 "$HERE/ftp_peers.py" latency --host 203.0.113.10 --port 21 \
        --n "$PER_ROUND" --warmup "$WARMUP" --out "$RES_DIR/$mode.txt" \
        </dev/null >"$RES_DIR/$mode-round$r.log" 2>&1 || rc=$?
    if ((rc != 0)); then
        lab_log "mode $mode round $r FAILED (exit $rc): $(tail -n 1 "$RES_DIR/$mode-round$r.log")"
        echo "$r" >>"$RES_DIR/$mode.fail"
    fi
}

# The daemon's own processing time per packet (histogram sum/count), summed
# over the ftp-alg rounds: what the queue round trip costs beyond it.
PROC_SUM=0 PROC_COUNT=0
scrape_processing() {
    local m="$RES_DIR/metrics-round$1.txt" s c
    sleep 1.2 # published once a second
    nsx "$NS_GW" curl -s -m 5 "http://$ALG_METRICS/metrics" >"$m" 2>/dev/null || return 0
    s=$(awk '$1 == "ftp_alg_packet_processing_seconds_sum" {print $2}' "$m")
    c=$(awk '$1 == "ftp_alg_packet_processing_seconds_count" {print $2}' "$m")
    [[ -n $s && -n $c ]] || return 0
    PROC_SUM=$(awk -v a="$PROC_SUM" -v b="$s" 'BEGIN { printf "%.9f", a + b }')
    PROC_COUNT=$((PROC_COUNT + c))
}

lab_log "latency benchmark: $ROUNDS rounds x $PER_ROUND NOOP round trips per mode (A ftp-alg, B kernel helper, C none), $WARMUP warm-up NOOPs per connection"
t0=$SECONDS
for ((r = 1; r <= ROUNDS; r++)); do
    # A: ftp-alg
    lab_flush_conntrack
    alg_start "lat$r" || lab_die "ftp-alg did not start (round $r)"
    probe A "$r"
    scrape_processing "$r"
    alg_stop
    [[ $ALG_RC == 0 ]] || lab_log "warning: ftp-alg exit status $ALG_RC after SIGTERM (round $r)"
    # B: kernel helper
    lab_flush_conntrack
    lab_kernel_helper on
    probe B "$r"
    lab_kernel_helper off
    # C: plain gateway
    lab_flush_conntrack
    probe C "$r"
    lab_log "round $r/$ROUNDS done ($((SECONDS - t0)) s)"
done
INV4=$(invalid_count 4 FORWARD)
INV6=$(invalid_count 6 FORWARD)

echo
echo "Added latency per control packet: NOOP round trips through the gateway"
echo "client 198.51.100.2 (SNAT 203.0.113.254) -> vsftpd 203.0.113.10:21, TCP_NODELAY, one connection"
echo "per mode and round; $ROUNDS rounds x $PER_ROUND timed round trips, interleaved A B C; $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, Linux $(uname -r)"
echo "per round trip = 2 queued packets (command client->server, reply server->client; each queued once by ftp-alg)"
echo
python3 "$HERE/ftp_peers.py" latency-report --sample "A=$RES_DIR/A.txt" --sample "B=$RES_DIR/B.txt" --sample "C=$RES_DIR/C.txt" || true
if ((PROC_COUNT > 0)); then
    # Buckets summed over the rounds; the percentile is known to a bucket.
    cat "$RES_DIR"/metrics-round*.txt | awk -v s="$PROC_SUM" -v c="$PROC_COUNT" '
        $1 ~ /^ftp_alg_packet_processing_seconds_bucket/ {
            le = $1; sub(/.*le="/, "", le); sub(/".*/, "", le); n[le] += $2; if (!(le in seen)) { seen[le] = 1; order[++k] = le } }
        function at(q,   i, lo) { lo = 0
            for (i = 1; i <= k; i++) { if (n[order[i]] >= q * c) return sprintf("(%s, %s] us", lo, order[i] == "+Inf" ? "inf" : order[i] * 1e6); lo = order[i] * 1e6 }
            return "?" }
        END { printf "ftp-alg time per queued packet (daemon metrics histogram, all A rounds, %d packets): p50 in %s, p99 in %s, mean %.1f us\n", c, at(0.5), at(0.99), s / c * 1e6
              print "  (from receipt to the verdict call returned; the kernel continues the packet'"'"'s path inside that call)" }'
fi
echo "INVALID drops in the gateway's FORWARD chain over the whole run: IPv4 $INV4, IPv6 $INV6"
fails=0
for m in A B C; do
    if [[ -f $RES_DIR/$m.fail ]]; then
        echo "mode $m: $(wc -l <"$RES_DIR/$m.fail") failed round(s) (logs $RES_DIR/$m-round*.log)"
        fails=1
    fi
done
echo "raw samples (nanoseconds per round trip): $RES_DIR/{A,B,C}.txt; total time $((SECONDS - t0)) s"
exit "$fails"
