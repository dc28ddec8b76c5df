//! One nf_tables batch of set-element messages: BatchBegin, one message per
//! element, BatchEnd, in one datagram (the kernel only treats the messages
//! of one send() as a transaction), and the ACKs that answer it.

use std::io;
use std::time::Duration;

use netlink_packet_core::{
    DefaultNla, ErrorBuffer, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    NLMSG_ERROR, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST,
};
use netlink_packet_netfilter::nftables::{
    DataAttribute, ListAttribute, NfTablesMessage, SetElementAttribute, SetElementList,
    SetElementMessage,
};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};

use super::elements::Element;
use crate::kernel::netlink::invalid_data;

/// nfgenmsg.res_id of a batch message names the subsystem the batch is for.
const NFNL_SUBSYS_NFTABLES: u16 = 10;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Add,
    Remove,
    /// Remove, without failing for a missing element (NFT_MSG_DESTROYSETELEM,
    /// Linux 6.3+): no ENOENT, so no aborted batch.
    Destroy,
}

/// NFTA_DATA_VALUE, the one attribute nested in NFTA_SET_ELEM_KEY_END (the
/// crate takes that attribute's contents as raw NLAs).
const NFTA_DATA_VALUE: u16 = 1;

/// NFT_MSG_DESTROYSETELEM (include/uapi/linux/netfilter/nf_tables.h); the
/// crate has no variant for it, so a DELSETELEM message is re-typed.
const NFT_MSG_DESTROYSETELEM: u16 = 30;

/// Milliseconds for NFTA_SET_ELEM_TIMEOUT, rounded up so that a
/// sub-millisecond timeout does not become zero ("never expires").
pub(super) fn timeout_ms(timeout: Duration) -> u64 {
    u64::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// Serializes BatchBegin, one set-element message per element, BatchEnd,
/// with consecutive sequence numbers from `first_seq`, into one buffer: the
/// kernel only treats messages of one send() as a transaction.
pub(super) fn build_batch(
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
        if let Some(end) = &element.key_end {
            // An interval element is named by both ends, to add and to
            // remove it.
            attributes.push(SetElementAttribute::KeyEnd(vec![DefaultNla::new(
                NFTA_DATA_VALUE,
                end.clone(),
            )]));
        }
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
pub(super) fn parse_acks(datagram: &[u8]) -> io::Result<Vec<(u32, i32)>> {
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
    use super::super::elements::fixtures::dnat_pinhole_v4;
    use super::super::elements::pinhole_elements;
    use super::*;
    use netlink_packet_core::NLM_F_EXCL;
    use netlink_packet_netfilter::NetfilterMessageInner;

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
    fn range_elements_carry_their_key_end_to_add_and_to_remove() {
        use super::super::elements::range_elements;
        let r = ftp_alg_proto::pinhole::RangePinhole {
            src: "192.0.2.10".parse().unwrap(),
            dst: "198.51.100.1".parse().unwrap(),
            low: 50000,
            high: 50100,
            dnat: Some("203.0.113.7".parse().unwrap()),
        };
        let elements = range_elements(&r).unwrap();
        let end = [192, 0, 2, 10, 198, 51, 100, 1, 0xc3, 0xb4, 0, 0];
        // NFTA_SET_ELEM_KEY_END (10 | NLA_F_NESTED), 20 bytes, holding
        // NFTA_DATA_VALUE (1), 16 bytes: the high end, as nft sends it.
        let mut nla = vec![20, 0, 0x0a, 0x80, 16, 0, 1, 0];
        nla.extend(end);
        for op in [Op::Add, Op::Remove, Op::Destroy] {
            let buf = build_batch("ftp_alg", op, &elements, 7_200_000, 1);
            let found = buf.windows(nla.len()).filter(|w| *w == nla).count();
            assert_eq!(found, 2, "the set and the map element each name the end");
        }
        let msgs = parse_all(&build_batch("ftp_alg", Op::Add, &elements, 7_200_000, 1));
        let (_, m) = set_element_message(&msgs[2]);
        let NfTablesMessage::NewSetElement(m) = m else {
            panic!("{m:?}")
        };
        let SetElementList::Elements(list) = &m.attributes[2] else {
            panic!("{m:?}")
        };
        let ListAttribute::Element(attrs) = &list[0] else {
            panic!("{list:?}")
        };
        assert_eq!(
            attrs[2],
            SetElementAttribute::Data(DataAttribute::Value(vec![203, 0, 113, 7])),
            "the map's value is the address alone"
        );
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
}
