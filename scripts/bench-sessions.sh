#!/usr/bin/env bash
# scripts/bench-sessions.sh -- cost of a whole FTP session through the gateway:
# ftp-alg versus the kernel's FTP helper (reference), on the same lab.
#
# Each session is one curl process in the inside client namespace (cl,
# 198.51.100.2, SNAT to 203.0.113.254) fetching a 4 KiB file from the outside
# vsftpd (203.0.113.10): login, then RETR over passive EPSV, or over active
# EPRT (`-P -`, where the PORT-style rewrite and a DNAT pinhole are needed).
# The wall time of each session is measured around the curl process.
#
# A = ftp-alg running on the gateway; B = kernel helper attached (ftp-alg not
# running). The two alternate in rounds (A B A B ...), BATCH sessions of each
# kind per round, so that drift on the machine hits both alike. Prints the
# median (and p90) per mode and kind, and the ratio A/B.
#
#   ROUNDS=10 BATCH=10 scripts/bench-sessions.sh      # 100 sessions per mode and kind
#
# Needs root; FTP_ALG_BIN as in scripts/lab.sh (default target/release/ftp-alg).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib-lab.sh
source "$HERE/lib-lab.sh"

ROUNDS=${ROUNDS:-10}
BATCH=${BATCH:-10}
[[ $ROUNDS =~ ^[0-9]+$ && $BATCH =~ ^[0-9]+$ ]] || lab_die "ROUNDS and BATCH must be numbers"
((ROUNDS >= 1 && ROUNDS <= 1000 && BATCH >= 1 && BATCH <= 1000)) || lab_die "ROUNDS/BATCH out of range 1..1000"

bench_lab_up "$$" bench

# batch MODE KIND: BATCH sequential sessions; appends microseconds per session
# to $RES_DIR/MODE-KIND.txt, failures to $RES_DIR/MODE-KIND.fail.
batch() {
    local mode=$1 kind=$2 opts=""
    [[ $kind == eprt ]] && opts="-P -"
    # shellcheck disable=SC2016
    nsx "$NS_CL" env HOME="$LAB_STATE/home" N="$BATCH" OPTS="$opts" bash -c '
        for ((i = 0; i < N; i++)); do
            s=$(date +%s%N)
            if timeout -k 1 15 curl -q -sS --connect-timeout 3 -m 10 $OPTS -o /dev/null \
                ftp://203.0.113.10/small.bin 2>/dev/null; then
                e=$(date +%s%N)
                echo "ok $(( (e - s) / 1000 ))"
            else
                echo "fail"
            fi
        done' </dev/null | while read -r st us; do
        if [[ $st == ok ]]; then echo "$us" >>"$RES_DIR/$mode-$kind.txt"; else echo x >>"$RES_DIR/$mode-$kind.fail"; fi
    done
}

warmup() {
    nsx "$NS_CL" timeout 15 curl -q -sS --connect-timeout 3 -m 10 -o /dev/null ftp://203.0.113.10/small.bin || true
    nsx "$NS_CL" timeout 15 curl -q -sS --connect-timeout 3 -m 10 -P - -o /dev/null ftp://203.0.113.10/small.bin || true
}

lab_log "benchmark: $ROUNDS rounds x $BATCH sessions, per mode (alg, kernel) and kind (epsv, eprt)"
t0=$SECONDS
for ((r = 1; r <= ROUNDS; r++)); do
    # A: ftp-alg
    lab_flush_conntrack
    alg_start "bench$r" || lab_die "ftp-alg did not start (round $r)"
    warmup
    batch alg epsv
    batch alg eprt
    alg_stop
    [[ $ALG_RC == 0 ]] || lab_log "warning: ftp-alg exit status $ALG_RC after SIGTERM (round $r)"
    # B: kernel helper
    lab_flush_conntrack
    lab_kernel_helper on
    warmup
    batch kernel epsv
    batch kernel eprt
    lab_kernel_helper off
    lab_log "round $r/$ROUNDS done ($((SECONDS - t0)) s)"
done

# stats FILE -> "n median p90" in ms
stats() {
    if [[ ! -s $1 ]]; then
        echo "0 - -"
        return
    fi
    sort -n "$1" | awk '{ v[NR] = $1 } END {
        n = NR
        m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
        i = int(0.9 * n + 0.999999); if (i < 1) i = 1; if (i > n) i = n
        printf "%d %.2f %.2f\n", n, m / 1000, v[i] / 1000 }'
}

echo
echo "FTP sessions through the gateway (curl, 4 KiB RETR, cl -> so, SNAT): wall time per session"
printf '%-6s %-22s %-22s %s\n' kind "ftp-alg median/p90" "kernel median/p90" "ratio alg/kernel (median)"
for kind in epsv eprt; do
    read -r na ma pa < <(stats "$RES_DIR/alg-$kind.txt")
    read -r nk mk pk < <(stats "$RES_DIR/kernel-$kind.txt")
    fa=0 fk=0
    if [[ -f $RES_DIR/alg-$kind.fail ]]; then fa=$(wc -l <"$RES_DIR/alg-$kind.fail"); fi
    if [[ -f $RES_DIR/kernel-$kind.fail ]]; then fk=$(wc -l <"$RES_DIR/kernel-$kind.fail"); fi
    ratio=-
    if [[ $ma != - && $mk != - ]]; then ratio=$(awk -v a="$ma" -v b="$mk" 'BEGIN { printf "%.3f", a / b }'); fi
    printf '%-6s %-22s %-22s %s\n' "$kind" "$ma/$pa ms (n=$na)" "$mk/$pk ms (n=$nk)" "$ratio"
    if ((fa + fk)); then echo "  failed sessions: ftp-alg $fa, kernel $fk"; fi
done
echo "raw samples (microseconds): $RES_DIR"
