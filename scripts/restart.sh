#!/usr/bin/env bash
# scripts/restart.sh -- restarts of ftp-alg under control traffic (run as root).
#
#   scripts/restart.sh [ROUNDS]     (default 5)
#
# Builds a private lab, starts ftp-alg on the gateway and a NOOP load of
# control connections through it (scripts/ftp_peers.py load), then ROUNDS
# times: `kill -9` the daemon and start a new one at once, while the load
# keeps sending. Each new instance must still run 3 s after "ready" (a
# verdict the kernel answers with an error, e.g. for a packet it dropped when
# the stale rules were replaced, is not a reason to exit), the load must see
# every NOOP answered, and the last instance must exit 0 on SIGTERM.
# Then, still under load, a new instance sees the chain its queue rule sits
# in deleted (what a firewall reload does): the kernel drops the packets
# queued from that hook and answers their verdicts with ENOENT, which must
# not stop the daemon (measured before the fix: it exited 1 at once).
#
# Exit status: 0 as expected, 1 a restart did not hold or the load failed,
# 2 setup error.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib-lab.sh
source "$HERE/lib-lab.sh"

ROUNDS=${1:-5}
[[ $ROUNDS =~ ^[0-9]+$ ]] && ((ROUNDS >= 1 && ROUNDS <= 50)) || lab_die "ROUNDS must be 1-50"
HOLD_SECS=3
LOAD_SECS=$((ROUNDS * (HOLD_SECS + 3) + 20))

bench_lab_up "rs$(($$ % 1000000))" restart

alg_start first || exit 2
noop_load_start 8 "$LOAD_SECS"

held=0
for ((r = 1; r <= ROUNDS; r++)); do
    kill -KILL "$ALG_PID"
    wait "$ALG_PID" 2>/dev/null || true
    ALG_PID=
    if ! alg_start "round$r"; then
        lab_log "round $r: the new instance did not get ready"
        continue
    fi
    sleep "$HOLD_SECS"
    if kill -0 "$ALG_PID" 2>/dev/null; then
        held=$((held + 1))
        lab_log "round $r: new instance still running after ${HOLD_SECS} s"
    else
        rc=0
        wait "$ALG_PID" || rc=$?
        ALG_PID=
        lab_log "round $r: new instance EXITED with status $rc; stderr tail:"
        tail -n 5 "$LAB_LOGS/alg-round$r.stderr" >&2
    fi
done

alg_stop
last_rc=$ALG_RC

# The queue rule's chain deleted under load, ten times.
survived=0
if alg_start reload; then
    for ((i = 0; i < 10; i++)); do
        nsx "$NS_GW" iptables-nft -t raw -F PREROUTING
        nsx "$NS_GW" nft delete table ip raw 2>/dev/null || true
        sleep 0.3
    done
    sleep 2
    if kill -0 "$ALG_PID" 2>/dev/null; then
        survived=1
        lab_log "chain removal: the daemon still runs"
    else
        lab_log "chain removal: the daemon EXITED; stderr tail:"
        tail -n 5 "$LAB_LOGS/alg-reload.stderr" >&2
    fi
    # Its rules are gone, so its exit status says nothing here.
    alg_stop
fi

noop_load_wait
lab_log "load: $(tail -n 3 "$RES_DIR/load.log" | tr '\n' ' ')(exit $load_rc)"
echo "restarts under load: $held/$ROUNDS held; last instance exit $last_rc; survived chain removal: $survived; load exit $load_rc"
if ((held == ROUNDS && survived == 1 && load_rc == 0)) && [[ $last_rc == 0 ]]; then
    exit 0
fi
exit 1
