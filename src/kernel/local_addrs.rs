//! Whether an address is one of this host's own: a control session whose
//! server address is gets exact FTPS pinholes from the server's listeners
//! (the core's `engine::listeners`). Read with the interface addresses
//! that `[[nat_override]]` uses, at most once a second, so that an address
//! added at run time is known within a second (until then its sessions
//! are treated as remote: the `[[ftps]]` range, the safe side).

use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use tracing::warn;

use super::nat_override::interface_addresses;

/// How old the address list may be.
const REFRESH: Duration = Duration::from_secs(1);

/// This host's addresses, as last read.
#[derive(Debug, Default)]
pub struct LocalAddresses {
    addrs: Vec<IpAddr>,
    read_at: Option<Instant>,
}

impl LocalAddresses {
    /// True when `ip` is an address of one of this host's interfaces at
    /// `now` (read again when the list is older than a second). A failed
    /// read keeps the last list.
    pub fn contains(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self
            .read_at
            .is_none_or(|t| now.duration_since(t) >= REFRESH)
        {
            self.read_at = Some(now);
            match read() {
                Ok(addrs) => self.addrs = addrs,
                Err(e) => warn!(error = %e, "interface addresses not read; the last list is kept"),
            }
        }
        self.addrs.contains(&ip)
    }
}

fn read() -> io::Result<Vec<IpAddr>> {
    Ok(interface_addresses()?
        .into_iter()
        .map(|(_, ip)| ip)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_local_and_a_documentation_address_is_not() {
        let mut l = LocalAddresses::default();
        let now = Instant::now();
        assert!(l.contains("127.0.0.1".parse().unwrap(), now));
        assert!(!l.contains("198.51.100.254".parse().unwrap(), now));
    }
}
