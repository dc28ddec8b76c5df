//! The IPv4 header fields a rebuild changes (RFC 791 §3.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |Type of Service|          Total Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Identification        |Flags|      Fragment Offset    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Time to Live |    Protocol   |         Header Checksum       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       Source Address                          |
//! |                    Destination Address                        |
//! |                    Options                    |    Padding    |
//! ```
//!
//! The setters take the packet from its first byte; the caller has parsed
//! it (with etherparse) before, so the header is there and `IHL` is valid.

use super::checksum;

mod field {
    use std::ops::Range;

    /// Version (high nibble) and IHL, the header length in 32-bit words
    /// (low nibble).
    pub const VER_IHL: usize = 0;
    /// Total length of the datagram, header included, in octets.
    pub const LENGTH: Range<usize> = 2..4;
    /// One's-complement checksum of the header alone.
    pub const CHECKSUM: Range<usize> = 10..12;
}

/// The header length in octets, from `IHL` (RFC 791: in 32-bit words).
pub(super) fn header_len(packet: &[u8]) -> usize {
    ((packet[field::VER_IHL] & 0x0f) as usize) * 4
}

/// Sets Total Length.
pub(super) fn set_total_len(packet: &mut [u8], len: u16) {
    packet[field::LENGTH].copy_from_slice(&len.to_be_bytes());
}

/// Recomputes the header checksum over the header as it now is (the
/// checksum field counts as zero, RFC 791 §3.1).
pub(super) fn fill_checksum(packet: &mut [u8]) {
    packet[field::CHECKSUM].fill(0);
    let sum = checksum::fold(checksum::add(0, &packet[..header_len(packet)]));
    packet[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
}
