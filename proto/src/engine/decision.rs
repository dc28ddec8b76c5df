//! What the engine answers: the verdict for a packet, the pinholes to
//! open and close, and the questions it asks its caller (the NAT mapping
//! and stored state of a connection).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::durable::Durable;
use crate::event::Event as Reported;
use crate::pinhole::{Pinhole, RangePinhole};

/// The NAT mapping of a control connection, from its conntrack entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatMapping {
    /// The client's address as the server sees it (reply destination).
    pub client_public: SocketAddr,
    /// The server's own address (reply source).
    pub server_real: SocketAddr,
}

/// What the conntrack lookup asked for by [`Outcome::NeedNat`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lookup {
    /// The NAT mapping; `None` when the gateway does not translate the
    /// connection (or there is no entry).
    pub nat: Option<NatMapping>,
    /// The state an earlier instance stored in the entry (see
    /// [`crate::durable`]); a session picked up mid-stream continues from
    /// it. Ignored for a session this engine saw open.
    pub stored: Option<Durable>,
    /// The entry's original destination (the server as the client
    /// addresses it), needed when the question came from a server's packet.
    pub server_public: Option<SocketAddr>,
    /// The server (its real address) is one of this host's own: under TLS
    /// its data ports are found from its listeners (see
    /// [`Outcome::NeedListeners`]).
    pub server_local: bool,
}

/// Session state to store in the control connection's conntrack entry
/// (before the verdict releases the packet that needed it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Persist {
    /// Original tuple source: the client.
    pub client: SocketAddr,
    /// Original tuple destination: the server as the client addressed it.
    pub server: SocketAddr,
    /// What another instance needs to continue the session.
    pub state: Durable,
}

/// What happens to the packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Forward unchanged.
    Accept,
    /// Forward these bytes instead.
    Replace(Vec<u8>),
    /// Drop (the sender retransmits; used for out-of-order control data
    /// that cannot be parsed yet).
    Drop,
}

/// A pinhole to install, with how long it may wait unused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opening {
    /// The data connection it admits.
    pub pinhole: Pinhole,
    /// Lifetime of the unused pinhole (the backend's element timeout); the
    /// engine forgets it after the same time.
    pub lifetime: Duration,
}

/// A session-scoped port range to install (FTPS), with its element
/// timeout: a safety net only, against a daemon that dies without closing
/// it. The engine closes the range itself when the session ends, and asks
/// for it again (re-adding refreshes the timeout) while the session lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeOpening {
    /// The data connections it admits.
    pub range: RangePinhole,
    /// Timeout of the kernel element (the session idle timeout).
    pub lifetime: Duration,
}

/// What [`Engine::poll`](super::Engine::poll) found to remove.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Closing {
    /// Exact pinholes of sessions forgotten.
    pub pinholes: Vec<Pinhole>,
    /// Ranges whose last session was forgotten.
    pub ranges: Vec<RangePinhole>,
}

impl Closing {
    /// Nothing to remove.
    pub fn is_empty(&self) -> bool {
        self.pinholes.is_empty() && self.ranges.is_empty()
    }
}

/// The engine's answer for one packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Verdict for the packet.
    pub verdict: Verdict,
    /// Pinholes to install before the verdict is given.
    pub open: Vec<Opening>,
    /// Pinholes to remove.
    pub close: Vec<Pinhole>,
    /// Session-scoped ranges to install (or refresh) before the verdict
    /// is given: an FTPS session's range must be there before its client
    /// can learn a passive port (see [`crate::ftps`]). Kept apart from
    /// `open` because a range is not consumed on use and closes with its
    /// session, not after a lifetime.
    pub open_ranges: Vec<RangeOpening>,
    /// Session-scoped ranges to remove: the last session using them ended.
    pub close_ranges: Vec<RangePinhole>,
    /// What was decided, in order, for consumers that report it (the
    /// replayer); the daemon only logs. Empty, and so not allocated, for
    /// most packets.
    pub events: Vec<Reported>,
    /// Set when this packet changed what a new instance would need to
    /// continue the session (a length-changing rewrite, or TLS after
    /// one): once per such change, never per packet.
    pub persist: Option<Persist>,
}

impl Decision {
    /// Forward the packet unchanged; open and close nothing.
    pub fn accept() -> Self {
        Decision {
            verdict: Verdict::Accept,
            open: Vec::new(),
            close: Vec::new(),
            open_ranges: Vec::new(),
            close_ranges: Vec::new(),
            events: Vec::new(),
            persist: None,
        }
    }
}

/// Result of [`Engine::handle`](super::Engine::handle).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Look up the conntrack entry whose original tuple is `src -> dst`,
    /// give the result to [`Engine::set_nat`](super::Engine::set_nat) (or
    /// [`Engine::set_lookup`](super::Engine::set_lookup)),
    /// then handle the packet again.
    ///
    /// Asked from a server's packet of a session picked up mid-stream,
    /// `dst` is the server's real address (the reply source: the hook sees
    /// the server's packet before the reverse of a destination NAT): the
    /// entry is then the one whose original source is `src` and whose reply
    /// source is `dst`, and [`Lookup::server_public`] should carry its
    /// original destination.
    NeedNat {
        /// Original source (the client).
        src: SocketAddr,
        /// Original destination (the server as the client addresses it),
        /// or the reply source when asked from a server's packet.
        dst: SocketAddr,
    },
    /// List the TCP sockets in LISTEN bound to exactly `server` on this
    /// host (for IPv4 also `::ffff:server` on IPv6 sockets; not wildcard
    /// ones), give them to
    /// [`Engine::set_listeners`](super::Engine::set_listeners), then handle
    /// the packet again. Asked only for a local FTPS server's packet that
    /// answers a request (see `engine::listeners`), before anything of the
    /// packet is recorded; the packet must not be released in between.
    NeedListeners {
        /// The server's own address.
        server: IpAddr,
    },
    /// The decision for the packet.
    Done(Decision),
}
