//! The engine: control connections in, verdicts and pinhole actions out.
//!
//! [`Engine::handle`] takes one queued IP packet of an FTP control
//! connection and a `now`, and returns what to do with it: pass it
//! unchanged, pass a rewritten copy, or drop it, plus the pinholes to open
//! (before the verdict) and close. It never performs I/O. The one thing it
//! cannot know by itself, the NAT mapping of a control connection, it asks
//! for with [`Outcome::NeedNat`] (see [`Engine::handle`] for the re-entry
//! rule, and [`Engine::handle_with`] for callers that can look it up on the
//! spot). Timers follow quinn-proto's pair: [`Engine::poll_at`] says when
//! the engine next needs [`Engine::poll`].
//!
//! Hook placement (see `ruleset`): client-to-server packets are handled
//! before conntrack and NAT, server-to-client packets after conntrack and
//! destination NAT. So a session is keyed by the client's own address and
//! port, which both hooks see.
//!
//! One concept per submodule: `config` and `decision` (the public types),
//! `flow` (one control connection and its segments), `follow` (lines and
//! TLS records), `announce` (what a line means), `pinholes` (what is open,
//! and the DNAT-in-use bookkeeping), `fixup` (the packet as it leaves) and
//! `timers` (expiry and [`Engine::poll_at`]).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use tracing::{debug, warn};

use crate::event::Event as Reported;
use crate::ftp::session::ControlSession;
use crate::packet::TcpSegment;
use crate::stats::{EngineStats, SessionInfo};

mod announce;
mod config;
mod decision;
mod fixup;
mod flow;
mod follow;
mod ftps;
mod listeners;
mod pinholes;
mod ranges;
mod timers;

pub use config::EngineConfig;
pub use decision::{
    Closing, Decision, Lookup, NatMapping, Opening, Outcome, Persist, RangeOpening, Verdict,
};
pub use listeners::{Listener, Untied};

use flow::{Dir, Flow, Shared};
use follow::LineScratch;
use listeners::Listings;
use pinholes::CloseWhy;
use ranges::Ranges;

/// The FTP ALG engine for all control connections through one gateway.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    flows: HashMap<SocketAddr, Flow>,
    dnat_in_use: HashSet<(IpAddr, IpAddr, u16)>,
    /// Live FTPS ranges, shared by the sessions of one client and server.
    ranges: Ranges,
    /// Listeners of local FTPS servers, as last listed.
    listings: Listings,
    stats: EngineStats,
    announced: Vec<(IpAddr, IpAddr)>,
    /// Lines completed by the packet being handled, reused from packet
    /// to packet so that following lines allocates nothing.
    lines: LineScratch,
    /// No timer of any session falls before this (see [`Engine::poll_at`]).
    /// Deadlines only move later as packets arrive, so a value computed
    /// once stays a safe lower bound; events that set an earlier deadline
    /// lower it.
    next_poll: Option<Instant>,
    /// The session table was full at the last new connection (so that a
    /// flood logs one line, not one per SYN).
    full: bool,
}

impl Engine {
    /// A new engine with no sessions.
    pub fn new(cfg: EngineConfig) -> Self {
        Engine {
            cfg,
            flows: HashMap::new(),
            dnat_in_use: HashSet::new(),
            ranges: Ranges::default(),
            listings: Listings::default(),
            stats: EngineStats::default(),
            announced: Vec::new(),
            lines: LineScratch::default(),
            next_poll: None,
            full: false,
        }
    }

    /// Sets the NAT mapping overrides: pairs of (gateway address, address
    /// to announce instead). For a further NAT beyond this gateway that
    /// conntrack cannot see (a cloud's 1:1 NAT, an ISP router), text sent
    /// to the far side must carry the address that NAT presents, while the
    /// pinhole still matches the gateway's own address, which is what the
    /// data connection arrives at. Applies to announcements made from now on.
    pub fn set_announced_addresses(&mut self, table: Vec<(IpAddr, IpAddr)>) {
        self.announced = table;
    }

    /// Replaces the settings (policy, limits, timeouts) of a running
    /// engine; sessions and pinholes are kept, and pinholes already open
    /// keep their lifetime.
    pub fn set_config(&mut self, cfg: EngineConfig) {
        self.cfg = cfg;
        // Shorter timeouts may bring deadlines forward.
        let cfg = &self.cfg;
        self.next_poll = self.flows.values().map(|f| f.deadline(cfg)).min();
    }

    /// Number of tracked control sessions.
    pub fn session_count(&self) -> usize {
        self.flows.len()
    }

    /// Records the NAT mapping asked for by [`Outcome::NeedNat`]. `None`
    /// means the gateway does not translate the connection.
    pub fn set_nat(&mut self, client: SocketAddr, mapping: Option<NatMapping>) {
        self.set_lookup(
            client,
            Lookup {
                nat: mapping,
                ..Lookup::default()
            },
        );
    }

    /// [`Engine::set_nat`] with what else the lookup found: a session
    /// picked up mid-stream whose entry carries stored state is adopted
    /// (its offsets apply from the packet being handled on, parsing
    /// resumes at the next line boundary, announcements are honoured).
    pub fn set_lookup(&mut self, client: SocketAddr, found: Lookup) {
        if let Some(flow) = self.flows.get_mut(&client) {
            if let Some(stored) = found.stored.filter(|_| flow.syn_seq.is_none()) {
                flow.adopt(&stored);
            }
            if flow.server_public.is_none() {
                flow.server_public = found.server_public;
            }
            if flow.server_public.is_none() {
                // Asked from a server's packet and nothing found: the
                // client's next packet asks again, with the full tuple.
                return;
            }
            let mapping = found.nat;
            let server = flow.server_public.unwrap_or(client);
            let mapping = mapping.unwrap_or(NatMapping {
                client_public: client,
                server_real: server,
            });
            if mapping.client_public != client || mapping.server_real != server {
                // One per connection: DEBUG, counted.
                self.stats.sessions_translated += 1;
                debug!(%client, client_public = %mapping.client_public, server_public = %server,
                      server_real = %mapping.server_real, "control session is translated");
            }
            flow.nat = Some(mapping);
            flow.local = found.server_local;
        }
    }

    /// Handles one queued packet.
    ///
    /// Re-entry rule: when the answer is [`Outcome::NeedNat`], the engine
    /// has recorded nothing of this packet. The caller looks up the
    /// conntrack entry named there, gives the result to
    /// [`Engine::set_nat`], and hands the same packet in again; the second
    /// call never asks again for the same connection (`set_nat` records a
    /// mapping even when there is none). The packet must not be released
    /// in between: it may carry an announcement whose pinhole is not open
    /// yet. [`Outcome::NeedListeners`] follows the same rule with
    /// [`Engine::set_listeners`]; an answer is good for the next call only.
    pub fn handle(&mut self, now: Instant, packet: &[u8]) -> Outcome {
        let listed = self.listings.take_answer();
        let seg = match TcpSegment::parse(packet) {
            Ok(seg) => seg,
            Err(why) => {
                debug!(?why, "not a TCP segment; forwarded untouched");
                return Outcome::Done(Decision::accept());
            }
        };
        let (dir, implicit) = if let Some(implicit) = self.cfg.control_port(seg.dst.port()) {
            (Dir::ToServer, implicit)
        } else if let Some(implicit) = self.cfg.control_port(seg.src.port()) {
            (Dir::ToClient, implicit)
        } else {
            return Outcome::Done(Decision::accept());
        };
        let client = match dir {
            Dir::ToServer => seg.src,
            Dir::ToClient => seg.dst,
        };
        let mut close = Closing::default();
        let opening = dir == Dir::ToServer && seg.flags.syn && !seg.flags.ack;
        // A packet of a known session costs one hash lookup: this one.
        let flow = match self.flows.get_mut(&client) {
            Some(flow) if !opening || flow.syn_seq == Some(seg.seq) => flow,
            _ => {
                if !self.start_session(now, &seg, client, opening, implicit, &mut close) {
                    return Outcome::Done(Decision {
                        close: close.pinholes,
                        close_ranges: close.ranges,
                        ..Decision::accept()
                    });
                }
                self.flows.get_mut(&client).expect("inserted above")
            }
        };
        if dir == Dir::ToServer {
            flow.server_public = Some(seg.dst);
            if flow.nat.is_none() && !seg.flags.syn {
                return Outcome::NeedNat {
                    src: seg.src,
                    dst: seg.dst,
                };
            }
        } else if flow.nat.is_none() && flow.syn_seq.is_none() && !flow.asked_from_server {
            // Picked up from a server's packet: its entry may carry state
            // to continue from. Asked once; the client's packets ask again.
            flow.asked_from_server = true;
            return Outcome::NeedNat {
                src: seg.dst,
                dst: seg.src,
            };
        }
        let has_payload = !seg.payload(packet).is_empty();
        let listing = match Listings::consult(listed, flow, dir, has_payload) {
            Ok(listing) => listing,
            Err(server) => return Outcome::NeedListeners { server },
        };
        let mut shared = Shared {
            cfg: &self.cfg,
            dnat_in_use: &mut self.dnat_in_use,
            stats: &mut self.stats,
            announced: &self.announced,
            ranges: &mut self.ranges,
        };
        let was_open = flow.closed_at.is_none();
        let mut decision = flow.on_segment(now, dir, &seg, packet, &mut shared, &mut self.lines);
        if !flow.reported {
            // Its first handled packet: report the session's start first.
            flow.reported = true;
            let server = match dir {
                Dir::ToServer => seg.dst,
                Dir::ToClient => flow.server_public.unwrap_or(seg.src),
            };
            let opened = Reported::SessionOpened {
                server,
                mid_stream: flow.syn_seq.is_none(),
            };
            decision.events.insert(0, opened);
        }
        if was_open && flow.closed_at.is_some() {
            decision.events.push(Reported::SessionClosed);
        }
        if !decision.open.is_empty() || (was_open && flow.closed_at.is_some()) {
            // A new pinhole or the linger after a close: earlier deadlines.
            let deadline = flow.deadline(&self.cfg);
            self.schedule(deadline);
        }
        // Almost always empty: only a new session replacing an old one
        // closes something here (and extending by an empty Vec is not free).
        if !close.is_empty() {
            decision.close.extend(close.pinholes);
            decision.close_ranges.extend(close.ranges);
        }
        if let Some(listing) = listing {
            self.attribute(now, client, listing, &mut decision);
        }
        Outcome::Done(decision)
    }

    /// [`Engine::handle`] with the re-entry rule applied: `lookup(src, dst)`
    /// answers [`Outcome::NeedNat`] on the spot (the conntrack mapping of
    /// the connection whose original tuple is `src -> dst`, `None` when
    /// it is not translated). For callers that can block on the lookup;
    /// one that shares the engine may rather release it meanwhile and
    /// follow the rule itself.
    pub fn handle_with(
        &mut self,
        now: Instant,
        packet: &[u8],
        mut lookup: impl FnMut(SocketAddr, SocketAddr) -> Option<NatMapping>,
    ) -> Decision {
        self.handle_lookup(now, packet, |src, dst| Lookup {
            nat: lookup(src, dst),
            ..Lookup::default()
        })
    }

    /// [`Engine::handle_with`] for a lookup that also reads stored session
    /// state (see [`Engine::set_lookup`]). A caller whose lookups never
    /// say [`Lookup::server_local`] is never asked for listeners.
    pub fn handle_lookup(
        &mut self,
        now: Instant,
        packet: &[u8],
        lookup: impl FnMut(SocketAddr, SocketAddr) -> Lookup,
    ) -> Decision {
        self.handle_queries(now, packet, lookup, |_| None)
    }

    /// [`Engine::handle_lookup`] that also answers
    /// [`Outcome::NeedListeners`] on the spot: `listeners(server)` lists
    /// the TCP listeners bound to `server` (`None` when they cannot be
    /// read). What the daemon uses.
    pub fn handle_queries(
        &mut self,
        now: Instant,
        packet: &[u8],
        mut lookup: impl FnMut(SocketAddr, SocketAddr) -> Lookup,
        mut listeners: impl FnMut(IpAddr) -> Option<Vec<Listener>>,
    ) -> Decision {
        // A packet asks at most for its NAT mapping and then for one
        // listing: each answer is recorded before it is handled again.
        for _ in 0..3 {
            match self.handle(now, packet) {
                Outcome::Done(decision) => return decision,
                Outcome::NeedNat { src, dst } => self.set_lookup(src, lookup(src, dst)),
                Outcome::NeedListeners { server } => self.set_listeners(server, listeners(server)),
            }
        }
        // Cannot happen; if it ever did, forwarding untouched opens
        // nothing. The fuzzers and tests run with debug assertions.
        debug_assert!(false, "asked again after an answer");
        Decision::accept()
    }

    /// Starts following `client`'s control connection: a new one when the
    /// packet `opening` it is a SYN (whatever was tracked under the same
    /// address and port before has ended, its pinholes go to `close`), else
    /// one picked up mid-stream; `implicit` on an implicit-TLS port.
    /// Returns false when the packet is to be forwarded untouched instead
    /// (session table full, or a stray RST).
    fn start_session(
        &mut self,
        now: Instant,
        seg: &TcpSegment,
        client: SocketAddr,
        opening: bool,
        implicit: bool,
        close: &mut Closing,
    ) -> bool {
        if opening {
            if let Some(old) = self.flows.remove(&client) {
                self.release_all(old, CloseWhy::SessionReplaced, close);
            }
        } else if seg.flags.rst {
            return false;
        }
        if self.flows.len() >= self.cfg.max_sessions {
            // Under a flood this is every SYN: one line when the table
            // fills, the counter carries the volume.
            if !self.full {
                warn!(%client, max_sessions = self.cfg.max_sessions,
                      "session table full; new control connections not followed");
            }
            self.full = true;
            self.stats.sessions_untracked += 1;
            return false;
        }
        self.full = false;
        let mut flow = if opening {
            let mut flow = Flow::new(client, ControlSession::new(), now, self.cfg.max_line);
            flow.syn_seq = Some(seg.seq);
            flow.to_server.lines.start_at(seg.seq.offset(1));
            debug!(%client, server = %seg.dst, "control session opened");
            flow
        } else {
            // Picked up mid-stream (e.g. after a restart): follow it, but
            // honour announcements only once a reply resynchronises us.
            // One per connection: DEBUG, counted.
            debug!(%client, "control session picked up mid-stream");
            self.stats.sessions_picked_up += 1;
            Flow::new(client, ControlSession::resync(), now, self.cfg.max_line)
        };
        if implicit {
            // One per FTPS connection: DEBUG, counted (tls_sessions).
            debug!(%client, "implicit-TLS control session; not parsed");
            self.stats.tls_sessions += 1;
            flow.start_implicit_tls(opening.then(|| seg.seq.offset(1)));
        }
        self.flows.insert(client, flow);
        self.stats.sessions_opened += 1;
        self.schedule(now + self.cfg.handshake_timeout.min(self.cfg.idle_timeout));
        true
    }

    /// Number of live pinholes over all sessions. Every pinhole that
    /// leaves a session is counted as closed or expired, so this is a
    /// difference of counters, not a walk over the sessions.
    pub fn pinhole_count(&self) -> usize {
        let s = &self.stats;
        (s.pinholes_opened - s.pinholes_closed - s.pinholes_expired) as usize
    }

    /// The live pinholes of every session, each with the lifetime it has
    /// left at `now` (expired ones, not yet polled, are left out): what a
    /// shell must install again when a firewall reload took its table away.
    /// A pinhole its data connection already used is listed too, since the
    /// engine does not see the connection; re-adding it lets one more
    /// connection with the same addresses and port in until it expires.
    pub fn live_pinholes(&self, now: Instant) -> Vec<Opening> {
        self.flows
            .values()
            .flat_map(|f| f.pinholes.iter())
            .filter(|live| live.expires > now)
            .map(|live| Opening {
                pinhole: live.pinhole,
                lifetime: live.expires - now,
            })
            .collect()
    }

    /// Number of live FTPS range elements (a range shared by several
    /// sessions counts once).
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    /// The live FTPS ranges, each with the element timeout it has left at
    /// `now`: what a shell installs again after a firewall reload took its
    /// table away (their sessions still live, so the ranges must be back).
    pub fn live_ranges(&self, now: Instant) -> Vec<RangeOpening> {
        self.ranges.live(now, self.cfg.idle_timeout)
    }

    /// Counters since start.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The live sessions, for `ftp-alg status`.
    pub fn snapshot(&self, now: Instant) -> Vec<SessionInfo> {
        self.flows.values().map(|f| f.info(now)).collect()
    }

    /// Forgets a session: its pinholes and its range (when it was the
    /// range's last session) go to `close`.
    fn release_all(&mut self, mut flow: Flow, why: CloseWhy, close: &mut Closing) {
        self.stats.sessions_closed += 1;
        let mut shared = Shared {
            cfg: &self.cfg,
            dnat_in_use: &mut self.dnat_in_use,
            stats: &mut self.stats,
            announced: &self.announced,
            ranges: &mut self.ranges,
        };
        close.pinholes.extend(flow.close_pinholes(why, &mut shared));
        close.ranges.extend(flow.close_range(why, &mut shared));
    }
}
