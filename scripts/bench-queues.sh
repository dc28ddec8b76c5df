#!/usr/bin/env bash
# scripts/bench-queues.sh -- control-packet throughput of ftp-alg with 1, 2
# and 4 queues (`queues = N`: one worker thread per queue, one shared
# engine), the kernel's FTP helper as the reference.
#
# Load: CLIENTS python asyncio processes (scripts/ftp_peers.py load) in the
# inside client namespace (cl), each from an IPv6 source address of its own
# (2001:db8:1::101, ::102, ...: the kernel picks a queue by a hash of the
# addresses, so one client address would always use one queue), each with
# CONNS control connections to the outside vsftpd (2001:db8:2::10, routed
# without NAT) doing NOOP round trips, one in flight per connection, for
# SECONDS. Every round trip is two control packets through the gateway, and
# with ftp-alg both are queued to userspace.
#
# Modes alternate in rounds (q1 q2 q4 kernel, q1 q2 q4 kernel, ...). Prints
# per mode the median over rounds of: round trips/s (all clients), the
# daemon's CPU time per 1000 queued packets (utime+stime from /proc), and how
# the packets spread over the queues.
#
#   ROUNDS=3 SECONDS_PER_RUN=5 CLIENTS=8 CONNS=4 scripts/bench-queues.sh
#
# On a machine with few cores the load generator, vsftpd, the kernel and the
# daemon share them: round trips/s then measures the whole lab, and the CPU
# per packet shows what more queues cost or save in the daemon itself.
#
# Needs root; FTP_ALG_BIN as in scripts/lab.sh (default target/release/ftp-alg).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib-lab.sh
source "$HERE/lib-lab.sh"

ROUNDS=${ROUNDS:-3}
SECS=${SECONDS_PER_RUN:-5}
CLIENTS=${CLIENTS:-8}
CONNS=${CONNS:-4}
QUEUE_COUNTS=${QUEUE_COUNTS:-"1 2 4"}
for v in "$ROUNDS" "$SECS" "$CLIENTS" "$CONNS"; do
    [[ $v =~ ^[0-9]+$ ]] || lab_die "ROUNDS, SECONDS_PER_RUN, CLIENTS and CONNS must be numbers"
done
((ROUNDS >= 1 && ROUNDS <= 100 && SECS >= 1 && SECS <= 120 && CLIENTS >= 1 && CLIENTS <= 64 && CONNS >= 1 && CONNS <= 64)) ||
    lab_die "out of range: ROUNDS 1..100, SECONDS_PER_RUN 1..120, CLIENTS 1..64, CONNS 1..64"
for q in $QUEUE_COUNTS; do
    if ! [[ $q =~ ^[0-9]+$ ]] || ((q < 1 || q > 64)); then lab_die "QUEUE_COUNTS: $q is not in 1..64"; fi
done
command -v python3 >/dev/null || lab_die "python3 is needed"

bench_lab_up "bq$(($$ % 1000000))" bench-queues
for ((c = 1; c <= CLIENTS; c++)); do
    nsx "$NS_CL" ip -6 addr add "2001:db8:1::$((100 + c))/64" dev eth0 nodad
done

# cpu_ticks PID: utime + stime of PID, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# load MODE: CLIENTS load processes at once; appends "rt/s" to MODE.rts.
load() {
    local mode=$1 c pids=() rt=0 secs=0 failed=0 out
    for ((c = 1; c <= CLIENTS; c++)); do
        nsx "$NS_CL" timeout -k 2 $((SECS + 30)) python3 "$HERE/ftp_peers.py" load --host 2001:db8:2::10 \
            --source "2001:db8:1::$((100 + c))" --conns "$CONNS" --seconds "$SECS" \
            >"$RES_DIR/$mode.client$c.out" 2>&1 &
        pids+=($!)
    done
    for c in "${!pids[@]}"; do wait "${pids[$c]}" || failed=$((failed + 1)); done
    for ((c = 1; c <= CLIENTS; c++)); do
        out=$(grep -o 'rt=[0-9]* seconds=[0-9.]*' "$RES_DIR/$mode.client$c.out" || true)
        [[ -n $out ]] || continue
        rt=$((rt + $(sed -E 's/rt=([0-9]+).*/\1/' <<<"$out")))
        secs=$(awk -v a="$secs" -v b="$(sed -E 's/.*seconds=//' <<<"$out")" 'BEGIN { print (b > a) ? b : a }')
    done
    ((failed == 0)) || lab_log "warning: $failed load client(s) of mode $mode failed (see $RES_DIR)"
    awk -v rt="$rt" -v s="$secs" 'BEGIN { if (s > 0) printf "%.0f\n", rt / s; else print 0 }' >>"$RES_DIR/$mode.rts"
}

lab_log "benchmark: $ROUNDS rounds x (queues $QUEUE_COUNTS, kernel), $CLIENTS clients x $CONNS connections, $SECS s each"
t0=$SECONDS
for ((r = 1; r <= ROUNDS; r++)); do
    for q in $QUEUE_COUNTS; do
        lab_flush_conntrack
        ALG_EXTRA_CONFIG="queues = $q"$'\n'
        alg_start "q$q-$r" || lab_die "ftp-alg did not start (queues $q, round $r)"
        before=$(cpu_ticks "$ALG_PID")
        p0=$(lab_queue_packets)
        load "q$q"
        after=$(cpu_ticks "$ALG_PID")
        p1=$(lab_queue_packets)
        # Packets handed to each queue during the load.
        spread=$(awk -v a="$p0" -v b="$p1" 'BEGIN {
            n = split(a, x, " "); split(b, y, " ")
            for (i = 1; i <= n; i++) { split(x[i], u, ":"); split(y[i], v, ":"); d[i] = v[2] - u[2]; t += d[i]; q[i] = u[1] }
            for (i = 1; i <= n; i++) printf "%s%s:%d", (i > 1 ? " " : ""), q[i], d[i]
            printf " total:%d\n", t }')
        echo "$spread" >>"$RES_DIR/q$q.spread"
        total=$(sed -E 's/.*total:([0-9]+).*/\1/' <<<"$spread")
        awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$total" \
            'BEGIN { if (n > 0) printf "%.1f\n", t / hz * 1e6 / n * 1000 / 1000; else print "-" }' >>"$RES_DIR/q$q.cpu"
        alg_stop
        [[ $ALG_RC == 0 ]] || lab_log "warning: ftp-alg exit status $ALG_RC after SIGTERM (queues $q, round $r)"
    done
    lab_flush_conntrack
    lab_kernel_helper on
    load kernel
    lab_kernel_helper off
    lab_log "round $r/$ROUNDS done ($((SECONDS - t0)) s)"
done

median() { sort -n "$1" | awk '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit } print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo
echo "Control round trips through the gateway: $CLIENTS clients x $CONNS connections, NOOP, $SECS s x $ROUNDS rounds (IPv6, no NAT)"
kernel_rts=$(median "$RES_DIR/kernel.rts")
printf '%-8s %-16s %-16s %-20s %s\n' mode "round trips/s" "ratio to kernel" "daemon CPU us/packet" "packets per queue (last round)"
for q in $QUEUE_COUNTS; do
    m=$(median "$RES_DIR/q$q.rts")
    ratio=$(awk -v a="$m" -v b="$kernel_rts" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }')
    printf '%-8s %-16s %-16s %-20s %s\n' "queues=$q" "$m" "$ratio" "$(median "$RES_DIR/q$q.cpu")" "$(tail -n 1 "$RES_DIR/q$q.spread")"
    echo "QUEUES q=$q rts=$m ratio=$ratio cpu_us_per_packet=$(median "$RES_DIR/q$q.cpu")"
done
printf '%-8s %-16s\n' kernel "$kernel_rts"
echo "QUEUES kernel rts=$kernel_rts"
echo "machine: $(nproc) CPUs, Linux $(uname -r); raw results: $RES_DIR"
