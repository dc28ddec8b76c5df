//! systemd's service watchdog (`WatchdogSec=`, sd_watchdog_enabled(3)) and
//! the notifications behind it (sd_notify(3)).
//!
//! The housekeeper sends `WATCHDOG=1` only while every queue worker is
//! alive. Each worker keeps a [`Heartbeat`]: a counter it bumps when it
//! enters its blocking `recv` and again when `recv` returns. An odd value
//! means the worker is idle, blocked in the kernel waiting for a packet:
//! healthy however long that lasts. An even value means it is handling a
//! packet (engine, conntrack lookup, pinhole update, verdict); it is
//! healthy only if the value moved since the previous check. A worker
//! that hangs while handling a packet (a netlink call that never returns,
//! a lock never released) keeps one even value, the pings stop, and
//! systemd kills and restarts the service after `WatchdogSec`. A hung
//! housekeeper (it takes the same engine lock as the workers) sends
//! nothing either, with the same effect.

use std::ffi::{OsStr, OsString};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

/// A worker's progress counter (see the module documentation).
#[derive(Debug, Default)]
pub struct Heartbeat(AtomicU64);

impl Heartbeat {
    /// A new counter, shared between a worker and the watchdog.
    pub fn shared() -> Arc<Heartbeat> {
        Arc::default()
    }

    /// Called right before a blocking receive: the value becomes odd.
    pub fn entering_recv(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }

    /// Called right after a blocking receive returned: the value becomes even.
    pub fn left_recv(&self) {
        self.0.fetch_add(1, Ordering::Release);
    }

    fn value(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// Decides when to send `WATCHDOG=1`, and sends it.
#[derive(Debug)]
pub struct Watchdog {
    beats: Vec<Arc<Heartbeat>>,
    /// Each heartbeat's value at the previous check.
    seen: Vec<u64>,
    /// Time between checks (and pings while healthy): a second, or half of
    /// `WATCHDOG_USEC` if that is shorter (sd_watchdog_enabled(3) asks for
    /// at least two pings per timeout). systemd thus restarts the service
    /// once a worker has been stuck for about `WatchdogSec`.
    interval: Duration,
    next_ping: Option<Instant>,
    /// Whether the last check found a stuck worker (logged once per episode).
    stuck: bool,
    /// `$NOTIFY_SOCKET`.
    notify_socket: OsString,
}

impl Watchdog {
    /// The watchdog systemd asked for through `WATCHDOG_USEC` (and
    /// `WATCHDOG_PID`, when set, naming this process); `None` without it.
    pub fn from_env(beats: Vec<Arc<Heartbeat>>) -> Option<Watchdog> {
        let usec = std::env::var("WATCHDOG_USEC").ok()?;
        let notify_socket = std::env::var_os("NOTIFY_SOCKET")?;
        if let Ok(pid) = std::env::var("WATCHDOG_PID") {
            if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
                return None;
            }
        }
        match usec.trim().parse::<u64>() {
            Ok(us) if us > 0 => Some(Watchdog::new(
                beats,
                Duration::from_micros(us),
                notify_socket,
            )),
            _ => {
                warn!(value = %usec, "WATCHDOG_USEC is not a positive number; watchdog off");
                None
            }
        }
    }

    /// A watchdog over `beats` whose timeout is `timeout`, pinging the
    /// service manager at `notify_socket` (a path, or `@name` in the
    /// abstract namespace).
    pub fn new(beats: Vec<Arc<Heartbeat>>, timeout: Duration, notify_socket: OsString) -> Watchdog {
        let seen = beats.iter().map(|b| b.value()).collect();
        Watchdog {
            beats,
            seen,
            interval: (timeout / 2).min(Duration::from_secs(1)),
            next_ping: None,
            stuck: false,
            notify_socket,
        }
    }

    /// The workers that are neither idle in `recv` nor made progress since
    /// the previous call (indices into the heartbeats).
    pub fn stuck_workers(&mut self) -> Vec<usize> {
        let mut stuck = Vec::new();
        for (i, (beat, seen)) in self.beats.iter().zip(self.seen.iter_mut()).enumerate() {
            let now = beat.value();
            if now % 2 == 0 && now == *seen {
                stuck.push(i);
            }
            *seen = now;
        }
        stuck
    }

    /// Called by the housekeeper at every wake-up (at least once a second):
    /// once the interval has passed, checks the workers and, if all are
    /// alive, sends `WATCHDOG=1`. Returns whether it sent. A packet that
    /// takes longer than the interval skips one ping, no more.
    pub fn tick(&mut self, now: Instant) -> bool {
        if self.next_ping.is_some_and(|at| now < at) {
            return false;
        }
        self.next_ping = Some(now + self.interval);
        let stuck = self.stuck_workers();
        if !stuck.is_empty() {
            if !self.stuck {
                warn!(workers = ?stuck, "queue worker made no progress: not pinging the watchdog");
            }
            self.stuck = true;
            return false;
        }
        self.stuck = false;
        match send_to(&self.notify_socket, "WATCHDOG=1") {
            Ok(_) => true,
            Err(e) => {
                warn!(error = %e, "cannot ping systemd's watchdog");
                false
            }
        }
    }
}

/// Tells the service manager `state` (sd_notify(3)): one datagram to
/// `$NOTIFY_SOCKET`; nothing when it is not set. A failure is logged, never
/// fatal: the daemon works without systemd.
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send_to(&path, state) {
        warn!(error = %e, "cannot notify systemd");
    }
}

fn send_to(path: &OsStr, state: &str) -> io::Result<usize> {
    use std::os::unix::net::UnixDatagram;
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    match bytes.strip_prefix(b"@") {
        // A leading '@' names a socket in the abstract namespace.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)
        }
        None => socket.send_to(state.as_bytes(), path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    /// A bound datagram socket standing in for systemd's notify socket.
    struct Manager {
        dir: std::path::PathBuf,
        socket: UnixDatagram,
    }

    impl Manager {
        fn new(tag: &str) -> Manager {
            let dir =
                std::env::temp_dir().join(format!("ftp-alg-watchdog-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir(&dir).unwrap();
            let socket = UnixDatagram::bind(dir.join("notify")).unwrap();
            socket.set_nonblocking(true).unwrap();
            Manager { dir, socket }
        }
        fn path(&self) -> OsString {
            self.dir.join("notify").into_os_string()
        }
        /// Every datagram received so far.
        fn received(&self) -> Vec<String> {
            let mut out = Vec::new();
            let mut buf = [0u8; 64];
            while let Ok(n) = self.socket.recv(&mut buf) {
                out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            out
        }
    }

    impl Drop for Manager {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn pings_while_workers_are_idle_or_busy_and_stops_for_a_stuck_one() {
        let manager = Manager::new("stuck");
        let (idle, busy) = (Heartbeat::shared(), Heartbeat::shared());
        let mut wd = Watchdog::new(
            vec![idle.clone(), busy.clone()],
            Duration::from_secs(30),
            manager.path(),
        );
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        // `idle` waits in recv the whole time; `busy` handles packets.
        idle.entering_recv();
        busy.entering_recv();
        busy.left_recv();
        assert!(wd.tick(t0));
        // Within the interval: no second check, no second ping.
        assert!(!wd.tick(t0 + s / 2));
        assert_eq!(manager.received(), ["WATCHDOG=1"]);
        busy.entering_recv();
        busy.left_recv();
        assert!(wd.tick(t0 + s));
        // `busy` now hangs on one packet: no ping, for as long as it hangs.
        busy.entering_recv();
        busy.left_recv();
        assert!(wd.tick(t0 + 2 * s), "progress since the last check");
        assert!(!wd.tick(t0 + 3 * s), "stuck worker, yet pinged");
        assert!(!wd.tick(t0 + 4 * s), "stuck worker, yet pinged");
        assert_eq!(manager.received(), ["WATCHDOG=1"; 2]);
        // It moves again: pings resume.
        busy.entering_recv();
        assert!(wd.tick(t0 + 5 * s));
        assert_eq!(manager.received(), ["WATCHDOG=1"]);
    }

    #[test]
    fn short_timeouts_are_checked_twice_per_timeout() {
        let manager = Manager::new("short");
        let beat = Heartbeat::shared();
        beat.entering_recv();
        let mut wd = Watchdog::new(vec![beat], Duration::from_millis(600), manager.path());
        let t0 = Instant::now();
        assert!(wd.tick(t0));
        assert!(!wd.tick(t0 + Duration::from_millis(200)));
        assert!(wd.tick(t0 + Duration::from_millis(300)));
    }

    #[test]
    fn abstract_and_missing_sockets() {
        // A missing manager socket is an error to log, not a panic.
        let beat = Heartbeat::shared();
        beat.entering_recv();
        let mut wd = Watchdog::new(
            vec![beat],
            Duration::from_secs(2),
            OsString::from("/nonexistent-ftp-alg/notify"),
        );
        assert!(!wd.tick(Instant::now()));
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ftp-alg-watchdog-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(OsStr::new(&format!("@{name}")), "READY=1").unwrap();
        let mut buf = [0u8; 16];
        let n = socket.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
