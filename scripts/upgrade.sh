#!/usr/bin/env bash
# scripts/upgrade.sh -- in-place upgrades of ftp-alg under control traffic
# (run as root).
#
#   scripts/upgrade.sh [ROUNDS]     (default 3)
#
# Builds a private lab, starts ftp-alg from a copy of the binary on the
# gateway and a NOOP load of control connections through it, then ROUNDS
# times: replaces the binary file (a new inode, as a package upgrade does)
# and sends SIGUSR2. Each time the same PID must come back "ready", the
# kernel's queue drop counters (/proc/net/netfilter/nfnetlink_queue:
# queue_dropped, user_dropped) must not move, and the load must see every
# NOOP answered. At the end SIGTERM must exit 0 and leave the ruleset as it
# was before ftp-alg started.
#
# Exit status: 0 as expected, 1 a check failed, 2 setup error.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib-lab.sh
source "$HERE/lib-lab.sh"

ROUNDS=${1:-3}
[[ $ROUNDS =~ ^[0-9]+$ ]] && ((ROUNDS >= 1 && ROUNDS <= 20)) || lab_die "ROUNDS must be 1-20"
LOAD_SECS=$((ROUNDS * 3 + 8))

bench_lab_up "up$(($$ % 1000000))" upgrade

# The daemon runs from a copy that the rounds replace.
SRC_BIN=$(alg_bin)
BIN="$LAB_STATE/ftp-alg"
cp "$SRC_BIN" "$BIN"
export FTP_ALG_BIN=$BIN

before=$(lab_ruleset)
# queue_dropped + user_dropped over all queues.
drops() { nsx "$NS_GW" awk '{ d += $6 + $7 } END { print d + 0 }' /proc/net/netfilter/nfnetlink_queue; }
readies() { grep -c ready "$LAB_LOGS/alg-first.stdout" || true; }

alg_start first || exit 2
pid=$ALG_PID
noop_load_start 8 "$LOAD_SECS"

fail=0
drops0=$(drops)
for ((r = 1; r <= ROUNDS; r++)); do
    # A new file at the same path: the running image's inode is deleted.
    cp "$SRC_BIN" "$BIN.new" && mv -f "$BIN.new" "$BIN"
    want=$(($(readies) + 1))
    t0=$(date +%s%N)
    kill -USR2 "$pid"
    got=0
    for ((i = 0; i < 100; i++)); do
        if (($(readies) >= want)); then got=1; break; fi
        sleep 0.05
    done
    ms=$((($(date +%s%N) - t0) / 1000000))
    if ((got == 0)) || ! kill -0 "$pid" 2>/dev/null; then
        lab_log "round $r: no 'ready' from PID $pid within 5 s; stderr tail:"
        tail -n 5 "$LAB_LOGS/alg-first.stderr" >&2
        fail=1
        break
    fi
    lab_log "round $r: PID $pid upgraded in place, ready again after ${ms} ms"
    sleep 1
done
drops1=$(drops)

noop_load_wait
alg_stop
after=$(lab_ruleset)
same=1
[[ $before == "$after" ]] || same=0
lab_log "load: $(tail -n 3 "$RES_DIR/load.log" | tr '\n' ' ')(exit $load_rc)"
echo "upgrades: $ROUNDS rounds, failed=$fail; queue drops $drops0 -> $drops1; load exit $load_rc; exit $ALG_RC; ruleset restored: $same"
if ((fail == 0 && drops0 == drops1 && load_rc == 0 && same == 1)) && [[ $ALG_RC == 0 ]]; then
    exit 0
fi
exit 1
