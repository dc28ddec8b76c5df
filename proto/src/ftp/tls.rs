//! Following TLS record framing on a control connection after `AUTH TLS`,
//! to find where cleartext resumes after `CCC` (RFC 4217 §6).
//!
//! Nothing inside TLS is parsed. The record headers (RFC 5246 §6.2.1: type,
//! version, length) are in the clear, so one direction's stream can be cut
//! into records without decrypting anything. After `CCC` is accepted each
//! side sends a `close_notify` alert (record type 21) and continues in
//! cleartext (RFC 4217 §6): the first byte after an alert record is the
//! first cleartext byte. Under TLS 1.3 alerts travel
//! as application data, so cleartext is never found and the session simply
//! stays unparsed: the safe outcome.

use crate::seq::SeqNum;

/// TLS record content type of an alert (RFC 5246 §6.2.1).
const CONTENT_ALERT: u8 = 21;
/// Length of a TLS record header.
const HEADER_LEN: usize = 5;

/// Record framing of one direction of a control connection under TLS.
#[derive(Clone, Debug)]
pub struct TlsRecords {
    next: SeqNum,
    header: [u8; HEADER_LEN],
    header_len: usize,
    body_left: usize,
    /// Framing was lost (a gap, or bytes that are no record header): from
    /// then on cleartext is never reported.
    lost: bool,
}

impl TlsRecords {
    /// Starts framing at `start`, the first byte after the `234` reply (or
    /// after the `AUTH` command, for the client's direction).
    pub fn new(start: SeqNum) -> Self {
        TlsRecords {
            next: start,
            header: [0; HEADER_LEN],
            header_len: 0,
            body_left: 0,
            lost: false,
        }
    }

    /// Framing whose start is unknown (an implicit-TLS session picked up
    /// mid-stream, or a direction whose first byte was not seen yet): it
    /// never reports cleartext, so the session stays unparsed.
    pub fn unframed() -> Self {
        TlsRecords {
            lost: true,
            ..TlsRecords::new(SeqNum(0))
        }
    }

    /// Cleartext follows an alert record at once: `close_notify` is the last
    /// thing either side sends under TLS after `CCC` (RFC 4217 §6).
    fn cleartext_at(&mut self, at: SeqNum, end: SeqNum) -> Option<SeqNum> {
        self.next = end;
        self.lost = true; // framing is over for this direction
        Some(at)
    }

    /// Feeds a segment; returns the sequence number of the first cleartext
    /// byte when it lies in this segment.
    pub fn feed(&mut self, seq: SeqNum, payload: &[u8]) -> Option<SeqNum> {
        if self.lost {
            return None;
        }
        let end = seq.offset(payload.len() as i64);
        if !self.next.before(end) {
            return None; // nothing new
        }
        if self.next.before(seq) {
            self.lost = true; // a hole: we cannot know where records start
            return None;
        }
        let skip = self.next.diff(seq) as usize;
        let mut i = skip;
        while i < payload.len() {
            if self.body_left > 0 {
                let n = self.body_left.min(payload.len() - i);
                self.body_left -= n;
                i += n;
                if self.body_left == 0 {
                    self.header_len = 0;
                    if self.header[0] == CONTENT_ALERT {
                        return self.cleartext_at(seq.offset(i as i64), end);
                    }
                }
                continue;
            }
            let b = payload[i];
            if self.header_len == 0 && !(20..=24).contains(&b) {
                self.lost = true;
                return None;
            }
            self.header[self.header_len] = b;
            self.header_len += 1;
            i += 1;
            if self.header_len == HEADER_LEN {
                if self.header[1] != 3 {
                    self.lost = true;
                    return None;
                }
                self.body_left = u16::from_be_bytes([self.header[3], self.header[4]]) as usize;
                if self.body_left == 0 {
                    self.header_len = 0;
                }
            }
        }
        self.next = end;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, len: usize) -> Vec<u8> {
        let mut r = vec![kind, 3, 3, (len >> 8) as u8, len as u8];
        r.extend(std::iter::repeat_n(0xAB, len));
        r
    }

    #[test]
    fn cleartext_after_close_notify() {
        let mut stream = record(22, 300);
        stream.extend(record(23, 40));
        stream.extend(record(21, 26));
        let clear_at = stream.len();
        stream.extend_from_slice(b"PASV\r\n");
        // Any cut of the stream finds the same start.
        for cut in 1..stream.len() {
            let mut t = TlsRecords::new(SeqNum(1000));
            let a = t.feed(SeqNum(1000), &stream[..cut]);
            let b = t.feed(SeqNum(1000 + cut as u32), &stream[cut..]);
            assert_eq!(a.or(b), Some(SeqNum(1000 + clear_at as u32)), "cut {cut}");
        }
    }

    #[test]
    fn alert_at_the_end_of_a_segment_is_enough() {
        let mut t = TlsRecords::new(SeqNum(0));
        let r = record(21, 26);
        assert_eq!(t.feed(SeqNum(0), &r), Some(SeqNum(r.len() as u32)));
    }

    #[test]
    fn no_cleartext_without_an_alert() {
        let mut stream = record(23, 10);
        stream.extend_from_slice(b"PORT 1,2,3,4,5,6\r\n");
        let mut t = TlsRecords::new(SeqNum(0));
        assert_eq!(t.feed(SeqNum(0), &stream), None);
        // and it stays lost
        let mut more = record(21, 2);
        more.extend_from_slice(b"PASV\r\n");
        assert_eq!(t.feed(SeqNum(stream.len() as u32), &more), None);
    }

    #[test]
    fn a_gap_loses_the_framing() {
        let mut t = TlsRecords::new(SeqNum(0));
        assert_eq!(t.feed(SeqNum(10), &record(21, 2)), None);
        assert_eq!(t.feed(SeqNum(0), b"PASV\r\n"), None);
    }
}
