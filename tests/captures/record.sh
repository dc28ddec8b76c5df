#!/usr/bin/env bash
# tests/captures/record.sh -- re-record the replay test captures (root).
#
#   flock /tmp/ftp-alg-lab.lock tests/captures/record.sh [OUTDIR [CASE...]]
#
# Builds a private lab (scripts/lib-lab.sh, namespaces fa-lab-rc<PID>-*),
# starts ftp-alg on the gateway (FTP_ALG_BIN, default target/debug/ftp-alg)
# with JSON logs, and for each case captures `tcpdump -i any` on the
# gateway (SLL2) while one client fetches small.bin (4 KiB). Writes
# CASE.pcap and CASE.alg.log (the daemon's log lines during that case) to
# OUTDIR (default tests/captures); all cases, or the CASEs named. The lab
# is removed at the end, also on failure.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=${1:-$HERE}
shift $(($# > 0 ? 1 : 0))
CASES=("$@")
export FTP_ALG_BIN=${FTP_ALG_BIN:-$REPO/target/debug/ftp-alg}
# shellcheck source=scripts/lib-lab.sh
source "$REPO/scripts/lib-lab.sh"
lab_names "rc$$"
cleanup() {
    local rc=$?
    set +e
    [[ -n ${DUMP_PID:-} ]] && stop_pid "$DUMP_PID" 3
    alg_stop >/dev/null 2>&1
    lab_down
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
lab_up
ALG_EXTRA_CONFIG=$'[log]\nformat = "json"\n' RUST_LOG=info alg_start replay
ERR="$LAB_LOGS/alg-replay.stderr"

# capture NAME NS CMD...: one client run, captured on the gateway.
capture() {
    local name=$1 ns=$2
    shift 2
    local before i
    before=$(wc -l <"$ERR")
    ip netns exec "$NS_GW" timeout 60 tcpdump -i any -n -U -s 0 -Z root \
        -w "$OUT/$name.pcap" tcp >"$LAB_LOGS/tcpdump-$name.out" 2>&1 &
    DUMP_PID=$!
    lab_record "tcpdump-$name" "$DUMP_PID"
    for ((i = 0; i < 50; i++)); do
        grep -q listening "$LAB_LOGS/tcpdump-$name.out" && break
        sleep 0.1
    done
    nsx "$ns" env HOME="$LAB_STATE/home" timeout -k 2 20 "$@" </dev/null
    sleep 1 # the last FIN/ACK, and the daemon's log lines
    stop_pid "$DUMP_PID" 3
    wait "$DUMP_PID" 2>/dev/null || true
    DUMP_PID=
    tail -n +"$((before + 1))" "$ERR" >"$OUT/$name.alg.log"
    lab_log "$name: $(stat -c %s "$OUT/$name.pcap") bytes, $(wc -l <"$OUT/$name.alg.log") log lines"
}

curl=(curl -q -sS --connect-timeout 3 -m 15 -o /dev/null)
case_curl-epsv() { capture curl-epsv "$NS_CL" "${curl[@]}" ftp://203.0.113.10/small.bin; }
case_curl-port-plus1() { capture curl-port-plus1 "$NS_CL" "${curl[@]}" -P - --disable-eprt ftp://203.0.113.10/small.bin; }
case_curl-port-minus3() { capture curl-port-minus3 "$NS_CS" "${curl[@]}" -P - --disable-eprt ftp://203.0.113.10/small.bin; }
case_lftp-pasv-dnat() {
    capture lftp-pasv-dnat "$NS_CO" lftp -c "set net:timeout 5; set net:max-retries 1; set ftp:passive-mode on; \
set ftp:prefer-epsv no; set ftp:ssl-allow no; set xfer:clobber yes; set cmd:interactive no; \
open -u anonymous,lab@ ftp://203.0.113.1; get small.bin -o /dev/null"
}
case_ftplib-epsv-v6() {
    capture ftplib-epsv-v6 "$NS_CL" python3 -c '
import ftplib, io
f = ftplib.FTP("2001:db8:2::10", timeout=10)
f.login()
f.retrbinary("RETR small.bin", io.BytesIO().write)
f.quit()'
}
# Refusals: a PORT to a privileged port, a PORT naming another host (the
# bounce of RFC 2577), then a passive download that works.
case_ftplib-refusals() {
    capture ftplib-refusals "$NS_CL" python3 -c '
import ftplib, io
f = ftplib.FTP("203.0.113.10", timeout=10)
f.login()
for port in ("PORT 198,51,100,2,0,25", "PORT 198,51,100,99,195,80"):
    try:
        f.sendcmd(port)
    except ftplib.error_perm:
        pass # vsftpd refuses what ftp-alg left untranslated
f.set_pasv(True)
f.retrbinary("RETR small.bin", io.BytesIO().write)
f.quit()'
}
ALL=(curl-epsv curl-port-plus1 curl-port-minus3 lftp-pasv-dnat ftplib-epsv-v6 ftplib-refusals)
for c in "${CASES[@]:-${ALL[@]}}"; do "case_$c"; done
