//! What a control session needs to continue in another instance, and its
//! encoding in a conntrack label.
//!
//! ftp-alg keeps the full edit log of each direction in memory (see
//! [`crate::seq`]), but what must survive a crash or a failover is much
//! less: as the kernel's seqadj keeps it, a position and the offsets before
//! and after it, per direction. The replacement bytes of a rewrite are not
//! stored: a retransmission of that line is parsed and planned again, to
//! the same bytes, since the NAT mapping comes from conntrack again.
//!
//! The state is packed into a 116-bit block of the 128-bit ct label
//! starting at a configurable bit, so that an admin's own labels
//! (connlabel.conf) keep the rest; `docs/durable.md` documents every bit.
//! Pure: the shell reads and writes the label over ctnetlink.

use crate::seq::SeqNum;

/// Width of ftp-alg's block in the label.
pub const BLOCK_BITS: u32 = 116;

/// Highest first bit for which the block still fits in 128 bits.
pub const MAX_FIRST_BIT: u32 = 128 - BLOCK_BITS;

/// Layout version written in the block's first 3 bits (0 = no state).
const VERSION: u128 = 1;

/// Offsets of the fields inside the block.
const VERSION_BITS: u32 = 3;
const UNPARSED_BIT: u32 = 3;
const SLOT_BITS: u32 = 56;
const TO_SERVER_AT: u32 = 4;
const TO_CLIENT_AT: u32 = TO_SERVER_AT + SLOT_BITS;

/// One direction: the last length-changing rewrite point and the offsets
/// around it, as the kernel's seqadj keeps them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DirState {
    /// Original sequence number of the first byte of the last rewritten
    /// line (a line boundary).
    pub pos: SeqNum,
    /// Wire minus original for sequence numbers at and before `pos`.
    pub before: i64,
    /// Wire minus original for sequence numbers after `pos`.
    pub after: i64,
}

impl DirState {
    /// True when this direction was never changed in length.
    pub fn is_identity(&self) -> bool {
        self.before == 0 && self.after == 0
    }

    /// Packs into the 56-bit slot: pos u32, after i16, after - before i8.
    fn pack(&self) -> Option<u128> {
        let after = i16::try_from(self.after).ok()?;
        let delta = i8::try_from(self.after - self.before).ok()?;
        Some(
            u128::from(self.pos.0)
                | (u128::from(after as u16) << 32)
                | (u128::from(delta as u8) << 48),
        )
    }

    fn unpack(slot: u128) -> Self {
        let pos = SeqNum(slot as u32);
        let after = i64::from((slot >> 32) as u16 as i16);
        let delta = i64::from((slot >> 48) as u8 as i8);
        DirState {
            pos,
            before: after - delta,
            after,
        }
    }
}

/// What a session needs to continue: both directions' offsets and whether
/// its text is still parsed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Durable {
    /// Client to server (PORT/EPRT rewrites).
    pub to_server: DirState,
    /// Server to client (227/229 rewrites).
    pub to_client: DirState,
    /// The session is no longer parsed (it switched to TLS): a new
    /// instance applies the offsets and reads nothing.
    pub unparsed: bool,
}

/// Where ftp-alg's block sits in the ct label: the first of its
/// [`BLOCK_BITS`] bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LabelLayout {
    first_bit: u32,
}

/// Why a state cannot be stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// An offset is outside i16, or a line's length change outside i8.
    OutOfRange,
}

impl LabelLayout {
    /// The block starting at label bit `first_bit`; `None` when it would
    /// not fit (`first_bit > MAX_FIRST_BIT`).
    pub fn new(first_bit: u32) -> Option<Self> {
        (first_bit <= MAX_FIRST_BIT).then_some(LabelLayout { first_bit })
    }

    /// The label bits ftp-alg owns (for the ctnetlink label mask).
    pub fn mask(&self) -> u128 {
        ((1u128 << BLOCK_BITS) - 1) << self.first_bit
    }

    /// The label bits of `state` (only inside [`LabelLayout::mask`]).
    pub fn encode(&self, state: &Durable) -> Result<u128, EncodeError> {
        let slot = |d: &DirState| d.pack().ok_or(EncodeError::OutOfRange);
        let block = VERSION
            | (u128::from(state.unparsed) << UNPARSED_BIT)
            | (slot(&state.to_server)? << TO_SERVER_AT)
            | (slot(&state.to_client)? << TO_CLIENT_AT);
        Ok(block << self.first_bit)
    }

    /// The state in a label, or `None` when the block holds none (version
    /// 0: never written) or one of a layout this build does not know.
    /// Bits outside the block (the admin's) are ignored.
    pub fn decode(&self, label: u128) -> Option<Durable> {
        let block = (label & self.mask()) >> self.first_bit;
        if block & ((1 << VERSION_BITS) - 1) != VERSION {
            return None;
        }
        let slot_mask = (1u128 << SLOT_BITS) - 1;
        Some(Durable {
            to_server: DirState::unpack((block >> TO_SERVER_AT) & slot_mask),
            to_client: DirState::unpack((block >> TO_CLIENT_AT) & slot_mask),
            unparsed: block & (1 << UNPARSED_BIT) != 0,
        })
    }
}

/// Where parsing of an adopted direction may start: line starts known
/// without the lines before them having been parsed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Resume {
    /// The stored rewrite point: a retransmission of that line is planned
    /// again. A segment that ends before it holds lines the earlier
    /// instance handled.
    pub(crate) pos: Option<SeqNum>,
    /// The receiver's acknowledgement on a packet that ended a line of its
    /// own: FTP peers take turns (RFC 959 §4: a server replies to a whole
    /// command, a client sends its next command after a whole reply), so
    /// this direction's next line starts there.
    pub(crate) answered: Option<SeqNum>,
}

impl Resume {
    /// The line start to begin parsing at, for a segment of `payload` at
    /// `seq` of a direction adopted from stored state; `None`: not yet.
    /// The earliest known line start inside the segment, else the byte
    /// after its first `\n`.
    pub(crate) fn point(self, seq: SeqNum, payload: &[u8]) -> Option<SeqNum> {
        let resume = self;
        let len = payload.len() as i64;
        if resume.pos.is_some_and(|p| p.diff(seq) >= len) {
            return None;
        }
        let known = [resume.pos, resume.answered]
            .into_iter()
            .flatten()
            .filter(|p| (0..len).contains(&p.diff(seq)))
            .min_by_key(|p| p.diff(seq));
        known.or_else(|| {
            let i = payload.iter().position(|&b| b == b'\n')?;
            Some(seq.offset(i as i64 + 1))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(pos: u32, before: i64, after: i64) -> DirState {
        DirState {
            pos: SeqNum(pos),
            before,
            after,
        }
    }

    #[test]
    fn empty_label_holds_no_state() {
        let l = LabelLayout::new(12).unwrap();
        assert_eq!(l.decode(0), None);
        // The admin's bits alone are no state either.
        assert_eq!(l.decode(0xfff | (1 << 127)), None);
    }

    #[test]
    fn block_must_fit() {
        assert!(LabelLayout::new(MAX_FIRST_BIT).is_some());
        assert!(LabelLayout::new(MAX_FIRST_BIT + 1).is_none());
        assert_eq!(LabelLayout::new(0).unwrap().mask(), (1u128 << 116) - 1);
        assert_eq!(LabelLayout::new(12).unwrap().mask(), !0u128 << 12);
    }

    #[test]
    fn every_field_has_its_documented_bits() {
        // docs/durable.md: version 0..3, unparsed 3, to_server 4..60
        // (pos 4..36, after 36..52, delta 52..60), to_client 60..116.
        let l = LabelLayout::new(0).unwrap();
        let s = Durable {
            to_server: dir(0x8765_4321, 2, 3),
            to_client: dir(0x0000_0001, -1, -4),
            unparsed: true,
        };
        let bits = l.encode(&s).unwrap();
        assert_eq!(bits & 0b111, 1);
        assert_eq!((bits >> 3) & 1, 1);
        assert_eq!((bits >> 4) as u32, 0x8765_4321);
        assert_eq!((bits >> 36) as u16, 3);
        assert_eq!((bits >> 52) as u8, 1);
        assert_eq!((bits >> 60) as u32, 1);
        assert_eq!((bits >> 92) as u16 as i16, -4);
        assert_eq!((bits >> 108) as u8 as i8, -3);
        assert_eq!(bits >> 116, 0);
        assert_eq!(l.decode(bits), Some(s));
    }

    #[test]
    fn admin_bits_are_kept_apart() {
        let l = LabelLayout::new(12).unwrap();
        let s = Durable {
            to_server: dir(100, 0, 1),
            ..Durable::default()
        };
        let bits = l.encode(&s).unwrap();
        assert_eq!(bits & !l.mask(), 0, "nothing outside the block");
        assert_eq!(l.decode(bits | 0xabc), Some(s), "admin's bits ignored");
    }

    #[test]
    fn out_of_range_offsets_are_refused() {
        let l = LabelLayout::new(0).unwrap();
        let big = Durable {
            to_client: dir(0, 0, 40_000),
            ..Durable::default()
        };
        assert_eq!(l.encode(&big), Err(EncodeError::OutOfRange));
        let long_line = Durable {
            to_server: dir(0, 0, 200),
            ..Durable::default()
        };
        assert_eq!(l.encode(&long_line), Err(EncodeError::OutOfRange));
        let edge = Durable {
            to_server: dir(u32::MAX, -32_768 + 128, -32_768),
            to_client: dir(0, 32_767 - 127, 32_767),
            unparsed: false,
        };
        assert_eq!(l.decode(l.encode(&edge).unwrap()), Some(edge));
    }

    #[test]
    fn unknown_versions_are_not_adopted() {
        let l = LabelLayout::new(0).unwrap();
        for v in 2..8u128 {
            assert_eq!(l.decode(v), None, "version {v}");
        }
    }

    #[test]
    fn resume_at_a_known_line_start_else_after_a_newline() {
        let r = Resume {
            pos: Some(SeqNum(100)),
            answered: None,
        };
        // A retransmission holding the rewritten line: parsed from it.
        assert_eq!(
            r.point(SeqNum(94), b"NOOP\r\nPORT 1\r\n"),
            Some(SeqNum(100))
        );
        // Lines before it were the earlier instance's.
        assert_eq!(r.point(SeqNum(90), b"NOOP\r\n"), None);
        // Beyond it: after the first newline, or at what the peer answered.
        assert_eq!(r.point(SeqNum(200), b"OOP\r\nPORT"), Some(SeqNum(205)));
        assert_eq!(r.point(SeqNum(200), b"PORT"), None);
        let answered = Resume {
            answered: Some(SeqNum(200)),
            ..r
        };
        assert_eq!(
            answered.point(SeqNum(200), b"PORT 1\r\n"),
            Some(SeqNum(200))
        );
    }
}
