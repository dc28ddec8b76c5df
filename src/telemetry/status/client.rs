//! The query of `ftp-alg status`: connect to the daemon's status socket
//! and read its answer, within a time limit.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Time [`query`] waits for the whole answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to the status socket at `path` and returns what the daemon
/// wrote, waiting at most [`QUERY_TIMEOUT`] in all.
pub fn query(path: &Path) -> io::Result<String> {
    let mut stream = UnixStream::connect(path).map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::PermissionDenied => " (run as root?)",
            _ => " (is ftp-alg running?)",
        };
        io::Error::new(e.kind(), format!("{}: {e}{hint}", path.display()))
    })?;
    let fail = |e: io::Error| io::Error::new(e.kind(), format!("{}: reading: {e}", path.display()));
    let deadline = Instant::now() + QUERY_TIMEOUT;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(fail(io::ErrorKind::TimedOut.into()));
        }
        stream.set_read_timeout(Some(left)).map_err(fail)?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(fail(io::ErrorKind::TimedOut.into()))
            }
            Err(e) => return Err(fail(e)),
        }
    }
    String::from_utf8(out).map_err(|e| fail(io::Error::new(io::ErrorKind::InvalidData, e)))
}
