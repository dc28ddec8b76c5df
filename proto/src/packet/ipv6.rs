//! The IPv6 header field a rebuild changes (RFC 8200 §3).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Traffic Class |           Flow Label                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Payload Length        |  Next Header  |   Hop Limit   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Source Address (128 bits)                     |
//! |              Destination Address (128 bits)                   |
//! ```
//!
//! IPv6 has no header checksum; the TCP checksum covers the addresses
//! through the pseudo-header (RFC 8200 §8.1).

mod field {
    use std::ops::Range;

    /// Length of everything after the fixed header (extension headers
    /// included), in octets.
    pub const PAYLOAD_LENGTH: Range<usize> = 4..6;
}

/// Length of the fixed header, which Payload Length does not count.
pub(super) const HEADER_LEN: usize = 40;

/// Sets Payload Length.
pub(super) fn set_payload_len(packet: &mut [u8], len: u16) {
    packet[field::PAYLOAD_LENGTH].copy_from_slice(&len.to_be_bytes());
}
