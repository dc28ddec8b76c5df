//! Timers: when sessions and pinholes expire, and when the engine next
//! needs [`Engine::poll`].

use std::net::SocketAddr;
use std::time::Instant;

use tracing::{debug, info};

use super::flow::Flow;
use super::pinholes::{dnat_key, CloseWhy};
use super::{Closing, Engine, EngineConfig};

impl Engine {
    /// Lowers the next timer to `at` if that is earlier.
    pub(super) fn schedule(&mut self, at: Instant) {
        self.next_poll = Some(self.next_poll.map_or(at, |t| t.min(at)));
    }

    /// When [`Engine::poll`] is next due: the earliest expiry of a session
    /// or a pinhole, or `None` while nothing is tracked. Calling `poll`
    /// earlier is harmless, later only delays expiry. Cheap: a stored value.
    pub fn poll_at(&self) -> Option<Instant> {
        self.next_poll
    }

    /// Expires idle and closed sessions and forgets expired pinholes.
    /// Returns the pinholes and the FTPS ranges to remove.
    pub fn poll(&mut self, now: Instant) -> Closing {
        let mut close = Closing::default();
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
                self.release_all(flow, CloseWhy::SessionForgotten, &mut close);
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
}

impl Flow {
    /// When this session next needs [`Engine::poll`]: its own expiry or
    /// its first pinhole's, whichever comes first.
    pub(super) fn deadline(&self, cfg: &EngineConfig) -> Instant {
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
}
