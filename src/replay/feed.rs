//! The sorted capture through the core: the engine's decisions, timed.
//!
//! Every fed packet goes through [`Engine::handle_with`] with the capture
//! time as `now` (a fixed `Instant` plus the time since the first packet,
//! never going back: copies from two interfaces may be stamped slightly
//! out of order). The NAT lookup answers from [`Sorted::mapping`]. Around
//! the engine, this module follows what the firewall would do with the
//! pinholes, from the capture itself: the first connection attempt (SYN)
//! that matches a live pinhole uses it up (the pinhole chain deletes the
//! element), one that nobody used is reported when its lifetime ends.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ftp_alg_proto::engine::{Engine, EngineConfig, NatMapping};
use ftp_alg_proto::event::Event;
use ftp_alg_proto::packet::TcpSegment;
use ftp_alg_proto::pinhole::Pinhole;
use ftp_alg_proto::stats::SessionState;

use super::copies::{NatSource, Sorted};

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
    /// A data connection in the capture opened through this pinhole.
    DataConnection {
        /// The pinhole it used.
        pinhole: Pinhole,
        /// Its source address and port.
        from: SocketAddr,
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

/// A pinhole the firewall would hold.
struct Live {
    session: SocketAddr,
    pinhole: Pinhole,
    expires: Duration,
}

/// True when the connection attempt `src -> dst` is the one `p` admits:
/// as it reaches the gateway (before DNAT) or, seen behind the gateway,
/// after it.
fn admits(p: &Pinhole, src: SocketAddr, dst: SocketAddr) -> bool {
    p.src == src.ip() && ((p.dst, p.dport) == (dst.ip(), dst.port()) || p.dnat == Some(dst))
}

/// Runs the sorted capture through a fresh engine.
pub fn run(sorted: &Sorted, cfg: EngineConfig) -> Vec<Record> {
    let control_ports = cfg.control_ports.clone();
    let mut engine = Engine::new(cfg);
    // The replayer is the core's caller: it owns the clock, and anchors
    // the capture's time to it.
    #[allow(clippy::disallowed_methods)]
    let base = Instant::now();
    let start = sorted.feed.first().map_or(Duration::ZERO, |f| f.time);
    let mut records = Vec::new();
    let mut live: Vec<Live> = Vec::new();
    let mut clock = Duration::ZERO;
    let mut sessions: HashSet<SocketAddr> = HashSet::new();
    for fed in &sorted.feed {
        clock = clock.max(fed.time);
        let now = base + clock.saturating_sub(start);
        expire(&mut live, clock, &mut records);
        if engine.poll_at().is_some_and(|t| t <= now) {
            for p in engine.poll(now) {
                closed(&mut live, p, clock, &mut records);
            }
        }
        let Ok(seg) = TcpSegment::parse(&fed.ip) else {
            continue;
        };
        let to_server = control_ports.contains(&seg.dst.port());
        let from_server = !to_server && control_ports.contains(&seg.src.port());
        if !to_server && !from_server {
            if seg.flags.syn && !seg.flags.ack {
                if let Some(i) = live
                    .iter()
                    .position(|l| admits(&l.pinhole, seg.src, seg.dst))
                {
                    let l = live.remove(i);
                    records.push(Record {
                        time: clock,
                        session: l.session,
                        what: What::DataConnection {
                            pinhole: l.pinhole,
                            from: seg.src,
                        },
                    });
                }
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
                What::Core(Event::Pinhole { opening, .. }) => live.push(Live {
                    session,
                    pinhole: opening.pinhole,
                    expires: clock + opening.lifetime,
                }),
                What::Core(Event::SessionOpened { .. }) => {
                    sessions.insert(session);
                }
                _ => {}
            }
            records.push(record(what));
        }
        for p in decision.close {
            closed(&mut live, p, clock, &mut records);
        }
    }
    expire(&mut live, clock, &mut records);
    let now = base + clock.saturating_sub(start);
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

/// Reports and forgets the pinholes whose lifetime ended by `clock`.
fn expire(live: &mut Vec<Live>, clock: Duration, records: &mut Vec<Record>) {
    live.retain(|l| {
        let gone = l.expires <= clock;
        if gone {
            records.push(Record {
                time: l.expires,
                session: l.session,
                what: What::PinholeExpired(l.pinhole),
            });
        }
        !gone
    });
}

/// Reports a pinhole the core closed, unless a connection used it already.
fn closed(live: &mut Vec<Live>, p: Pinhole, clock: Duration, records: &mut Vec<Record>) {
    if let Some(i) = live.iter().position(|l| l.pinhole == p) {
        let l = live.remove(i);
        records.push(Record {
            time: clock,
            session: l.session,
            what: What::PinholeClosed(p),
        });
    }
}
