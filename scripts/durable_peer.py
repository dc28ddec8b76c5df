#!/usr/bin/env python3
"""scripts/durable_peer.py -- a scripted FTP client for scripts/durable.sh.

One control session against a real server through the lab gateway:

  1. log in, one transfer (active: PORT, passive: PASV), sha256 checked;
  2. print "CRASH-ME" and wait (bounded) for the file GO to appear: the
     orchestrator kills ftp-alg meanwhile;
  3. send NOOP while no instance runs: its reply must be 200 (a stream passed
     unadjusted makes the server see "OOP" and answer 500); the time until
     the reply is the gap;
  4. a second transfer in the same mode: the next announcement must be
     rewritten again (and get its pinhole) by the new instance;
  5. QUIT.

Prints one line "RESULT ok=1 gap_ms=N ..." (ok=0 with the reason on failure).
Exit status 0 when ok. Every wait is bounded.
"""

import argparse
import hashlib
import os
import re
import socket
import sys
import time


class Control:
    def __init__(self, host, port, source, timeout):
        self.sock = socket.create_connection((host, port), timeout=timeout, source_address=(source, 0))
        self.buf = b""
        self.sent = []

    def line(self):
        while b"\n" not in self.buf:
            data = self.sock.recv(4096)
            if not data:
                raise RuntimeError("control connection closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode("latin-1").rstrip("\r")

    def reply(self):
        """A whole reply (RFC 959 4.2: multi-line until 'ddd ')."""
        first = self.line()
        if len(first) >= 4 and first[3] == "-":
            while True:
                nxt = self.line()
                if nxt[:3] == first[:3] and nxt[3:4] == " ":
                    return first[:3], nxt
        return first[:3], first

    def cmd(self, text, want):
        self.sock.sendall(text.encode("latin-1") + b"\r\n")
        code, line = self.reply()
        if not code.startswith(want):
            raise RuntimeError(f"{text!r} answered {line!r}, wanted {want}")
        return line


def transfer(c, mode, source, name, timeout):
    """RETR `name` over a data connection of `mode`; returns (sha256, size)."""
    if mode == "active":
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.bind((source, 0))
        lst.listen(1)
        lst.settimeout(timeout)
        port = lst.getsockname()[1]
        h = source.replace(".", ",")
        c.cmd(f"PORT {h},{port >> 8},{port & 255}", "2")
        c.sock.sendall(f"RETR {name}\r\n".encode())
        code, line = c.reply()
        if code not in ("150", "125"):
            raise RuntimeError(f"RETR answered {line!r}")
        data, _ = lst.accept()
        lst.close()
    else:
        line = c.cmd("PASV", "227")
        m = re.search(r"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)", line)
        if not m:
            raise RuntimeError(f"no address in {line!r}")
        n = [int(x) for x in m.groups()]
        data = socket.create_connection((".".join(map(str, n[:4])), n[4] * 256 + n[5]), timeout=timeout)
        c.sock.sendall(f"RETR {name}\r\n".encode())
        code, line = c.reply()
        if code not in ("150", "125"):
            raise RuntimeError(f"RETR answered {line!r}")
    data.settimeout(timeout)
    h = hashlib.sha256()
    size = 0
    while True:
        chunk = data.recv(65536)
        if not chunk:
            break
        h.update(chunk)
        size += len(chunk)
    data.close()
    code, line = c.reply()
    if code != "226":
        raise RuntimeError(f"transfer ended with {line!r}")
    return h.hexdigest(), size


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=21)
    p.add_argument("--source", required=True)
    p.add_argument("--mode", choices=["active", "passive"], required=True)
    p.add_argument("--file", default="small.bin")
    p.add_argument("--sha", required=True, help="sha256 the file must have")
    p.add_argument("--go", required=True, help="file whose appearance means: send now")
    p.add_argument("--wait-go", type=float, default=20.0)
    p.add_argument("--timeout", type=float, default=15.0)
    a = p.parse_args()
    gap_ms = -1
    step = "connect"
    try:
        c = Control(a.host, a.port, a.source, a.timeout)
        step = "login"
        code, line = c.reply()
        if code != "220":
            raise RuntimeError(f"greeting {line!r}")
        if c.cmd("USER anonymous", "")[:3] == "331":
            c.cmd("PASS lab@", "2")
        c.cmd("TYPE I", "2")
        step = "first transfer"
        got = transfer(c, a.mode, a.source, a.file, a.timeout)
        if got[0] != a.sha:
            raise RuntimeError(f"first transfer sha256 mismatch ({got[1]} bytes)")
        print("CRASH-ME", flush=True)
        step = "waiting for the crash"
        deadline = time.monotonic() + a.wait_go
        while not os.path.exists(a.go):
            if time.monotonic() > deadline:
                raise RuntimeError("no GO from the orchestrator")
            time.sleep(0.02)
        step = "NOOP while no instance runs"
        t0 = time.monotonic()
        c.cmd("NOOP", "200")
        gap_ms = int((time.monotonic() - t0) * 1000)
        step = "second transfer"
        got = transfer(c, a.mode, a.source, a.file, a.timeout)
        if got[0] != a.sha:
            raise RuntimeError(f"second transfer sha256 mismatch ({got[1]} bytes)")
        step = "quit"
        c.cmd("QUIT", "221")
    except Exception as e:  # noqa: BLE001 -- any failure is the result
        print(f"RESULT ok=0 gap_ms={gap_ms} step={step.replace(' ', '_')} error={e}", flush=True)
        return 1
    print(f"RESULT ok=1 gap_ms={gap_ms}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
