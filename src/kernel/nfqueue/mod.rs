//! An NFQUEUE socket of ftp-alg's own, replacing the `nfq` crate: packets
//! and the kernel's error answers come out as values (a malformed message
//! is an error, never a panic), a verdict can set the packet mark, and the
//! socket's descriptor can be handed to a new program image across
//! `exec` for an upgrade without a gap (the queue stays bound, packets
//! wait in the socket meanwhile).

mod wire;

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use nix::sys::socket::{setsockopt, sockopt};

use wire::{Incoming, Request};
pub use wire::{Packet, Verdict};

/// Largest packet copied to userspace: any IP packet.
const COPY_RANGE: u32 = 0xffff;

/// Receive buffer: one datagram holds one packet of up to 64 KiB plus its
/// attributes, or several small ones.
const RECV_BUF: usize = 0x10000 + 0x1000;

/// The socket's receive buffer (the kernel doubles it for its own
/// bookkeeping): room for thousands of queued control packets.
const RECV_SOCKET_BUFFER: usize = 8 << 20;

/// Why [`NfQueue::recv`] returned no packet.
#[derive(Debug)]
pub enum RecvError {
    /// A signal interrupted the wait (the daemon's wake-ups).
    Interrupted,
    /// Non-blocking mode and nothing queued.
    WouldBlock,
    /// The socket's buffer overflowed (ENOBUFS): the kernel dropped queued
    /// packets before they reached ftp-alg; their senders retransmit.
    Overrun,
    /// The kernel refused a verdict (its errno): for example ENOENT, a
    /// packet it no longer holds because its hook was unregistered while
    /// a chain was deleted. That one packet is lost; the queue is fine.
    VerdictRefused(i32),
    /// A message that does not parse (the rest of its datagram is lost).
    Malformed(&'static str),
    /// The socket itself failed.
    Socket(io::Error),
}

impl std::fmt::Display for RecvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecvError::Interrupted => f.write_str("interrupted"),
            RecvError::WouldBlock => f.write_str("nothing queued"),
            RecvError::Overrun => f.write_str("queue overrun (ENOBUFS)"),
            RecvError::VerdictRefused(e) => {
                write!(f, "verdict refused: {}", io::Error::from_raw_os_error(*e))
            }
            RecvError::Malformed(why) => write!(f, "malformed nfqueue message: {why}"),
            RecvError::Socket(e) => write!(f, "nfqueue socket: {e}"),
        }
    }
}

/// One bound queue.
pub struct NfQueue {
    socket: Socket,
    queue: u16,
    recv_buf: Vec<u8>,
    /// Messages of the last datagram not yet returned.
    pending: VecDeque<Incoming>,
    request: Request,
}

impl NfQueue {
    /// Opens a socket and binds queue `queue`, whole packets, at most
    /// `max_len` waiting in the kernel. Binding a queue another socket
    /// holds fails with EPERM.
    pub fn bind(queue: u16, max_len: u32) -> io::Result<NfQueue> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        // Only the kernel (port 0) may talk to this socket.
        socket.connect(&SocketAddr::new(0, 0))?;
        // Error answers would otherwise echo the whole verdict back.
        socket.set_cap_ack(true)?;
        // Overruns must be seen: they are counted and logged.
        socket.set_no_enobufs(false)?;
        // Room in the socket for what the queue may hold: the default
        // buffer (rmem_default, about 200 KiB) holds about 150 queued
        // packets, far fewer than the queue's `max_len`; the kernel drops
        // the rest while the worker is busy (measured: about 5,000 control
        // packets dropped in a burst of 1,000 sessions). CAP_NET_ADMIN may
        // go beyond rmem_max; without it the kernel's cap applies.
        let want = RECV_SOCKET_BUFFER;
        if setsockopt(&socket, sockopt::RcvBufForce, &want).is_err() {
            let _ = setsockopt(&socket, sockopt::RcvBuf, &want);
        }
        let mut q = NfQueue::from_socket(socket, queue);
        let bind = q.request.bind(queue).to_vec();
        q.request_acked(&bind).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot bind NFQUEUE {queue} (is another instance running?): {e}"),
            )
        })?;
        let params = q.request.params(queue, COPY_RANGE, max_len).to_vec();
        q.request_acked(&params)?;
        Ok(q)
    }

    fn from_socket(socket: Socket, queue: u16) -> NfQueue {
        NfQueue {
            socket,
            queue,
            recv_buf: Vec::with_capacity(RECV_BUF),
            pending: VecDeque::new(),
            request: Request::default(),
        }
    }

    /// Takes over a socket that an earlier program image bound to `queue`
    /// and handed over with [`NfQueue::into_handover`].
    pub fn from_handover(fd: OwnedFd, queue: u16) -> NfQueue {
        // SAFETY: the fd is an owned, open netlink socket (it was one when
        // handed over, and nothing else holds it).
        let socket = unsafe { Socket::from_raw_fd(fd.into_raw_fd()) };
        NfQueue::from_socket(socket, queue)
    }

    /// The socket's descriptor, to survive `exec` (close-on-exec cleared)
    /// and be taken over by [`NfQueue::from_handover`]. The queue stays
    /// bound: packets wait in the socket until the new image reads them.
    pub fn into_handover(self) -> io::Result<OwnedFd> {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag};
        // SAFETY: the socket owns the fd; ownership moves to the OwnedFd.
        let fd = unsafe { OwnedFd::from_raw_fd(self.socket.into_raw_fd()) };
        fcntl(&fd, FcntlArg::F_SETFD(FdFlag::empty())).map_err(io::Error::from)?;
        Ok(fd)
    }

    /// The queue number.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Switches between blocking and non-blocking receives.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.socket.set_non_blocking(nonblocking)
    }

    /// Sends a config request and waits for its ACK.
    fn request_acked(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.socket.send(bytes, 0)?;
        // Packets may already arrive; they are kept for `recv`.
        for _ in 0..64 {
            match self.next()? {
                Incoming::Ack(0) => return Ok(()),
                Incoming::Ack(errno) => return Err(io::Error::from_raw_os_error(errno)),
                other => self.pending.push_back(other),
            }
        }
        Err(io::Error::other("no answer to an nfqueue config request"))
    }

    /// The next message, reading a datagram when none is pending.
    fn next(&mut self) -> Result<Incoming, RecvError> {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Ok(m);
            }
            self.recv_buf.clear();
            match self.socket.recv(&mut self.recv_buf, libc::MSG_TRUNC) {
                Ok(n) if n > RECV_BUF => return Err(RecvError::Malformed("datagram truncated")),
                Ok(_) => {}
                Err(e) => {
                    return Err(match e.raw_os_error() {
                        Some(libc::EINTR) => RecvError::Interrupted,
                        Some(libc::EAGAIN) => RecvError::WouldBlock,
                        Some(libc::ENOBUFS) => RecvError::Overrun,
                        _ => RecvError::Socket(e),
                    })
                }
            }
            let pending = &mut self.pending;
            if let Err(e) = wire::parse(&self.recv_buf, |m| pending.push_back(m)) {
                return Err(RecvError::Malformed(e.0));
            }
        }
    }

    /// The next queued packet.
    pub fn recv(&mut self) -> Result<Packet, RecvError> {
        loop {
            match self.next()? {
                Incoming::Packet(p) => return Ok(p),
                Incoming::Ack(0) | Incoming::Other => continue,
                Incoming::Ack(errno) => return Err(RecvError::VerdictRefused(errno)),
            }
        }
    }

    /// Gives the verdict for packet `id`, with a new payload and a new mark
    /// if given. The kernel answers only an error, which a later
    /// [`NfQueue::recv`] reports.
    pub fn verdict(
        &mut self,
        id: u32,
        verdict: Verdict,
        payload: Option<&[u8]>,
        mark: Option<u32>,
    ) -> io::Result<()> {
        let queue = self.queue;
        let bytes = self.request.verdict(queue, id, verdict, payload, mark);
        loop {
            match self.socket.send(bytes, 0) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl From<RecvError> for io::Error {
    fn from(e: RecvError) -> io::Error {
        match e {
            RecvError::Socket(e) => e,
            other => io::Error::other(other.to_string()),
        }
    }
}

impl AsRawFd for NfQueue {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }
}
