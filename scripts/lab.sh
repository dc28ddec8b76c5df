#!/usr/bin/env bash
# scripts/lab.sh -- network-namespace lab for ftp-alg (run as root).
#
#   scripts/lab.sh up     [--id ID]          build a lab and leave it running
#   scripts/lab.sh down   [--id ID]          tear a lab down (namespaces, processes, temp files)
#   scripts/lab.sh matrix [--mode M[,M..]] [--id ID] [--pcap]
#                                            run the transfer matrix; modes:
#       alg     ftp-alg runs on the gateway: every transfer must pass, 0 INVALID
#               drops, daemon exits 0 on SIGTERM and the ruleset is restored
#       alg-files  as alg, but the admin manages the rules: the lab loads the
#               iptables-nft files of deploy/rules/ and ftp-alg runs with
#               install_rules = false (and must leave those rules alone)
#       alg-native as alg, but the forward filter is a native nftables chain
#               and ftp-alg puts its accept rule there
#               (accept_rule = "nft inet lab_fw forward")
#       none    no ALG at all: every data transfer must fail (negative control)
#       kernel  reference: the kernel's FTP helper attached (report only)
#     Without --id, matrix builds a private lab and removes it at the end (also
#     on failure or interrupt). With --id it uses a lab made by `up`.
#   scripts/lab.sh exec   [--id ID] NS CMD.. run CMD in namespace NS (gw sw cl cs so co si)
#   scripts/lab.sh status [--id ID]          show namespaces, rules and listeners
#
# Environment: FTP_ALG_BIN (default target/release/ftp-alg), FTP_ALG_ARGS
# (default "run"), RUST_LOG (passed to the daemon; default info), LAB_LOG_DIR
# (default target/lab-logs), LAB_PCAP=1 (same as --pcap), LAB_ALG_CONFIG (TOML
# lines added to the daemon's configuration in the alg modes, e.g.
# $'queues = 3\n').
#
# Exit status: 0 all as expected, 1 some result differs from the expectation,
# 2 setup error.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib-lab.sh
source "$HERE/lib-lab.sh"

usage() {
    sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

cmd=${1:-}
[[ -n $cmd ]] || usage
shift

id=${LAB_ID:-}
mode_arg=alg
pcap=${LAB_PCAP:-0}
rest=()
while (($#)); do
    case $1 in
    --id)
        id=${2:?--id needs a value}
        shift 2
        ;;
    --mode)
        mode_arg=${2:?--mode needs a value}
        shift 2
        ;;
    --mode=*)
        mode_arg=${1#--mode=}
        shift
        ;;
    --pcap)
        pcap=1
        shift
        ;;
    -h | --help) usage ;;
    *)
        rest=("$@")
        break
        ;;
    esac
done

LAB_OWNED=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM ERR
    set +e
    # Undo what a matrix run changed on a lab it does not own.
    alg_stop >/dev/null 2>&1
    if [[ ${KERNEL_HELPER_ON:-0} == 1 ]]; then lab_kernel_helper off >/dev/null 2>&1; fi
    if [[ ${PCAP_ON:-0} == 1 && $LAB_OWNED != 1 ]]; then lab_pcap_stop; fi
    if [[ $LAB_OWNED == 1 ]]; then
        lab_log "tearing down lab $LAB_ID"
        lab_down || rc=2
    fi
    exit "$rc"
}
set -E
trap 'rc=$?; lab_log "setup error: command failed (status $rc) at line $LINENO: $BASH_COMMAND"; exit 2' ERR

case $cmd in
up)
    lab_names "${id:-dev}"
    LAB_OWNED=1
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    lab_up
    if [[ $pcap == 1 ]]; then lab_pcap_start; fi
    LAB_OWNED=0
    trap - EXIT INT TERM
    echo "lab $LAB_ID is up; namespaces: ${LAB_ALL_NS[*]}"
    echo "  scripts/lab.sh exec --id $LAB_ID cl curl ftp://203.0.113.10/file.bin -o /dev/null"
    echo "  scripts/lab.sh matrix --id $LAB_ID --mode none,kernel,alg"
    echo "  scripts/lab.sh down --id $LAB_ID"
    ;;
down)
    lab_names "${id:-dev}"
    [[ $(id -u) -eq 0 ]] || lab_die "needs root"
    lab_down
    echo "lab $LAB_ID is down"
    ;;
exec)
    lab_names "${id:-dev}"
    ((${#rest[@]} >= 2)) || lab_die "usage: lab.sh exec [--id ID] NS CMD..."
    short=${rest[0]}
    ns="${LAB_PREFIX}$short"
    [[ -e /run/netns/$ns ]] || lab_die "no namespace $ns (is lab $LAB_ID up?)"
    exec ip netns exec "$ns" "${rest[@]:1}"
    ;;
status)
    lab_names "${id:-dev}"
    ip netns list | grep -F "$LAB_PREFIX" || echo "no namespaces of lab $LAB_ID"
    if lab_exists; then
        echo "--- gw ruleset"
        lab_ruleset
        for ns in "$NS_SO" "$NS_SI"; do
            echo "--- listeners in $ns"
            nsx "$ns" ss -ltn
        done
    fi
    ;;
matrix)
    IFS=',' read -r -a mode_list <<<"$mode_arg"
    for m in "${mode_list[@]}"; do
        case $m in alg | alg-files | alg-native | none | kernel) ;; *) lab_die "unknown mode '$m' (alg|alg-files|alg-native|none|kernel)" ;; esac
    done
    if [[ -n $id ]]; then
        lab_names "$id"
        lab_exists || lab_die "lab $id is not up"
        [[ -d $LAB_STATE ]] || lab_die "lab $id has no state dir $LAB_STATE"
        mkdir -p "$LAB_LOGS"
    else
        lab_names "$$"
        LAB_OWNED=1
        trap cleanup EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        lab_up
    fi
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    if [[ $pcap == 1 ]]; then lab_pcap_start; fi
    if [[ " ${mode_list[*]} " == *" alg"* ]]; then
        [[ -x $(alg_bin) ]] || lab_die "ftp-alg binary not found: $(alg_bin) (cargo build --release, or set FTP_ALG_BIN)"
    fi
    LAB_RUN_TAG=$(date +%s)$RANDOM
    matrix_rows
    setup_err=0
    for m in "${mode_list[@]}"; do
        matrix_mode "$m"
        [[ ${MODE_BAD[$m]:-0} == setup ]] && setup_err=1
    done
    rc=0
    matrix_report "${mode_list[@]}" || rc=1
    echo "logs: $LAB_LOGS"
    if ((setup_err)); then
        echo "SETUP ERROR (see above)"
        exit 2
    fi
    if ((rc)); then echo "RESULT: some results differ from the expectation"; else echo "RESULT: all as expected"; fi
    exit "$rc"
    ;;
*) usage ;;
esac
