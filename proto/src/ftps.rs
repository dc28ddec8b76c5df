//! FTPS servers the gateway knows: which encrypted control sessions get a
//! session-scoped range of data ports, and which range.
//!
//! Once a control session is encrypted (RFC 4217 `AUTH TLS` answered
//! `234`, or implicit TLS from the first byte) its `227`/`229` replies
//! cannot be read, so the exact data port is unknown. What is known is the
//! session: which client, which server, when it starts and ends. For a
//! server the admin listed, with its configured passive port range, the
//! engine opens that range for this one client while the session lives
//! (see `engine::ftps`). Pure data and matching; the daemon's config file
//! parses into these types.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An address prefix: `addr/len`. A bare address is a prefix of its full
/// length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

impl Prefix {
    /// The prefix `addr/len`; `None` when `len` exceeds the family's bits.
    /// Host bits of `addr` are cleared.
    pub fn new(addr: IpAddr, len: u8) -> Option<Prefix> {
        let bits = max_len(addr);
        (len <= bits).then(|| Prefix {
            addr: masked(addr, len),
            len,
        })
    }

    /// The network address (host bits cleared).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn len(&self) -> u8 {
        self.len
    }

    /// True for a zero-length prefix (every address of its family).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when `ip` (of the same family) lies in the prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && masked(ip, self.len) == self.addr
    }

    /// True when some address lies in both prefixes.
    pub fn overlaps(&self, other: &Prefix) -> bool {
        let shorter = if self.len <= other.len { self } else { other };
        let longer = if self.len <= other.len { other } else { self };
        shorter.contains(longer.addr)
    }
}

fn max_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn masked(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & mask).into())
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

impl FromStr for Prefix {
    type Err = String;

    /// `ADDR` or `ADDR/LEN`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an address or ADDR/PREFIX"))?;
        let len = match len {
            None => max_len(addr),
            Some(l) => l
                .parse::<u8>()
                .map_err(|_| format!("{s:?}: prefix length {l:?} is not a number"))?,
        };
        Prefix::new(addr, len).ok_or_else(|| {
            format!(
                "{s:?}: prefix length {len} is longer than {} bits",
                max_len(addr)
            )
        })
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A server's passive port range, `low..=high`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    /// Lowest port.
    pub low: u16,
    /// Highest port.
    pub high: u16,
}

impl FromStr for PortRange {
    type Err = String;

    /// `LOW-HIGH` (or a single port), `LOW <= HIGH`, no port 0.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (low, high) = s.split_once('-').unwrap_or((s, s));
        let port = |p: &str| {
            p.trim()
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("{s:?} is not LOW-HIGH with ports 1-65535"))
        };
        let (low, high) = (port(low)?, port(high)?);
        if low > high {
            return Err(format!("{s:?}: LOW {low} is above HIGH {high}"));
        }
        Ok(PortRange { low, high })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.low, self.high)
    }
}

/// One `[[ftps]]` entry: an FTPS server (its real address, or a prefix
/// of servers that share one configuration) and its passive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FtpsServer {
    /// The server's own address (after any DNAT of the gateway).
    pub server: Prefix,
    /// The ports the server listens on for passive data connections
    /// (vsftpd `pasv_min_port`/`pasv_max_port`, proftpd `PassivePorts`).
    pub passive_ports: PortRange,
}

impl fmt::Display for FtpsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ports {}", self.server, self.passive_ports)
    }
}

/// The entry whose server prefix holds `real` (the server's own address),
/// with its index; [`check_entries`] makes it unique.
pub fn entry_for(entries: &[FtpsServer], real: IpAddr) -> Option<(usize, &FtpsServer)> {
    entries
        .iter()
        .enumerate()
        .find(|(_, e)| e.server.contains(real))
}

/// Why a list of `[[ftps]]` entries cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryError {
    /// A passive range reaches below 1024 and privileged data ports are not
    /// allowed (the same rule as for announced ports: a pinhole to a
    /// privileged port is how bounce attacks reach other services).
    Privileged {
        /// Index of the entry.
        index: usize,
    },
    /// Two entries' server prefixes overlap: a server in both would have
    /// two ranges, and which one it uses cannot be told.
    Overlap {
        /// Index of the first entry.
        first: usize,
        /// Index of the second entry.
        second: usize,
    },
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryError::Privileged { index } => write!(
                f,
                "ftps[{index}].passive_ports reaches below 1024 (set policy.allow_privileged_ports to allow it)"
            ),
            EntryError::Overlap { first, second } => write!(
                f,
                "ftps[{first}].server and ftps[{second}].server overlap: a server must match one entry"
            ),
        }
    }
}

/// Checks a list of entries: no privileged port unless `allow_privileged`,
/// and no server in two entries.
pub fn check_entries(entries: &[FtpsServer], allow_privileged: bool) -> Result<(), EntryError> {
    for (index, e) in entries.iter().enumerate() {
        if e.passive_ports.low < 1024 && !allow_privileged {
            return Err(EntryError::Privileged { index });
        }
        if let Some(first) = entries[..index]
            .iter()
            .position(|o| o.server.overlaps(&e.server))
        {
            return Err(EntryError::Overlap {
                first,
                second: index,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(server: &str, ports: &str) -> FtpsServer {
        FtpsServer {
            server: server.parse().unwrap(),
            passive_ports: ports.parse().unwrap(),
        }
    }

    #[test]
    fn prefixes_parse_and_match() {
        let p: Prefix = "192.0.2.77/24".parse().unwrap();
        assert_eq!(p.to_string(), "192.0.2.0/24");
        assert!(p.contains("192.0.2.1".parse().unwrap()));
        assert!(!p.contains("192.0.3.1".parse().unwrap()));
        assert!(!p.contains("2001:db8::1".parse().unwrap()));
        let host: Prefix = "2001:db8::10".parse().unwrap();
        assert_eq!(host.len(), 128);
        assert!(host.contains("2001:db8::10".parse().unwrap()));
        assert!(!host.contains("2001:db8::11".parse().unwrap()));
        let all: Prefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.is_empty() && all.contains("203.0.113.9".parse().unwrap()));
        for bad in ["192.0.2.1/33", "2001:db8::/129", "x", "192.0.2.1/a", ""] {
            assert!(bad.parse::<Prefix>().is_err(), "{bad}");
        }
    }

    #[test]
    fn port_ranges_parse_low_to_high() {
        assert_eq!(
            "50000-50100".parse::<PortRange>(),
            Ok(PortRange {
                low: 50000,
                high: 50100
            })
        );
        assert_eq!(
            "40000".parse::<PortRange>(),
            Ok(PortRange {
                low: 40000,
                high: 40000
            })
        );
        for bad in ["50100-50000", "0-10", "1-65536", "a-b", "-", "1-2-3"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
    }

    #[test]
    fn entries_are_checked_for_privileged_ports_and_overlap() {
        let ok = [
            entry("192.0.2.10", "50000-50100"),
            entry("192.0.2.11", "50000-50100"),
        ];
        assert_eq!(check_entries(&ok, false), Ok(()));
        let low = [entry("192.0.2.10", "1000-2000")];
        assert_eq!(
            check_entries(&low, false),
            Err(EntryError::Privileged { index: 0 })
        );
        assert_eq!(check_entries(&low, true), Ok(()));
        let overlap = [
            entry("192.0.2.10", "50000-50100"),
            entry("198.51.100.0/24", "40000-40100"),
            entry("192.0.2.0/28", "60000-60100"),
        ];
        assert_eq!(
            check_entries(&overlap, false),
            Err(EntryError::Overlap {
                first: 0,
                second: 2
            })
        );
    }

    #[test]
    fn the_entry_holding_the_real_address_matches() {
        let entries = [
            entry("192.0.2.10", "50000-50100"),
            entry("2001:db8:2::/64", "40000-40100"),
        ];
        let found = entry_for(&entries, "2001:db8:2::10".parse().unwrap());
        assert_eq!(found.map(|(i, _)| i), Some(1));
        assert!(entry_for(&entries, "192.0.2.11".parse().unwrap()).is_none());
    }
}
