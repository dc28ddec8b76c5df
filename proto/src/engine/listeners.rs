//! Exact pinholes for FTPS sessions whose server runs on this host (issue
//! 12, item 2), found without decrypting anything.
//!
//! Under TLS (RFC 4217) the `227`/`229` reply cannot be read, but on the
//! server's own host the kernel shows what the server did: a passive-mode
//! server creates the data listener on the control connection's local
//! address *before* it sends the reply that announces it (vsftpd, proftpd
//! and pure-ftpd run one process per session and answer one command at a
//! time, RFC 959 §4.2). So:
//!
//! * a client-to-server TLS record means the session has a request in
//!   flight;
//! * when the server's next TLS record is about to leave, the engine asks
//!   its caller for the listeners bound to the session's server address
//!   ([`Outcome::NeedListeners`](super::Outcome::NeedListeners), answered
//!   through [`Engine::set_listeners`]; the daemon reads them with the
//!   kernel's socket diagnostics, which need no capability);
//! * a listener that was not in the previous listing of that address (a
//!   new socket: compared by inode, so a port reused by a new socket counts
//!   as new) belongs to this session's request if no other local session
//!   on that address had a request in flight: then one exact, single-use
//!   pinhole client -> server:port opens before the reply is released.
//!
//! Why not the process: tying a listener to the session's server process
//! needs `/proc/PID/fd` of another user's process (CAP_SYS_PTRACE), which
//! a firewall daemon must not hold. The timing tie needs nothing more than
//! the listing.
//!
//! When the tie is not unique (two sessions in flight, several new
//! listeners, the listing failed) the new listeners are nobody's: the
//! sessions in flight fall back to their `[[ftps]]` range when one is
//! configured (see `engine::ftps`), else nothing opens; either is logged
//! with why. Listeners on a wildcard address are never candidates: the
//! three servers bind the control connection's own address, and a
//! wildcard listener is some other service's.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use tracing::{debug, info, warn};

use crate::event::Event as Reported;
use crate::ftp::session::Phase;
use crate::ftps::entry_for;
use crate::pinhole::Pinhole;

use super::flow::{Dir, Flow, Shared};
use super::{Decision, Engine, EngineConfig};

/// A listening TCP socket bound to a server address of this host, as the
/// kernel's socket diagnostics list it (inet_diag: local port and the
/// socket's inode, which tells a new socket from an old one on the same
/// port).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Listener {
    /// The socket's inode (unique among live sockets).
    pub inode: u64,
    /// The local port it listens on.
    pub port: u16,
}

/// Why a new listener could not be tied to one session: the sessions in
/// flight fall back to their `[[ftps]]` range, or get nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Untied {
    /// Several local sessions on the address had a request in flight.
    SessionsInFlight(usize),
    /// Several new listeners appeared for one request.
    SeveralListeners(usize),
    /// The listing failed (its caller could not read the listeners).
    ListingFailed,
}

impl fmt::Display for Untied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Untied::SessionsInFlight(n) => {
                write!(f, "{n} sessions on this server had a request in flight")
            }
            Untied::SeveralListeners(n) => write!(f, "{n} new listeners for one request"),
            Untied::ListingFailed => f.write_str("the server's listeners could not be read"),
        }
    }
}

/// What one listing means for the session whose reply is leaving.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tie {
    /// No new eligible listener (most replies), or no earlier listing to
    /// compare with (this one becomes it).
    Nothing,
    /// One new listener on this port, and only this session asked.
    Exact(u16),
    /// New listeners that cannot be tied to one session.
    Untied(Untied),
}

/// Ties one listing to the session whose reply is leaving: `previous` is
/// the last listing of the address (sorted), `listed` this one (`None`:
/// it failed), `in_flight` the local sessions on the address with a
/// request in flight (this one included), `eligible` the ports a pinhole
/// may be opened to.
pub(super) fn tie(
    previous: Option<&[Listener]>,
    listed: Option<&[Listener]>,
    in_flight: usize,
    eligible: impl Fn(u16) -> bool,
) -> Tie {
    let Some(listed) = listed else {
        return Tie::Untied(Untied::ListingFailed);
    };
    let Some(previous) = previous else {
        return Tie::Nothing;
    };
    let mut new = listed
        .iter()
        .filter(|l| previous.binary_search(l).is_err() && eligible(l.port));
    let Some(first) = new.next() else {
        return Tie::Nothing;
    };
    let more = new.count();
    if in_flight > 1 {
        Tie::Untied(Untied::SessionsInFlight(in_flight))
    } else if more > 0 {
        Tie::Untied(Untied::SeveralListeners(more + 1))
    } else {
        Tie::Exact(first.port)
    }
}

/// The listings of each server address, and the answer to the question
/// being asked.
#[derive(Debug, Default)]
pub(super) struct Listings {
    /// Last listing per server address, sorted.
    known: HashMap<IpAddr, Vec<Listener>>,
    /// The answer given by [`Engine::set_listeners`] for the packet being
    /// handled again.
    answer: Option<(IpAddr, Option<Vec<Listener>>)>,
}

/// A listing to act on once the packet's session has handled it.
pub(super) type Listed = (IpAddr, Option<Vec<Listener>>);

impl Listings {
    /// The answer given for this packet, if any; an answer is never kept
    /// for a later packet, which must see the listeners as they are then.
    pub(super) fn take_answer(&mut self) -> Option<Listed> {
        self.answer.take()
    }

    /// For a packet of `flow` going `dir`, with the `answer` given for it:
    /// `Ok(None)` when no listing is
    /// needed, `Ok(Some(..))` with the answer when it was given, `Err(addr)`
    /// when the listeners of `addr` must be asked for first. Also tracks
    /// the session's request in flight. Allocates nothing unless the
    /// session is a local FTPS one whose reply is leaving.
    pub(super) fn consult(
        answer: Option<Listed>,
        flow: &mut Flow,
        dir: Dir,
        has_payload: bool,
    ) -> Result<Option<Listed>, IpAddr> {
        if !flow.local || !has_payload {
            return Ok(None);
        }
        match dir {
            Dir::ToServer => {
                // A command (or a TLS record of one): the server may now
                // set up a listener for it.
                flow.in_flight = true;
                Ok(None)
            }
            Dir::ToClient if flow.control.phase() != Phase::Tls || !flow.in_flight => {
                // A cleartext reply is read as text (its 227/229 opens
                // the exact pinhole); either way the request is answered.
                flow.in_flight = false;
                Ok(None)
            }
            Dir::ToClient => {
                let Some(server) = flow.listen_addr() else {
                    return Ok(None);
                };
                match answer {
                    Some((addr, listed)) if addr == server => Ok(Some((server, listed))),
                    _ => Err(server),
                }
            }
        }
    }
}

impl Flow {
    /// This session's listener could not be found: from now on it uses its
    /// `[[ftps]]` range like a remote server's session. Returns whether it
    /// holds one.
    fn fall_back(
        &mut self,
        now: Instant,
        shared: &mut Shared<'_>,
        decision: &mut Decision,
    ) -> bool {
        self.range_fallback = true;
        self.open_range(now, shared, decision);
        self.range.is_some()
    }

    /// The address the server's listeners are bound to: the server's own
    /// (after any DNAT), known once the NAT lookup answered.
    pub(super) fn listen_addr(&self) -> Option<IpAddr> {
        self.nat.map(|n| n.server_real.ip())
    }
}

/// Whether a pinhole to `server`:`port` may be opened from a listener:
/// unprivileged (unless allowed), not a control port, not a data port a
/// cleartext session announced (that one is its own), and inside the
/// `[[ftps]]` range when the server has one.
fn eligible(
    cfg: &EngineConfig,
    flows: &HashMap<SocketAddr, Flow>,
    server: IpAddr,
    port: u16,
) -> bool {
    if port < 1024 && !cfg.policy.allow_privileged_ports {
        return false;
    }
    if cfg.control_ports.contains(&port) || cfg.ftps_control_ports.contains(&port) {
        return false;
    }
    if let Some((_, e)) = entry_for(&cfg.ftps, server) {
        if port < e.passive_ports.low || port > e.passive_ports.high {
            return false;
        }
    }
    let announced = |p: &Pinhole| {
        let (dst, dport) = p.dnat.map_or((p.dst, p.dport), |d| (d.ip(), d.port()));
        dst == server && dport == port
    };
    // Only ports read from cleartext text count: a port tied earlier to
    // an FTPS session may have a new socket now, for another request.
    !flows.values().any(|f| {
        f.pinholes
            .iter()
            .any(|live| live.form.is_some() && announced(&live.pinhole))
    })
}

impl Engine {
    /// Records the listeners asked for by
    /// [`Outcome::NeedListeners`](super::Outcome::NeedListeners): the TCP
    /// sockets in LISTEN bound to exactly `server` (IPv4 also as
    /// `::ffff:server` on an IPv6 socket), or `None` when they could not
    /// be read (the sessions in flight then fall back). Then the same
    /// packet is handled again.
    pub fn set_listeners(&mut self, server: IpAddr, listed: Option<Vec<Listener>>) {
        self.listings.answer = Some((server, listed));
    }

    /// Acts on a listing taken as `client`'s reply leaves: an exact
    /// pinhole for the one new listener, or the fallback for every session
    /// in flight on that address.
    pub(super) fn attribute(
        &mut self,
        now: Instant,
        client: SocketAddr,
        (server, listed): Listed,
        decision: &mut Decision,
    ) {
        let in_flight: Vec<SocketAddr> = self
            .flows
            .iter()
            .filter(|(_, f)| {
                f.local && f.in_flight && f.closed_at.is_none() && f.listen_addr() == Some(server)
            })
            .map(|(k, _)| *k)
            .collect();
        let previous = self.listings.known.get(&server).map(Vec::as_slice);
        let (cfg, flows) = (&self.cfg, &self.flows);
        let tie = tie(previous, listed.as_deref(), in_flight.len(), |port| {
            eligible(cfg, flows, server, port)
        });
        if let Some(mut listed) = listed {
            listed.sort_unstable();
            self.listings.known.insert(server, listed);
        }
        let mut shared = Shared {
            cfg: &self.cfg,
            dnat_in_use: &mut self.dnat_in_use,
            stats: &mut self.stats,
            announced: &self.announced,
            ranges: &mut self.ranges,
        };
        match tie {
            Tie::Nothing => {}
            Tie::Exact(port) => {
                let Some(flow) = self.flows.get_mut(&client) else {
                    return;
                };
                let (Some(public), None) = (flow.server_public, flow.closed_at) else {
                    return; // (a reply that also ended the session)
                };
                let pinhole = Pinhole {
                    src: client.ip(),
                    dst: public.ip(),
                    dport: port,
                    dnat: (public.ip() != server).then(|| SocketAddr::new(server, port)),
                };
                info!(%client, %pinhole, "FTPS data listener tied to the session: exact pinhole");
                shared.stats.ftps_exact += 1;
                flow.add_pinhole(now, None, pinhole, &mut shared, decision);
            }
            Tie::Untied(why) => {
                for key in in_flight {
                    let Some(flow) = self.flows.get_mut(&key) else {
                        continue;
                    };
                    shared.stats.ftps_fallbacks += 1;
                    let range = flow.fall_back(now, &mut shared, decision);
                    if range {
                        info!(client = %key, %server, %why,
                              "FTPS data listener not tied to one session: its [[ftps]] range is used");
                    } else {
                        warn!(client = %key, %server, %why,
                              "FTPS data listener not tied to one session and no [[ftps]] range: nothing opened");
                    }
                    decision.events.push(Reported::FtpsUntied { why, range });
                }
                // A range given back earlier in this packet (its last
                // session ended) and taken again here must stay: the shell
                // installs before the verdict and removes after it.
                let open = &decision.open_ranges;
                decision
                    .close_ranges
                    .retain(|r| !open.iter().any(|o| o.range == *r));
            }
        }
        if let Some(flow) = self.flows.get_mut(&client) {
            flow.in_flight = false;
        }
        if !decision.open.is_empty() {
            self.schedule(now + self.cfg.pinhole_timeout);
        }
        debug!(%client, %server, ?tie, "listeners of the server compared");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(inode: u64, port: u16) -> Listener {
        Listener { inode, port }
    }

    const ANY: fn(u16) -> bool = |_| true;

    #[test]
    fn one_new_listener_and_one_request_is_exact() {
        let before = [l(10, 21)];
        let now = [l(10, 21), l(11, 50001)];
        assert_eq!(tie(Some(&before), Some(&now), 1, ANY), Tie::Exact(50001));
    }

    #[test]
    fn a_listener_that_existed_before_is_nobodys() {
        let before = [l(10, 21), l(11, 50001)];
        assert_eq!(tie(Some(&before), Some(&before), 1, ANY), Tie::Nothing);
    }

    #[test]
    fn a_new_socket_on_an_old_port_is_new() {
        let before = [l(11, 50001)];
        let now = [l(12, 50001)];
        assert_eq!(tie(Some(&before), Some(&now), 1, ANY), Tie::Exact(50001));
    }

    #[test]
    fn two_requests_in_flight_are_ambiguous() {
        let now = [l(11, 50001)];
        assert_eq!(
            tie(Some(&[]), Some(&now), 2, ANY),
            Tie::Untied(Untied::SessionsInFlight(2))
        );
    }

    #[test]
    fn two_new_listeners_are_ambiguous() {
        let now = [l(11, 50001), l(12, 50002)];
        assert_eq!(
            tie(Some(&[]), Some(&now), 1, ANY),
            Tie::Untied(Untied::SeveralListeners(2))
        );
    }

    #[test]
    fn ineligible_ports_do_not_count() {
        let now = [l(11, 50001), l(12, 8080)];
        let range = |p: u16| (50000..=50100).contains(&p);
        assert_eq!(tie(Some(&[]), Some(&now), 1, range), Tie::Exact(50001));
        assert_eq!(tie(Some(&[]), Some(&now[1..]), 1, range), Tie::Nothing);
        // Ineligible ones make nothing ambiguous either.
        assert_eq!(tie(Some(&[]), Some(&now[1..]), 2, range), Tie::Nothing);
    }

    #[test]
    fn the_first_listing_is_only_compared_with_later_ones() {
        assert_eq!(tie(None, Some(&[l(11, 50001)]), 1, ANY), Tie::Nothing);
    }

    #[test]
    fn a_failed_listing_falls_back() {
        assert_eq!(
            tie(Some(&[]), None, 1, ANY),
            Tie::Untied(Untied::ListingFailed)
        );
    }
}
