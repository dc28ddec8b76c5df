#!/usr/bin/env python3
"""scripts/ha/session.py -- one scripted FTP control session across a failover.

Driven by scripts/ha.sh, run inside a client namespace of the HA lab with
`ip netns exec`. Python 3 standard library only; raw sockets, so every byte
of the control connection is ours (no client library retries or reconnects:
a broken stream shows as a wrong reply or a timeout, never as a hidden
re-login).

    session.py --case NAME --host H --source S --mode MODE --sync DIR
               --file NAME --sha256 HEX [--kind plain|pending|inflight]
               [--big NAME --big-sha256 HEX] [--expect-host ADDR]

MODE is how data connections are made: epsv or pasv (passive; RFC 2428
EPSV, RFC 959 PASV) or eprt or port (active). The session:

 1. connects from S, logs in anonymously, TYPE I, and makes a first
    transfer (RETR, size and sha256 checked);
 2. kind "pending": then announces one more data connection (EPSV/PASV
    reply received, or PORT/EPRT answered 200) and leaves it unused;
    kind "inflight": the first transfer is of --big, read slowly from a
    small receive buffer so that it is still running at the failover;
 3. writes DIR/NAME.ready and waits (bounded) for DIR/go, which holds the
    failover's start time (ns since the epoch, from `date +%s%N`);
 4. kind "pending": uses the announcement made before the failover
    (active: RETR, and the server has to reach us; passive: connect to
    the announced port); kind "inflight": reads the rest of --big;
    then NOOP (the first command after the failover: its reply time is
    the session's resumption), a second transfer, NOOP, QUIT.

Prints key=value lines (case, xfer1, noop1, resume_ms, pending, xfer2,
noop2, gap_ms, ...) and exits 0 when every step gave the answer of a
healthy session, 1 otherwise (the lines say which step broke and how).
"""

import argparse
import hashlib
import os
import re
import socket
import sys
import time

REPLY_RE = re.compile(rb"^(\d{3})([ -])")
EPSV_RE = re.compile(rb"\(\|\|\|(\d+)\|\)")
PASV_RE = re.compile(rb"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)")


class Broken(Exception):
    """A step did not get the answer a healthy session gets."""


class Control:
    """The control connection: exact bytes out, reply lines in."""

    def __init__(self, host, source, timeout):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        self.sock.bind((source, 0))
        self.sock.connect((host, 21))
        self.fam = fam
        self.host = host
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            try:
                chunk = self.sock.recv(4096)
            except socket.timeout:
                raise Broken("no reply within %.0f s" % self.sock.gettimeout()) from None
            if not chunk:
                raise Broken("control connection closed by the server")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        """(code, first line) of one complete reply (RFC 959 §4.2)."""
        first = self.line()
        m = REPLY_RE.match(first)
        if not m:
            raise Broken(f"not an FTP reply: {first!r}")
        if m.group(2) == b"-":
            while not self.line().startswith(m.group(1) + b" "):
                pass
        return int(m.group(1)), first

    def cmd(self, text, want):
        self.sock.sendall(text.encode() + b"\r\n")
        code, line = self.reply()
        if code not in want:
            raise Broken(f"{text.split()[0]} answered {line.decode(errors='replace')!r}")
        return line


def show(line):
    return line.decode(errors="replace").replace(" ", "_")


class Session:
    def __init__(self, a):
        self.a = a
        self.ctl = Control(a.host, a.source, a.timeout)
        self.announced = None  # passive: (host, port); active: listening socket

    def login(self):
        code, line = self.ctl.reply()
        if code != 220:
            raise Broken(f"greeting {line!r}")
        self.ctl.cmd("USER anonymous", (230, 331))
        self.ctl.cmd("PASS lab@", (230,))
        self.ctl.cmd("TYPE I", (200,))

    # ---------------------------------------------------------- announce ---

    def announce(self):
        """One data connection negotiated, not yet used."""
        mode = self.a.mode
        if mode in ("epsv", "pasv"):
            line = self.ctl.cmd(mode.upper(), (229,) if mode == "epsv" else (227,))
            if mode == "epsv":
                m = EPSV_RE.search(line)
                if not m:
                    raise Broken(f"unparsable 229: {line!r}")
                self.announced = (self.ctl.host, int(m.group(1)))
            else:
                m = PASV_RE.search(line)
                if not m:
                    raise Broken(f"unparsable 227: {line!r}")
                n = [int(x) for x in m.groups()]
                host = "%d.%d.%d.%d" % tuple(n[:4])
                # The address must be the one the client can reach: after
                # the ALG's rewrite through DNAT, the public address.
                if self.a.expect_host and host != self.a.expect_host:
                    raise Broken(f"227 announces {host}, not {self.a.expect_host}")
                self.announced = (host, n[4] * 256 + n[5])
            return
        lsock = socket.socket(self.ctl.fam, socket.SOCK_STREAM)
        lsock.bind((self.ctl.sock.getsockname()[0], 0))
        lsock.listen(1)
        lsock.settimeout(self.a.timeout)
        addr, port = lsock.getsockname()[:2]
        if mode == "port":
            self.ctl.cmd("PORT %s,%d,%d" % (addr.replace(".", ","), port >> 8, port & 255), (200,))
        else:
            fam = 2 if self.ctl.fam == socket.AF_INET6 else 1
            self.ctl.cmd(f"EPRT |{fam}|{addr}|{port}|", (200,))
        self.announced = lsock

    def open_data(self, name, rcvbuf=None, connect_timeout=None):
        """RETR over the announced connection; returns the data socket."""
        if isinstance(self.announced, tuple):
            d = socket.socket(self.ctl.fam, socket.SOCK_STREAM)
            if rcvbuf:
                d.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            d.settimeout(connect_timeout or self.a.timeout)
            try:
                d.connect(self.announced)
            except OSError as e:
                d.close()
                raise Broken(f"data connect to {self.announced[1]}: {e.__class__.__name__}") from None
            d.settimeout(self.a.timeout)
            self.announced = None
            self.ctl.cmd(f"RETR {name}", (125, 150))
            return d
        lsock, self.announced = self.announced, None
        if rcvbuf:
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.ctl.sock.sendall(f"RETR {name}\r\n".encode())
        code, line = self.ctl.reply()
        if code not in (125, 150):
            lsock.close()
            raise Broken(f"RETR answered {show(line)}")
        try:
            d, _ = lsock.accept()
        except socket.timeout:
            raise Broken("the server's data connection never arrived") from None
        finally:
            lsock.close()
        d.settimeout(self.a.timeout)
        return d

    def finish(self, d, sha, pace=None, on_progress=None):
        """Reads the data connection to its end and the 226; checks sha256.
        Returns the longest gap between two reads (ms)."""
        h = hashlib.sha256()
        got = 0
        gap = 0.0
        last = time.monotonic()
        while True:
            try:
                chunk = d.recv(16384 if pace else 65536)
            except socket.timeout:
                raise Broken(f"data connection stalled after {got} bytes") from None
            now = time.monotonic()
            gap = max(gap, now - last)
            last = now
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
            if on_progress:
                on_progress(got)
            if pace:
                time.sleep(len(chunk) / pace)
        d.close()
        code, line = self.ctl.reply()
        if code != 226:
            raise Broken(f"transfer ended with {show(line)}")
        if h.hexdigest() != sha:
            raise Broken(f"sha256 mismatch ({got} bytes)")
        return gap * 1000

    def transfer(self, name, sha):
        self.announce()
        self.finish(self.open_data(name), sha)


def wait_go(a):
    """The failover's start time (ns), once ha.sh writes it."""
    go = os.path.join(a.sync, "go")
    deadline = time.monotonic() + a.go_timeout
    while time.monotonic() < deadline:
        try:
            with open(go) as f:
                text = f.read().strip()
            if text:
                return int(text)
        except FileNotFoundError:
            pass
        time.sleep(0.01)
    raise Broken("no failover within %d s" % a.go_timeout)


def run(a, out):
    s = Session(a)
    s.login()
    ready = os.path.join(a.sync, a.case + ".ready")
    inflight = None
    if a.kind == "inflight":
        # A small receive buffer keeps the server's sending paced by our
        # reading, so the data connection is mid-stream at the failover.
        s.announce()
        d = s.open_data(a.big, rcvbuf=32768)
        marked = []

        def progress(got):
            if not marked and got >= a.big_ready_bytes:
                marked.append(got)
                open(ready, "w").close()

        inflight = (d, progress)
    else:
        s.transfer(a.file, a.sha256)
        out("xfer1", "ok")
        if a.kind == "pending":
            s.announce()
        open(ready, "w").close()

    if inflight:
        d, progress = inflight
        gap = s.finish(d, a.big_sha256, pace=a.pace, on_progress=progress)
        ended = time.time_ns()
        out("xfer1", "ok")
        out("gap_ms", "%.0f" % gap)
        t0 = wait_go(a)
        # Positive: the data connection was still running at the failover.
        out("xfer1_end_after_failover_ms", "%.0f" % ((ended - t0) / 1e6))
    else:
        t0 = wait_go(a)
    if a.kind == "pending":
        # The announcement made on the old gateway, used on the new one.
        try:
            d = s.open_data(a.file, connect_timeout=a.pending_timeout)
            s.finish(d, a.sha256)
            out("pending", "survived")
        except Broken as e:
            out("pending", "lost:" + str(e).replace(" ", "_"))
            # A RETR whose data connection failed is answered 425 by now,
            # or the unused passive port is simply abandoned.
    try:
        s.ctl.sock.sendall(b"NOOP\r\n")
        code, line = s.ctl.reply()
    except Broken as e:
        out("noop1", "BROKEN:" + str(e).replace(" ", "_"))
        return 1
    out("resume_ms", "%.0f" % ((time.time_ns() - t0) / 1e6))
    out("noop1", show(line))
    if code != 200:
        return 1
    s.transfer(a.file, a.sha256)
    out("xfer2", "ok")
    s.ctl.cmd("NOOP", (200,))
    out("noop2", "200")
    s.ctl.cmd("QUIT", (221,))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--case", required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--mode", required=True, choices=("epsv", "pasv", "eprt", "port"))
    p.add_argument("--sync", required=True)
    p.add_argument("--file", required=True)
    p.add_argument("--sha256", required=True)
    p.add_argument("--kind", default="plain", choices=("plain", "pending", "inflight"))
    p.add_argument("--big")
    p.add_argument("--big-sha256")
    p.add_argument("--big-ready-bytes", type=int, default=262144)
    p.add_argument("--pace", type=float, default=262144.0, help="bytes/s for --kind inflight")
    p.add_argument("--expect-host")
    p.add_argument("--timeout", type=float, default=8.0, help="per reply / data read (s)")
    p.add_argument("--pending-timeout", type=float, default=4.0)
    p.add_argument("--go-timeout", type=float, default=90.0)
    a = p.parse_args()

    def out(k, v):
        print(f"{k}={v}", flush=True)

    out("case", a.case)
    try:
        rc = run(a, out)
    except Broken as e:
        out("broken", str(e).replace(" ", "_"))
        rc = 1
    except OSError as e:
        out("broken", f"{e.__class__.__name__}:{e}".replace(" ", "_"))
        rc = 1
    out("exit", rc)
    return rc


if __name__ == "__main__":
    sys.exit(main())
