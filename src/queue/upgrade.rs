//! The in-place upgrade (SIGUSR2): the daemon re-executes its binary with
//! the same PID (systemd keeps tracking it), handing across `exec` its bound
//! queue sockets and the record of the rules it installed. The queues stay
//! bound throughout, so control packets that arrive meanwhile wait in the
//! sockets instead of bypassing ftp-alg or being dropped; the rules are
//! never touched. Sessions are picked up by the new image as after any
//! restart (their sequence state comes back from conntrack where a rewrite
//! stored it); pinholes already open stay in ftp-alg's table until they are
//! used or expire.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::kernel::nfqueue::NfQueue;
use crate::rules::InstalledState;

/// The environment variable that carries the [`Handover`] to the new image.
pub const HANDOVER_ENV: &str = "FTP_ALG_HANDOVER";

/// What one image hands to the next.
#[derive(Debug, Serialize, Deserialize)]
pub struct Handover {
    /// (queue number, descriptor) of each bound queue socket.
    pub queues: Vec<(u16, i32)>,
    /// The rules the first image installed, when it installed them.
    pub installed: Option<InstalledState>,
}

/// The path to execute: the binary this process was started from. After a
/// package upgrade replaced the file, `/proc/self/exe` names the old,
/// deleted inode (" (deleted)"): the new binary is at the same path.
fn own_path() -> io::Result<PathBuf> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let bytes = exe.as_os_str().as_bytes();
    let path = bytes.strip_suffix(b" (deleted)").unwrap_or(bytes);
    Ok(PathBuf::from(OsString::from(std::ffi::OsStr::from_bytes(
        path,
    ))))
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// What [`exec_self`] gives back when the new image could not be started:
/// the error, and the queues (still bound) and rules, to carry on with.
pub type Failed = (io::Error, Vec<NfQueue>, Option<InstalledState>);

/// Executes the binary again with the same arguments, handing over
/// `queues` and `installed`. Returns only on failure.
pub fn exec_self(queues: Vec<NfQueue>, installed: Option<InstalledState>) -> Failed {
    let mut fds = Vec::new();
    let mut failed = None;
    for q in queues {
        let queue = q.queue();
        match q.into_handover() {
            Ok(fd) => fds.push((queue, fd)),
            Err(e) => failed = Some(e),
        }
    }
    let back = |fds: Vec<(u16, OwnedFd)>| {
        fds.into_iter()
            .map(|(q, fd)| NfQueue::from_handover(fd, q))
            .collect()
    };
    if let Some(e) = failed {
        return (e, back(fds), installed);
    }
    let handover = Handover {
        queues: fds.iter().map(|(q, fd)| (*q, fd.as_raw_fd())).collect(),
        installed,
    };
    let err = (|| -> io::Result<()> {
        let path = cstring(own_path()?.as_os_str().as_bytes())?;
        let args = std::env::args_os()
            .map(|a| cstring(a.as_bytes()))
            .collect::<io::Result<Vec<_>>>()?;
        let json = serde_json::to_string(&handover).map_err(io::Error::other)?;
        let mut env = std::env::vars_os()
            .filter(|(k, _)| k != HANDOVER_ENV)
            .map(|(k, v)| {
                let mut kv = k.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                cstring(&kv)
            })
            .collect::<io::Result<Vec<_>>>()?;
        env.push(cstring(format!("{HANDOVER_ENV}={json}").as_bytes())?);
        nix::unistd::execve(&path, &args, &env).map_err(io::Error::from)?;
        Ok(())
    })()
    .err()
    .unwrap_or_else(|| io::Error::other("execve returned"));
    let Handover { installed, .. } = handover;
    (err, back(fds), installed)
}

/// Takes the [`Handover`] an earlier image left in the environment, if any,
/// and removes it there. Call it before any thread is started.
pub fn take() -> io::Result<Option<(Vec<NfQueue>, Option<InstalledState>)>> {
    let Some(json) = std::env::var_os(HANDOVER_ENV) else {
        return Ok(None);
    };
    // SAFETY (set_var/remove_var): called before any other thread exists.
    std::env::remove_var(HANDOVER_ENV);
    let handover: Handover = serde_json::from_slice(json.as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{HANDOVER_ENV}: {e}")))?;
    let queues = handover
        .queues
        .into_iter()
        .map(|(queue, raw)| {
            // SAFETY: the descriptor was handed over to this image, which
            // alone owns it now; it is checked to be a socket before use,
            // and released unclosed if it is not.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let is_socket = nix::sys::stat::fstat(&fd)
                .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFSOCK);
            if !is_socket {
                // Not ours to close: a stray variable named some other file.
                let _ = fd.into_raw_fd();
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{HANDOVER_ENV}: descriptor {raw} is not a socket"),
                ));
            }
            Ok(NfQueue::from_handover(fd, queue))
        })
        .collect::<io::Result<Vec<_>>>()?;
    Ok(Some((queues, handover.installed)))
}
