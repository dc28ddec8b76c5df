//! The housekeeper: the engine's timers, the addresses of
//! `[[nat_override]]` interfaces, telemetry, and reloads, on a thread of
//! their own so that every queue worker only handles packets.

use std::io;
use std::time::{Duration, Instant};

use ftp_alg_proto::engine::EngineConfig;
use tracing::warn;

use super::core::{lock, SharedCore};
use crate::config::NatOverride;
use crate::kernel::nft::NftPinholes;
use crate::telemetry;

/// How often telemetry is published and interface addresses are read
/// again; also the longest wait for a status request's answer.
pub(crate) const TICK: Duration = Duration::from_secs(1);

/// Runs what is not per packet, on the shared engine.
pub struct Housekeeper {
    core: SharedCore,
    pinholes: NftPinholes,
    published: telemetry::Shared,
}

impl Housekeeper {
    pub(crate) fn open(
        core: SharedCore,
        table: &str,
        published: telemetry::Shared,
    ) -> io::Result<Self> {
        Ok(Housekeeper {
            core,
            pinholes: NftPinholes::open(table)?,
            published,
        })
    }

    /// Replaces the engine's settings (SIGHUP); sessions are kept.
    pub fn reconfigure(&self, cfg: EngineConfig) {
        lock(&self.core).engine.set_config(cfg);
    }

    /// Sets the `[[nat_override]]` tables (at start and on SIGHUP). The
    /// interfaces' addresses are read now and again at every tick.
    pub fn set_nat_overrides(&self, overrides: Vec<NatOverride>) {
        lock(&self.core).nat_overrides = overrides;
        self.refresh_announced_addresses();
    }

    /// How long to wait before the next [`Housekeeper::tick`]: until the
    /// engine's next timer, at most [`TICK`].
    pub(crate) fn wait(&self, now: Instant) -> Duration {
        let due = lock(&self.core).engine.poll_at();
        due.map_or(TICK, |at| at.saturating_duration_since(now).min(TICK))
    }

    /// Runs the engine's timers when due, and once per [`TICK`] refreshes
    /// addresses and publishes; answers a pending status request.
    pub(crate) fn tick(&mut self, now: Instant, publish: bool) {
        let due = lock(&self.core)
            .engine
            .poll_at()
            .is_some_and(|at| at <= now);
        if due {
            let expired = lock(&self.core).engine.poll(now);
            for p in expired.pinholes {
                if let Err(e) = self.pinholes.remove(&p) {
                    lock(&self.core).stats.pinhole_errors += 1;
                    warn!(pinhole = %p, error = %e, "cannot remove pinhole (it expires by itself)");
                }
            }
            if let Err(e) = self.pinholes.remove_ranges(&expired.ranges) {
                lock(&self.core).stats.pinhole_errors += 1;
                warn!(ranges = expired.ranges.len(), error = %e,
                      "cannot remove FTPS ranges (they expire by their element timeout)");
            }
        }
        if publish {
            self.refresh_announced_addresses();
            self.publish();
        }
        self.answer_status(now);
    }

    /// Adds every live pinhole again, with the lifetime it has left, and
    /// every live FTPS range: after a firewall reload deleted ftp-alg's
    /// table, its sets are empty while the data connections announced
    /// before are still to come, and the encrypted sessions still live.
    /// Returns how many pinholes and ranges were added; failures are
    /// counted and logged.
    pub(crate) fn restore_pinholes(&mut self, now: Instant) -> (usize, usize) {
        let (live, ranges) = {
            let core = lock(&self.core);
            (core.engine.live_pinholes(now), core.engine.live_ranges(now))
        };
        let mut added = 0;
        for open in &live {
            match self.pinholes.add(&open.pinhole, open.lifetime) {
                Ok(()) => added += 1,
                Err(e) => {
                    lock(&self.core).stats.pinhole_errors += 1;
                    warn!(pinhole = %open.pinhole, error = %e, "cannot re-install pinhole");
                }
            }
        }
        let mut ranges_added = 0;
        for open in &ranges {
            match self.pinholes.add_range(&open.range, open.lifetime) {
                Ok(()) => ranges_added += 1,
                Err(e) => {
                    lock(&self.core).stats.pinhole_errors += 1;
                    warn!(range = %open.range, error = %e, "cannot re-install FTPS range");
                }
            }
        }
        (added, ranges_added)
    }

    /// Counts repaired pieces of the rules, by kind.
    pub(crate) fn count_repairs<'a>(&self, kinds: impl IntoIterator<Item = &'a str>) {
        let mut core = lock(&self.core);
        for kind in kinds {
            core.stats.rule_repairs.count(kind);
        }
    }

    fn refresh_announced_addresses(&self) {
        let overrides = lock(&self.core).nat_overrides.clone();
        if overrides.is_empty() {
            return;
        }
        // Read outside the lock: the workers need the engine.
        match crate::kernel::nat_override::announced_addresses(&overrides) {
            Ok(table) => lock(&self.core).engine.set_announced_addresses(table),
            // Keep the last table: a failed read says nothing about the
            // addresses having changed.
            Err(e) => warn!(error = %e, "cannot read interface addresses for nat_override"),
        }
    }

    /// Publishes counters and gauges for the metrics endpoint and the
    /// status socket (readers never touch the engine). The list of
    /// sessions is not part of it: see [`Housekeeper::answer_status`].
    pub(crate) fn publish(&self) {
        let snapshot = {
            let core = lock(&self.core);
            telemetry::Published {
                engine: core.engine.stats().clone(),
                shell: core.stats.clone(),
                sessions: core.engine.session_count(),
                pinholes: core.engine.pinhole_count(),
                ranges: core.engine.range_count(),
            }
        };
        self.published.publish(snapshot);
    }

    /// Lists the sessions when `ftp-alg status` asks: the list takes time
    /// in proportion to the sessions, too much to build every second for
    /// nobody (15 ms at 100,000 sessions, while packets wait).
    fn answer_status(&self, now: Instant) {
        if self.published.sessions_wanted() {
            let list = lock(&self.core).engine.snapshot(now);
            self.published.answer_sessions(list);
        }
    }
}
