//! Sequences of IP/TCP packets through one `Engine` with the default
//! configuration plus `[[ftps]]` entries for the server (its public and
//! its real address), so that `AUTH TLS` ... `234` and the implicit-TLS
//! port open FTPS ranges.
//!
//! The packets are built with etherparse from structured input: direction
//! between client 198.51.100.2:40000 (or :40001, a second session) and
//! server 203.0.113.10:21, or :990 when `implicit` is set (IPv6 addresses
//! when `v6` is set), flags,
//! sequence and acknowledgement numbers near each side's stream position,
//! an optional SACK option or raw TCP options, and a payload assembled from
//! FTP fragments ("PORT ", "227 ", "(192,0,2,10,4,1)", "\r\n", ...), TLS
//! records (to follow `AUTH TLS` ... `CCC`) and raw bytes. Some packets are
//! byte-patched after building, and some are completely raw bytes. NAT
//! questions (`Engine::handle_with`) are answered with a mapping picked by
//! the input (or none).
//!
//! Checks, besides the absence of panics:
//! * a `Verdict::Replace` packet parses again with `TcpSegment::parse`,
//!   with the same source and destination, and (for packets built here)
//!   with valid IPv4 header and TCP checksums;
//! * every pinhole opened has a destination port >= 1024;
//! * the engine does not ask twice in a row for the NAT mapping of the same
//!   packet;
//! * every session is forgotten once all timeouts have passed;
//! * every FTPS range opened is from the address of the client of the
//!   packet's session, to ports
//!   >= 1024; a range closed was open; none is left once every session is
//!   forgotten (in the kernel's view, from the decisions, and the engine's).

#![no_main]

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use etherparse::{IpSlice, PacketBuilder, TcpOptionElement, TcpSlice};
use ftp_alg_proto::engine::{Engine, EngineConfig, NatMapping, Verdict};
use ftp_alg_proto::ftps::FtpsServer;
use ftp_alg_proto::packet::TcpSegment;
use ftp_alg_proto::pinhole::RangePinhole;
use libfuzzer_sys::fuzz_target;

/// Pieces payloads are made of, biased towards what the engine parses.
#[derive(Arbitrary, Debug)]
enum Frag {
    Port,
    Eprt,
    EprtV6,
    Pasv,
    Epsv,
    Auth,
    Rein,
    Quit,
    Ccc,
    Code200,
    Code220,
    Code227,
    Code229,
    Code234,
    Code500,
    Code227Dash,
    ClientHost,
    ServerHost,
    OtherHost,
    Tuple227,
    Tuple229,
    EprtAddr,
    EprtAddr6,
    PortPair(u8, u8),
    Number(u16),
    Comma,
    Pipe,
    Space,
    Crlf,
    Lf,
    Cr,
    Text(Vec<u8>),
    Byte(u8),
    /// A TLS record (RFC 5246 §6.2.1): an alert (as `close_notify` after
    /// `CCC`, after which cleartext resumes) or application data.
    TlsRecord {
        alert: bool,
        body: Vec<u8>,
    },
}

impl Frag {
    fn write(&self, out: &mut Vec<u8>) {
        let s: &[u8] = match self {
            Frag::Port => b"PORT ",
            Frag::Eprt => b"EPRT |1|",
            Frag::EprtV6 => b"EPRT |2|",
            Frag::Pasv => b"PASV\r\n",
            Frag::Epsv => b"EPSV\r\n",
            Frag::Auth => b"AUTH TLS\r\n",
            Frag::Rein => b"REIN\r\n",
            Frag::Quit => b"QUIT\r\n",
            Frag::Ccc => b"CCC\r\n",
            Frag::Code200 => b"200 ",
            Frag::Code220 => b"220 ",
            Frag::Code227 => b"227 ",
            Frag::Code229 => b"229 ",
            Frag::Code234 => b"234 ",
            Frag::Code500 => b"500 ",
            Frag::Code227Dash => b"227-",
            Frag::ClientHost => b"198,51,100,2,",
            Frag::ServerHost => b"203,0,113,10,",
            Frag::OtherHost => b"10,0,0,5,",
            Frag::Tuple227 => b"(192,0,2,10,4,1)",
            Frag::Tuple229 => b"(|||6446|)",
            Frag::EprtAddr => b"198.51.100.2|",
            Frag::EprtAddr6 => b"2001:db8:1::2|",
            Frag::Comma => b",",
            Frag::Pipe => b"|",
            Frag::Space => b" ",
            Frag::Crlf => b"\r\n",
            Frag::Lf => b"\n",
            Frag::Cr => b"\r",
            Frag::Text(t) => t,
            Frag::Byte(b) => std::slice::from_ref(b),
            Frag::PortPair(a, b) => {
                out.extend_from_slice(format!("{a},{b}").as_bytes());
                return;
            }
            Frag::TlsRecord { alert, body } => {
                let body = &body[..body.len().min(300)];
                out.extend_from_slice(&[if *alert { 21 } else { 23 }, 3, 3]);
                out.extend_from_slice(&(body.len() as u16).to_be_bytes());
                out.extend_from_slice(body);
                return;
            }
            Frag::Number(n) => {
                out.extend_from_slice(n.to_string().as_bytes());
                return;
            }
        };
        out.extend_from_slice(s);
    }
}

/// Where a segment's sequence number lies.
#[derive(Arbitrary, Debug)]
enum SeqSel {
    /// The sender's next byte (the ISN for a SYN).
    Next,
    /// Relative to the sender's next byte: retransmissions, holes.
    Rel(i16),
    /// Relative to the sender's ISN.
    Base(i16),
}

/// The acknowledgement number.
#[derive(Arbitrary, Debug)]
enum AckSel {
    /// ACK flag off.
    None,
    /// What the other side has sent so far.
    Next,
    /// Relative to what the other side has sent.
    Rel(i16),
}

#[derive(Arbitrary, Debug)]
enum Options {
    None,
    /// SACK blocks relative to the other side's next byte: (start, length).
    Sack(Vec<(i16, u8)>),
    /// Raw option bytes (padded with END to a multiple of 4, at most 40).
    Raw(Vec<u8>),
}

/// How the NAT question is answered.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum NatSel {
    /// The gateway does not translate the connection.
    None,
    /// A mapping that changes nothing.
    Identity,
    /// Source NAT of the client to a public address (and maybe port).
    Snat(u16),
    /// Destination NAT of the server to a private address.
    Dnat,
    /// Both.
    Both(u16),
}

#[derive(Arbitrary, Debug)]
struct Seg {
    to_server: bool,
    second_client: bool,
    syn: bool,
    fin: bool,
    rst: bool,
    seq: SeqSel,
    ack: AckSel,
    options: Options,
    payload: Vec<Frag>,
    /// Byte patches applied to the built packet: (index, value).
    patches: Vec<(u16, u8)>,
    /// Bytes appended after the IP packet.
    trailer: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Segment(Seg),
    Raw(Vec<u8>),
    /// Advance the clock by this many milliseconds and poll.
    PollMs(u16),
    /// Advance the clock by this many seconds and poll.
    PollSecs(u16),
    /// Change how the following NAT questions are answered.
    Nat(NatSel),
}

#[derive(Arbitrary, Debug)]
struct Input {
    v6: bool,
    /// The server port is an implicit-TLS one (990).
    implicit: bool,
    client_isn: u32,
    server_isn: u32,
    nat: NatSel,
    ops: Vec<Op>,
}

/// Per direction, per client: the next sequence number the sender uses.
#[derive(Clone, Copy)]
struct Stream {
    isn: u32,
    next: u32,
}

struct Addrs {
    clients: [SocketAddr; 2],
    server: SocketAddr,
    client_public: IpAddr,
    server_real: IpAddr,
}

impl Addrs {
    fn new(v6: bool, port: u16) -> Self {
        let mut a = Self::on_21(v6);
        a.server.set_port(port);
        a
    }

    fn on_21(v6: bool) -> Self {
        if v6 {
            let c: IpAddr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2).into();
            Addrs {
                clients: [SocketAddr::new(c, 40000), SocketAddr::new(c, 40001)],
                server: SocketAddr::new(
                    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x10).into(),
                    21,
                ),
                client_public: Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1).into(),
                server_real: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 5).into(),
            }
        } else {
            let c: IpAddr = Ipv4Addr::new(198, 51, 100, 2).into();
            Addrs {
                clients: [SocketAddr::new(c, 40000), SocketAddr::new(c, 40001)],
                server: SocketAddr::new(Ipv4Addr::new(203, 0, 113, 10).into(), 21),
                client_public: Ipv4Addr::new(192, 0, 2, 1).into(),
                server_real: Ipv4Addr::new(10, 0, 0, 5).into(),
            }
        }
    }

    /// The mapping the shell would give for the connection `src -> dst`.
    fn mapping(&self, sel: NatSel, src: SocketAddr, dst: SocketAddr) -> Option<NatMapping> {
        // Keep the families consistent, as conntrack would: raw packets
        // may carry any addresses.
        let same_family = src.is_ipv4() == self.client_public.is_ipv4()
            && dst.is_ipv4() == self.server_real.is_ipv4();
        let snat = |port: u16| {
            if same_family {
                SocketAddr::new(self.client_public, port.max(1))
            } else {
                src
            }
        };
        let dnat = || {
            if same_family {
                SocketAddr::new(self.server_real, dst.port())
            } else {
                dst
            }
        };
        match sel {
            NatSel::None => None,
            NatSel::Identity => Some(NatMapping {
                client_public: src,
                server_real: dst,
            }),
            NatSel::Snat(port) => Some(NatMapping {
                client_public: snat(port),
                server_real: dst,
            }),
            NatSel::Dnat => Some(NatMapping {
                client_public: src,
                server_real: dnat(),
            }),
            NatSel::Both(port) => Some(NatMapping {
                client_public: snat(port),
                server_real: dnat(),
            }),
        }
    }
}

/// True when `a` is after `b` in sequence space.
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

const MAX_OPS: usize = 64;
const MAX_PAYLOAD: usize = 2000;

/// Builds the packet for `seg`; returns it and whether it is unpatched.
fn build(seg: &Seg, addrs: &Addrs, streams: &mut [[Stream; 2]; 2]) -> Option<(Vec<u8>, bool)> {
    let ci = seg.second_client as usize;
    let client = addrs.clients[ci];
    let (src, dst, this, other) = if seg.to_server {
        (client, addrs.server, 0, 1)
    } else {
        (addrs.server, client, 1, 0)
    };
    let mut payload = Vec::new();
    for f in &seg.payload {
        f.write(&mut payload);
        if payload.len() > MAX_PAYLOAD {
            payload.truncate(MAX_PAYLOAD);
            break;
        }
    }
    let st = streams[ci][this];
    let seq = match seg.seq {
        SeqSel::Next if seg.syn => st.isn,
        SeqSel::Next => st.next,
        SeqSel::Rel(d) => st.next.wrapping_add(d as i32 as u32),
        SeqSel::Base(d) => st.isn.wrapping_add(d as i32 as u32),
    };
    let other_next = streams[ci][other].next;
    let builder = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
        _ => unreachable!("one family per run"),
    };
    let mut tcp = builder.tcp(src.port(), dst.port(), seq, 64240);
    match seg.ack {
        AckSel::None => {}
        AckSel::Next => tcp = tcp.ack(other_next),
        AckSel::Rel(d) => tcp = tcp.ack(other_next.wrapping_add(d as i32 as u32)),
    }
    if seg.syn {
        tcp = tcp.syn();
    }
    if seg.fin {
        tcp = tcp.fin();
    }
    if seg.rst {
        tcp = tcp.rst();
    }
    if !payload.is_empty() {
        tcp = tcp.psh();
    }
    match &seg.options {
        Options::None => {}
        Options::Sack(blocks) if !blocks.is_empty() => {
            let b: Vec<(u32, u32)> = blocks
                .iter()
                .take(4)
                .map(|&(start, len)| {
                    let l = other_next.wrapping_add(start as i32 as u32);
                    (l, l.wrapping_add(len as u32))
                })
                .collect();
            let rest = [b.get(1).copied(), b.get(2).copied(), b.get(3).copied()];
            let opts = [
                TcpOptionElement::Noop,
                TcpOptionElement::Noop,
                TcpOptionElement::SelectiveAcknowledgement(b[0], rest),
            ];
            // Four blocks do not fit with the NOPs: drop them then.
            tcp = match tcp.options(&opts) {
                Ok(t) => t,
                Err(_) => return None,
            };
        }
        Options::Sack(_) => {}
        Options::Raw(raw) => {
            let mut raw: Vec<u8> = raw.iter().copied().take(40).collect();
            while raw.len() % 4 != 0 {
                raw.push(0);
            }
            tcp = match tcp.options_raw(&raw) {
                Ok(t) => t,
                Err(_) => return None,
            };
        }
    }
    let mut out = Vec::new();
    tcp.write(&mut out, &payload).ok()?;

    // Track the sender's stream position.
    let end = seq
        .wrapping_add(payload.len() as u32)
        .wrapping_add(seg.syn as u32)
        .wrapping_add(seg.fin as u32);
    let st = &mut streams[ci][this];
    if after(end, st.next) && !after(seq, st.next) {
        st.next = end;
    }
    if seg.syn && matches!(seg.seq, SeqSel::Next) && st.next == st.isn {
        st.next = st.isn.wrapping_add(1);
    }

    let pristine = seg.patches.is_empty() && seg.trailer.is_empty();
    for &(at, v) in seg.patches.iter().take(8) {
        if !out.is_empty() {
            let i = at as usize % out.len();
            out[i] = v;
        }
    }
    out.extend(seg.trailer.iter().take(64));
    Some((out, pristine))
}

fn verify_checksums(packet: &[u8]) {
    let ip = IpSlice::from_slice(packet).expect("rewritten packet is IP");
    let tcp = TcpSlice::from_slice(ip.payload().payload).expect("rewritten packet is TCP");
    let expected = match (ip.source_addr(), ip.destination_addr()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => tcp.calc_checksum_ipv4(s.octets(), d.octets()),
        (IpAddr::V6(s), IpAddr::V6(d)) => tcp.calc_checksum_ipv6(s.octets(), d.octets()),
        _ => unreachable!(),
    }
    .expect("checksum computable");
    assert_eq!(
        tcp.checksum(),
        expected,
        "TCP checksum of a rewritten packet"
    );
    if let Some(v4) = ip.ipv4() {
        let h = v4.header().to_header();
        assert_eq!(
            h.header_checksum,
            h.calc_header_checksum(),
            "IPv4 header checksum of a rewritten packet"
        );
    }
}

fn run_packet(
    engine: &mut Engine,
    now: Instant,
    packet: &[u8],
    pristine: bool,
    addrs: &Addrs,
    nat: NatSel,
    ranges: &mut HashSet<RangePinhole>,
) {
    let original = TcpSegment::parse(packet).ok();
    let mut asked = 0;
    let decision = engine.handle_with(now, packet, |src, dst| {
        asked += 1;
        let seg = original
            .as_ref()
            .expect("NeedNat for a packet that does not parse");
        // A client's packet names its own tuple; a server's packet (a
        // session first seen from the server side) names the client as
        // the original source and itself as the reply source.
        assert!(
            (src, dst) == (seg.src, seg.dst) || (src, dst) == (seg.dst, seg.src),
            "NeedNat names the packet's tuple: asked {src} -> {dst} for {} -> {}",
            seg.src,
            seg.dst
        );
        addrs.mapping(nat, src, dst)
    });
    // handle_with debug-asserts that the engine does not ask again.
    assert!(asked <= 1, "engine asked twice for the NAT mapping");
    if let Verdict::Replace(bytes) = &decision.verdict {
        let seg = original
            .as_ref()
            .expect("a packet that does not parse is replaced");
        let again = TcpSegment::parse(bytes)
            .unwrap_or_else(|e| panic!("rewritten packet does not parse: {e:?}"));
        assert_eq!(
            (again.src, again.dst),
            (seg.src, seg.dst),
            "rewritten packet changed addresses"
        );
        if pristine {
            verify_checksums(bytes);
        }
    }
    for o in &decision.open {
        let p = o.pinhole;
        assert!(p.dport >= 1024, "pinhole to a privileged port opened: {p}");
    }
    let ends = original.as_ref().map(|seg| [seg.src.ip(), seg.dst.ip()]);
    track_ranges(ranges, &decision.open_ranges, &decision.close_ranges, ends);
}

/// The kernel's view of the FTPS ranges, kept from the decisions.
fn track_ranges(
    live: &mut HashSet<RangePinhole>,
    open: &[ftp_alg_proto::engine::RangeOpening],
    close: &[RangePinhole],
    ends: Option<[IpAddr; 2]>,
) {
    // In the shell's order: opened before the verdict, closed after it.
    for o in open {
        let r = o.range;
        assert!(r.low >= 1024 && r.low <= r.high, "range {r}");
        // For the session of the packet that asked: its client's address.
        let ends = ends.expect("a range opened for a packet that does not parse");
        assert!(
            ends.contains(&r.src),
            "range for another source: {r} ({ends:?})"
        );
        assert!(!o.lifetime.is_zero(), "range without a timeout: {r}");
        live.insert(r);
    }
    for r in close {
        assert!(live.remove(r), "range closed that was not open: {r}");
    }
}

/// `[[ftps]]` entries for the server's public and real addresses.
fn ftps_config(addrs: &Addrs) -> EngineConfig {
    let entry = |ip: IpAddr| FtpsServer {
        server: ftp_alg_proto::ftps::Prefix::new(ip, if ip.is_ipv4() { 32 } else { 128 })
            .expect("full-length prefix"),
        passive_ports: ftp_alg_proto::ftps::PortRange {
            low: 50000,
            high: 50100,
        },
    };
    EngineConfig {
        ftps: vec![entry(addrs.server.ip()), entry(addrs.server_real)],
        ..EngineConfig::default()
    }
}

fuzz_target!(|input: Input| {
    let addrs = Addrs::new(input.v6, if input.implicit { 990 } else { 21 });
    let mut engine = Engine::new(ftps_config(&addrs));
    let mut ranges = HashSet::new();
    let start = Instant::now();
    let mut elapsed = Duration::ZERO;
    let mut nat = input.nat;
    let stream = |isn: u32| Stream {
        isn,
        next: isn.wrapping_add(1),
    };
    let mut streams = [
        [stream(input.client_isn), stream(input.server_isn)],
        [
            stream(input.client_isn ^ 0x5555_5555),
            stream(input.server_isn ^ 0x5555_5555),
        ],
    ];
    for op in input.ops.iter().take(MAX_OPS) {
        let now = start + elapsed;
        match op {
            Op::Segment(seg) => {
                if let Some((packet, pristine)) = build(seg, &addrs, &mut streams) {
                    run_packet(
                        &mut engine,
                        now,
                        &packet,
                        pristine,
                        &addrs,
                        nat,
                        &mut ranges,
                    );
                }
            }
            Op::Raw(bytes) => run_packet(&mut engine, now, bytes, false, &addrs, nat, &mut ranges),
            Op::PollMs(ms) => {
                elapsed += Duration::from_millis(*ms as u64);
                let gone = engine.poll(start + elapsed);
                track_ranges(&mut ranges, &[], &gone.ranges, None);
            }
            Op::PollSecs(s) => {
                elapsed += Duration::from_secs(*s as u64);
                let gone = engine.poll(start + elapsed);
                track_ranges(&mut ranges, &[], &gone.ranges, None);
            }
            Op::Nat(sel) => nat = *sel,
        }
    }
    // Everything expires in the end.
    elapsed += Duration::from_secs(3 * 3600);
    let gone = engine.poll(start + elapsed);
    track_ranges(&mut ranges, &[], &gone.ranges, None);
    assert_eq!(
        engine.session_count(),
        0,
        "sessions left after every timeout"
    );
    assert!(ranges.is_empty(), "ranges left in the kernel: {ranges:?}");
    assert_eq!(engine.range_count(), 0, "ranges left in the engine");
});
