//! The sorted capture through the core: the engine's decisions, timed.
//!
//! Every fed packet goes through [`Engine::handle_with`] with the capture
//! time as `now` (a fixed `Instant` plus the time since the first packet,
//! never going back: copies from two interfaces may be stamped slightly
//! out of order). The NAT lookup answers from [`Sorted::mapping`]. Around
//! the engine, [`Firewall`] follows what the gateway would do with the
//! pinholes and the data connections that the capture shows.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ftp_alg_proto::engine::{Engine, EngineConfig, NatMapping};
use ftp_alg_proto::event::Event;
use ftp_alg_proto::packet::TcpSegment;
use ftp_alg_proto::pinhole::{Pinhole, RangePinhole};
use ftp_alg_proto::stats::SessionState;

use super::copies::{NatSource, Sorted};
use super::firewall::Firewall;

/// One thing replay reports about a control session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    /// A decision of the core.
    Core(Event),
    /// The session's NAT mapping (`None`: untranslated), asked for by
    /// the core, and where it comes from.
    Nat(Option<NatMapping>, NatSource),
    /// The core closed a pinhole before its time (session end, server
    /// refused the PORT, a newer announcement, REIN/QUIT).
    PinholeClosed(Pinhole),
    /// A pinhole's lifetime ended with no connection through it.
    PinholeExpired(Pinhole),
    /// A connection attempt between the session's two hosts that no
    /// pinhole admits: the firewall drops it (unless another rule of the
    /// admin's lets it through).
    Blocked {
        /// Its source address and port.
        from: SocketAddr,
        /// Where it was going.
        to: SocketAddr,
    },
    /// A data connection in the capture opened through this pinhole.
    DataConnection {
        /// The pinhole it used.
        pinhole: Pinhole,
        /// Its source address and port.
        from: SocketAddr,
    },
    /// A data connection in the capture opened through an FTPS session's
    /// range (which stays open for the next one).
    RangeConnection {
        /// The range it used.
        range: RangePinhole,
        /// Its source address and port.
        from: SocketAddr,
        /// Where it went, as it reached the gateway.
        to: SocketAddr,
    },
    /// The capture ends while the session is still open.
    OpenAtEnd,
}

/// A report line: when, which session (the client's own address and
/// port), what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Capture time, since the Unix epoch.
    pub time: Duration,
    /// The client's own address and port.
    pub session: SocketAddr,
    /// What happened.
    pub what: What,
}

/// `base` moved on by `elapsed`; a capture whose clock jumps beyond what
/// an `Instant` holds stays at `base` rather than panicking.
fn at(base: Instant, elapsed: Duration) -> Instant {
    base.checked_add(elapsed).unwrap_or(base)
}

/// Runs the sorted capture through a fresh engine.
pub fn run(sorted: &Sorted, cfg: EngineConfig) -> Vec<Record> {
    let control_ports = cfg.followed_ports();
    let mut engine = Engine::new(cfg);
    // The replayer is the core's caller: it owns the clock, and anchors
    // the capture's time to it.
    #[allow(clippy::disallowed_methods)]
    let base = Instant::now();
    let start = sorted.feed.first().map_or(Duration::ZERO, |f| f.time);
    let mut records = Vec::new();
    let mut firewall = Firewall::default();
    let mut clock = Duration::ZERO;
    let mut sessions: HashSet<SocketAddr> = HashSet::new();
    for fed in &sorted.feed {
        clock = clock.max(fed.time);
        let now = at(base, clock.saturating_sub(start));
        firewall.expire(clock, &mut records);
        if engine.poll_at().is_some_and(|t| t <= now) {
            let gone = engine.poll(now);
            for p in gone.pinholes {
                firewall.close(p, clock, &mut records);
            }
            for r in gone.ranges {
                firewall.close_range(&r);
            }
        }
        let Ok(seg) = TcpSegment::parse(&fed.ip) else {
            continue;
        };
        let to_server = control_ports.contains(&seg.dst.port());
        let from_server = !to_server && control_ports.contains(&seg.src.port());
        if !to_server && !from_server {
            if seg.flags.syn && !seg.flags.ack {
                firewall.attempt(seg.src, seg.dst, clock, &mut records);
            }
            continue;
        }
        let session = if to_server { seg.src } else { seg.dst };
        let mut asked = None;
        let decision = engine.handle_with(now, &fed.ip, |src, dst| {
            let (mapping, source) = sorted.mapping(src, dst);
            asked = Some(What::Nat(mapping, source));
            mapping
        });
        let record = |what| Record {
            time: clock,
            session,
            what,
        };
        // The mapping goes right after the session's start, if this packet
        // started it, else before what the packet decided.
        let at = usize::from(matches!(
            decision.events.first(),
            Some(Event::SessionOpened { .. })
        ));
        let mut whats: Vec<What> = decision.events.into_iter().map(What::Core).collect();
        if let Some(nat) = asked {
            whats.insert(at.min(whats.len()), nat);
        }
        for what in whats {
            match &what {
                What::Core(Event::Pinhole { opening, .. }) => {
                    firewall.open(session, opening.pinhole, clock + opening.lifetime)
                }
                What::Core(Event::FtpsRange { opening, .. }) => {
                    firewall.open_range(session, opening.range)
                }
                What::Core(Event::SessionOpened { server, .. }) => {
                    sessions.insert(session);
                    firewall.hosts(session, &[session.ip()], &[server.ip()]);
                }
                What::Nat(Some(m), _) => {
                    firewall.hosts(session, &[m.client_public.ip()], &[m.server_real.ip()])
                }
                _ => {}
            }
            records.push(record(what));
        }
        for p in decision.close {
            firewall.close(p, clock, &mut records);
        }
        for r in decision.close_ranges {
            firewall.close_range(&r);
        }
    }
    firewall.expire(clock, &mut records);
    let now = at(base, clock.saturating_sub(start));
    let mut open: Vec<SocketAddr> = engine
        .snapshot(now)
        .into_iter()
        .filter(|s| s.state != SessionState::Closed && sessions.contains(&s.client))
        .map(|s| s.client)
        .collect();
    open.sort();
    records.extend(open.into_iter().map(|session| Record {
        time: clock,
        session,
        what: What::OpenAtEnd,
    }));
    records
}
