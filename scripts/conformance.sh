#!/usr/bin/env bash
# scripts/conformance.sh -- the conformance table of ftp-alg (run as root).
#
#   scripts/conformance.sh [--modes alg,kernel[,none]] [--only 1,2,..] [--pcap]
#
# Builds a private lab with scripts/lib-lab.sh (lab id "cf<pid>", namespaces
# fa-lab-cf<pid>-*), replaces its vsftpd servers by the scripted peers of
# scripts/conformance.py and plays every case of the table
# proto/tests/conformance/cases.toml once per mode:
#
#   alg     ftp-alg runs on the gateway: every case must behave as expected
#           and the gateway's INVALID counters must stay 0; then the same
#           daemon gets [policy] allow_privileged_ports = true by SIGHUP and
#           case 14 (PORT to a port below 1024), refused before, must now
#           get its data connection through (a policy reload on live traffic);
#           a second SIGHUP adds a [[nat_override]] for the outside interface
#           and case 25 must announce that address (an iptables DNAT on the
#           outside host stands in for the further NAT)
#   kernel  reference: the kernel's FTP helper (nf_conntrack_ftp + nf_nat_ftp)
#           attached with lab_kernel_helper; recorded against the same
#           expectations, report only
#   none    no ALG at all (negative control, report only; not run by default)
#
# Prints the side-by-side table (case | ftp-alg | kernel helper) and the
# details of every failure. The lab is torn down at the end, also on failure
# or interrupt.
#
# Environment: FTP_ALG_BIN (default target/release/ftp-alg), RUST_LOG (for the
# daemon; default debug here), LAB_LOG_DIR (default target/lab-logs),
# LAB_PCAP=1 (same as --pcap: tcpdump on the gateway's interfaces),
# FTP_ALG_ARGS (the daemon's arguments instead of the lab's own
# `run --config ...`, e.g. `run --config FILE` with max_pinholes_per_session
# = 3 to see case 22 fail; give such a file its own status_socket).
# Logs: target/lab-logs/<lab id>/ (alg-conformance.stderr = the daemon's log,
# conformance-<mode>.log = every segment the peers sent and received,
# conformance-<mode>.json = results with control-connection transcripts).
#
# Exit status: 0 every ftp-alg case as expected; 1 some ftp-alg case failed,
# INVALID drops were counted or the daemon died; 2 setup error.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib-lab.sh
source "$HERE/lib-lab.sh"

mode_arg=${CONFORMANCE_MODES:-alg,kernel}
only=
pcap=${LAB_PCAP:-0}
while (($#)); do
    case $1 in
    --modes | --mode)
        mode_arg=${2:?--modes needs a value}
        shift 2
        ;;
    --only)
        only=${2:?--only needs a value}
        shift 2
        ;;
    --pcap)
        pcap=1
        shift
        ;;
    -h | --help)
        sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
    *) lab_die "unknown argument '$1' (see --help)" ;;
    esac
done
IFS=',' read -r -a mode_list <<<"$mode_arg"
for m in "${mode_list[@]}"; do
    case $m in alg | kernel | none) ;; *) lab_die "unknown mode '$m' (alg|kernel|none)" ;; esac
done

export RUST_LOG=${RUST_LOG:-debug}
PY=(python3 "$HERE/conformance.py")
PY_PID=
LAB_OWNED=0

lab_names "cf$(printf '%06d' $(($$ % 1000000)))"

# shellcheck disable=SC2317  # invoked through the EXIT trap
cleanup() {
    local rc=$?
    # A second INT/TERM (e.g. `timeout` signals its child, then the whole
    # process group) must not cut the teardown short.
    trap - EXIT ERR
    trap '' INT TERM
    set +e
    if [[ -n $PY_PID ]] && kill -0 "$PY_PID" 2>/dev/null; then
        kill -TERM "$PY_PID" 2>/dev/null
        wait "$PY_PID" 2>/dev/null
    fi
    alg_stop >/dev/null 2>&1
    if [[ $LAB_OWNED == 1 ]]; then
        lab_log "tearing down lab $LAB_ID"
        lab_down || rc=2
    fi
    exit "$rc"
}
set -E
trap 'rc=$?; lab_log "setup error: command failed (status $rc) at line $LINENO: $BASH_COMMAND"; exit 2' ERR
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[[ $(id -u) -eq 0 ]] || lab_die "the conformance table needs root and network namespaces (run as root)"
command -v python3 >/dev/null || lab_die "python3 is needed for the scripted peers"
if [[ ",$mode_arg," == *",alg,"* ]]; then
    [[ -x $(alg_bin) ]] || lab_die "ftp-alg binary not found: $(alg_bin) (cargo build --release --locked, or set FTP_ALG_BIN)"
fi

t_start=$SECONDS
LAB_OWNED=1
lab_up
# Captures on the gateway's interfaces (target/lab-logs/<id>/gw-*.pcap).
if [[ $pcap == 1 ]]; then lab_pcap_start; fi

# The scripted server takes port 21: stop the lab's vsftpd instances (started
# by lab_up, recorded with their PIDs).
while read -r name pid; do
    case $name in vsftpd-*) stop_pid "$pid" 5 ;; esac
done <"$LAB_STATE/pids"
for lw in "$NS_SO:203.0.113.10:21" "$NS_SO:[2001:db8:2::10]:21" "$NS_SI:192.0.2.10:21"; do
    ns=${lw%%:*}
    addr=${lw#*:}
    for ((i = 0; i < 50; i++)); do
        nsx "$ns" ss -Hltn 2>/dev/null | awk '{print $4}' | grep -qxF "$addr" || break
        sleep 0.1
    done
    ((i < 50)) || lab_die "vsftpd still listens on $addr in $ns"
done
# The outside hosts route the inside prefixes to the gateway, so that a data
# connection to an address the gateway did not translate (or to a third
# party) is stopped by the gateway's firewall, not by a missing route.
for ns in "$NS_SO" "$NS_CO"; do
    nsx "$ns" ip route add 198.51.100.0/24 via 203.0.113.1
    nsx "$ns" ip route add 192.0.2.0/24 via 203.0.113.1
done

# reload_check PEER_LOG: SIGHUP must apply a policy change to live traffic.
# Case 14 (PORT to a port below 1024) was refused in the pass just run; with
# allow_privileged_ports = true loaded by SIGHUP into the same daemon, the
# same case must now get its data connection through. Prints reload=...
reload_check() {
    printf '[policy]\nallow_privileged_ports = true\n' >>"$ALG_CONFIG"
    sighup_and_wait 1 || return 0
    extra_case_passes "$1" reload 14 "after SIGHUP with allow_privileged_ports = true, case 14's data connection still failed" \
        --allow-privileged || return 0
    nat_override_check "$1"
}

# sighup_and_wait N: SIGHUP to the daemon, then wait (5 s at most) for its
# N-th "configuration reloaded"; prints reload=... and fails if it is late.
sighup_and_wait() {
    local i
    kill -HUP "$ALG_PID"
    for ((i = 0; i < 50; i++)); do
        (($(grep -c "configuration reloaded" "$LAB_LOGS/alg-conformance.stderr") >= $1)) && return 0
        sleep 0.1
    done
    echo "reload=no 'configuration reloaded' (number $1) within 5 s of SIGHUP"
    return 1
}

# extra_case_passes PEER_LOG TAG CASE WHY [ARGS..]: plays CASE once more (peer
# mode alg-TAG, results in conformance-alg-TAG.json); on failure prints
# reload=WHY (or the peers' exit status) and fails.
extra_case_passes() {
    local plog=$1 tag=$2 num=$3 why=$4 rc=0
    local json="$LAB_LOGS/conformance-alg-$tag.json"
    shift 4
    timeout -k 5 60 "${PY[@]}" run --ns-prefix "$LAB_PREFIX" --mode "alg-$tag" --only "$num" \
        --out "$json" --log "$plog" "$@" || rc=$?
    if ((rc != 0)); then
        echo "reload=the scripted peers exited with status $rc (case $num)"
        return 1
    fi
    if ! python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["cases"][0]["pass"] else 1)' "$json"; then
        echo "reload=$why ($json)"
        return 1
    fi
}

# nat_override_check PEER_LOG: a second SIGHUP adds [[nat_override]] for the
# gateway's outside interface; case 25 must see PORT carry that address and
# its data connection arrive through the outside host's stand-in NAT.
nat_override_check() {
    nsx "$NS_SO" iptables-nft -w 5 -t nat -A OUTPUT -d 203.0.113.77 -j DNAT --to-destination 203.0.113.254
    printf '[[nat_override]]\ninterface = "%s"\npublic_address = "203.0.113.77"\n' "$GW_OUT" >>"$ALG_CONFIG"
    sighup_and_wait 2 || return 0
    extra_case_passes "$1" override 25 "after SIGHUP with a [[nat_override]], case 25 failed" || return 0
    echo "reload=ok"
}

# run_mode MODE: one pass over every case.
run_mode() {
    local mode=$1 t0=$SECONDS
    local json="$LAB_LOGS/conformance-$mode.json" meta="$LAB_LOGS/conformance-$mode.meta"
    local plog="$LAB_LOGS/conformance-$mode.log"
    rm -f "$json" "$meta"
    : >"$plog"
    lab_log "=== mode $mode ==="
    lab_flush_conntrack
    lab_zero_counters
    case $mode in
    alg)
        lab_ruleset >"$LAB_LOGS/ruleset-before-alg.txt"
        if ! alg_start conformance; then
            echo "setup_error=ftp-alg did not become ready (log: $LAB_LOGS/alg-conformance.stderr)" >>"$meta"
            return 0
        fi
        ;;
    kernel) lab_kernel_helper on ;;
    none) ;;
    esac
    local args=(run --ns-prefix "$LAB_PREFIX" --mode "$mode" --out "$json" --log "$plog")
    [[ -z $only ]] || args+=(--only "$only")
    local rc=0
    timeout -k 5 200 "${PY[@]}" "${args[@]}" &
    PY_PID=$!
    wait "$PY_PID" || rc=$?
    PY_PID=
    ((rc == 0)) || echo "setup_error=the scripted peers exited with status $rc (log: $plog)" >>"$meta"
    if [[ $mode == alg ]] && [[ -z $only || ",$only," == *",14,"* ]]; then
        reload_check "$plog" >>"$meta"
    fi
    local f4 i4 f6 i6
    f4=$(invalid_count 4 FORWARD)
    i4=$(invalid_count 4 INPUT)
    f6=$(invalid_count 6 FORWARD)
    i6=$(invalid_count 6 INPUT)
    {
        echo "invalid_total=$((f4 + i4 + f6 + i6))"
        echo "invalid=INVALID drops on the gateway: v4 FORWARD $f4, v4 INPUT $i4, v6 FORWARD $f6, v6 INPUT $i6"
    } >>"$meta"
    case $mode in
    alg)
        local alive=yes
        kill -0 "$ALG_PID" 2>/dev/null || alive=no
        echo "alive=$alive" >>"$meta"
        nsx "$NS_GW" nft list table inet ftp_alg >"$LAB_LOGS/ftp_alg-table-after-conformance.txt" 2>&1 || true
        alg_stop
        echo "exit=$ALG_RC" >>"$meta"
        lab_ruleset >"$LAB_LOGS/ruleset-after-alg.txt"
        if cmp -s "$LAB_LOGS/ruleset-before-alg.txt" "$LAB_LOGS/ruleset-after-alg.txt"; then
            echo "ruleset=restored" >>"$meta"
        else
            echo "ruleset=NOT restored after SIGTERM (diff $LAB_LOGS/ruleset-{before,after}-alg.txt)" >>"$meta"
        fi
        ;;
    kernel) lab_kernel_helper off ;;
    esac
    echo "seconds=$((SECONDS - t0)) s" >>"$meta"
}

# ftp-alg last: should its exit leave rules behind, the reference modes
# have already run on a clean gateway.
for m in "${mode_list[@]}"; do
    [[ $m == alg ]] || run_mode "$m"
done
for m in "${mode_list[@]}"; do
    [[ $m != alg ]] || run_mode "$m"
done

results=()
for m in "${mode_list[@]}"; do results+=(--result "$m=$LAB_LOGS/conformance-$m.json"); done
table_args=("${results[@]}" --daemon-log "alg=$LAB_LOGS/alg-conformance.stderr")
[[ -z $only ]] || table_args+=(--partial)
rc=0
"${PY[@]}" table "${table_args[@]}" || rc=$?
echo
echo "logs: $LAB_LOGS (daemon: alg-conformance.stderr; peers: conformance-<mode>.log)"
echo "total time: $((SECONDS - t_start)) s"
if ((rc == 0)); then echo "RESULT: every ftp-alg case as expected"; else echo "RESULT: ftp-alg does not pass the conformance table"; fi
exit "$rc"
