//! The netlink socket plumbing shared by the nf_tables pinhole
//! backend ([`crate::kernel::nft`]), the conntrack lookups
//! ([`crate::kernel::conntrack`]) and the socket diagnostics
//! ([`crate::kernel::sock_diag`]): a socket connected to the kernel with a bounded
//! receive wait, send and receive that survive the daemon's wake-up
//! signals, and kernel errors that keep their errno.

use std::fmt;
use std::io;
use std::time::Duration;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::TimeVal;

/// How long to wait for the kernel's answer before giving up.
pub(crate) const RECV_TIMEOUT: Duration = Duration::from_secs(5);

/// A malformed answer from the kernel.
pub(crate) fn invalid_data(e: netlink_packet_core::DecodeError) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed netlink answer: {e}"),
    )
}

/// A NETLINK_NETFILTER socket connected to the kernel, with a bounded
/// receive wait.
pub(crate) fn open_socket() -> io::Result<Socket> {
    open_socket_of(NETLINK_NETFILTER)
}

/// A netlink socket of `protocol` connected to the kernel, with a bounded
/// receive wait.
pub(crate) fn open_socket_of(protocol: isize) -> io::Result<Socket> {
    let socket = Socket::new(protocol)?;
    // Connecting to the kernel (port 0) binds an automatic port and drops
    // anything that does not come from the kernel.
    socket.connect(&SocketAddr::new(0, 0))?;
    // Error answers would otherwise echo the whole request back.
    socket.set_cap_ack(true)?;
    let timeout = TimeVal::new(RECV_TIMEOUT.as_secs() as libc::time_t, 0);
    setsockopt(&socket, sockopt::ReceiveTimeout, &timeout)?;
    Ok(socket)
}

/// Sends one datagram, retrying when a signal interrupts the call.
pub(crate) fn send(socket: &Socket, buf: &[u8]) -> io::Result<()> {
    loop {
        match socket.send(buf, 0) {
            Ok(n) if n == buf.len() => return Ok(()),
            Ok(n) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("netlink send: {n} of {} bytes sent", buf.len()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Receives one datagram into `buf` (replacing its contents), retrying when
/// a signal interrupts the call; gives up after [`RECV_TIMEOUT`].
pub(crate) fn recv(socket: &Socket, buf: &mut Vec<u8>) -> io::Result<()> {
    loop {
        buf.clear();
        match socket.recv(buf, 0) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no netlink answer from the kernel within {RECV_TIMEOUT:?}"),
                ))
            }
            Err(e) => return Err(e),
        }
    }
}

/// An error the kernel reported, with what was being done.
#[derive(Debug)]
struct KernelError {
    context: String,
    errno: io::Error,
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.errno)
    }
}

impl std::error::Error for KernelError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.errno)
    }
}

/// An io::Error whose kind follows `errno`, whose message says what failed
/// and whose source is the raw OS error (for callers that need the errno).
pub(crate) fn kernel_error(context: String, errno: i32) -> io::Error {
    let errno = io::Error::from_raw_os_error(errno);
    io::Error::new(errno.kind(), KernelError { context, errno })
}
