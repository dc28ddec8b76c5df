//! What the gateway's firewall would do with the pinholes, judged from
//! the capture itself.
//!
//! ftp-alg's pinhole chain admits the first packet of one connection per
//! pinhole and deletes the element (single use); an element nobody used
//! times out after its lifetime; the core closes the others early. The
//! capture shows the data connections' first packets (SYN without ACK),
//! so replay can tell which pinhole each one used, which pinholes expired
//! unused, and which connection attempt between a session's two hosts no
//! pinhole admitted: the admin's "why was this transfer blocked?". An FTPS
//! session's range admits every connection of its client to its ports
//! while it is open (it is never consumed).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ftp_alg_proto::pinhole::{Pinhole, RangePinhole};

use super::feed::{Record, What};

/// A pinhole the firewall would hold.
struct Live {
    session: SocketAddr,
    pinhole: Pinhole,
    expires: Duration,
}

/// The firewall's pinholes during a replay.
#[derive(Default)]
pub struct Firewall {
    live: Vec<Live>,
    /// Pinholes already used: later copies of their SYN (the leaving copy
    /// on a gateway, after NAT) or its retransmissions are not new.
    used: Vec<Pinhole>,
    /// Each session's addresses on the client's side and the server's
    /// (own and translated), to recognise its data connections.
    hosts: HashMap<SocketAddr, (Vec<IpAddr>, Vec<IpAddr>)>,
    /// Blocked attempts already reported (retransmitted SYNs are not).
    blocked: HashSet<(SocketAddr, SocketAddr)>,
    /// Open FTPS ranges, each with the session that opened its element.
    ranges: Vec<(SocketAddr, RangePinhole)>,
    /// Connections through a range already reported, by range and port.
    through_range: HashSet<(RangePinhole, u16)>,
}

/// True when the connection attempt `src -> dst` is one `r` admits, as it
/// reaches the gateway or after the range's DNAT.
fn range_admits(r: &RangePinhole, src: SocketAddr, dst: SocketAddr) -> bool {
    r.src == src.ip() && (r.dst == dst.ip() || r.dnat == Some(dst.ip())) && r.contains(dst.port())
}

/// True when the connection attempt `src -> dst` is the one `p` admits:
/// as it reaches the gateway (before DNAT) or, seen behind the gateway,
/// after it.
fn admits(p: &Pinhole, src: SocketAddr, dst: SocketAddr) -> bool {
    p.src == src.ip() && leads_to(p, dst)
}

/// The pinhole's destination, before or after its DNAT (the source of a
/// leaving copy may have been translated).
fn leads_to(p: &Pinhole, dst: SocketAddr) -> bool {
    (p.dst, p.dport) == (dst.ip(), dst.port()) || p.dnat == Some(dst)
}

impl Firewall {
    /// Notes addresses of `session`'s two ends.
    pub fn hosts(&mut self, session: SocketAddr, client: &[IpAddr], server: &[IpAddr]) {
        let entry = self.hosts.entry(session).or_default();
        entry.0.extend_from_slice(client);
        entry.1.extend_from_slice(server);
    }

    /// A pinhole installed at `now`, for `lifetime`.
    pub fn open(&mut self, session: SocketAddr, pinhole: Pinhole, expires: Duration) {
        self.live.push(Live {
            session,
            pinhole,
            expires,
        });
    }

    /// An FTPS range installed for `session` (a shared one once).
    pub fn open_range(&mut self, session: SocketAddr, range: RangePinhole) {
        if !self.ranges.iter().any(|(_, r)| *r == range) {
            self.ranges.push((session, range));
        }
    }

    /// An FTPS range removed (its last session ended).
    pub fn close_range(&mut self, range: &RangePinhole) {
        self.ranges.retain(|(_, r)| r != range);
    }

    /// Reports and forgets the pinholes whose lifetime ended by `clock`.
    pub fn expire(&mut self, clock: Duration, records: &mut Vec<Record>) {
        self.live.retain(|l| {
            let gone = l.expires <= clock;
            if gone {
                records.push(Record {
                    time: l.expires,
                    session: l.session,
                    what: What::PinholeExpired(l.pinhole),
                });
            }
            !gone
        });
    }

    /// Reports a pinhole the core closed, unless a connection used it.
    pub fn close(&mut self, p: Pinhole, clock: Duration, records: &mut Vec<Record>) {
        if let Some(i) = self.live.iter().position(|l| l.pinhole == p) {
            let l = self.live.remove(i);
            records.push(Record {
                time: clock,
                session: l.session,
                what: What::PinholeClosed(p),
            });
        }
    }

    /// A connection attempt (SYN without ACK) `src -> dst` seen at `clock`.
    pub fn attempt(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        clock: Duration,
        records: &mut Vec<Record>,
    ) {
        if let Some(i) = self.live.iter().position(|l| admits(&l.pinhole, src, dst)) {
            let l = self.live.remove(i);
            self.used.push(l.pinhole);
            records.push(Record {
                time: clock,
                session: l.session,
                what: What::DataConnection {
                    pinhole: l.pinhole,
                    from: src,
                },
            });
            return;
        }
        if self.used.iter().any(|p| leads_to(p, dst)) {
            return;
        }
        // A copy of a connection already seen through a range (the
        // leaving copy, after NAT, or a retransmission): not new.
        let reaches = |r: &RangePinhole| {
            (r.dst == dst.ip() || r.dnat == Some(dst.ip())) && r.contains(dst.port())
        };
        if self
            .ranges
            .iter()
            .any(|(_, r)| reaches(r) && self.through_range.contains(&(*r, dst.port())))
        {
            return;
        }
        if let Some((session, range)) = self
            .ranges
            .iter()
            .find(|(_, r)| range_admits(r, src, dst))
            .copied()
        {
            self.through_range.insert((range, dst.port()));
            records.push(Record {
                time: clock,
                session,
                what: What::RangeConnection {
                    range,
                    from: src,
                    to: dst,
                },
            });
            return;
        }
        let between = |(c, s): &(Vec<IpAddr>, Vec<IpAddr>)| {
            (c.contains(&src.ip()) && s.contains(&dst.ip()))
                || (s.contains(&src.ip()) && c.contains(&dst.ip()))
        };
        let session = self.hosts.iter().find(|(_, h)| between(h)).map(|(s, _)| *s);
        if let Some(session) = session {
            if self.blocked.insert((src, dst)) {
                records.push(Record {
                    time: clock,
                    session,
                    what: What::Blocked { from: src, to: dst },
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_range_admits_its_client_repeatedly_until_it_closes() {
        let session = sa("198.51.100.2:40000");
        let mut fw = Firewall::default();
        fw.hosts(
            session,
            &["198.51.100.2".parse().unwrap()],
            &[
                "203.0.113.1".parse().unwrap(),
                "192.0.2.10".parse().unwrap(),
            ],
        );
        let range = RangePinhole {
            src: "198.51.100.2".parse().unwrap(),
            dst: "203.0.113.1".parse().unwrap(),
            low: 50000,
            high: 50100,
            dnat: Some("192.0.2.10".parse().unwrap()),
        };
        fw.open_range(session, range);
        let mut records = Vec::new();
        let client = sa("198.51.100.2:41000");
        fw.attempt(
            client,
            sa("203.0.113.1:50000"),
            Duration::ZERO,
            &mut records,
        );
        // The copy behind the gateway, after the DNAT: the same connection.
        fw.attempt(client, sa("192.0.2.10:50000"), Duration::ZERO, &mut records);
        fw.attempt(
            sa("198.51.100.2:41001"),
            sa("203.0.113.1:50100"),
            Duration::ZERO,
            &mut records,
        );
        fw.attempt(
            sa("198.51.100.2:41002"),
            sa("203.0.113.1:50101"),
            Duration::ZERO,
            &mut records,
        );
        fw.close_range(&range);
        fw.attempt(
            sa("198.51.100.2:41003"),
            sa("203.0.113.1:50000"),
            Duration::ZERO,
            &mut records,
        );
        let kinds: Vec<&str> = records
            .iter()
            .map(|r| match &r.what {
                What::RangeConnection { .. } => "range",
                What::Blocked { .. } => "blocked",
                _ => "other",
            })
            .collect();
        // The copy after the DNAT is the same connection; the port above
        // the range and the attempt after the close are blocked.
        assert_eq!(kinds, ["range", "range", "blocked", "blocked"]);
    }
}
