//! Unit tests of the ctnetlink messages (no root).

use super::*;
use netlink_packet_core::Nla;
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
        parse_entry(&bytes).unwrap().tuples,
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

#[test]
fn labels_are_host_order_words_as_the_kernel_keeps_them() {
    let labels = (1u128 << 12) | (0xdead_beef_u128 << 64) | (1 << 127);
    let bytes = state::label_bytes(labels);
    assert_eq!(&bytes[8..12], &0xdead_beef_u32.to_ne_bytes());
    assert_eq!(state::labels_from_bytes(&bytes), labels);
    // A kernel with a shorter bitmap: the rest reads as zero.
    assert_eq!(state::labels_from_bytes(&bytes[..8]), 1 << 12);
}

#[test]
fn update_changes_an_existing_entry_with_masks() {
    let (c, s) = (sock("192.0.2.2:40000"), sock("203.0.113.2:21"));
    let mask = 0xffff_u128 << 12;
    let update = StateUpdate {
        mark: 0x0200_0000,
        mark_mask: 0x0200_0000,
        labels: Some((!0, mask)),
        liberal: true,
    };
    let buf = state::build_update(c, s, &update, 7);
    let msg = NetlinkMessage::<NetfilterMessage>::deserialize(&buf).unwrap();
    // IPCTNL_MSG_CT_NEW (0), an ACKed request, and NOT NLM_F_CREATE: an
    // update must never make an entry up.
    assert_eq!(msg.header.message_type, 0x0100);
    assert_eq!(
        msg.header.flags,
        NLM_F_REQUEST | netlink_packet_core::NLM_F_ACK
    );
    assert_eq!(msg.header.flags & netlink_packet_core::NLM_F_CREATE, 0);
    let NetlinkPayload::InnerMessage(NetfilterMessage {
        inner: NetfilterMessageInner::Conntrack(ConntrackMessage::New(attrs)),
        ..
    }) = msg.payload
    else {
        panic!("not a CT_NEW");
    };
    assert_eq!(attrs[0], ConntrackAttribute::CtaTupleOrig(tcp_tuple(c, s)));
    assert_eq!(attrs[1], ConntrackAttribute::CtaMark(0x0200_0000));
    // BE_LIBERAL (8) set under its mask in both directions:
    // CTA_PROTOINFO_TCP_FLAGS_ORIGINAL (4) and _REPLY (5), 2 bytes each.
    assert!(buf.windows(6).any(|w| w == [6, 0, 4, 0, 8, 8]));
    assert!(buf.windows(6).any(|w| w == [6, 0, 5, 0, 8, 8]));
    let raw = |kind: u16| {
        attrs.iter().find_map(|a| match a {
            ConntrackAttribute::Other(n) if n.kind() == kind => {
                let mut v = vec![0; n.value_len()];
                n.emit_value(&mut v);
                Some(v)
            }
            _ => None,
        })
    };
    assert_eq!(
        raw(21).unwrap(),
        0x0200_0000u32.to_be_bytes(),
        "CTA_MARK_MASK"
    );
    // Only the bits under the mask are sent as set.
    assert_eq!(
        state::labels_from_bytes(&raw(22).unwrap()),
        mask,
        "CTA_LABELS"
    );
    assert_eq!(
        state::labels_from_bytes(&raw(23).unwrap()),
        mask,
        "CTA_LABELS_MASK"
    );
}

#[test]
fn entry_yields_mark_and_labels() {
    let (c, s) = (sock("192.0.2.2:40000"), sock("203.0.113.2:21"));
    let labels = 0x1234_5678_u128 << 40;
    let bytes = answer(vec![
        ConntrackAttribute::CtaTupleOrig(tcp_tuple(c, s)),
        ConntrackAttribute::CtaTupleReply(tcp_tuple(s, c)),
        ConntrackAttribute::CtaMark(0x0300_0000),
        ConntrackAttribute::Other(netlink_packet_core::DefaultNla::new(
            22,
            state::label_bytes(labels).to_vec(),
        )),
    ]);
    let e = parse_entry(&bytes).unwrap();
    assert_eq!((e.mark, e.labels), (0x0300_0000, labels));
}

#[test]
fn marked_dump_is_filtered_by_the_kernel() {
    let buf = state::build_dump_marked(sock("[2001:db8::2]:1"), 0x0200_0000, 3);
    let msg = NetlinkMessage::<NetfilterMessage>::deserialize(&buf).unwrap();
    assert_eq!(msg.header.message_type, 0x0101);
    assert_ne!(msg.header.flags & netlink_packet_core::NLM_F_DUMP, 0);
    assert!(
        buf.windows(8).any(|w| w == [8, 0, 8, 0, 2, 0, 0, 0]),
        "CTA_MARK"
    );
    assert!(
        buf.windows(8).any(|w| w == [8, 0, 21, 0, 2, 0, 0, 0]),
        "CTA_MARK_MASK"
    );
}

#[test]
fn update_without_labels_clears_a_mark_bit() {
    let (c, s) = (sock("192.0.2.2:40000"), sock("203.0.113.2:21"));
    let clear = StateUpdate {
        mark: 0,
        mark_mask: 0x0200_0000,
        labels: None,
        liberal: false,
    };
    let buf = state::build_update(c, s, &clear, 8);
    // CTA_MARK 0, CTA_MARK_MASK the bit, and no CTA_LABELS (22).
    assert!(buf.windows(8).any(|w| w == [8, 0, 8, 0, 0, 0, 0, 0]));
    assert!(buf.windows(8).any(|w| w == [8, 0, 21, 0, 2, 0, 0, 0]));
    assert!(!buf.windows(4).any(|w| w == [20, 0, 22, 0]));
}
