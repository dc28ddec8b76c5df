//! Pinholes: the exact data connections that the firewall may let through.
//!
//! A pinhole is pure data. The engine decides which pinholes to open and
//! close; the daemon's nftables backend (`ftp_alg::kernel::nft`) turns them into set and map
//! elements of ftp-alg's own table (see `ftp_alg::rules`).

use std::net::{IpAddr, SocketAddr};

/// One announced data connection: the initiator `src` may open one TCP
/// connection to `dst`:`dport`. When the gateway translates the listening
/// side, `dnat` names the real listener and `dst`:`dport` is the address the
/// initiator was told (the public one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pinhole {
    /// Address the data connection comes from (before any translation).
    pub src: IpAddr,
    /// Address the data connection is sent to, as announced on the wire.
    pub dst: IpAddr,
    /// Port the data connection is sent to, as announced on the wire.
    pub dport: u16,
    /// Real listener behind the gateway, when `dst`:`dport` is translated.
    pub dnat: Option<SocketAddr>,
}

impl Pinhole {
    /// The (source, destination, port) that the first packet of the data
    /// connection carries when it reaches the gateway: what the pinhole
    /// chain matches, at NAT prerouting, before any DNAT.
    pub fn filter_key(&self) -> (IpAddr, IpAddr, u16) {
        (self.src, self.dst, self.dport)
    }

    /// True when every address of the pinhole is IPv4.
    pub fn is_ipv4(&self) -> bool {
        self.src.is_ipv4()
    }
}

impl std::fmt::Display for Pinhole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} -> {}",
            self.src,
            SocketAddr::new(self.dst, self.dport)
        )?;
        if let Some(real) = self.dnat {
            write!(f, " (dnat {real})")?;
        }
        Ok(())
    }
}

/// A session-scoped range of data ports, for an encrypted control session
/// (FTPS, RFC 4217) whose `227`/`229` cannot be read: the client `src` may
/// open any number of TCP connections to `dst`, destination ports
/// `low..=high` (the server's configured passive range), for as long as
/// its control session lives. It is not consumed on use. When the gateway
/// translates the server, `dnat` names the server's real address; the
/// destination port is kept (the server listens on the port it
/// announced).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RangePinhole {
    /// Address the data connections come from (the client as it reaches
    /// the gateway, before any translation).
    pub src: IpAddr,
    /// The server's address as the client addresses it.
    pub dst: IpAddr,
    /// Lowest destination port admitted.
    pub low: u16,
    /// Highest destination port admitted (`low <= high`).
    pub high: u16,
    /// The server's real address, when the gateway translates `dst`.
    pub dnat: Option<IpAddr>,
}

impl RangePinhole {
    /// True when both ranges admit some connection in common: the same
    /// source and destination and intersecting ports. nftables refuses an
    /// element that overlaps another one of an interval set (EEXIST,
    /// measured on 6.18), and the two could not tell which DNAT applies.
    pub fn overlaps(&self, other: &RangePinhole) -> bool {
        self.src == other.src
            && self.dst == other.dst
            && self.low <= other.high
            && other.low <= self.high
    }

    /// True when the range admits a connection to `port`.
    pub fn contains(&self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }

    /// True when every address of the range is IPv4.
    pub fn is_ipv4(&self) -> bool {
        self.src.is_ipv4()
    }
}

impl std::fmt::Display for RangePinhole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dst = SocketAddr::new(self.dst, self.low);
        // `addr:low-high`, brackets around an IPv6 address as for a port.
        write!(f, "{} -> {dst}-{}", self.src, self.high)?;
        if let Some(real) = self.dnat {
            write!(f, " (dnat {real})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(src: &str, low: u16, high: u16) -> RangePinhole {
        RangePinhole {
            src: src.parse().unwrap(),
            dst: "203.0.113.1".parse().unwrap(),
            low,
            high,
            dnat: None,
        }
    }

    #[test]
    fn ranges_overlap_only_for_the_same_pair_and_common_ports() {
        let a = range("192.0.2.10", 50000, 50100);
        assert!(a.overlaps(&range("192.0.2.10", 50100, 50200)));
        assert!(a.overlaps(&range("192.0.2.10", 49000, 50000)));
        assert!(!a.overlaps(&range("192.0.2.10", 50101, 50200)));
        assert!(!a.overlaps(&range("192.0.2.11", 50000, 50100)));
        assert!(a.contains(50000) && a.contains(50100) && !a.contains(50101));
    }

    #[test]
    fn range_display_names_ports_and_dnat() {
        let mut r = range("192.0.2.10", 50000, 50100);
        assert_eq!(r.to_string(), "192.0.2.10 -> 203.0.113.1:50000-50100");
        r.dnat = Some("198.51.100.7".parse().unwrap());
        assert_eq!(
            r.to_string(),
            "192.0.2.10 -> 203.0.113.1:50000-50100 (dnat 198.51.100.7)"
        );
    }
}
