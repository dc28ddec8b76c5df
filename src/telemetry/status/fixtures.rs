//! What the status tests share: sample sessions and their text view, a
//! stand-in packet loop and a temporary directory for sockets.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use ftp_alg_proto::pinhole::{Pinhole, RangePinhole};
use ftp_alg_proto::stats::{SessionInfo, SessionState};

use super::{serve, StatusReport, StatusServer};
use crate::telemetry::Shared;

/// Three sessions: one unmapped in greeting, one behind NAT both ways
/// with two pinholes, one IPv6 under TLS.
pub(super) fn sample() -> Vec<SessionInfo> {
    vec![
        SessionInfo {
            client: "192.0.2.20:40000".parse().unwrap(),
            // Same as the client: not shown.
            client_public: Some("192.0.2.20:40000".parse().unwrap()),
            server_public: None,
            server_real: None,
            state: SessionState::Greeting,
            delta_to_server: 0,
            delta_to_client: 0,
            idle: Duration::from_millis(999),
            pinholes: vec![],
            range: None,
        },
        SessionInfo {
            client: "192.0.2.10:51000".parse().unwrap(),
            client_public: Some("203.0.113.1:40000".parse().unwrap()),
            server_public: Some("198.51.100.5:21".parse().unwrap()),
            server_real: Some("10.0.0.5:21".parse().unwrap()),
            state: SessionState::Ready,
            delta_to_server: 1,
            delta_to_client: -3,
            idle: Duration::from_millis(3500),
            pinholes: vec![
                (
                    Pinhole {
                        src: "198.51.100.5".parse().unwrap(),
                        dst: "203.0.113.1".parse().unwrap(),
                        dport: 40001,
                        dnat: Some("192.0.2.10:50000".parse().unwrap()),
                    },
                    Duration::from_millis(28_700),
                ),
                (
                    Pinhole {
                        src: "192.0.2.10".parse().unwrap(),
                        dst: "198.51.100.5".parse().unwrap(),
                        dport: 30000,
                        dnat: None,
                    },
                    Duration::from_secs(5),
                ),
            ],
            range: None,
        },
        SessionInfo {
            client: "[2001:db8::1]:50000".parse().unwrap(),
            client_public: None,
            server_public: Some("[2001:db8::21]:21".parse().unwrap()),
            // Same as the public address: not shown.
            server_real: Some("[2001:db8::21]:21".parse().unwrap()),
            state: SessionState::Tls,
            delta_to_server: 0,
            delta_to_client: 12,
            idle: Duration::ZERO,
            pinholes: vec![(
                Pinhole {
                    src: "2001:db8::21".parse().unwrap(),
                    dst: "2001:db8::1".parse().unwrap(),
                    dport: 2121,
                    dnat: None,
                },
                Duration::from_secs(60),
            )],
            range: Some((
                1,
                RangePinhole {
                    src: "2001:db8::1".parse().unwrap(),
                    dst: "2001:db8::21".parse().unwrap(),
                    low: 40000,
                    high: 40100,
                    dnat: None,
                },
            )),
        },
    ]
}

/// [`sample`] as text.
pub(super) const SAMPLE: &str = "\
session 192.0.2.10:51000 client_public 203.0.113.1:40000 server_public 198.51.100.5:21 server_real 10.0.0.5:21 state ready idle 3s seq +1/-3
  pinhole 192.0.2.10 -> 198.51.100.5:30000 expires in 5s
  pinhole 198.51.100.5 -> 203.0.113.1:40001 dnat 192.0.2.10:50000 expires in 28s
session 192.0.2.20:40000 server_public ? state greeting idle 0s seq +0/+0
session [2001:db8::1]:50000 server_public [2001:db8::21]:21 state tls idle 0s seq +0/+12
  pinhole 2001:db8::21 -> [2001:db8::1]:2121 expires in 60s
  range 2001:db8::1 -> [2001:db8::21]:40000-40100 ftps[1] while the session lives
3 sessions, 3 pinholes
";

/// The text an answer over the socket renders to.
pub(super) fn text_of(json: &str) -> String {
    StatusReport::from_json(json).unwrap().render_text()
}

/// Stands in for the packet loop: answers requests for the list of
/// sessions with the current content of `list` until dropped.
pub(super) struct Loop {
    pub(super) list: Arc<Mutex<Vec<SessionInfo>>>,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Loop {
    pub(super) fn start(shared: &Shared, list: Vec<SessionInfo>) -> Loop {
        let list = Arc::new(Mutex::new(list));
        let done = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, list, done) = (shared.clone(), list.clone(), done.clone());
            thread::spawn(move || {
                while !done.load(Ordering::Acquire) {
                    if shared.sessions_wanted() {
                        let l = list.lock().unwrap();
                        shared.answer_sessions(l.clone());
                    }
                    thread::sleep(Duration::from_millis(1));
                }
            })
        };
        Loop {
            list,
            done,
            thread: Some(thread),
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A served socket with a packet loop that lists `list`.
pub(super) fn serve_list(path: &Path, list: Vec<SessionInfo>) -> io::Result<(StatusServer, Loop)> {
    let shared = Shared::default();
    let server = serve(path, shared.clone())?;
    Ok((server, Loop::start(&shared, list)))
}

/// A fresh directory under the system temp dir, removed on drop.
pub(super) struct TempDir(pub(super) PathBuf);

impl TempDir {
    pub(super) fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "ftp-alg-status-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        TempDir(p)
    }
    pub(super) fn sock(&self) -> PathBuf {
        self.0.join("status.sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
