//! A fixed, deterministic workload for profiling the engine's per-packet
//! path (no I/O): many concurrent control sessions behind source NAT, each
//! with a login, an EPSV download, a PORT that is rewritten (so every later
//! packet of the session needs its sequence numbers fixed), a run of plain
//! `NOOP`/`200` exchanges and a close. Packets of all sessions are
//! interleaved, as a gateway sees them.
//!
//! ```text
//! cargo build --release --example engine_profile
//! valgrind --tool=callgrind target/release/examples/engine_profile
//! ```
//!
//! Arguments: `[rounds] [sessions] [noops]` (defaults 4, 1000, 10). Each
//! round runs all sessions from SYN to FIN through a fresh engine.
//!
//! `engine_profile publish [sessions]` (default 100000) instead times what
//! the queue loop publishes every second, against building the full list
//! of sessions that only `ftp-alg status` needs.
//!
//! `benches/core.rs` builds its packets with [`session_packets`] too.

// A caller of the core, like the daemon: it owns the clock.
#![allow(clippy::disallowed_methods)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use etherparse::PacketBuilder;
use ftp_alg_proto::engine::{Engine, EngineConfig, NatMapping, Verdict};

/// The server every session talks to.
pub const SERVER: &str = "203.0.113.10:21";

/// The address the gateway maps a client to: one public address, the
/// client's port kept (as a typical SNAT does while ports are free).
pub fn public_of(client: SocketAddr) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 254)), client.port())
}

/// The NAT mapping the gateway reports for `client`.
pub fn mapping_of(client: SocketAddr) -> NatMapping {
    NatMapping {
        client_public: public_of(client),
        server_real: SERVER.parse().expect("constant address"),
    }
}

/// A whole control session of `client` as queued IPv4 packets, in order:
/// handshake, greeting, login, `EPSV` + `RETR`, a `PORT` (rewritten under
/// SNAT), `noops` extra `NOOP`/`200` exchanges, `QUIT` and both FINs, each
/// data segment acknowledged by an empty one.
pub fn session_packets(client: SocketAddr, noops: usize) -> Vec<Vec<u8>> {
    let server: SocketAddr = SERVER.parse().expect("constant address");
    let (mut cs, mut ss) = (1000u32, 5000u32);
    let mut out = Vec::new();
    let pkt = |from_client: bool, syn: bool, fin: bool, data: &[u8], cs: &mut u32, ss: &mut u32| {
        let (src, dst, seq, ack) = if from_client {
            (client, server, *cs, *ss)
        } else {
            (server, client, *ss, *cs)
        };
        let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
            unreachable!("IPv4 only")
        };
        let mut t =
            PacketBuilder::ipv4(s.octets(), d.octets(), 64).tcp(src.port(), dst.port(), seq, 64000);
        if !syn || !from_client {
            t = t.ack(ack);
        }
        if syn {
            t = t.syn();
        }
        if fin {
            t = t.fin();
        }
        let mut p = Vec::new();
        t.write(&mut p, data).expect("packet fits");
        let used = data.len() as u32 + syn as u32 + fin as u32;
        if from_client {
            *cs += used;
        } else {
            *ss += used;
        }
        p
    };
    out.push(pkt(true, true, false, b"", &mut cs, &mut ss));
    out.push(pkt(false, true, false, b"", &mut cs, &mut ss));
    out.push(pkt(true, false, false, b"", &mut cs, &mut ss));
    let IpAddr::V4(own) = client.ip() else {
        unreachable!("IPv4 only")
    };
    let [a, b, c, d] = own.octets();
    // A data port of its own, as real clients have: the public port is
    // then free and the PORT is rewritten.
    let data = client.port().wrapping_add(1).max(1024);
    let port = format!("PORT {a},{b},{c},{d},{},{}\r\n", data >> 8, data & 0xff);
    let mut dialogue: Vec<(&[u8], &[u8])> = vec![
        (b"", b"220 Welcome\r\n"),
        (
            b"USER anonymous\r\n",
            b"331 Please specify the password.\r\n",
        ),
        (b"PASS x\r\n", b"230 Login successful.\r\n"),
        (b"TYPE I\r\n", b"200 Switching to Binary mode.\r\n"),
        (
            b"EPSV\r\n",
            b"229 Entering Extended Passive Mode (|||10001|)\r\n",
        ),
        (
            b"RETR f\r\n",
            b"150 Opening BINARY mode data connection.\r\n",
        ),
        (b"", b"226 Transfer complete.\r\n"),
        (port.as_bytes(), b"200 PORT command successful.\r\n"),
    ];
    dialogue.extend(std::iter::repeat_n(
        (&b"NOOP\r\n"[..], &b"200 NOOP ok.\r\n"[..]),
        noops.max(1),
    ));
    dialogue.push((b"QUIT\r\n", b"221 Goodbye.\r\n"));
    for (cmd, reply) in dialogue {
        if !cmd.is_empty() {
            out.push(pkt(true, false, false, cmd, &mut cs, &mut ss));
            out.push(pkt(false, false, false, b"", &mut cs, &mut ss)); // ACK
        }
        out.push(pkt(false, false, false, reply, &mut cs, &mut ss));
        out.push(pkt(true, false, false, b"", &mut cs, &mut ss)); // ACK
    }
    out.push(pkt(false, false, true, b"", &mut cs, &mut ss));
    out.push(pkt(true, false, true, b"", &mut cs, &mut ss));
    out
}

/// The `i`th client: ports 1024.. on consecutive addresses, so any number
/// of sessions gets distinct keys.
pub fn client(i: u32) -> SocketAddr {
    let host = 0xc633_6400 + 2 + i / 64_000; // 198.51.100.2 onwards
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(host)), 1024 + (i % 64_000) as u16)
}

/// Hands one packet to the engine, answering a NAT question the way the
/// queue loop does. Returns the verdict.
pub fn handle(engine: &mut Engine, now: Instant, packet: &[u8]) -> Verdict {
    engine
        .handle_with(now, packet, |src, _| Some(mapping_of(src)))
        .verdict
}

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn profile() {
    let (rounds, sessions, noops) = (arg(1, 4), arg(2, 1000), arg(3, 10));
    let packets: Vec<Vec<Vec<u8>>> = (0..sessions as u32)
        .map(|i| session_packets(client(i), noops))
        .collect();
    let steps = packets.iter().map(Vec::len).max().unwrap_or(0);
    let cfg = EngineConfig {
        max_sessions: sessions,
        ..EngineConfig::default()
    };
    let (handled, replaced, dropped) = run_rounds(rounds, &cfg, &packets, steps);
    println!(
        "{handled} packets ({rounds} rounds x {sessions} sessions x {steps} packets), \
         {replaced} rewritten, {dropped} dropped"
    );
}

/// The measured part: `valgrind --tool=callgrind --toggle-collect='*run_rounds*'`
/// counts it alone, without building the packets. Returns packets handled,
/// rewritten and dropped.
#[inline(never)]
fn run_rounds(
    rounds: usize,
    cfg: &EngineConfig,
    packets: &[Vec<Vec<u8>>],
    steps: usize,
) -> (u64, u64, u64) {
    let (mut handled, mut replaced, mut dropped) = (0u64, 0u64, 0u64);
    let now = Instant::now();
    for _ in 0..rounds {
        let mut engine = Engine::new(cfg.clone());
        for step in 0..steps {
            for session in packets {
                let Some(p) = session.get(step) else { continue };
                handled += 1;
                match handle(&mut engine, now, std::hint::black_box(p)) {
                    Verdict::Accept => {}
                    Verdict::Replace(_) => replaced += 1,
                    Verdict::Drop => dropped += 1,
                }
            }
        }
    }
    (handled, replaced, dropped)
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("publish") {
        publish(arg(2, 100_000));
    } else {
        profile();
    }
}

/// Opens `n` sessions up to their EPSV answer (one pinhole each), then
/// times the per-second publish against the full session list.
fn publish(n: usize) {
    let mut engine = Engine::new(EngineConfig {
        max_sessions: n,
        ..EngineConfig::default()
    });
    let now = Instant::now();
    for i in 0..n as u32 {
        // Handshake, greeting, login, TYPE, EPSV and its 229: 21 packets.
        for p in session_packets(client(i), 1).iter().take(21) {
            handle(&mut engine, now, p);
        }
    }
    let runs = 20;
    let t = Instant::now();
    let mut listed = 0;
    for _ in 0..runs {
        listed += std::hint::black_box(engine.snapshot(now)).len();
    }
    let list = t.elapsed() / runs;
    // What the queue loop now publishes every second (nfqueue::Worker::publish).
    let t = Instant::now();
    let mut pinholes = 0;
    for _ in 0..runs {
        let stats = std::hint::black_box(engine.stats().clone());
        pinholes += std::hint::black_box(engine.pinhole_count());
        std::hint::black_box((stats, engine.session_count()));
    }
    let counts = t.elapsed() / runs;
    println!(
        "{n} sessions, {} pinholes: full session list {:.3} ms, counters and gauges {:.3} us",
        pinholes / runs as usize,
        list.as_secs_f64() * 1e3,
        counts.as_secs_f64() * 1e6,
    );
    assert_eq!(listed / runs as usize, n);
    let walked: usize = engine.snapshot(now).iter().map(|s| s.pinholes.len()).sum();
    assert_eq!(engine.pinhole_count(), walked, "pinhole gauge off");
}
