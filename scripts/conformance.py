#!/usr/bin/env python3
"""scripts/conformance.py -- scripted FTP peers for the conformance table.

Driven by scripts/conformance.sh, which builds the lab (scripts/lib-lab.sh),
starts ftp-alg or attaches the kernel helper, and calls

    conformance.py run --ns-prefix fa-lab-ID- --mode MODE --out FILE.json
    conformance.py table --result alg=FILE.json --result kernel=FILE.json ...

`run` plays both FTP peers of every case. One process, one thread: every
socket is created inside its own network namespace (setns(2) around
socket(2); a socket stays in the namespace it was created in), so the
scripted client and server really sit on both sides of the gateway, and the
order of what each side sends is exact and deterministic:

- the scripted server listens on port 21 in the server namespace (so:
  203.0.113.10 and 2001:db8:2::10; si: 192.0.2.10, reached as 203.0.113.1
  through the gateway's DNAT), sends the greeting and the scripted replies,
  and records every byte it receives on the control connection;
- the scripted client (namespaces cl, cs, co) sends the scripted segments:
  TCP_NODELAY (Nagle on where a step says `nagle = true`), one send() per
  segment, the table's `gap` (0.08 s) between them (the lab's veths have
  GRO/GSO/TSO off, so each send is one segment);
- a data connection goes where the far side was TOLD: in active mode the
  client listens on the port it announces and the server connects to the
  address/port it received (after the gateway's rewrite); in passive mode the
  server listens on the port it announces and the client connects to the
  address/port it received. It succeeds if a 1 KiB payload with a known
  sha256 crosses it within DATA_TIMEOUT seconds. Where nothing may be
  opened, the case also probes where a (wrong) pinhole would be: the public
  address the gateway would have put into the line.

The cases are data: proto/tests/conformance/cases.toml (read and expanded by
scripts/conformance_table.py; the same table is replayed through the engine
without root by proto/tests/conformance/). Its paths name the lab's
namespaces and addresses; `play` below interprets a case's actions with the
peer machinery here. Every case (except the one about the first line, case
4) logs in first (USER/331, PASS/230), so that the line under test is not
the first line of the connection: the kernel helper never parses that one,
and it would mask what each case is about. Every case ends with a NOOP/200
round trip and checks the exact bytes each far side received at every step.
Case 23 also exchanges raw bytes that are not lines (fake TLS 1.2 records: a
real record header, opaque bodies; nothing is encrypted), checked byte for
byte; PORT and 227 lines are read from after the last such bytes. Python 3
standard library only.
"""

import argparse
import ctypes
import errno
import hashlib
import json
import os
import re
import select
import socket
import struct
import sys
import time

import conformance_table as table

CLONE_NEWNET = 0x40000000
CTRL_TIMEOUT = 3.0  # seconds to wait for an expected control line
DATA_TIMEOUT = 3.0  # seconds for a data connection to carry the payload
CLOSE_TIMEOUT = 2.0

PAYLOAD = hashlib.sha256(b"ftp-alg conformance payload").digest() * 32  # 1 KiB
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()

TABLE = table.load()
CASES = [c for c in TABLE["case"] if not c.get("extra")]
# Run only on request (--only), by conformance.sh after a SIGHUP that loads
# the configuration they need; not part of the table.
EXTRA_CASES = [c for c in TABLE["case"] if c.get("extra")]

# client path -> (client ns, family, server ns, server listen addr, address
# the client dials, address the server should see as the peer), from the
# table's paths (the lab's addresses, scripts/lib-lab.sh).
PATHS = {
    name: (p["client_ns"], socket.AF_INET6 if ":" in p["client"] else socket.AF_INET,
           p["server_ns"], p["server_real"], p["server"], p["client_public"])
    for name, p in TABLE["paths"].items()
}

MODE_INDEX = {"alg": 0, "kernel": 1, "none": 2, "alg-reload": 4, "alg-override": 3}

LOG = None  # detailed log file


def log(msg):
    line = f"{time.strftime('%H:%M:%S')} {msg}"
    if LOG:
        LOG.write(line + "\n")
        LOG.flush()


def show(b):
    """Bytes as a readable Python-style literal without the b''."""
    return repr(bytes(b))[2:-1]


def short(b, n=60):
    s = show(b)
    return s if len(s) <= n else s[: n - 3] + "..."


def raw_desc(b):
    """Raw bytes in a log line: length, sha256 prefix and the TLS record
    headers found in them."""
    b = bytes(b)
    recs = []
    i = 0
    while i + 5 <= len(b) and b[i] in range(20, 25):
        n = b[i + 3] * 256 + b[i + 4]
        recs.append(f"type {b[i]} len {n}")
        i += 5 + n
    what = f" (TLS records: {', '.join(recs)})" if recs and i == len(b) else ""
    return f"[{len(b)} bytes sha256 {hashlib.sha256(b).hexdigest()[:12]}..{what}]"


# ---------------------------------------------------------------- netns ---

_libc = ctypes.CDLL(None, use_errno=True)


class Netns:
    """Creates sockets inside the lab's namespaces (setns around socket)."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        self.fds = {}

    def fd(self, short_name):
        if short_name not in self.fds:
            path = f"/run/netns/{self.prefix}{short_name}"
            self.fds[short_name] = os.open(path, os.O_RDONLY)
        return self.fds[short_name]

    def _setns(self, fd):
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, f"setns: {os.strerror(e)}")

    def socket(self, ns, family):
        self._setns(self.fd(ns))
        try:
            return socket.socket(family, socket.SOCK_STREAM)
        finally:
            self._setns(self.home)


def family_of(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def hard_close(s):
    """Close with RST (SO_LINGER 0): nothing lingers after a failed step."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


# ---------------------------------------------------------------- cases ---


class Abort(Exception):
    """The control connection stalled or broke: the rest of the case cannot run."""


class Session:
    """One control connection between the scripted client and server."""

    def __init__(self, case, path):
        self.case = case
        cns, fam, sns, _, dial, peer = PATHS[path]
        self.path = path
        self.cns, self.sns, self.family = cns, sns, fam
        self.expected_peer = peer
        self.c_rx = bytearray()
        self.s_rx = bytearray()
        self.c_mark = 0
        self.s_mark = 0
        # Where the text the peers read for PORT/EPRT and 227 lines starts:
        # moved past raw (TLS record) bytes, which are not lines.
        self.c_text = 0
        self.s_text = 0
        self.client = None
        self.server = None
        self.label = f"{path} -> {dial}:21"
        self.client_addr = None
        case.sessions.append(self)
        listener = case.ctx.server_listener(path)
        c = case.ctx.ns.socket(cns, fam)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.settimeout(CTRL_TIMEOUT)
        self.client = c
        try:
            c.connect((dial, 21))
        except OSError as e:
            raise Abort(f"[{path}] control connect to {dial}:21 failed: {e}")
        c.setblocking(False)
        # Accept this client's connection (NAT keeps the source port here);
        # anything else in the backlog is a leftover and is reset.
        cport = c.getsockname()[1]
        deadline = time.monotonic() + CTRL_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            r, _, _ = select.select([listener], [], [], max(0.0, left))
            if not r:
                raise Abort(f"[{path}] the server accepted no control connection within {CTRL_TIMEOUT} s")
            try:
                s, speer = listener.accept()
            except BlockingIOError:
                continue
            if speer[1] == cport:
                break
            log(f"  [{path}] server: stray control connection from {fmt(*speer[:2])} reset")
            hard_close(s)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        self.server = s
        self.client_addr = fmt(*c.getsockname()[:2])
        self.label = f"{path} {self.client_addr} -> {dial}:21"
        log(f"  [{self.label}] server sees peer {speer[0]}:{speer[1]}")
        if speer[0] != peer:
            self.case.problem(
                f"[{path}] server saw the control connection from {speer[0]}, expected {peer}", "wrong peer"
            )

    # -- raw I/O
    def _pump(self, sock, buf, want_newlines, deadline):
        """Reads into buf until it holds want_newlines LFs, EOF or deadline."""
        return self._pump_until(sock, buf, lambda b: b.count(b"\n") >= want_newlines, deadline)

    def _pump_bytes(self, sock, buf, want_len, deadline):
        """Reads into buf until it holds want_len bytes, EOF or deadline."""
        return self._pump_until(sock, buf, lambda b: len(b) >= want_len, deadline)

    @staticmethod
    def _pump_until(sock, buf, enough, deadline):
        """Reads into buf until enough(buf), EOF or deadline."""
        while not enough(buf):
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            r, _, _ = select.select([sock], [], [], left)
            if not r:
                continue
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                return f"error {e}"
            if not data:
                return "eof"
            buf += data
        return "ok"

    def _send_segments(self, sock, who, segments, gap=table.SEGMENT_GAP):
        for i, seg in enumerate(segments):
            if i:
                time.sleep(gap)
            try:
                n = sock.send(seg)
            except OSError as e:
                raise Abort(f"[{self.path}] {who} send failed: {e}")
            if n != len(seg):
                raise Abort(f"[{self.path}] {who} sent only {n} of {len(seg)} bytes")
            log(f"  [{self.path}] {who} sent segment {show(seg)}")

    def _expect(self, sock, buf, mark_attr, who, expected):
        mark = getattr(self, mark_attr)
        want = buf[:mark].count(b"\n") + expected.count(b"\n")
        status = self._pump(sock, buf, want, time.monotonic() + CTRL_TIMEOUT)
        if status != "ok":
            got = bytes(buf[mark:])
            log(f"  [{self.path}] {who} {status}: got {show(got)}, expected {show(expected)}")
            raise Abort(
                f"[{self.path}] control stalled ({status}): {who} got {show(got) or 'nothing'} "
                f"within {CTRL_TIMEOUT} s, expected {show(expected)}"
            )
        # Take exactly the expected number of lines as this step's bytes.
        end = mark
        for _ in range(expected.count(b"\n")):
            nl = buf.find(b"\n", end)
            if nl < 0:
                end = len(buf)
                break
            end = nl + 1
        got = bytes(buf[mark:end])
        setattr(self, mark_attr, end)
        log(f"  [{self.path}] {who} received {show(got)}")
        if got != expected:
            self.case.problem(
                f"[{self.path}] {who} received '{show(got)}', expected '{show(expected)}'", "bytes differ"
            )
            return False
        return True

    def _expect_raw(self, sock, buf, mark_attr, text_attr, who, expected):
        """Like _expect for bytes that are not lines (TLS records): takes
        exactly len(expected) bytes."""
        mark = getattr(self, mark_attr)
        status = self._pump_bytes(sock, buf, mark + len(expected), time.monotonic() + CTRL_TIMEOUT)
        got = bytes(buf[mark:mark + len(expected)])
        if status != "ok":
            log(f"  [{self.path}] {who} {status}: got {len(got)} of {len(expected)} raw bytes")
            raise Abort(
                f"[{self.path}] control stalled ({status}): {who} got {len(got)} of the "
                f"{len(expected)} raw bytes {raw_desc(expected)} within {CTRL_TIMEOUT} s"
            )
        setattr(self, mark_attr, mark + len(got))
        setattr(self, text_attr, mark + len(got))
        log(f"  [{self.path}] {who} received {len(got)} raw bytes {raw_desc(got)}")
        if got != expected:
            at = next(i for i in range(len(got)) if got[i] != expected[i])
            self.case.problem(
                f"[{self.path}] {who} received {raw_desc(got)} differing from the {raw_desc(expected)} "
                f"sent at byte {at}: '{short(got[at:], 40)}' instead of '{short(expected[at:], 40)}'",
                "bytes differ",
            )
            return False
        return True

    # -- scripted steps
    def c(self, segments, server_gets, gap, nagle=False):
        """The client sends segments; the server must receive server_gets."""
        return self._step(self.client, "client", segments, gap, nagle,
                          (self.server, self.s_rx, "s_mark", "server", server_gets))

    def s(self, segments, client_gets, gap, nagle=False):
        """The server sends segments; the client must receive client_gets."""
        return self._step(self.server, "server", segments, gap, nagle,
                          (self.client, self.c_rx, "c_mark", "client", client_gets))

    def _step(self, sock, who, segments, gap, nagle, expect):
        """Sends with Nagle on (no TCP_NODELAY) if asked; TCP_NODELAY comes
        back only once the far side got everything: setting it flushes
        what Nagle holds back."""
        if nagle:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        self._send_segments(sock, who, segments, gap)
        ok = self._expect(*expect)
        if nagle:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return ok

    def c_raw(self, segments):
        """The client sends raw bytes (not lines); the server must receive
        them unchanged."""
        self._send_segments(self.client, "client", segments)
        return self._expect_raw(self.server, self.s_rx, "s_mark", "s_text", "server", b"".join(segments))

    def s_raw(self, segments):
        """The server sends raw bytes (not lines); the client must receive
        them unchanged."""
        self._send_segments(self.server, "server", segments)
        return self._expect_raw(self.client, self.c_rx, "c_mark", "c_text", "client", b"".join(segments))

    # -- what the far side was told
    def received_ports(self):
        """PORT/EPRT lines the server received (after the last raw bytes):
        [(addr, port) or None]."""
        out = []
        for line in bytes(self.s_rx[self.s_text:]).split(b"\n"):
            line = line.rstrip(b"\r ")
            verb = line[:4].upper()
            if verb == b"PORT" or verb == b"EPRT":
                out.append(parse_active(line))
        return out

    def received_passive(self):
        """(addr, port) of the last final 227 line the client received
        (after the last raw bytes), or of a 229 line: its port at the
        address the client dials (RFC 2428 §3)."""
        hp = None
        for line in bytes(self.c_rx[self.c_text:]).split(b"\n"):
            if line.startswith(b"227 "):
                m = re.search(rb"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)", line)
                if m:
                    n = [int(x) for x in m.groups()]
                    if all(v <= 255 for v in n):
                        hp = (".".join(map(str, n[:4])), n[4] * 256 + n[5])
            elif line.startswith(b"229 "):
                m = re.search(rb"\((.)\1\1(\d+)\1\)", line)
                if m and 0 < int(m.group(2)) <= 65535:
                    hp = (PATHS[self.path][4], int(m.group(2)))
        return hp

    # -- end
    def check_leftover(self):
        """Bytes that arrived beyond every expected step are a failure too."""
        for sock, buf, mark, who in ((self.server, self.s_rx, self.s_mark, "server"),
                                     (self.client, self.c_rx, self.c_mark, "client")):
            if sock is None:
                continue
            while True:
                r, _, _ = select.select([sock], [], [], 0.05)
                if not r:
                    break
                try:
                    data = sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                buf += data
            if len(buf) > mark:
                self.case.problem(f"[{self.path}] {who} received unexpected extra bytes '{show(buf[mark:])}'",
                                  "extra bytes")

    def close(self, graceful):
        c, s = self.client, self.server
        self.client = self.server = None
        if graceful and c and s:
            try:
                c.shutdown(socket.SHUT_WR)
                self._pump(s, bytearray(), 1 << 30, time.monotonic() + CLOSE_TIMEOUT)
                s.shutdown(socket.SHUT_WR)
                self._pump(c, bytearray(), 1 << 30, time.monotonic() + CLOSE_TIMEOUT)
                c.close()
                s.close()
                return
            except OSError:
                pass
        for x in (c, s):
            if x:
                hard_close(x)


def parse_active(line):
    """Strict parse of a PORT/EPRT line as the scripted server reads it."""
    verb, _, arg = line.partition(b" ")
    arg = arg.strip()
    try:
        if verb.upper() == b"PORT":
            n = [int(x) for x in arg.split(b",")]
            if len(n) != 6 or any(v > 255 or v < 0 for v in n):
                return None
            return ".".join(map(str, n[:4])), n[4] * 256 + n[5]
        d = arg[:1]
        f = arg[1:-1].split(d)
        if len(f) != 3 or arg[-1:] != d:
            return None
        port = int(f[2])
        if not 0 < port < 65536:
            return None
        return f[1].decode(), port
    except (ValueError, UnicodeDecodeError):
        return None


class Case:
    def __init__(self, ctx, spec):
        self.ctx, self.spec = ctx, spec
        self.num, self.title, self.expect = spec["num"], spec["title"], spec["expect"]
        self.problems = []
        self.notes = []
        self.short = []
        self.sessions = []
        self.listeners = []
        self.data_n = 0

    def problem(self, msg, short=None):
        log(f"  PROBLEM: {msg}")
        self.problems.append(msg)
        if short:
            self.short.append(short)

    def note(self, msg):
        log(f"  note: {msg}")
        self.notes.append(msg)

    def port(self, k):
        """Slot k's data port: by default unique to this case, slot and mode
        (no pinhole or expectation of an earlier case or mode can ever match
        it), above the ephemeral range (32768-60999) so that no control
        connection of the peers can hold it (cases.toml: `ports`)."""
        return table.slot_port(self.spec, k, self.ctx.mode_index)

    def session(self, path):
        return Session(self, path)

    def listen(self, ns, addr, port):
        for lst in self.listeners:
            if lst[0] == f"{ns} {fmt(addr, port)}":
                return lst
        s = self.ctx.ns.socket(ns, family_of(addr))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.listen(4)
        s.setblocking(False)
        lst = (f"{ns} {fmt(addr, port)}", s)
        self.listeners.append(lst)
        return lst

    # -- data connections
    def active_data(self, sess, listeners, expect_ok, index=-1, probes=()):
        """The server connects to the address/port it received in PORT/EPRT
        (index-th such line), plus `probes` (addr, port) where a wrong
        pinhole would be; the server sends the payload."""
        targets = []
        rec = sess.received_ports()
        got = rec[index] if rec and -len(rec) <= index < len(rec) else None
        if got is None:
            self.note("the PORT/EPRT line the server received names no usable address (nothing to connect to)")
        else:
            targets.append(("received", got))
        for p in probes:
            if got is None or p != got:
                targets.append(("probe", p))
        return self._data(sess.sns, targets, listeners, "connector", expect_ok, "active")

    def passive_data(self, sess, listeners, expect_ok):
        """The client connects to the address/port it received in the 227
        (or 229) reply; the server (acceptor) sends the payload."""
        got = sess.received_passive()
        targets = [("received", got)] if got else []
        if not got:
            self.note("the client received no usable 227/229 address")
        return self._data(sess.cns, targets, listeners, "acceptor", expect_ok, "passive")

    def _data(self, from_ns, targets, listeners, sender, expect_ok, kind):
        self.data_n += 1
        tag = f"data #{self.data_n} ({kind})"
        ok, lines = transfer(self.ctx.ns, from_ns, targets, listeners, sender)
        for line in lines:
            log(f"  {tag}: {line}")
        where = ", ".join(f"{w} {fmt(*hp)}" for w, hp in targets) or "nothing"
        detail = "; ".join(lines)
        if ok and expect_ok:
            self.note(f"{tag}: ok, 1 KiB sha256 {PAYLOAD_SHA[:12]}.. crossed ({detail})")
        elif not ok and not expect_ok:
            self.note(f"{tag}: blocked as expected (tried from {from_ns}: {where}; {detail})")
        elif expect_ok:
            self.problem(f"{tag}: FAILED, expected to work (from {from_ns} to {where}; {detail})", "data blocked")
        else:
            self.problem(
                f"{tag}: the data connection WORKED although nothing may be opened "
                f"(from {from_ns} to {where}; {detail})",
                "data opened",
            )
        return ok

    def cleanup(self):
        for _, s in self.listeners:
            hard_close(s)
        self.listeners = []


def fmt(addr, port):
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def transfer(ns, from_ns, targets, listeners, sender, timeout=DATA_TIMEOUT):
    """Connects from `from_ns` to every target at once; `listeners` accept.
    The side named by `sender` ('connector' or 'acceptor') writes PAYLOAD and
    shuts down; success = the other side reads exactly PAYLOAD."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    lines = []
    pending = {}
    conns = []  # dicts: sock, label, send (memoryview or None), rx, done
    for what, (addr, port) in targets:
        label = f"{what} {fmt(addr, port)}"
        try:
            s = ns.socket(from_ns, family_of(addr))
        except OSError as e:
            lines.append(f"{label}: socket: {e}")
            continue
        s.setblocking(False)
        err = s.connect_ex((addr, port))
        if err not in (0, errno.EINPROGRESS):
            lines.append(f"connect to {label}: {os.strerror(err)} at once")
            hard_close(s)
            continue
        pending[s] = label
    lsocks = {s: name for name, s in listeners}
    ok = False
    while not ok:
        now = time.monotonic()
        if now >= deadline:
            break
        rl = list(lsocks) + [c["sock"] for c in conns if c["send"] is None and not c["done"]]
        wl = list(pending) + [c["sock"] for c in conns if c["send"] is not None and not c["done"]]
        if not rl and not wl:
            break
        r, w, _ = select.select(rl, wl, [], min(0.1, deadline - now))
        t = time.monotonic() - t0
        for s in w:
            if s in pending:
                label = pending.pop(s)
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    lines.append(f"connect to {label}: {os.strerror(err)} after {t:.2f} s")
                    hard_close(s)
                    continue
                lines.append(f"connected to {label} after {t:.2f} s")
                conns.append(
                    {"sock": s, "label": label, "rx": bytearray(), "done": False,
                     "send": memoryview(PAYLOAD) if sender == "connector" else None}
                )
                continue
            c = next(c for c in conns if c["sock"] is s)
            try:
                n = s.send(c["send"])
            except BlockingIOError:
                continue
            except OSError as e:
                lines.append(f"{c['label']}: send failed: {e}")
                c["done"] = True
                continue
            c["send"] = c["send"][n:]
            if not len(c["send"]):
                s.shutdown(socket.SHUT_WR)
                c["done"] = True
        for s in r:
            if s in lsocks:
                try:
                    a, peer = s.accept()
                except (BlockingIOError, OSError):
                    continue
                a.setblocking(False)
                label = f"listener {lsocks[s]} <- {fmt(peer[0], peer[1])}"
                lines.append(f"{label} accepted after {t:.2f} s")
                conns.append(
                    {"sock": a, "label": label, "rx": bytearray(), "done": False,
                     "send": memoryview(PAYLOAD) if sender == "acceptor" else None}
                )
                continue
            c = next(c for c in conns if c["sock"] is s)
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError as e:
                lines.append(f"{c['label']}: recv failed: {e}")
                c["done"] = True
                continue
            if data:
                c["rx"] += data
            if not data or len(c["rx"]) >= len(PAYLOAD):
                rx = bytes(c["rx"])
                if rx == PAYLOAD:
                    lines.append(f"{c['label']}: received 1024 bytes, sha256 ok after {t:.2f} s")
                    ok = True
                elif not data or len(rx) > len(PAYLOAD):
                    lines.append(
                        f"{c['label']}: received {len(rx)} bytes, sha256 "
                        f"{hashlib.sha256(rx).hexdigest()[:12]}.. (want {PAYLOAD_SHA[:12]}..)"
                    )
                    c["done"] = True
    for label in pending.values():
        lines.append(f"connect to {label}: no answer within {timeout:.0f} s (dropped)")
    for s in pending:
        hard_close(s)
    for c in conns:
        if ok:
            try:
                c["sock"].close()
            except OSError:
                pass
        else:
            hard_close(c["sock"])
    if not targets:
        lines.append("no target to connect to")
    return ok, lines


# ------------------------------------------------------------ the table ---

def listener_for(c, sess, spec, port):
    """A data step's `listen` entry: "client", "server" or "NS:ADDR"."""
    p = TABLE["paths"][sess.path]
    if spec == "client":
        return c.listen(p["client_ns"], p["client"], port)
    if spec == "server":
        return c.listen(p["server_ns"], p["server_real"], port)
    ns, _, addr = spec.partition(":")
    return c.listen(ns, addr, port)


def play(c):
    """Plays the actions of case c (conformance_table.expand) with the
    scripted peers."""
    sess = None
    for act in table.expand(TABLE, c.spec, c.ctx.flags, c.ctx.mode_index):
        do = act["do"]
        if do == "open":
            sess = c.session(act["path"])
        elif do == "finish":
            sess.check_leftover()
            sess.close(graceful=not c.problems)
        elif do == "send":
            send = sess.c if act["from"] == "client" else sess.s
            send(act["segments"], act["gets"], act["gap"], act["nagle"])
        elif do == "tls":
            (sess.c_raw if act["from"] == "client" else sess.s_raw)([act["record"]])
        elif do == "pause":
            log(f"  [{sess.path}] pause {act['seconds']} s")
            time.sleep(act["seconds"])
        elif do == "data":
            port = act["port"]
            lsts = [listener_for(c, sess, x, port) for x in act["listen"]]
            if act["passive"]:
                c.passive_data(sess, lsts, act["ok"])
            else:
                public = PATHS[sess.path][5]
                probes = [(public, port)] if act["probe"] else []
                c.active_data(sess, lsts, act["ok"], index=act["index"], probes=probes)
        else:
            raise table.TableError(f"unknown action {act}")


class Ctx:
    def __init__(self, prefix, mode):
        self.ns = Netns(prefix)
        self.mode = mode
        self.mode_index = MODE_INDEX.get(mode, 3)
        # The table's flags (`if` on steps) set for this run, e.g.
        # allow_privileged: ftp-alg runs with allow_privileged_ports = true
        # (its SIGHUP check).
        self.flags = set()
        self.server_listeners = {}

    def server_listener(self, path):
        _, fam, sns, addr, _, _ = PATHS[path]
        key = (sns, addr)
        if key not in self.server_listeners:
            s = self.ns.socket(sns, fam)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, 21))
            s.listen(8)
            s.setblocking(False)
            self.server_listeners[key] = s
        return self.server_listeners[key]


def run_case(ctx, spec):
    c = Case(ctx, spec)
    num, title, expect = c.num, c.title, c.expect
    t0 = time.monotonic()
    log(f"=== case {num}: {title} (expect: {expect})")
    aborted = None
    try:
        play(c)
    except Abort as e:
        aborted = str(e)
        c.problem(f"{e}; the rest of the case did not run", "stalled")
    except OSError as e:
        aborted = f"socket error: {e}"
        c.problem(f"peer socket error: {e}; the rest of the case did not run", "peer socket error")
    if not aborted:
        for sess in c.sessions:
            if sess.client is not None:
                sess.check_leftover()
    ok = not c.problems
    for sess in c.sessions:
        sess.close(graceful=ok)
    c.cleanup()
    dt = time.monotonic() - t0
    shorts = list(dict.fromkeys(c.short)) or ["see details"]
    result = {
        "num": num,
        "title": title,
        "expect": expect,
        "pass": ok,
        "summary": "pass" if ok else "FAIL: " + ", ".join(shorts),
        "problems": c.problems,
        "notes": c.notes,
        "aborted": aborted,
        "seconds": round(dt, 2),
        "transcripts": [
            {"session": s.label, "client": s.client_addr, "server_received": show(s.s_rx),
             "client_received": show(s.c_rx)}
            for s in c.sessions
        ],
    }
    log(f"=== case {num}: {'pass' if ok else 'FAIL'} in {dt:.1f} s")
    return result


def cmd_run(args):
    global LOG
    if args.log:
        LOG = open(args.log, "a", encoding="utf-8")
    if os.geteuid() != 0:
        print("conformance.py run needs root (setns into the lab's namespaces)", file=sys.stderr)
        return 2
    ctx = Ctx(args.ns_prefix, args.mode)
    if args.allow_privileged:
        ctx.flags.add("allow_privileged")
    only = {int(x) for x in args.only.split(",")} if args.only else None
    results = []
    t0 = time.monotonic()
    specs = [x for x in CASES + (EXTRA_CASES if only else []) if not only or x["num"] in only]
    try:
        for spec in specs:  # a table this runner cannot play fails before any case runs
            table.expand(TABLE, spec, ctx.flags, ctx.mode_index)
    except table.TableError as e:
        print(f"conformance.py: {table.TABLE_PATH}: {e}", file=sys.stderr)
        return 2
    for spec in specs:
        r = run_case(ctx, spec)
        results.append(r)
        print(f"[conformance] {args.mode:6} case {spec['num']:2} {r['summary'][:70]:70} {r['seconds']:5.1f} s",
              file=sys.stderr, flush=True)
    for s in ctx.server_listeners.values():
        s.close()
    out = {"mode": args.mode, "seconds": round(time.monotonic() - t0, 1), "cases": results}
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
    return 0


MODE_TITLE = {"alg": "ftp-alg", "kernel": "kernel helper", "none": "no ALG"}


def read_meta(path):
    meta = {}
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition("=")
                if k:
                    meta[k] = v
    return meta


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def daemon_lines(path, client, limit=40):
    """The daemon's log lines about one control session (client=ADDR:PORT)."""
    if not path or not client or not os.path.exists(path):
        return []
    key = f"client={client}"
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = ANSI.sub("", line.rstrip("\n"))
            if key in line or f"src={client}" in line:
                out.append(line)
    if len(out) > limit:
        out = out[:limit] + [f"... {len(out) - limit} more lines in {path}"]
    return out or [f"(no line with '{key}' in {path})"]


def cmd_table(args):
    modes = []
    data = {}
    metas = {}
    daemon_logs = dict(x.partition("=")[::2] for x in args.daemon_log)
    for spec in args.result:
        mode, _, path = spec.partition("=")
        modes.append(mode)
        try:
            with open(path, encoding="utf-8") as f:
                data[mode] = {c["num"]: c for c in json.load(f)["cases"]}
        except (OSError, ValueError, KeyError):
            data[mode] = {}
        metas[mode] = read_meta(path[: -len(".json")] + ".meta" if path.endswith(".json") else None)
    w_case = 44
    w_cell = 34
    head = f"{'case':{w_case}} | " + " | ".join(f"{MODE_TITLE.get(m, m):{w_cell}}" for m in modes)
    print()
    print(head)
    print("-" * len(head))
    for spec in CASES:
        num, title, expect = spec["num"], spec["title"], spec["expect"]
        label = f"{num:2}. {title}"
        cells = []
        for m in modes:
            r = data[m].get(num)
            cells.append(f"{(r['summary'] if r else '-')[:w_cell]:{w_cell}}")
        print(f"{label[:w_case]:{w_case}} | " + " | ".join(cells))
        print(f"{'    expected: ' + expect:{w_case}} |")
    print()
    rc = 0
    for m in modes:
        meta = metas[m]
        cases = data[m]
        n_pass = sum(1 for c in cases.values() if c["pass"])
        bad = []
        if m == "alg":
            if len(cases) != len(CASES) and not args.partial:
                bad.append(f"only {len(cases)} of {len(CASES)} cases ran")
            if n_pass != len(cases):
                bad.append(f"{len(cases) - n_pass} case(s) failed")
            if meta.get("invalid_total", "0") != "0":
                bad.append(f"INVALID drops on the gateway: {meta.get('invalid_total')} (must be 0)")
            if meta.get("alive", "yes") != "yes":
                bad.append("ftp-alg was not running any more after the cases")
            if meta.get("exit", "0") not in ("0", ""):
                bad.append(f"ftp-alg exit status after SIGTERM: {meta.get('exit')} (expected 0)")
            if meta.get("ruleset", "restored") != "restored":
                bad.append(f"ruleset {meta['ruleset']}")
            if meta.get("setup_error"):
                bad.append(meta["setup_error"])
            if meta.get("reload", "ok") != "ok":
                bad.append(f"SIGHUP policy reload: {meta['reload']}")
        verdict = ("NOT OK: " + "; ".join(bad)) if bad else ("OK" if m == "alg" else "report only")
        if bad:
            rc = 1
        print(f"mode {m} ({MODE_TITLE.get(m, m)}): {n_pass}/{len(cases)} cases as expected -- {verdict}")
        if meta.get("invalid"):
            print(f"  {meta['invalid']}")
        for k in ("reload", "exit", "ruleset", "seconds"):
            if meta.get(k):
                print(f"  {k}: {meta[k]}")
        for num in sorted(cases):
            c = cases[num]
            if c["pass"]:
                continue
            print(f"  case {num} ({c['title']}):")
            for p in c["problems"]:
                print(f"    - {p}")
            if m == "alg" or args.verbose:
                for t in c["transcripts"]:
                    print(f"    session {t['session']}:")
                    print(f"      server received: {t['server_received']}")
                    print(f"      client received: {t['client_received']}")
                    for line in daemon_lines(daemon_logs.get(m), t.get("client")):
                        print(f"      | {line}")
    return rc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="play every case once (both peers)")
    r.add_argument("--ns-prefix", required=True, help="namespace prefix, e.g. fa-lab-cf12345-")
    r.add_argument("--mode", required=True, help="label of this run (alg, kernel, none)")
    r.add_argument("--out", required=True, help="JSON results")
    r.add_argument("--log", help="detailed step log (appended)")
    r.add_argument("--only", help="comma-separated case numbers")
    r.add_argument("--allow-privileged", action="store_true",
                   help="the ALG allows data ports < 1024: case 14 expects its data connection to pass")
    t = sub.add_parser("table", help="print the side-by-side table")
    t.add_argument("--result", action="append", default=[], help="MODE=FILE.json (MODE.meta beside it)")
    t.add_argument("--partial", action="store_true", help="a subset of cases ran (--only)")
    t.add_argument("--verbose", action="store_true", help="transcripts for every failed case")
    t.add_argument("--daemon-log", action="append", default=[],
                   help="MODE=FILE: the daemon's stderr, quoted for failed cases")
    args = ap.parse_args()
    if args.cmd == "run":
        sys.exit(cmd_run(args))
    sys.exit(cmd_table(args))


if __name__ == "__main__":
    main()
