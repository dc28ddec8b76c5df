//! Benchmarks of the pure core: parsing, sequence edits, and the whole
//! engine on a realistic mix of control packets (no I/O).
//!
//! `cargo bench --bench core`

use std::net::SocketAddr;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use etherparse::PacketBuilder;
use ftp_alg::engine::{Engine, EngineConfig, NatMapping, Outcome};
use ftp_alg::ftp::parse::{parse_227, parse_client_line};
use ftp_alg::seq::{Edit, SeqNum, StreamEdits};

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

/// A whole control session as queued packets: (packet, from client?).
fn session_packets(client_port: u16) -> Vec<Vec<u8>> {
    let client: SocketAddr = format!("198.51.100.2:{client_port}").parse().unwrap();
    let server: SocketAddr = "203.0.113.10:21".parse().unwrap();
    let (mut cs, mut ss) = (1000u32, 5000u32);
    let mut out = Vec::new();
    let pkt = |from_client: bool, syn: bool, fin: bool, data: &[u8], cs: &mut u32, ss: &mut u32| {
        let (src, dst, seq, ack) = if from_client {
            (client, server, *cs, *ss)
        } else {
            (server, client, *ss, *cs)
        };
        let (std::net::IpAddr::V4(s), std::net::IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
            unreachable!()
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
        t.write(&mut p, data).unwrap();
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
    let dialogue: &[(&[u8], &[u8])] = &[
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
        (
            b"PORT 198,51,100,2,195,80\r\n",
            b"200 PORT command successful.\r\n",
        ),
        (b"NOOP\r\n", b"200 NOOP ok.\r\n"),
        (b"QUIT\r\n", b"221 Goodbye.\r\n"),
    ];
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

fn engine_mix(c: &mut Criterion) {
    let sessions: Vec<Vec<Vec<u8>>> = (0..64).map(|i| session_packets(40000 + i)).collect();
    let per_round: usize = sessions.iter().map(Vec::len).sum();
    let mapping = NatMapping {
        client_public: "203.0.113.254:40000".parse().unwrap(),
        server_real: "203.0.113.10:21".parse().unwrap(),
    };
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(per_round as u64));
    group.bench_function("64 sessions, SNAT, EPSV + PORT rewrite", |b| {
        b.iter_batched(
            || Engine::new(EngineConfig::default()),
            |mut engine| {
                let now = Instant::now();
                for session in &sessions {
                    for p in session {
                        if let Outcome::NeedNat { src, .. } = engine.handle(now, p) {
                            engine.set_nat(src, Some(mapping));
                            let _ = engine.handle(now, p);
                        }
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
