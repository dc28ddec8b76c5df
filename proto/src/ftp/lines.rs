//! Line assembly over one direction of a TCP stream.
//!
//! Control lines (RFC 959 §4: Telnet lines ending in CRLF; RFC 1123
//! §4.1.1.4: accept a bare LF too) are cut out of the byte stream by
//! sequence number, whatever the segmentation. Each byte is parsed once:
//! retransmitted bytes are recognised by their sequence numbers and not fed
//! to the parser again.

use super::held::MAX_ANNOUNCEMENT;
use crate::seq::SeqNum;

/// How much of a line over the limit is kept: enough to classify it (the
/// command verb, the reply code) and to hold every byte of a line that may
/// still become an announcement, which is never longer.
const HEAD: usize = MAX_ANNOUNCEMENT;

/// Where a segment lies relative to the bytes already parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// Every byte was parsed before (a retransmission).
    Old,
    /// The segment continues the stream; its new bytes were parsed.
    InOrder,
    /// The segment starts after a hole: its bytes were not parsed.
    Gap,
}

/// Reassembles lines of one direction. `max_line` bounds memory: a longer
/// line is reported once as overlong, with its first bytes only, and
/// assembly goes on with the next line.
#[derive(Clone, Debug)]
pub struct LineAssembler {
    next: Option<SeqNum>,
    line: Vec<u8>,
    line_start: SeqNum,
    /// Sequence number the stream (or its cleartext part) starts at.
    began: SeqNum,
    overlong: bool,
    max_line: usize,
}

/// A complete line cut out of the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// The bytes of the line, line ending included, and the original
    /// sequence number of its first byte.
    Complete(SeqNum, &'a [u8]),
    /// A line longer than the limit ended; only its head was kept.
    Overlong {
        /// Original sequence number of its first byte.
        at: SeqNum,
        /// Its first bytes (at most 256).
        head: &'a [u8],
        /// Its whole length, line ending included.
        len: usize,
    },
}

impl LineAssembler {
    /// A new assembler that has not yet seen the stream.
    pub fn new(max_line: usize) -> Self {
        LineAssembler {
            next: None,
            line: Vec::new(),
            line_start: SeqNum(0),
            began: SeqNum(0),
            overlong: false,
            max_line,
        }
    }

    /// Sets the first sequence number of the stream (the SYN's plus one).
    pub fn start_at(&mut self, seq: SeqNum) {
        self.next = Some(seq);
        self.line.clear();
        self.line_start = seq;
        self.began = seq;
        self.overlong = false;
    }

    /// True while the line in progress is over the limit.
    pub fn in_overlong(&self) -> bool {
        self.overlong
    }

    /// True when the line in progress is the first of the stream (no byte
    /// of this stream precedes it).
    pub fn line_is_first(&self) -> bool {
        self.line_start == self.began
    }

    /// True when the stream position is known.
    pub fn is_started(&self) -> bool {
        self.next.is_some()
    }

    /// The original sequence number of the next byte to parse.
    pub fn next_seq(&self) -> Option<SeqNum> {
        self.next
    }

    /// The bytes of the line in progress (not yet terminated; only its
    /// head when over the limit) and the sequence number of its first byte.
    pub fn partial(&self) -> (SeqNum, &[u8]) {
        (self.line_start, &self.line)
    }

    /// Feeds one segment's payload; calls `on_line` for each line that
    /// this segment completes.
    pub fn feed(
        &mut self,
        seq: SeqNum,
        payload: &[u8],
        mut on_line: impl FnMut(Line<'_>),
    ) -> Position {
        let Some(next) = self.next else {
            return Position::Gap;
        };
        let end = seq.offset(payload.len() as i64);
        if !next.before(end) {
            return Position::Old;
        }
        if next.before(seq) {
            return Position::Gap;
        }
        let fresh = &payload[next.diff(seq) as usize..];
        let mut pos = next;
        for chunk in fresh.split_inclusive(|&b| b == b'\n') {
            if self.line.is_empty() && !self.overlong {
                self.line_start = pos;
            }
            pos = pos.offset(chunk.len() as i64);
            let complete = chunk.last() == Some(&b'\n');
            if !self.overlong && self.line.len() + chunk.len() > self.max_line {
                self.overlong = true;
                self.line.truncate(HEAD);
            }
            if self.overlong {
                let room = HEAD.saturating_sub(self.line.len()).min(chunk.len());
                self.line.extend_from_slice(&chunk[..room]);
            } else {
                self.line.extend_from_slice(chunk);
            }
            if complete {
                if self.overlong {
                    on_line(Line::Overlong {
                        at: self.line_start,
                        head: &self.line,
                        len: pos.diff(self.line_start) as usize,
                    });
                } else {
                    on_line(Line::Complete(self.line_start, &self.line));
                }
                self.line.clear();
                self.overlong = false;
            }
        }
        self.next = Some(end);
        Position::InOrder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(a: &mut LineAssembler, seq: u32, data: &[u8]) -> (Position, Vec<(u32, Vec<u8>)>) {
        let mut lines = Vec::new();
        let p = a.feed(SeqNum(seq), data, |l| match l {
            Line::Complete(s, b) => lines.push((s.0, b.to_vec())),
            Line::Overlong { at, head, len } => {
                let mut v = format!("<overlong {len}>").into_bytes();
                v.extend_from_slice(head);
                lines.push((at.0, v))
            }
        });
        (p, lines)
    }

    #[test]
    fn lines_across_segments_and_retransmissions() {
        let mut a = LineAssembler::new(512);
        a.start_at(SeqNum(100));
        let (p, l) = collect(&mut a, 100, b"USER a\r\nPO");
        assert_eq!(p, Position::InOrder);
        assert_eq!(l, vec![(100, b"USER a\r\n".to_vec())]);
        // Retransmission of the first segment: nothing parsed again.
        assert_eq!(collect(&mut a, 100, b"USER a\r\nPO").0, Position::Old);
        // Overlapping re-cut: only the new bytes count.
        let (p, l) = collect(&mut a, 108, b"PORT 1\nNOOP\n");
        assert_eq!(p, Position::InOrder);
        assert_eq!(
            l,
            vec![(108, b"PORT 1\n".to_vec()), (115, b"NOOP\n".to_vec())]
        );
        assert_eq!(collect(&mut a, 200, b"x\n").0, Position::Gap);
    }

    #[test]
    fn overlong_line_is_not_kept() {
        let mut a = LineAssembler::new(8);
        a.start_at(SeqNum(0));
        let (_, l) = collect(&mut a, 0, b"0123456789\nok\n");
        assert_eq!(
            l,
            vec![
                (0, b"<overlong 11>0123456789\n".to_vec()),
                (11, b"ok\n".to_vec())
            ]
        );
        // The head is bounded, whatever the line's length and cuts.
        let mut long = vec![b'x'; 1000];
        long.push(b'\n');
        let (_, l) = collect(&mut a, 14, &long[..300]);
        assert!(l.is_empty());
        assert!(a.in_overlong());
        assert_eq!(a.partial().1.len(), HEAD);
        let (_, l) = collect(&mut a, 314, &long[300..]);
        assert_eq!(l[0].0, 14);
        assert_eq!(l[0].1.len(), "<overlong 1001>".len() + HEAD);
        assert!(!a.in_overlong());
    }

    #[test]
    fn sequence_wraps() {
        let mut a = LineAssembler::new(64);
        a.start_at(SeqNum(u32::MAX - 2));
        let (_, l) = collect(&mut a, u32::MAX - 2, b"NOOP\r\n");
        assert_eq!(l, vec![(u32::MAX - 2, b"NOOP\r\n".to_vec())]);
        assert_eq!(a.next_seq(), Some(SeqNum(3)));
    }
}
