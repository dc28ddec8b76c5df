//! The set and map elements of a pinhole, as the kernel stores them.
//!
//! Every field of a concatenation is padded to 4 bytes (what `nft` itself
//! sends for these set types), so `addr . addr . inet_service` is 12 bytes
//! over IPv4 and 36 over IPv6, and the DNAT value `addr . inet_service` is
//! 8 or 20 bytes. Ports are big-endian.
//!
//! An FTPS range is an element of an interval set over the same
//! concatenation (nft's pipapo set type): the key holds the lowest port,
//! NFTA_SET_ELEM_KEY_END the highest, the addresses the same in both (what
//! `nft --debug=netlink add element ... { A . B . 50000-50100 }` sends,
//! measured on 6.18). Its DNAT map's value is the real address alone, so
//! the destination port is kept.

use std::io;
use std::net::IpAddr;

use ftp_alg_proto::pinhole::{Pinhole, RangePinhole};

/// Names of the sets and maps in ftp-alg's table (fixed by the ruleset).
const PIN4: &str = "pin4";
const PIN6: &str = "pin6";
const DNAT4: &str = "dnat4";
const DNAT6: &str = "dnat6";
/// The FTPS range sets and their DNAT maps (see `rules::nft_text`).
const FTPS4: &str = "ftps4";
const FTPS6: &str = "ftps6";
const FTPS_DNAT4: &str = "ftpsdnat4";
const FTPS_DNAT6: &str = "ftpsdnat6";

/// One set or map element of a pinhole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Element {
    pub(super) set: &'static str,
    pub(super) key: Vec<u8>,
    /// The end of an interval (NFTA_SET_ELEM_KEY_END), for range elements.
    pub(super) key_end: Option<Vec<u8>>,
    /// The mapped value, for map elements.
    pub(super) data: Option<Vec<u8>>,
}

/// Appends an address as a concatenation field (4 or 16 bytes: already
/// a multiple of 4, so no padding).
fn push_addr(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
    }
}

/// Appends an inet_service field: 2 bytes big-endian, padded to 4.
fn push_port(out: &mut Vec<u8>, port: u16) {
    out.extend_from_slice(&port.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
}

/// Key `addr . addr . inet_service` as the kernel stores it.
fn concat_key(src: IpAddr, dst: IpAddr, port: u16) -> Vec<u8> {
    let mut key = Vec::with_capacity(36);
    push_addr(&mut key, src);
    push_addr(&mut key, dst);
    push_port(&mut key, port);
    key
}

/// DNAT map value `addr . inet_service`.
fn concat_value(ip: IpAddr, port: u16) -> Vec<u8> {
    let mut value = Vec::with_capacity(20);
    push_addr(&mut value, ip);
    push_port(&mut value, port);
    value
}

/// The set/map elements of a pinhole: the filter element first, then the
/// DNAT element if the pinhole is translated.
pub(super) fn pinhole_elements(p: &Pinhole) -> io::Result<Vec<Element>> {
    let v4 = same_family(p, p.src, p.dst, p.dnat.map(|real| real.ip()))?;
    // Both elements are looked up with the same tuple: the first packet's,
    // before the DNAT the map applies.
    let (src, dst, port) = p.filter_key();
    let key = concat_key(src, dst, port);
    let mut elements = vec![Element {
        set: if v4 { PIN4 } else { PIN6 },
        key: key.clone(),
        key_end: None,
        data: None,
    }];
    if let Some(real) = p.dnat {
        elements.push(Element {
            set: if v4 { DNAT4 } else { DNAT6 },
            key,
            key_end: None,
            data: Some(concat_value(real.ip(), real.port())),
        });
    }
    Ok(elements)
}

/// True for IPv4; `InvalidInput` when the addresses of `what` mix families.
fn same_family(
    what: &dyn std::fmt::Display,
    src: IpAddr,
    dst: IpAddr,
    dnat: Option<IpAddr>,
) -> io::Result<bool> {
    let v4 = src.is_ipv4();
    if dst.is_ipv4() != v4 || dnat.is_some_and(|real| real.is_ipv4() != v4) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("pinhole {what} mixes IPv4 and IPv6 addresses"),
        ));
    }
    Ok(v4)
}

/// The elements of an FTPS range: the interval in ftps4/ftps6, then, when
/// translated, the same interval in ftpsdnat4/ftpsdnat6 mapping to the
/// real address (an address only: the port is kept).
pub(super) fn range_elements(r: &RangePinhole) -> io::Result<Vec<Element>> {
    let v4 = same_family(r, r.src, r.dst, r.dnat)?;
    if r.low > r.high {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("range {r}: low port above high port"),
        ));
    }
    let key = concat_key(r.src, r.dst, r.low);
    let key_end = concat_key(r.src, r.dst, r.high);
    let mut elements = vec![Element {
        set: if v4 { FTPS4 } else { FTPS6 },
        key: key.clone(),
        key_end: Some(key_end.clone()),
        data: None,
    }];
    if let Some(real) = r.dnat {
        let mut value = Vec::with_capacity(16);
        push_addr(&mut value, real);
        elements.push(Element {
            set: if v4 { FTPS_DNAT4 } else { FTPS_DNAT6 },
            key,
            key_end: Some(key_end),
            data: Some(value),
        });
    }
    Ok(elements)
}

#[cfg(test)]
pub(super) mod fixtures {
    use std::net::{IpAddr, SocketAddr};

    use ftp_alg_proto::pinhole::Pinhole;

    pub(in crate::kernel::nft) fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    pub(in crate::kernel::nft) fn sock(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    pub(in crate::kernel::nft) fn dnat_pinhole_v4() -> Pinhole {
        Pinhole {
            src: ip("192.0.2.10"),
            dst: ip("198.51.100.1"),
            dport: 50000,
            dnat: Some(sock("203.0.113.7:2121")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn key_v4_is_12_bytes_with_padded_port() {
        let key = concat_key(ip("192.0.2.1"), ip("198.51.100.7"), 0x0849);
        assert_eq!(key, [192, 0, 2, 1, 198, 51, 100, 7, 0x08, 0x49, 0, 0]);
    }

    #[test]
    fn key_v6_is_36_bytes_with_padded_port() {
        let key = concat_key(ip("2001:db8::1"), ip("2001:db8:ffff::2"), 0xabcd);
        let mut want = vec![0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        want.extend([
            0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
        ]);
        want.extend([0xab, 0xcd, 0, 0]);
        assert_eq!(key, want);
    }

    #[test]
    fn dnat_values_are_8_and_20_bytes() {
        assert_eq!(
            concat_value(ip("203.0.113.7"), 21),
            [203, 0, 113, 7, 0, 21, 0, 0]
        );
        let v6 = concat_value(ip("2001:db8::7"), 0x1234);
        assert_eq!(v6.len(), 20);
        assert_eq!(v6[..16], ip_octets("2001:db8::7"));
        assert_eq!(v6[16..], [0x12, 0x34, 0, 0]);
    }

    fn ip_octets(s: &str) -> [u8; 16] {
        s.parse::<std::net::Ipv6Addr>().unwrap().octets()
    }

    #[test]
    fn plain_pinhole_is_one_filter_element_keyed_by_announced_address() {
        let p = Pinhole {
            src: ip("192.0.2.10"),
            dst: ip("198.51.100.1"),
            dport: 50000,
            dnat: None,
        };
        let elements = pinhole_elements(&p).unwrap();
        assert_eq!(
            elements,
            [Element {
                set: "pin4",
                key: concat_key(ip("192.0.2.10"), ip("198.51.100.1"), 50000),
                key_end: None,
                data: None
            }]
        );
    }

    #[test]
    fn dnat_pinhole_filters_and_maps_the_announced_address() {
        let elements = pinhole_elements(&dnat_pinhole_v4()).unwrap();
        assert_eq!(
            elements,
            [
                Element {
                    set: "pin4",
                    key: concat_key(ip("192.0.2.10"), ip("198.51.100.1"), 50000),
                    key_end: None,
                    data: None
                },
                Element {
                    set: "dnat4",
                    key: concat_key(ip("192.0.2.10"), ip("198.51.100.1"), 50000),
                    key_end: None,
                    data: Some(vec![203, 0, 113, 7, 0x08, 0x49, 0, 0]),
                },
            ]
        );
    }

    #[test]
    fn ipv6_pinhole_uses_v6_sets() {
        let p = Pinhole {
            src: ip("2001:db8:1::10"),
            dst: ip("2001:db8:2::1"),
            dport: 40000,
            dnat: Some(sock("[2001:db8:3::7]:2121")),
        };
        let elements = pinhole_elements(&p).unwrap();
        assert_eq!(elements[0].set, "pin6");
        assert_eq!(elements[0].key.len(), 36);
        assert_eq!(elements[1].set, "dnat6");
        assert_eq!(elements[1].key, concat_key(p.src, p.dst, 40000));
        assert_eq!(elements[1].data.as_ref().unwrap().len(), 20);
    }

    #[test]
    fn range_is_an_interval_from_low_to_high_port_with_an_address_only_dnat() {
        let r = RangePinhole {
            src: ip("192.0.2.10"),
            dst: ip("198.51.100.1"),
            low: 50000,
            high: 50100,
            dnat: Some(ip("203.0.113.7")),
        };
        let elements = range_elements(&r).unwrap();
        // The bytes `nft --debug=netlink` shows for
        // `192.0.2.10 . 198.51.100.1 . 50000-50100 : 203.0.113.7`.
        let low = [192, 0, 2, 10, 198, 51, 100, 1, 0xc3, 0x50, 0, 0];
        let high = [192, 0, 2, 10, 198, 51, 100, 1, 0xc3, 0xb4, 0, 0];
        assert_eq!(
            elements,
            [
                Element {
                    set: "ftps4",
                    key: low.to_vec(),
                    key_end: Some(high.to_vec()),
                    data: None,
                },
                Element {
                    set: "ftpsdnat4",
                    key: low.to_vec(),
                    key_end: Some(high.to_vec()),
                    data: Some(vec![203, 0, 113, 7]),
                },
            ]
        );
        let v6 = RangePinhole {
            src: ip("2001:db8:1::10"),
            dst: ip("2001:db8:2::1"),
            low: 40000,
            high: 40000,
            dnat: None,
        };
        let elements = range_elements(&v6).unwrap();
        assert_eq!(elements.len(), 1);
        assert_eq!(elements[0].set, "ftps6");
        assert_eq!(elements[0].key, elements[0].key_end.clone().unwrap());
        assert_eq!(elements[0].key.len(), 36);
        let mixed = RangePinhole {
            dnat: Some(ip("192.0.2.1")),
            ..v6
        };
        assert_eq!(
            range_elements(&mixed).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        let reversed = RangePinhole {
            low: 2,
            high: 1,
            ..v6
        };
        assert_eq!(
            range_elements(&reversed).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn mixed_families_are_invalid_input() {
        let v4 = ip("192.0.2.1");
        let v6 = ip("2001:db8::1");
        let cases = [
            (v4, v6, None),
            (v6, v4, None),
            (v4, v4, Some(sock("[2001:db8::7]:21"))),
            (v6, v6, Some(sock("203.0.113.7:21"))),
        ];
        for (src, dst, dnat) in cases {
            let p = Pinhole {
                src,
                dst,
                dport: 1,
                dnat,
            };
            let err = pinhole_elements(&p).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{p}");
        }
    }
}
