//! Keeping ftp-alg's rules in place while it runs: a firewall reload
//! (`iptables-restore`, `nft -f` of a file that starts with `flush
//! ruleset`) takes them away without telling anyone, and every data
//! connection then fails. The housekeeper checks the live ruleset soon
//! after nf_tables events (see [`crate::kernel::nft_events`]) and on a slow
//! safety timer, and puts back what is missing, live pinholes included.

use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::housekeeping::Housekeeper;
use crate::config::Config;
use crate::rules::Installed;

/// Quiet time after an event before the check: a reload is a burst of
/// events, and one check after it is enough.
pub(crate) const DEBOUNCE: Duration = Duration::from_millis(100);

/// Longest delay from the first event of a burst to the check, however
/// long the burst goes on (the repair is due within a second).
pub(crate) const MAX_DELAY: Duration = Duration::from_millis(400);

/// Checks without an event, in case events were lost or the event socket
/// could not be opened.
pub(crate) const SAFETY_INTERVAL: Duration = Duration::from_secs(30);

/// When the next check is due: [`DEBOUNCE`] after the last event of a
/// burst, at most [`MAX_DELAY`] after its first, else
/// [`SAFETY_INTERVAL`] after the last check. Pure.
#[derive(Debug)]
pub(crate) struct CheckTimer {
    burst_start: Option<Instant>,
    due: Option<Instant>,
    next_safety: Instant,
}

impl CheckTimer {
    pub(crate) fn new(now: Instant) -> Self {
        CheckTimer {
            burst_start: None,
            due: None,
            next_safety: now + SAFETY_INTERVAL,
        }
    }

    /// An event that may have removed something arrived at `now`.
    pub(crate) fn changed(&mut self, now: Instant) {
        let start = *self.burst_start.get_or_insert(now);
        self.due = Some((now + DEBOUNCE).min(start + MAX_DELAY));
    }

    /// When the next check is due.
    pub(crate) fn next(&self) -> Instant {
        self.due
            .map_or(self.next_safety, |d| d.min(self.next_safety))
    }

    /// True when a check is due at `now`; the timer then starts over.
    pub(crate) fn take_due(&mut self, now: Instant) -> bool {
        if now < self.next() {
            return false;
        }
        self.burst_start = None;
        self.due = None;
        self.next_safety = now + SAFETY_INTERVAL;
        true
    }
}

/// The repair: what was installed, and when to check it next. Lives on
/// the housekeeper's thread for as long as the daemon serves.
pub struct RuleRepair<'a> {
    installed: &'a mut Installed,
    cfg: &'a Config,
    timer: CheckTimer,
}

impl<'a> RuleRepair<'a> {
    /// Watches `installed`, put in place from `cfg`, from now on.
    pub fn new(installed: &'a mut Installed, cfg: &'a Config) -> Self {
        RuleRepair {
            installed,
            cfg,
            timer: CheckTimer::new(Instant::now()),
        }
    }

    /// An nf_tables event that may have removed something arrived.
    pub(crate) fn changed(&mut self, now: Instant) {
        self.timer.changed(now);
    }

    /// When [`RuleRepair::run_if_due`] next has work.
    pub(crate) fn next_check(&self) -> Instant {
        self.timer.next()
    }

    /// Checks the ruleset when due and puts back what is missing: one
    /// WARN line per repair naming each piece, counted by kind; the live
    /// pinholes are added again when the table was. What cannot be put back
    /// (the admin's chain for the accept rule is gone too) is a WARN and is
    /// tried again at the next event.
    pub(crate) fn run_if_due(&mut self, now: Instant, housekeeper: &mut Housekeeper) {
        if !self.timer.take_due(now) {
            return;
        }
        let started = Instant::now();
        let report = match self.installed.repair(self.cfg) {
            Ok(report) => {
                debug!(
                    ms = started.elapsed().as_millis() as u64,
                    repaired = report.repaired.len(),
                    "checked ftp-alg's rules"
                );
                report
            }
            Err(e) => {
                warn!(error = %e, "cannot check whether ftp-alg's rules are still in place");
                return;
            }
        };
        if !report.repaired.is_empty() {
            let (pinholes, ranges) = if report.table_reloaded {
                housekeeper.restore_pinholes(Instant::now())
            } else {
                (0, 0)
            };
            housekeeper.count_repairs(report.repaired.iter().map(|m| m.kind()));
            let repaired: Vec<String> = report.repaired.iter().map(ToString::to_string).collect();
            warn!(
                repaired = %repaired.join(", "),
                pinholes,
                ranges,
                "firewall rules of ftp-alg were removed (a firewall reload?); repaired"
            );
        }
        for (missing, e) in &report.failed {
            warn!(%missing, error = %e, "cannot repair ftp-alg's rules; trying again at the next ruleset change");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_is_checked_once_after_it_ends() {
        let t0 = Instant::now();
        let mut timer = CheckTimer::new(t0);
        assert_eq!(timer.next(), t0 + SAFETY_INTERVAL);
        timer.changed(t0);
        timer.changed(t0 + 50 * MS);
        assert_eq!(timer.next(), t0 + 150 * MS);
        assert!(!timer.take_due(t0 + 149 * MS));
        assert!(timer.take_due(t0 + 150 * MS));
        // Checked: nothing more until the next event or the safety check.
        assert!(!timer.take_due(t0 + 151 * MS));
        assert_eq!(timer.next(), t0 + 150 * MS + SAFETY_INTERVAL);
    }

    #[test]
    fn an_endless_burst_is_checked_within_max_delay() {
        let t0 = Instant::now();
        let mut timer = CheckTimer::new(t0);
        let mut checked_at = None;
        for i in 0..100u32 {
            let now = t0 + i * 20 * MS;
            timer.changed(now);
            if timer.take_due(now) {
                checked_at = Some(now);
                break;
            }
        }
        assert_eq!(checked_at, Some(t0 + MAX_DELAY));
    }

    #[test]
    fn without_events_the_safety_check_comes() {
        let t0 = Instant::now();
        let mut timer = CheckTimer::new(t0);
        assert!(!timer.take_due(t0 + SAFETY_INTERVAL - MS));
        assert!(timer.take_due(t0 + SAFETY_INTERVAL));
        assert_eq!(timer.next(), t0 + 2 * SAFETY_INTERVAL);
    }
}
