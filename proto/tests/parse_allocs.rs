//! `TcpSegment::parse` runs for every queued packet, so it must not touch
//! the heap, SACK blocks included (RFC 2018 caps them at 4, held inline).

#[allow(dead_code)]
mod counting_alloc;

use etherparse::{PacketBuilder, TcpOptionElement};
use ftp_alg_proto::packet::TcpSegment;
use ftp_alg_proto::seq::SeqNum;

#[global_allocator]
static ALLOC: counting_alloc::Counting = counting_alloc::Counting;

/// An IPv6 ACK carrying `n` (1 to 4) SACK blocks and a payload.
fn with_sack(n: usize) -> Vec<u8> {
    let block = |i: u32| (10_000 + 100 * i, 10_050 + 100 * i);
    let rest = [1, 2, 3].map(|i| (i < n as u32).then(|| block(i)));
    let mut p = Vec::new();
    let src = "2001:db8:2::10".parse::<std::net::Ipv6Addr>().unwrap();
    let dst = "2001:db8:1::2".parse::<std::net::Ipv6Addr>().unwrap();
    PacketBuilder::ipv6(src.octets(), dst.octets(), 64)
        .tcp(21, 40000, 5000, 64000)
        .ack(1000)
        .options(&[
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::SelectiveAcknowledgement(block(0), rest),
        ])
        .unwrap()
        .write(&mut p, b"200 ok\r\n")
        .unwrap();
    p
}

#[test]
fn parsing_a_segment_with_sack_blocks_does_not_allocate() {
    for n in 1..=4 {
        let p = with_sack(n);
        let before = counting_alloc::allocs();
        let seg = TcpSegment::parse(std::hint::black_box(&p)).unwrap();
        let used = counting_alloc::allocs() - before;
        assert_eq!(seg.sack.len(), n);
        let last = 100 * (n as u32 - 1);
        assert_eq!(
            seg.sack[n - 1],
            (SeqNum(10_000 + last), SeqNum(10_050 + last))
        );
        assert_eq!(seg.payload(&p), b"200 ok\r\n");
        assert_eq!(used, 0, "parse of a segment with {n} SACK blocks allocated");
    }
}
