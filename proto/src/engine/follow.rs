//! Following the byte stream of a direction: control lines (with the
//! start of a possible announcement held back) and, under TLS, its
//! record framing.

use std::ops::Range;
use std::time::Instant;

use tracing::{debug, info};

use crate::ftp::held::{Completed, Update, MAX_ANNOUNCEMENT};
use crate::ftp::lines::{Line, Position};
use crate::packet::TcpSegment;
use crate::seq::SeqNum;

use super::flow::{Dir, Flow, Shared};
use super::Decision;

/// Whether an unfinished line may still become an announcement: a prefix
/// of `PORT `/`EPRT ` from the client, of `227`/`229` from the server, not
/// longer than an announcement can be.
pub(super) fn could_be_announcement(dir: Dir, partial: &[u8]) -> bool {
    if partial.is_empty() || partial.len() >= MAX_ANNOUNCEMENT {
        return false;
    }
    let verbs: &[&[u8]] = match dir {
        Dir::ToServer => &[b"PORT ", b"EPRT "],
        Dir::ToClient => &[b"227", b"229"],
    };
    verbs.iter().any(|verb| {
        let n = partial.len().min(verb.len());
        partial[..n].eq_ignore_ascii_case(&verb[..n])
    })
}
/// The lines one segment completes, copied out of the line assembler (the
/// flow is updated line by line while the assembler is borrowed).
#[derive(Debug, Default)]
pub(super) struct LineScratch {
    /// The bytes of all complete lines, one after another.
    pub(super) bytes: Vec<u8>,
    /// Each line's first sequence number, range in `bytes`, whole length
    /// and whether it is all there (false for a line over the length
    /// limit, of which only the head is kept).
    pub(super) lines: Vec<(SeqNum, Range<usize>, usize, bool)>,
}

impl Flow {
    /// Feeds a segment's payload to this direction's lines: parses every
    /// line it completes, and holds back the start of a line that may
    /// become an announcement (see `ftp::held` for why and how).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn follow_lines(
        &mut self,
        now: Instant,
        dir: Dir,
        seg: &TcpSegment,
        data_seq: SeqNum,
        payload: &[u8],
        shared: &mut Shared<'_>,
        scratch: &mut LineScratch,
        decision: &mut Decision,
    ) -> Position {
        let LineScratch { bytes, lines } = scratch;
        bytes.clear();
        lines.clear();
        let (this, _) = self.halves(dir);
        let position = this.lines.feed(data_seq, payload, |line| {
            let (at, text, len, whole) = match line {
                Line::Complete(at, line) => (at, line, line.len(), true),
                Line::Overlong { at, head, len } => (at, head, len, false),
            };
            let start = bytes.len();
            bytes.extend_from_slice(text);
            lines.push((at, start..bytes.len(), len, whole));
        });
        if position == Position::Gap {
            return position;
        }
        for (at, range, len, whole) in lines.drain(..) {
            let line = &bytes[range];
            let (this, _) = self.halves(dir);
            let completed = this.hold.complete(at, whole, &mut this.edits);
            if whole {
                let rewritable = completed != Completed::WasReleased;
                self.on_line(now, dir, at, line, rewritable, shared, decision);
                if completed == Completed::WasHeld {
                    // The start of this line was held back: make sure it
                    // goes out with this segment.
                    self.halves(dir).0.cover(at, line);
                }
            } else {
                // Not parsed, but still a command or a reply (so that replies
                // stay paired); parsing resumes with the next line. Counted
                // as the event's reason.
                let event = match dir {
                    Dir::ToServer => self.control.on_client_overlong(line),
                    Dir::ToClient => self.control.on_server_overlong(line),
                };
                self.on_event(now, dir, at, len, line, event, false, shared, decision);
            }
        }
        let parsing = self.control.is_parsing();
        let end = data_seq.offset(payload.len() as i64);
        let (this, _) = self.halves(dir);
        let (start, partial) = this.lines.partial();
        let candidate = parsing
            && !seg.flags.fin
            && !seg.flags.rst
            && !this.lines.in_overlong()
            && could_be_announcement(dir, partial);
        let update = this.hold.update(
            now,
            start,
            partial,
            candidate,
            position == Position::InOrder,
            position == Position::Old && start.before(end),
            shared.cfg.hold_limit,
            &mut this.edits,
        );
        match update {
            Update::Holding => {
                debug!(client = %self.client, ?dir, "possible announcement split across segments: held back, delivery taken over");
                shared.stats.segments_held += 1;
            }
            Update::TimedOut => {
                info!(client = %self.client, ?dir, "held line start never acknowledged; released untouched");
            }
            Update::Unchanged | Update::Harmless => {}
        }
        position
    }

    /// Under TLS, follows the record framing of one direction; once both
    /// directions are back in cleartext (after `CCC`), parsing resumes.
    pub(super) fn follow_tls(&mut self, dir: Dir, data_seq: SeqNum, payload: &[u8]) {
        let (this, _) = self.halves(dir);
        let Some(tls) = this.tls.as_mut() else { return };
        if let Some(clear) = tls.feed(data_seq, payload) {
            this.tls = None;
            this.lines.start_at(clear);
        }
        if self.to_server.is_cleartext() && self.to_client.is_cleartext() {
            debug!(client = %self.client, "control session back in cleartext (CCC); parsed again");
            self.control.resume_cleartext();
        }
    }
}
