//! NAT mapping overrides: the shell that turns `[[nat_override]]` (an
//! interface and the address a further NAT presents for it) into the
//! (gateway address, announced address) pairs the engine uses.
//!
//! Interface addresses are read again on every call, so that an address
//! that changes (DHCP on the uplink) is followed within one tick.

use std::io;
use std::net::IpAddr;

use crate::config::NatOverride;

/// The pairs for `overrides`, from the host's current interface addresses.
pub fn announced_addresses(overrides: &[NatOverride]) -> io::Result<Vec<(IpAddr, IpAddr)>> {
    if overrides.is_empty() {
        return Ok(Vec::new());
    }
    Ok(pair(overrides, interface_addresses()?))
}

/// Every address of every interface of this host, with its interface's
/// name (also what tells a local FTPS server, `kernel::local_addrs`).
pub fn interface_addresses() -> io::Result<Vec<(String, IpAddr)>> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(io::Error::from)?;
    Ok(addrs
        .filter_map(|a| {
            let sa = a.address?;
            let ip = if let Some(v4) = sa.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else {
                IpAddr::V6(sa.as_sockaddr_in6()?.ip())
            };
            Some((a.interface_name, ip))
        })
        .collect())
}

/// Pairs every address of an overridden interface with that interface's
/// public address of the same family. IPv6 link-local addresses are
/// skipped: no announcement ever carries one.
fn pair(
    overrides: &[NatOverride],
    interface_addresses: impl IntoIterator<Item = (String, IpAddr)>,
) -> Vec<(IpAddr, IpAddr)> {
    let mut table = Vec::new();
    for (name, ip) in interface_addresses {
        if let IpAddr::V6(v6) = ip {
            if v6.segments()[0] & 0xffc0 == 0xfe80 {
                continue;
            }
        }
        let public = overrides
            .iter()
            .find(|o| o.interface == name && o.public_address.is_ipv4() == ip.is_ipv4());
        if let Some(o) = public {
            table.push((ip, o.public_address));
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn pairs_by_interface_and_family() {
        let overrides = [
            NatOverride {
                interface: "wan0".into(),
                public_address: ip("198.51.100.7"),
            },
            NatOverride {
                interface: "wan0".into(),
                public_address: ip("2001:db8::7"),
            },
        ];
        let addrs = [
            ("lo".to_string(), ip("127.0.0.1")),
            ("wan0".to_string(), ip("203.0.113.1")),
            ("wan0".to_string(), ip("203.0.113.254")),
            ("wan0".to_string(), ip("fe80::1")),
            ("wan0".to_string(), ip("2001:db8:2::1")),
            ("lan0".to_string(), ip("192.0.2.1")),
        ];
        assert_eq!(
            pair(&overrides, addrs),
            vec![
                (ip("203.0.113.1"), ip("198.51.100.7")),
                (ip("203.0.113.254"), ip("198.51.100.7")),
                (ip("2001:db8:2::1"), ip("2001:db8::7")),
            ]
        );
    }

    #[test]
    fn nothing_configured_reads_nothing() {
        assert_eq!(announced_addresses(&[]).unwrap(), Vec::new());
    }

    #[test]
    fn loopback_is_found_on_this_host() {
        let o = [NatOverride {
            interface: "lo".into(),
            public_address: ip("192.0.2.99"),
        }];
        let table = announced_addresses(&o).unwrap();
        assert!(
            table.contains(&(ip("127.0.0.1"), ip("192.0.2.99"))),
            "{table:?}"
        );
    }
}
