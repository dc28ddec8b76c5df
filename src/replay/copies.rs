//! Which copy of a packet the daemon would have seen, and the NAT mapping.
//!
//! A capture taken on the gateway with `tcpdump -i any` holds every
//! forwarded packet twice: as it arrived on one interface and as it left on
//! the other, after NAT and after ftp-alg's own rewrite. The daemon sees
//! neither copy exactly, but each direction at one hook (see the README's
//! packet path):
//!
//! * client → server in raw PREROUTING, before conntrack and NAT: that is
//!   the **arriving** copy, byte for byte (source the client's own address,
//!   destination the server's public one, text not yet rewritten);
//! * server → client in mangle FORWARD, after conntrack and the reply's
//!   destination NAT: the **arriving** copy (text not yet rewritten, source
//!   still the server's own address) with the destination translated back
//!   to the client's own address, which is what this module does to it.
//!
//! The leaving copies are not fed; they serve to learn the NAT mapping.
//! Two copies are recognised as one packet by their client → server TCP
//! sequence number, flags and payload (the first such pair is the SYN,
//! whose initial sequence number NAT leaves alone), seen within
//! [`TWIN_WINDOW`]: the earlier copy (or the one the link layer marks as
//! received) is the arriving one, its tuple is the session's pre-NAT
//! tuple, the other's the post-NAT one, which gives the mapping conntrack
//! would have answered (`client_public` = the leaving copy's source,
//! `server_real` its destination).
//!
//! When the gateway does not translate the session both copies have the
//! same tuple: then the link layer's direction decides (SLL/SLL2, pcapng
//! `epb_flags`), or, without one, the second of two identical segments
//! within [`SAME_TUPLE_WINDOW`] is taken as the copy (a retransmission
//! comes later: Linux waits at least 10 ms for a tail-loss probe).
//!
//! A capture taken elsewhere (on the client, on the server) holds each
//! packet once: everything is fed as it is, the mapping comes from
//! `--nat` or is assumed untranslated.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use etherparse::IpSlice;
use ftp_alg_proto::engine::NatMapping;
use ftp_alg_proto::packet::TcpSegment;

use super::capture::Frame;
use super::link::Direction;

/// Longest time between the arriving and the leaving copy of a packet
/// whose tuple NAT changed (NFQUEUE adds tens of microseconds, tails of
/// milliseconds).
pub const TWIN_WINDOW: Duration = Duration::from_millis(200);

/// Longest time between two identical copies of an untranslated packet.
pub const SAME_TUPLE_WINDOW: Duration = Duration::from_millis(5);

/// Where a session's NAT mapping comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatSource {
    /// Both copies of the session's packets are in the capture.
    Capture,
    /// A `--nat` option.
    Option,
    /// Neither: the session is taken as untranslated.
    Assumed,
}

/// A `--nat FROM=TO` option: the address `FROM` (a client's own, or a
/// server's public one) is `TO` on the other side of the gateway. A port
/// in `FROM` restricts it to that port; a port in `TO` replaces the port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NatOption {
    /// Address (and optionally port) as the capture shows it.
    pub from: (IpAddr, Option<u16>),
    /// What it is translated to.
    pub to: (IpAddr, Option<u16>),
}

impl NatOption {
    fn apply(&self, addr: SocketAddr) -> Option<SocketAddr> {
        let (ip, port) = self.from;
        (addr.ip() == ip && port.is_none_or(|p| p == addr.port()))
            .then(|| SocketAddr::new(self.to.0, self.to.1.unwrap_or(addr.port())))
    }
}

impl std::str::FromStr for NatOption {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        fn side(s: &str) -> Result<(IpAddr, Option<u16>), String> {
            if let Ok(a) = s.parse::<SocketAddr>() {
                return Ok((a.ip(), Some(a.port())));
            }
            s.parse::<IpAddr>()
                .map(|ip| (ip, None))
                .map_err(|_| format!("'{s}' is not an address or address:port"))
        }
        let (from, to) = s
            .split_once('=')
            .ok_or_else(|| format!("'{s}' is not FROM=TO"))?;
        let (from, to) = (side(from)?, side(to)?);
        if from.0.is_ipv4() != to.0.is_ipv4() {
            return Err(format!("'{s}' mixes IPv4 and IPv6"));
        }
        Ok(NatOption { from, to })
    }
}

/// A session whose two copies were both captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Twin {
    client: SocketAddr,
    server_public: SocketAddr,
    mapping: NatMapping,
}

impl Twin {
    fn translated(&self) -> bool {
        self.mapping.client_public != self.client || self.mapping.server_real != self.server_public
    }
}

/// A packet to hand to the engine, as the daemon would have seen it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fed {
    /// Capture time, since the Unix epoch.
    pub time: Duration,
    /// The IP packet (with the destination translated back, for a
    /// server → client copy on a gateway).
    pub ip: Vec<u8>,
}

/// The capture sorted out: what to feed, and each session's mapping.
#[derive(Debug, Default)]
pub struct Sorted {
    /// Packets to feed, in capture order.
    pub feed: Vec<Fed>,
    /// Packets left out as the leaving copy of a forwarded packet.
    pub copies: usize,
    twins: HashMap<SocketAddr, Twin>,
    options: Vec<NatOption>,
}

impl Sorted {
    /// The NAT mapping of the connection `client` -> `server` (its
    /// original tuple), as conntrack would have answered, and where it
    /// comes from. Options win over the capture: the admin may know a
    /// translation the capture cannot show.
    pub fn mapping(
        &self,
        client: SocketAddr,
        server: SocketAddr,
    ) -> (Option<NatMapping>, NatSource) {
        let client_public = self.options.iter().find_map(|o| o.apply(client));
        let server_real = self.options.iter().find_map(|o| o.apply(server));
        let twin = self
            .twins
            .get(&client)
            .filter(|t| t.server_public == server);
        if client_public.is_some() || server_real.is_some() {
            let base = twin.map_or(
                NatMapping {
                    client_public: client,
                    server_real: server,
                },
                |t| t.mapping,
            );
            return (
                Some(NatMapping {
                    client_public: client_public.unwrap_or(base.client_public),
                    server_real: server_real.unwrap_or(base.server_real),
                }),
                NatSource::Option,
            );
        }
        match twin {
            Some(t) => (Some(t.mapping), NatSource::Capture),
            None => (None, NatSource::Assumed),
        }
    }
}

/// The TCP view of a frame, with which end is the client.
struct Seen<'a> {
    frame: &'a Frame,
    seg: TcpSegment,
    to_server: bool,
}

/// Whether two copies carry the same segment. The acknowledgement is
/// compared only for copies with the same tuple: ftp-alg maps it back
/// when the other direction was rewritten, which needs a translation.
fn same_segment(a: &Seen<'_>, b: &Seen<'_>) -> bool {
    let same_tuple = (a.seg.src, a.seg.dst) == (b.seg.src, b.seg.dst);
    a.seg.seq == b.seg.seq
        && a.seg.flags == b.seg.flags
        && (!same_tuple || a.seg.ack == b.seg.ack)
        && a.seg.payload(&a.frame.ip) == b.seg.payload(&b.frame.ip)
}

/// Finds the sessions captured twice (see the module documentation).
fn find_twins(seen: &[Seen<'_>]) -> HashMap<SocketAddr, Twin> {
    let mut twins: HashMap<SocketAddr, Twin> = HashMap::new();
    // Addresses known to be a leaving copy's source: never a client.
    let mut leaving: Vec<SocketAddr> = Vec::new();
    let c2s: Vec<&Seen<'_>> = seen.iter().filter(|s| s.to_server).collect();
    for (i, first) in c2s.iter().enumerate() {
        let client = first.seg.src;
        if twins.contains_key(&client) || leaving.contains(&client) {
            continue;
        }
        let later = c2s[i + 1..]
            .iter()
            .take_while(|s| s.frame.time.saturating_sub(first.frame.time) <= TWIN_WINDOW);
        for second in later {
            if !same_segment(first, second) {
                continue;
            }
            let same_tuple = (second.seg.src, second.seg.dst) == (first.seg.src, first.seg.dst);
            let (a, b) = (first.frame, second.frame);
            let told_apart = a.direction != b.direction || a.interface != b.interface;
            let close = b.time.saturating_sub(a.time) <= SAME_TUPLE_WINDOW;
            if same_tuple && !told_apart && !close {
                continue;
            }
            // The arriving copy: the one received, else the earlier.
            let (arriving, leaving_copy) = match (a.direction, b.direction) {
                (Some(Direction::Outgoing), Some(Direction::Incoming)) => (*second, *first),
                _ => (*first, *second),
            };
            let twin = Twin {
                client: arriving.seg.src,
                server_public: arriving.seg.dst,
                mapping: NatMapping {
                    client_public: leaving_copy.seg.src,
                    server_real: leaving_copy.seg.dst,
                },
            };
            if twin.translated() {
                leaving.push(twin.mapping.client_public);
            }
            twins.insert(twin.client, twin);
            break;
        }
    }
    twins
}

/// Writes `dst` as the packet's destination address and port, as the
/// reply's destination NAT does before the daemon's hook. Checksums are
/// left as they are: the core does not verify them, and it recomputes them
/// for every packet it rebuilds.
fn set_destination(ip: &mut [u8], dst: SocketAddr) {
    let Ok(slice) = IpSlice::from_slice(ip) else {
        return;
    };
    let tcp = slice.payload().payload.as_ptr() as usize - ip.as_ptr() as usize;
    match dst.ip() {
        IpAddr::V4(a) if ip.len() >= 20 => ip[16..20].copy_from_slice(&a.octets()),
        IpAddr::V6(a) if ip.len() >= 40 => ip[24..40].copy_from_slice(&a.octets()),
        _ => return,
    }
    if let Some(port) = ip.get_mut(tcp + 2..tcp + 4) {
        port.copy_from_slice(&dst.port().to_be_bytes());
    }
}

/// Sorts the kept frames: the copies to feed, the copies to leave out,
/// the mapping of each session.
pub fn sort(frames: &[Frame], control_ports: &[u16], options: &[NatOption]) -> Sorted {
    let seen: Vec<Seen<'_>> = frames
        .iter()
        .filter_map(|frame| {
            let seg = TcpSegment::parse(&frame.ip).ok()?;
            let to_server = control_ports.contains(&seg.dst.port());
            Some(Seen {
                frame,
                seg,
                to_server,
            })
        })
        .collect();
    let twins = find_twins(&seen);
    // The client -> server tuple of each twin's leaving copies, and the
    // server -> client tuples: arriving (true), leaving (false).
    let mut leaving: HashMap<(SocketAddr, SocketAddr), Twin> = HashMap::new();
    let mut replies: HashMap<(SocketAddr, SocketAddr), (Twin, bool)> = HashMap::new();
    for t in twins.values() {
        leaving.insert((t.mapping.client_public, t.mapping.server_real), *t);
        replies.insert((t.mapping.server_real, t.mapping.client_public), (*t, true));
        replies
            .entry((t.server_public, t.client))
            .or_insert((*t, false));
    }
    let mut sorted = Sorted {
        options: options.to_vec(),
        ..Sorted::default()
    };
    // The last fed copy per tuple, to spot an untranslated duplicate.
    let mut last: HashMap<(SocketAddr, SocketAddr), usize> = HashMap::new();
    for (i, s) in seen.iter().enumerate() {
        let tuple = (s.seg.src, s.seg.dst);
        let from_server = !s.to_server && control_ports.contains(&s.seg.src.port());
        let twin = if s.to_server {
            twins
                .get(&s.seg.src)
                .map(|t| (*t, (t.client, t.server_public) == tuple))
                .or_else(|| leaving.get(&tuple).map(|t| (*t, false)))
        } else if from_server {
            replies.get(&tuple).copied()
        } else {
            None
        };
        let mut ip = s.frame.ip.clone();
        if let Some((t, arriving)) = twin {
            let duplicate = || {
                last.get(&tuple).is_some_and(|&j| {
                    let prev = &seen[j];
                    s.frame.time.saturating_sub(prev.frame.time) <= SAME_TUPLE_WINDOW
                        && same_segment(prev, s)
                })
            };
            let copy = if t.translated() {
                !arriving
            } else {
                match s.frame.direction {
                    Some(d) => d == Direction::Outgoing,
                    None => duplicate(),
                }
            };
            if copy {
                sorted.copies += 1;
                continue;
            }
            if from_server {
                set_destination(&mut ip, t.client);
            }
        }
        last.insert(tuple, i);
        sorted.feed.push(Fed {
            time: s.frame.time,
            ip,
        });
    }
    sorted.twins = twins;
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_options_parse_and_apply() {
        let o: NatOption = "198.51.100.2=203.0.113.254".parse().unwrap();
        let c: SocketAddr = "198.51.100.2:4000".parse().unwrap();
        assert_eq!(o.apply(c), Some("203.0.113.254:4000".parse().unwrap()));
        let d: NatOption = "203.0.113.1:21=192.0.2.10:2121".parse().unwrap();
        assert_eq!(
            d.apply("203.0.113.1:21".parse().unwrap()),
            Some("192.0.2.10:2121".parse().unwrap())
        );
        assert_eq!(d.apply("203.0.113.1:22".parse().unwrap()), None);
        assert!("198.51.100.2=2001:db8::1".parse::<NatOption>().is_err());
        assert!("198.51.100.2".parse::<NatOption>().is_err());
        assert!("x=198.51.100.2".parse::<NatOption>().is_err());
    }
}
