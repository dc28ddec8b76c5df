//! What a control line means for the session and its pinholes: an
//! announcement is planned, rewritten and opened, or refused.

use std::net::IpAddr;
use std::time::Instant;

use tracing::{debug, info, warn};

use crate::event::Event as Reported;
use crate::ftp::held::MAX_ANNOUNCEMENT;
use crate::ftp::plan::{plan, Endpoints};
use crate::ftp::session::{Event, Form};
use crate::ftp::tls::TlsRecords;
use crate::pinhole::Pinhole;
use crate::reason::Reason;
use crate::seq::{Edit, SeqNum};

use super::flow::{Dir, Flow, Shared};
use super::pinholes::{dnat_key, release, CloseWhy};
use super::Decision;

impl Flow {
    /// Parses one complete line at `at`. `rewritable`: false when its start
    /// already went out untouched (a hold released after its limit).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_line(
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
    pub(super) fn on_event(
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
                // In this packet's decision: installed before the 234 is
                // released, so before the client can send PASV under TLS.
                self.open_range(now, shared, decision);
            }
            Some(Event::Reset) => {
                let closed = self.close_pinholes(CloseWhy::SessionReset, shared);
                debug!(%client, pinholes = closed.len(), "REIN/QUIT accepted; pinholes closed");
                decision.close.extend(closed);
                self.end_range(CloseWhy::SessionReset, shared, decision);
            }
        }
    }

    pub(super) fn endpoints(&self, announced: &[(IpAddr, IpAddr)]) -> Option<Endpoints> {
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
}
