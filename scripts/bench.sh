#!/usr/bin/env bash
# scripts/bench.sh -- every performance measure of ftp-alg in one command,
# summed up in one Markdown table (issue #4 "Performance").
#
# Builds the release binary, then runs, one after the other:
#   engine      cargo bench --bench core -- engine   (criterion, packets/s)
#   pinhole     cargo test --release --test netlink_root add_latency_for_1000_pinholes
#   memory      cargo run --release --example session_memory 100000
#   sessions    scripts/bench-sessions.sh   (sessions/s, EPSV and EPRT)
#   bulk        scripts/bench-bulk.sh       (RETR of 256 MiB, EPSV and EPRT)
#   latency     scripts/bench-latency.sh    (added latency per control packet)
#   scale       scripts/scale.sh            (1000 concurrent sessions)
#   queues      scripts/bench-queues.sh     (control round trips with 1, 2, 4 queues)
# Every comparison with the kernel's FTP helper is measured side by side in
# ONE run of the sub-script, on one lab, interleaved (A B A B ...): only the
# ratios are meant to be compared between machines and runs.
#
#   scripts/bench.sh                 # full sizes (about 10 minutes)
#   QUICK=1 scripts/bench.sh         # reduced sizes, a smoke test (about 2 minutes)
#   ONLY="bulk latency" scripts/bench.sh   # a subset (names above)
#
# Each sub-run's full output is kept in target/bench-logs/<UTC time>/NAME.log;
# the table also goes to table.md there. A sub-run that fails (or whose
# output cannot be parsed) shows FAILED in the table, and the script then
# exits 1 (after running all the others). A goal not met is "no" in the
# table, not a failure of the script. Exit 2: setup error (build failed, not
# root).
#
# Needs root (the lab scripts and the netlink test). FTP_ALG_BIN is honoured
# by the lab scripts (default target/release/ftp-alg, built here).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
QUICK=${QUICK:-0}
ALL_MEASURES="engine pinhole memory sessions bulk latency scale queues"
ONLY=${ONLY:-$ALL_MEASURES}

die() {
    printf '[bench] ERROR: %s\n' "$*" >&2
    exit 2
}
log() { printf '[bench] %s\n' "$*" >&2; }

[[ $QUICK == 0 || $QUICK == 1 ]] || die "QUICK must be 0 or 1"
for m in $ONLY; do [[ " $ALL_MEASURES " == *" $m "* ]] || die "unknown measure '$m' in ONLY (known: $ALL_MEASURES)"; done
[[ $(id -u) -eq 0 ]] || die "needs root (network namespaces, nftables)"
command -v cargo >/dev/null || die "cargo not found"

STAMP=$(date -u '+%Y%m%dT%H%M%SZ')
LOGS="$REPO/target/bench-logs/$STAMP"
mkdir -p "$LOGS"
# Keep the 20 most recent runs.
while read -r old; do
    if [[ -n $old && -d $old && $old == "$REPO/target/bench-logs/"* ]]; then rm -rf -- "$old"; fi
done < <(find "$REPO/target/bench-logs" -mindepth 1 -maxdepth 1 -type d -printf '%T@ %p\n' | sort -rn | tail -n +21 | cut -d' ' -f2-)

if ((QUICK)); then
    SESS_ENV=(ROUNDS=2 BATCH=5)
    BULK_ENV=(ROUNDS=2 BATCH=1 SIZE_MIB=32)
    LAT_ENV=(N=1000 ROUNDS=2)
    SCALE_ENV=(SESSIONS=100 LINGER_WAIT=5)
    CRIT_ARGS=(--warm-up-time 1 --measurement-time 2 --sample-size 10)
    MEM_N=100000
else
    SESS_ENV=(ROUNDS=10 BATCH=10)
    BULK_ENV=(ROUNDS=6 BATCH=3 SIZE_MIB=256)
    LAT_ENV=(N=10000 ROUNDS=10)
    SCALE_ENV=(SESSIONS=1000)
    CRIT_ARGS=()
    MEM_N=100000
fi

ROWS=()     # Markdown rows, in order
FAILED=()   # names of failed sub-runs
T_START=$SECONDS
CHILD_PID=

# shellcheck disable=SC2317  # invoked by the INT/TERM trap
on_signal() {
    # Our only child is the current sub-run (its own cleanup trap tears its lab down).
    if [[ -n $CHILD_PID ]] && kill -0 "$CHILD_PID" 2>/dev/null; then
        kill -TERM "$CHILD_PID" 2>/dev/null || true
        wait "$CHILD_PID" 2>/dev/null || true
    fi
    exit 130
}
trap on_signal INT TERM

# run NAME SECONDS CMD...: run a sub-benchmark, bounded in time, output to
# $LOGS/NAME.log; sets RC.
run() {
    local name=$1 secs=$2 t0=$SECONDS
    shift 2
    log "$name: $* (log $LOGS/$name.log)"
    RC=0
    {
        printf '# %s\n# %s\n' "$*" "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
        timeout -k 15 "$secs" "$@" </dev/null 2>&1 &
        CHILD_PID=$!
        wait "$CHILD_PID" || RC=$?
        CHILD_PID=
        printf '# exit %s after %d s\n' "$RC" $((SECONDS - t0))
    } >"$LOGS/$name.log" 2>&1
    log "$name: exit $RC after $((SECONDS - t0)) s"
}

row() { # MEASURE KERNEL ALG RESULT GOAL MET
    ROWS+=("| $1 | $2 | $3 | $4 | $5 | $6 |")
}
failed_row() { # MEASURE GOAL NAME WHY
    ROWS+=("| $1 | | | FAILED ($4; log $3.log) | $2 | FAILED |")
    [[ " ${FAILED[*]} " == *" $3 "* ]] || FAILED+=("$3")
}
yesno() { if awk "BEGIN { exit !($1) }"; then echo yes; else echo no; fi; }
commas() { sed -E ':a;s/^([0-9]+)([0-9]{3})/\1,\2/;ta' <<<"$1"; }
num() { [[ ${1:-} =~ ^[-+]?[0-9]+([.][0-9]+)?$ ]]; }
want() { [[ " $ONLY " == *" $1 "* ]]; }

# ------------------------------------------------------------------ build ---

run build 1800 cargo build --release --locked --manifest-path "$REPO/Cargo.toml"
((RC == 0)) || die "cargo build --release --locked failed (log $LOGS/build.log)"

# ----------------------------------------------------------------- engine ---

if want engine; then
    G="≥ 1,000,000 packets/s"
    run engine 1800 cargo bench --locked --manifest-path "$REPO/proto/Cargo.toml" --bench core -- "${CRIT_ARGS[@]}" engine
    # "thrpt:  [1.2345 Melem/s 1.2500 Melem/s 1.2600 Melem/s]" (one element = one packet)
    line=$(grep -A3 '^engine/' "$LOGS/engine.log" | grep -m1 'thrpt:' || true)
    pps=$(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /elem\/s\]?$/) { n++; if (n == 2) { v = $(i - 1); u = $i } } }
        END { if (v == "") exit 1
              f = 1; if (u ~ /^Kelem/) f = 1e3; if (u ~ /^Melem/) f = 1e6; if (u ~ /^Gelem/) f = 1e9
              printf "%.0f\n", v * f }' <<<"$line" || true)
    if ((RC == 0)) && num "$pps"; then
        row "Engine, control packets/s (criterion, 64 sessions mix, 1 core)" "–" "$(commas "$pps") packets/s" \
            "$(awk -v p="$pps" 'BEGIN { printf "%.2f M packets/s", p / 1e6 }')" "$G" "$(yesno "$pps >= 1000000")"
    else
        failed_row "Engine, control packets/s" "$G" engine "exit $RC"
    fi
fi

# ---------------------------------------------------------------- pinhole ---

if want pinhole; then
    G="median ≤ 20 µs"
    run pinhole 1800 cargo test --release --locked --manifest-path "$REPO/Cargo.toml" --test netlink_root \
        -- --nocapture --exact add_latency_for_1000_pinholes
    # "add() without dnat, 1000 pinholes: median 12.3µs, p90 ..."; Duration's Debug: ns, µs, ms, s.
    to_us() { awk '{ v = $1; u = v; sub(/^[0-9.]+/, "", u); sub(/[^0-9.].*$/, "", v)
        f = (u == "ns") ? 0.001 : (u == "µs" || u == "us") ? 1 : (u == "ms") ? 1000 : (u == "s") ? 1e6 : -1
        if (f < 0 || v == "") exit 1; printf "%.1f\n", v * f }' <<<"$1"; }
    plain=$(sed -nE 's/^add\(\) without dnat, 1000 pinholes: median ([^,]+),.*/\1/p' "$LOGS/pinhole.log" | head -n 1)
    dnat=$(sed -nE 's/^add\(\) with dnat, 1000 pinholes: median ([^,]+),.*/\1/p' "$LOGS/pinhole.log" | head -n 1)
    pu=$(to_us "$plain" 2>/dev/null || true)
    du=$(to_us "$dnat" 2>/dev/null || true)
    if ((RC == 0)) && num "$pu" && num "$du"; then
        row "Pinhole install, median of 1000 add() (nft netlink)" "–" "$pu µs plain, $du µs with DNAT" \
            "max $(awk -v a="$pu" -v b="$du" 'BEGIN { print (a > b) ? a : b }') µs" "$G" "$(yesno "$pu <= 20 && $du <= 20")"
    else
        failed_row "Pinhole install, median" "$G" pinhole "exit $RC"
    fi
fi

# ----------------------------------------------------------------- memory ---

if want memory; then
    G1="≤ 1 KiB per session" G2="≤ 128 MiB RSS"
    run memory 900 cargo run --release --locked --manifest-path "$REPO/proto/Cargo.toml" --example session_memory -- "$MEM_N"
    # "100000 idle sessions: RSS 2100 KiB -> 81000 KiB, 817 bytes per session"
    read -r msess mbefore mafter mper < <(sed -nE 's/^([0-9]+) idle sessions: RSS ([0-9]+) KiB -> ([0-9]+) KiB, ([0-9.]+) bytes per session.*/\1 \2 \3 \4/p' \
        "$LOGS/memory.log" | head -n 1) || true
    if ((RC == 0)) && num "${mper:-}" && num "${mafter:-}"; then
        row "Memory per idle session (engine, $msess sessions)" "–" "$mper bytes" "$mper bytes/session" "$G1" "$(yesno "$mper <= 1024")"
        row "RSS with $msess idle sessions (engine process)" "–" \
            "$(awk -v k="$mafter" 'BEGIN { printf "%.1f MiB", k / 1024 }')" \
            "$(awk -v k="$mafter" -v b="$mbefore" 'BEGIN { printf "%.1f MiB (%.1f MiB at start)", k / 1024, b / 1024 }')" \
            "$G2 (100k sessions)" "$(yesno "$mafter <= 131072 && $msess >= 100000")"
    else
        failed_row "Memory per idle session / RSS" "$G1, $G2" memory "exit $RC"
    fi
fi

# --------------------------------------------------------------- sessions ---

if want sessions; then
    G="ratio ≥ 0.95"
    run sessions 1800 env "${SESS_ENV[@]}" "$HERE/bench-sessions.sh"
    for kind in epsv eprt; do
        # "epsv   12.34/15.67 ms (n=100)     11.90/14.00 ms (n=100)     1.037"
        read -r ma mk < <(awk -v k="$kind" '$1 == k && $3 == "ms" && $6 == "ms" {
            split($2, a, "/"); split($5, b, "/"); print a[1], b[1] }' "$LOGS/sessions.log" | head -n 1) || true
        label="Sessions/s, sequential curl 4 KiB RETR, ${kind^^} via SNAT"
        if ((RC == 0)) && num "${ma:-}" && num "${mk:-}" && ! grep -q 'failed sessions' "$LOGS/sessions.log"; then
            r=$(awk -v a="$ma" -v b="$mk" 'BEGIN { printf "%.3f", b / a }')
            row "$label" "$(awk -v m="$mk" 'BEGIN { printf "%.1f/s (median %.2f ms)", 1000 / m, m }')" \
                "$(awk -v m="$ma" 'BEGIN { printf "%.1f/s (median %.2f ms)", 1000 / m, m }')" \
                "$r" "$G" "$(yesno "$r >= 0.95")"
        else
            failed_row "$label" "$G" sessions "exit $RC$(grep -q 'failed sessions' "$LOGS/sessions.log" && echo ', failed sessions')"
        fi
    done
fi

# ------------------------------------------------------------------- bulk ---

if want bulk; then
    G="ratio ≥ 0.98"
    run bulk 1800 env "${BULK_ENV[@]}" "$HERE/bench-bulk.sh"
    size=$(printf '%s\n' "${BULK_ENV[@]}" | sed -n 's/^SIZE_MIB=//p')
    for kind in epsv eprt; do
        # "BULK epsv alg=250.1 kernel=255.0 ratio=0.981 fail_alg=0 fail_kernel=0"
        line=$(grep -m1 "^BULK $kind " "$LOGS/bulk.log" || true)
        get() { sed -nE "s/.* $1=([^ ]+).*/\\1/p" <<<"$line"; }
        ba=$(get alg) bk=$(get kernel) br=$(get ratio) bfa=$(get fail_alg) bfk=$(get fail_kernel)
        label="Bulk throughput, RETR of $size MiB, ${kind^^} via SNAT"
        if ((RC == 0)) && num "$ba" && num "$bk" && num "$br" && [[ $bfa == 0 && $bfk == 0 ]]; then
            row "$label" "$bk MiB/s" "$ba MiB/s" "$br" "$G" "$(yesno "$br >= 0.98")"
        else
            failed_row "$label" "$G" bulk "exit $RC, failed downloads: ftp-alg ${bfa:-?}, kernel ${bfk:-?}"
        fi
    done
fi

# ---------------------------------------------------------------- latency ---

if want latency; then
    G="p50 ≤ 30 µs, p99 ≤ 200 µs"
    run latency 1800 env "${LAT_ENV[@]}" "$HERE/bench-latency.sh"
    # "  A ftp-alg        p50:    +8.0 us per round trip =   +4.0 us per packet"
    pp() { sed -nE "s/^  $1 .* p$2 *: .*= *([-+0-9.]+) us per packet.*/\\1/p" "$LOGS/latency.log" | head -n 1; }
    a50=$(pp A 50) a99=$(pp A 99) b50=$(pp B 50) b99=$(pp B 99)
    r50=$(sed -nE 's/^ratio A\/B .* at p50: ([0-9.]+).*/\1/p' "$LOGS/latency.log" | head -n 1)
    r99=$(sed -nE 's/^ratio A\/B .* at p99: ([0-9.]+).*/\1/p' "$LOGS/latency.log" | head -n 1)
    if ((RC == 0)) && num "$a50" && num "$a99" && num "$b50" && num "$b99"; then
        row "Latency added per control packet, p50 / p99 (NOOP round trips ÷ 2, over the plain gateway)" \
            "${b50#+} / ${b99#+} µs" "${a50#+} / ${a99#+} µs" \
            "ftp-alg +${a50#+} / +${a99#+} µs (round-trip ratio ftp-alg/kernel ${r50:-?} / ${r99:-?})" "$G" \
            "$(yesno "$a50 <= 30 && $a99 <= 200")"
    else
        failed_row "Latency added per control packet" "$G" latency "exit $RC"
    fi
fi

# ------------------------------------------------------------------ scale ---

if want scale; then
    n=$(printf '%s\n' "${SCALE_ENV[@]}" | sed -n 's/^SESSIONS=//p')
    G="all complete, 0 pinholes left"
    run scale 900 env "${SCALE_ENV[@]}" "$HERE/scale.sh"
    # "  sessions completed          1000 / 1000 (failed 0)"
    read -r done_ total_ < <(sed -nE 's/^  sessions completed +([0-9]+) \/ ([0-9]+).*/\1 \2/p' "$LOGS/scale.log" | head -n 1) || true
    left=$(sed -nE 's/^  pinholes left after QUIT +nft pin4 ([0-9?]+), pin6 ([0-9?]+) elements.*/\1 + \2/p' "$LOGS/scale.log" | head -n 1)
    peak=$(sed -nE 's/^  daemon RSS \(VmRSS\) +idle ([0-9?]+) kB, at the peak ([0-9?]+) kB.*/\2/p' "$LOGS/scale.log" | head -n 1)
    res=$(grep -m1 '^RESULT:' "$LOGS/scale.log" || true)
    if [[ -n ${done_:-} ]] && [[ $res == "RESULT: all "* || $RC == 1 ]]; then
        met=no
        ((RC == 0)) && [[ $res == "RESULT: all "* ]] && met=yes
        result="$done_/$total_ completed, pinholes left $(awk "BEGIN { print ${left:-0} }" 2>/dev/null || echo "${left:-?}"), daemon peak RSS ${peak:-?} kB"
        ((RC == 0)) || result="$result; ${res#RESULT: }"
        row "$n concurrent sessions (login, held, EPSV RETR, QUIT)" "–" "$done_/$total_ completed" "$result" "$G" "$met"
    else
        failed_row "$n concurrent sessions" "$G" scale "exit $RC"
    fi
fi

# ----------------------------------------------------------------- queues ---

if want queues; then
    G="scaling documented (no fixed goal)"
    if ((QUICK)); then QUEUES_ENV=(ROUNDS=1 SECONDS_PER_RUN=2); else QUEUES_ENV=(ROUNDS=3 SECONDS_PER_RUN=5); fi
    run queues 900 env "${QUEUES_ENV[@]}" "$HERE/bench-queues.sh"
    # "QUEUES q=2 rts=20968 ratio=0.966 cpu_us_per_packet=8.0" and "QUEUES kernel rts=21708"
    krts=$(sed -nE 's/^QUEUES kernel rts=([0-9]+).*/\1/p' "$LOGS/queues.log" | head -n 1)
    qrows=$(grep -c '^QUEUES q=' "$LOGS/queues.log" || true)
    if ((RC == 0 && qrows > 0)) && num "$krts"; then
        while read -r q rts ratio cpu; do
            row "Control round trips/s, 8 clients x 4 connections NOOP (IPv6), queues = $q" "$krts/s" "$rts/s" \
                "$ratio; daemon CPU $cpu µs/packet" "$G" "–"
        done < <(sed -nE 's/^QUEUES q=([0-9]+) rts=([0-9]+) ratio=([0-9.-]+) cpu_us_per_packet=([0-9.-]+).*/\1 \2 \3 \4/p' "$LOGS/queues.log")
    else
        failed_row "Control round trips/s with 1, 2, 4 queues" "$G" queues "exit $RC"
    fi
fi

# ------------------------------------------------------------------ table ---

{
    echo
    echo "## ftp-alg performance$( ((QUICK)) && echo ' (QUICK=1: reduced sizes, smoke test only)')"
    echo
    echo "Machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), Linux $(uname -r); $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo ?)$(git -C "$REPO" diff --quiet HEAD -- src 2>/dev/null || echo ' (src/ modified)')"
    echo "Every kernel-helper comparison is one run on one lab, interleaved A B A B; ratios are ftp-alg ÷ kernel helper (higher is better for rates)."
    echo
    echo "| Measure | Kernel helper | ftp-alg | Ratio / result | Goal | Met? |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "Sessions/s = 1 ÷ median wall time of one curl session (login, EPSV or EPRT, RETR, QUIT); ratio = ftp-alg ÷ kernel helper."
    echo "Bulk = size ÷ wall time of the curl process, median; every round's first download per mode and kind checked by sha256."
    echo "Latency = percentile of the mode minus the same percentile of the plain gateway (no helper), per packet; values near 0 or below are noise."
    echo
    echo "Logs: $LOGS (total $((SECONDS - T_START)) s)"
} | tee "$LOGS/table.md"

if ((${#FAILED[@]})); then
    echo "FAILED sub-benchmarks: ${FAILED[*]}"
    exit 1
fi
exit 0
