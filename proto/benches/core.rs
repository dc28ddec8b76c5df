//! Benchmarks of the pure core: parsing, sequence edits, and the whole
//! engine on a realistic mix of control packets (no I/O).
//!
//! `cargo bench --bench core`

// A caller of the core, like the daemon: it owns the clock.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ftp_alg_proto::engine::{Engine, EngineConfig};
use ftp_alg_proto::ftp::parse::{parse_227, parse_client_line};
use ftp_alg_proto::seq::{Edit, SeqNum, StreamEdits};

/// The packets of a control session, shared with the profiling example.
#[path = "../examples/engine_profile.rs"]
#[allow(dead_code)]
mod workload;

fn parser(c: &mut Criterion) {
    c.bench_function("parse PORT", |b| {
        b.iter(|| parse_client_line(std::hint::black_box(b"PORT 198,51,100,2,195,80\r\n")))
    });
    c.bench_function("parse 227", |b| {
        b.iter(|| {
            parse_227(std::hint::black_box(
                b"227 Entering Passive Mode (192,0,2,10,39,16).\r\n",
            ))
        })
    });
    c.bench_function("parse other command", |b| {
        b.iter(|| parse_client_line(std::hint::black_box(b"RETR some/file.bin\r\n")))
    });
}

fn sequence(c: &mut Criterion) {
    let mut edits = StreamEdits::default();
    for i in 0..4u32 {
        edits.push(Edit {
            at: SeqNum(1000 + i * 100),
            old_len: 26,
            new: b"PORT 203,0,113,254,195,80\r\n".to_vec(),
        });
    }
    c.bench_function("seq to_wire + to_original (4 edits)", |b| {
        b.iter(|| {
            let w = edits.to_wire(std::hint::black_box(SeqNum(5000)));
            edits.to_original(w, false)
        })
    });
    let payload = vec![b'x'; 100];
    c.bench_function("render segment over an edit", |b| {
        b.iter(|| edits.render(std::hint::black_box(SeqNum(1290)), &payload))
    });
}

fn engine_mix(c: &mut Criterion) {
    let sessions: Vec<Vec<Vec<u8>>> = (0..64)
        .map(|i| workload::session_packets(workload::client(i), 1))
        .collect();
    let per_round: usize = sessions.iter().map(Vec::len).sum();
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(per_round as u64));
    group.bench_function("64 sessions, SNAT, EPSV + PORT rewrite", |b| {
        b.iter_batched(
            || Engine::new(EngineConfig::default()),
            |mut engine| {
                let now = Instant::now();
                for session in &sessions {
                    for p in session {
                        workload::handle(&mut engine, now, p);
                    }
                }
                engine
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, parser, sequence, engine_mix);
criterion_main!(benches);
