//! A sender with timing: application writes with pauses between them,
//! Nagle's algorithm (RFC 896, RFC 1122 §4.2.3.4), a retransmission timer
//! with back-off and the congestion window of one segment after a timeout
//! (RFC 5681 §3.1: after an RTO only the oldest unacknowledged segment is
//! sent until it is acknowledged), as Linux behaves. The receiver
//! acknowledges every segment that reaches it at once.

use std::time::{Duration, Instant};

use super::{Arrival, Side, Sim};

/// How the sending TCP behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sender {
    /// Nagle on: new data waits while earlier data is unacknowledged
    /// (off: `TCP_NODELAY`).
    pub nagle: bool,
}

/// How the receiving TCP behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receiver {
    /// Acknowledges every segment, duplicates included (RFC 9293 §3.10.7.4).
    Standard,
    /// Acknowledges only segments that bring new bytes (a receiver that
    /// ignores duplicates), to exercise the engine's last resort.
    IgnoresDuplicates,
}

/// Linux's minimum retransmission timeout, the first one on a fast path.
const RTO_MIN: Duration = Duration::from_millis(200);
/// The simulation gives up this long after the last write.
const PATIENCE: Duration = Duration::from_secs(30);

impl Sim {
    /// Writes `pieces` from `side`: each piece after its pause (from the
    /// previous write), sent as `sender` would and acknowledged as
    /// `receiver` would, until every byte is acknowledged. Returns the time
    /// from the last write until then, or `Err` with the state if the
    /// stream stalled (nothing left that could make it progress, or
    /// [`PATIENCE`] passed).
    pub fn write_timed(
        &mut self,
        side: Side,
        pieces: &[(Duration, &[u8])],
        sender: Sender,
        receiver: Receiver,
    ) -> Result<Duration, String> {
        let base = self.stream(side).written.len();
        let mut writes: Vec<(Instant, &[u8])> = Vec::new();
        let mut at = self.now;
        for &(pause, bytes) in pieces {
            at += pause;
            writes.push((at, bytes));
        }
        let last_write = at;
        let mut next_write = 0;
        let mut snd_nxt = base;
        let mut rto = RTO_MIN;
        let mut rto_at: Option<Instant> = None;
        let mut in_loss = false;
        for _ in 0..10_000 {
            while next_write < writes.len() && writes[next_write].0 <= self.now {
                self.stream(side)
                    .written
                    .extend_from_slice(writes[next_write].1);
                next_write += 1;
            }
            let (acked, len) = {
                let s = self.stream(side);
                (s.acked, s.written.len())
            };
            if next_write == writes.len() && acked == len {
                return Ok(self.now.saturating_duration_since(last_write));
            }
            let mut sent = None;
            if rto_at.is_some_and(|t| t <= self.now) {
                // Timeout: the oldest unacknowledged bytes again, and
                // nothing new until they are acknowledged.
                sent = Some(self.send_range(side, acked, snd_nxt));
                in_loss = true;
                rto = (rto * 2).min(Duration::from_secs(60));
                rto_at = Some(self.now + rto);
            } else if !in_loss && snd_nxt < len && (!sender.nagle || acked == snd_nxt) {
                sent = Some(self.send_range(side, snd_nxt, len));
                snd_nxt = len;
                rto_at.get_or_insert(self.now + rto);
            }
            if let Some(arrival) = sent {
                let answers = match (arrival, receiver) {
                    (None | Some(Arrival::Empty), _) => false,
                    (Some(Arrival::New), _) => true,
                    (Some(Arrival::Old), r) => r == Receiver::Standard,
                };
                if answers {
                    self.acknowledge(side);
                    let acked_now = self.stream(side).acked;
                    if acked_now == snd_nxt {
                        (rto, rto_at, in_loss) = (RTO_MIN, None, false);
                    } else if acked_now > acked {
                        rto_at = Some(self.now + rto);
                    }
                }
                continue; // the same instant: the sender may go on
            }
            let next = [writes.get(next_write).map(|w| w.0), rto_at]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= last_write + PATIENCE => self.now = self.now.max(t),
                _ => break,
            }
        }
        let s = self.stream(side);
        Err(format!(
            "{side:?} stalled: written {}, sent {}, acknowledged {} (bytes of this write)",
            s.written.len() - base,
            snd_nxt - base,
            s.acked.saturating_sub(base),
        ))
    }
}
