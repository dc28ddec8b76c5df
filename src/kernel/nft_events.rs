//! Notice of ruleset changes: a netlink socket subscribed to the nf_tables
//! event group (NFNLGRP_NFTABLES), which the kernel tells about every
//! committed change of a table, chain, rule, set or element. iptables-nft
//! and ip6tables-nft write nf_tables too, so `iptables-restore` shows up
//! here as well as `nft -f`. A firewall reload that takes ftp-alg's rules
//! away is a burst of these; the caller then checks what is missing,
//! instead of running `nft` on a timer.

use std::io;
use std::time::Duration;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

/// NFNLGRP_NFTABLES (include/uapi/linux/netfilter/nfnetlink.h).
const NFNLGRP_NFTABLES: u32 = 7;

/// The nfnetlink subsystem of nf_tables: the high byte of the message type.
const NFNL_SUBSYS_NFTABLES: u16 = 10;

/// nf_tables message types (the low byte) that cannot take anything of
/// ftp-alg's away: element changes (ftp-alg's own pinholes, one per data
/// connection, and an admin's dynamic sets alike: an element never holds a
/// table, chain or rule), the generation notice that ends every
/// transaction, and traces. NFT_MSG_{NEW,GET,DEL}SETELEM = 12, 13, 14,
/// NEWGEN = 15, GETGEN = 16, TRACE = 17, DESTROYSETELEM = 30,
/// GETSETELEM_RESET = 33 (include/uapi/linux/netfilter/nf_tables.h).
const HARMLESS: [u16; 8] = [12, 13, 14, 15, 16, 17, 30, 33];

/// Size of a netlink message header.
const NLMSG_HDRLEN: usize = 16;

/// Receive buffer for one datagram: each event is one message of a few
/// hundred bytes; a longer one is truncated, and its header is all that is
/// read.
const RECV_BUF_LEN: usize = 64 * 1024;

/// Socket receive buffer asked for: a restore of a large ruleset is a
/// burst of one message per rule. Overrunning it is not fatal (see
/// [`NftEvents::wait`]).
const SOCKET_BUF_LEN: usize = 1 << 20;

/// How long [`NftEvents::wait`] blocks at most.
pub const WAIT: Duration = Duration::from_secs(1);

/// A socket subscribed to nf_tables events in the network namespace of
/// the calling thread. Needs CAP_NET_ADMIN.
pub struct NftEvents {
    socket: Socket,
    buf: Vec<u8>,
}

impl NftEvents {
    /// Opens the socket and joins the nf_tables event group.
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind(&SocketAddr::new(0, 0))?;
        socket.add_membership(NFNLGRP_NFTABLES)?;
        // Best effort: the kernel caps it at net.core.rmem_max.
        let _ = socket.set_rx_buf_sz(SOCKET_BUF_LEN);
        let timeout = TimeVal::new(WAIT.as_secs() as libc::time_t, 0);
        setsockopt(&socket, sockopt::ReceiveTimeout, &timeout)?;
        Ok(NftEvents {
            socket,
            buf: Vec::with_capacity(RECV_BUF_LEN),
        })
    }

    /// Waits for one datagram of events, at most [`WAIT`] (or until a
    /// signal interrupts the wait). True when it may have taken something
    /// of ftp-alg's away, or when events were lost (ENOBUFS: the socket
    /// overran, so nothing can be ruled out); false for a quiet wait or
    /// harmless events only.
    pub fn wait(&mut self) -> io::Result<bool> {
        self.buf.clear();
        match self.socket.recv(&mut self.buf, 0) {
            Ok(_) => Ok(may_remove_ours(&self.buf)),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

/// Whether a datagram of nf_tables events holds a message that may have
/// removed something of ftp-alg's: any nf_tables message but the
/// `HARMLESS` ones. Additions count too (a rule replaced in place comes
/// as one), at the cost of a check that finds nothing. Pure; a malformed
/// or truncated datagram is read as far as its headers go.
pub fn may_remove_ours(datagram: &[u8]) -> bool {
    let mut rest = datagram;
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if kind >> 8 == NFNL_SUBSYS_NFTABLES && !HARMLESS.contains(&(kind & 0xff)) {
            return true;
        }
        // NLMSG_ALIGN; a length shorter than a header ends the walk.
        let step = len.checked_add(3).map(|l| l & !3);
        match step {
            Some(step) if step >= NLMSG_HDRLEN && step < rest.len() => rest = &rest[step..],
            _ => break,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One netlink message of nf_tables type `msg` with `payload` bytes.
    fn message(msg: u16, payload: usize) -> Vec<u8> {
        let len = (NLMSG_HDRLEN + payload) as u32;
        let mut m = Vec::new();
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | msg).to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.resize(m.len() + payload, 0);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    const NEWTABLE: u16 = 0;
    const DELTABLE: u16 = 2;
    const DELCHAIN: u16 = 5;
    const DELRULE: u16 = 8;
    const NEWSETELEM: u16 = 12;
    const DELSETELEM: u16 = 14;
    const NEWGEN: u16 = 15;

    #[test]
    fn pinhole_updates_are_ignored() {
        // What every pinhole add and removal of ftp-alg's raises.
        for ours in [NEWSETELEM, DELSETELEM, 30] {
            let mut d = message(ours, 37);
            d.extend(message(NEWGEN, 20));
            assert!(!may_remove_ours(&d), "type {ours}");
        }
    }

    #[test]
    fn removals_count_wherever_they_are_in_the_datagram() {
        for removal in [DELTABLE, DELCHAIN, DELRULE, NEWTABLE] {
            let mut d = message(NEWSETELEM, 5);
            d.extend(message(removal, 33));
            assert!(may_remove_ours(&d), "type {removal}");
            assert!(may_remove_ours(&message(removal, 0)), "type {removal}");
        }
    }

    #[test]
    fn other_subsystems_and_garbage_are_ignored() {
        // Same message number, conntrack's subsystem (1).
        let mut m = message(DELTABLE, 4);
        m[5] = 1;
        assert!(!may_remove_ours(&m));
        assert!(!may_remove_ours(&[]));
        assert!(!may_remove_ours(&[0xff; 15]));
        // A length of 0 or one past the end stops the walk, never loops.
        let mut zero = message(NEWGEN, 0);
        zero[..4].copy_from_slice(&0u32.to_ne_bytes());
        zero.extend(message(DELTABLE, 0));
        assert!(!may_remove_ours(&zero));
        let mut huge = message(NEWGEN, 0);
        huge[..4].copy_from_slice(&u32::MAX.to_ne_bytes());
        assert!(!may_remove_ours(&huge));
        // Truncated after a header: the header still counts.
        assert!(may_remove_ours(&message(DELRULE, 100)[..NLMSG_HDRLEN]));
    }
}
