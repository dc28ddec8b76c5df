//! What the daemon tells about itself: counters of the engine and of the
//! shell, and on request the list of live sessions. The worker thread
//! publishes a [`Published`] value (counters and gauges only) about once a
//! second; the metrics endpoint only reads the latest one, so it never
//! touches the engine or delays a packet. The list of sessions costs time
//! in proportion to their number (15 ms at 100,000 sessions, during which
//! packets wait), so the worker builds it only when the status socket asks
//! ([`Shared::request_sessions`]), at its next wake-up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ftp_alg_proto::stats::{EngineStats, SessionInfo};

/// Counters kept by the queue loop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShellStats {
    /// Packets received from the queue.
    pub packets: u64,
    /// Packets forwarded with a new payload or header.
    pub packets_modified: u64,
    /// Verdicts the kernel did not accept.
    pub verdict_errors: u64,
    /// Times the kernel reported the queue full (ENOBUFS): control packets
    /// were dropped before reaching ftp-alg (senders retransmit them).
    pub queue_overruns: u64,
    /// Pinhole installs or removals that failed.
    pub pinhole_errors: u64,
    /// Pieces of ftp-alg's rules put back after a firewall reload.
    pub rule_repairs: RuleRepairs,
    /// Per-packet processing time histogram: counts per upper bound.
    pub processing: Histogram,
}

/// Pieces of ftp-alg's rules put back after a firewall reload took them
/// away, by kind (the `what` label of `ftp_alg_rule_repairs_total`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleRepairs {
    /// Its table (with its sets, maps and chains) loaded again.
    pub table: u64,
    /// Queue rules inserted again.
    pub queue_rule: u64,
    /// Accept rules inserted again.
    pub accept_rule: u64,
}

impl RuleRepairs {
    /// Counts one repair of `kind` (`table`, `queue_rule` or
    /// `accept_rule`, as `rules::Missing::kind` names them).
    pub fn count(&mut self, kind: &str) {
        match kind {
            "table" => self.table += 1,
            "queue_rule" => self.queue_rule += 1,
            _ => self.accept_rule += 1,
        }
    }

    /// Every kind with its count, in a fixed order.
    pub fn by_kind(&self) -> [(&'static str, u64); 3] {
        [
            ("table", self.table),
            ("queue_rule", self.queue_rule),
            ("accept_rule", self.accept_rule),
        ]
    }
}

/// A fixed-bucket histogram of durations (Prometheus style, cumulative at
/// render time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    /// Upper bounds of the buckets, in microseconds (ascending).
    pub bounds_us: &'static [u64],
    /// Observations per bucket (not cumulative); one more for +Inf.
    pub counts: Vec<u64>,
    /// Sum of all observations, in nanoseconds.
    pub sum_ns: u64,
}

/// Bucket bounds for per-packet processing time.
pub const PROCESSING_BOUNDS_US: &[u64] = &[5, 10, 25, 50, 100, 250, 500, 1000, 5000, 25000];

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            bounds_us: PROCESSING_BOUNDS_US,
            counts: vec![0; PROCESSING_BOUNDS_US.len() + 1],
            sum_ns: 0,
        }
    }
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&mut self, d: Duration) {
        let us = d.as_micros() as u64;
        let i = self
            .bounds_us
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(self.bounds_us.len());
        self.counts[i] += 1;
        self.sum_ns = self.sum_ns.saturating_add(d.as_nanos() as u64);
    }

    /// Total observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// What the worker publishes every second.
#[derive(Clone, Debug, Default)]
pub struct Published {
    /// Engine counters.
    pub engine: EngineStats,
    /// Shell counters.
    pub shell: ShellStats,
    /// Live sessions.
    pub sessions: usize,
    /// Live pinholes over all sessions.
    pub pinholes: usize,
    /// Live FTPS range elements.
    pub ranges: usize,
}

/// What the worker and the telemetry threads share: the latest
/// [`Published`] value, and requests for the list of sessions with their
/// answers. Clones share the same state.
#[derive(Clone, Debug, Default)]
pub struct Shared {
    published: Arc<Mutex<Published>>,
    sessions: Arc<SessionRequests>,
}

/// Requests for the list of sessions: readers count them, the worker
/// answers all requests made so far with one list.
#[derive(Debug, Default)]
struct SessionRequests {
    /// Set with each request; the worker polls it with one atomic load per
    /// wake-up, cheaper than taking a lock.
    wanted: AtomicBool,
    slot: Mutex<SessionSlot>,
    answered: Condvar,
}

#[derive(Debug, Default)]
struct SessionSlot {
    /// Requests made so far.
    asked: u64,
    /// Requests the latest list answers.
    answered: u64,
    list: Arc<Vec<SessionInfo>>,
}

impl Shared {
    /// A slot holding `p`, with no request pending.
    pub fn new(p: Published) -> Self {
        Shared {
            published: Arc::new(Mutex::new(p)),
            sessions: Arc::default(),
        }
    }

    /// Replaces the published value (worker side).
    pub fn publish(&self, p: Published) {
        *self.latest() = p;
    }

    /// The latest published value. A panic of another holder does not
    /// hide it: the value is replaced whole, so it is never half-written.
    pub fn latest(&self) -> MutexGuard<'_, Published> {
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// True when a reader waits for the list of sessions (worker side;
    /// one atomic load, so it can be asked on every wake-up).
    pub fn sessions_wanted(&self) -> bool {
        self.sessions.wanted.load(Ordering::Acquire)
    }

    /// Answers every request made so far with `list` (worker side). The
    /// list is built before the call, so the caller should first check
    /// [`Shared::sessions_wanted`]; a request made while it was built is
    /// answered with it too, being at most that much older.
    pub fn answer_sessions(&self, list: Vec<SessionInfo>) {
        let requests = &self.sessions;
        requests.wanted.store(false, Ordering::Release);
        let mut slot = requests.slot.lock().unwrap_or_else(PoisonError::into_inner);
        slot.answered = slot.asked;
        slot.list = Arc::new(list);
        drop(slot);
        requests.answered.notify_all();
    }

    /// Asks the worker for the list of sessions and waits for it at most
    /// `timeout`; `None` when the worker did not answer in time.
    pub fn request_sessions(&self, timeout: Duration) -> Option<Arc<Vec<SessionInfo>>> {
        let requests = &self.sessions;
        let deadline = Instant::now() + timeout;
        let mut slot = requests.slot.lock().unwrap_or_else(PoisonError::into_inner);
        slot.asked += 1;
        let ticket = slot.asked;
        requests.wanted.store(true, Ordering::Release);
        while slot.answered < ticket {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            slot = requests
                .answered
                .wait_timeout(slot, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Some(slot.list.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_answered_by_the_next_list() {
        let shared = Shared::default();
        assert!(!shared.sessions_wanted());
        // Nobody answers: the reader gives up.
        assert!(shared.request_sessions(Duration::from_millis(20)).is_none());
        assert!(shared.sessions_wanted());

        let done = Arc::new(AtomicBool::new(false));
        let worker = {
            let (shared, done) = (shared.clone(), done.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Acquire) {
                    if shared.sessions_wanted() {
                        shared.answer_sessions(Vec::new());
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        let list = shared.request_sessions(Duration::from_secs(10));
        assert_eq!(list.as_deref(), Some(&Vec::new()));
        done.store(true, Ordering::Release);
        worker.join().unwrap();
        assert!(!shared.sessions_wanted());
    }
}
