//! The pinholes a session keeps open, and the DNAT-in-use bookkeeping
//! that keeps two pinholes from claiming one public port.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use tracing::info;

use crate::event::Event as Reported;
use crate::ftp::session::Form;
use crate::pinhole::Pinhole;

use super::flow::{Flow, Shared};
use super::{Decision, Opening};

/// A pinhole this session opened and that may still be live.
#[derive(Debug)]
pub(super) struct LivePinhole {
    pub(super) pinhole: Pinhole,
    pub(super) form: Form,
    pub(super) expires: Instant,
}

/// Why ftp-alg closes a pinhole (logged with it; the counters only tell
/// closed from expired).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CloseWhy {
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
    /// An FTPS session's range: the session is cleartext again (`CCC`),
    /// so its announcements are read and pinholed exactly.
    Cleartext,
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
            CloseWhy::Cleartext => "control session is cleartext again (CCC)",
        })
    }
}
pub(super) fn dnat_key(p: &Pinhole) -> Option<(IpAddr, IpAddr, u16)> {
    p.dnat.map(|_| (p.src, p.dst, p.dport))
}

impl Flow {
    pub(super) fn add_pinhole(
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

    pub(super) fn close_pinholes(
        &mut self,
        why: CloseWhy,
        shared: &mut Shared<'_>,
    ) -> Vec<Pinhole> {
        let client = self.client;
        self.pinholes
            .drain(..)
            .map(|live| {
                release(client, &live.pinhole, why, shared);
                live.pinhole
            })
            .collect()
    }
}
/// Forgets a pinhole that ftp-alg closes, and says why.
pub(super) fn release(client: SocketAddr, p: &Pinhole, why: CloseWhy, shared: &mut Shared<'_>) {
    if let Some(k) = dnat_key(p) {
        shared.dnat_in_use.remove(&k);
    }
    shared.stats.pinholes_closed += 1;
    info!(%client, pinhole = %p, %why, "pinhole closed");
}
