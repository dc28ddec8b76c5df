//! Sequence numbers and the per-direction edit log.
//!
//! When ftp-alg replaces text in one direction of a control connection, the
//! byte stream the receiver sees (the *wire* stream) no longer lines up with
//! the stream the sender wrote (the *original* stream). [`StreamEdits`]
//! remembers every replacement made in one direction and maps between the
//! two spaces: sequence numbers of that direction forward (original to wire),
//! acknowledgement and SACK numbers of the other direction back (wire to
//! original). Because each edit stores its replacement bytes, any copy of a
//! segment — a retransmission, or one cut differently — is rendered to the
//! same wire bytes as the first copy (RFC 9293 §3.4: a receiver must be able
//! to take any segment of the same sequence space and get the same data).

use std::collections::VecDeque;

/// A TCP sequence number: arithmetic modulo 2^32 (RFC 9293 §3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SeqNum(pub u32);

impl SeqNum {
    /// `self + n`, wrapping.
    pub fn offset(self, n: i64) -> SeqNum {
        SeqNum(self.0.wrapping_add(n as u32))
    }

    /// Signed distance `self - other`, valid while the two are less than
    /// 2^31 apart (always true inside one TCP window).
    pub fn diff(self, other: SeqNum) -> i64 {
        self.0.wrapping_sub(other.0) as i32 as i64
    }

    /// `self < other` in sequence space.
    pub fn before(self, other: SeqNum) -> bool {
        self.diff(other) < 0
    }
}

/// One replacement in a direction's byte stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edit {
    /// Original sequence number of the first replaced byte.
    pub at: SeqNum,
    /// Number of original bytes replaced.
    pub old_len: u32,
    /// The bytes the receiver gets instead.
    pub new: Vec<u8>,
}

impl Edit {
    fn end(&self) -> SeqNum {
        self.at.offset(self.old_len as i64)
    }

    fn delta(&self) -> i64 {
        self.new.len() as i64 - self.old_len as i64
    }
}

/// How many edits are kept with their bytes; older ones are folded into a
/// plain offset. A control connection rarely has more than one rewrite in
/// flight, so this bounds memory without affecting live traffic.
const MAX_EDITS: usize = 16;

/// The edits made to one direction of a connection, in stream order.
#[derive(Clone, Debug, Default)]
pub struct StreamEdits {
    /// Total length change of edits that were folded away.
    folded_delta: i64,
    /// A rewrite point taken over from an earlier instance, without its
    /// bytes (see [`StreamEdits::adopted`]); every edit lies after it.
    pivot: Option<Pivot>,
    edits: VecDeque<Edit>,
}

/// The kernel seqadj's view of a direction: sequence numbers at and
/// before `pos` shift by `before`, later ones by `after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pivot {
    pos: SeqNum,
    before: i64,
    after: i64,
}

/// A segment as it must appear on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// Sequence number for the segment's header.
    pub seq: SeqNum,
    /// New payload, or `None` when the payload is unchanged.
    pub payload: Option<Vec<u8>>,
}

impl StreamEdits {
    /// The edits of a direction picked up from stored state: at and before
    /// `pos` (the start of the last rewritten line) the offset is
    /// `before`, after it `after`. A retransmission of that line is planned
    /// again and pushed as an edit at `pos`, which then supplies the
    /// change itself.
    pub fn adopted(pos: SeqNum, before: i64, after: i64) -> Self {
        StreamEdits {
            pivot: Some(Pivot { pos, before, after }),
            ..StreamEdits::default()
        }
    }

    /// True when no byte of this direction has changed length or content.
    pub fn is_identity(&self) -> bool {
        self.folded_delta == 0
            && self.edits.is_empty()
            && self.pivot.is_none_or(|p| p.before == 0 && p.after == 0)
    }

    /// Total length change so far (wire length minus original length).
    pub fn total_delta(&self) -> i64 {
        self.folded_delta
            + self.pivot.map_or(0, |p| p.after)
            + self.edits.iter().map(Edit::delta).sum::<i64>()
    }

    /// The direction reduced to what the kernel's seqadj keeps: the start
    /// of the last edit that changed the length, the offset at and before
    /// it and the offset after it.
    pub fn rewrite_point(&self) -> (SeqNum, i64, i64) {
        let total = self.total_delta();
        let mut after_last = 0;
        for edit in self.edits.iter().rev() {
            if edit.delta() != 0 {
                return (
                    edit.at,
                    total - after_last - edit.delta(),
                    total - after_last,
                );
            }
            after_last += edit.delta();
        }
        match self.pivot {
            Some(p) => (p.pos, total - p.after + p.before, total),
            None => (SeqNum(0), total, total),
        }
    }

    /// The offset of original sequence number `seq` before any kept edit.
    fn base_delta(&self, seq: SeqNum) -> i64 {
        self.folded_delta
            + match self.pivot {
                Some(p) if !p.pos.before(seq) => p.before,
                Some(p) => p.after,
                None => 0,
            }
    }

    /// Original start of the most recent edit.
    pub fn last_start(&self) -> Option<SeqNum> {
        self.edits.back().map(|e| e.at)
    }

    /// Records a replacement. Edits must arrive in stream order and must not
    /// overlap; an edit that breaks this is ignored and `false` returned.
    pub fn push(&mut self, edit: Edit) -> bool {
        if let Some(last) = self.edits.back() {
            if edit.at.before(last.end()) {
                return false;
            }
        }
        if let Some(p) = self.pivot.as_mut() {
            if edit.at.before(p.pos) {
                return false;
            }
            if edit.at == p.pos {
                // The adopted line, planned again: it brings its own change.
                p.after = p.before;
            }
        }
        self.edits.push_back(edit);
        if self.edits.len() > MAX_EDITS {
            if let Some(old) = self.edits.pop_front() {
                self.folded_delta += old.delta();
            }
        }
        true
    }

    /// Removes the most recent edit if it starts at `at`, so that a final
    /// form can replace it. Only for an edit none of whose bytes can have
    /// reached the receiver in another form (one that emits nothing);
    /// returns whether one was removed.
    pub fn pop_last_at(&mut self, at: SeqNum) -> bool {
        let found = self.edits.back().is_some_and(|e| e.at == at);
        if found {
            self.edits.pop_back();
        }
        found
    }

    /// Maps an original sequence number that is not inside an edit to the
    /// wire. A number inside an edit maps to the wire start of that edit.
    pub fn to_wire(&self, seq: SeqNum) -> SeqNum {
        let mut delta = self.base_delta(seq);
        for edit in &self.edits {
            if !edit.at.before(seq) {
                break;
            }
            if seq.before(edit.end()) {
                // Inside the replaced bytes: there is no byte-for-byte
                // correspondence, so point at the start of the replacement.
                return edit.at.offset(delta);
            }
            delta += edit.delta();
        }
        seq.offset(delta)
    }

    /// Maps a wire sequence number (an acknowledgement or SACK edge sent by
    /// the receiver) back to the original stream. A number inside a
    /// replacement maps to the start of the replaced original bytes when
    /// `round_up` is false and to their end when it is true, so that the
    /// sender is never told that bytes arrived which did not.
    pub fn to_original(&self, wire: SeqNum, round_up: bool) -> SeqNum {
        let mut delta = self.folded_delta;
        if let Some(p) = self.pivot {
            let wire_pos = p.pos.offset(delta + p.before);
            if !wire_pos.before(wire) {
                return wire.offset(-(delta + p.before));
            }
            delta += p.after;
            let original = wire.offset(-delta);
            if !p.pos.before(original) {
                // Inside the adopted line, whose bytes are unknown: no part
                // of it is acknowledged.
                return p.pos;
            }
        }
        for edit in &self.edits {
            let wire_start = edit.at.offset(delta);
            let wire_end = wire_start.offset(edit.new.len() as i64);
            // An edit that emits nothing (bytes taken over by the engine,
            // see `ftp::held`) is received as soon as the receiver has
            // everything before it: an ACK at its wire position covers it.
            if wire.before(wire_start) || (wire == wire_start && !edit.new.is_empty()) {
                break;
            }
            if wire.before(wire_end) {
                return if round_up { edit.end() } else { edit.at };
            }
            delta += edit.delta();
        }
        wire.offset(-delta)
    }

    /// Renders a segment of original bytes `payload` starting at original
    /// sequence `seq` as it must go on the wire. Every edit the segment
    /// touches is emitted whole, even if the segment holds only part of the
    /// replaced bytes, so all copies of a span carry identical bytes.
    pub fn render(&self, seq: SeqNum, payload: &[u8]) -> Rendered {
        let end = seq.offset(payload.len() as i64);
        let mut touched = self
            .edits
            .iter()
            .filter(|e| e.at.before(end) && seq.before(e.end()))
            .peekable();
        let Some(first) = touched.peek() else {
            return Rendered {
                seq: self.to_wire(seq),
                payload: None,
            };
        };
        let start = if first.at.before(seq) { first.at } else { seq };
        let mut out = Vec::with_capacity(payload.len() + 64);
        let mut cursor = seq; // next original byte of `payload` to copy
        for edit in touched {
            if cursor.before(edit.at) {
                let from = cursor.diff(seq) as usize;
                let to = edit.at.diff(seq) as usize;
                out.extend_from_slice(&payload[from..to]);
            }
            out.extend_from_slice(&edit.new);
            cursor = edit.end();
        }
        if cursor.before(end) {
            out.extend_from_slice(&payload[cursor.diff(seq) as usize..]);
        }
        Rendered {
            seq: self.to_wire(start),
            payload: Some(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edits(list: &[(u32, u32, &str)]) -> StreamEdits {
        let mut e = StreamEdits::default();
        for &(at, old_len, new) in list {
            assert!(e.push(Edit {
                at: SeqNum(at),
                old_len,
                new: new.as_bytes().to_vec(),
            }));
        }
        e
    }

    #[test]
    fn seq_wraps() {
        assert_eq!(SeqNum(u32::MAX).offset(2), SeqNum(1));
        assert_eq!(SeqNum(1).diff(SeqNum(u32::MAX)), 2);
        assert!(SeqNum(u32::MAX).before(SeqNum(0)));
    }

    #[test]
    fn lengthening_edit_shifts_later_bytes() {
        // 3 bytes at 10..13 replaced by 5: +2 after the edit.
        let e = edits(&[(10, 3, "abcde")]);
        assert_eq!(e.to_wire(SeqNum(5)), SeqNum(5));
        assert_eq!(e.to_wire(SeqNum(13)), SeqNum(15));
        assert_eq!(e.to_original(SeqNum(15), false), SeqNum(13));
        assert_eq!(e.to_original(SeqNum(10), false), SeqNum(10));
        // An ACK inside the replacement acknowledges none of it.
        assert_eq!(e.to_original(SeqNum(12), false), SeqNum(10));
        assert_eq!(e.to_original(SeqNum(12), true), SeqNum(13));
    }

    #[test]
    fn shortening_edit_shifts_later_bytes_back() {
        let e = edits(&[(10, 5, "xy")]);
        assert_eq!(e.to_wire(SeqNum(20)), SeqNum(17));
        assert_eq!(e.to_original(SeqNum(17), false), SeqNum(20));
        assert_eq!(e.total_delta(), -3);
    }

    #[test]
    fn render_is_identical_for_every_cut() {
        // Original stream "0123456789ABCDEF" from seq 100; bytes 104..108
        // ("4567") become "xyzxyz".
        let orig = b"0123456789ABCDEF";
        let e = edits(&[(104, 4, "xyzxyz")]);
        let whole = e.render(SeqNum(100), orig);
        assert_eq!(whole.seq, SeqNum(100));
        assert_eq!(whole.payload.as_deref(), Some(&b"0123xyzxyz89ABCDEF"[..]));
        // Any cut into two segments reassembles to the same wire bytes.
        for cut in 1..orig.len() {
            let a = e.render(SeqNum(100), &orig[..cut]);
            let b = e.render(SeqNum(100 + cut as u32), &orig[cut..]);
            let mut wire = vec![0u8; 18];
            for r in [&a, &b] {
                let bytes = r.payload.clone().unwrap_or_else(|| {
                    if r == &a {
                        orig[..cut].to_vec()
                    } else {
                        orig[cut..].to_vec()
                    }
                });
                let off = r.seq.diff(SeqNum(100)) as usize;
                wire[off..off + bytes.len()].copy_from_slice(&bytes);
            }
            assert_eq!(&wire, b"0123xyzxyz89ABCDEF", "cut at {cut}");
        }
    }

    #[test]
    fn folding_keeps_the_offset() {
        let mut e = StreamEdits::default();
        for i in 0..(MAX_EDITS as u32 + 4) {
            assert!(e.push(Edit {
                at: SeqNum(i * 10),
                old_len: 1,
                new: b"ab".to_vec(),
            }));
        }
        let n = MAX_EDITS as i64 + 4;
        assert_eq!(e.total_delta(), n);
        assert_eq!(e.to_wire(SeqNum(100_000)), SeqNum(100_000 + n as u32));
    }

    #[test]
    fn an_edit_that_emits_nothing_is_acknowledged_with_what_precedes_it() {
        // Bytes 10..13 taken over (emitted as nothing): an ACK of wire 10
        // acknowledges them; later bytes shift back by 3.
        let mut e = edits(&[(10, 3, "")]);
        assert_eq!(e.to_original(SeqNum(10), false), SeqNum(13));
        assert_eq!(e.to_original(SeqNum(9), false), SeqNum(9));
        assert_eq!(e.to_wire(SeqNum(11)), SeqNum(10));
        assert_eq!(
            e.render(SeqNum(10), b"abc").payload.as_deref(),
            Some(&b""[..])
        );
        // Replaced by its final form, the bytes are emitted whole.
        assert!(e.pop_last_at(SeqNum(10)));
        assert!(e.push(Edit {
            at: SeqNum(10),
            old_len: 5,
            new: b"ABCDE".to_vec(),
        }));
        let r = e.render(SeqNum(13), b"de");
        assert_eq!(
            (r.seq, r.payload.as_deref()),
            (SeqNum(10), Some(&b"ABCDE"[..]))
        );
        assert_eq!(e.to_original(SeqNum(10), false), SeqNum(10));
        assert!(!e.pop_last_at(SeqNum(11)));
    }

    #[test]
    fn overlapping_edit_is_refused() {
        let mut e = edits(&[(10, 5, "x")]);
        assert!(!e.push(Edit {
            at: SeqNum(12),
            old_len: 1,
            new: vec![]
        }));
    }

    #[test]
    fn adopted_pivot_shifts_like_seqadj() {
        // Stored: the line at 100 changed the stream by +1, after -2
        // before it: -2 at and before 100, -1 after.
        let e = StreamEdits::adopted(SeqNum(100), -2, -1);
        assert!(!e.is_identity());
        assert_eq!(e.to_wire(SeqNum(90)), SeqNum(88));
        assert_eq!(e.to_wire(SeqNum(100)), SeqNum(98));
        assert_eq!(e.to_wire(SeqNum(130)), SeqNum(129));
        assert_eq!(e.to_original(SeqNum(98), false), SeqNum(100));
        assert_eq!(e.to_original(SeqNum(129), false), SeqNum(130));
        assert_eq!(e.total_delta(), -1);
        assert_eq!(e.rewrite_point(), (SeqNum(100), -2, -1));
    }

    #[test]
    fn adopted_line_planned_again_brings_its_own_change() {
        // The line "PORT 1\r\n" (8 bytes) at 100 was rewritten to 9 bytes.
        let mut e = StreamEdits::adopted(SeqNum(100), 0, 1);
        assert!(e.push(Edit {
            at: SeqNum(100),
            old_len: 8,
            new: b"PORT 12\r\n".to_vec(),
        }));
        assert_eq!(e.to_wire(SeqNum(108)), SeqNum(109));
        assert_eq!(e.total_delta(), 1);
        assert_eq!(e.rewrite_point(), (SeqNum(100), 0, 1));
        let r = e.render(SeqNum(100), b"PORT 1\r\nNOOP\r\n");
        assert_eq!(r.seq, SeqNum(100));
        assert_eq!(r.payload.as_deref(), Some(&b"PORT 12\r\nNOOP\r\n"[..]));
        // A later rewrite keeps the point of the latest one.
        assert!(e.push(Edit {
            at: SeqNum(200),
            old_len: 4,
            new: b"ab".to_vec(),
        }));
        assert_eq!(e.rewrite_point(), (SeqNum(200), 1, -1));
        // Nothing can go before the adopted point.
        assert!(!StreamEdits::adopted(SeqNum(100), 0, 1).push(Edit {
            at: SeqNum(50),
            old_len: 1,
            new: vec![],
        }));
    }

    #[test]
    fn rewrite_point_of_a_live_log() {
        let e = edits(&[(10, 3, "abcd"), (20, 5, "x"), (30, 2, "yz")]);
        // The last length change is at 20: +1 before it, -3 after.
        assert_eq!(e.rewrite_point(), (SeqNum(20), 1, -3));
        assert_eq!(StreamEdits::default().rewrite_point(), (SeqNum(0), 0, 0));
    }
}
