//! Link layers of a capture: from a captured frame to the IP packet in it.
//!
//! The engine takes IP packets, as NFQUEUE delivers them. Captures wrap
//! them in a link layer: Ethernet (a capture on one interface), Linux
//! "cooked" SLL or SLL2 (`tcpdump -i any`; libpcap 1.10 and later write
//! SLL2, which also names the interface), or nothing at all (raw IP, e.g.
//! from a tunnel). The cooked headers also say whether the capturing host
//! received or sent the frame, which tells the two copies of a forwarded
//! packet apart (see [`super::copies`]).

use std::fmt;

/// Whether the capturing host received or sent a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received (`PACKET_HOST`, broadcast, multicast, other host).
    Incoming,
    /// Sent or forwarded out (`PACKET_OUTGOING`).
    Outgoing,
}

/// A link type this reader understands (the numbers of
/// <https://www.tcpdump.org/linktypes.html>).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// BSD loopback (`NULL`, 0) and OpenBSD loopback (`LOOP`, 108): a
    /// 4-byte address family, then IP.
    Loopback,
    /// Ethernet II (1), with up to two VLAN tags.
    Ethernet,
    /// Raw IP (101, and 12/14 on some systems; 228 IPv4, 229 IPv6).
    RawIp,
    /// Linux cooked capture v1 (113).
    LinuxSll,
    /// Linux cooked capture v2 (276).
    LinuxSll2,
}

impl LinkType {
    /// The link type numbered `n` in a capture header, if it is supported.
    pub fn from_number(n: i32) -> Option<LinkType> {
        Some(match n {
            0 | 108 => LinkType::Loopback,
            1 => LinkType::Ethernet,
            12 | 14 | 101 | 228 | 229 => LinkType::RawIp,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            _ => return None,
        })
    }
}

impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkType::Loopback => "loopback",
            LinkType::Ethernet => "Ethernet",
            LinkType::RawIp => "raw IP",
            LinkType::LinuxSll => "Linux cooked (SLL)",
            LinkType::LinuxSll2 => "Linux cooked v2 (SLL2)",
        })
    }
}

/// The IP packet of one frame, with what the link layer says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram<'a> {
    /// The IPv4 or IPv6 packet (trailing link padding included; the IP
    /// length field bounds it).
    pub ip: &'a [u8],
    /// Received or sent, where the link layer records it.
    pub direction: Option<Direction>,
    /// Interface index (SLL2 only).
    pub interface: Option<u32>,
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: [u16; 3] = [0x8100, 0x88a8, 0x9100];
/// `PACKET_OUTGOING` in the cooked headers' packet type (linux/if_packet.h).
const PACKET_OUTGOING: u16 = 4;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The IP packet after an EtherType, or `None` for other protocols.
fn ip_after(ethertype: u16, rest: &[u8]) -> Option<&[u8]> {
    matches!(ethertype, ETHERTYPE_IPV4 | ETHERTYPE_IPV6).then_some(rest)
}

fn direction(packet_type: u16) -> Direction {
    if packet_type == PACKET_OUTGOING {
        Direction::Outgoing
    } else {
        Direction::Incoming
    }
}

/// The IP packet in `frame`, or `None` when the frame carries something
/// else (ARP, a truncated header): such frames are not control packets.
pub fn decode(link: LinkType, frame: &[u8]) -> Option<Datagram<'_>> {
    fn plain(ip: &[u8]) -> Datagram<'_> {
        Datagram {
            ip,
            direction: None,
            interface: None,
        }
    }
    match link {
        LinkType::RawIp => Some(plain(frame)),
        LinkType::Loopback => {
            // The family is in the writer's byte order; the IP version
            // nibble tells IPv4 from IPv6 without guessing that order.
            let ip = frame.get(4..)?;
            matches!(ip.first()? >> 4, 4 | 6).then(|| plain(ip))
        }
        LinkType::Ethernet => {
            let mut at = 12;
            let mut ethertype = be16(frame, at)?;
            for _ in 0..2 {
                if !ETHERTYPE_VLAN.contains(&ethertype) {
                    break;
                }
                at += 4;
                ethertype = be16(frame, at)?;
            }
            ip_after(ethertype, frame.get(at + 2..)?).map(plain)
        }
        LinkType::LinuxSll => {
            // packet type, ARPHRD type, address length, 8 address bytes,
            // protocol: 16 bytes.
            let ip = ip_after(be16(frame, 14)?, frame.get(16..)?)?;
            Some(Datagram {
                direction: Some(direction(be16(frame, 0)?)),
                ..plain(ip)
            })
        }
        LinkType::LinuxSll2 => {
            // protocol, reserved, interface index, ARPHRD type, packet
            // type (one byte), address length, 8 address bytes: 20 bytes.
            let ip = ip_after(be16(frame, 0)?, frame.get(20..)?)?;
            Some(Datagram {
                ip,
                direction: Some(direction(u16::from(*frame.get(10)?))),
                interface: Some(be32(frame, 4)?),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: [u8; 4] = [0x45, 0, 0, 20];

    #[test]
    fn ethernet_with_and_without_vlan() {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&IP);
        assert_eq!(decode(LinkType::Ethernet, &f).unwrap().ip, IP);
        let mut tagged = vec![0u8; 12];
        tagged.extend_from_slice(&[0x81, 0x00, 0, 7, 0x86, 0xdd]);
        tagged.extend_from_slice(&IP);
        assert_eq!(decode(LinkType::Ethernet, &tagged).unwrap().ip, IP);
        let mut arp = vec![0u8; 12];
        arp.extend_from_slice(&[0x08, 0x06, 1, 2]);
        assert_eq!(decode(LinkType::Ethernet, &arp), None);
        assert_eq!(decode(LinkType::Ethernet, &[0; 13]), None);
    }

    #[test]
    fn sll_gives_the_direction() {
        let mut f = vec![0, 4, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        f.extend_from_slice(&IP);
        let d = decode(LinkType::LinuxSll, &f).unwrap();
        assert_eq!((d.ip, d.direction), (&IP[..], Some(Direction::Outgoing)));
        f[1] = 0;
        let d = decode(LinkType::LinuxSll, &f).unwrap();
        assert_eq!(d.direction, Some(Direction::Incoming));
    }

    #[test]
    fn sll2_gives_direction_and_interface() {
        let mut f = vec![0x86, 0xdd, 0, 0, 0, 0, 0, 3, 0, 1, 4, 6];
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&IP);
        let d = decode(LinkType::LinuxSll2, &f).unwrap();
        assert_eq!(d.ip, IP);
        assert_eq!(d.direction, Some(Direction::Outgoing));
        assert_eq!(d.interface, Some(3));
        assert_eq!(decode(LinkType::LinuxSll2, &f[..19]), None);
    }

    #[test]
    fn raw_and_loopback() {
        assert_eq!(decode(LinkType::RawIp, &IP).unwrap().ip, IP);
        let mut lo = vec![2, 0, 0, 0];
        lo.extend_from_slice(&IP);
        assert_eq!(decode(LinkType::Loopback, &lo).unwrap().ip, IP);
        assert_eq!(decode(LinkType::Loopback, &[2, 0, 0, 0, 0x11]), None);
        assert_eq!(LinkType::from_number(276), Some(LinkType::LinuxSll2));
        assert_eq!(LinkType::from_number(147), None);
    }
}
