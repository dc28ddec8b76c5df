//! What the engine decided for one packet, as data.
//!
//! The daemon logs its decisions with `tracing`; a second consumer of the
//! core (the capture replayer, `ftp-alg replay`) needs them as values it
//! can print, compare and serialise. Each [`Event`] is pushed into
//! [`Decision::events`](crate::engine::Decision::events) at the point where
//! the engine already logs or counts the same decision, so the two never
//! disagree. Most packets decide nothing: their list stays empty, and an
//! empty `Vec` does not allocate, so the per-packet path costs nothing more.

use std::net::{IpAddr, SocketAddr};

use crate::engine::{Opening, RangeOpening};
use crate::ftp::session::Form;
use crate::reason::Reason;

/// One decision of the engine about a control session.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The engine starts following a control connection.
    SessionOpened {
        /// The server as the client addresses it.
        server: SocketAddr,
        /// Picked up without its SYN (e.g. after a restart, or a capture
        /// that starts mid-session): announcements count only once a
        /// reply has resynchronised the session.
        mid_stream: bool,
    },
    /// An announcement passed the policy: it will be honoured (rewritten
    /// where the gateway translates, and pinholed).
    Announcement {
        /// The form that announced it.
        form: Form,
        /// The address in the text (`None` for a 229 reply, RFC 2428 §3).
        addr: Option<IpAddr>,
        /// The port in the text.
        port: u16,
    },
    /// The announcement's address-and-port text was replaced.
    Rewrite {
        /// The form rewritten.
        form: Form,
        /// The original text.
        from: String,
        /// The text sent instead.
        to: String,
        /// Length change of the line in bytes (the sequence shift it adds).
        delta: i64,
    },
    /// A pinhole is to be installed before the packet is released.
    Pinhole {
        /// The form that announced it.
        form: Form,
        /// The pinhole and its lifetime.
        opening: Opening,
    },
    /// Nothing was opened for a line or an announcement, and why.
    Refusal {
        /// The form of the refused announcement, when it was one.
        form: Option<Form>,
        /// Why nothing was opened.
        reason: Reason,
    },
    /// The session switched to TLS (RFC 4217 `AUTH TLS` answered `234`):
    /// nothing is parsed any more, so nothing is opened.
    TlsStarted,
    /// An encrypted session of a server listed in `[[ftps]]` got its
    /// session-scoped range of data ports (see [`crate::ftps`]).
    FtpsRange {
        /// Index of the matching `[[ftps]]` entry.
        entry: usize,
        /// The range and its element timeout.
        opening: RangeOpening,
        /// Another session of the same client to the same server holds the
        /// same range: no new element, one more user of it.
        shared: bool,
    },
    /// The session's range was given back (session end, idle, REIN/QUIT,
    /// cleartext again after `CCC`); removed from the kernel when no other
    /// session uses it.
    FtpsRangeClosed {
        /// The range.
        range: crate::pinhole::RangePinhole,
        /// The element is removed (this was its last session).
        removed: bool,
    },
    /// Both FINs or an RST ended the session; its pinholes closed (they are
    /// in [`Decision::close`](crate::engine::Decision::close), like every
    /// pinhole that closes before its time).
    SessionClosed,
}
