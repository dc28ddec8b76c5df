//! The status socket the daemon serves: bound private (0600) before it
//! listens, one [`StatusReport`] per client, removed when dropped.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};

use super::StatusReport;
use crate::telemetry::Shared;

/// Time the packet loop has to list its sessions; it wakes at least once
/// a second, so only a stuck loop misses it. Shorter than [`QUERY_TIMEOUT`](super::QUERY_TIMEOUT)
/// so that the client still gets the fallback answer.
pub const SESSIONS_TIMEOUT: Duration = Duration::from_secs(3);

/// Time a status client has to take the text (server side).
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Time [`StatusServer`]'s `drop` waits for the accept thread to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// The status socket being served. Dropping it stops accepting and removes
/// the socket file (if it is still the one this server created).
#[derive(Debug)]
pub struct StatusServer {
    path: PathBuf,
    /// Device, inode and change time of the socket file this server bound
    /// (inode numbers are reused at once on tmpfs).
    ident: (u64, u64, i64, i64),
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StatusServer {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Binds a Unix stream socket at `path` with mode 0600 and serves
/// a [`StatusReport`] of `shared` to every client on one background thread (named
/// `ftp-alg-status`).
///
/// A socket file left at `path` by a dead daemon is replaced. Refused:
/// anything else at `path` (`AlreadyExists`: ftp-alg removes only sockets),
/// and a socket some process still accepts on (`AddrInUse`: another
/// ftp-alg is running).
///
/// The socket is bound, made 0600 and only then listened on, so no client
/// can connect while the mode is wider (connecting to a socket that is not
/// listening is refused); the process umask is not touched.
pub fn serve(path: &Path, shared: Shared) -> io::Result<StatusServer> {
    let ctx = |e: io::Error, what: &str| {
        io::Error::new(
            e.kind(),
            format!("status socket {}: {what}: {e}", path.display()),
        )
    };
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "status socket {}: in use (is another ftp-alg running?)",
                        path.display()
                    ),
                ));
            }
            std::fs::remove_file(path).map_err(|e| ctx(e, "removing stale socket"))?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "status socket {}: exists and is not a socket; refusing to remove it",
                    path.display()
                ),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(ctx(e, "checking")),
    }

    let listener = bind_private(path).map_err(|e| ctx(e, "binding"))?;
    let md = std::fs::symlink_metadata(path).map_err(|e| ctx(e, "checking"))?;
    let ident = (md.dev(), md.ino(), md.ctime(), md.ctime_nsec());
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = stop.clone();
        thread::Builder::new()
            .name("ftp-alg-status".into())
            .spawn(move || accept_loop(listener, shared, stop))
    };
    let thread = match thread {
        Ok(t) => t,
        Err(e) => {
            let _ = std::fs::remove_file(path);
            return Err(ctx(e, "starting thread"));
        }
    };
    Ok(StatusServer {
        path: path.to_path_buf(),
        ident,
        stop,
        thread: Some(thread),
    })
}

/// socket(2), bind(2), chmod 0600, then listen(2), with nix's safe calls.
fn bind_private(path: &Path) -> io::Result<UnixListener> {
    let bad_path = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "path empty, too long for a Unix socket, or with a NUL byte",
        )
    };
    // An empty path is no file at all: bind(2) would autobind an abstract
    // address instead (unix(7)).
    if path.as_os_str().is_empty() {
        return Err(bad_path());
    }
    // ENAMETOOLONG past sun_path's 108 bytes, EINVAL for a NUL byte.
    let addr = UnixAddr::new(path).map_err(|_| bad_path())?;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind(fd.as_raw_fd(), &addr)?;
    let restrict_and_listen = || -> io::Result<()> {
        // Before listen(2): no client can connect while the mode is wider.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listen(&fd, Backlog::new(64)?)?;
        Ok(())
    };
    if let Err(e) = restrict_and_listen() {
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(UnixListener::from(fd))
}

fn accept_loop(listener: UnixListener, shared: Shared, stop: Arc<AtomicBool>) {
    loop {
        let conn = listener.accept();
        if stop.load(Ordering::Acquire) {
            return;
        }
        match conn {
            Ok((stream, _)) => {
                if let Err(e) = answer(stream, &shared) {
                    tracing::debug!(error = %e, "status client failed");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "status socket: accept failed");
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn answer(mut stream: UnixStream, shared: &Shared) -> io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let report = match shared.request_sessions(SESSIONS_TIMEOUT) {
        Some(sessions) => StatusReport::listed(&sessions),
        None => {
            tracing::warn!("status: the packet loop did not list its sessions in time");
            StatusReport::unlisted(&shared.latest())
        }
    };
    let text = report.to_json();
    stream.write_all(text.as_bytes())?;
    stream.flush()
}

impl Drop for StatusServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            // Wake the accept loop; it sees the flag and returns.
            let _ = UnixStream::connect(&self.path);
            let deadline = Instant::now() + STOP_TIMEOUT;
            while !thread.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            } else {
                tracing::warn!("status socket: accept thread did not stop; leaving it");
            }
        }
        // Remove the file only if it is still ours, not a newer daemon's.
        if let Ok(md) = std::fs::symlink_metadata(&self.path) {
            if md.file_type().is_socket()
                && (md.dev(), md.ino(), md.ctime(), md.ctime_nsec()) == self.ident
            {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{sample, serve_list, text_of, Loop, TempDir, SAMPLE};
    use super::super::query;
    use super::*;

    #[test]
    fn serve_query_mode_and_drop() {
        let dir = TempDir::new();
        let path = dir.sock();
        let (server, packet_loop) = serve_list(&path, sample()).unwrap();
        assert_eq!(server.path(), path);

        let md = std::fs::symlink_metadata(&path).unwrap();
        assert!(md.file_type().is_socket());
        assert_eq!(md.permissions().mode() & 0o7777, 0o600);

        assert_eq!(text_of(&query(&path).unwrap()), SAMPLE);
        packet_loop.list.lock().unwrap().clear();
        assert_eq!(text_of(&query(&path).unwrap()), "0 sessions, 0 pinholes\n");

        // A client that connects and never reads does not stop the server.
        let idle = UnixStream::connect(&path).unwrap();
        assert_eq!(text_of(&query(&path).unwrap()), "0 sessions, 0 pinholes\n");
        drop(idle);

        let t0 = Instant::now();
        drop(server);
        assert!(
            t0.elapsed() < Duration::from_millis(900),
            "{:?}",
            t0.elapsed()
        );
        assert!(
            std::fs::symlink_metadata(&path).is_err(),
            "socket file left"
        );
        let err = query(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let msg = err.to_string();
        assert!(msg.contains(path.to_str().unwrap()), "{msg}");
        assert!(msg.contains("is ftp-alg running?"), "{msg}");
    }

    #[test]
    fn stale_socket_is_replaced() {
        let dir = TempDir::new();
        let path = dir.sock();
        drop(UnixListener::bind(&path).unwrap());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_socket());
        assert!(UnixStream::connect(&path).is_err());

        let (server, _loop) = serve_list(&path, Vec::new()).unwrap();
        let after = std::fs::symlink_metadata(&path).unwrap();
        assert!(after.file_type().is_socket());
        assert_eq!(after.permissions().mode() & 0o7777, 0o600);
        assert_eq!(text_of(&query(&path).unwrap()), "0 sessions, 0 pinholes\n");
        drop(server);
        assert!(std::fs::symlink_metadata(&path).is_err());
    }

    #[test]
    fn live_socket_is_not_stolen() {
        let dir = TempDir::new();
        let path = dir.sock();
        let (first, _loop) = serve_list(&path, sample()).unwrap();
        let err = serve(&path, Shared::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        assert_eq!(text_of(&query(&path).unwrap()), SAMPLE);
        drop(first);
    }

    #[test]
    fn other_files_are_refused() {
        let dir = TempDir::new();
        let path = dir.sock();
        std::fs::write(&path, b"precious").unwrap();
        let err = serve(&path, Shared::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists, "{err}");
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");

        // A directory, and a symlink to a socket, are refused too.
        let sub = dir.0.join("d");
        std::fs::create_dir(&sub).unwrap();
        assert!(serve(&sub, Shared::default()).is_err());
        assert!(sub.is_dir());
        let target = dir.0.join("real.sock");
        drop(UnixListener::bind(&target).unwrap());
        let link = dir.0.join("link.sock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(serve(&link, Shared::default()).is_err());
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn drop_leaves_a_newer_socket_alone() {
        let dir = TempDir::new();
        let path = dir.sock();
        let old = serve(&path, Shared::default()).unwrap();
        // Someone replaced the file (a newer daemon, say).
        std::fs::remove_file(&path).unwrap();
        let newer = UnixListener::bind(&path).unwrap();
        drop(old);
        assert!(std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_socket());
        drop(newer);
    }

    #[test]
    fn poisoned_mutex_is_still_read() {
        let dir = TempDir::new();
        let path = dir.sock();
        let shared = Shared::default();
        let s2 = shared.clone();
        let _ = thread::spawn(move || {
            let _g = s2.latest();
            panic!("poison on purpose");
        })
        .join();
        let _server = serve(&path, shared.clone()).unwrap();
        let _loop = Loop::start(&shared, sample());
        assert_eq!(text_of(&query(&path).unwrap()), SAMPLE);
    }

    #[test]
    fn bad_paths() {
        let long = PathBuf::from(format!("/tmp/{}", "x".repeat(200)));
        let err = serve(&long, Shared::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        // Neither may bind an abstract or truncated address instead.
        for bad in ["", "/tmp/ftp-alg\0status.sock"] {
            let err = serve(Path::new(bad), Shared::default()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        let missing = PathBuf::from("/nonexistent-dir-ftp-alg/status.sock");
        assert!(serve(&missing, Shared::default()).is_err());
    }
}
