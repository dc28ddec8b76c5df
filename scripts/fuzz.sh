#!/usr/bin/env bash
# Runs every cargo-fuzz target of ftp-alg for a fixed time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 60)
#
# Installs cargo-fuzz if it is missing, builds the targets in fuzz/ once
# (so every target fuzzes the same sources, even if they are being edited),
# then runs each for SECONDS_PER_TARGET seconds on one job and prints, per
# target, the number of executions, the executions per second and whether
# it crashed. Exits non-zero if any target crashed (or failed to build or
# run). Crashing inputs are kept in fuzz/artifacts/<target>/.
#
# Works on the stable toolchain: cargo-fuzz needs a few unstable compiler
# flags, enabled here (and only here) with RUSTC_BOOTSTRAP=1.
#
# Environment (all optional):
#   FUZZ_TARGETS    space-separated targets to run (default: all in fuzz/)
#   FUZZ_SANITIZER  sanitizer for cargo-fuzz (default: none; the fuzzed
#                   code is safe Rust, and without ASan it runs ~2x faster)
#   FUZZ_WORK_DIR   where the corpus grown by the run is kept (default:
#                   fuzz/target/corpus-work); the seeds in fuzz/corpus/ are
#                   only read, never written.
set -euo pipefail

SECONDS_PER_TARGET="${1:-60}"
case "$SECONDS_PER_TARGET" in
    '' | *[!0-9]*)
        echo "usage: $0 [SECONDS_PER_TARGET]" >&2
        exit 2
        ;;
esac

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FUZZ_DIR="$ROOT/fuzz"
cd "$ROOT"

export RUSTC_BOOTSTRAP=1
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
SANITIZER="${FUZZ_SANITIZER:-none}"
WORK_DIR="${FUZZ_WORK_DIR:-$FUZZ_DIR/target/corpus-work}"
LOG_DIR="$FUZZ_DIR/target/fuzz-logs"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"

# libFuzzer is C++: the libfuzzer-sys build script needs a C++ compiler.
if ! command -v c++ >/dev/null 2>&1 && ! command -v g++ >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "fuzz.sh: installing g++ (needed to build libFuzzer)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
    else
        echo "fuzz.sh: a C++ compiler (g++) is needed to build libFuzzer" >&2
        exit 1
    fi
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
TARGET_DIR="$FUZZ_DIR/target"
BUILD_FLAGS=(--fuzz-dir "$FUZZ_DIR" --target "$TRIPLE" --target-dir "$TARGET_DIR"
    --release --debug-assertions --sanitizer "$SANITIZER")

if [ -n "${FUZZ_TARGETS:-}" ]; then
    read -r -a TARGETS <<<"$FUZZ_TARGETS"
else
    mapfile -t TARGETS < <(cargo fuzz list --fuzz-dir "$FUZZ_DIR")
fi
if [ "${#TARGETS[@]}" -eq 0 ]; then
    echo "fuzz.sh: no fuzz targets found in $FUZZ_DIR" >&2
    exit 1
fi

echo "fuzz.sh: building ${TARGETS[*]} (sanitizer: $SANITIZER)"
build_log="$LOG_DIR/build.log"
mkdir -p "$LOG_DIR"
if ! cargo fuzz build "${BUILD_FLAGS[@]}" >"$build_log" 2>&1; then
    tail -n 40 "$build_log"
    echo "fuzz.sh: building the fuzz targets failed (log: $build_log)" >&2
    exit 1
fi

failed=0
summary=()
for target in "${TARGETS[@]}"; do
    work="$WORK_DIR/$target"
    seeds="$FUZZ_DIR/corpus/$target"
    artifacts="$FUZZ_DIR/artifacts/$target"
    log="$LOG_DIR/$target.log"
    mkdir -p "$work" "$seeds" "$artifacts"
    before="$(ls -A "$artifacts" | sort)"
    echo "fuzz.sh: running $target for ${SECONDS_PER_TARGET}s (log: $log)"
    set +e
    # The binary built above, run directly (as `cargo fuzz run` would, but
    # without rebuilding). New inputs go to the first corpus directory (the
    # work dir); the seeds are only read from the second.
    "$TARGET_DIR/$TRIPLE/release/$target" \
        -artifact_prefix="$artifacts/" \
        -max_total_time="$SECONDS_PER_TARGET" \
        -rss_limit_mb=2048 \
        -timeout=30 \
        -max_len=4096 \
        -print_final_stats=1 \
        "$work" "$seeds" \
        >"$log" 2>&1
    rc=$?
    set -e

    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    if [ -z "$runs" ]; then
        runs="$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -n 1)"
    fi
    if [ -z "$runs" ]; then
        runs="$(sed -n 's/^#\([0-9][0-9]*\)[[:space:]].*/\1/p' "$log" | tail -n 1)"
    fi
    rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
    after="$(ls -A "$artifacts" | sort)"
    new_artifacts="$(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | sed '/^$/d')"

    if [ "$rc" -eq 0 ] && ! grep -q -e '^==[0-9]*== *ERROR: libFuzzer' -e 'panicked at' "$log"; then
        status="ok"
    else
        failed=1
        if [ -n "$new_artifacts" ]; then
            status="CRASHED"
        else
            status="FAILED (exit $rc)"
        fi
        echo "---- $target: $status; end of $log:"
        grep -n -A3 -e 'panicked at' -e 'ERROR: libFuzzer' "$log" | head -n 40 || true
        tail -n 25 "$log"
        for a in $new_artifacts; do
            echo "---- crashing input: $artifacts/$a"
            od -A x -t x1z -v "$artifacts/$a" | head -n 32
            echo "reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run -O -a -s $SANITIZER $target fuzz/artifacts/$target/$a"
        done
        echo "----"
    fi
    summary+=("$(printf '%-18s %-10s runs=%-12s exec/s=%-8s %s' "$target" "$status" "${runs:-?}" "${rate:-?}" \
        "$(printf '%s ' $new_artifacts)")")
done

echo
echo "fuzz.sh: ${SECONDS_PER_TARGET}s per target"
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
    echo "fuzz.sh: at least one target crashed or failed (artifacts in fuzz/artifacts/)" >&2
    exit 1
fi
