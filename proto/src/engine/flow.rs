//! One control connection: its two directions, what it knows of its
//! endpoints, and how one of its segments is handled.

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use tracing::{debug, info};

use crate::durable::{DirState, Durable, Resume};
use crate::ftp::held::Hold;
use crate::ftp::lines::{LineAssembler, Position};
use crate::ftp::session::{ControlSession, Phase};
use crate::ftp::tls::TlsRecords;
use crate::packet::TcpSegment;
use crate::pinhole::RangePinhole;
use crate::seq::{Edit, SeqNum, StreamEdits};
use crate::stats::{EngineStats, SessionInfo, SessionState};

use super::follow::LineScratch;
use super::pinholes::{CloseWhy, LivePinhole};
use super::ranges::Ranges;
use super::{Decision, EngineConfig, NatMapping, Persist, Verdict};

/// Which way a segment of a control connection travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dir {
    ToServer,
    ToClient,
}

/// One direction of a control connection.
#[derive(Debug)]
pub(super) struct Half {
    pub(super) lines: LineAssembler,
    pub(super) edits: StreamEdits,
    /// The start of a line that may become an announcement, held back.
    pub(super) hold: Hold,
    /// TLS record framing, from `AUTH TLS` until cleartext resumes.
    pub(super) tls: Option<TlsRecords>,
    /// Taken over from stored state and not parsing yet (see
    /// [`Resume::point`]).
    pub(super) resume: Option<Resume>,
}

impl Half {
    /// True once this direction left TLS for cleartext (after `CCC`).
    pub(super) fn is_cleartext(&self) -> bool {
        self.tls.is_none()
    }

    /// Makes sure the original bytes `line` at `at` reach the wire whole,
    /// with the next segment that touches them: if no rewrite covers them,
    /// an identity edit does.
    pub(super) fn cover(&mut self, at: SeqNum, line: &[u8]) {
        if self.edits.last_start() != Some(at) && !line.is_empty() {
            self.edits.push(Edit {
                at,
                old_len: line.len() as u32,
                new: line.to_vec(),
            });
        }
    }
}
/// Everything known about one control connection.
#[derive(Debug)]
pub(super) struct Flow {
    pub(super) control: ControlSession,
    pub(super) client: SocketAddr,
    pub(super) server_public: Option<SocketAddr>,
    pub(super) nat: Option<NatMapping>,
    pub(super) to_server: Half,
    pub(super) to_client: Half,
    pub(super) syn_seq: Option<SeqNum>,
    pub(super) pinholes: VecDeque<LivePinhole>,
    pub(super) last_seen: Instant,
    /// The server side has sent something: the connection is real.
    pub(super) answered: bool,
    /// A server's packet asked for the conntrack entry (once per session).
    pub(super) asked_from_server: bool,
    /// [`Reported::SessionOpened`](crate::event::Event::SessionOpened) was
    /// reported: with the first packet the session handled (the packet
    /// that started the session may first ask for the NAT mapping, and is
    /// then handled again).
    pub(super) reported: bool,
    pub(super) fin_from_client: bool,
    pub(super) fin_from_server: bool,
    pub(super) closed_at: Option<Instant>,
    /// On an implicit-TLS port: TLS from the first byte.
    pub(super) implicit: bool,
    /// An implicit-TLS session whose range is still to be decided (see
    /// `engine::ftps`).
    pub(super) range_pending: bool,
    /// The FTPS range this session holds, with its `[[ftps]]` entry.
    pub(super) range: Option<(usize, RangePinhole)>,
}

/// Shared state of all flows that a flow's processing may touch.
pub(super) struct Shared<'a> {
    pub(super) cfg: &'a EngineConfig,
    /// Pre-DNAT (source, destination, port) of every live DNAT pinhole:
    /// two pinholes must never claim the same public port.
    pub(super) dnat_in_use: &'a mut HashSet<(IpAddr, IpAddr, u16)>,
    pub(super) stats: &'a mut EngineStats,
    /// See [`Engine::set_announced_addresses`](super::Engine::set_announced_addresses).
    pub(super) announced: &'a [(IpAddr, IpAddr)],
    /// Live FTPS ranges of all sessions, reference-counted.
    pub(super) ranges: &'a mut Ranges,
}

impl Flow {
    pub(super) fn new(
        client: SocketAddr,
        control: ControlSession,
        now: Instant,
        max_line: usize,
    ) -> Self {
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
            implicit: false,
            range_pending: false,
            range: None,
        }
    }

    /// Marks the session as implicit TLS (its server port is an
    /// `ftps_control_ports` one): encrypted from the first byte, framed
    /// from `client_start` (the byte after the client's SYN) when the
    /// session was seen from its SYN, else never framed; the server's
    /// direction is framed from its SYN-ACK on.
    pub(super) fn start_implicit_tls(&mut self, client_start: Option<SeqNum>) {
        self.implicit = true;
        self.range_pending = true;
        self.control = ControlSession::implicit_tls();
        self.to_server.tls = Some(client_start.map_or_else(TlsRecords::unframed, TlsRecords::new));
        self.to_client.tls = Some(TlsRecords::unframed());
    }

    /// Continues from what an earlier instance stored: both directions'
    /// offsets, parsing from the next line boundary (RFC 959 §4: a reply or
    /// command starts a line), announcements honoured again unless the
    /// session had left cleartext.
    pub(super) fn adopt(&mut self, stored: &Durable) {
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
    pub(super) fn persist(&self) -> Option<Persist> {
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

    pub(super) fn halves(&mut self, dir: Dir) -> (&mut Half, &mut Half) {
        match dir {
            Dir::ToServer => (&mut self.to_server, &mut self.to_client),
            Dir::ToClient => (&mut self.to_client, &mut self.to_server),
        }
    }

    pub(super) fn on_segment(
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
        let self_implicit = self.implicit;
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
            if seg.flags.syn && self_implicit {
                // Implicit TLS: the first record starts after the SYN.
                this.tls = Some(TlsRecords::new(data_seq));
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
        self.tend_range(now, dir, shared, &mut decision);
        self.track_close(dir, seg, shared, &mut decision);
        let (this, _) = self.halves(dir);
        decision.verdict = match this.hold.carried(data_seq, payload) {
            Some((start, bytes)) => self.fixup(dir, seg, start, &bytes, packet),
            None => self.fixup(dir, seg, data_seq, payload, packet),
        };
        decision
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
            self.end_range(CloseWhy::SessionEnded, shared, decision);
        }
    }

    pub(super) fn info(&self, now: Instant) -> SessionInfo {
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
            range: self.range,
        }
    }
}
