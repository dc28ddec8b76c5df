//! Pinholes: the exact data connections that the firewall may let through.
//!
//! A pinhole is pure data. The engine decides which pinholes to open and
//! close; the daemon's nftables backend (`ftp_alg::kernel::nft`) turns them into set and map
//! elements of ftp-alg's own table (see `ftp_alg::rules`).

use std::net::{IpAddr, SocketAddr};

/// One announced data connection: the initiator `src` may open one TCP
/// connection to `dst`:`dport`. When the gateway translates the listening
/// side, `dnat` names the real listener and `dst`:`dport` is the address the
/// initiator was told (the public one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pinhole {
    /// Address the data connection comes from (before any translation).
    pub src: IpAddr,
    /// Address the data connection is sent to, as announced on the wire.
    pub dst: IpAddr,
    /// Port the data connection is sent to, as announced on the wire.
    pub dport: u16,
    /// Real listener behind the gateway, when `dst`:`dport` is translated.
    pub dnat: Option<SocketAddr>,
}

impl Pinhole {
    /// The (source, destination, port) that the first packet of the data
    /// connection carries when it reaches the gateway: what the pinhole
    /// chain matches, at NAT prerouting, before any DNAT.
    pub fn filter_key(&self) -> (IpAddr, IpAddr, u16) {
        (self.src, self.dst, self.dport)
    }

    /// True when every address of the pinhole is IPv4.
    pub fn is_ipv4(&self) -> bool {
        self.src.is_ipv4()
    }
}

impl std::fmt::Display for Pinhole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} -> {}",
            self.src,
            SocketAddr::new(self.dst, self.dport)
        )?;
        if let Some(real) = self.dnat {
            write!(f, " (dnat {real})")?;
        }
        Ok(())
    }
}
