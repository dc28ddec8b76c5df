//! Shared by the replay tests: the committed captures, and writers that
//! turn their frames into other capture formats.

// Each test binary uses a part of it.
#![allow(dead_code)]

use std::fs::File;
use std::path::PathBuf;

use ftp_alg::replay::capture::{self, Frame};
use ftp_alg::replay::link::Direction;
use ftp_alg::replay::{output, replay, NatOption, Record};
use ftp_alg_proto::engine::EngineConfig;

pub fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/captures")
        .join(name)
}

pub fn replay_bytes(bytes: &[u8], nat: &[NatOption]) -> Vec<Record> {
    replay(bytes, EngineConfig::default(), nat).unwrap().records
}

pub fn replay_file(name: &str) -> Vec<Record> {
    let r = replay(
        File::open(path(name)).unwrap(),
        EngineConfig::default(),
        &[],
    )
    .unwrap();
    assert_eq!((r.truncated, r.unknown_link, r.cut_at_end), (0, 0, false));
    r.records
}

/// The report without its timestamps (the first word).
pub fn lines(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| output::text(r).split_once(' ').unwrap().1.to_string())
        .collect()
}

pub fn frames(name: &str) -> Vec<Frame> {
    capture::read(File::open(path(name)).unwrap(), |_| true)
        .unwrap()
        .frames
}

fn pad4(v: &mut Vec<u8>) {
    while v.len() % 4 != 0 {
        v.push(0);
    }
}

/// The frames as pcapng (little-endian): one raw-IP interface, each
/// packet's direction in `epb_flags`.
pub fn to_pcapng(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    let block = |out: &mut Vec<u8>, kind: u32, body: &[u8]| {
        let len = (body.len() + 12) as u32;
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&len.to_le_bytes());
    };
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut out, 0x0A0D_0D0A, &shb);
    let mut idb = Vec::new();
    idb.extend_from_slice(&101u16.to_le_bytes()); // raw IP
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&0u32.to_le_bytes());
    block(&mut out, 1, &idb);
    for f in frames {
        let micros = f.time.as_micros() as u64;
        let mut epb = Vec::new();
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&((micros >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(micros as u32).to_le_bytes());
        epb.extend_from_slice(&(f.ip.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(f.ip.len() as u32).to_le_bytes());
        epb.extend_from_slice(&f.ip);
        pad4(&mut epb);
        let flags: u32 = match f.direction {
            Some(Direction::Incoming) => 1,
            Some(Direction::Outgoing) => 2,
            None => 0,
        };
        epb.extend_from_slice(&[2, 0, 4, 0]);
        epb.extend_from_slice(&flags.to_le_bytes());
        epb.extend_from_slice(&[0, 0, 0, 0]);
        block(&mut out, 6, &epb);
    }
    out
}

/// The frames as a classic pcap of Ethernet frames.
pub fn to_ethernet_pcap(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for f in frames {
        let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        frame.extend_from_slice(if f.ip[0] >> 4 == 6 {
            &[0x86, 0xdd]
        } else {
            &[0x08, 0x00]
        });
        frame.extend_from_slice(&f.ip);
        let t = f.time;
        for v in [
            t.as_secs() as u32,
            t.subsec_micros(),
            frame.len() as u32,
            frame.len() as u32,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&frame);
    }
    out
}
