//! A simulated control connection through the engine: two TCP peers that
//! send lines cut into chosen segments, retransmit what was not
//! acknowledged, and reassemble what they receive by sequence number.

#![allow(dead_code)]

mod timed;

#[allow(unused_imports)] // not every test file uses the timed sender
pub use timed::{Receiver, Sender};

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use ftp_alg_proto::durable::LabelLayout;
use ftp_alg_proto::engine::{Engine, EngineConfig, Lookup, NatMapping, Verdict};
use ftp_alg_proto::event::Event;
use ftp_alg_proto::packet::TcpSegment;
use ftp_alg_proto::pinhole::{Pinhole, RangePinhole};

/// Which side sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// One direction's sender and receiver state.
#[derive(Default)]
struct Stream {
    /// Sender's initial sequence number.
    isn: u32,
    /// Everything the sender wrote, in order.
    written: Vec<u8>,
    /// Original-space offset the sender believes acknowledged.
    acked: usize,
    /// Bytes the receiver got, by wire offset from isn + 1.
    received: BTreeMap<u32, u8>,
}

impl Stream {
    /// Receiver's contiguous wire offset.
    fn rcv_next(&self) -> u32 {
        let mut n = 0;
        while self.received.contains_key(&n) {
            n += 1;
        }
        n
    }
}

/// What a forwarded segment brought its receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Bytes the receiver did not have yet.
    New,
    /// Only bytes (or a sequence number) below what it had: a duplicate.
    Old,
    /// No payload, at the receiver's next sequence number (a pure ACK).
    Empty,
}

/// The simulated session.
pub struct Sim {
    pub engine: Engine,
    pub now: Instant,
    /// The client's own address.
    pub client: SocketAddr,
    /// The server as the client addresses it.
    pub server_public: SocketAddr,
    /// The server's own address.
    pub server_real: SocketAddr,
    /// The client as the server sees it.
    pub client_public: SocketAddr,
    c2s: Stream,
    s2c: Stream,
    /// Pinholes opened, in order.
    pub opened: Vec<Pinhole>,
    /// Pinholes closed, in order.
    pub closed: Vec<Pinhole>,
    /// FTPS ranges installed (or refreshed), in order, each with the
    /// payload of the packet whose decision asked for it: the shell
    /// installs it before that packet is released.
    pub opened_ranges: Vec<(RangePinhole, Vec<u8>)>,
    /// FTPS ranges removed, in order.
    pub closed_ranges: Vec<RangePinhole>,
    /// Packets the engine dropped.
    pub dropped: usize,
    /// Every event the engine reported, in order.
    pub events: Vec<Event>,
    /// The control connection's conntrack label, as the engine's
    /// `persist` requests left it.
    pub label: u128,
    /// Where the engine's state goes in the label.
    pub layout: LabelLayout,
    /// Lookups report the stored state (conntrack entry carries it).
    pub adopt: bool,
    /// Number of `persist` requests.
    pub persisted: usize,
    cfg: EngineConfig,
}

impl Sim {
    /// A session between `client` and `server_public`, translated to
    /// `client_public` / `server_real` by the gateway.
    pub fn new(client: &str, client_public: &str, server_public: &str, server_real: &str) -> Sim {
        Sim::with_config(
            client,
            client_public,
            server_public,
            server_real,
            EngineConfig::default(),
        )
    }

    /// Same, with engine settings.
    pub fn with_config(
        client: &str,
        client_public: &str,
        server_public: &str,
        server_real: &str,
        cfg: EngineConfig,
    ) -> Sim {
        Sim {
            engine: Engine::new(cfg.clone()),
            cfg,
            label: 0,
            layout: LabelLayout::new(12).unwrap(),
            adopt: true,
            persisted: 0,
            // The simulator is the core's caller: it owns the clock.
            #[allow(clippy::disallowed_methods)]
            now: Instant::now(),
            client: client.parse().unwrap(),
            server_public: server_public.parse().unwrap(),
            server_real: server_real.parse().unwrap(),
            client_public: client_public.parse().unwrap(),
            c2s: Stream {
                isn: 0xffff_ff00, // wraps during the session on purpose
                ..Stream::default()
            },
            s2c: Stream {
                isn: 1_000_000,
                ..Stream::default()
            },
            opened: Vec::new(),
            closed: Vec::new(),
            opened_ranges: Vec::new(),
            closed_ranges: Vec::new(),
            dropped: 0,
            events: Vec::new(),
        }
    }

    fn stream(&mut self, side: Side) -> &mut Stream {
        match side {
            Side::Client => &mut self.c2s,
            Side::Server => &mut self.s2c,
        }
    }

    /// Addresses of a packet from `side` at the hook where it is queued.
    fn addrs(&self, side: Side) -> (SocketAddr, SocketAddr) {
        match side {
            Side::Client => (self.client, self.server_public),
            Side::Server => (self.server_real, self.client),
        }
    }

    fn packet(
        &self,
        side: Side,
        seq: u32,
        ack: Option<u32>,
        syn: bool,
        fin: bool,
        payload: &[u8],
    ) -> Vec<u8> {
        self.packet_rst(side, seq, ack, syn, fin, false, payload)
    }

    #[allow(clippy::too_many_arguments)]
    fn packet_rst(
        &self,
        side: Side,
        seq: u32,
        ack: Option<u32>,
        syn: bool,
        fin: bool,
        rst: bool,
        payload: &[u8],
    ) -> Vec<u8> {
        let (src, dst) = self.addrs(side);
        let b = match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
            _ => panic!("mixed families"),
        };
        let mut t = b.tcp(src.port(), dst.port(), seq, 64000);
        if let Some(a) = ack {
            t = t.ack(a);
        }
        if syn {
            t = t.syn();
        }
        if fin {
            t = t.fin();
        }
        if rst {
            t = t.rst();
        }
        let mut out = Vec::new();
        t.write(&mut out, payload).unwrap();
        out
    }

    /// Runs one packet through the engine, answering NAT questions like
    /// conntrack would. Returns the packet as forwarded, if it was.
    fn through(&mut self, packet: Vec<u8>) -> Option<Vec<u8>> {
        let (client, server_public) = (self.client, self.server_public);
        let m = NatMapping {
            client_public: self.client_public,
            server_real: self.server_real,
        };
        let stored = self.layout.decode(self.label).filter(|_| self.adopt);
        let server_real = self.server_real;
        let d = self.engine.handle_lookup(self.now, &packet, |src, dst| {
            // By original tuple, or from a server's packet by the
            // original source and the reply source.
            assert_eq!(src, client, "NAT asked for the client's entry");
            assert!(
                dst == server_public || dst == server_real,
                "asked for {dst}"
            );
            Lookup {
                nat: Some(m),
                stored,
                server_public: Some(server_public),
            }
        });
        if let Some(p) = d.persist {
            assert_eq!((p.client, p.server), (client, server_public));
            let bits = self.layout.encode(&p.state).expect("state fits the label");
            self.label = (self.label & !self.layout.mask()) | bits;
            self.persisted += 1;
        }
        self.closed.extend(d.close);
        self.closed_ranges.extend(d.close_ranges);
        if !d.open_ranges.is_empty() {
            let seg = TcpSegment::parse(&packet).expect("packet parses");
            let payload = seg.payload(&packet).to_vec();
            for o in &d.open_ranges {
                self.opened_ranges.push((o.range, payload.clone()));
            }
        }
        self.events.extend(d.events);
        self.opened.extend(d.open.iter().map(|o| o.pinhole));
        match d.verdict {
            Verdict::Accept => Some(packet),
            Verdict::Replace(p) => Some(p),
            Verdict::Drop => {
                self.dropped += 1;
                None
            }
        }
    }

    /// The gateway's daemon dies and a new one starts: the engine's memory
    /// is gone, the conntrack entry (and its label) stays.
    pub fn restart(&mut self) {
        self.engine = Engine::new(self.cfg.clone());
    }

    /// `side` writes `data` without sending it yet (see [`Sim::send_range`]
    /// and [`Sim::settle`]); returns its offset in `side`'s stream.
    pub fn write(&mut self, side: Side, data: &[u8]) -> usize {
        let s = self.stream(side);
        s.written.extend_from_slice(data);
        s.written.len() - data.len()
    }

    /// Three-way handshake.
    pub fn handshake(&mut self) {
        let (ci, si) = (self.c2s.isn, self.s2c.isn);
        let syn = self.packet(Side::Client, ci, None, true, false, b"");
        assert!(self.through(syn).is_some());
        let synack = self.packet(Side::Server, si, Some(ci.wrapping_add(1)), true, false, b"");
        assert!(self.through(synack).is_some());
        let ack = self.packet(
            Side::Client,
            ci.wrapping_add(1),
            Some(si.wrapping_add(1)),
            false,
            false,
            b"",
        );
        assert!(self.through(ack).is_some());
    }

    /// The ACK number `side` puts on its packets: what it received (wire).
    fn my_ack(&self, side: Side) -> u32 {
        let other = match side {
            Side::Client => &self.s2c,
            Side::Server => &self.c2s,
        };
        other.isn.wrapping_add(1).wrapping_add(other.rcv_next())
    }

    /// Sends original bytes `[from, to)` of `side`'s stream as one segment
    /// that is lost after the gateway (the engine sees it, the receiver
    /// does not).
    pub fn lose_range(&mut self, side: Side, from: usize, to: usize) {
        let p = self.segment(side, from, to);
        self.through(p);
    }

    fn segment(&mut self, side: Side, from: usize, to: usize) -> Vec<u8> {
        let s = self.stream(side);
        let seq = s.isn.wrapping_add(1).wrapping_add(from as u32);
        let data = s.written[from..to].to_vec();
        let ack = self.my_ack(side);
        self.packet(side, seq, Some(ack), false, false, &data)
    }

    /// Sends original bytes `[from, to)` of `side`'s stream as one segment.
    /// Returns what reached the receiver: `None` when the engine dropped
    /// the segment, else whether it carried new bytes (beyond what the
    /// receiver had) or only old ones (a duplicate, which a TCP receiver
    /// answers with an immediate ACK, RFC 9293 §3.10.7.4).
    pub fn send_range(&mut self, side: Side, from: usize, to: usize) -> Option<Arrival> {
        let p = self.segment(side, from, to);
        let out = self.through(p)?;
        let seg = TcpSegment::parse(&out).expect("engine output parses");
        let payload = seg.payload(&out).to_vec();
        let s = self.stream(side);
        let before = s.rcv_next();
        let off = seg.seq.0.wrapping_sub(s.isn.wrapping_add(1));
        for (i, b) in payload.iter().enumerate() {
            let at = off.wrapping_add(i as u32);
            if let Some(old) = s.received.insert(at, *b) {
                assert_eq!(old, *b, "byte at wire offset {at} changed between copies");
            }
        }
        Some(if s.rcv_next() != before {
            Arrival::New
        } else if payload.is_empty() && off == before {
            Arrival::Empty
        } else {
            Arrival::Old
        })
    }

    /// The receiver of `side`'s stream acknowledges; the sender learns the
    /// acknowledgement as the engine maps it back.
    pub fn acknowledge(&mut self, side: Side) {
        let receiver = match side {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        };
        let seq = {
            let r = self.stream(receiver);
            r.isn.wrapping_add(1).wrapping_add(r.written.len() as u32)
        };
        let ack = self.my_ack(receiver);
        let p = self.packet(receiver, seq, Some(ack), false, false, b"");
        let out = self.through(p).expect("pure ACKs are never dropped");
        let seg = TcpSegment::parse(&out).unwrap();
        let s = self.stream(side);
        let acked = seg.ack.0.wrapping_sub(s.isn.wrapping_add(1)) as usize;
        assert!(
            acked <= s.written.len(),
            "ACK beyond what was sent: {acked}"
        );
        s.acked = s.acked.max(acked);
    }

    /// Writes `data` from `side`, cut at `cuts` (offsets into `data`), then
    /// acknowledges and retransmits until everything is acknowledged.
    pub fn send(&mut self, side: Side, data: &[u8], cuts: &[usize]) {
        self.send_with_retransmissions(side, data, cuts, &[]);
    }

    /// Like [`Sim::send`], and also sends again the byte ranges `resend`
    /// (offsets into `data`, clamped) right after the first copies, as a
    /// sender that retransmits early, re-cut, would.
    pub fn send_with_retransmissions(
        &mut self,
        side: Side,
        data: &[u8],
        cuts: &[usize],
        resend: &[(usize, usize)],
    ) {
        self.send_shuffled(side, data, cuts, resend, &[]);
    }

    /// Like [`Sim::send_with_retransmissions`], and the first copies of the
    /// segments go out in a different order: segment `i` and `i + 1` swap
    /// for every `i` in `swaps` (as a network that reorders would).
    pub fn send_shuffled(
        &mut self,
        side: Side,
        data: &[u8],
        cuts: &[usize],
        resend: &[(usize, usize)],
        swaps: &[usize],
    ) {
        let start = self.stream(side).written.len();
        self.stream(side).written.extend_from_slice(data);
        let mut segments = segments(data.len(), cuts);
        for &i in swaps {
            if i + 1 < segments.len() {
                segments.swap(i, i + 1);
            }
        }
        for (a, b) in segments {
            self.send_range(side, start + a, start + b);
        }
        for &(a, b) in resend {
            let (a, b) = (a.min(data.len()), b.min(data.len()));
            if a < b {
                self.send_range(side, start + a, start + b);
            }
        }
        self.settle(side);
    }

    /// Like [`Sim::send`], with `gap` of simulated time before every
    /// segment but the first (a sender that pauses between segments).
    pub fn send_paced(&mut self, side: Side, data: &[u8], cuts: &[usize], gap: Duration) {
        let start = self.stream(side).written.len();
        self.stream(side).written.extend_from_slice(data);
        for (i, (a, b)) in segments(data.len(), cuts).into_iter().enumerate() {
            if i > 0 {
                self.now += gap;
            }
            self.send_range(side, start + a, start + b);
        }
        self.settle(side);
    }

    /// Acknowledges and retransmits the unacknowledged rest (as one
    /// segment, as a sender's retransmission timer would) until done.
    pub fn settle(&mut self, side: Side) {
        for _ in 0..8 {
            self.acknowledge(side);
            let (acked, len) = {
                let s = self.stream(side);
                (s.acked, s.written.len())
            };
            if acked == len {
                return;
            }
            self.now += Duration::from_millis(200);
            self.send_range(side, acked, len);
        }
        panic!("{side:?} stream never fully acknowledged");
    }

    /// The bytes the receiver of `side`'s stream got, contiguous part.
    pub fn received(&self, side: Side) -> Vec<u8> {
        let s = match side {
            Side::Client => &self.c2s,
            Side::Server => &self.s2c,
        };
        (0..s.rcv_next()).map(|i| s.received[&i]).collect()
    }

    /// FIN from both sides.
    pub fn close(&mut self) {
        for side in [Side::Client, Side::Server] {
            self.fin(side);
        }
    }

    /// The client opens a new connection from the same address and port
    /// (new initial sequence numbers, nothing written yet); call
    /// [`Sim::handshake`] next.
    pub fn reconnect(&mut self) {
        self.c2s = Stream {
            isn: self.c2s.isn.wrapping_add(0x1000_0000),
            ..Stream::default()
        };
        self.s2c = Stream {
            isn: self.s2c.isn.wrapping_add(0x1000_0000),
            ..Stream::default()
        };
    }

    /// An RST from `side` after everything it wrote.
    pub fn reset(&mut self, side: Side) {
        let s = self.stream(side);
        let seq = s.isn.wrapping_add(1).wrapping_add(s.written.len() as u32);
        let ack = self.my_ack(side);
        let p = self.packet_rst(side, seq, Some(ack), false, false, true, b"");
        self.through(p);
    }

    /// A FIN from `side` after everything it wrote; what the engine puts
    /// into it reaches the receiver.
    pub fn fin(&mut self, side: Side) {
        let s = self.stream(side);
        let seq = s.isn.wrapping_add(1).wrapping_add(s.written.len() as u32);
        let ack = self.my_ack(side);
        let p = self.packet(side, seq, Some(ack), false, true, b"");
        if let Some(out) = self.through(p) {
            let seg = TcpSegment::parse(&out).expect("engine output parses");
            let payload = seg.payload(&out).to_vec();
            let s = self.stream(side);
            let off = seg.seq.0.wrapping_sub(s.isn.wrapping_add(1));
            for (i, b) in payload.iter().enumerate() {
                let at = off.wrapping_add(i as u32);
                if let Some(old) = s.received.insert(at, *b) {
                    assert_eq!(old, *b, "byte at wire offset {at} changed between copies");
                }
            }
        }
    }
}

/// `[from, to)` ranges of `len` bytes cut at `cuts` (out-of-range and
/// repeated cuts ignored).
fn segments(len: usize, cuts: &[usize]) -> Vec<(usize, usize)> {
    let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c > 0 && c < len).collect();
    bounds.sort_unstable();
    bounds.dedup();
    let mut out = Vec::new();
    let mut from = 0;
    for to in bounds.into_iter().chain([len]) {
        out.push((from, to));
        from = to;
    }
    out
}
