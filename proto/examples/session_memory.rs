//! Memory per idle control session in the engine alone: opens N sessions
//! (handshake, greeting, USER) and prints the growth of the process's RSS.
//!
//! `cargo run --release --example session_memory [N]` (default 100000)

// A caller of the core, like the daemon: it owns the clock.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::time::Instant;

use etherparse::PacketBuilder;
use ftp_alg_proto::engine::{Engine, EngineConfig, NatMapping};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/self/status")
}

fn packet(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    data: &[u8],
) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        unreachable!("IPv4 only")
    };
    let mut tcp = PacketBuilder::ipv4(s.ip().octets(), d.ip().octets(), 64).tcp(
        src.port(),
        dst.port(),
        seq,
        64000,
    );
    if let Some(a) = ack {
        tcp = tcp.ack(a);
    }
    if syn {
        tcp = tcp.syn();
    }
    let mut out = Vec::new();
    tcp.write(&mut out, data).expect("packet fits");
    out
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let mut engine = Engine::new(EngineConfig {
        max_sessions: n as usize,
        ..EngineConfig::default()
    });
    let server: SocketAddr = "203.0.113.10:21".parse().unwrap();
    let now = Instant::now();
    let before = rss_kib();
    for i in 0..n {
        // Distinct client address and port per session.
        let client =
            SocketAddr::from(([198, 51, 100, (i % 250) as u8 + 1], 1024 + (i / 250) as u16));
        let mapping = NatMapping {
            client_public: SocketAddr::new("203.0.113.254".parse().unwrap(), client.port()),
            server_real: server,
        };
        for p in [
            packet(client, server, 1000, None, true, b""),
            packet(server, client, 5000, Some(1001), true, b""),
            packet(client, server, 1001, Some(5001), false, b""),
            packet(
                server,
                client,
                5001,
                Some(1001),
                false,
                b"220 Welcome to the FTP service\r\n",
            ),
            packet(
                client,
                server,
                1001,
                Some(5034),
                false,
                b"USER anonymous\r\n",
            ),
        ] {
            engine.handle_with(now, &p, |_, _| Some(mapping));
        }
    }
    let after = rss_kib();
    let sessions = engine.session_count();
    println!(
        "{sessions} idle sessions: RSS {before} KiB -> {after} KiB, {:.0} bytes per session",
        (after - before) as f64 * 1024.0 / sessions as f64
    );
}
