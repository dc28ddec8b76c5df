//! Pinholes as elements of ftp-alg's nftables sets and maps, over netlink.
//!
//! The table itself (sets `pin4`/`pin6`, maps `dnat4`/`dnat6` and the chains
//! that use them) is loaded once at start-up with `nft -f`. Running `nft`
//! per data connection costs milliseconds; here each pinhole is one
//! nf_tables batch on a netlink socket, which costs microseconds.
//!
//! Element layout (what `nft` itself sends for these set types): every field
//! of a concatenation is padded to 4 bytes, so `addr . addr . inet_service`
//! is 12 bytes over IPv4 and 36 over IPv6, and the DNAT value
//! `addr . inet_service` is 8 or 20 bytes. Ports are big-endian.

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use netlink_packet_core::{
    ErrorBuffer, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLMSG_ERROR,
    NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST,
};
use netlink_packet_netfilter::nftables::{
    DataAttribute, ListAttribute, NfTablesMessage, SetElementAttribute, SetElementList,
    SetElementMessage,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::Socket;

use crate::kernel::netlink::{invalid_data, kernel_error, open_socket, recv, send};
use ftp_alg_proto::pinhole::Pinhole;

/// nfgenmsg.res_id of a batch message names the subsystem the batch is for.
const NFNL_SUBSYS_NFTABLES: u16 = 10;

/// Receive buffer; ACKs are 36 bytes each (the socket uses NETLINK_CAP_ACK).
const RECV_BUF_LEN: usize = 64 * 1024;

/// Names of the sets and maps in ftp-alg's table (fixed by the ruleset).
const PIN4: &str = "pin4";
const PIN6: &str = "pin6";
const DNAT4: &str = "dnat4";
const DNAT6: &str = "dnat6";

/// Adds and removes pinhole elements in ftp-alg's nftables table.
///
/// One instance owns one netlink socket; calls are synchronous (each waits
/// for the kernel's answer), so use it from one thread.
pub struct NftPinholes {
    socket: Socket,
    /// Sequence number of the next message; answers are matched by it.
    seq: u32,
    table: String,
    recv_buf: Vec<u8>,
    /// The kernel knows NFT_MSG_DESTROYSETELEM (until it says otherwise).
    destroy_supported: bool,
}

/// One set or map element of a pinhole.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Element {
    set: &'static str,
    key: Vec<u8>,
    /// The mapped value, for map elements.
    data: Option<Vec<u8>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Remove,
    /// Remove, without failing for a missing element (NFT_MSG_DESTROYSETELEM,
    /// Linux 6.3+): no ENOENT, so no aborted batch.
    Destroy,
}

/// NFT_MSG_DESTROYSETELEM (include/uapi/linux/netfilter/nf_tables.h); the
/// crate has no variant for it, so a DELSETELEM message is re-typed.
const NFT_MSG_DESTROYSETELEM: u16 = 30;

impl NftPinholes {
    /// Opens a netlink socket for ftp-alg's table `table` (family inet).
    ///
    /// Needs CAP_NET_ADMIN in the current network namespace only when
    /// elements are changed; the socket belongs to the network namespace of
    /// the calling thread.
    pub fn open(table: &str) -> io::Result<Self> {
        Ok(Self {
            socket: open_socket()?,
            seq: 1,
            table: table.to_owned(),
            recv_buf: Vec::with_capacity(RECV_BUF_LEN),
            destroy_supported: true,
        })
    }

    /// Adds the elements of one pinhole in ONE batch and waits for every ACK:
    /// - always a filter element in pin4/pin6 keyed by `p.filter_key()`
    ///   (src . dst . port as announced), with `timeout`;
    /// - when `p.dnat` is `Some(real)`: also an element in dnat4/dnat6 keyed
    ///   by (p.src . p.dst . p.dport) mapping to (real.ip . real.port), with
    ///   `timeout`.
    ///
    /// Re-adding an existing element succeeds and restarts its timeout
    /// (NLM_F_EXCL is not used; NFTA_SET_ELEM_EXPIRATION is sent because
    /// kernels with element-update support, about 6.12 on, only move the
    /// expiry of an existing element when the timeout differs or an
    /// expiration is given; older kernels leave an existing element as is). A DNAT element whose key exists with a
    /// different target is refused by the kernel (EEXIST, measured on 6.18).
    /// Both elements are added or neither.
    /// Mixed address families and a zero `timeout` are `InvalidInput`.
    pub fn add(&mut self, p: &Pinhole, timeout: Duration) -> io::Result<()> {
        if timeout.is_zero() {
            // The kernel reads a zero timeout as "never expires": a pinhole
            // that stays open forever.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("pinhole {p}: the timeout must not be zero"),
            ));
        }
        let ms = timeout_ms(timeout);
        let elements = pinhole_elements(p)?;
        let results = self.transact(Op::Add, &elements, ms)?;
        // Any error aborts the whole batch: report the first one.
        for (element, code) in elements.iter().zip(results) {
            if code != 0 {
                return Err(kernel_error(
                    format!(
                        "adding pinhole {p} to set inet {} {}",
                        self.table, element.set
                    ),
                    code,
                ));
            }
        }
        Ok(())
    }

    /// Removes both elements of a pinhole; elements already gone (used by
    /// the data connection, or expired) are not an error.
    pub fn remove(&mut self, p: &Pinhole) -> io::Result<()> {
        self.remove_all(std::slice::from_ref(p))
    }

    /// Removes the elements of several pinholes in as few batches as the
    /// kernel allows: deleting costs the kernel a commit per batch (about
    /// 10 ms here, measured), so many removals share one.
    ///
    /// A missing element (ENOENT) aborts the whole batch although every
    /// other message is acknowledged, so the elements that do exist are
    /// sent again; each round drops at least one missing element.
    pub fn remove_all(&mut self, pinholes: &[Pinhole]) -> io::Result<()> {
        let mut pending = Vec::new();
        for p in pinholes {
            pending.extend(pinhole_elements(p)?);
        }
        if pending.is_empty() {
            return Ok(());
        }
        if self.destroy_supported {
            // Deleting a missing element aborts the batch, and an aborted
            // nf_tables batch costs 15-25 ms here (measured) against a few
            // microseconds for a committed one; the used filter element of
            // a pinhole is always missing. DESTROY never aborts for that.
            let results = self.transact(Op::Destroy, &pending, 0)?;
            match results.iter().find(|&&code| code != 0) {
                None => return Ok(()),
                Some(&code) if code == libc::EINVAL || code == libc::EOPNOTSUPP => {
                    tracing::info!("kernel has no NFT_MSG_DESTROYSETELEM (before 6.3): removing with DELSETELEM");
                    self.destroy_supported = false;
                }
                Some(&code) => {
                    return Err(kernel_error(
                        format!("removing pinhole elements from table inet {}", self.table),
                        code,
                    ))
                }
            }
        }
        while !pending.is_empty() {
            let sent = pending.len();
            let results = self.transact(Op::Remove, &pending, 0)?;
            let mut existing = Vec::with_capacity(sent);
            for (element, code) in pending.into_iter().zip(results) {
                match code {
                    0 => existing.push(element),
                    libc::ENOENT => {
                        tracing::debug!(set = element.set, "pinhole element already gone");
                    }
                    _ => {
                        return Err(kernel_error(
                            format!(
                                "removing pinhole elements from set inet {} {}",
                                self.table, element.set
                            ),
                            code,
                        ))
                    }
                }
            }
            if existing.len() == sent {
                // Every message was acknowledged: the batch was committed.
                return Ok(());
            }
            pending = existing;
        }
        Ok(())
    }

    /// Sends `elements` as one batch of NEWSETELEM or DELSETELEM messages
    /// and returns, per element, 0 for an ACK or the (positive) errno.
    ///
    /// The kernel answers every message that has NLM_F_ACK, even when
    /// another message of the batch failed and the batch was aborted, so
    /// this reads until each element has its answer. An error about the
    /// batch as a whole (e.g. EPERM) comes as the answer to BatchBegin.
    fn transact(&mut self, op: Op, elements: &[Element], timeout_ms: u64) -> io::Result<Vec<i32>> {
        let begin = self.seq;
        let count = elements.len() as u32;
        // BatchBegin, one message per element, BatchEnd.
        self.seq = self.seq.wrapping_add(count + 2);
        let batch = build_batch(&self.table, op, elements, timeout_ms, begin);
        send(&self.socket, &batch)?;

        let mut results: Vec<Option<i32>> = vec![None; elements.len()];
        let mut missing = elements.len();
        while missing > 0 {
            recv(&self.socket, &mut self.recv_buf)?;
            for (seq, code) in parse_acks(&self.recv_buf)? {
                // Wrapping distance from BatchBegin; answers to earlier
                // batches (left over after a timeout) fall outside.
                let index = seq.wrapping_sub(begin);
                if index == 0 || index == count + 1 {
                    if code != 0 {
                        return Err(kernel_error(
                            format!("nf_tables batch for table inet {}", self.table),
                            code,
                        ));
                    }
                } else if index <= count {
                    let slot = &mut results[index as usize - 1];
                    if slot.is_none() {
                        *slot = Some(code);
                        missing -= 1;
                    }
                }
            }
        }
        Ok(results.into_iter().map(|r| r.unwrap_or(0)).collect())
    }
}

/// Milliseconds for NFTA_SET_ELEM_TIMEOUT, rounded up so that a
/// sub-millisecond timeout does not become zero ("never expires").
fn timeout_ms(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
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
fn pinhole_elements(p: &Pinhole) -> io::Result<Vec<Element>> {
    let v4 = p.src.is_ipv4();
    let same_family = |ip: IpAddr| ip.is_ipv4() == v4;
    if !same_family(p.dst) || p.dnat.is_some_and(|real| !same_family(real.ip())) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("pinhole {p} mixes IPv4 and IPv6 addresses"),
        ));
    }
    // Both elements are looked up with the same tuple: the first packet's,
    // before the DNAT the map applies.
    let (src, dst, port) = p.filter_key();
    let key = concat_key(src, dst, port);
    let mut elements = vec![Element {
        set: if v4 { PIN4 } else { PIN6 },
        key: key.clone(),
        data: None,
    }];
    if let Some(real) = p.dnat {
        elements.push(Element {
            set: if v4 { DNAT4 } else { DNAT6 },
            key,
            data: Some(concat_value(real.ip(), real.port())),
        });
    }
    Ok(elements)
}

/// Serializes BatchBegin, one set-element message per element, BatchEnd,
/// with consecutive sequence numbers from `first_seq`, into one buffer: the
/// kernel only treats messages of one send() as a transaction.
fn build_batch(
    table: &str,
    op: Op,
    elements: &[Element],
    timeout_ms: u64,
    first_seq: u32,
) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut seq = first_seq;
    let control = |message| {
        NetfilterMessage::new(
            NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, NFNL_SUBSYS_NFTABLES),
            message,
        )
    };
    emit(
        &mut buf,
        control(ControlMessage::BatchBegin),
        NLM_F_REQUEST,
        seq,
    );
    for element in elements {
        seq = seq.wrapping_add(1);
        let mut attributes = vec![SetElementAttribute::Key(DataAttribute::Value(
            element.key.clone(),
        ))];
        if op == Op::Add {
            if let Some(data) = &element.data {
                attributes.push(SetElementAttribute::Data(DataAttribute::Value(
                    data.clone(),
                )));
            }
            attributes.push(SetElementAttribute::Timeout(timeout_ms));
            // A re-add updates an existing element (kernels from about 6.12),
            // but its expiry only moves when the timeout differs or an
            // expiration is given: give one so a re-add always refreshes.
            attributes.push(SetElementAttribute::Expiration(timeout_ms));
        }
        let message = SetElementMessage {
            attributes: vec![
                SetElementList::Table(table.to_owned()),
                SetElementList::Set(element.set.to_owned()),
                SetElementList::Elements(vec![ListAttribute::Element(attributes)]),
            ],
        };
        let (message, flags) = match op {
            // No NLM_F_EXCL: an existing element is refreshed, not EEXIST.
            Op::Add => (
                NfTablesMessage::NewSetElement(message),
                NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK,
            ),
            Op::Remove | Op::Destroy => (
                NfTablesMessage::DeleteSetElement(message),
                NLM_F_REQUEST | NLM_F_ACK,
            ),
        };
        let header = NetfilterHeader::new(NetfilterProtoFamily::Inet, 0, 0);
        let start = buf.len();
        emit(&mut buf, NetfilterMessage::new(header, message), flags, seq);
        if op == Op::Destroy {
            // nlmsg_type (bytes 4..6, host order) = subsystem << 8 | message.
            let kind = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DESTROYSETELEM;
            buf[start + 4..start + 6].copy_from_slice(&kind.to_ne_bytes());
        }
    }
    seq = seq.wrapping_add(1);
    emit(
        &mut buf,
        control(ControlMessage::BatchEnd),
        NLM_F_REQUEST,
        seq,
    );
    buf
}

/// Appends one netlink message with the given flags and sequence number.
fn emit(buf: &mut Vec<u8>, message: NetfilterMessage, flags: u16, seq: u32) {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut message = NetlinkMessage::new(header, NetlinkPayload::from(message));
    message.finalize();
    let start = buf.len();
    buf.resize(start + message.buffer_len(), 0);
    message.serialize(&mut buf[start..]);
}

/// The (sequence number, positive errno or 0) of every NLMSG_ERROR message
/// in one datagram; other messages are skipped.
fn parse_acks(datagram: &[u8]) -> io::Result<Vec<(u32, i32)>> {
    let mut acks = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        let msg = NetlinkBuffer::new_checked(rest).map_err(invalid_data)?;
        if msg.message_type() == NLMSG_ERROR {
            let err = ErrorBuffer::new_checked(msg.payload()).map_err(invalid_data)?;
            let code = err.code().map_or(0, |c| c.get().saturating_abs());
            acks.push((msg.sequence_number(), code));
        }
        // Messages are 4-byte aligned within a datagram.
        let len = (msg.length() as usize + 3) & !3;
        rest = rest.get(len..).unwrap_or(&[]);
    }
    Ok(acks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::NLM_F_EXCL;
    use netlink_packet_netfilter::NetfilterMessageInner;
    use std::net::SocketAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sock(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Splits a buffer of concatenated netlink messages and parses each.
    fn parse_all(mut buf: &[u8]) -> Vec<NetlinkMessage<NetfilterMessage>> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let len = NetlinkBuffer::new_checked(buf).unwrap().length() as usize;
            assert_eq!(len % 4, 0, "message length must keep alignment");
            out.push(NetlinkMessage::deserialize(&buf[..len]).unwrap());
            buf = &buf[len..];
        }
        out
    }

    fn set_element_message(
        msg: &NetlinkMessage<NetfilterMessage>,
    ) -> (&NetfilterHeader, &NfTablesMessage) {
        match &msg.payload {
            NetlinkPayload::InnerMessage(NetfilterMessage {
                header,
                inner: NetfilterMessageInner::NfTables(m),
                ..
            }) => (header, m),
            other => panic!("not an nf_tables message: {other:?}"),
        }
    }

    fn expect_control(msg: &NetlinkMessage<NetfilterMessage>, want: ControlMessage, seq: u32) {
        assert_eq!(msg.header.sequence_number, seq);
        assert_eq!(msg.header.flags, NLM_F_REQUEST);
        match &msg.payload {
            NetlinkPayload::InnerMessage(NetfilterMessage {
                header,
                inner: NetfilterMessageInner::None(m),
                ..
            }) => {
                assert_eq!(*m, want);
                assert_eq!(header.family, NetfilterProtoFamily::Unspec);
                assert_eq!(header.res_id, NFNL_SUBSYS_NFTABLES);
            }
            other => panic!("not a batch control message: {other:?}"),
        }
    }

    fn dnat_pinhole_v4() -> Pinhole {
        Pinhole {
            src: ip("192.0.2.10"),
            dst: ip("198.51.100.1"),
            dport: 50000,
            dnat: Some(sock("203.0.113.7:2121")),
        }
    }

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
                    data: None
                },
                Element {
                    set: "dnat4",
                    key: concat_key(ip("192.0.2.10"), ip("198.51.100.1"), 50000),
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

    #[test]
    fn timeout_rounds_up_to_whole_milliseconds() {
        assert_eq!(timeout_ms(Duration::from_nanos(1)), 1);
        assert_eq!(timeout_ms(Duration::from_micros(1500)), 2);
        assert_eq!(timeout_ms(Duration::from_secs(30)), 30_000);
        assert_eq!(timeout_ms(Duration::MAX), u64::MAX);
    }

    #[test]
    fn add_batch_is_begin_elements_end_without_excl() {
        let elements = pinhole_elements(&dnat_pinhole_v4()).unwrap();
        let buf = build_batch("ftp_alg", Op::Add, &elements, 30_000, 7);
        let msgs = parse_all(&buf);
        assert_eq!(msgs.len(), 4);
        expect_control(&msgs[0], ControlMessage::BatchBegin, 7);
        expect_control(&msgs[3], ControlMessage::BatchEnd, 10);
        for (i, (msg, element)) in msgs[1..3].iter().zip(&elements).enumerate() {
            assert_eq!(msg.header.sequence_number, 8 + i as u32);
            assert_eq!(msg.header.flags, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK);
            assert_eq!(msg.header.flags & NLM_F_EXCL, 0);
            let (nfgen, m) = set_element_message(msg);
            assert_eq!(nfgen.family, NetfilterProtoFamily::Inet);
            let mut attrs = vec![SetElementAttribute::Key(DataAttribute::Value(
                element.key.clone(),
            ))];
            if let Some(data) = &element.data {
                attrs.push(SetElementAttribute::Data(DataAttribute::Value(
                    data.clone(),
                )));
            }
            attrs.push(SetElementAttribute::Timeout(30_000));
            attrs.push(SetElementAttribute::Expiration(30_000));
            let want = NfTablesMessage::NewSetElement(SetElementMessage {
                attributes: vec![
                    SetElementList::Table("ftp_alg".into()),
                    SetElementList::Set(element.set.into()),
                    SetElementList::Elements(vec![ListAttribute::Element(attrs)]),
                ],
            });
            assert_eq!(*m, want);
        }
        // NFTA_SET_ELEM_TIMEOUT (type 4, length 12): u64 big-endian milliseconds.
        let mut timeout_nla = vec![12, 0, 4, 0];
        timeout_nla.extend(30_000u64.to_be_bytes());
        assert!(buf.windows(12).any(|w| w == timeout_nla));
    }

    #[test]
    fn remove_batch_sends_only_keys() {
        let elements = pinhole_elements(&dnat_pinhole_v4()).unwrap();
        let msgs = parse_all(&build_batch("t", Op::Remove, &elements, 0, u32::MAX));
        assert_eq!(msgs.len(), 4);
        // Sequence numbers wrap.
        expect_control(&msgs[0], ControlMessage::BatchBegin, u32::MAX);
        expect_control(&msgs[3], ControlMessage::BatchEnd, 2);
        for (msg, element) in msgs[1..3].iter().zip(&elements) {
            assert_eq!(msg.header.flags, NLM_F_REQUEST | NLM_F_ACK);
            let (_, m) = set_element_message(msg);
            let want = NfTablesMessage::DeleteSetElement(SetElementMessage {
                attributes: vec![
                    SetElementList::Table("t".into()),
                    SetElementList::Set(element.set.into()),
                    SetElementList::Elements(vec![ListAttribute::Element(vec![
                        SetElementAttribute::Key(DataAttribute::Value(element.key.clone())),
                    ])]),
                ],
            });
            assert_eq!(*m, want);
        }
    }

    #[test]
    fn destroy_batch_is_a_remove_batch_retyped() {
        let elements = pinhole_elements(&dnat_pinhole_v4()).unwrap();
        let remove = build_batch("t", Op::Remove, &elements, 0, 5);
        let destroy = build_batch("t", Op::Destroy, &elements, 0, 5);
        assert_eq!(remove.len(), destroy.len());
        // Walk the messages: only the element messages' type differs.
        let mut at = 0;
        let mut retyped = 0;
        while at < destroy.len() {
            let len = u32::from_ne_bytes(destroy[at..at + 4].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes(destroy[at + 4..at + 6].try_into().unwrap());
            let old = u16::from_ne_bytes(remove[at + 4..at + 6].try_into().unwrap());
            if kind != old {
                assert_eq!(old, (NFNL_SUBSYS_NFTABLES << 8) | 14, "was DELSETELEM");
                assert_eq!(kind, (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DESTROYSETELEM);
                retyped += 1;
            }
            assert_eq!(destroy[at + 6..at + len], remove[at + 6..at + len]);
            at += (len + 3) & !3;
        }
        assert_eq!(retyped, elements.len());
    }

    /// An NLMSG_ERROR message as the kernel sends it with NETLINK_CAP_ACK.
    fn error_message(seq: u32, code: i32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend(36u32.to_ne_bytes());
        m.extend(NLMSG_ERROR.to_ne_bytes());
        m.extend(0u16.to_ne_bytes());
        m.extend(seq.to_ne_bytes());
        m.extend(0u32.to_ne_bytes());
        m.extend(code.to_ne_bytes());
        m.extend([0u8; 16]); // the request's header
        m
    }

    #[test]
    fn acks_and_errors_are_read_by_sequence_number() {
        let mut datagram = error_message(5, 0);
        // A non-error message in between is skipped.
        let mut other = vec![0u8; 20];
        other[..4].copy_from_slice(&20u32.to_ne_bytes());
        other[4..6].copy_from_slice(&0x0a0cu16.to_ne_bytes());
        datagram.extend(other);
        datagram.extend(error_message(6, -libc::ENOENT));
        assert_eq!(parse_acks(&datagram).unwrap(), [(5, 0), (6, libc::ENOENT)]);
        assert_eq!(
            parse_acks(&datagram[..30]).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn kernel_errors_keep_kind_errno_and_context() {
        let err = kernel_error("adding to set inet ftp_alg pin4".into(), libc::ENOENT);
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("pin4"), "{err}");
        let errno = err
            .get_ref()
            .and_then(|e| e.source())
            .and_then(|s| s.downcast_ref::<io::Error>())
            .and_then(io::Error::raw_os_error);
        assert_eq!(errno, Some(libc::ENOENT));
    }
}
