//! STUB replaced by the netlink backend.
use crate::pinhole::Pinhole;
use std::io;
use std::time::Duration;
/// Pinhole elements over netlink.
pub struct NftPinholes;
impl NftPinholes {
    /// Opens the backend.
    pub fn open(_table: &str) -> io::Result<Self> {
        Err(io::Error::other("stub"))
    }
    /// Adds a pinhole.
    pub fn add(&mut self, _p: &Pinhole, _t: Duration) -> io::Result<()> {
        Ok(())
    }
    /// Removes a pinhole.
    pub fn remove(&mut self, _p: &Pinhole) -> io::Result<()> {
        Ok(())
    }
}
