//! STUB replaced by the ctnetlink backend.
use std::io;
use std::net::SocketAddr;
/// Both tuples of one TCP conntrack entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtTuples {
    pub orig_src: SocketAddr,
    pub orig_dst: SocketAddr,
    pub reply_src: SocketAddr,
    pub reply_dst: SocketAddr,
}
/// Conntrack socket.
pub struct Conntrack;
impl Conntrack {
    /// Opens.
    pub fn open() -> io::Result<Self> {
        Err(io::Error::other("stub"))
    }
    /// Looks up.
    pub fn lookup_tcp(&mut self, _s: SocketAddr, _d: SocketAddr) -> io::Result<Option<CtTuples>> {
        Ok(None)
    }
}
