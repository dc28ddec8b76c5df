//! What the engine counts and what it tells about its sessions: pure data,
//! read by the shells (metrics, status), which choose the words.

use std::net::SocketAddr;
use std::time::Duration;

use crate::ftp::session::Form;
use crate::pinhole::{Pinhole, RangePinhole};
use crate::reason::ReasonCounts;

/// Counters kept by the engine since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Control sessions started (SYN seen or picked up mid-stream).
    pub sessions_opened: u64,
    /// Control sessions forgotten (closed, idle or unanswered).
    pub sessions_closed: u64,
    /// Of the sessions started, those picked up mid-stream (no SYN seen).
    pub sessions_picked_up: u64,
    /// Control sessions whose NAT mapping translates an address.
    pub sessions_translated: u64,
    /// New control connections not followed: the session table was full.
    pub sessions_untracked: u64,
    /// Announcements accepted, by form.
    pub announcements: FormCounts,
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
    /// Lines and announcements that opened nothing, by reason.
    pub refusals: ReasonCounts,
    /// Sessions that switched to TLS (or started in it, on an implicit
    /// FTPS port).
    pub tls_sessions: u64,
    /// Of those, sessions whose server matched an `[[ftps]]` entry and that
    /// got its range (a new element or a share of one).
    pub ftps_sessions: u64,
    /// Range elements installed (one per client, server and range, however
    /// many sessions share it).
    pub ranges_opened: u64,
    /// Range elements removed (their last session ended).
    pub ranges_closed: u64,
    /// Control segments held back: dropped because they came out of
    /// order, or carrying bytes of a line that may become an announcement,
    /// whose delivery the engine took over (`ftp::held`).
    pub segments_held: u64,
}

/// One counter per announcement [`Form`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FormCounts([u64; Form::ALL.len()]);

impl FormCounts {
    /// Counts one more announcement of `form`.
    pub fn add(&mut self, form: Form) {
        self.0[form as usize] += 1;
    }

    /// How many announcements of `form` were counted.
    pub fn get(&self, form: Form) -> u64 {
        self.0[form as usize]
    }
}

/// Where a session is, as `ftp-alg status` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Waiting for the server's greeting.
    Greeting,
    /// Picked up mid-stream, waiting for a reply to synchronise.
    Resync,
    /// Parsed: announcements are honoured.
    Ready,
    /// Encrypted (RFC 4217): nothing is parsed.
    Tls,
    /// Found not to be FTP: nothing is parsed.
    NotFtp,
    /// Both FINs or an RST seen; kept a while for retransmissions.
    Closed,
}

/// One live control session.
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
    /// Where the session is.
    pub state: SessionState,
    /// Length change so far, client to server (bytes).
    pub delta_to_server: i64,
    /// Length change so far, server to client (bytes).
    pub delta_to_client: i64,
    /// Time since the last packet.
    pub idle: Duration,
    /// Live pinholes with the time they have left.
    pub pinholes: Vec<(Pinhole, Duration)>,
    /// The FTPS range the session holds, with the index of the
    /// `[[ftps]]` entry that matched.
    pub range: Option<(usize, RangePinhole)>,
}
