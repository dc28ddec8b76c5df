//! Plays one case of the table through the engine simulator and checks its
//! expectations: the exact bytes each far side receives, pinholes of exactly
//! the data connection the far side was told about (and none for a
//! refusal), the reasons of the refusals, every pinhole closed with its
//! session.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ftp_alg_proto::engine::EngineConfig;
use ftp_alg_proto::pinhole::Pinhole;
use ftp_alg_proto::reason::Reason;

use crate::support::{Receiver, Sender, Side, Sim};
use crate::table::{Action, Case, Data, Listen, Path, Peer, Table};
use crate::wire::{received_passive, received_ports};

/// Plays `case` with `flags` set; the first broken expectation is the error.
pub fn play(table: &Table, case: &Case, flags: &[String]) -> Result<(), String> {
    let actions = case.actions(table, flags)?;
    let mut cfg = EngineConfig::default();
    for f in flags {
        match f.as_str() {
            "allow_privileged" => cfg.policy.allow_privileged_ports = true,
            _ => return Err(format!("unknown flag '{f}'")),
        }
    }
    let mut session: Option<Session> = None;
    for (i, a) in actions.iter().enumerate() {
        let step = || format!("action {i} ({})", describe(a));
        match a {
            Action::Open(name) => {
                let path = &table.paths[name];
                session = Some(Session::open(path, case.nat_override, cfg.clone(), i));
            }
            Action::Finish => session
                .take()
                .ok_or("no session to finish")?
                .finish()
                .map_err(|e| format!("{}: {e}", step()))?,
            a => session
                .as_mut()
                .ok_or("no session open")?
                .act(a)
                .map_err(|e| format!("{}: {e}", step()))?,
        }
    }
    Ok(())
}

/// How far a peer has read what it received.
#[derive(Default)]
struct Mark {
    /// Bytes already matched by a step.
    seen: usize,
    /// Where PORT/EPRT/227 lines are read from (after the last TLS bytes).
    text: usize,
}

/// One control session and what became of its pinholes.
struct Session<'a> {
    path: &'a Path,
    nat_override: Option<IpAddr>,
    sim: Sim,
    /// What the server has read (of the client's stream), and the client.
    server_read: Mark,
    client_read: Mark,
    /// Pinholes a data connection went through (nftables deletes the
    /// element on its first match).
    consumed: Vec<Pinhole>,
    /// Pinholes some data step expected, by their filter key.
    claimed: Vec<(IpAddr, IpAddr, u16)>,
    /// Refusals counted up to the last check.
    refusals_seen: Vec<(Reason, u64)>,
}

fn side(p: Peer) -> Side {
    match p {
        Peer::Client => Side::Client,
        Peer::Server => Side::Server,
    }
}

impl<'a> Session<'a> {
    fn open(path: &'a Path, nat_override: Option<IpAddr>, cfg: EngineConfig, n: usize) -> Self {
        let cport = 40000 + n as u16;
        let at = |ip: IpAddr, port: u16| SocketAddr::new(ip, port).to_string();
        let mut sim = Sim::with_config(
            &at(path.client, cport),
            &at(path.client_public, cport),
            &at(path.server, 21),
            &at(path.server_real, 21),
            cfg,
        );
        if let Some(outer) = nat_override {
            sim.engine
                .set_announced_addresses(vec![(path.client_public, outer)]);
        }
        sim.handshake();
        let refusals_seen = sim.engine.stats().refusals.iter().collect();
        Session {
            path,
            nat_override,
            sim,
            server_read: Mark::default(),
            client_read: Mark::default(),
            consumed: Vec::new(),
            claimed: Vec::new(),
            refusals_seen,
        }
    }

    fn act(&mut self, a: &Action) -> Result<(), String> {
        match a {
            Action::Send {
                from,
                segments,
                gets,
                gap,
                nagle,
            } => {
                // A sender with timing (retransmission timer, one segment
                // after a timeout, Nagle): a step the lab's peers would
                // stall on stalls here too.
                let gap = Duration::from_secs_f64(*gap);
                let pieces: Vec<(Duration, &[u8])> = segments
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (if i == 0 { Duration::ZERO } else { gap }, &s[..]))
                    .collect();
                let sender = Sender { nagle: *nagle };
                self.sim
                    .write_timed(side(*from), &pieces, sender, Receiver::Standard)?;
                self.expect(*from, gets, false)
            }
            Action::Tls { from, record } => {
                self.sim.send(side(*from), record, &[]);
                self.expect(*from, record, true)
            }
            Action::Pause(secs) => {
                self.sim.now += Duration::from_secs_f64(*secs);
                Ok(())
            }
            Action::Data(d) => self.data(d),
            Action::Open(_) | Action::Finish => unreachable!("handled by play"),
        }
    }

    /// The receiver of `from`'s stream must have got exactly `want` since
    /// the last step; `raw` bytes are not lines.
    fn expect(&mut self, from: Peer, want: &[u8], raw: bool) -> Result<(), String> {
        // The simulator files received bytes under their sender.
        let got = self.sim.received(side(from));
        let mark = match from {
            Peer::Client => &mut self.server_read,
            Peer::Server => &mut self.client_read,
        };
        let new = &got[mark.seen.min(got.len())..];
        if new != want {
            let who = if from == Peer::Client {
                "server"
            } else {
                "client"
            };
            return Err(format!(
                "the {who} received {:?}, expected {:?}",
                String::from_utf8_lossy(new),
                String::from_utf8_lossy(want)
            ));
        }
        mark.seen = got.len();
        if raw {
            mark.text = got.len();
        }
        Ok(())
    }

    /// Pinholes opened and neither closed nor used.
    fn live(&self) -> Vec<Pinhole> {
        let mut gone: Vec<Pinhole> = self.sim.closed.clone();
        gone.extend_from_slice(&self.consumed);
        let mut live = Vec::new();
        for p in &self.sim.opened {
            match gone.iter().position(|g| g == p) {
                Some(i) => {
                    gone.swap_remove(i);
                }
                None => live.push(*p),
            }
        }
        live
    }

    /// Where a connection to `t` arrives at the gateway: the further NAT of
    /// `nat_override` maps its outer address to the gateway's.
    fn reach(&self, t: SocketAddr) -> SocketAddr {
        match self.nat_override {
            Some(outer) if outer == t.ip() => SocketAddr::new(self.path.client_public, t.port()),
            _ => t,
        }
    }

    /// A data step: the connection's fate, then the refusal counted.
    fn data(&mut self, d: &Data) -> Result<(), String> {
        self.connect(d)?;
        self.check_refusals(d.why.as_deref())
    }

    /// Whether a pinhole lets the data connection of `d` through, as the
    /// step expects.
    fn connect(&mut self, d: &Data) -> Result<(), String> {
        let (told, from) = if d.passive {
            let text = &self.sim.received(Side::Server)[self.client_read.text..];
            (received_passive(text, self.path.server), self.path.client)
        } else {
            let text = &self.sim.received(Side::Client)[self.server_read.text..];
            let lines = received_ports(text);
            let n = lines.len() as i64;
            let i = if d.index < 0 { n + d.index } else { d.index };
            let told = (0..n).contains(&i).then(|| lines[i as usize]).flatten();
            (told, self.path.server_real)
        };
        let listeners: Vec<SocketAddr> = d
            .listen
            .iter()
            .map(|l| match l {
                Listen::Client => self.path.client,
                Listen::Server => self.path.server_real,
                Listen::At(a) => *a,
            })
            .map(|ip| SocketAddr::new(ip, d.port))
            .collect();
        let live = self.live();
        if d.ok {
            let t = told.ok_or("the far side was told no usable address to connect to")?;
            let t = self.reach(t);
            let want: Vec<Pinhole> = listeners
                .iter()
                .map(|&l| Pinhole {
                    src: from,
                    dst: t.ip(),
                    dport: t.port(),
                    dnat: (l != t).then_some(l),
                })
                .collect();
            let p = *live
                .iter()
                .find(|p| want.contains(p))
                .ok_or_else(|| format!("no live pinhole of {want:?}; live: {live:?}"))?;
            self.consumed.push(p);
            self.claimed.push(p.filter_key());
            return Ok(());
        }
        let mut targets: Vec<SocketAddr> = told.into_iter().collect();
        let probe = SocketAddr::new(self.path.client_public, d.port);
        if d.probe && told != Some(probe) {
            targets.push(probe);
        }
        let mut was_closed = false;
        for t in targets {
            let t = self.reach(t);
            let key = (from, t.ip(), t.port());
            if let Some(p) = live.iter().find(|p| p.filter_key() == key) {
                return Err(format!(
                    "a pinhole lets the connection to {t} through: {p:?}"
                ));
            }
            if self.sim.opened.iter().any(|p| p.filter_key() == key) {
                if !d.closed {
                    return Err(format!(
                        "a pinhole for {t} was opened (closed since): nothing may be"
                    ));
                }
                was_closed = true;
                self.claimed.push(key);
            }
        }
        if d.closed && !was_closed {
            return Err(format!(
                "no pinhole was opened (and closed since) for {told:?}"
            ));
        }
        Ok(())
    }

    /// The refusals counted since the last check: exactly one, `why`, or
    /// none.
    fn check_refusals(&mut self, why: Option<&str>) -> Result<(), String> {
        let now: Vec<(Reason, u64)> = self.sim.engine.stats().refusals.iter().collect();
        let new: Vec<String> = now
            .iter()
            .zip(&self.refusals_seen)
            .flat_map(|(&(r, n), &(_, before))| (before..n).map(move |_| format!("{r:?}")))
            .collect();
        self.refusals_seen = now;
        let want: Vec<String> = why.map(str::to_string).into_iter().collect();
        if new != want {
            return Err(format!("refusals counted: {new:?}, expected {want:?}"));
        }
        Ok(())
    }

    /// Closes the session: nothing refused since the last data step, every
    /// pinhole expected by some data step, and every one closed.
    fn finish(mut self) -> Result<(), String> {
        self.check_refusals(None)?;
        self.sim.close();
        for p in &self.sim.opened {
            if !self.claimed.contains(&p.filter_key()) {
                return Err(format!("a pinhole no data step expected was opened: {p:?}"));
            }
            if !self.sim.closed.contains(p) {
                return Err(format!("pinhole {p:?} still open after the session closed"));
            }
        }
        Ok(())
    }
}

/// An action in an error message: who sends what, text shortened.
fn describe(a: &Action) -> String {
    let text = |b: &[u8]| {
        let t = String::from_utf8_lossy(b).escape_debug().to_string();
        if t.chars().count() > 60 {
            format!("{}...", t.chars().take(57).collect::<String>())
        } else {
            t
        }
    };
    match a {
        Action::Send { from, segments, .. } => {
            let segs: Vec<String> = segments.iter().map(|s| text(s)).collect();
            format!("{from:?} sends '{}'", segs.join("' | '"))
        }
        Action::Tls { from, record } => {
            format!("{from:?} sends a TLS record of {} bytes", record.len())
        }
        other => format!("{other:?}"),
    }
}
