#!/usr/bin/env python3
"""scripts/ftp_peers.py -- scripted FTP clients for the lab benchmarks.

Driven by scripts/bench-latency.sh, scripts/scale.sh, scripts/host.sh and
scripts/ftps.sh (which build the lab with scripts/lib-lab.sh and run this
file inside its namespaces with `ip netns exec`). Python 3 standard library
only.

    ftp_peers.py latency --host H [--port 21] --n N [--warmup W] --out FILE
        One control connection (TCP_NODELAY): greeting, anonymous login, W
        untimed NOOPs, then N NOOP round trips, each timed on its own with
        time.perf_counter_ns (from just before send() of "NOOP\\r\\n" to the
        complete "200 ..." reply line). Appends one integer (nanoseconds) per
        round trip to FILE. Exit 0 on success.

    ftp_peers.py latency-report --sample A=FILE --sample B=FILE --sample C=FILE
        Percentiles per mode and the latency added by A and B over C.

    ftp_peers.py scale --host H --sessions N --file NAME --sha256 HEX --sync DIR
        N concurrent control sessions (asyncio): each connects, reads the
        greeting, logs in anonymously and sets TYPE I; the opening phase is
        limited to --connect-concurrency sessions in flight (vsftpd's listen
        backlog is 32). When every session is open (or failed), writes
        DIR/open ("OPEN <live> <failed>") and holds ALL live sessions open
        until DIR/go exists (bounded by --hold-timeout). Then every session
        does EPSV, connects to the announced port, RETR NAME, checks size and
        sha256 of what arrived and the 150/226 replies, sends QUIT (221) and
        closes. Prints a summary (key=value lines) on stdout; exit 0 only if
        every session completed.

    ftp_peers.py load --host H --source ADDR --conns C --seconds S
        C concurrent control connections from source address ADDR (asyncio),
        each logged in anonymously, then NOOP round trips, one in flight per
        connection, until S seconds have passed. Prints "rt=<round trips>
        seconds=<elapsed> failed=<connections lost>"; exit 0 if none failed.

    ftp_peers.py sample --pid PID --metrics URL --out FILE [--interval S]
        Until SIGTERM (or --max-seconds): one line per interval with the
        ftp-alg gauges ftp_alg_sessions and ftp_alg_pinholes scraped from
        URL and VmRSS of PID (kB). Run it in the gateway namespace.

    ftp_peers.py probe --host H --port P [--source ADDR] [--timeout S]
        One TCP connect (from ADDR if given); prints connected, refused or
        timeout.

    ftp_peers.py scope --host H --cmd PASV|EPSV|PORT|EPRT --sync DIR
        A session that announces a data connection, waits while the driver
        probes it from other hosts, transfers, announces a second one and
        QUITs (scripts/host.sh: a pinhole admits only its peer, once, and
        nothing after QUIT). Files in DIR mark each step.

    ftp_peers.py nft-elements < `nft -j list set ...`
        Prints how many elements the set holds.

    ftp_peers.py tls-hold --host H [--port 21] --sync DIR --sha256 HEX
        One explicit-TLS session (RFC 4217: AUTH TLS, PBSZ 0, PROT P,
        anonymous login, TYPE I, PASV) that then waits, so that the driver
        can probe the data ports while the session lives (scripts/ftps.sh):
        prints "held PORT" (DIR/held); after DIR/go1 it RETRs small.bin over
        TLS on PORT and prints "transfer ok" (sha256 HEX) or "transfer FAIL
        ..." (DIR/used); after DIR/go2 it QUITs and prints "quit" (DIR/quit).

    ftp_peers.py listen --host H --port P [--seconds S]
        A spare listener (a port of a passive range that no FTP server
        opened): prints "listening", then answers every connection with one
        line until S seconds have passed.
"""

import argparse
import asyncio
import hashlib
import json
import os
import re
import resource
import signal
import socket
import sys
import time
import urllib.request

REPLY_RE = re.compile(rb"^(\d{3})([ -])")
EPSV_RE = re.compile(rb"\(\|\|\|(\d+)\|\)")


# ------------------------------------------------------------------ latency ---


class LineReader:
    """Blocking FTP reply reader over a socket (multi-line replies)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("control connection closed by the server")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        first = self.line()
        m = REPLY_RE.match(first)
        if not m:
            raise ValueError(f"not an FTP reply: {first!r}")
        code = m.group(1)
        if m.group(2) == b"-":
            while True:
                nxt = self.line()
                if nxt.startswith(code + b" "):
                    break
        return int(code), first


def expect(code, line, want):
    if code not in want:
        raise RuntimeError(f"expected {want}, got {line!r}")


async def _load_conn(a, deadline, counts):
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(a.host, a.port, local_addr=(a.source, 0)), a.step_timeout)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def reply():
        line = await asyncio.wait_for(reader.readline(), a.step_timeout)
        m = REPLY_RE.match(line)
        if not m:
            raise ConnectionError(f"not an FTP reply: {line!r}")
        return int(m.group(1))

    if await reply() != 220:
        raise ConnectionError("no greeting")
    writer.write(b"USER anonymous\r\n")
    code = await reply()
    if code == 331:
        writer.write(b"PASS lab@\r\n")
        code = await reply()
    if code != 230:
        raise ConnectionError(f"login answered {code}")
    n = 0
    while time.monotonic() < deadline:
        writer.write(b"NOOP\r\n")
        if await reply() != 200:
            raise ConnectionError("NOOP refused")
        n += 1
    counts.append(n)
    writer.write(b"QUIT\r\n")
    writer.close()


async def _load(a):
    counts = []
    t0 = time.monotonic()
    deadline = t0 + a.seconds
    results = await asyncio.gather(*(_load_conn(a, deadline, counts) for _ in range(a.conns)),
                                   return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    for r in failed[:3]:
        print(f"connection failed: {r!r}", file=sys.stderr)
    print(f"rt={sum(counts)} seconds={time.monotonic() - t0:.3f} failed={len(failed)}")
    return 1 if failed else 0


def cmd_load(a):
    return asyncio.run(_load(a))


def login(host, port, timeout):
    """A blocking control connection, logged in anonymously: (sock, reader)."""
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rd = LineReader(sock)
    code, line = rd.reply()
    expect(code, line, (220,))
    sock.sendall(b"USER anonymous\r\n")
    code, line = rd.reply()
    if code == 331:
        sock.sendall(b"PASS lab@\r\n")
        code, line = rd.reply()
    expect(code, line, (230,))
    return sock, rd


def cmd_latency(a):
    sock, rd = login(a.host, a.port, a.timeout)
    noop = b"NOOP\r\n"
    for _ in range(a.warmup):
        sock.sendall(noop)
        code, line = rd.reply()
        expect(code, line, (200,))
    samples = []
    clock = time.perf_counter_ns
    for _ in range(a.n):
        t0 = clock()
        sock.sendall(noop)
        code, line = rd.reply()
        t1 = clock()
        if code != 200:
            raise RuntimeError(f"NOOP answered {line!r}")
        samples.append(t1 - t0)
    sock.sendall(b"QUIT\r\n")
    try:
        rd.reply()
    except (OSError, ValueError):
        pass
    sock.close()
    with open(a.out, "a") as f:
        f.write("".join(f"{s}\n" for s in samples))
    print(f"{len(samples)} NOOP round trips, median {sorted(samples)[len(samples) // 2] / 1000:.1f} us")
    return 0


def pct(sorted_vals, p):
    """Nearest-rank percentile (p in 0..100) of an ascending list."""
    if not sorted_vals:
        return float("nan")
    k = max(1, min(len(sorted_vals), int(-(-p * len(sorted_vals) // 100))))
    return sorted_vals[k - 1]


def cmd_latency_report(a):
    modes = {}
    for spec in a.sample:
        name, path = spec.split("=", 1)
        with open(path) as f:
            modes[name] = sorted(int(x) for x in f if x.strip())
    labels = {
        "A": "A ftp-alg",
        "B": "B kernel helper",
        "C": "C no helper (plain gateway)",
    }
    us = lambda ns: ns / 1000.0  # noqa: E731
    print(f"{'mode':<30} {'n':>7} {'p50 us':>9} {'p90 us':>9} {'p99 us':>9}")
    for name, v in modes.items():
        print(
            f"{labels.get(name, name):<30} {len(v):>7} {us(pct(v, 50)):>9.1f} "
            f"{us(pct(v, 90)):>9.1f} {us(pct(v, 99)):>9.1f}"
        )
    if not all(modes.get(m) for m in "ABC"):
        print("(some mode has no samples: no comparison)")
        return 1
    print()
    print("added latency over the plain gateway (difference of the percentiles);")
    print("per round trip = 2 queued packets (the NOOP command client->server and the")
    print("200 reply server->client each cross the gateway once and, with ftp-alg, are")
    print("each queued once to userspace through NFQUEUE):")
    for name in "AB":
        for p in (50, 99):
            d = us(pct(modes[name], p) - pct(modes["C"], p))
            print(
                f"  {labels[name]:<16} p{p:<2}: {d:+7.1f} us per round trip"
                f" = {d / 2:+6.1f} us per packet"
            )
    for p in (50, 90, 99):
        r = pct(modes["A"], p) / pct(modes["B"], p)
        print(f"ratio A/B (ftp-alg / kernel helper) at p{p}: {r:.3f}")
    return 0


# -------------------------------------------------------------------- scale ---


class Fail(Exception):
    pass


async def read_reply(reader, timeout):
    async def _read():
        first = await reader.readuntil(b"\r\n")
        m = REPLY_RE.match(first)
        if not m:
            raise Fail(f"not an FTP reply: {first[:80]!r}")
        code = m.group(1)
        if m.group(2) == b"-":
            while True:
                nxt = await reader.readuntil(b"\r\n")
                if nxt.startswith(code + b" "):
                    break
        return int(code), first.rstrip(b"\r\n")

    try:
        return await asyncio.wait_for(_read(), timeout)
    except asyncio.TimeoutError:
        raise Fail(f"no reply within {timeout} s") from None
    except asyncio.IncompleteReadError:
        raise Fail("control connection closed by the server") from None


async def command(reader, writer, line, want, timeout):
    writer.write(line + b"\r\n")
    await writer.drain()
    code, text = await read_reply(reader, timeout)
    if code not in want:
        raise Fail(f"{line.split()[0].decode()} answered {text[:80]!r}")
    return code, text


class Session:
    def __init__(self, idx):
        self.idx = idx
        self.reader = self.writer = None
        self.phase = "connect"
        self.error = None

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def open_session(s, a, sem):
    async with sem:
        t = a.step_timeout
        try:
            s.reader, s.writer = await asyncio.wait_for(
                asyncio.open_connection(a.host, a.port), t
            )
        except asyncio.TimeoutError:
            raise Fail(f"connect: no answer within {t} s") from None
        s.writer.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        s.phase = "greeting"
        code, text = await read_reply(s.reader, t)
        if code != 220:
            raise Fail(f"greeting {text[:80]!r}")
        s.phase = "login"
        code, _ = await command(s.reader, s.writer, b"USER anonymous", (230, 331), t)
        if code == 331:
            await command(s.reader, s.writer, b"PASS lab@", (230,), t)
        s.phase = "type"
        await command(s.reader, s.writer, b"TYPE I", (200,), t)
        s.phase = "open"


async def transfer(s, a, want_sha, want_size):
    t = a.step_timeout
    s.phase = "epsv"
    _, text = await command(s.reader, s.writer, b"EPSV", (229,), t)
    m = EPSV_RE.search(text)
    if not m:
        raise Fail(f"cannot parse {text[:80]!r}")
    port = int(m.group(1))
    s.phase = "data-connect"
    try:
        dr, dw = await asyncio.wait_for(asyncio.open_connection(a.host, port), t)
    except asyncio.TimeoutError:
        raise Fail(f"data connection to port {port}: no answer within {t} s") from None
    try:
        s.phase = "retr"
        s.writer.write(b"RETR " + a.file.encode() + b"\r\n")
        await s.writer.drain()

        async def data():
            h, n = hashlib.sha256(), 0
            while True:
                chunk = await dr.read(65536)
                if not chunk:
                    return h.hexdigest(), n
                h.update(chunk)
                n += len(chunk)

        async def replies():
            code, text = await read_reply(s.reader, t)
            if code not in (125, 150):
                raise Fail(f"RETR answered {text[:80]!r}")
            code, text = await read_reply(s.reader, t)
            if code != 226:
                raise Fail(f"end of transfer answered {text[:80]!r}")

        try:
            (got_sha, got_n), _ = await asyncio.wait_for(
                asyncio.gather(data(), replies()), t
            )
        except asyncio.TimeoutError:
            raise Fail(f"transfer not finished within {t} s") from None
    finally:
        dw.close()
    if got_n != want_size or got_sha != want_sha:
        raise Fail(f"data mismatch: {got_n} bytes, sha256 {got_sha[:16]}...")
    s.phase = "quit"
    await command(s.reader, s.writer, b"QUIT", (221,), t)
    # Wait (bounded) for the server's FIN, so the session really ends.
    try:
        await asyncio.wait_for(s.reader.read(), t)
    except asyncio.TimeoutError:
        pass
    s.close()
    s.phase = "done"


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return soft
    if hard != resource.RLIM_INFINITY and hard < need:
        try:  # root may raise the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            return need
        except (ValueError, OSError):
            need = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return need


def log(msg):
    print(f"[scale] {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


async def scale_main(a):
    t_start = time.monotonic()
    sem = asyncio.Semaphore(a.connect_concurrency)
    sessions = [Session(i) for i in range(a.sessions)]
    failures = {}

    def fail(s, e):
        what = str(e) if isinstance(e, (Fail, str)) else f"{type(e).__name__}: {e}"
        s.error = f"{s.phase}: {what}"
        failures.setdefault(s.error, 0)
        failures[s.error] += 1
        s.close()

    async def opener(s):
        try:
            await open_session(s, a, sem)
        except Exception as e:  # noqa: BLE001 -- every failure is counted, by phase
            fail(s, e)

    tasks = [asyncio.ensure_future(opener(s)) for s in sessions]
    deadline = time.monotonic() + a.open_timeout
    last = -1
    while True:
        live = sum(1 for s in sessions if s.phase == "open")
        done = sum(1 for t in tasks if t.done())
        if live // 100 != last // 100:
            log(f"{live} sessions open")
            last = live
        if done == len(tasks):
            break
        if time.monotonic() > deadline:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for s in sessions:
                if s.phase != "open" and s.error is None:
                    fail(s, f"not open after {a.open_timeout} s")
            break
        await asyncio.sleep(0.1)
    t_open = time.monotonic()
    live = [s for s in sessions if s.phase == "open"]
    log(f"all {len(live)} sessions open ({len(sessions) - len(live)} failed) after {t_open - t_start:.1f} s; holding")
    with open(os.path.join(a.sync, "open.tmp"), "w") as f:
        f.write(f"OPEN {len(live)} {len(sessions) - len(live)}\n")
    os.rename(os.path.join(a.sync, "open.tmp"), os.path.join(a.sync, "open"))
    go = os.path.join(a.sync, "go")
    hold_deadline = time.monotonic() + a.hold_timeout
    while not os.path.exists(go) and time.monotonic() < hold_deadline:
        await asyncio.sleep(0.05)
    # Any session the server dropped during the hold shows up in its next step.
    t_go = time.monotonic()
    log(f"go after holding {t_go - t_open:.1f} s: {len(live)} transfers")
    xsem = asyncio.Semaphore(a.xfer_concurrency)

    async def mover(s):
        async with xsem:
            try:
                await transfer(s, a, a.sha256, a.size)
            except Exception as e:  # noqa: BLE001 -- every failure is counted, by phase
                fail(s, e)

    xtasks = [asyncio.ensure_future(mover(s)) for s in live]
    try:
        await asyncio.wait_for(asyncio.gather(*xtasks), a.xfer_timeout)
    except asyncio.TimeoutError:
        for s in live:
            if s.phase != "done" and s.error is None:
                fail(s, f"not finished within {a.xfer_timeout} s")
    t_end = time.monotonic()
    for s in sessions:
        s.close()
    completed = sum(1 for s in sessions if s.phase == "done")
    print(f"sessions={len(sessions)}")
    print(f"opened={len(live)}")
    print(f"completed={completed}")
    print(f"failed={len(sessions) - completed}")
    print(f"open_seconds={t_open - t_start:.2f}")
    print(f"hold_seconds={t_go - t_open:.2f}")
    print(f"transfer_seconds={t_end - t_go:.2f}")
    print(f"client_wall_seconds={t_end - t_start:.2f}")
    for why, n in sorted(failures.items(), key=lambda kv: -kv[1])[:20]:
        print(f"failure={n} x {why}")
    return 0 if completed == len(sessions) else 1


def cmd_scale(a):
    need = 2 * a.sessions + 64
    got = raise_nofile(need)
    if got < need:
        log(f"warning: RLIMIT_NOFILE {got} < {need} needed")
    return asyncio.run(scale_main(a))


# ------------------------------------------------------------------- sample ---


def read_rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def scrape(url):
    out = {}
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("ftp_alg_sessions ") or line.startswith("ftp_alg_pinholes "):
                    k, v = line.split()
                    out[k] = int(float(v))
    except (OSError, ValueError):
        pass
    return out


def cmd_sample(a):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    end = time.monotonic() + a.max_seconds
    with open(a.out, "a") as f:
        while not stop and time.monotonic() < end:
            m = scrape(a.metrics)
            f.write(
                f"{time.time():.1f} {m.get('ftp_alg_sessions', -1)} "
                f"{m.get('ftp_alg_pinholes', -1)} {read_rss_kb(a.pid)}\n"
            )
            f.flush()
            time.sleep(a.interval)
    return 0


def cmd_nft_elements(_a):
    data = json.load(sys.stdin)
    n = 0
    for obj in data.get("nftables", []):
        s = obj.get("set")
        if s:
            n += len(s.get("elem", []))
    print(n)
    return 0


# -------------------------------------------------------------- scope ---
# Host mode (scripts/host.sh): what a pinhole admits, checked from outside
# the session. The shell probes from other namespaces at the points where
# this peer waits for a file DIR/goN; this peer only runs the session.


def cmd_probe(a):
    """One TCP connect: prints connected, refused or timeout. A host firewall
    that drops (no pinhole) gives timeout; a pinhole that admits the SYN to
    a closed port gives refused."""
    try:
        src = (a.source, 0) if a.source else None
        s = socket.create_connection((a.host, a.port), timeout=a.timeout, source_address=src)
        s.close()
        print("connected")
    except ConnectionRefusedError:
        print("refused")
    except (socket.timeout, TimeoutError):
        print("timeout")
    except OSError as e:
        print(f"error {e.errno}")
    return 0


def _sync(a, name, text=""):
    """Writes DIR/NAME (atomically, TEXT as its content)."""
    tmp = os.path.join(a.sync, "." + name)
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(a.sync, name))


def _wait(a, name):
    deadline = time.monotonic() + a.wait_timeout
    path = os.path.join(a.sync, name)
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {path} within {a.wait_timeout} s")
        time.sleep(0.02)


def _announce(a, sock, rd, cmd):
    """Sends the announcement; returns (address, port, listener or None).
    Passive: the address and port of the 227/229 reply (the 227 address as
    written, not the control peer's: a wrong address must fail). Active: a
    listener on the control connection's own address, announced."""
    if cmd in ("PASV", "EPSV"):
        sock.sendall(cmd.encode() + b"\r\n")
        code, line = rd.reply()
        if cmd == "PASV":
            expect(code, line, (227,))
            m = re.search(rb"(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)", line)
            n = [int(x) for x in m.groups()]
            return ".".join(map(str, n[:4])), n[4] * 256 + n[5], None, line.decode()
        expect(code, line, (229,))
        m = EPSV_RE.search(line)
        return sock.getpeername()[0], int(m.group(1)), None, line.decode()
    fam = sock.family
    here = sock.getsockname()[0]
    lst = socket.socket(fam, socket.SOCK_STREAM)
    lst.bind((here, 0))
    lst.listen(4)
    port = lst.getsockname()[1]
    if cmd == "PORT":
        text = "PORT " + ",".join(here.split(".") + [str(port >> 8), str(port & 255)])
    else:
        text = f"EPRT |{2 if fam == socket.AF_INET6 else 1}|{here}|{port}|"
    sock.sendall(text.encode() + b"\r\n")
    code, line = rd.reply()
    expect(code, line, (200,))
    return here, port, lst, text


def sha256_until_eof(conn):
    """sha256 (hex) of what a data connection carries until its end; closes it."""
    h = hashlib.sha256()
    while True:
        b = conn.recv(65536)
        if not b:
            break
        h.update(b)
    conn.close()
    return h.hexdigest()


def _retr(a, sock, rd, addr, port, lst):
    """RETR FILE over the announced data connection; returns its sha256.
    Active: a connection from any host but the server fails the session."""
    if lst is None:
        data = socket.create_connection((addr, port), timeout=a.timeout)
        sock.sendall(f"RETR {a.file}\r\n".encode())
        code, line = rd.reply()
        expect(code, line, (125, 150))
    else:
        sock.sendall(f"RETR {a.file}\r\n".encode())
        code, line = rd.reply()
        expect(code, line, (125, 150))
        lst.settimeout(a.timeout)
        data, peer = lst.accept()
        if peer[0] != sock.getpeername()[0]:
            raise RuntimeError(f"data connection from {peer[0]}, not from the server")
        lst.close()
    data.settimeout(a.timeout)
    digest = sha256_until_eof(data)
    code, line = rd.reply()
    expect(code, line, (226, 250))
    return digest


def cmd_scope(a):
    """One session with two announcements (--cmd PASV, EPSV, PORT or EPRT):
    DIR/announced ("ADDR PORT REPLY"), wait go1 (the shell probes from a
    third host), the transfer (prints "sha256 HEX"), DIR/used, wait go2
    (the shell probes the used port again), a second announcement
    DIR/announced2 that is never used, QUIT, DIR/quit, wait go3 (the shell
    probes the second one; an active listener stays open until then)."""
    sock, rd = login(a.host, a.port, a.timeout)
    sock.sendall(b"TYPE I\r\n")
    code, line = rd.reply()
    expect(code, line, (200,))
    addr, port, lst, text = _announce(a, sock, rd, a.cmd)
    _sync(a, "announced", f"{addr} {port} {text}\n")
    _wait(a, "go1")
    print("sha256", _retr(a, sock, rd, addr, port, lst), flush=True)
    _sync(a, "used")
    _wait(a, "go2")
    addr2, port2, lst2, text2 = _announce(a, sock, rd, a.cmd)
    sock.sendall(b"QUIT\r\n")
    code, line = rd.reply()
    expect(code, line, (221,))
    sock.close()
    _sync(a, "quit", f"{addr2} {port2} {text2}\n")
    _wait(a, "go3")
    if lst2 is not None:
        lst2.close()
    return 0


# ------------------------------------------------------------------- ftps ---
# FTPS (scripts/ftps.sh): what a session-scoped pinhole admits while the
# session lives and after it ends. TLS hides the PASV port from the gateway;
# this peer knows it and tells the driver, which probes from other hosts.


def cmd_tls_hold(a):
    import ftplib
    import ssl

    # A lab certificate made by the test: nothing to verify it against.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    f = ftplib.FTP_TLS(context=ctx, timeout=a.timeout)
    f.connect(a.host, a.port)
    f.auth()
    f.login()
    f.prot_p()
    f.voidcmd("TYPE I")
    host, port = ftplib.parse227(f.sendcmd("PASV"))
    print("held", port, flush=True)
    _sync(a, "held", f"{port}\n")
    _wait(a, "go1")
    try:
        raw = socket.create_connection((host, port), timeout=a.timeout)
        f.putcmd("RETR small.bin")
        resp = f.getresp()
        if not resp.startswith("150"):
            raise ftplib.error_reply(resp)
        conn = ctx.wrap_socket(raw, server_hostname=host, session=f.sock.session)
        got = sha256_until_eof(conn)
        f.voidresp()
        print("transfer ok" if got == a.sha256 else f"transfer FAIL sha256 {got}", flush=True)
    except (OSError, ftplib.Error) as e:
        print("transfer FAIL", e, flush=True)
    _sync(a, "used")
    _wait(a, "go2")
    f.quit()
    f.close()
    print("quit", flush=True)
    _sync(a, "quit")
    return 0


def cmd_listen(a):
    fam = socket.AF_INET6 if ":" in a.host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.host, a.port))
    s.listen(16)
    print("listening", flush=True)
    end = time.monotonic() + a.seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return 0
        s.settimeout(left)
        try:
            c, peer = s.accept()
        except (socket.timeout, TimeoutError):
            return 0
        print("connection from", peer[0], flush=True)
        try:
            c.sendall(b"spare listener\r\n")
        except OSError:
            pass
        c.close()


# --------------------------------------------------------------------- main ---


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    q = sub.add_parser("latency")
    q.add_argument("--host", required=True)
    q.add_argument("--port", type=int, default=21)
    q.add_argument("--n", type=int, required=True)
    q.add_argument("--warmup", type=int, default=50)
    q.add_argument("--timeout", type=float, default=5.0)
    q.add_argument("--out", required=True)
    q.set_defaults(fn=cmd_latency)

    q = sub.add_parser("load")
    q.add_argument("--host", required=True)
    q.add_argument("--port", type=int, default=21)
    q.add_argument("--source", required=True)
    q.add_argument("--conns", type=int, required=True)
    q.add_argument("--seconds", type=float, required=True)
    q.add_argument("--step-timeout", type=float, default=10.0)
    q.set_defaults(fn=cmd_load)

    q = sub.add_parser("latency-report")
    q.add_argument("--sample", action="append", required=True, metavar="MODE=FILE")
    q.set_defaults(fn=cmd_latency_report)

    q = sub.add_parser("scale")
    q.add_argument("--host", required=True)
    q.add_argument("--port", type=int, default=21)
    q.add_argument("--sessions", type=int, required=True)
    q.add_argument("--file", required=True)
    q.add_argument("--sha256", required=True)
    q.add_argument("--size", type=int, required=True)
    q.add_argument("--sync", required=True, help="directory for the open/go handshake")
    q.add_argument("--connect-concurrency", type=int, default=32)
    q.add_argument("--xfer-concurrency", type=int, default=1000000)
    q.add_argument("--step-timeout", type=float, default=20.0)
    q.add_argument("--open-timeout", type=float, default=90.0)
    q.add_argument("--hold-timeout", type=float, default=30.0)
    q.add_argument("--xfer-timeout", type=float, default=90.0)
    q.set_defaults(fn=cmd_scale)

    q = sub.add_parser("sample")
    q.add_argument("--pid", type=int, required=True)
    q.add_argument("--metrics", required=True)
    q.add_argument("--out", required=True)
    q.add_argument("--interval", type=float, default=0.5)
    q.add_argument("--max-seconds", type=float, default=600)
    q.set_defaults(fn=cmd_sample)

    q = sub.add_parser("probe")
    q.add_argument("--host", required=True)
    q.add_argument("--port", type=int, required=True)
    q.add_argument("--source", help="local address to connect from")
    q.add_argument("--timeout", type=float, default=1.5)
    q.set_defaults(fn=cmd_probe)

    q = sub.add_parser("scope")
    q.add_argument("--host", required=True)
    q.add_argument("--port", type=int, default=21)
    q.add_argument("--cmd", choices=["PASV", "EPSV", "PORT", "EPRT"], required=True)
    q.add_argument("--file", default="file.bin")
    q.add_argument("--sync", required=True, help="directory for the announced/go handshake")
    q.add_argument("--timeout", type=float, default=10.0)
    q.add_argument("--wait-timeout", type=float, default=30.0)
    q.set_defaults(fn=cmd_scope)

    q = sub.add_parser("nft-elements")
    q.set_defaults(fn=cmd_nft_elements)

    q = sub.add_parser("tls-hold")
    q.add_argument("--host", required=True)
    q.add_argument("--port", type=int, default=21)
    q.add_argument("--sync", required=True, help="directory for the held/go1/used/go2/quit handshake")
    q.add_argument("--sha256", required=True, help="of small.bin")
    q.add_argument("--timeout", type=float, default=10.0)
    q.add_argument("--wait-timeout", type=float, default=60.0)
    q.set_defaults(fn=cmd_tls_hold)

    q = sub.add_parser("listen")
    q.add_argument("--host", required=True)
    q.add_argument("--port", type=int, required=True)
    q.add_argument("--seconds", type=float, default=300)
    q.set_defaults(fn=cmd_listen)

    a = p.parse_args()
    sys.exit(a.fn(a))


if __name__ == "__main__":
    main()
