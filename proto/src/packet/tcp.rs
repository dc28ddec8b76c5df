//! The TCP header fields a rebuild changes (RFC 9293 §3.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Source Port          |       Destination Port        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        Sequence Number                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Acknowledgment Number                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Data |       |C|E|U|A|P|R|S|F|                               |
//! | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Checksum            |         Urgent Pointer        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           [Options]                           |
//! ```
//!
//! The setters take the TCP segment from its first header byte; the
//! caller has parsed it before, so the fixed header is there.

use std::net::IpAddr;

use super::checksum;
use crate::seq::SeqNum;

mod field {
    use std::ops::{Range, RangeFrom};

    /// Sequence number of the first data octet (or of the SYN).
    pub const SEQ: Range<usize> = 4..8;
    /// Acknowledgment number, meaningful when ACK is set.
    pub const ACK: Range<usize> = 8..12;
    /// Checksum over the pseudo-header, header and data.
    pub const CHECKSUM: Range<usize> = 16..18;
    /// Options, up to the data offset; the fixed header is 20 octets.
    pub const OPTIONS: RangeFrom<usize> = 20..;
}

/// The options of a segment whose header (data offset) is `header_len`
/// octets long.
pub(super) fn options_mut(segment: &mut [u8], header_len: usize) -> &mut [u8] {
    &mut segment[field::OPTIONS.start..header_len]
}

/// Sets the sequence number.
pub(super) fn set_seq(segment: &mut [u8], seq: SeqNum) {
    segment[field::SEQ].copy_from_slice(&seq.0.to_be_bytes());
}

/// Sets the acknowledgment number.
pub(super) fn set_ack(segment: &mut [u8], ack: SeqNum) {
    segment[field::ACK].copy_from_slice(&ack.0.to_be_bytes());
}

/// Recomputes the checksum over the pseudo-header of `src` and `dst`
/// (RFC 9293 §3.1, RFC 8200 §8.1 for IPv6) and the whole `segment`, which
/// must end where the IP payload ends.
pub(super) fn fill_checksum(segment: &mut [u8], src: IpAddr, dst: IpAddr) {
    segment[field::CHECKSUM].fill(0);
    let sum = checksum::tcp(src, dst, segment);
    segment[field::CHECKSUM].copy_from_slice(&sum.to_be_bytes());
}
