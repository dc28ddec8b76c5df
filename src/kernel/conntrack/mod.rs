//! NAT mapping of a control connection, read from conntrack over ctnetlink,
//! and the session state ftp-alg keeps in the entry's labels and mark.
//!
//! A GET by ORIGINAL tuple returns the entry with its REPLY tuple; when the
//! gateway NATs the connection, the reply tuple holds the translated
//! addresses (e.g. the SNAT address and port the server sees). That tells
//! ftp-alg what to write into PORT/EPRT without any configuration. The
//! same answer carries the entry's mark and labels, where an earlier
//! instance may have left the session's state (`state`,
//! `docs/durable.md`).

mod state;

pub use state::{CtEntry, StateUpdate};

use std::io;
use std::net::SocketAddr;

use std::ops::ControlFlow;

use netlink_packet_core::{
    ErrorBuffer, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLMSG_DONE,
    NLMSG_ERROR, NLM_F_REQUEST,
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
        Ok(self.lookup_entry(src, dst)?.map(|e| e.tuples))
    }

    /// [`Conntrack::lookup_tcp`] with the entry's mark and labels.
    pub fn lookup_entry(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> io::Result<Option<CtEntry>> {
        same_family(src, dst)?;
        let context = || format!("conntrack lookup tcp {src} -> {dst}");
        self.transact(
            |seq| build_get(src, dst, seq),
            |kind, msg| {
                if kind == NLMSG_ERROR {
                    return ControlFlow::Break(match error_code(msg) {
                        Ok(libc::ENOENT) => Ok(None),
                        // Without NLM_F_ACK a success is the entry itself.
                        Ok(0) => Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "conntrack answered with an ACK instead of the entry",
                        )),
                        Ok(code) => Err(kernel_error(context(), code)),
                        Err(e) => Err(e),
                    });
                }
                // The kernel finds an entry by either of its tuples, so
                // (src -> dst) may have matched the REPLY tuple of some
                // entry: that is not an entry with this ORIGINAL tuple.
                ControlFlow::Break(parse_entry(msg).map(|entry| {
                    let asked = entry.tuples.orig_src == src && entry.tuples.orig_dst == dst;
                    asked.then_some(entry)
                }))
            },
        )
    }

    /// Sends the request `build(seq)` and feeds each answer message to
    /// `on_message(type, bytes)` until it breaks with the result.
    fn transact<T>(
        &mut self,
        build: impl FnOnce(u32) -> Vec<u8>,
        mut on_message: impl FnMut(u16, &[u8]) -> ControlFlow<io::Result<T>>,
    ) -> io::Result<T> {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        send(&self.socket, &build(seq))?;
        loop {
            recv(&self.socket, &mut self.recv_buf)?;
            let mut rest = &self.recv_buf[..];
            while !rest.is_empty() {
                let msg = NetlinkBuffer::new_checked(rest).map_err(invalid_data)?;
                let len = msg.length() as usize;
                // Answers to an earlier request (left over after a timeout)
                // carry another sequence number.
                if msg.sequence_number() == seq {
                    if let ControlFlow::Break(result) = on_message(msg.message_type(), &rest[..len])
                    {
                        return result;
                    }
                }
                // Messages are 4-byte aligned within a datagram.
                rest = rest.get((len + 3) & !3..).unwrap_or(&[]);
            }
        }
    }
}

/// `InvalidInput` for a pair of addresses of different families.
fn same_family(src: SocketAddr, dst: SocketAddr) -> io::Result<()> {
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("conntrack request {src} -> {dst} mixes IPv4 and IPv6"),
        ));
    }
    Ok(())
}

/// The errno of an NLMSG_ERROR message (0 for an ACK).
fn error_code(msg: &[u8]) -> io::Result<i32> {
    let msg = NetlinkBuffer::new_checked(msg).map_err(invalid_data)?;
    Ok(ErrorBuffer::new_checked(msg.payload())
        .map_err(invalid_data)?
        .code()
        .map_or(0, |c| c.get().saturating_abs()))
}

/// The netfilter family of an address.
fn family_of(addr: SocketAddr) -> NetfilterProtoFamily {
    if addr.is_ipv4() {
        NetfilterProtoFamily::IPv4
    } else {
        NetfilterProtoFamily::IPv6
    }
}

/// Serializes one ctnetlink request.
fn request(family: NetfilterProtoFamily, flags: u16, seq: u32, msg: ConntrackMessage) -> Vec<u8> {
    let request = NetfilterMessage::new(NetfilterHeader::new(family, 0, 0), msg);
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut message = NetlinkMessage::new(header, NetlinkPayload::from(request));
    message.finalize();
    let mut buf = vec![0; message.buffer_len()];
    message.serialize(&mut buf);
    buf
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
    // A GET without NLM_F_DUMP is a lookup of one entry by tuple.
    request(
        family_of(src),
        NLM_F_REQUEST,
        seq,
        ConntrackMessage::Get(vec![ConntrackAttribute::CtaTupleOrig(tcp_tuple(src, dst))]),
    )
}

/// The entry in the kernel's answer to a GET (one netlink message).
fn parse_entry(bytes: &[u8]) -> io::Result<CtEntry> {
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
    let (mut mark, mut labels) = (0, 0);
    for attribute in &attributes {
        match attribute {
            ConntrackAttribute::CtaTupleOrig(tuple) => orig = Some(parse_tcp_tuple(tuple)?),
            ConntrackAttribute::CtaTupleReply(tuple) => reply = Some(parse_tcp_tuple(tuple)?),
            ConntrackAttribute::CtaMark(m) => mark = *m,
            other => labels = state::labels_of(other).unwrap_or(labels),
        }
    }
    match (orig, reply) {
        (Some((orig_src, orig_dst)), Some((reply_src, reply_dst))) => Ok(CtEntry {
            tuples: CtTuples {
                orig_src,
                orig_dst,
                reply_src,
                reply_dst,
            },
            mark,
            labels,
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
mod tests;
