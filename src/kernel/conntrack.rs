//! NAT mapping of a control connection, read from conntrack over ctnetlink.
//!
//! A GET by ORIGINAL tuple returns the entry with its REPLY tuple; when the
//! gateway NATs the connection, the reply tuple holds the translated
//! addresses (e.g. the SNAT address and port the server sees). That tells
//! ftp-alg what to write into PORT/EPRT without any configuration.

use std::io;
use std::net::SocketAddr;

use netlink_packet_core::{
    ErrorBuffer, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLMSG_ERROR,
    NLM_F_REQUEST,
};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, IPTuple, ProtoTuple, Protocol, Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::Socket;

use crate::kernel::netlink::{invalid_data, kernel_error, open_socket, recv, send};

/// Receive buffer; one conntrack entry is a few hundred bytes.
const RECV_BUF_LEN: usize = 16 * 1024;

/// Both tuples of one TCP conntrack entry.
///
/// For a connection SNATed by this host, `reply_dst` is the translated
/// (public) source of the original direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtTuples {
    /// Source of the original direction (the connection's initiator).
    pub orig_src: SocketAddr,
    /// Destination of the original direction, as the initiator sent it.
    pub orig_dst: SocketAddr,
    /// Source of reply packets (the real responder, after DNAT).
    pub reply_src: SocketAddr,
    /// Destination of reply packets (the initiator's address after SNAT).
    pub reply_dst: SocketAddr,
}

/// A ctnetlink socket for conntrack lookups.
///
/// Calls are synchronous (each waits for the kernel's answer); use one
/// instance per thread. The socket belongs to the network namespace of the
/// thread that opened it.
pub struct Conntrack {
    socket: Socket,
    /// Sequence number of the next request; answers are matched by it.
    seq: u32,
    recv_buf: Vec<u8>,
}

impl Conntrack {
    /// Opens a NETLINK_NETFILTER socket connected to the kernel.
    pub fn open() -> io::Result<Self> {
        Ok(Self {
            socket: open_socket()?,
            seq: 1,
            recv_buf: Vec::with_capacity(RECV_BUF_LEN),
        })
    }

    /// Looks up the TCP conntrack entry whose ORIGINAL tuple is (src -> dst)
    /// (IPCTNL_MSG_CT_GET with CTA_TUPLE_ORIG, not a dump) and returns both
    /// tuples; Ok(None) when there is no such entry (ENOENT).
    ///
    /// An entry found only by its REPLY tuple (the kernel matches either
    /// direction) is reported as `None`. `src` and `dst` of different
    /// address families are `InvalidInput`. Only the default conntrack zone
    /// is searched.
    pub fn lookup_tcp(&mut self, src: SocketAddr, dst: SocketAddr) -> io::Result<Option<CtTuples>> {
        if src.is_ipv4() != dst.is_ipv4() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("conntrack lookup {src} -> {dst} mixes IPv4 and IPv6"),
            ));
        }
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        send(&self.socket, &build_get(src, dst, seq))?;

        loop {
            recv(&self.socket, &mut self.recv_buf)?;
            let mut rest = &self.recv_buf[..];
            while !rest.is_empty() {
                let msg = NetlinkBuffer::new_checked(rest).map_err(invalid_data)?;
                let len = msg.length() as usize;
                // Answers to an earlier request (left over after a timeout)
                // carry another sequence number.
                if msg.sequence_number() == seq {
                    if msg.message_type() == NLMSG_ERROR {
                        let code = ErrorBuffer::new_checked(msg.payload())
                            .map_err(invalid_data)?
                            .code()
                            .map_or(0, |c| c.get().saturating_abs());
                        return match code {
                            libc::ENOENT => Ok(None),
                            // Without NLM_F_ACK a success is the entry itself.
                            0 => Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "conntrack answered with an ACK instead of the entry",
                            )),
                            _ => Err(kernel_error(
                                format!("conntrack lookup tcp {src} -> {dst}"),
                                code,
                            )),
                        };
                    }
                    let entry = parse_entry(&rest[..len])?;
                    // The kernel finds an entry by either of its tuples, so
                    // (src -> dst) may have matched the REPLY tuple of some
                    // entry: that is not an entry with this ORIGINAL tuple.
                    let asked = entry.orig_src == src && entry.orig_dst == dst;
                    return Ok(asked.then_some(entry));
                }
                // Messages are 4-byte aligned within a datagram.
                rest = rest.get((len + 3) & !3..).unwrap_or(&[]);
            }
        }
    }
}

/// The conntrack tuple attributes of a TCP flow src -> dst.
fn tcp_tuple(src: SocketAddr, dst: SocketAddr) -> Vec<Tuple> {
    vec![
        Tuple::Ip(vec![
            IPTuple::SourceAddress(src.ip()),
            IPTuple::DestinationAddress(dst.ip()),
        ]),
        Tuple::Proto(vec![
            ProtoTuple::Protocol(Protocol::Tcp),
            ProtoTuple::SourcePort(src.port()),
            ProtoTuple::DestinationPort(dst.port()),
        ]),
    ]
}

/// The IPCTNL_MSG_CT_GET request for the TCP entry with original tuple
/// (src -> dst).
fn build_get(src: SocketAddr, dst: SocketAddr, seq: u32) -> Vec<u8> {
    let family = if src.is_ipv4() {
        NetfilterProtoFamily::IPv4
    } else {
        NetfilterProtoFamily::IPv6
    };
    let request = NetfilterMessage::new(
        NetfilterHeader::new(family, 0, 0),
        ConntrackMessage::Get(vec![ConntrackAttribute::CtaTupleOrig(tcp_tuple(src, dst))]),
    );
    let mut header = NetlinkHeader::default();
    // A GET without NLM_F_DUMP is a lookup of one entry by tuple.
    header.flags = NLM_F_REQUEST;
    header.sequence_number = seq;
    let mut message = NetlinkMessage::new(header, NetlinkPayload::from(request));
    message.finalize();
    let mut buf = vec![0; message.buffer_len()];
    message.serialize(&mut buf);
    buf
}

/// Both tuples from the kernel's answer to a GET (one netlink message).
fn parse_entry(bytes: &[u8]) -> io::Result<CtTuples> {
    let message = NetlinkMessage::<NetfilterMessage>::deserialize(bytes).map_err(invalid_data)?;
    let attributes = match message.payload {
        NetlinkPayload::InnerMessage(NetfilterMessage {
            inner: NetfilterMessageInner::Conntrack(ConntrackMessage::New(attributes)),
            ..
        }) => attributes,
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected answer to a conntrack GET: {other:?}"),
            ))
        }
    };
    let mut orig = None;
    let mut reply = None;
    for attribute in &attributes {
        match attribute {
            ConntrackAttribute::CtaTupleOrig(tuple) => orig = Some(parse_tcp_tuple(tuple)?),
            ConntrackAttribute::CtaTupleReply(tuple) => reply = Some(parse_tcp_tuple(tuple)?),
            _ => {}
        }
    }
    match (orig, reply) {
        (Some((orig_src, orig_dst)), Some((reply_src, reply_dst))) => Ok(CtTuples {
            orig_src,
            orig_dst,
            reply_src,
            reply_dst,
        }),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "conntrack entry without both tuples",
        )),
    }
}

/// (source, destination) of one CTA_TUPLE_* attribute.
fn parse_tcp_tuple(tuple: &[Tuple]) -> io::Result<(SocketAddr, SocketAddr)> {
    let (mut src_ip, mut dst_ip, mut sport, mut dport) = (None, None, None, None);
    for part in tuple {
        match part {
            Tuple::Ip(ips) => {
                for ip in ips {
                    match ip {
                        IPTuple::SourceAddress(a) => src_ip = Some(*a),
                        IPTuple::DestinationAddress(a) => dst_ip = Some(*a),
                        _ => {}
                    }
                }
            }
            Tuple::Proto(protos) => {
                for proto in protos {
                    match proto {
                        ProtoTuple::SourcePort(p) => sport = Some(*p),
                        ProtoTuple::DestinationPort(p) => dport = Some(*p),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    match (src_ip, dst_ip, sport, dport) {
        (Some(s), Some(d), Some(sp), Some(dp)) => {
            Ok((SocketAddr::new(s, sp), SocketAddr::new(d, dp)))
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("incomplete conntrack tuple: {tuple:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_netfilter::conntrack::Status;

    fn sock(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn get_request_is_a_tuple_lookup_not_a_dump() {
        let (src, dst) = (sock("192.0.2.2:40000"), sock("203.0.113.2:21"));
        let buf = build_get(src, dst, 42);
        let msg = NetlinkMessage::<NetfilterMessage>::deserialize(&buf).unwrap();
        assert_eq!(buf.len(), msg.header.length as usize);
        // Subsystem ctnetlink (1), IPCTNL_MSG_CT_GET (1).
        assert_eq!(msg.header.message_type, 0x0101);
        assert_eq!(msg.header.flags, NLM_F_REQUEST);
        assert_eq!(msg.header.sequence_number, 42);
        match msg.payload {
            NetlinkPayload::InnerMessage(NetfilterMessage { header, inner, .. }) => {
                assert_eq!(header.family, NetfilterProtoFamily::IPv4);
                assert_eq!(
                    inner,
                    NetfilterMessageInner::Conntrack(ConntrackMessage::Get(vec![
                        ConntrackAttribute::CtaTupleOrig(tcp_tuple(src, dst))
                    ]))
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        // Ports are big-endian on the wire: CTA_PROTO_SRC_PORT (2), len 6.
        assert!(buf.windows(6).any(|w| w == [6, 0, 2, 0, 0x9c, 0x40]));
    }

    #[test]
    fn get_request_v6_uses_ipv6_family() {
        let buf = build_get(sock("[2001:db8:1::2]:1"), sock("[2001:db8:2::2]:21"), 1);
        let msg = NetlinkMessage::<NetfilterMessage>::deserialize(&buf).unwrap();
        match msg.payload {
            NetlinkPayload::InnerMessage(m) => {
                assert_eq!(m.header.family, NetfilterProtoFamily::IPv6)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// A kernel-style answer (IPCTNL_MSG_CT_NEW) carrying `attributes`.
    fn answer(attributes: Vec<ConntrackAttribute>) -> Vec<u8> {
        let mut message = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(NetfilterMessage::new(
                NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0),
                ConntrackMessage::New(attributes),
            )),
        );
        message.finalize();
        let mut buf = vec![0; message.buffer_len()];
        message.serialize(&mut buf);
        buf
    }

    #[test]
    fn entry_yields_both_tuples() {
        let (c, s, nat) = (
            sock("192.0.2.2:40000"),
            sock("203.0.113.2:21"),
            sock("203.0.113.1:61000"),
        );
        let bytes = answer(vec![
            ConntrackAttribute::CtaTupleOrig(tcp_tuple(c, s)),
            ConntrackAttribute::CtaTupleReply(tcp_tuple(s, nat)),
            ConntrackAttribute::CtaStatus(Status::from_bits_retain(0x1be)),
            ConntrackAttribute::CtaMark(0x0100_0000),
        ]);
        assert_eq!(
            parse_entry(&bytes).unwrap(),
            CtTuples {
                orig_src: c,
                orig_dst: s,
                reply_src: s,
                reply_dst: nat
            }
        );
    }

    #[test]
    fn entry_without_reply_tuple_is_invalid_data() {
        let bytes = answer(vec![ConntrackAttribute::CtaTupleOrig(tcp_tuple(
            sock("192.0.2.2:1"),
            sock("203.0.113.2:21"),
        ))]);
        assert_eq!(
            parse_entry(&bytes).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn tuple_without_ports_is_invalid_data() {
        let partial = vec![Tuple::Ip(vec![
            IPTuple::SourceAddress(sock("192.0.2.2:1").ip()),
            IPTuple::DestinationAddress(sock("203.0.113.2:21").ip()),
        ])];
        assert_eq!(
            parse_tcp_tuple(&partial).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn mixed_families_are_invalid_input() {
        let mut ct = Conntrack::open().unwrap();
        let err = ct
            .lookup_tcp(sock("192.0.2.2:1"), sock("[2001:db8::2]:21"))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
