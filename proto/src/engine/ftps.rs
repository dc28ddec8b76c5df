//! When an encrypted session gets its range of data ports, and when it
//! gives it back.
//!
//! The range opens when the session turns to TLS: with the `234` that
//! answers `AUTH TLS`/`AUTH SSL` (RFC 4217 §4; the range is installed
//! before that reply is released, so before the client can send `PASV`
//! under TLS), or, on an implicit-TLS port, with the client's first packet
//! after the handshake whose NAT mapping is known (before any TLS byte,
//! since the client cannot send its ClientHello before its ACK).
//!
//! It lives exactly as long as the session is encrypted: it closes on
//! both FINs or an RST, when the session is forgotten (idle timeout,
//! replaced by a new SYN), on an accepted `REIN`/`QUIT` seen in cleartext,
//! and when the session is back in cleartext after `CCC` (RFC 4217 §6):
//! from then on `227`/`229` are read again and each data connection gets
//! its exact pinhole, so the wider range would admit more than the
//! protocol negotiated. A `REIN` sent under TLS cannot be seen; the range
//! then stays until the control connection ends.

use std::time::Instant;

use tracing::{debug, info, warn};

use crate::event::Event as Reported;
use crate::ftps::entry_for;
use crate::pinhole::RangePinhole;
use crate::reason::Reason;

use super::flow::{Dir, Flow, Shared};
use super::pinholes::CloseWhy;
use super::ranges::Acquired;
use super::{Decision, RangeOpening};

impl Flow {
    /// The session is encrypted from now on: opens its range when its
    /// server (by its real address) matches an `[[ftps]]` entry.
    pub(super) fn open_range(
        &mut self,
        now: Instant,
        shared: &mut Shared<'_>,
        decision: &mut Decision,
    ) {
        self.range_pending = false;
        if self.range.is_some() {
            return;
        }
        if shared.cfg.ftps.is_empty() {
            debug!(client = %self.client, "control session is encrypted; no [[ftps]] configured, nothing opened");
            return;
        }
        let client = self.client;
        let (Some(nat), Some(server)) = (self.nat, self.server_public) else {
            shared.stats.refusals.add(Reason::NatUnknown);
            warn!(%client, reason = %Reason::NatUnknown, "FTPS range refused; nothing opened");
            decision.events.push(Reported::Refusal {
                form: None,
                reason: Reason::NatUnknown,
            });
            return;
        };
        let real = nat.server_real.ip();
        let Some((entry, ftps)) = entry_for(&shared.cfg.ftps, real) else {
            debug!(%client, %server, server_real = %real,
                   "control session is encrypted; its server matches no [[ftps]] entry, nothing opened");
            return;
        };
        let range = RangePinhole {
            src: client.ip(),
            dst: server.ip(),
            low: ftps.passive_ports.low,
            high: ftps.passive_ports.high,
            dnat: (real != server.ip()).then_some(real),
        };
        let opening = RangeOpening {
            range,
            lifetime: shared.cfg.idle_timeout,
        };
        let shared_range = match shared.ranges.acquire(range, now) {
            Acquired::New => {
                shared.stats.ranges_opened += 1;
                decision.open_ranges.push(opening);
                false
            }
            Acquired::Shared => true,
            Acquired::Conflict(other) => {
                shared.stats.refusals.add(Reason::RangeConflict);
                warn!(%client, %range, live = %other, ftps_entry = entry, reason = %Reason::RangeConflict,
                      "FTPS range refused; nothing opened");
                decision.events.push(Reported::Refusal {
                    form: None,
                    reason: Reason::RangeConflict,
                });
                return;
            }
        };
        shared.stats.ftps_sessions += 1;
        info!(%client, %range, ftps_entry = entry, ftps_server = %ftps.server, shared = shared_range,
              "FTPS range opened for the session");
        self.range = Some((entry, range));
        decision.events.push(Reported::FtpsRange {
            entry,
            opening,
            shared: shared_range,
        });
    }

    /// Gives the session's range back; `decision` gets the element to
    /// remove when no other session holds it.
    pub(super) fn close_range(
        &mut self,
        why: CloseWhy,
        shared: &mut Shared<'_>,
    ) -> Option<RangePinhole> {
        let (entry, range) = self.range.take()?;
        let removed = shared.ranges.release(&range);
        shared.stats.ranges_closed += u64::from(removed);
        info!(client = %self.client, %range, ftps_entry = entry, %why, removed, "FTPS range closed for the session");
        removed.then_some(range)
    }

    /// Per packet of a session that holds a range or waits for one: the
    /// implicit-TLS range opens with the client's first packet whose NAT
    /// mapping is known, the range closes once the session is cleartext
    /// again (after `CCC`), and a live one is refreshed before its element
    /// timeout could run out.
    pub(super) fn tend_range(
        &mut self,
        now: Instant,
        dir: Dir,
        shared: &mut Shared<'_>,
        decision: &mut Decision,
    ) {
        if self.range_pending && dir == Dir::ToServer && self.nat.is_some() {
            self.open_range(now, shared, decision);
            return;
        }
        let Some((entry, range)) = self.range else {
            return;
        };
        if self.control.is_parsing() {
            if let Some(gone) = self.close_range(CloseWhy::Cleartext, shared) {
                decision.close_ranges.push(gone);
            }
            decision.events.push(Reported::FtpsRangeClosed {
                range,
                removed: decision.close_ranges.contains(&range),
            });
            return;
        }
        let lifetime = shared.cfg.idle_timeout;
        if self.closed_at.is_none() && shared.ranges.refresh_due(&range, now, lifetime) {
            debug!(client = %self.client, %range, ftps_entry = entry, "FTPS range refreshed");
            decision.open_ranges.push(RangeOpening { range, lifetime });
        }
    }

    /// [`Flow::close_range`] for a session that ends, with its event.
    pub(super) fn end_range(
        &mut self,
        why: CloseWhy,
        shared: &mut Shared<'_>,
        decision: &mut Decision,
    ) {
        let Some((_, range)) = self.range else {
            return;
        };
        let gone = self.close_range(why, shared);
        decision.close_ranges.extend(gone);
        decision.events.push(Reported::FtpsRangeClosed {
            range,
            removed: gone.is_some(),
        });
    }
}
