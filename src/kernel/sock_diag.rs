//! The TCP listeners bound to one of this host's addresses, from the
//! kernel's socket diagnostics (NETLINK_SOCK_DIAG, `SOCK_DIAG_BY_FAMILY`
//! with an `inet_diag_req_v2`, state LISTEN): what the engine compares to
//! find the data listener a local FTPS server opened for a session
//! (`ftp_alg_proto::engine::Listener`, see the core's `engine::listeners`).
//!
//! A dump of another user's sockets needs no capability (measured on this
//! kernel: see tests/sock_diag_root.rs), unlike `/proc/PID/fd`, so ftp-alg
//! keeps CAP_NET_ADMIN only. The kernel filters by local address itself
//! (an `INET_DIAG_BC_S_COND` bytecode), so the cost does not grow with the
//! other listeners of the host; the answer is checked again here.
//!
//! The wire format is built by hand (include/uapi/linux/inet_diag.h,
//! sock_diag.h): two fixed structures and one attribute, smaller than a
//! crate for them.

use std::io;
use std::net::{IpAddr, Ipv6Addr};

use ftp_alg_proto::engine::Listener;
use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket};

use super::netlink;

/// `SOCK_DIAG_BY_FAMILY` (sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;
const IPPROTO_TCP: u8 = 6;
/// `TCP_LISTEN` in the kernel's TCP state numbering.
const TCP_LISTEN: u32 = 10;
/// `INET_DIAG_REQ_BYTECODE`: the request's filter attribute.
const INET_DIAG_REQ_BYTECODE: u16 = 1;
/// `INET_DIAG_BC_S_COND`: match the socket's local address (and port).
const INET_DIAG_BC_S_COND: u8 = 7;
/// Length of `struct nlmsghdr`.
const NLMSG_HDR: usize = 16;
/// Length of `struct inet_diag_req_v2`.
const REQ_LEN: usize = 56;
/// Length of `struct inet_diag_msg`.
const MSG_LEN: usize = 72;
/// Room for one datagram of a dump (the kernel caps them at 32 KiB).
const RECV_BUF: usize = 64 * 1024;

/// One NETLINK_SOCK_DIAG socket and its receive buffer.
pub struct SockDiag {
    socket: Socket,
    buf: Vec<u8>,
    seq: u32,
}

impl SockDiag {
    /// Opens the socket.
    pub fn open() -> io::Result<Self> {
        Ok(SockDiag {
            socket: netlink::open_socket_of(NETLINK_SOCK_DIAG)?,
            buf: Vec::with_capacity(RECV_BUF),
            seq: 0,
        })
    }

    /// The TCP sockets in LISTEN bound to exactly `addr` (an IPv4 address
    /// also as `::ffff:addr` on IPv6 sockets, which is how a server with
    /// `listen_ipv6` binds for IPv4 clients); wildcard listeners are not
    /// listed.
    pub fn listeners(&mut self, addr: IpAddr) -> io::Result<Vec<Listener>> {
        let mut out = Vec::new();
        let families: &[u8] = match addr {
            IpAddr::V4(_) => &[AF_INET, AF_INET6],
            IpAddr::V6(_) => &[AF_INET6],
        };
        for &family in families {
            self.seq = self.seq.wrapping_add(1);
            netlink::send(&self.socket, &request(family, addr, self.seq))?;
            // A dump ends with NLMSG_DONE; bounded by the receive timeout
            // of each datagram and by this count.
            let mut done = false;
            for _ in 0..100_000 {
                netlink::recv(&self.socket, &mut self.buf)?;
                if parse(&self.buf, self.seq, addr, &mut out)? {
                    done = true;
                    break;
                }
            }
            if !done {
                return Err(io::Error::other("socket dump did not end"));
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }
}

/// A dump request for TCP listeners of `family` whose local address is
/// `addr`.
fn request(family: u8, addr: IpAddr, seq: u32) -> Vec<u8> {
    let (cond_family, addr_bytes): (u8, Vec<u8>) = match addr {
        IpAddr::V4(v4) => (AF_INET, v4.octets().to_vec()),
        IpAddr::V6(v6) => (AF_INET6, v6.octets().to_vec()),
    };
    // One op: on a match jump to the end (accept), else past it (reject).
    let op_len = 4 + 8 + addr_bytes.len();
    let attr_len = 4 + op_len;
    let len = NLMSG_HDR + REQ_LEN + attr_len;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // inet_diag_req_v2: family, protocol, ext, pad, states, then the
    // sockid (ports, addresses, interface: all zero = any; cookie: none).
    m.extend_from_slice(&[family, IPPROTO_TCP, 0, 0]);
    m.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    m.extend_from_slice(&[0; 4 + 16 + 16 + 4]);
    m.extend_from_slice(&[0xff; 8]);
    // The filter attribute.
    m.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    m.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
    m.extend_from_slice(&[INET_DIAG_BC_S_COND, op_len as u8]);
    m.extend_from_slice(&(op_len as u16 + 4).to_ne_bytes());
    // inet_diag_hostcond: family, prefix length, port (-1: any), address.
    let prefix = 8 * addr_bytes.len() as u8;
    m.extend_from_slice(&[cond_family, prefix, 0, 0]);
    m.extend_from_slice(&(-1i32).to_ne_bytes());
    m.extend_from_slice(&addr_bytes);
    debug_assert_eq!(m.len(), len);
    m
}

/// Reads one datagram of a dump into `out` (listeners bound to `addr`);
/// true once the dump is complete.
fn parse(buf: &[u8], seq: u32, addr: IpAddr, out: &mut Vec<Listener>) -> io::Result<bool> {
    let mut rest = buf;
    while rest.len() >= NLMSG_HDR {
        let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
        if len < NLMSG_HDR || len > rest.len() {
            return Err(malformed("message length"));
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let msg_seq = u32::from_ne_bytes(rest[8..12].try_into().expect("4 bytes"));
        let body = &rest[NLMSG_HDR..len];
        rest = &rest[len.next_multiple_of(4).min(rest.len())..];
        if msg_seq != seq {
            continue; // an answer to an earlier request that timed out
        }
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = body
                    .get(0..4)
                    .map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes")))
                    .ok_or_else(|| malformed("error message"))?;
                if errno != 0 {
                    return Err(netlink::kernel_error(
                        "socket diagnostics dump".into(),
                        -errno,
                    ));
                }
            }
            SOCK_DIAG_BY_FAMILY => {
                if let Some(l) = listener(body, addr)? {
                    out.push(l);
                }
            }
            _ => {}
        }
    }
    Ok(false)
}

/// The listener an `inet_diag_msg` describes, if it is bound to `addr`.
fn listener(body: &[u8], addr: IpAddr) -> io::Result<Option<Listener>> {
    if body.len() < MSG_LEN {
        return Err(malformed("inet_diag_msg"));
    }
    let port = u16::from_be_bytes([body[4], body[5]]);
    let src: [u8; 16] = body[8..24].try_into().expect("16 bytes");
    let bound = match (body[0], addr) {
        (AF_INET, IpAddr::V4(v4)) => src[..4] == v4.octets(),
        (AF_INET6, IpAddr::V4(v4)) => Ipv6Addr::from(src) == v4.to_ipv6_mapped(),
        (AF_INET6, IpAddr::V6(v6)) => Ipv6Addr::from(src) == v6,
        _ => false,
    };
    if body[1] as u32 != TCP_LISTEN || !bound {
        return Ok(None);
    }
    let inode = u32::from_ne_bytes(body[68..72].try_into().expect("4 bytes"));
    Ok(Some(Listener {
        inode: inode.into(),
        port,
    }))
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed socket diagnostics answer: {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// One inet_diag_msg as the kernel sends it, in its netlink header.
    fn answer(seq: u32, family: u8, state: u8, src: &[u8], port: u16, inode: u32) -> Vec<u8> {
        let mut body = vec![0u8; MSG_LEN];
        body[0] = family;
        body[1] = state;
        body[4..6].copy_from_slice(&port.to_be_bytes());
        body[8..8 + src.len()].copy_from_slice(src);
        body[68..72].copy_from_slice(&inode.to_ne_bytes());
        message(SOCK_DIAG_BY_FAMILY, seq, &body)
    }

    fn message(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn request_layout_matches_the_kernel_structures() {
        let r = request(AF_INET, ip("192.0.2.10"), 7);
        // header + inet_diag_req_v2 + attribute(4) + op(4) + hostcond(8) + 4
        assert_eq!(r.len(), 16 + 56 + 4 + 4 + 8 + 4);
        assert_eq!(
            u32::from_ne_bytes(r[0..4].try_into().unwrap()) as usize,
            r.len()
        );
        assert_eq!(&r[16..18], &[AF_INET, IPPROTO_TCP]);
        assert_eq!(u32::from_ne_bytes(r[20..24].try_into().unwrap()), 1 << 10);
        let op = &r[16 + 56 + 4..];
        assert_eq!(op[0], INET_DIAG_BC_S_COND);
        assert_eq!(op[1], 16, "yes: to the end of the program");
        assert_eq!(u16::from_ne_bytes([op[2], op[3]]), 20, "no: past it");
        assert_eq!(&op[4..6], &[AF_INET, 32]);
        assert_eq!(&op[12..16], &[192, 0, 2, 10]);
        let r6 = request(AF_INET6, ip("2001:db8::10"), 7);
        assert_eq!(r6.len(), 16 + 56 + 4 + 4 + 8 + 16);
    }

    #[test]
    fn answers_are_read_and_checked_again() {
        let a = ip("192.0.2.10");
        let mut dump = answer(3, AF_INET, 10, &[192, 0, 2, 10], 50001, 77);
        // Another address, another state, another request: not listed.
        dump.extend(answer(3, AF_INET, 10, &[192, 0, 2, 11], 50002, 78));
        dump.extend(answer(3, AF_INET, 1, &[192, 0, 2, 10], 50003, 79));
        dump.extend(answer(2, AF_INET, 10, &[192, 0, 2, 10], 50004, 80));
        let mut mapped = [0u8; 16];
        mapped[10] = 0xff;
        mapped[11] = 0xff;
        mapped[12..].copy_from_slice(&[192, 0, 2, 10]);
        dump.extend(answer(3, AF_INET6, 10, &mapped, 50005, 81));
        let mut out = Vec::new();
        assert!(!parse(&dump, 3, a, &mut out).unwrap());
        assert_eq!(
            out,
            [
                Listener {
                    inode: 77,
                    port: 50001
                },
                Listener {
                    inode: 81,
                    port: 50005
                }
            ]
        );
        assert!(parse(&message(NLMSG_DONE, 3, &[0; 4]), 3, a, &mut out).unwrap());
    }

    #[test]
    fn errors_and_malformed_answers_are_errors_not_panics() {
        let a = ip("192.0.2.10");
        let mut out = Vec::new();
        let e = parse(
            &message(NLMSG_ERROR, 1, &(-1i32).to_ne_bytes()),
            1,
            a,
            &mut out,
        );
        assert!(e.is_err(), "an errno answer is an error");
        for cut in 0..90 {
            let m = answer(1, AF_INET, 10, &[192, 0, 2, 10], 1, 1);
            let _ = parse(&m[..cut.min(m.len())], 1, a, &mut out);
        }
        let mut bad = answer(1, AF_INET, 10, &[192, 0, 2, 10], 1, 1);
        bad[0..4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(parse(&bad, 1, a, &mut out).is_err());
    }
}
