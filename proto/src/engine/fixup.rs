//! The packet as it must leave: sequence, acknowledgement and SACK
//! numbers and payload after the edits of both directions.

use crate::packet::{Fixup, TcpSegment};
use crate::seq::SeqNum;

use super::flow::{Dir, Flow};
use super::Verdict;

impl Flow {
    /// Computes the packet as it must leave: this direction's sequence
    /// number and payload after its edits, the other direction's
    /// acknowledgement and SACK edges mapped back through its edits.
    pub(super) fn fixup(
        &mut self,
        dir: Dir,
        seg: &TcpSegment,
        data_seq: SeqNum,
        payload: &[u8],
        packet: &[u8],
    ) -> Verdict {
        // Held bytes released in front of the segment's own (`Hold::carried`).
        let resized = payload.len() != seg.payload(packet).len();
        let (this, other) = self.halves(dir);
        if this.edits.is_identity() && other.edits.is_identity() && !resized {
            return Verdict::Accept;
        }
        let mut rendered = this.edits.render(data_seq, payload);
        let flags = seg.flags;
        if rendered.payload.as_ref().is_some_and(Vec::is_empty)
            && !payload.is_empty()
            && !(flags.syn || flags.fin || flags.rst)
        {
            // Every byte is held (`ftp::held`): a duplicate of the byte
            // before the line, so that the receiver acknowledges at once
            // (RFC 9293 §3.10.7.4) what the sender sent. That byte ends the
            // previous line; at the stream's start, an empty duplicate.
            rendered.seq = rendered.seq.offset(-1);
            if !this.lines.line_is_first() {
                rendered.payload = Some(b"\n".to_vec());
            }
        }
        let seq = rendered.seq.offset(-(seg.flags.syn as i64));
        let ack = if seg.flags.ack {
            other.edits.to_original(seg.ack, false)
        } else {
            seg.ack
        };
        let sack_block = |&(l, r): &(SeqNum, SeqNum)| {
            let (l, r) = (
                other.edits.to_original(l, true),
                other.edits.to_original(r, false),
            );
            l.before(r).then_some((l, r))
        };
        // Mapped twice when a block changes (rare), so that a packet whose
        // blocks stay as they are maps each block once.
        let sack_changed = seg.sack.iter().any(|b| sack_block(b) != Some(*b));
        if seq == seg.seq
            && ack == seg.ack
            && rendered.payload.is_none()
            && !sack_changed
            && !resized
        {
            return Verdict::Accept;
        }
        let payload = rendered
            .payload
            .or_else(|| resized.then(|| payload.to_vec()));
        Verdict::Replace(seg.rebuild(
            packet,
            &Fixup {
                seq,
                ack,
                sack: sack_changed.then(|| seg.sack.iter().filter_map(sack_block).collect()),
                payload,
            },
        ))
    }
}
