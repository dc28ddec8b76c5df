//! Pinholes as elements of ftp-alg's nftables sets and maps, over netlink.
//!
//! The table itself (sets `pin4`/`pin6`, maps `dnat4`/`dnat6` and the chains
//! that use them) is loaded once at start-up with `nft -f`. Running `nft`
//! per data connection costs milliseconds; here each pinhole is one
//! nf_tables batch on a netlink socket, which costs microseconds.
//!
//! FTPS ranges (sets `ftps4`/`ftps6`, maps `ftpsdnat4`/`ftpsdnat6`, present
//! while `[[ftps]]` is configured) are interval elements of the same kind,
//! added and removed the same way.
//!
//! The element layout is in `elements`, the batch framing in `batch`.

mod batch;
mod elements;

use std::io;
use std::time::Duration;

use netlink_sys::Socket;

use crate::kernel::netlink::{kernel_error, open_socket, recv, send};
use batch::{build_batch, parse_acks, timeout_ms, Op};
use elements::{pinhole_elements, range_elements, Element};
use ftp_alg_proto::pinhole::{Pinhole, RangePinhole};

/// Receive buffer; ACKs are 36 bytes each (the socket uses NETLINK_CAP_ACK).
const RECV_BUF_LEN: usize = 64 * 1024;

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
        self.add_elements(p, &pinhole_elements(p)?, timeout)
    }

    /// Adds the elements of one FTPS range in ONE batch: the interval in
    /// ftps4/ftps6 and, when translated, in ftpsdnat4/ftpsdnat6, with
    /// `timeout` (a safety net: the daemon removes the range when its
    /// session ends, and re-adds it while the session lives, which
    /// refreshes the timeout as for [`NftPinholes::add`]). An overlapping
    /// interval of other ports is refused by the kernel (EEXIST); the
    /// engine never asks for one. Both elements are added or neither.
    pub fn add_range(&mut self, r: &RangePinhole, timeout: Duration) -> io::Result<()> {
        self.add_elements(r, &range_elements(r)?, timeout)
    }

    /// Removes FTPS ranges (as [`NftPinholes::remove_all`]: gone ones are
    /// not an error).
    pub fn remove_ranges(&mut self, ranges: &[RangePinhole]) -> io::Result<()> {
        let mut pending = Vec::new();
        for r in ranges {
            pending.extend(range_elements(r)?);
        }
        self.remove_elements(pending)
    }

    /// Adds `elements` (of `what`) in one batch, all or none.
    fn add_elements(
        &mut self,
        what: &dyn std::fmt::Display,
        elements: &[Element],
        timeout: Duration,
    ) -> io::Result<()> {
        if timeout.is_zero() {
            // The kernel reads a zero timeout as "never expires": a pinhole
            // that stays open forever.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("pinhole {what}: the timeout must not be zero"),
            ));
        }
        let ms = timeout_ms(timeout);
        let results = self.transact(Op::Add, elements, ms)?;
        // Any error aborts the whole batch: report the first one.
        for (element, code) in elements.iter().zip(results) {
            if code != 0 {
                return Err(kernel_error(
                    format!(
                        "adding pinhole {what} to set inet {} {}",
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
        self.remove_elements(pending)
    }

    /// Removes `pending` in as few batches as the kernel allows (see
    /// [`NftPinholes::remove_all`]).
    fn remove_elements(&mut self, mut pending: Vec<Element>) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
