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

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::durable::{DirState, Durable, Resume};
use crate::event::Event as Reported;
use crate::ftp::held::{Completed, Hold, Update, MAX_ANNOUNCEMENT};
use crate::ftp::lines::{Line, LineAssembler, Position};
use crate::ftp::plan::{plan, Endpoints, Policy};
use crate::ftp::session::{ControlSession, Event, Form, Phase};
use crate::ftp::tls::TlsRecords;
use crate::packet::{Fixup, TcpSegment};
use crate::pinhole::Pinhole;
use crate::reason::Reason;
use crate::seq::{Edit, SeqNum, StreamEdits};
use crate::stats::{EngineStats, SessionInfo, SessionState};

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Server-side TCP ports of control connections.
    pub control_ports: Vec<u16>,
    /// What announcements are accepted.
    pub policy: Policy,
    /// Longest control line parsed. A longer line is not parsed (it still
    /// counts as a command or a reply, so replies stay paired), and parsing
    /// resumes with the next line. RFC 959 sets no limit; vsftpd accepts
    /// 4096-byte commands, and a long path makes lines that long.
    /// Announcements themselves never exceed 256 bytes.
    pub max_line: usize,
    /// Lifetime of an unused pinhole.
    pub pinhole_timeout: Duration,
    /// Pinholes kept per session; a new announcement closes the oldest.
    pub max_pinholes_per_session: usize,
    /// A session with no packet for this long is forgotten.
    pub idle_timeout: Duration,
    /// How long a closed session is kept to fix up late retransmissions.
    pub linger: Duration,
    /// How long the start of a possible announcement may be held while
    /// its sender keeps retransmitting it (see `ftp::held`: the receiver
    /// did not acknowledge the bytes taken over); a retransmission after
    /// this long lets them through untouched.
    pub hold_limit: Duration,
    /// A session the server never answered is forgotten after this long
    /// (conntrack keeps SYN_SENT for 120 s).
    pub handshake_timeout: Duration,
    /// Most sessions tracked at once; beyond it new control connections
    /// are forwarded untouched (and get no help), so a flood of SYNs to
    /// port 21 cannot exhaust memory.
    pub max_sessions: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            control_ports: vec![21],
            policy: Policy::default(),
            max_line: 4096,
            pinhole_timeout: Duration::from_secs(30),
            max_pinholes_per_session: 2,
            idle_timeout: Duration::from_secs(2 * 3600),
            linger: Duration::from_secs(30),
            hold_limit: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(120),
            max_sessions: 262_144,
        }
    }
}

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

/// The engine's answer for one packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Verdict for the packet.
    pub verdict: Verdict,
    /// Pinholes to install before the verdict is given.
    pub open: Vec<Opening>,
    /// Pinholes to remove.
    pub close: Vec<Pinhole>,
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
            events: Vec::new(),
            persist: None,
        }
    }
}

/// Result of [`Engine::handle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Look up the conntrack entry whose original tuple is `src -> dst`,
    /// give the result to [`Engine::set_nat`] (or [`Engine::set_lookup`]),
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
    /// The decision for the packet.
    Done(Decision),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    ToServer,
    ToClient,
}

/// One direction of a control connection.
#[derive(Debug)]
struct Half {
    lines: LineAssembler,
    edits: StreamEdits,
    /// The start of a line that may become an announcement, held back.
    hold: Hold,
    /// TLS record framing, from `AUTH TLS` until cleartext resumes.
    tls: Option<TlsRecords>,
    /// Taken over from stored state and not parsing yet (see
    /// [`Half::resume_point`]).
    resume: Option<Resume>,
}

impl Half {
    /// True once this direction left TLS for cleartext (after `CCC`).
    fn is_cleartext(&self) -> bool {
        self.tls.is_none()
    }

    /// Makes sure the original bytes `line` at `at` reach the wire whole,
    /// with the next segment that touches them: if no rewrite covers them,
    /// an identity edit does.
    fn cover(&mut self, at: SeqNum, line: &[u8]) {
        if self.edits.last_start() != Some(at) && !line.is_empty() {
            self.edits.push(Edit {
                at,
                old_len: line.len() as u32,
                new: line.to_vec(),
            });
        }
    }
}

/// Whether an unfinished line may still become an announcement: a prefix
/// of `PORT `/`EPRT ` from the client, of `227`/`229` from the server, not
/// longer than an announcement can be.
fn could_be_announcement(dir: Dir, partial: &[u8]) -> bool {
    if partial.is_empty() || partial.len() >= MAX_ANNOUNCEMENT {
        return false;
    }
    let verbs: &[&[u8]] = match dir {
        Dir::ToServer => &[b"PORT ", b"EPRT "],
        Dir::ToClient => &[b"227", b"229"],
    };
    verbs.iter().any(|verb| {
        let n = partial.len().min(verb.len());
        partial[..n].eq_ignore_ascii_case(&verb[..n])
    })
}

/// A pinhole this session opened and that may still be live.
#[derive(Debug)]
struct LivePinhole {
    pinhole: Pinhole,
    form: Form,
    expires: Instant,
}

/// Why ftp-alg closes a pinhole (logged with it; the counters only tell
/// closed from expired).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CloseWhy {
    /// A newer announcement of the session took its place (the session
    /// keeps `max_pinholes_per_session`).
    Replaced,
    /// The server refused the `PORT`/`EPRT` (4yz/5yz).
    RefusedByServer,
    /// `REIN` or `QUIT` was accepted.
    SessionReset,
    /// Both FINs or an RST.
    SessionEnded,
    /// A new SYN from the same client address and port.
    SessionReplaced,
    /// Forgotten: idle, or its linger after the close ran out.
    SessionForgotten,
}

impl std::fmt::Display for CloseWhy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CloseWhy::Replaced => "replaced by a newer announcement",
            CloseWhy::RefusedByServer => "PORT/EPRT refused by the server",
            CloseWhy::SessionReset => "REIN/QUIT accepted",
            CloseWhy::SessionEnded => "control session ended",
            CloseWhy::SessionReplaced => "control session replaced by a new one",
            CloseWhy::SessionForgotten => "control session forgotten",
        })
    }
}

/// Everything known about one control connection.
#[derive(Debug)]
struct Flow {
    control: ControlSession,
    client: SocketAddr,
    server_public: Option<SocketAddr>,
    nat: Option<NatMapping>,
    to_server: Half,
    to_client: Half,
    syn_seq: Option<SeqNum>,
    pinholes: VecDeque<LivePinhole>,
    last_seen: Instant,
    /// The server side has sent something: the connection is real.
    answered: bool,
    /// A server's packet asked for the conntrack entry (once per session).
    asked_from_server: bool,
    /// [`Reported::SessionOpened`] was reported: with the first packet
    /// the session handled (the packet that started the session may
    /// first ask for the NAT mapping, and is then handled again).
    reported: bool,
    fin_from_client: bool,
    fin_from_server: bool,
    closed_at: Option<Instant>,
}

/// Shared state of all flows that a flow's processing may touch.
struct Shared<'a> {
    cfg: &'a EngineConfig,
    /// Pre-DNAT (source, destination, port) of every live DNAT pinhole:
    /// two pinholes must never claim the same public port.
    dnat_in_use: &'a mut HashSet<(IpAddr, IpAddr, u16)>,
    stats: &'a mut EngineStats,
    /// See [`Engine::set_announced_addresses`].
    announced: &'a [(IpAddr, IpAddr)],
}

/// The FTP ALG engine for all control connections through one gateway.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    flows: HashMap<SocketAddr, Flow>,
    dnat_in_use: HashSet<(IpAddr, IpAddr, u16)>,
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

/// The lines one segment completes, copied out of the line assembler (the
/// flow is updated line by line while the assembler is borrowed).
#[derive(Debug, Default)]
struct LineScratch {
    /// The bytes of all complete lines, one after another.
    bytes: Vec<u8>,
    /// Each line's first sequence number, range in `bytes`, whole length
    /// and whether it is all there (false for a line over the length
    /// limit, of which only the head is kept).
    lines: Vec<(SeqNum, Range<usize>, usize, bool)>,
}

fn dnat_key(p: &Pinhole) -> Option<(IpAddr, IpAddr, u16)> {
    p.dnat.map(|_| (p.src, p.dst, p.dport))
}

impl Engine {
    /// A new engine with no sessions.
    pub fn new(cfg: EngineConfig) -> Self {
        Engine {
            cfg,
            flows: HashMap::new(),
            dnat_in_use: HashSet::new(),
            stats: EngineStats::default(),
            announced: Vec::new(),
            lines: LineScratch::default(),
            next_poll: None,
            full: false,
        }
    }

    /// Lowers the next timer to `at` if that is earlier.
    fn schedule(&mut self, at: Instant) {
        self.next_poll = Some(self.next_poll.map_or(at, |t| t.min(at)));
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
    /// yet.
    pub fn handle(&mut self, now: Instant, packet: &[u8]) -> Outcome {
        let seg = match TcpSegment::parse(packet) {
            Ok(seg) => seg,
            Err(why) => {
                debug!(?why, "not a TCP segment; forwarded untouched");
                return Outcome::Done(Decision::accept());
            }
        };
        let dir = if self.cfg.control_ports.contains(&seg.dst.port()) {
            Dir::ToServer
        } else if self.cfg.control_ports.contains(&seg.src.port()) {
            Dir::ToClient
        } else {
            return Outcome::Done(Decision::accept());
        };
        let client = match dir {
            Dir::ToServer => seg.src,
            Dir::ToClient => seg.dst,
        };
        let mut close = Vec::new();
        let opening = dir == Dir::ToServer && seg.flags.syn && !seg.flags.ack;
        // A packet of a known session costs one hash lookup: this one.
        let flow = match self.flows.get_mut(&client) {
            Some(flow) if !opening || flow.syn_seq == Some(seg.seq) => flow,
            _ => {
                if !self.start_session(now, &seg, client, opening, &mut close) {
                    return Outcome::Done(Decision {
                        close,
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
        let mut shared = Shared {
            cfg: &self.cfg,
            dnat_in_use: &mut self.dnat_in_use,
            stats: &mut self.stats,
            announced: &self.announced,
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
        decision.close.extend(close);
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
    /// state (see [`Engine::set_lookup`]).
    pub fn handle_lookup(
        &mut self,
        now: Instant,
        packet: &[u8],
        mut lookup: impl FnMut(SocketAddr, SocketAddr) -> Lookup,
    ) -> Decision {
        match self.handle(now, packet) {
            Outcome::Done(decision) => decision,
            Outcome::NeedNat { src, dst } => {
                self.set_lookup(src, lookup(src, dst));
                match self.handle(now, packet) {
                    Outcome::Done(decision) => decision,
                    // set_nat recorded a mapping, so this cannot happen; if
                    // it ever did, forwarding untouched opens nothing. The
                    // fuzzers and tests run with debug assertions.
                    Outcome::NeedNat { .. } => {
                        debug_assert!(false, "NeedNat again after set_nat");
                        Decision::accept()
                    }
                }
            }
        }
    }

    /// Starts following `client`'s control connection: a new one when the
    /// packet `opening` it is a SYN (whatever was tracked under the same
    /// address and port before has ended, its pinholes go to `close`), else
    /// one picked up mid-stream. Returns false when the packet is to be
    /// forwarded untouched instead (session table full, or a stray RST).
    fn start_session(
        &mut self,
        now: Instant,
        seg: &TcpSegment,
        client: SocketAddr,
        opening: bool,
        close: &mut Vec<Pinhole>,
    ) -> bool {
        if opening {
            if let Some(old) = self.flows.remove(&client) {
                close.extend(self.release_all(old, CloseWhy::SessionReplaced));
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
        let flow = if opening {
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
        self.flows.insert(client, flow);
        self.stats.sessions_opened += 1;
        self.schedule(now + self.cfg.handshake_timeout.min(self.cfg.idle_timeout));
        true
    }

    /// When [`Engine::poll`] is next due: the earliest expiry of a session
    /// or a pinhole, or `None` while nothing is tracked. Calling `poll`
    /// earlier is harmless, later only delays expiry. Cheap: a stored value.
    pub fn poll_at(&self) -> Option<Instant> {
        self.next_poll
    }

    /// Expires idle and closed sessions and forgets expired pinholes.
    /// Returns the pinholes to remove.
    pub fn poll(&mut self, now: Instant) -> Vec<Pinhole> {
        let mut close = Vec::new();
        let cfg = &self.cfg;
        let gone: Vec<SocketAddr> = self
            .flows
            .iter()
            .filter(|(_, f)| {
                let idle = now.saturating_duration_since(f.last_seen);
                match f.closed_at {
                    Some(t) => now.saturating_duration_since(t) >= cfg.linger,
                    None if !f.answered => idle >= cfg.handshake_timeout,
                    None => idle >= cfg.idle_timeout,
                }
            })
            .map(|(k, _)| *k)
            .collect();
        for key in gone {
            if let Some(flow) = self.flows.remove(&key) {
                debug!(client = %key, "control session forgotten");
                close.extend(self.release_all(flow, CloseWhy::SessionForgotten));
            }
        }
        for flow in self.flows.values_mut() {
            while flow.pinholes.front().is_some_and(|p| p.expires <= now) {
                let live = flow.pinholes.pop_front().expect("checked");
                if let Some(k) = dnat_key(&live.pinhole) {
                    self.dnat_in_use.remove(&k);
                }
                // nftables removes the element itself, when the data
                // connection used it or its timeout ran out; which of the
                // two, the engine cannot see.
                info!(client = %flow.client, pinhole = %live.pinhole,
                      "pinhole lifetime over (used, or expired unused); forgotten");
                self.stats.pinholes_expired += 1;
            }
        }
        let cfg = &self.cfg;
        self.next_poll = self.flows.values().map(|f| f.deadline(cfg)).min();
        close
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

    /// Counters since start.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The live sessions, for `ftp-alg status`.
    pub fn snapshot(&self, now: Instant) -> Vec<SessionInfo> {
        self.flows.values().map(|f| f.info(now)).collect()
    }

    fn release_all(&mut self, mut flow: Flow, why: CloseWhy) -> Vec<Pinhole> {
        self.stats.sessions_closed += 1;
        let mut shared = Shared {
            cfg: &self.cfg,
            dnat_in_use: &mut self.dnat_in_use,
            stats: &mut self.stats,
            announced: &self.announced,
        };
        flow.close_pinholes(why, &mut shared)
    }
}

impl Flow {
    /// When this session next needs [`Engine::poll`]: its own expiry or
    /// its first pinhole's, whichever comes first.
    fn deadline(&self, cfg: &EngineConfig) -> Instant {
        let own = match self.closed_at {
            Some(t) => t + cfg.linger,
            None if !self.answered => self.last_seen + cfg.handshake_timeout,
            None => self.last_seen + cfg.idle_timeout,
        };
        self.pinholes
            .iter()
            .map(|p| p.expires)
            .fold(own, Instant::min)
    }

    fn new(client: SocketAddr, control: ControlSession, now: Instant, max_line: usize) -> Self {
        let half = || Half {
            lines: LineAssembler::new(max_line),
            edits: StreamEdits::default(),
            hold: Hold::default(),
            tls: None,
            resume: None,
        };
        Flow {
            control,
            client,
            server_public: None,
            nat: None,
            to_server: half(),
            to_client: half(),
            syn_seq: None,
            pinholes: VecDeque::new(),
            last_seen: now,
            answered: false,
            reported: false,
            asked_from_server: false,
            fin_from_client: false,
            fin_from_server: false,
            closed_at: None,
        }
    }

    /// Continues from what an earlier instance stored: both directions'
    /// offsets, parsing from the next line boundary (RFC 959 §4: a reply or
    /// command starts a line), announcements honoured again unless the
    /// session had left cleartext.
    fn adopt(&mut self, stored: &Durable) {
        info!(client = %self.client, ?stored, "control session adopted from conntrack state");
        for (half, d) in [
            (&mut self.to_server, &stored.to_server),
            (&mut self.to_client, &stored.to_client),
        ] {
            half.edits = StreamEdits::adopted(d.pos, d.before, d.after);
            half.resume = Some(Resume {
                pos: (!d.is_identity()).then_some(d.pos),
                answered: None,
            });
        }
        self.control = ControlSession::adopted(!stored.unparsed);
    }

    /// What a new instance needs to continue this session, addressed by
    /// the connection's original tuple; `None` before the server's public
    /// address is known (no announcement was planned then).
    fn persist(&self) -> Option<Persist> {
        let dir = |h: &Half| {
            let (pos, before, after) = h.edits.rewrite_point();
            DirState { pos, before, after }
        };
        Some(Persist {
            client: self.client,
            server: self.server_public?,
            state: Durable {
                to_server: dir(&self.to_server),
                to_client: dir(&self.to_client),
                unparsed: !self.control.is_parsing(),
            },
        })
    }

    fn halves(&mut self, dir: Dir) -> (&mut Half, &mut Half) {
        match dir {
            Dir::ToServer => (&mut self.to_server, &mut self.to_client),
            Dir::ToClient => (&mut self.to_client, &mut self.to_server),
        }
    }

    fn on_segment(
        &mut self,
        now: Instant,
        dir: Dir,
        seg: &TcpSegment,
        packet: &[u8],
        shared: &mut Shared<'_>,
        scratch: &mut LineScratch,
    ) -> Decision {
        self.last_seen = now;
        self.answered |= dir == Dir::ToClient;
        let mut decision = Decision::accept();
        let payload = seg.payload(packet);
        let data_seq = seg.seq.offset(seg.flags.syn as i64);
        {
            let (this, other) = self.halves(dir);
            if let Some(resume) = other.resume.as_mut() {
                if seg.flags.ack && payload.last() == Some(&b'\n') {
                    resume.answered = Some(other.edits.to_original(seg.ack, false));
                }
            }
            if seg.flags.syn && !this.lines.is_started() {
                this.lines.start_at(data_seq);
            }
            if let Some(resume) = this.resume.filter(|_| !payload.is_empty()) {
                if let Some(start) = resume.point(data_seq, payload) {
                    this.lines.start_at(start);
                    this.resume = None;
                }
            } else if !payload.is_empty() && !this.lines.is_started() {
                this.lines.start_at(data_seq);
            }
        }
        // Lines are followed while the session is parsed, and under TLS in a
        // direction already back in cleartext (so the other can catch up).
        let follows = |flow: &mut Flow| match flow.control.phase() {
            Phase::Tls => flow.halves(dir).0.is_cleartext(),
            _ => flow.control.is_parsing(),
        };
        if (!follows(self) && !payload.is_empty()) || (seg.flags.fin && payload.is_empty()) {
            // Bytes held of a line that will not complete as one (TLS began
            // meanwhile, or the stream ends): they go out with this segment.
            let (this, _) = self.halves(dir);
            if this.hold.release(&mut this.edits) {
                debug!(client = %self.client, ?dir, "held line start released: stream ends or is no longer parsed");
            }
        }
        if !payload.is_empty() && self.control.phase() == Phase::Tls {
            self.follow_tls(dir, data_seq, payload);
        }
        // An adopted direction waits for a line start it knows (see Resume).
        let followed =
            !payload.is_empty() && follows(self) && self.halves(dir).0.lines.is_started();
        let position = followed.then(|| {
            self.follow_lines(
                now,
                dir,
                seg,
                data_seq,
                payload,
                shared,
                scratch,
                &mut decision,
            )
        });
        if position == Some(Position::Gap) {
            // The bytes before this segment have not passed the gateway:
            // parsing now would miss a line, forwarding unparsed could let
            // an announcement through unrewritten. The sender retransmits
            // it once the hole is filled.
            debug!(client = %self.client, ?dir, "out-of-order control data dropped");
            shared.stats.segments_held += 1;
            decision.verdict = Verdict::Drop;
            return decision;
        }
        self.track_close(dir, seg, shared, &mut decision);
        let (this, _) = self.halves(dir);
        decision.verdict = match this.hold.carried(data_seq, payload) {
            Some((start, bytes)) => self.fixup(dir, seg, start, &bytes, packet),
            None => self.fixup(dir, seg, data_seq, payload, packet),
        };
        decision
    }

    /// Feeds a segment's payload to this direction's lines: parses every
    /// line it completes, and holds back the start of a line that may
    /// become an announcement (see `ftp::held` for why and how).
    #[allow(clippy::too_many_arguments)]
    fn follow_lines(
        &mut self,
        now: Instant,
        dir: Dir,
        seg: &TcpSegment,
        data_seq: SeqNum,
        payload: &[u8],
        shared: &mut Shared<'_>,
        scratch: &mut LineScratch,
        decision: &mut Decision,
    ) -> Position {
        let LineScratch { bytes, lines } = scratch;
        bytes.clear();
        lines.clear();
        let (this, _) = self.halves(dir);
        let position = this.lines.feed(data_seq, payload, |line| {
            let (at, text, len, whole) = match line {
                Line::Complete(at, line) => (at, line, line.len(), true),
                Line::Overlong { at, head, len } => (at, head, len, false),
            };
            let start = bytes.len();
            bytes.extend_from_slice(text);
            lines.push((at, start..bytes.len(), len, whole));
        });
        if position == Position::Gap {
            return position;
        }
        for (at, range, len, whole) in lines.drain(..) {
            let line = &bytes[range];
            let (this, _) = self.halves(dir);
            let completed = this.hold.complete(at, whole, &mut this.edits);
            if whole {
                let rewritable = completed != Completed::WasReleased;
                self.on_line(now, dir, at, line, rewritable, shared, decision);
                if completed == Completed::WasHeld {
                    // The start of this line was held back: make sure it
                    // goes out with this segment.
                    self.halves(dir).0.cover(at, line);
                }
            } else {
                // Not parsed, but still a command or a reply (so that replies
                // stay paired); parsing resumes with the next line. Counted
                // as the event's reason.
                let event = match dir {
                    Dir::ToServer => self.control.on_client_overlong(line),
                    Dir::ToClient => self.control.on_server_overlong(line),
                };
                self.on_event(now, dir, at, len, line, event, false, shared, decision);
            }
        }
        let parsing = self.control.is_parsing();
        let end = data_seq.offset(payload.len() as i64);
        let (this, _) = self.halves(dir);
        let (start, partial) = this.lines.partial();
        let candidate = parsing
            && !seg.flags.fin
            && !seg.flags.rst
            && !this.lines.in_overlong()
            && could_be_announcement(dir, partial);
        let update = this.hold.update(
            now,
            start,
            partial,
            candidate,
            position == Position::InOrder,
            position == Position::Old && start.before(end),
            shared.cfg.hold_limit,
            &mut this.edits,
        );
        match update {
            Update::Holding => {
                debug!(client = %self.client, ?dir, "possible announcement split across segments: held back, delivery taken over");
                shared.stats.segments_held += 1;
            }
            Update::TimedOut => {
                info!(client = %self.client, ?dir, "held line start never acknowledged; released untouched");
            }
            Update::Unchanged | Update::Harmless => {}
        }
        position
    }

    /// Parses one complete line at `at`. `rewritable`: false when its start
    /// already went out untouched (a hold released after its limit).
    #[allow(clippy::too_many_arguments)]
    fn on_line(
        &mut self,
        now: Instant,
        dir: Dir,
        at: SeqNum,
        line: &[u8],
        rewritable: bool,
        shared: &mut Shared<'_>,
        decision: &mut Decision,
    ) {
        let event = match dir {
            Dir::ToServer => self.control.on_client_line(line),
            Dir::ToClient => self.control.on_server_line(line),
        };
        self.on_event(
            now,
            dir,
            at,
            line.len(),
            line,
            event,
            rewritable,
            shared,
            decision,
        );
    }

    /// Acts on what a line of `len` bytes at `at` means; `line` holds its
    /// bytes (only its head for a line over the length limit, which never
    /// announces).
    #[allow(clippy::too_many_arguments)]
    fn on_event(
        &mut self,
        now: Instant,
        dir: Dir,
        at: SeqNum,
        len: usize,
        line: &[u8],
        event: Option<Event>,
        rewritable: bool,
        shared: &mut Shared<'_>,
        decision: &mut Decision,
    ) {
        let client = self.client;
        match event {
            None => {}
            Some(Event::Announce(form, _)) if len > MAX_ANNOUNCEMENT => {
                shared.stats.refusals.add(Reason::OverlongAnnouncement);
                info!(%client, ?form, len, reason = %Reason::OverlongAnnouncement, "announcement refused; nothing opened");
                decision.events.push(Reported::Refusal {
                    form: Some(form),
                    reason: Reason::OverlongAnnouncement,
                });
            }
            Some(Event::Announce(form, hp)) => {
                let Some(ep) = self.endpoints(shared.announced) else {
                    shared.stats.refusals.add(Reason::NatUnknown);
                    warn!(%client, ?form, reason = %Reason::NatUnknown, "announcement refused; nothing opened");
                    decision.events.push(Reported::Refusal {
                        form: Some(form),
                        reason: Reason::NatUnknown,
                    });
                    return;
                };
                let in_use = &*shared.dnat_in_use;
                let free = |p: &Pinhole| dnat_key(p).is_none_or(|k| !in_use.contains(&k));
                match plan(form, &hp, &ep, &shared.cfg.policy, free) {
                    Ok(plan) if plan.replacement.is_some() && !rewritable => {
                        shared.stats.refusals.add(Reason::HeldLineReleased);
                        warn!(%client, ?form, reason = %Reason::HeldLineReleased, "announcement refused; nothing opened");
                        decision.events.push(Reported::Refusal {
                            form: Some(form),
                            reason: Reason::HeldLineReleased,
                        });
                    }
                    Ok(plan) => {
                        shared.stats.announcements.add(form);
                        decision.events.push(Reported::Announcement {
                            form,
                            addr: hp.addr,
                            port: hp.port,
                        });
                        if let Some(text) = &plan.replacement {
                            let mut new = Vec::with_capacity(line.len() + text.len());
                            new.extend_from_slice(&line[..hp.span.start]);
                            new.extend_from_slice(text);
                            new.extend_from_slice(&line[hp.span.end..]);
                            let delta = new.len() as i64 - line.len() as i64;
                            let (this, _) = self.halves(dir);
                            let edit = Edit {
                                at,
                                old_len: line.len() as u32,
                                new,
                            };
                            if !this.edits.push(edit) {
                                shared.stats.refusals.add(Reason::RewriteOverlap);
                                warn!(%client, ?form, reason = %Reason::RewriteOverlap, "announcement refused; nothing opened");
                                decision.events.push(Reported::Refusal {
                                    form: Some(form),
                                    reason: Reason::RewriteOverlap,
                                });
                                return;
                            }
                            shared.stats.rewrites += 1;
                            let from = String::from_utf8_lossy(&line[hp.span.clone()]);
                            let to = String::from_utf8_lossy(text);
                            info!(%client, ?form, %from, %to, delta, "announcement rewritten");
                            decision.events.push(Reported::Rewrite {
                                form,
                                from: from.into_owned(),
                                to: to.into_owned(),
                                delta,
                            });
                            if delta != 0 {
                                decision.persist = self.persist();
                            }
                        }
                        self.add_pinhole(now, form, plan.pinhole, shared, decision);
                    }
                    Err(why) => {
                        shared.stats.refusals.add(why);
                        info!(%client, ?form, reason = %why, "announcement refused; nothing opened");
                        decision.events.push(Reported::Refusal {
                            form: Some(form),
                            reason: why,
                        });
                    }
                }
            }
            Some(Event::ActiveRefused) => {
                let last = self
                    .pinholes
                    .iter()
                    .rposition(|p| matches!(p.form, Form::Port | Form::Eprt));
                if let Some(i) = last.and_then(|i| self.pinholes.remove(i)) {
                    release(client, &i.pinhole, CloseWhy::RefusedByServer, shared);
                    decision.close.push(i.pinhole);
                }
            }
            Some(Event::Ignored(why)) => {
                shared.stats.refusals.add(why);
                if why == Reason::OverlongLine {
                    // An ordinary long path: counted, not worth a line each.
                    debug!(%client, ?dir, len, reason = %why, "line not parsed; nothing opened")
                } else {
                    info!(%client, reason = %why, "line ignored; nothing opened")
                }
                decision.events.push(Reported::Refusal {
                    form: None,
                    reason: why,
                });
            }
            Some(Event::TlsStarted) => {
                shared.stats.tls_sessions += 1;
                // One per FTPS connection: DEBUG, counted (tls_sessions).
                debug!(%client, "control session switched to TLS; no longer parsed");
                decision.events.push(Reported::TlsStarted);
                // Records start right after the 234 line from the server and
                // after the last parsed line from the client.
                let server_start = at.offset(len as i64);
                let client_start = self.to_server.lines.next_seq().unwrap_or(server_start);
                self.to_client.tls = Some(TlsRecords::new(server_start));
                self.to_server.tls = Some(TlsRecords::new(client_start));
                if !(self.to_server.edits.is_identity() && self.to_client.edits.is_identity()) {
                    // A new instance must not parse the records as text.
                    decision.persist = self.persist();
                }
            }
            Some(Event::Reset) => {
                let closed = self.close_pinholes(CloseWhy::SessionReset, shared);
                debug!(%client, pinholes = closed.len(), "REIN/QUIT accepted; pinholes closed");
                decision.close.extend(closed);
            }
        }
    }

    /// Under TLS, follows the record framing of one direction; once both
    /// directions are back in cleartext (after `CCC`), parsing resumes.
    fn follow_tls(&mut self, dir: Dir, data_seq: SeqNum, payload: &[u8]) {
        let (this, _) = self.halves(dir);
        let Some(tls) = this.tls.as_mut() else { return };
        if let Some(clear) = tls.feed(data_seq, payload) {
            this.tls = None;
            this.lines.start_at(clear);
        }
        if self.to_server.is_cleartext() && self.to_client.is_cleartext() {
            debug!(client = %self.client, "control session back in cleartext (CCC); parsed again");
            self.control.resume_cleartext();
        }
    }

    fn info(&self, now: Instant) -> SessionInfo {
        let state = match (self.closed_at, self.control.phase()) {
            (Some(_), _) => SessionState::Closed,
            (None, Phase::AwaitGreeting) => SessionState::Greeting,
            (None, Phase::Resync) => SessionState::Resync,
            (None, Phase::Ready) => SessionState::Ready,
            (None, Phase::Tls) => SessionState::Tls,
            (None, Phase::NotFtp) => SessionState::NotFtp,
        };
        SessionInfo {
            client: self.client,
            client_public: self.nat.map(|n| n.client_public),
            server_public: self.server_public,
            server_real: self.nat.map(|n| n.server_real),
            state,
            delta_to_server: self.to_server.edits.total_delta(),
            delta_to_client: self.to_client.edits.total_delta(),
            idle: now.saturating_duration_since(self.last_seen),
            pinholes: self
                .pinholes
                .iter()
                .map(|p| (p.pinhole, p.expires.saturating_duration_since(now)))
                .collect(),
        }
    }

    fn endpoints(&self, announced: &[(IpAddr, IpAddr)]) -> Option<Endpoints> {
        let nat = self.nat?;
        let server_public = self.server_public?;
        let announce = |ip: IpAddr| {
            announced
                .iter()
                .find(|(own, _)| *own == ip)
                .map_or(ip, |(_, public)| *public)
        };
        Some(Endpoints {
            client: self.client,
            client_public: nat.client_public,
            client_announced: announce(nat.client_public.ip()),
            server_public,
            server_announced: announce(server_public.ip()),
            server_real: nat.server_real,
        })
    }

    fn add_pinhole(
        &mut self,
        now: Instant,
        form: Form,
        pinhole: Pinhole,
        shared: &mut Shared<'_>,
        decision: &mut Decision,
    ) {
        while self.pinholes.len() >= shared.cfg.max_pinholes_per_session.max(1) {
            let old = self.pinholes.pop_front().expect("non-empty");
            release(self.client, &old.pinhole, CloseWhy::Replaced, shared);
            decision.close.push(old.pinhole);
        }
        if let Some(k) = dnat_key(&pinhole) {
            shared.dnat_in_use.insert(k);
        }
        shared.stats.pinholes_opened += 1;
        info!(client = %self.client, ?form, %pinhole, "pinhole opened");
        let lifetime = shared.cfg.pinhole_timeout;
        self.pinholes.push_back(LivePinhole {
            pinhole,
            form,
            expires: now + lifetime,
        });
        let opening = Opening { pinhole, lifetime };
        decision.open.push(opening);
        decision.events.push(Reported::Pinhole { form, opening });
    }

    fn close_pinholes(&mut self, why: CloseWhy, shared: &mut Shared<'_>) -> Vec<Pinhole> {
        let client = self.client;
        self.pinholes
            .drain(..)
            .map(|live| {
                release(client, &live.pinhole, why, shared);
                live.pinhole
            })
            .collect()
    }

    /// FIN from both sides or an RST ends the session: its pinholes close
    /// now, its sequence offsets are kept a little longer for stragglers.
    fn track_close(
        &mut self,
        dir: Dir,
        seg: &TcpSegment,
        shared: &mut Shared<'_>,
        decision: &mut Decision,
    ) {
        match dir {
            Dir::ToServer => self.fin_from_client |= seg.flags.fin,
            Dir::ToClient => self.fin_from_server |= seg.flags.fin,
        }
        let ended = seg.flags.rst || (self.fin_from_client && self.fin_from_server);
        if ended && self.closed_at.is_none() {
            self.closed_at = Some(self.last_seen);
            let closed = self.close_pinholes(CloseWhy::SessionEnded, shared);
            debug!(client = %self.client, pinholes = closed.len(), "control session closed");
            decision.close.extend(closed);
        }
    }

    /// Computes the packet as it must leave: this direction's sequence
    /// number and payload after its edits, the other direction's
    /// acknowledgement and SACK edges mapped back through its edits.
    fn fixup(
        &mut self,
        dir: Dir,
        seg: &TcpSegment,
        data_seq: SeqNum,
        payload: &[u8],
        packet: &[u8],
    ) -> Verdict {
        // Held bytes released in front of the segment's own (`Hold::carried`).
        let resized = payload.len() != seg.payload(packet).len();
        let (this, other) = self.halves(dir);
        if this.edits.is_identity() && other.edits.is_identity() && !resized {
            return Verdict::Accept;
        }
        let mut rendered = this.edits.render(data_seq, payload);
        let flags = seg.flags;
        if rendered.payload.as_ref().is_some_and(Vec::is_empty)
            && !payload.is_empty()
            && !(flags.syn || flags.fin || flags.rst)
        {
            // Every byte is held (`ftp::held`): a duplicate of the byte
            // before the line, so that the receiver acknowledges at once
            // (RFC 9293 §3.10.7.4) what the sender sent. That byte ends the
            // previous line; at the stream's start, an empty duplicate.
            rendered.seq = rendered.seq.offset(-1);
            if !this.lines.line_is_first() {
                rendered.payload = Some(b"\n".to_vec());
            }
        }
        let seq = rendered.seq.offset(-(seg.flags.syn as i64));
        let ack = if seg.flags.ack {
            other.edits.to_original(seg.ack, false)
        } else {
            seg.ack
        };
        let sack_block = |&(l, r): &(SeqNum, SeqNum)| {
            let (l, r) = (
                other.edits.to_original(l, true),
                other.edits.to_original(r, false),
            );
            l.before(r).then_some((l, r))
        };
        // Mapped twice when a block changes (rare), so that a packet whose
        // blocks stay as they are maps each block once.
        let sack_changed = seg.sack.iter().any(|b| sack_block(b) != Some(*b));
        if seq == seg.seq
            && ack == seg.ack
            && rendered.payload.is_none()
            && !sack_changed
            && !resized
        {
            return Verdict::Accept;
        }
        let payload = rendered
            .payload
            .or_else(|| resized.then(|| payload.to_vec()));
        Verdict::Replace(seg.rebuild(
            packet,
            &Fixup {
                seq,
                ack,
                sack: sack_changed.then(|| seg.sack.iter().filter_map(sack_block).collect()),
                payload,
            },
        ))
    }
}

/// Forgets a pinhole that ftp-alg closes, and says why.
fn release(client: SocketAddr, p: &Pinhole, why: CloseWhy, shared: &mut Shared<'_>) {
    if let Some(k) = dnat_key(p) {
        shared.dnat_in_use.remove(&k);
    }
    shared.stats.pinholes_closed += 1;
    info!(%client, pinhole = %p, %why, "pinhole closed");
}
