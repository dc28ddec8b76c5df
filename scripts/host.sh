#!/usr/bin/env bash
# scripts/host.sh -- host mode (issue 11): ftp-alg on the FTP server or
# client host itself, whose INPUT is `policy drop` (run as root).
#
#   scripts/host.sh [--modes alg,kernel,none] [--segments srv,ch,nat,gs]
#                                                 (default: all of them)
#
# Builds the host lab of lib-lab.sh (host_lab_up: a server host srv with
# vsftpd and proftpd, a client host ch, a server host sn behind a 1:1 NAT it
# cannot see, a gateway gs that is an FTP server too) and runs real curl and
# lftp transfers in every mode, downloads and uploads, sha256 compared, in
# four segments, each with its own host's firewall and daemon:
#
#   srv  clients in cl -> vsftpd and proftpd on srv, IPv4 and IPv6;
#        `ftp-alg run --paths local` on srv
#   ch   curl/lftp on the client host ch -> vsftpd on os, IPv4 and IPv6;
#        `ftp-alg run --paths local` on ch
#   nat  cl -> 203.0.113.60, which rt maps 1:1 to sn (192.0.2.10); sn runs
#        ftp-alg with paths = ["local"] and a [[nat_override]] of its eth0
#        to 203.0.113.60: the 227 must be rewritten (a length change)
#   gs   cl -> gs's own vsftpd (local path) and cl -> gs's port forward to
#        gi (forward path); `ftp-alg run --paths forward,local` on gs
#
# Modes: alg (ftp-alg, every transfer must pass, 0 INVALID in the host,
# exit 0 on SIGTERM with the ruleset as before); none (negative control:
# passive transfers to a local server fail, active ones pass while OUTPUT
# accepts; active transfers from the client host fail, passive ones pass;
# forwarded ones all fail); kernel (the reference: the kernel's helper
# attached to the local control connections plus a RELATED accept rule;
# recorded, not judged). In alg and kernel the scope checks run too: a
# third host cannot use a pinhole meant for the client, a used pinhole
# admits nothing more, nothing announced is reachable after QUIT; and the
# 227 of the NAT case must carry the public address.
#
# Prints one line per transfer and check, a table, and one
# "host summary MODE: ..." line per mode. Exit status: 0 as expected, 1 an
# expectation was not met, 2 setup error.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/lib-lab.sh
source "$HERE/lib-lab.sh"
# shellcheck source=scripts/lib-servers.sh
source "$HERE/lib-servers.sh"

MODES=(alg kernel none)
SEGMENTS=(srv ch nat gs)
while (($#)); do
    case $1 in
    --modes)
        IFS=, read -r -a MODES <<<"$2"
        shift 2
        ;;
    --segments)
        IFS=, read -r -a SEGMENTS <<<"$2"
        shift 2
        ;;
    *) lab_die "unknown argument '$1' (--modes alg,none,kernel --segments srv,ch,nat,gs)" ;;
    esac
done
for m in "${MODES[@]}"; do [[ $m =~ ^(alg|none|kernel)$ ]] || lab_die "unknown mode '$m'"; done
for m in "${SEGMENTS[@]}"; do [[ $m =~ ^(srv|ch|nat|gs)$ ]] || lab_die "unknown segment '$m'"; done
CLIENTS=(curl-epsv curl-pasv curl-eprt curl-port lftp-pasv lftp-port)

# seg_info SEG: S_NS (the host that runs ftp-alg), S_ROLE (for the firewall
# and the kernel helper), S_PATHS, S_ARGS (ftp-alg's command line),
# S_CONFIG (TOML), S_CHAINS (where INVALID is counted).
seg_info() {
    S_CONFIG= S_ARGS="--paths local" S_CHAINS="INPUT"
    case $1 in
    srv) S_NS=$NS_SRV S_ROLE=server S_PATHS=(hv4 hv6 hp4 hp6) ;;
    ch) S_NS=$NS_CH S_ROLE=client S_PATHS=(ch4 ch6) ;;
    nat)
        # The config key this time (the others use the flag).
        S_NS=$NS_SN S_ROLE=server S_PATHS=(nat4) S_ARGS=
        S_CONFIG=$'paths = ["local"]\n[[nat_override]]\ninterface = "eth0"\npublic_address = "203.0.113.60"\n'
        ;;
    gs) S_NS=$NS_GS S_ROLE=gateway S_PATHS=(gl4 gf4) S_ARGS="--paths forward,local" S_CHAINS="INPUT FORWARD" ;;
    esac
}

is_passive() { [[ $1 == curl-epsv || $1 == curl-pasv* || $1 == lftp-pasv ]]; }

# host_expect MODE WHAT PATH CLIENT -> pass|fail|any (EXPECTATION_FN).
host_expect() {
    local mode=$1 path=$3 client=$4
    case $mode in
    alg) echo pass ;;
    kernel) echo any ;;
    none)
        case $path in
        gf4) echo fail ;; # forwarded: FORWARD drops every data connection
        ch*) if is_passive "$client"; then echo pass; else echo fail; fi ;;
        *) if is_passive "$client"; then echo fail; else echo pass; fi ;;
        esac
        ;;
    esac
}
EXPECTATION_FN=host_expect

# seg_rows MODE: MATRIX_ROWS of the segment (S_PATHS set by seg_info).
# Mode none moves downloads only: its blocked data connections cost 1-3 s
# each (the clients' timeouts), and an upload's data connection is opened
# the same way as a download's.
seg_rows() {
    MATRIX_ROWS=()
    local p c w whats=(download upload)
    [[ $1 == none ]] && whats=(download)
    for p in "${S_PATHS[@]}"; do
        local clients=("${CLIENTS[@]}")
        # curl ignores the 227's address unless told; in the NAT case the
        # address is the point.
        [[ $p == nat4 ]] && clients+=(curl-pasv-ip)
        for c in "${clients[@]}"; do
            for w in "${whats[@]}"; do MATRIX_ROWS+=("$p|$c|$w"); done
        done
    done
}

SCOPE_PID=
scope_cleanup() {
    if [[ -n $SCOPE_PID ]]; then stop_pid "$SCOPE_PID" 2 >/dev/null 2>&1 || true; fi
}
host_teardown() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    alg_stop >/dev/null 2>&1
    scope_cleanup
    lab_log "tearing down host lab $LAB_ID"
    host_lab_down || rc=2
    exit "$rc"
}

host_lab_names "h$(($$ % 100000))"
trap host_teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [[ " ${MODES[*]} " == *" alg "* ]]; then
    [[ -x $(alg_bin) ]] || lab_die "ftp-alg binary not found: $(alg_bin) (cargo build --release, or set FTP_ALG_BIN)"
fi
host_lab_up
host_lab_servers
LAB_RUN_TAG=host$$
RES_DIR=$LAB_LOGS/host
mkdir -p "$RES_DIR"

declare -A CHECK=() CHECK_SEEN=()
CHECK_ROWS=() # each check's name once, in order (the modes share them)
# check MODE NAME ok|FAIL|VALUE NOTE: one scope or integrity check's
# result (any other VALUE is recorded, not judged).
check() {
    [[ -n ${CHECK_SEEN[$2]:-} ]] || CHECK_ROWS+=("$2")
    CHECK_SEEN[$2]=1
    CHECK["$1|$2"]=$3
    printf '[host] check %-6s %-22s %-4s %s\n' "$1" "$2" "$3" "$4" >&2
}

# probe NS HOST PORT: connected|refused|timeout from NS.
probe() {
    nsx "$1" timeout 10 python3 "$HERE/ftp_peers.py" probe --host "$2" --port "$3" --timeout 1.5 2>&1 | tail -n 1
}

# pinhole_listed PORT: true while ftp-alg's table in S_NS holds an element
# for destination port PORT.
pinhole_listed() {
    # A listing can fail while the table changes under it (a pinhole
    # consumed or added at that moment): only a listing that worked counts,
    # and the last one is kept for the log.
    local i
    for ((i = 0; i < 5; i++)); do
        nsx "$S_NS" nft list table inet ftp_alg >"$LAB_STATE/last-listing" 2>&1 && break
        sleep 0.1
    done
    grep -qE "\. $1( |,|$)" "$LAB_STATE/last-listing"
}

# scope MODE NAME NS HOST CMD PROBE_NS PROBE_HOST AGAIN_NS: one scripted
# session (ftp_peers.py scope) from NS to HOST announcing with CMD; a
# third host PROBE_NS probes the announced port on PROBE_HOST before the
# transfer (must time out), AGAIN_NS probes it after the transfer (once:
# must time out) and the second announcement after QUIT (must time out, and
# ftp-alg's table must no longer list it).
scope() {
    local mode=$1 name=$2 ns=$3 host=$4 cmd=$5 pns=$6 phost=$7 ans=$8
    local dir="$LAB_STATE/scope-$mode-$name" out="$RES_DIR/scope-$mode-$name.out" i
    rm -rf "$dir"
    mkdir -p "$dir"
    nsx "$ns" timeout -k 2 60 python3 "$HERE/ftp_peers.py" scope --host "$host" --cmd "$cmd" --sync "$dir" \
        </dev/null >"$out" 2>&1 &
    SCOPE_PID=$!
    lab_record scope "$SCOPE_PID"
    waitfile() {
        for ((i = 0; i < 150; i++)); do
            [[ -e $dir/$1 ]] && return 0
            kill -0 "$SCOPE_PID" 2>/dev/null || break
            sleep 0.1
        done
        return 1
    }
    local port p1 p2 p3 announced
    if ! waitfile announced; then
        check "$mode" "$name" FAIL "no announcement: $(tail -n 1 "$out")"
        stop_pid "$SCOPE_PID" 2
        SCOPE_PID=
        return
    fi
    announced=$(cat "$dir/announced")
    port=$(awk '{print $2}' <<<"$announced")
    # The positive control of the listing checked after QUIT: while
    # announced, ftp-alg's table must list the pinhole.
    local held=yes
    if [[ $mode == alg ]] && ! pinhole_listed "$port"; then
        held=no
        cp "$LAB_STATE/last-listing" "$RES_DIR/scope-$mode-$name.listing"
    fi
    p1=$(probe "$pns" "$phost" "$port")
    touch "$dir/go1"
    waitfile used || true
    local moved=no
    grep -q "^sha256 $(sha "$LAB_STATE/data/file.bin")" "$out" && moved=yes
    p2=$(probe "$ans" "$phost" "$port")
    touch "$dir/go2"
    local port2=none listed=no
    if waitfile quit; then
        port2=$(awk '{print $2}' "$dir/quit")
        # ftp-alg removes the session's pinholes when it sees the QUIT's
        # close; give it a moment.
        for ((i = 0; i < 20; i++)); do
            listed=no
            [[ $mode == alg ]] && pinhole_listed "$port2" && listed=yes
            [[ $listed == no ]] && break
            sleep 0.1
        done
        p3=$(probe "$ans" "$phost" "$port2")
    else
        p3="no QUIT: $(tail -n 1 "$out")"
    fi
    touch "$dir/go3"
    wait "$SCOPE_PID" 2>/dev/null || true
    SCOPE_PID=
    local verdict=ok
    [[ $held == yes && $p1 == timeout && $moved == yes && $p2 == timeout && $p3 == timeout && $listed == no ]] || verdict=FAIL
    local notes=
    [[ $held == no ]] && notes+="; the pinhole was NOT listed in ftp-alg's table while announced"
    [[ $listed == yes ]] && notes+="; the second pinhole was STILL listed 2 s after QUIT"
    check "$mode" "$name" "$verdict" "announced '$(cut -d' ' -f3- <<<"$announced")'; third host: $p1; transfer: $moved; used port again: $p2; after QUIT: $p3$notes"
}

# seg_checks MODE SEG: the scope checks of a segment.
seg_checks() {
    local mode=$1
    case $2 in
    srv)
        scope "$mode" srv-pasv4-scope "$NS_CL" 203.0.113.10 PASV "$NS_TH" 203.0.113.10 "$NS_CL"
        scope "$mode" srv-epsv6-scope "$NS_CL" 2001:db8:2::11 EPSV "$NS_TH" 2001:db8:2::11 "$NS_CL"
        ;;
    ch)
        scope "$mode" ch-port4-scope "$NS_CH" 203.0.113.50 PORT "$NS_TH" 203.0.113.40 "$NS_OS"
        scope "$mode" ch-eprt6-scope "$NS_CH" 2001:db8:2::50 EPRT "$NS_TH" 2001:db8:2::40 "$NS_OS"
        ;;
    nat)
        # The client connects to the 227's address as written: only the
        # public address works from cl.
        scope "$mode" nat-pasv-scope "$NS_CL" 203.0.113.60 PASV "$NS_TH" 203.0.113.60 "$NS_CL"
        local a
        a=$(cut -d' ' -f3- "$LAB_STATE/scope-$mode-nat-pasv-scope/announced" 2>/dev/null || true)
        if [[ $a == *"203,0,113,60"* ]]; then
            check "$mode" nat-227-public ok "$a"
        else
            check "$mode" nat-227-public FAIL "${a:-no 227}"
        fi
        ;;
    esac
}

# invalid_in_host: INVALID drops counted in the segment's host (S_NS).
invalid_in_host() {
    local FW_NS=$S_NS c n=0
    for c in $S_CHAINS; do n=$((n + $(invalid_count 4 "$c") + $(invalid_count 6 "$c"))); done
    echo "$n"
}

# ct_invalid: conntrack's own INVALID count in S_NS (all CPUs, every hook,
# since the namespace was made; compare two readings).
# shellcheck disable=SC2016 # awk's own $ fields
ct_invalid() {
    nsx "$S_NS" conntrack -S 2>/dev/null |
        awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^invalid=/) { sub(/^invalid=/, "", $i); s += $i } } END { print s + 0 }'
}

# seg_run MODE SEG: the segment's transfers and checks in one mode.
seg_run() {
    local mode=$1 seg=$2 FW_NS
    seg_info "$seg"
    FW_NS=$S_NS
    seg_rows "$mode"
    lab_log "=== mode $mode, segment $seg (${S_NS#"$LAB_PREFIX"}) ==="
    lab_flush_conntrack
    lab_zero_counters
    local before after ct0
    ct0=$(ct_invalid)
    before=$(lab_ruleset)
    case $mode in
    alg)
        local ALG_EXTRA_CONFIG=$S_CONFIG ALG_RUN_ARGS=$S_ARGS
        if ! alg_start "$mode-$seg"; then
            check "$mode" "$seg-daemon" FAIL "ftp-alg did not become ready (log: $LAB_LOGS/alg-$mode-$seg.stderr)"
            return 0
        fi
        ;;
    kernel) host_kernel_helper "$S_NS" "$S_ROLE" on ;;
    esac
    matrix_run_cases "$mode"
    BAD[$mode]=$((${BAD[$mode]:-0} + ${MODE_BAD[$mode]}))
    [[ $mode != none ]] && seg_checks "$mode" "$seg"
    local inv ct
    inv=$(invalid_in_host)
    ct=$(($(ct_invalid) - ct0))
    case $mode in
    alg)
        local alive=yes
        kill -0 "$ALG_PID" 2>/dev/null || alive=no
        nsx "$S_NS" nft list table inet ftp_alg >"$LAB_LOGS/ftp_alg-table-$seg.txt" 2>&1 || true
        alg_stop
        after=$(lab_ruleset)
        local ok=ok note="alive after the transfers: $alive; exit status after SIGTERM: $ALG_RC"
        [[ $alive == yes && $ALG_RC == 0 ]] || ok=FAIL
        check "$mode" "$seg-daemon" "$ok" "$note"
        if [[ $before == "$after" ]]; then
            check "$mode" "$seg-ruleset" ok "identical after SIGTERM"
        else
            check "$mode" "$seg-ruleset" FAIL "differs after SIGTERM: $(diff <(echo "$before") <(echo "$after") | head -n 6 | tr '\n' ' ')"
        fi
        local v=FAIL
        ((inv == 0 && ct == 0)) && v=ok
        check "$mode" "$seg-invalid" "$v" "INVALID in ${S_NS#"$LAB_PREFIX"}: $inv dropped by the firewall, $ct counted by conntrack -S"
        ;;
    kernel)
        host_kernel_helper "$S_NS" "$S_ROLE" off
        check "$mode" "$seg-invalid" "$inv/$ct" "INVALID in ${S_NS#"$LAB_PREFIX"}: $inv dropped by the firewall, $ct counted by conntrack -S (reference)"
        ;;
    none) check "$mode" "$seg-invalid" "$inv/$ct" "INVALID in ${S_NS#"$LAB_PREFIX"}: $inv dropped by the firewall, $ct counted by conntrack -S (no ALG)" ;;
    esac
}

# Every row of every segment, in order, for the table.
ALL_ROWS=()
for seg in "${SEGMENTS[@]}"; do
    seg_info "$seg"
    seg_rows alg
    ALL_ROWS+=("${MATRIX_ROWS[@]}")
done

T_SETUP=$SECONDS
declare -A BAD=() MODE_T=()
for mode in "${MODES[@]}"; do
    t0=$SECONDS
    for seg in "${SEGMENTS[@]}"; do seg_run "$mode" "$seg"; done
    MODE_T[$mode]=$((SECONDS - t0))
done

# ---- report ----
printf '\n%-5s %-13s %-9s' path client transfer
for m in "${MODES[@]}"; do printf ' %-8s' "$m"; done
printf '\n'
for row in "${ALL_ROWS[@]}"; do
    IFS='|' read -r path client what <<<"$row"
    printf '%-5s %-13s %-9s' "$path" "$client" "$what"
    for m in "${MODES[@]}"; do
        got=${RES["$m|$row"]:-"-"} cell=$got
        [[ $got == fail ]] && cell=FAIL
        exp=$(host_expect "$m" "$what" "$path" "$client")
        [[ $got != "-" && $exp != any && $exp != "$got" ]] && cell="$cell(!)"
        printf ' %-8s' "$cell"
    done
    printf '\n'
done
printf '\n%-24s' check
for m in "${MODES[@]}"; do printf ' %-8s' "$m"; done
printf '\n'
for name in "${CHECK_ROWS[@]}"; do
    printf '%-24s' "$name"
    for m in "${MODES[@]}"; do printf ' %-8s' "${CHECK["$m|$name"]:-"-"}"; done
    printf '\n'
done
printf '\n(!) = differs from the expectation: alg -> every transfer passes; none -> passive to a local\n'
printf '      server fails, active passes (OUTPUT accepts); active from the client host fails, passive passes;\n'
printf '      forwarded (gf4) fails; kernel (the reference helper in host mode) -> recorded only.\n'
for seg in "${SEGMENTS[@]}"; do
    seg_info "$seg"
    for p in "${S_PATHS[@]}"; do
        path_info "$p"
        printf '  %-5s %s\n' "$p" "$P_DESC"
    done
done
# The same as a Markdown table (README's host mode figures): one row per
# path and client, a download and an upload per cell.
md_cell() { # MODE PATH CLIENT
    local d=${RES["$1|$2|$3|download"]:-} u=${RES["$1|$2|$3|upload"]:-}
    if [[ -z $d && -z $u ]]; then
        echo "-"
    elif [[ -z $u || $d == "$u" ]]; then
        echo "${d:-$u}"
    else
        echo "down $d, up $u"
    fi
}
{
    printf '| path | client |'
    for m in "${MODES[@]}"; do printf ' %s |' "$m"; done
    printf '\n|---|---|'
    for m in "${MODES[@]}"; do printf -- '---|'; done
    printf '\n'
    seen=
    for row in "${ALL_ROWS[@]}"; do
        IFS='|' read -r path client what <<<"$row"
        [[ $seen == *" $path|$client "* ]] && continue
        seen+=" $path|$client "
        printf '| %s | %s |' "$path" "$client"
        for m in "${MODES[@]}"; do printf ' %s |' "$(md_cell "$m" "$path" "$client")"; done
        printf '\n'
    done
    for name in "${CHECK_ROWS[@]}"; do
        printf '| check | %s |' "$name"
        for m in "${MODES[@]}"; do printf ' %s |' "${CHECK["$m|$name"]:-"-"}"; done
        printf '\n'
    done
} >"$RES_DIR/host-table.md"
printf '\nMarkdown table: %s\n' "$RES_DIR/host-table.md"
printf 'host lab: %d s in all (setup and servers %d s)\n' "$SECONDS" "$T_SETUP"
rc=0
for m in "${MODES[@]}"; do
    n=0 pass=0 cn=0 cok=0
    for row in "${ALL_ROWS[@]}"; do
        [[ -n ${RES["$m|$row"]:-} ]] || continue
        n=$((n + 1))
        [[ ${RES["$m|$row"]} == pass ]] && pass=$((pass + 1))
    done
    for name in "${CHECK_ROWS[@]}"; do
        case ${CHECK["$m|$name"]:-} in
        ok) cn=$((cn + 1)) cok=$((cok + 1)) ;;
        FAIL) cn=$((cn + 1)) ;;
        esac
    done
    verdict=OK
    if [[ $m == kernel ]]; then
        verdict="reference only"
    elif ((${BAD[$m]:-0} != 0 || cok != cn)); then
        verdict="NOT AS EXPECTED (${BAD[$m]:-0} transfers, $((cn - cok)) checks)"
        rc=1
    fi
    printf 'host summary %s: %d/%d transfers passed, %d unexpected; checks %d/%d ok; %d s -- %s\n' \
        "$m" "$pass" "$n" "${BAD[$m]:-0}" "$cok" "$cn" "${MODE_T[$m]}" "$verdict"
done
exit "$rc"
