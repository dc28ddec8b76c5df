//! The SACK option (RFC 2018): reading its blocks without allocating, and
//! writing mapped blocks back into the same option bytes.

use std::fmt;
use std::ops::Deref;

use crate::seq::SeqNum;

/// TCP option kinds (RFC 9293 §3.2, RFC 2018 §3).
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_SACK: u8 = 5;

/// The most SACK blocks a segment can carry: options take at most 40
/// octets, a SACK option 2 + 8n of them, so n <= 4 (RFC 2018 §3). Two SACK
/// options in one header cannot hold more either (4 + 8n <= 40).
pub const MAX_SACK_BLOCKS: usize = 4;

/// The SACK blocks (left edge, right edge) of a segment, in option order:
/// a fixed array and a length, so that parsing a segment never allocates.
/// Derefs to the slice of the blocks present.
#[derive(Clone, Copy, Default)]
pub struct SackBlocks {
    blocks: [(SeqNum, SeqNum); MAX_SACK_BLOCKS],
    len: u8,
}

impl SackBlocks {
    /// Appends a block; a fifth one is ignored (no well-formed header holds
    /// it, see [`MAX_SACK_BLOCKS`]).
    pub fn push(&mut self, block: (SeqNum, SeqNum)) {
        if let Some(slot) = self.blocks.get_mut(self.len as usize) {
            *slot = block;
            self.len += 1;
        }
    }

    /// The blocks present.
    pub fn as_slice(&self) -> &[(SeqNum, SeqNum)] {
        &self.blocks[..self.len as usize]
    }
}

impl Deref for SackBlocks {
    type Target = [(SeqNum, SeqNum)];

    fn deref(&self) -> &Self::Target {
        self.as_slice()
    }
}

impl FromIterator<(SeqNum, SeqNum)> for SackBlocks {
    /// Collects at most [`MAX_SACK_BLOCKS`] blocks; later ones are ignored.
    fn from_iter<I: IntoIterator<Item = (SeqNum, SeqNum)>>(iter: I) -> Self {
        let mut blocks = SackBlocks::default();
        for b in iter.into_iter().take(MAX_SACK_BLOCKS) {
            blocks.push(b);
        }
        blocks
    }
}

/// Equal when the blocks present are (unused slots do not count).
impl PartialEq for SackBlocks {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SackBlocks {}

impl fmt::Debug for SackBlocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// Walks TCP options, calling `f(kind, offset_of_kind, option_bytes)`.
/// Stops at END or at the first malformed length (RFC 9293 §3.1: options
/// after a malformed one cannot be located).
fn walk_options(options: &[u8], mut f: impl FnMut(u8, usize, &[u8])) {
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            OPT_END => return,
            OPT_NOP => i += 1,
            kind => {
                let Some(&len) = options.get(i + 1) else {
                    return;
                };
                let len = len as usize;
                if len < 2 || i + len > options.len() {
                    return;
                }
                f(kind, i, &options[i..i + len]);
                i += len;
            }
        }
    }
}

/// The blocks of every SACK option in `options`, in order.
pub(super) fn read(options: &[u8]) -> SackBlocks {
    let mut blocks = SackBlocks::default();
    walk_options(options, |kind, _, opt| {
        if kind == OPT_SACK {
            for b in opt[2..].chunks_exact(8) {
                let left = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                let right = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
                blocks.push((SeqNum(left), SeqNum(right)));
            }
        }
    });
    blocks
}

/// Rewrites the first SACK option in place with `kept`; blocks it has no
/// room for, and the bytes of dropped ones, become NOPs before it so the
/// header length stays the same.
pub(super) fn write(options: &mut [u8], kept: &[(SeqNum, SeqNum)]) {
    let mut at = None;
    walk_options(options, |kind, offset, opt| {
        if kind == OPT_SACK && at.is_none() {
            at = Some((offset, opt.len()));
        }
    });
    let Some((offset, len)) = at else { return };
    let slot = &mut options[offset..offset + len];
    slot.fill(OPT_NOP);
    if kept.is_empty() {
        return;
    }
    let new_len = 2 + 8 * kept.len().min((len - 2) / 8);
    // Keep the option at the end of its slot so the NOPs come first, as
    // senders usually align SACK blocks that way.
    let start = len - new_len;
    slot[start] = OPT_SACK;
    slot[start + 1] = new_len as u8;
    for (i, (l, r)) in kept.iter().take((new_len - 2) / 8).enumerate() {
        let b = start + 2 + i * 8;
        slot[b..b + 4].copy_from_slice(&l.0.to_be_bytes());
        slot[b + 4..b + 8].copy_from_slice(&r.0.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_four_blocks_are_kept() {
        let blocks: SackBlocks = (0..6).map(|i| (SeqNum(i), SeqNum(i + 1))).collect();
        assert_eq!(blocks.len(), MAX_SACK_BLOCKS);
        assert_eq!(blocks[3], (SeqNum(3), SeqNum(4)));
        // A SACK option over the whole 40 octets holds 4 blocks and 6 spare
        // octets that are not a fifth one.
        let mut opt = vec![OPT_SACK, 40];
        for i in 0..38u8 {
            opt.push(i);
        }
        assert_eq!(read(&opt).len(), 4);
    }

    #[test]
    fn equality_ignores_unused_slots() {
        let mut a = SackBlocks::default();
        a.push((SeqNum(1), SeqNum(2)));
        let b: SackBlocks = [(SeqNum(1), SeqNum(2))].into_iter().collect();
        assert_eq!(a, b);
        assert_ne!(a, SackBlocks::default());
        assert_eq!(format!("{a:?}"), "[(SeqNum(1), SeqNum(2))]");
    }
}
