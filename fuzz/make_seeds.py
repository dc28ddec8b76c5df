#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/.

The `session` and `engine_segments` targets decode their input with the
`arbitrary` crate (1.x), so their seeds are encoded here the way
`arbitrary` reads them: integers little-endian, `bool` as one byte (bit 0),
an enum variant as a u32 `v` with `(v * variant_count) >> 32 == index`,
a `Vec` field as elements each preceded by a 0x01 byte and closed by 0x00,
and the last field of the input struct as elements each preceded by 0x01
up to the end of the data. Check a seed with
`cargo fuzz fmt <target> fuzz/corpus/<target>/<file>`.

If the input types in fuzz_targets/ change, update the variant lists below
and run: python3 fuzz/make_seeds.py
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def variant(names, name):
    i, n = names.index(name), len(names)
    v = -(-(i << 32) // n)  # ceil(i * 2^32 / n)
    assert (v * n) >> 32 == i
    return struct.pack("<I", v)


def b(x):
    return bytes([1 if x else 0])


def u16(x):
    return struct.pack("<H", x)


def i16(x):
    return struct.pack("<h", x)


def u32(x):
    return struct.pack("<I", x)


def vec(items):
    """A Vec field that is not the last one: each element after 0x01, then 0x00."""
    return b"".join(b"\x01" + it for it in items) + b"\x00"


def rest(items):
    """The last field of the input: each element after 0x01, to the end."""
    return b"".join(b"\x01" + it for it in items)


def byte_vec(data):
    return vec([bytes([c]) for c in data])


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- parse_line
PARSE_LINE = {
    "port": b"PORT 198,51,100,2,195,80\r\n",
    "port_lower_zeros": b"port  010,000,002,001,004,001  \n",
    "eprt_v4": b"EPRT |1|198.51.100.2|6000|\r\n",
    "eprt_v6": b"eprt !2!2001:db8:1::2!6001!\n",
    "reply_227": b"227 Entering Passive Mode (192,0,2,10,39,16).\r\n",
    "reply_227_bare": b"227 =192,0,2,10,0,21\n",
    "reply_229": b"229 Entering Extended Passive Mode (|||6446|)\r\n",
    "reply_multi": b"230-Welcome\r\n",
    "pasv": b"PASV\r\n",
}

# ------------------------------------------------------------------- session
TEMPLATE = ["Greeting", "Greeting120", "Pasv", "Epsv", "Port", "Eprt", "Eprt6",
            "Auth", "Rein", "Quit", "Reply227", "Reply229", "Reply234", "Reply221",
            "Reply200", "Reply150", "Reply500", "Multi227Start", "Multi230Start", "Continuation"]
ENDING = ["CrLf", "Lf", "None", "SpacesCrLf"]
BODY = ["Template", "TemplatePlus", "Raw"]
STEP = ["Line", "Overlong", "ResumeCleartext"]


def s_line(from_client, body, ending="CrLf"):
    return variant(STEP, "Line") + b(from_client) + body + variant(ENDING, ending)


def s_t(name):
    return variant(BODY, "Template") + variant(TEMPLATE, name)


def s_raw(data):
    return variant(BODY, "Raw") + byte_vec(data)


def session(resync, steps):
    return b(resync) + rest(steps)


C, S = True, False
SESSION = {
    "passive": session(False, [
        s_line(S, s_t("Greeting")), s_line(C, s_t("Pasv")), s_line(S, s_t("Reply227")),
        s_line(C, s_t("Epsv")), s_line(S, s_t("Reply150")), s_line(S, s_t("Reply229")),
    ]),
    "multiline_227": session(False, [
        s_line(S, s_t("Greeting120"), "Lf"), s_line(S, s_t("Greeting")),
        s_line(C, s_t("Pasv")), s_line(S, s_t("Multi227Start")),
        s_line(S, s_t("Continuation")), s_line(S, s_t("Reply227")),
    ]),
    "active_then_tls": session(False, [
        s_line(S, s_t("Greeting")), s_line(C, s_t("Port")), s_line(S, s_t("Reply500")),
        s_line(C, s_t("Eprt6"), "SpacesCrLf"), s_line(S, s_t("Reply200")),
        s_line(C, s_t("Auth")), s_line(S, s_t("Reply234")), s_line(C, s_t("Port")),
        variant(STEP, "ResumeCleartext"), s_line(C, s_t("Pasv")), s_line(S, s_t("Reply227")),
    ]),
    "resync": session(True, [
        s_line(C, s_t("Eprt")), s_line(S, s_t("Reply200")), s_line(C, s_raw(b"PORT 1,2,3,4,5,6")),
        s_line(S, s_raw(b"200 ok")),
    ]),
    "rein_quit": session(False, [
        s_line(S, s_t("Greeting")), s_line(C, s_t("Port")), s_line(C, s_t("Rein")),
        s_line(S, s_t("Reply200")), s_line(S, s_t("Greeting")), s_line(C, s_t("Quit")),
        s_line(S, s_t("Reply221")),
    ]),
    "client_first": session(False, [
        s_line(C, s_raw(b"GET / HTTP/1.1")), s_line(S, s_t("Greeting")), s_line(C, s_t("Port")),
    ]),
}

# ----------------------------------------------------------- engine_segments
FRAG = ["Port", "Eprt", "EprtV6", "Pasv", "Epsv", "Auth", "Rein", "Quit", "Ccc", "Code200",
        "Code220", "Code227", "Code229", "Code234", "Code500", "Code227Dash", "ClientHost", "ServerHost",
        "OtherHost", "Tuple227", "Tuple229", "EprtAddr", "EprtAddr6", "PortPair",
        "Number", "Comma", "Pipe", "Space", "Crlf", "Lf", "Cr", "Text", "Byte",
        "TlsRecord"]
SEQ = ["Next", "Rel", "Base"]
ACK = ["None", "Next", "Rel"]
OPTIONS = ["None", "Sack", "Raw"]
NAT = ["None", "Identity", "Snat", "Dnat", "Both"]
OP = ["Segment", "Raw", "PollMs", "PollSecs", "Nat"]


def f(name, *args):
    out = variant(FRAG, name)
    if name == "PortPair":
        out += bytes(args)
    elif name == "Number":
        out += u16(args[0])
    elif name == "Text":
        out += byte_vec(args[0])
    elif name == "Byte":
        out += bytes(args)
    elif name == "TlsRecord":  # (alert, body)
        out += b(args[0]) + byte_vec(args[1])
    return out


def text(data):
    return f("Text", data)


def nat(name, port=0):
    out = variant(NAT, name)
    if name in ("Snat", "Both"):
        out += u16(port)
    return out


def seg(to_server, payload=(), syn=False, fin=False, rst=False, ack="Next",
        seq=("Next",), sack=None, second=False, patches=(), trailer=b""):
    out = variant(OP, "Segment") + b(to_server) + b(second) + b(syn) + b(fin) + b(rst)
    out += variant(SEQ, seq[0]) + (i16(seq[1]) if len(seq) > 1 else b"")
    if isinstance(ack, tuple):
        out += variant(ACK, "Rel") + i16(ack[1])
    else:
        out += variant(ACK, ack)
    if sack is None:
        out += variant(OPTIONS, "None")
    else:
        out += variant(OPTIONS, "Sack") + vec([i16(s) + bytes([n]) for s, n in sack])
    out += vec(list(payload))
    out += vec([u16(at) + bytes([v]) for at, v in patches])
    out += byte_vec(trailer)
    return out


def poll_secs(n):
    return variant(OP, "PollSecs") + u16(n)


def engine(v6, nat_sel, ops, client_isn=1000, server_isn=0xFFFFFF00, implicit=False):
    return b(v6) + b(implicit) + u32(client_isn) + u32(server_isn) + nat_sel + rest(ops)


def handshake():
    return [seg(True, syn=True, ack="None"), seg(False, syn=True), seg(True)]


def close():
    return [seg(True, fin=True), seg(False, fin=True), seg(True)]


CRLF = f("Crlf")
ENGINE = {
    "active_snat": engine(False, nat("Snat", 40000), handshake() + [
        seg(False, [f("Code220"), text(b"ready"), CRLF]),
        seg(True, [f("Port"), f("ClientHost"), f("PortPair", 195, 80), CRLF]),
        seg(False, [text(b"200 PORT ok"), CRLF]),
        seg(True, [text(b"RETR f"), CRLF]),
        poll_secs(40),
    ] + close() + [poll_secs(31)]),
    "passive_dnat": engine(False, nat("Dnat"), handshake() + [
        seg(False, [f("Code220"), CRLF]),
        seg(True, [f("Pasv")]),
        seg(False, [f("Code227"), text(b"Entering Passive Mode ("), f("OtherHost"),
                    f("PortPair", 195, 80), text(b")."), CRLF]),
        seg(True, [f("Epsv")]),
        seg(False, [f("Code229"), f("Tuple229"), CRLF]),
        seg(True, [f("Quit")], sack=[(0, 10)]),
        seg(False, [text(b"221 Goodbye"), CRLF]),
    ] + close()),
    "split_port_retransmit": engine(False, nat("Both", 2000), handshake() + [
        seg(False, [f("Code220"), CRLF]),
        seg(True, [f("Port"), f("ClientHost")]),
        seg(True, [f("PortPair", 4, 1), CRLF]),
        seg(True, [f("Port"), f("ClientHost"), f("PortPair", 4, 1), CRLF], seq=("Rel", -32)),
        seg(False, [text(b"200 ok"), CRLF], sack=[(-5, 5)], ack=("Rel", -3)),
        seg(True, [text(b"NOOP"), CRLF], seq=("Rel", 100)),
        seg(False, [], rst=True),
    ]),
    "eprt_v6": engine(True, nat("Snat", 50000), handshake() + [
        seg(False, [f("Code220"), CRLF]),
        seg(True, [f("EprtV6"), f("EprtAddr6"), f("Number", 6001), f("Pipe"), CRLF]),
        seg(False, [f("Code500"), CRLF]),
        seg(True, [f("Eprt"), f("EprtAddr"), f("Number", 6000), f("Pipe"), CRLF],
            second=True),
    ]),
    "tls_ccc": engine(False, nat("Snat", 40000), handshake() + [
        seg(False, [f("Code220"), CRLF]),
        seg(True, [f("Auth")]),
        seg(False, [f("Code234"), CRLF]),
        seg(True, [f("TlsRecord", False, b"\x16hello")]),
        seg(False, [f("TlsRecord", False, b"\x16hello"), f("TlsRecord", False, b"CCC ok")]),
        seg(True, [f("TlsRecord", True, b"\x01\x00")]),
        seg(False, [f("TlsRecord", True, b"\x01\x00")]),
        seg(True, [f("Port"), f("ClientHost"), f("PortPair", 4, 1), CRLF]),
        seg(False, [f("Code200"), CRLF]),
    ]),
    # Implicit TLS (port 990) behind DNAT: the range opens with the
    # handshake and closes with the FINs.
    "implicit_tls_dnat": engine(False, nat("Dnat"), handshake() + [
        seg(True, [f("TlsRecord", False, b"\x16hello")]),
        seg(False, [f("TlsRecord", False, b"\x16hello")]),
        seg(True, [f("TlsRecord", False, b"PASV")], second=True),
    ] + close() + [poll_secs(31)], implicit=True),
    "midstream_tls_raw": engine(False, nat("Identity"), [
        seg(True, [f("Auth")]),
        seg(False, [f("Code234"), CRLF]),
        seg(True, [f("Port"), f("ClientHost"), f("PortPair", 4, 1), CRLF],
            patches=[(9, 6)], trailer=b"\x00\x00"),
        variant(OP, "Raw") + byte_vec(bytes.fromhex("4500002800004000400600000a0000010a000002")),
        variant(OP, "Nat") + nat("None"),
        poll_secs(7300),
    ]),
}

if __name__ == "__main__":
    for name, data in PARSE_LINE.items():
        write("parse_line", name, data)
    for name, data in SESSION.items():
        write("session", name, data)
    for name, data in ENGINE.items():
        write("engine_segments", name, data)
