//! What the daemon tells about itself: counters of the engine and of the
//! shell, and a snapshot of live sessions. The worker thread publishes a
//! [`Published`] value about once a second; the metrics endpoint and the
//! status socket only read the latest one, so neither ever touches the
//! engine or delays a packet.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::pinhole::Pinhole;

/// Counters kept by the engine (pure data: the engine does no I/O).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Control sessions started (SYN seen or picked up mid-stream).
    pub sessions_opened: u64,
    /// Control sessions forgotten (closed, idle or unanswered).
    pub sessions_closed: u64,
    /// Announcements accepted, by form (`port`, `eprt`, `pasv227`, `epsv229`).
    pub announcements: BTreeMap<&'static str, u64>,
    /// Announcements whose text was rewritten.
    pub rewrites: u64,
    /// Pinholes opened.
    pub pinholes_opened: u64,
    /// Pinholes closed by ftp-alg (session end, refusal by the server,
    /// replaced by a newer one, REIN/QUIT).
    pub pinholes_closed: u64,
    /// Pinholes whose lifetime ran out unused (or used: nftables deletes a
    /// used element itself, ftp-alg cannot tell which).
    pub pinholes_expired: u64,
    /// Lines that opened nothing, by reason.
    pub refusals: BTreeMap<&'static str, u64>,
    /// Sessions that switched to TLS.
    pub tls_sessions: u64,
    /// Control segments dropped on purpose (out of order, or held back).
    pub segments_held: u64,
}

impl EngineStats {
    pub(crate) fn refuse(&mut self, reason: &'static str) {
        *self.refusals.entry(reason).or_default() += 1;
    }
}

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
    /// Per-packet processing time histogram: counts per upper bound.
    pub processing: Histogram,
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

/// One live control session, as `ftp-alg status` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The client's own address.
    pub client: SocketAddr,
    /// The client as the server sees it (after source NAT), when known.
    pub client_public: Option<SocketAddr>,
    /// The server as the client addresses it.
    pub server_public: Option<SocketAddr>,
    /// The server's own address, when known.
    pub server_real: Option<SocketAddr>,
    /// Protocol phase (`greeting`, `ready`, `tls`, `not-ftp`, `resync`, `closed`).
    pub state: &'static str,
    /// Length change so far, client to server (bytes).
    pub delta_to_server: i64,
    /// Length change so far, server to client (bytes).
    pub delta_to_client: i64,
    /// Time since the last packet.
    pub idle: Duration,
    /// Live pinholes with the time they have left.
    pub pinholes: Vec<(Pinhole, Duration)>,
}

/// Everything the worker publishes.
#[derive(Clone, Debug, Default)]
pub struct Published {
    /// Engine counters.
    pub engine: EngineStats,
    /// Shell counters.
    pub shell: ShellStats,
    /// Live sessions.
    pub sessions: Vec<SessionInfo>,
}

impl Published {
    /// Live pinholes over all sessions.
    pub fn live_pinholes(&self) -> usize {
        self.sessions.iter().map(|s| s.pinholes.len()).sum()
    }
}

/// The slot the worker writes and the readers read.
pub type Shared = Arc<Mutex<Published>>;
