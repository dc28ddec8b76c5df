//! IPv4/IPv6 + TCP views over a queued packet, and the rebuild of a packet
//! with new sequence numbers, SACK blocks and payload.
//!
//! Parsing is done with `etherparse`; the rebuild is done here because it
//! must keep every header byte that ftp-alg does not mean to change (IP
//! options, IPv6 extension headers, TCP options) and fix exactly the length
//! and checksum fields. The kernel does not recompute checksums of a payload
//! returned with a verdict (measured, see DESIGN.md), so we do.

use std::net::{IpAddr, SocketAddr};

use etherparse::{IpNumber, IpSlice, TcpSlice};

use crate::seq::SeqNum;

/// TCP option kinds (RFC 9293 §3.2, RFC 2018).
const TCP_OPT_END: u8 = 0;
const TCP_OPT_NOP: u8 = 1;
const TCP_OPT_SACK: u8 = 5;

/// Why a packet is not handled as a TCP segment. None of these is an
/// error of the daemon: such packets are forwarded untouched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotTcp {
    /// The bytes are not a well-formed IPv4 or IPv6 packet.
    MalformedIp,
    /// The packet is a fragment; control segments are never fragmented in
    /// practice, and a fragment cannot be rewritten on its own.
    Fragment,
    /// The IP payload is not TCP.
    OtherProtocol,
    /// The TCP header is malformed or truncated.
    MalformedTcp,
}

/// A parsed view of one IP + TCP packet. Offsets index the packet bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSegment {
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
    /// Sequence number.
    pub seq: SeqNum,
    /// Acknowledgement number (meaningful when `flags.ack`).
    pub ack: SeqNum,
    /// Control flags.
    pub flags: TcpFlags,
    /// SACK blocks (left, right) in the options (RFC 2018).
    pub sack: Vec<(SeqNum, SeqNum)>,
    /// Offset of the TCP header.
    tcp_offset: usize,
    /// Offset of the TCP payload.
    payload_offset: usize,
    /// End of the TCP payload (the IP length may be shorter than the buffer).
    payload_end: usize,
}

/// The TCP flags ftp-alg looks at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags {
    /// SYN.
    pub syn: bool,
    /// ACK.
    pub ack: bool,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
}

impl TcpSegment {
    /// Parses an IP packet as delivered by NFQUEUE (starting at the IP header).
    pub fn parse(packet: &[u8]) -> Result<TcpSegment, NotTcp> {
        let ip = IpSlice::from_slice(packet).map_err(|_| NotTcp::MalformedIp)?;
        if ip.is_fragmenting_payload() {
            return Err(NotTcp::Fragment);
        }
        let ip_payload = ip.payload();
        if ip_payload.ip_number != IpNumber::TCP {
            return Err(NotTcp::OtherProtocol);
        }
        let tcp_offset = ip_payload.payload.as_ptr() as usize - packet.as_ptr() as usize;
        let tcp = TcpSlice::from_slice(ip_payload.payload).map_err(|_| NotTcp::MalformedTcp)?;
        let payload_offset = tcp_offset + tcp.header_len();
        let payload_end = tcp_offset + ip_payload.payload.len();
        Ok(TcpSegment {
            src: SocketAddr::new(ip.source_addr(), tcp.source_port()),
            dst: SocketAddr::new(ip.destination_addr(), tcp.destination_port()),
            seq: SeqNum(tcp.sequence_number()),
            ack: SeqNum(tcp.acknowledgment_number()),
            flags: TcpFlags {
                syn: tcp.syn(),
                ack: tcp.ack(),
                fin: tcp.fin(),
                rst: tcp.rst(),
            },
            sack: sack_blocks(tcp.options()),
            tcp_offset,
            payload_offset,
            payload_end,
        })
    }

    /// The TCP payload within `packet` (the bytes this view was parsed from).
    pub fn payload<'a>(&self, packet: &'a [u8]) -> &'a [u8] {
        &packet[self.payload_offset..self.payload_end]
    }

    /// Sequence space the segment occupies: payload plus one for SYN and FIN.
    pub fn seq_len(&self) -> u32 {
        let data = (self.payload_end - self.payload_offset) as u32;
        data + self.flags.syn as u32 + self.flags.fin as u32
    }

    /// Builds the packet with the given header fields and payload. SACK
    /// blocks are written back in their option slots; a block given as
    /// `None` is removed (the option shrinks and NOPs keep the header size).
    pub fn rebuild(&self, packet: &[u8], fix: &Fixup) -> Vec<u8> {
        let payload = fix
            .payload
            .as_deref()
            .unwrap_or(&packet[self.payload_offset..self.payload_end]);
        let mut out = Vec::with_capacity(self.payload_offset + payload.len());
        out.extend_from_slice(&packet[..self.payload_offset]);
        out.extend_from_slice(payload);
        let tcp = self.tcp_offset;
        out[tcp + 4..tcp + 8].copy_from_slice(&fix.seq.0.to_be_bytes());
        out[tcp + 8..tcp + 12].copy_from_slice(&fix.ack.0.to_be_bytes());
        if let Some(blocks) = &fix.sack {
            write_sack_blocks(&mut out[tcp + 20..self.payload_offset], blocks);
        }
        let ip_total = out.len();
        match self.src.ip() {
            IpAddr::V4(_) => {
                out[2..4].copy_from_slice(&(ip_total as u16).to_be_bytes());
                let ihl = ((out[0] & 0x0f) as usize) * 4;
                out[10..12].copy_from_slice(&[0, 0]);
                let sum = checksum_fold(checksum_add(0, &out[..ihl]));
                out[10..12].copy_from_slice(&sum.to_be_bytes());
            }
            IpAddr::V6(_) => {
                out[4..6].copy_from_slice(&((ip_total - 40) as u16).to_be_bytes());
            }
        }
        out[tcp + 16..tcp + 18].copy_from_slice(&[0, 0]);
        let sum = tcp_checksum(self.src.ip(), self.dst.ip(), &out[tcp..]);
        out[tcp + 16..tcp + 18].copy_from_slice(&sum.to_be_bytes());
        out
    }
}

/// The changes to apply to a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fixup {
    /// New sequence number.
    pub seq: SeqNum,
    /// New acknowledgement number.
    pub ack: SeqNum,
    /// New SACK blocks, one per block of the original option; `None` drops it.
    pub sack: Option<Vec<Option<(SeqNum, SeqNum)>>>,
    /// New payload, when it changes.
    pub payload: Option<Vec<u8>>,
}

/// Walks TCP options, calling `f(kind, offset_of_kind, option_bytes)`.
/// Stops at END or at the first malformed length (RFC 9293 §3.1: options
/// after a malformed one cannot be located).
fn walk_options(options: &[u8], mut f: impl FnMut(u8, usize, &[u8])) {
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            TCP_OPT_END => return,
            TCP_OPT_NOP => i += 1,
            kind => {
                let Some(&len) = options.get(i + 1) else {
                    return;
                };
                let len = len as usize;
                if len < 2 || i + len > options.len() {
                    return;
                }
                f(kind, i, &options[i..i + len]);
                i += len;
            }
        }
    }
}

fn sack_blocks(options: &[u8]) -> Vec<(SeqNum, SeqNum)> {
    let mut blocks = Vec::new();
    walk_options(options, |kind, _, opt| {
        if kind == TCP_OPT_SACK {
            for b in opt[2..].chunks_exact(8) {
                let left = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                let right = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
                blocks.push((SeqNum(left), SeqNum(right)));
            }
        }
    });
    blocks
}

/// Rewrites the SACK option in place; dropped blocks shrink the option and
/// the freed bytes become NOPs so the header length stays the same.
fn write_sack_blocks(options: &mut [u8], blocks: &[Option<(SeqNum, SeqNum)>]) {
    let mut at = None;
    walk_options(options, |kind, offset, opt| {
        if kind == TCP_OPT_SACK && at.is_none() {
            at = Some((offset, opt.len()));
        }
    });
    let Some((offset, len)) = at else { return };
    let kept: Vec<(SeqNum, SeqNum)> = blocks.iter().flatten().copied().collect();
    let slot = &mut options[offset..offset + len];
    slot.fill(TCP_OPT_NOP);
    if kept.is_empty() {
        return;
    }
    let new_len = 2 + 8 * kept.len().min((len - 2) / 8);
    // Keep the option at the end of its slot so the NOPs come first, as
    // senders usually align SACK blocks that way.
    let start = len - new_len;
    slot[start] = TCP_OPT_SACK;
    slot[start + 1] = new_len as u8;
    for (i, (l, r)) in kept.iter().take((new_len - 2) / 8).enumerate() {
        let b = start + 2 + i * 8;
        slot[b..b + 4].copy_from_slice(&l.0.to_be_bytes());
        slot[b + 4..b + 8].copy_from_slice(&r.0.to_be_bytes());
    }
}

/// One's-complement sum of 16-bit words (RFC 1071), not yet folded.
///
/// Every rewritten packet is summed whole, so this takes 32-bit words: as
/// 2^16 = 1 modulo 2^16 - 1, a big-endian 32-bit word adds the same as its
/// two 16-bit halves once folded (RFC 1071 §2(B)), in half the steps.
fn checksum_add(mut sum: u64, bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(4);
    for w in &mut words {
        sum += u32::from_be_bytes([w[0], w[1], w[2], w[3]]) as u64;
    }
    let mut rest = words.remainder().chunks_exact(2);
    for c in &mut rest {
        sum += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = rest.remainder() {
        sum += (*last as u64) << 8;
    }
    sum
}

fn checksum_fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// TCP checksum over the pseudo-header (RFC 9293 §3.1, RFC 8200 §8.1).
fn tcp_checksum(src: IpAddr, dst: IpAddr, tcp: &[u8]) -> u16 {
    let sum = address_sum(src) + address_sum(dst) + 6 + tcp.len() as u64;
    checksum_fold(checksum_add(sum, tcp))
}

/// An address's share of the pseudo-header sum.
fn address_sum(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(a) => checksum_add(0, &a.octets()),
        IpAddr::V6(a) => checksum_add(0, &a.octets()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    /// Builds an IPv4 or IPv6 TCP packet for tests.
    pub(crate) fn build(
        src: SocketAddr,
        dst: SocketAddr,
        seq: u32,
        ack: u32,
        sack: &[(u32, u32)],
        payload: &[u8],
    ) -> Vec<u8> {
        use etherparse::TcpOptionElement;
        let builder = match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
            _ => panic!("mixed families"),
        };
        let mut tcp = builder
            .tcp(src.port(), dst.port(), seq, 64000)
            .ack(ack)
            .psh();
        if !sack.is_empty() {
            let mut blocks = [(0u32, 0u32); 4];
            for (i, b) in sack.iter().enumerate() {
                blocks[i] = *b;
            }
            let first = blocks[0];
            let rest = [
                (sack.len() > 1).then_some(blocks[1]),
                (sack.len() > 2).then_some(blocks[2]),
                (sack.len() > 3).then_some(blocks[3]),
            ];
            tcp = tcp
                .options(&[
                    TcpOptionElement::Noop,
                    TcpOptionElement::Noop,
                    TcpOptionElement::SelectiveAcknowledgement(first, rest),
                ])
                .unwrap();
        }
        let mut out = Vec::new();
        tcp.write(&mut out, payload).unwrap();
        out
    }

    fn verify_checksums(packet: &[u8]) {
        let ip = IpSlice::from_slice(packet).unwrap();
        let tcp = TcpSlice::from_slice(ip.payload().payload).unwrap();
        let expected = match (&ip.source_addr(), &ip.destination_addr()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                tcp.calc_checksum_ipv4(s.octets(), d.octets()).unwrap()
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                tcp.calc_checksum_ipv6(s.octets(), d.octets()).unwrap()
            }
            _ => unreachable!(),
        };
        assert_eq!(tcp.checksum(), expected, "tcp checksum");
        if let Some(v4) = ip.ipv4() {
            let h = v4.header().to_header();
            assert_eq!(h.header_checksum, h.calc_header_checksum(), "ip checksum");
        }
    }

    #[test]
    fn rebuild_changes_length_and_checksums_v4_and_v6() {
        for (src, dst) in [
            ("198.51.100.2:40000", "203.0.113.10:21"),
            ("[2001:db8:1::2]:40000", "[2001:db8:2::10]:21"),
        ] {
            let (src, dst) = (src.parse().unwrap(), dst.parse().unwrap());
            let p = build(
                src,
                dst,
                1000,
                2000,
                &[(2100, 2200)],
                b"PORT 1,2,3,4,5,6\r\n",
            );
            let seg = TcpSegment::parse(&p).unwrap();
            assert_eq!(seg.sack, vec![(SeqNum(2100), SeqNum(2200))]);
            assert_eq!(seg.payload(&p), b"PORT 1,2,3,4,5,6\r\n");
            let out = seg.rebuild(
                &p,
                &Fixup {
                    seq: SeqNum(1005),
                    ack: SeqNum(1995),
                    sack: Some(vec![Some((SeqNum(2095), SeqNum(2195)))]),
                    payload: Some(b"PORT 203,0,113,254,5,6\r\n".to_vec()),
                },
            );
            verify_checksums(&out);
            let again = TcpSegment::parse(&out).unwrap();
            assert_eq!(again.seq, SeqNum(1005));
            assert_eq!(again.ack, SeqNum(1995));
            assert_eq!(again.sack, vec![(SeqNum(2095), SeqNum(2195))]);
            assert_eq!(again.payload(&out), b"PORT 203,0,113,254,5,6\r\n");
            assert_eq!(again.src, src);
            assert_eq!(again.dst, dst);
        }
    }

    #[test]
    fn dropped_sack_block_leaves_nops() {
        let src = "192.0.2.1:21".parse().unwrap();
        let dst = "192.0.2.2:4000".parse().unwrap();
        let p = build(src, dst, 1, 2, &[(10, 20), (30, 40)], b"");
        let seg = TcpSegment::parse(&p).unwrap();
        let out = seg.rebuild(
            &p,
            &Fixup {
                seq: SeqNum(1),
                ack: SeqNum(2),
                sack: Some(vec![None, Some((SeqNum(31), SeqNum(41)))]),
                payload: None,
            },
        );
        verify_checksums(&out);
        assert_eq!(out.len(), p.len());
        let again = TcpSegment::parse(&out).unwrap();
        assert_eq!(again.sack, vec![(SeqNum(31), SeqNum(41))]);
    }

    #[test]
    fn checksum_by_words_matches_rfc_1071_pairs() {
        let bytes: Vec<u8> = (0..67u32).map(|i| (i * 37 + 11) as u8).collect();
        for len in 0..bytes.len() {
            let data = &bytes[..len];
            let mut pairs = 0u64;
            for c in data.chunks(2) {
                pairs += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u64;
            }
            assert_eq!(
                checksum_fold(checksum_add(0, data)),
                checksum_fold(pairs),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn non_tcp_and_garbage_are_refused() {
        assert_eq!(TcpSegment::parse(&[]), Err(NotTcp::MalformedIp));
        assert_eq!(TcpSegment::parse(&[0x45; 30]), Err(NotTcp::MalformedIp));
        let mut udp = Vec::new();
        PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
            .udp(1, 2)
            .write(&mut udp, b"x")
            .unwrap();
        assert_eq!(TcpSegment::parse(&udp), Err(NotTcp::OtherProtocol));
    }
}
