#!/usr/bin/env python3
"""scripts/conformance_table.py -- the conformance table as data.

Reads proto/tests/conformance/cases.toml (its header documents every field;
proto/tests/conformance/ replays the same table through the engine in Rust)
and expands one case into a flat list of actions for scripts/conformance.py's
scripted peers: snippets inlined, `if` conditions applied, placeholders
filled in with the run's data ports. No sockets, no root: run it directly to
check that every case of the table expands (`python3 conformance_table.py`).
Python 3.11 standard library only (tomllib).
"""

import os
import re
import sys
import tomllib

TABLE_PATH = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "proto", "tests", "conformance", "cases.toml"
)
SEGMENT_GAP = 0.08  # seconds between two scripted segments (default `gap`)
MAX_DEPTH = 8  # snippets nest at most this deep

STEP_KINDS = ("client", "server", "client_tls", "server_tls", "data", "run", "open", "pause")
STEP_KEYS = set(STEP_KINDS) | {"gets", "gap", "nagle", "len", "slot", "index", "ok", "closed", "probe", "why", "listen", "if"}
CASE_KEYS = {"num", "title", "expect", "about", "path", "start", "end", "ports", "flag", "extra",
             "nat_override", "steps"}


class TableError(ValueError):
    """The table says something this runner cannot play."""


def load(path=TABLE_PATH):
    with open(path, "rb") as f:
        table = tomllib.load(f)
    for spec in table["case"]:
        unknown = set(spec) - CASE_KEYS
        if unknown:
            raise TableError(f"case {spec.get('num')}: unknown keys {sorted(unknown)}")
    return table


MAX_NUM = 56  # 61000 + 900 * run + 16 * num + slot stays unique, below 65536,
SLOTS = 16  # for runs 0 to 4 (proto/tests/conformance/table.rs checks it)


def slot_port(spec, slot, run):
    """Slot `slot`'s data port in run `run` (cases.toml: `ports`)."""
    ports = spec.get("ports", [])
    p = ports[slot] if slot < len(ports) else 0
    if p > 0:
        return p + run
    if spec["num"] > MAX_NUM or slot >= SLOTS:
        raise TableError(f"case {spec['num']} slot {slot}: no data port (case numbers end at {MAX_NUM})")
    return 61000 + 900 * run + 16 * spec["num"] + slot


PLACEHOLDER = re.compile(r"\{([^}]*)\}")
SLOT_REF = re.compile(r"(port|hi|lo)(\d)(?::0(\d+))?")


def fill(text, port):
    """Fills `{portK}`, `{hiK}`, `{loK}`, `{hiK:03}`, `{C*N}`; returns bytes."""

    def sub(m):
        inner = m.group(1)
        if len(inner) >= 3 and inner[1] == "*" and inner[2:].isdigit():
            return inner[0] * int(inner[2:])
        r = SLOT_REF.fullmatch(inner)
        if not r:
            raise TableError(f"bad placeholder {{{inner}}} in {text!r}")
        p = port(int(r.group(2)))
        v = {"port": p, "hi": p >> 8, "lo": p & 0xFF}[r.group(1)]
        return f"{v:0{r.group(3)}d}" if r.group(3) else str(v)

    if "{" in PLACEHOLDER.sub("", text):
        raise TableError(f"unclosed placeholder in {text!r}")
    return PLACEHOLDER.sub(sub, text).encode()


def tls_record(kind, n):
    """A fake TLS 1.2 record: header `kind 3 3 n`, then n opaque bytes
    (byte i is (i * 73 + kind * 31 + n) mod 256; nothing is encrypted)."""
    return bytes([kind, 3, 3, n >> 8, n & 0xFF]) + bytes((i * 73 + kind * 31 + n) % 256 for i in range(n))


def expand(table, spec, flags, run):
    """The actions of case `spec` with `flags` set, in run `run` (which
    picks the data ports). Each is a dict with "do": open, send, tls, data,
    pause or finish."""
    out = []

    def port(slot):
        return slot_port(spec, slot, run)

    def applies(cond):
        if cond is None:
            return True
        if cond.startswith("!"):
            return cond[1:] not in flags
        return cond in flags

    def snippet(name, depth):
        if name not in table["snippets"]:
            raise TableError(f"unknown snippet '{name}'")
        if depth > MAX_DEPTH:
            raise TableError(f"snippets nest deeper than {MAX_DEPTH} at '{name}'")
        steps(table["snippets"][name], depth)

    def open_session(path):
        if path not in table["paths"]:
            raise TableError(f"unknown path '{path}'")
        out.append({"do": "open", "path": path})
        start = spec.get("start", "login")
        if start != "none":
            snippet(start, 1)

    def finish():
        end = spec.get("end", "noop")
        if end != "none":
            snippet(end, 1)
        out.append({"do": "finish"})

    def steps(lst, depth):
        for st in lst:
            unknown = set(st) - STEP_KEYS
            if unknown:
                raise TableError(f"unknown step keys {sorted(unknown)} in {st}")
            if applies(st.get("if")):
                step(st, depth)

    def step(st, depth):
        kinds = [k for k in STEP_KINDS if k in st]
        if len(kinds) != 1:
            raise TableError(f"a step must be exactly one kind: {st}")
        kind = kinds[0]
        if kind == "run":
            snippet(st["run"], depth + 1)
        elif kind == "open":
            finish()
            open_session(st["open"])
        elif kind == "pause":
            out.append({"do": "pause", "seconds": float(st["pause"])})
        elif kind in ("client", "server"):
            segs = [fill(t, port) for t in st[kind]]
            gets = fill(st["gets"], port) if "gets" in st else b"".join(segs)
            out.append({"do": "send", "from": kind, "segments": segs, "gets": gets,
                        "gap": float(st.get("gap", SEGMENT_GAP)), "nagle": bool(st.get("nagle", False))})
        elif kind in ("client_tls", "server_tls"):
            if "len" not in st:
                raise TableError(f"a TLS step needs `len`: {st}")
            out.append({"do": "tls", "from": kind[: -len("_tls")], "record": tls_record(st[kind], st["len"])})
        else:
            if st["data"] not in ("active", "passive"):
                raise TableError(f"data must be active or passive: {st}")
            if "ok" not in st:
                raise TableError(f"a data step needs `ok`: {st}")
            passive = st["data"] == "passive"
            out.append({
                "do": "data", "passive": passive, "port": port(st.get("slot", 0)),
                "index": st.get("index", -1), "ok": st["ok"], "closed": st.get("closed", False),
                "probe": st.get("probe", False), "why": st.get("why"),
                "listen": st.get("listen", ["server" if passive else "client"]),
            })

    open_session(spec["path"])
    steps(spec["steps"], 0)
    finish()
    return out


def main():
    table = load()
    n = 0
    for spec in table["case"]:
        flag_sets = [set()] + ([{spec["flag"]}] if spec.get("flag") else [])
        for flags in flag_sets:
            for run in range(5):
                acts = expand(table, spec, flags, run)
                n += 1
        print(f"case {spec['num']:2}: {len(acts):2} actions, {spec['title']}")
    print(f"{len(table['case'])} cases, {n} expansions ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
