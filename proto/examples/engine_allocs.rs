//! Counts heap allocations per packet on `engine_profile`'s workload, with
//! a counting global allocator: the whole engine path, and parsing alone
//! (`TcpSegment::parse`, which must not allocate), also of segments that
//! carry 1 to 4 SACK blocks (the workload has none).
//!
//! ```text
//! cargo run --release -p ftp-alg-proto --example engine_allocs [sessions] [noops]
//! ```
//!
//! Exits non-zero if parsing allocated.

// A caller of the core, like the daemon: it owns the clock.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use etherparse::{PacketBuilder, TcpOptionElement};
use ftp_alg_proto::engine::{Engine, EngineConfig, Verdict};
use ftp_alg_proto::packet::TcpSegment;

#[path = "../tests/counting_alloc/mod.rs"]
mod counting_alloc;
use counting_alloc::allocs;

#[global_allocator]
static GLOBAL: counting_alloc::Counting = counting_alloc::Counting;

#[path = "engine_profile.rs"]
#[allow(dead_code)]
mod workload;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// An ACK from the server carrying `n` (1 to 4) SACK blocks.
fn with_sack(n: usize) -> Vec<u8> {
    let block = |i: u32| (10_000 + 100 * i, 10_050 + 100 * i);
    let rest = [1, 2, 3].map(|i| (i < n as u32).then(|| block(i)));
    let mut p = Vec::new();
    PacketBuilder::ipv4([203, 0, 113, 10], [198, 51, 100, 2], 64)
        .tcp(21, 1024, 5000, 64000)
        .ack(1000)
        .options(&[
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::SelectiveAcknowledgement(block(0), rest),
        ])
        .expect("4 blocks fit in 40 octets")
        .write(&mut p, b"")
        .expect("packet fits");
    p
}

fn main() {
    let (sessions, noops) = (arg(1, 1000), arg(2, 10));
    let packets: Vec<Vec<Vec<u8>>> = (0..sessions as u32)
        .map(|i| workload::session_packets(workload::client(i), noops))
        .collect();
    let steps = packets.iter().map(Vec::len).max().unwrap_or(0);
    let all = || (0..steps).flat_map(|s| packets.iter().filter_map(move |p| p.get(s)));
    let count = all().count() as f64;

    let sacks: Vec<Vec<u8>> = (1..=4).map(with_sack).collect();
    for p in &sacks {
        assert!(!TcpSegment::parse(p).expect("parses").sack.is_empty());
    }

    let before = allocs();
    for p in all() {
        std::hint::black_box(TcpSegment::parse(std::hint::black_box(p)).ok());
    }
    for _ in 0..1000 {
        for p in &sacks {
            std::hint::black_box(TcpSegment::parse(std::hint::black_box(p)).ok());
        }
    }
    let parse = allocs() - before;
    let parsed = count + 1000.0 * sacks.len() as f64;

    let mut engine = Engine::new(EngineConfig {
        max_sessions: sessions,
        ..EngineConfig::default()
    });
    let now = Instant::now();
    let (mut replaced, mut replace_allocs, mut other_allocs) = (0u64, 0u64, 0u64);
    for p in all() {
        let before = allocs();
        let verdict = workload::handle(&mut engine, now, p);
        let used = allocs() - before;
        if matches!(verdict, Verdict::Replace(_)) {
            replaced += 1;
            replace_allocs += used;
        } else {
            other_allocs += used;
        }
        drop(verdict);
    }
    let kept = count - replaced as f64;
    println!(
        "parse: {parsed} packets ({} with SACK), {:.3} allocs/packet\n\
         engine: {count} packets, {:.3} allocs/packet \
         ({replaced} rewritten: {:.2} each; {kept} others: {:.3} each)",
        1000 * sacks.len(),
        parse as f64 / parsed,
        (replace_allocs + other_allocs) as f64 / count,
        replace_allocs as f64 / replaced.max(1) as f64,
        other_allocs as f64 / kept.max(1.0),
    );
    if parse != 0 {
        eprintln!("TcpSegment::parse allocated {parse} times");
        std::process::exit(1);
    }
}
