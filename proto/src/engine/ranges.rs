//! The live FTPS ranges of all sessions, reference-counted: two sessions
//! of one client to one server hold the same range, which is one kernel
//! element; it goes only when the last of them ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::pinhole::RangePinhole;

use super::RangeOpening;

/// One live range: how many sessions hold it, and when its element was
/// last (re)installed.
#[derive(Debug)]
struct Use {
    range: RangePinhole,
    sessions: u32,
    installed: Instant,
}

/// What [`Ranges::acquire`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Acquired {
    /// A new element: install it.
    New,
    /// Another session holds the same range: nothing to install.
    Shared,
    /// A different live range of the same client and server overlaps it.
    Conflict(RangePinhole),
}

/// Live ranges, grouped by (client, server): a pair has one range, rarely
/// more (servers behind one public address with disjoint passive ranges).
#[derive(Debug, Default)]
pub(super) struct Ranges {
    by_pair: HashMap<(IpAddr, IpAddr), Vec<Use>>,
}

impl Ranges {
    /// One more session holds `range`.
    pub(super) fn acquire(&mut self, range: RangePinhole, now: Instant) -> Acquired {
        let uses = self.by_pair.entry((range.src, range.dst)).or_default();
        if let Some(u) = uses.iter_mut().find(|u| u.range == range) {
            u.sessions += 1;
            return Acquired::Shared;
        }
        if let Some(u) = uses.iter().find(|u| u.range.overlaps(&range)) {
            return Acquired::Conflict(u.range);
        }
        uses.push(Use {
            range,
            sessions: 1,
            installed: now,
        });
        Acquired::New
    }

    /// One session less holds `range`; true when it was the last (the
    /// element goes).
    pub(super) fn release(&mut self, range: &RangePinhole) -> bool {
        let key = (range.src, range.dst);
        let Some(uses) = self.by_pair.get_mut(&key) else {
            return false;
        };
        let Some(i) = uses.iter().position(|u| u.range == *range) else {
            return false;
        };
        uses[i].sessions -= 1;
        if uses[i].sessions > 0 {
            return false;
        }
        uses.swap_remove(i);
        if uses.is_empty() {
            self.by_pair.remove(&key);
        }
        true
    }

    /// True (and the element counts as installed now) when more than half
    /// of `lifetime` went by since `range` was installed: a session that
    /// is still alive asks for its element again, so the safety-net
    /// timeout never runs out under a live session that sends packets.
    pub(super) fn refresh_due(
        &mut self,
        range: &RangePinhole,
        now: Instant,
        lifetime: Duration,
    ) -> bool {
        let Some(u) = self
            .by_pair
            .get_mut(&(range.src, range.dst))
            .and_then(|uses| uses.iter_mut().find(|u| u.range == *range))
        else {
            return false;
        };
        if now.saturating_duration_since(u.installed) * 2 <= lifetime {
            return false;
        }
        u.installed = now;
        true
    }

    /// Every live range with the element timeout it has left at `now`
    /// (what a reload repair installs again); ranges whose element ran out
    /// get a whole `lifetime` again, since their sessions still live.
    pub(super) fn live(&self, now: Instant, lifetime: Duration) -> Vec<RangeOpening> {
        self.by_pair
            .values()
            .flatten()
            .map(|u| {
                let left = (u.installed + lifetime).saturating_duration_since(now);
                RangeOpening {
                    range: u.range,
                    lifetime: if left.is_zero() { lifetime } else { left },
                }
            })
            .collect()
    }

    /// Number of live range elements.
    pub(super) fn len(&self) -> usize {
        self.by_pair.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests are the core's caller: they own the clock.
    #[allow(clippy::disallowed_methods)]
    fn t0() -> Instant {
        Instant::now()
    }

    fn range(low: u16, high: u16, dnat: Option<&str>) -> RangePinhole {
        RangePinhole {
            src: "198.51.100.2".parse().unwrap(),
            dst: "203.0.113.1".parse().unwrap(),
            low,
            high,
            dnat: dnat.map(|d| d.parse().unwrap()),
        }
    }

    #[test]
    fn the_last_release_removes_a_shared_range() {
        let now = t0();
        let mut t = Ranges::default();
        let r = range(50000, 50100, None);
        assert_eq!(t.acquire(r, now), Acquired::New);
        assert_eq!(t.acquire(r, now), Acquired::Shared);
        assert_eq!(t.len(), 1);
        assert!(!t.release(&r));
        assert_eq!(t.len(), 1);
        assert!(t.release(&r));
        assert_eq!(t.len(), 0);
        assert!(!t.release(&r), "nothing left to release");
    }

    #[test]
    fn overlapping_ranges_of_one_pair_conflict_disjoint_ones_do_not() {
        let now = t0();
        let mut t = Ranges::default();
        let a = range(50000, 50100, Some("192.0.2.10"));
        assert_eq!(t.acquire(a, now), Acquired::New);
        let b = range(50000, 50100, Some("192.0.2.11"));
        assert_eq!(t.acquire(b, now), Acquired::Conflict(a));
        let c = range(50101, 50200, Some("192.0.2.11"));
        assert_eq!(t.acquire(c, now), Acquired::New);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn refresh_is_due_after_half_the_lifetime_once() {
        let now = t0();
        let life = Duration::from_secs(100);
        let mut t = Ranges::default();
        let r = range(50000, 50100, None);
        t.acquire(r, now);
        assert!(!t.refresh_due(&r, now + Duration::from_secs(50), life));
        assert!(t.refresh_due(&r, now + Duration::from_secs(51), life));
        assert!(!t.refresh_due(&r, now + Duration::from_secs(52), life));
        let live = t.live(now + Duration::from_secs(61), life);
        assert_eq!(live[0].lifetime, Duration::from_secs(90));
        let late = t.live(now + Duration::from_secs(500), life);
        assert_eq!(late[0].lifetime, life);
    }
}
