//! Lines held back while they may still become an announcement.
//!
//! A sender may cut a line anywhere (RFC 9293 §3.8: TCP is a byte stream),
//! and an announcement whose first part has left the gateway can no longer
//! be rewritten. So the bytes of a line that may still become one (a
//! prefix of `PORT `/`EPRT ` from the client, of `227`/`229` from the
//! server) must not reach the receiver before the line is complete.
//!
//! **Why not drop them.** Dropping the segment and waiting for a
//! retransmission stalls for good as soon as the sender waits for an ACK
//! before it sends the rest: with Nagle's algorithm on (RFC 1122
//! §4.2.3.4; an interactive client typing `PWD` slowly), or after a pause
//! longer than its retransmission timeout, when its congestion window is
//! one segment and only the held bytes are retransmitted (RFC 5681 §3.1).
//!
//! **What the engine does instead: it takes their delivery over.** Held
//! bytes are recorded as a provisional edit that emits nothing: the segment
//! goes on without them, and when it carried nothing else it goes on as a
//! duplicate of the byte before the line (a keep-alive-like probe, RFC 9293
//! §3.10.7.4: the receiver answers any duplicate with an immediate ACK; an
//! empty one at the stream's start). The receiver's ACK of that position,
//! mapped back through the edit, acknowledges the held bytes to the sender,
//! which then goes on: Nagle sends the rest, the retransmission timer
//! stops. The engine keeps a copy of the bytes; when a later segment
//! completes the line, the provisional edit is replaced by the line's own
//! (the rewrite, or an identity edit), which goes out whole with that
//! segment and with every copy of it. A line that turns out harmless
//! (`PW…`) goes out the same way, untouched; if the stream ends first, its
//! FIN carries them (every copy of it).
//!
//! Why not an ACK of the engine's own: the core cannot send, and a shell
//! that forged one would need a raw socket, the addresses of the far side
//! of the NAT and conntrack's consent. Turning the sender's own segment
//! into a duplicate gets the real receiver to send that ACK, through every
//! hook as usual: no packet is invented, the core stays pure and the
//! shells are unchanged. (Measured in the netns lab: 0 INVALID packets,
//! and no latency beyond the sender's own pause.)
//!
//! **The last resort.** If the receiver never answers the duplicate, the
//! sender keeps retransmitting the held bytes. A retransmission that
//! arrives after [`EngineConfig::hold_limit`](crate::engine::EngineConfig)
//! releases them untouched; the line, if it becomes an announcement that
//! needs a rewrite, opens nothing (`Reason::HeldLineReleased`). The limit
//! is checked against the `now` of that retransmission: at the deadline
//! itself there is nothing the engine could do without a packet to carry
//! the bytes, so it needs no timer of `Engine::poll_at`.
//!
//! What the takeover costs: while a line is held, the sender believes the
//! held bytes delivered, so they live only in the engine until the rest
//! arrives; a crash or an upgrade in that window loses them and stalls that
//! session (the durable state in conntrack does not carry held lines).
//! Held lines are bounded
//! by the announcement length limit, so at most that many bytes per
//! direction are held.

use std::time::{Duration, Instant};

use crate::seq::{Edit, SeqNum, StreamEdits};

/// Longest announcement line accepted (`PORT`/`EPRT`/`227`/`229`, line
/// ending included). The longest well-formed ones are about 100 bytes
/// (an `EPRT` with a full IPv6 address, a `227` with a long text); a
/// longer line is refused, and so never held for longer than this.
pub const MAX_ANNOUNCEMENT: usize = 256;

/// The hold state of one direction's line in progress.
#[derive(Clone, Debug, Default)]
pub struct Hold {
    held: Option<Held>,
    /// Start of a line whose held bytes were released untouched after the
    /// hold limit: the line can no longer be rewritten.
    timed_out: Option<SeqNum>,
    /// The last bytes released: any copy of the segment that follows them
    /// carries them in front (a FIN, or a segment no longer parsed, does
    /// not touch their edit by itself).
    carry: Option<(SeqNum, Vec<u8>)>,
}

/// Bytes of the line in progress taken over by the engine.
#[derive(Clone, Debug)]
struct Held {
    /// Original sequence number of the line's first byte.
    start: SeqNum,
    /// The bytes held (a copy: the engine answers for their delivery).
    bytes: Vec<u8>,
    /// When the first bytes of the line were taken over.
    since: Instant,
}

/// What became of the start of a line that just completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completed {
    /// It was not held: the line goes out as it arrives.
    Plain,
    /// It was held: the line's own edit (or an identity edit) must now
    /// cover the whole line, so that it goes out whole with this segment.
    WasHeld,
    /// Its held start was let through untouched: not to be rewritten.
    WasReleased,
}

/// What the hold did with the line in progress after a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// This segment changed nothing: nothing is held, or it did not
    /// touch the held bytes.
    Unchanged,
    /// Bytes of the line are held (taken over), this segment's among them.
    Holding,
    /// Held bytes go out now, untouched: the line turned out harmless.
    Harmless,
    /// Held bytes go out now, untouched, after the hold limit.
    TimedOut,
}

impl Hold {
    /// True while bytes of the line in progress are held.
    pub fn is_holding(&self) -> bool {
        self.held.is_some()
    }

    /// The line starting at `at` completed, `whole` or over the length
    /// limit (never parsed). The hold of its start, if any, ends: a whole
    /// line's provisional edit is removed for the caller's final one, the
    /// held bytes of a line over the limit are released.
    pub fn complete(&mut self, at: SeqNum, whole: bool, edits: &mut StreamEdits) -> Completed {
        if self.held.as_ref().is_some_and(|h| h.start == at) {
            if !whole {
                self.release(edits);
                return Completed::Plain;
            }
            self.held = None;
            edits.pop_last_at(at);
            return Completed::WasHeld;
        }
        if self.timed_out.take() == Some(at) {
            return Completed::WasReleased;
        }
        Completed::Plain
    }

    /// After a segment: the line in progress is `partial`, starting at
    /// `start`. `candidate`: it may still become an announcement.
    /// `fresh`: the segment brought new bytes of it. `retransmitted`: the
    /// segment carried only bytes already seen, some of them held.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        now: Instant,
        start: SeqNum,
        partial: &[u8],
        candidate: bool,
        fresh: bool,
        retransmitted: bool,
        limit: Duration,
        edits: &mut StreamEdits,
    ) -> Update {
        let Some(held) = self.held.as_mut() else {
            if candidate && fresh && !partial.is_empty() && edits.push(provisional(start, partial))
            {
                self.held = Some(Held {
                    start,
                    bytes: partial.to_vec(),
                    since: now,
                });
                self.carry = None;
                return Update::Holding;
            }
            return Update::Unchanged;
        };
        if !candidate || held.start != start {
            self.release(edits);
            return Update::Harmless;
        }
        if fresh {
            held.bytes.clear();
            held.bytes.extend_from_slice(partial);
            edits.pop_last_at(start);
            edits.push(provisional(start, partial));
        } else if !retransmitted {
            return Update::Unchanged;
        } else if now.saturating_duration_since(held.since) >= limit {
            self.release(edits);
            self.timed_out = Some(start);
            return Update::TimedOut;
        }
        Update::Holding
    }

    /// Lets the held bytes go out untouched, with the next segment that
    /// touches them, or in front of the one that follows them (see
    /// [`Hold::carried`]). Returns false when nothing was held.
    pub fn release(&mut self, edits: &mut StreamEdits) -> bool {
        let Some(held) = self.held.take() else {
            return false;
        };
        edits.pop_last_at(held.start);
        edits.push(Edit {
            at: held.start,
            old_len: held.bytes.len() as u32,
            new: held.bytes.clone(),
        });
        self.carry = Some((held.start, held.bytes));
        true
    }

    /// For a segment of `payload` at `seq` that starts right after bytes
    /// released earlier: those bytes and the payload, from their start.
    pub fn carried(&self, seq: SeqNum, payload: &[u8]) -> Option<(SeqNum, Vec<u8>)> {
        let (start, bytes) = self.carry.as_ref()?;
        (start.offset(bytes.len() as i64) == seq).then(|| (*start, [&bytes[..], payload].concat()))
    }
}

/// The edit that stands for held bytes: they are emitted as nothing.
fn provisional(start: SeqNum, partial: &[u8]) -> Edit {
    Edit {
        at: start,
        old_len: partial.len() as u32,
        new: Vec::new(),
    }
}
