#!/usr/bin/env bash
# scripts/bench-bulk.sh -- bulk data throughput through the gateway:
# ftp-alg versus the kernel's FTP helper (reference), on the same lab.
#
# One file of SIZE_MIB MiB (default 256, random bytes) is put on the outside
# vsftpd (203.0.113.10), in the lab's own state directory (removed with the
# lab). The inside client (cl, 198.51.100.2, SNAT to 203.0.113.254) fetches it
# with curl: RETR over passive EPSV, and over active EPRT (`-P -`, the data
# connection comes in through the DNAT pinhole / the helper's expectation).
# ftp-alg only ever queues the control connection (tcp/21); the data
# connection is never queued, so the throughput should match the kernel
# helper's.
#
# A = ftp-alg running on the gateway; B = kernel helper attached (ftp-alg not
# running). The two alternate in rounds (A B A B ...). In every round and
# mode, one untimed download per kind is piped through sha256sum and checked
# (warm-up + content check), then BATCH timed downloads per kind go to
# /dev/null (so that hashing never competes with the transfer for the CPU);
# its size is checked. Prints the median (and min/max) MiB/s per mode and
# kind, and the ratio A/B of the medians (throughput: higher is better).
#
#   ROUNDS=5 BATCH=2 SIZE_MIB=256 scripts/bench-bulk.sh   # 10 timed downloads per mode and kind
#
# KINDS="epsv eprt" (default) or one of them.
#
# Needs root; FTP_ALG_BIN as in scripts/lab.sh (default target/release/ftp-alg).
# Exit status: 0 all downloads complete and correct, 1 a download failed or
# was wrong, 2 setup error.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib-lab.sh
source "$HERE/lib-lab.sh"

ROUNDS=${ROUNDS:-5}
BATCH=${BATCH:-2}
SIZE_MIB=${SIZE_MIB:-256}
KINDS=${KINDS:-"epsv eprt"}
[[ $ROUNDS =~ ^[0-9]+$ && $BATCH =~ ^[0-9]+$ && $SIZE_MIB =~ ^[0-9]+$ ]] || lab_die "ROUNDS, BATCH and SIZE_MIB must be numbers"
((ROUNDS >= 1 && ROUNDS <= 100 && BATCH >= 1 && BATCH <= 100 && SIZE_MIB >= 1 && SIZE_MIB <= 2048)) ||
    lab_die "ROUNDS 1..100, BATCH 1..100, SIZE_MIB 1..2048"
for k in $KINDS; do [[ $k == epsv || $k == eprt ]] || lab_die "KINDS: epsv and/or eprt, got '$k'"; done
SIZE=$((SIZE_MIB * 1048576))
# Bound per download: at least 20 MiB/s, never under 30 s.
XFER_TIMEOUT=$((SIZE_MIB / 20 + 30))

# shellcheck disable=SC2317 # called by bench_teardown
bench_extra_cleanup() {
    # The big file lives in the lab's state dir, which lab_down removes;
    # remove it first anyway so that it never outlives the run.
    if [[ -n ${BIG:-} && $BIG == "$LAB_STATE"/* ]]; then rm -f "$BIG"; fi
}
bench_lab_up "bb$(($$ % 1000000))" bench-bulk

BIG="$LAB_STATE/srv-so/root/big.bin"
lab_log "creating the $SIZE_MIB MiB file $BIG"
head -c "$SIZE" /dev/urandom >"$BIG"
chmod 644 "$BIG"
[[ $(stat -c %s "$BIG") == "$SIZE" ]] || lab_die "could not create $BIG ($SIZE bytes)"
BIG_SHA=$(sha "$BIG")

URL=ftp://203.0.113.10/big.bin

# curl_opts KIND -> CURL array
curl_opts() {
    CURL=(curl -q -sS --connect-timeout 3 -m "$XFER_TIMEOUT")
    [[ $1 == eprt ]] && CURL+=(-P -)
    return 0
}

# verify MODE KIND ROUND: untimed download through sha256sum (also the warm-up).
verify() {
    local mode=$1 kind=$2 r=$3 got log="$RES_DIR/$1-$2-verify$3.log"
    curl_opts "$kind"
    got=$(nsx "$NS_CL" env HOME="$LAB_STATE/home" timeout -k 2 $((XFER_TIMEOUT + 5)) "${CURL[@]}" -o - "$URL" \
        </dev/null 2>"$log" | sha256sum | cut -d' ' -f1) || true
    if [[ $got != "$BIG_SHA" ]]; then
        lab_log "mode $mode $kind round $r: sha256 MISMATCH or failed download ($(tail -n 1 "$log"))"
        echo "verify $r" >>"$RES_DIR/$mode-$kind.fail"
        return 1
    fi
    echo "sha256 ok $got" >>"$log"
}

# timed MODE KIND ROUND: one download to /dev/null; appends MiB/s to
# $RES_DIR/MODE-KIND.txt (size checked), failures to MODE-KIND.fail.
timed() {
    local mode=$1 kind=$2 r=$3 log="$RES_DIR/$1-$2-timed$3.log" rc=0 out t0 t1 bytes
    curl_opts "$kind"
    t0=$(date +%s%N)
    out=$(nsx "$NS_CL" env HOME="$LAB_STATE/home" timeout -k 2 $((XFER_TIMEOUT + 5)) "${CURL[@]}" -o /dev/null \
        -w '%{size_download} %{time_total}' "$URL" </dev/null 2>"$log") || rc=$?
    t1=$(date +%s%N)
    read -r bytes _ <<<"$out"
    printf 'exit %s; curl: %s; wall %d us\n' "$rc" "$out" $(((t1 - t0) / 1000)) >>"$log"
    if ((rc != 0)) || [[ $bytes != "$SIZE" ]]; then
        lab_log "mode $mode $kind round $r: FAILED (exit $rc, ${bytes:-0} of $SIZE bytes; $(head -n 1 "$log"))"
        echo "timed $r" >>"$RES_DIR/$mode-$kind.fail"
        return 1
    fi
    # Wall time around the curl process (login + EPSV/EPRT + RETR + QUIT),
    # as in bench-sessions.sh.
    awk -v b="$SIZE" -v ns=$((t1 - t0)) 'BEGIN { printf "%.3f\n", b / 1048576 / (ns / 1e9) }' >>"$RES_DIR/$mode-$kind.txt"
}

run_mode() { # MODE ROUND
    local k i
    for k in $KINDS; do
        verify "$1" "$k" "$2" || true
        for ((i = 1; i <= BATCH; i++)); do timed "$1" "$k" "$2.$i" || true; done
    done
}

lab_log "bulk benchmark: $ROUNDS rounds x $BATCH timed downloads, RETR of $SIZE_MIB MiB, per mode (alg, kernel) and kind ($KINDS)"
t0=$SECONDS
for ((r = 1; r <= ROUNDS; r++)); do
    # A: ftp-alg
    lab_flush_conntrack
    alg_start "bulk$r" || lab_die "ftp-alg did not start (round $r)"
    run_mode alg "$r"
    alg_stop
    [[ $ALG_RC == 0 ]] || lab_log "warning: ftp-alg exit status $ALG_RC after SIGTERM (round $r)"
    # B: kernel helper
    lab_flush_conntrack
    lab_kernel_helper on
    run_mode kernel "$r"
    lab_kernel_helper off
    lab_log "round $r/$ROUNDS done ($((SECONDS - t0)) s)"
done
INV4=$(invalid_count 4 FORWARD)

# stats FILE -> "n median min max" in MiB/s
stats() {
    if [[ ! -s $1 ]]; then
        echo "0 - - -"
        return
    fi
    sort -n "$1" | awk '{ v[NR] = $1 } END {
        n = NR
        m = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
        printf "%d %.1f %.1f %.1f\n", n, m, v[1], v[n] }'
}

echo
echo "Bulk data throughput through the gateway: curl RETR of $SIZE_MIB MiB, cl 198.51.100.2 (SNAT 203.0.113.254) -> vsftpd 203.0.113.10"
echo "$ROUNDS rounds x $BATCH timed downloads, interleaved A (ftp-alg) B (kernel helper), each round's first download per kind sha256-checked; MiB/s = size / wall time of the curl process; $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, Linux $(uname -r)"
printf '%-6s %-30s %-30s %s\n' kind "ftp-alg median [min-max]" "kernel median [min-max]" "ratio alg/kernel (median)"
fails=0
for kind in $KINDS; do
    read -r na ma loa hia < <(stats "$RES_DIR/alg-$kind.txt")
    read -r nk mk lok hik < <(stats "$RES_DIR/kernel-$kind.txt")
    fa=0 fk=0
    if [[ -f $RES_DIR/alg-$kind.fail ]]; then fa=$(wc -l <"$RES_DIR/alg-$kind.fail"); fi
    if [[ -f $RES_DIR/kernel-$kind.fail ]]; then fk=$(wc -l <"$RES_DIR/kernel-$kind.fail"); fi
    ratio=-
    if [[ $ma != - && $mk != - ]]; then ratio=$(awk -v a="$ma" -v b="$mk" 'BEGIN { printf "%.3f", a / b }'); fi
    printf '%-6s %-30s %-30s %s\n' "$kind" "$ma [$loa-$hia] MiB/s (n=$na)" "$mk [$lok-$hik] MiB/s (n=$nk)" "$ratio"
    # Machine-readable line for scripts/bench.sh.
    printf 'BULK %s alg=%s kernel=%s ratio=%s fail_alg=%s fail_kernel=%s\n' "$kind" "$ma" "$mk" "$ratio" "$fa" "$fk"
    if ((fa + fk)); then
        echo "  failed or wrong downloads: ftp-alg $fa, kernel $fk (logs $RES_DIR)"
        fails=1
    fi
done
echo "INVALID drops in the gateway's FORWARD chain over the whole run: IPv4 $INV4"
echo "raw samples (MiB/s) and logs: $RES_DIR; total time $((SECONDS - t0)) s"
exit "$fails"
