//! The Internet checksum (RFC 1071) and the TCP pseudo-header sum.

use std::net::IpAddr;

/// One's-complement sum of 16-bit words (RFC 1071), not yet folded.
///
/// Every rewritten packet is summed whole, so this takes 32-bit words: as
/// 2^16 = 1 modulo 2^16 - 1, a big-endian 32-bit word adds the same as its
/// two 16-bit halves once folded (RFC 1071 §2(B)), in half the steps.
pub(super) fn add(mut sum: u64, bytes: &[u8]) -> u64 {
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

/// Folds the carries back in and complements: the value to store.
pub(super) fn fold(mut sum: u64) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// TCP checksum over the pseudo-header (RFC 9293 §3.1, RFC 8200 §8.1) and
/// `tcp`, whose checksum field must be zero.
pub(super) fn tcp(src: IpAddr, dst: IpAddr, tcp: &[u8]) -> u16 {
    let sum = address_sum(src) + address_sum(dst) + 6 + tcp.len() as u64;
    fold(add(sum, tcp))
}

/// An address's share of the pseudo-header sum.
fn address_sum(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(a) => add(0, &a.octets()),
        IpAddr::V6(a) => add(0, &a.octets()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_by_words_matches_rfc_1071_pairs() {
        let bytes: Vec<u8> = (0..67u32).map(|i| (i * 37 + 11) as u8).collect();
        for len in 0..bytes.len() {
            let data = &bytes[..len];
            let mut pairs = 0u64;
            for c in data.chunks(2) {
                pairs += u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u64;
            }
            assert_eq!(fold(add(0, data)), fold(pairs), "{len} bytes");
        }
    }
}
