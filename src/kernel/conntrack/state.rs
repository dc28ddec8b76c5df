//! The session state ftp-alg keeps in a control connection's conntrack
//! entry: labels and a mark bit, each written with a mask (so an admin's
//! own bits survive), read back with the entry. Encoding in
//! `ftp_alg_proto::durable`; the bits in `docs/durable.md`.

use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;

use netlink_packet_core::{DefaultNla, Nla, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, ProtoInfo, ProtoInfoTCP, TCPFlags,
};

use super::{
    error_code, family_of, kernel_error, parse_entry, request, same_family, tcp_tuple, Conntrack,
    CtTuples, NLMSG_DONE, NLMSG_ERROR,
};

/// CTA_MARK_MASK, CTA_LABELS, CTA_LABELS_MASK (linux/netfilter/nfnetlink_conntrack.h).
const CTA_MARK_MASK: u16 = 21;
const CTA_LABELS: u16 = 22;
const CTA_LABELS_MASK: u16 = 23;

/// One conntrack entry as ftp-alg reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtEntry {
    /// Both tuples.
    pub tuples: CtTuples,
    /// The connection mark (0 when the kernel sent none).
    pub mark: u32,
    /// The 128 label bits (0 when the entry has no label extension).
    pub labels: u128,
}

/// CTA_LABELS bytes: the kernel's label bitmap is an array of u32 words in
/// host order (`nf_connlabels_replace`); bit n is bit n % 32 of word n / 32.
pub(crate) fn label_bytes(labels: u128) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, word) in out.chunks_exact_mut(4).enumerate() {
        word.copy_from_slice(&((labels >> (32 * i)) as u32).to_ne_bytes());
    }
    out
}

/// The inverse of [`label_bytes`]; a shorter bitmap is zero-extended.
pub(crate) fn labels_from_bytes(bytes: &[u8]) -> u128 {
    bytes
        .chunks_exact(4)
        .take(4)
        .enumerate()
        .fold(0, |acc, (i, w)| {
            let word = u32::from_ne_bytes([w[0], w[1], w[2], w[3]]);
            acc | (u128::from(word) << (32 * i))
        })
}

/// The labels if `attribute` is CTA_LABELS.
pub(crate) fn labels_of(attribute: &ConntrackAttribute) -> Option<u128> {
    match attribute {
        ConntrackAttribute::Other(nla) if nla.kind() == CTA_LABELS => {
            let mut value = vec![0; nla.value_len()];
            nla.emit_value(&mut value);
            Some(labels_from_bytes(&value))
        }
        _ => None,
    }
}

/// A change of a conntrack entry's mark and labels, each under its mask:
/// bits outside the masks are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateUpdate {
    /// New values of the mark bits in `mark_mask`.
    pub mark: u32,
    /// The mark bits changed.
    pub mark_mask: u32,
    /// New label bits and the bits changed; `None` leaves the labels.
    pub labels: Option<(u128, u128)>,
    /// Set IP_CT_TCP_FLAG_BE_LIBERAL on both directions: while no instance
    /// runs, a client's packet that was not adjusted (its acknowledgement
    /// beyond what the server sent) must reach ftp-alg's hold rule, which
    /// drops it, instead of being marked INVALID by conntrack first. Only
    /// this control connection's window checks are relaxed (DESIGN.md).
    pub liberal: bool,
}

/// IP_CT_TCP_FLAG_BE_LIBERAL (linux/netfilter/nf_conntrack_tcp.h).
const TCP_FLAG_BE_LIBERAL: u8 = 0x08;

/// The update of the entry with original tuple `src -> dst`:
/// IPCTNL_MSG_CT_NEW without NLM_F_CREATE (change an existing entry, never
/// create one), mark and labels each with its mask, acknowledged.
pub(crate) fn build_update(src: SocketAddr, dst: SocketAddr, u: &StateUpdate, seq: u32) -> Vec<u8> {
    let nla = |kind, value: &[u8]| ConntrackAttribute::Other(DefaultNla::new(kind, value.to_vec()));
    let mut attributes = vec![
        ConntrackAttribute::CtaTupleOrig(tcp_tuple(src, dst)),
        // The kernel keeps (old & ~mask) ^ mark.
        ConntrackAttribute::CtaMark(u.mark & u.mark_mask),
        nla(CTA_MARK_MASK, &u.mark_mask.to_be_bytes()),
    ];
    if u.liberal {
        // The crate's flags type is non-exhaustive: built from its bytes
        // (flags, mask).
        let flags =
            || TCPFlags::parse(&[TCP_FLAG_BE_LIBERAL, TCP_FLAG_BE_LIBERAL]).expect("two bytes");
        attributes.push(ConntrackAttribute::CtaProtoInfo(vec![ProtoInfo::TCP(
            vec![
                ProtoInfoTCP::OriginalFlags(flags()),
                ProtoInfoTCP::ReplyFlags(flags()),
            ],
        )]));
    }
    if let Some((labels, mask)) = u.labels {
        attributes.push(nla(CTA_LABELS, &label_bytes(labels & mask)));
        attributes.push(nla(CTA_LABELS_MASK, &label_bytes(mask)));
    }
    request(
        family_of(src),
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        ConntrackMessage::New(attributes),
    )
}

/// A dump of the entries whose mark has every bit of `mark` (the kernel
/// filters by CTA_MARK/CTA_MARK_MASK), of `family_of(like)`.
pub(crate) fn build_dump_marked(like: SocketAddr, mark: u32, seq: u32) -> Vec<u8> {
    request(
        family_of(like),
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        ConntrackMessage::Get(vec![
            ConntrackAttribute::CtaMark(mark),
            ConntrackAttribute::Other(DefaultNla::new(CTA_MARK_MASK, mark.to_be_bytes().to_vec())),
        ]),
    )
}

impl Conntrack {
    /// Changes the mark and labels of the TCP entry whose original tuple is
    /// `src -> dst` as `update` says. ENOENT when the entry is gone; ENOSPC
    /// when it was created while no rule used `ct label` (DESIGN.md), in
    /// which case the kernel has already applied the mark.
    pub fn update_state(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        update: &StateUpdate,
    ) -> io::Result<()> {
        same_family(src, dst)?;
        let context = || format!("conntrack update tcp {src} -> {dst}");
        self.transact(
            |seq| build_update(src, dst, update, seq),
            |kind, msg| match kind {
                NLMSG_ERROR => ControlFlow::Break(match error_code(msg) {
                    Ok(0) => Ok(()),
                    Ok(code) => Err(kernel_error(context(), code)),
                    Err(e) => Err(e),
                }),
                _ => ControlFlow::Continue(()),
            },
        )
    }

    /// The TCP entry whose original source is `src` and whose reply source
    /// is `reply_src`, among the entries carrying the mark bit(s) `mark`.
    /// For a server's packet seen before the reverse of a destination NAT,
    /// where neither tuple is fully known; the dump is filtered by the
    /// kernel, so it lists only ftp-alg's edited control connections.
    pub fn find_marked(
        &mut self,
        src: SocketAddr,
        reply_src: SocketAddr,
        mark: u32,
    ) -> io::Result<Option<CtEntry>> {
        same_family(src, reply_src)?;
        let mut found = None;
        let context = || format!("conntrack dump for {src} (reply from {reply_src})");
        self.transact(
            |seq| build_dump_marked(src, mark, seq),
            |kind, msg| match kind {
                NLMSG_DONE => ControlFlow::Break(Ok(())),
                NLMSG_ERROR => ControlFlow::Break(match error_code(msg) {
                    Ok(0) => Ok(()),
                    Ok(code) => Err(kernel_error(context(), code)),
                    Err(e) => Err(e),
                }),
                _ => {
                    // An entry of another protocol has no ports: skipped.
                    if let Ok(e) = parse_entry(msg) {
                        if e.tuples.orig_src == src && e.tuples.reply_src == reply_src {
                            found = Some(e);
                        }
                    }
                    ControlFlow::Continue(())
                }
            },
        )?;
        Ok(found)
    }
}
