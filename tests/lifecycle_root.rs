//! Daemon lifecycle in a namespace of its own (root): ready, SIGHUP reload,
//! clean SIGTERM, and a restart after `kill -9` that removes the stale
//! rules the killed instance left.

mod netns;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use netns::Netns;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

struct Daemon {
    child: Child,
    stderr_path: std::path::PathBuf,
}

impl Daemon {
    /// Starts `ftp-alg run --config CONFIG` in `ns` and waits for "ready".
    fn start(ns: &Netns, config: &std::path::Path, tag: &str) -> Daemon {
        Daemon::start_with(ns, config, tag, None)
    }

    /// Same, with NOTIFY_SOCKET set for this daemon only.
    fn start_with(
        ns: &Netns,
        config: &std::path::Path,
        tag: &str,
        notify: Option<&std::path::Path>,
    ) -> Daemon {
        let stderr_path = std::env::temp_dir().join(format!(
            "ftp-alg-lifecycle-{}-{tag}.log",
            std::process::id()
        ));
        let mut child = ns
            .command(&[
                env!("CARGO_BIN_EXE_ftp-alg"),
                "run",
                "--config",
                config.to_str().unwrap(),
            ])
            .env("RUST_LOG", "info")
            .envs(notify.map(|p| ("NOTIFY_SOCKET", p)))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("ready") {
                    let _ = tx.send(());
                }
            }
        });
        let d = Daemon { child, stderr_path };
        if rx.recv_timeout(Duration::from_secs(15)).is_err() {
            panic!("ftp-alg not ready within 15 s:\n{}", d.log());
        }
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Signals our own child, by its PID (not yet reaped, so not reused).
    fn signal(&self, sig: Signal) {
        let pid = Pid::from_raw(self.child.id() as i32);
        kill(pid, sig).unwrap_or_else(|e| panic!("kill {pid} {sig}: {e}"));
    }

    /// Waits (bounded) until the log contains `text`.
    fn wait_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.log().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("log never said {text:?}:\n{}", self.log());
    }

    fn wait_exit(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "ftp-alg did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr_path);
    }
}

fn write_config(tag: &str, extra: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir();
    let path = dir.join(format!(
        "ftp-alg-lifecycle-{}-{tag}.toml",
        std::process::id()
    ));
    let socket = dir.join(format!(
        "ftp-alg-lifecycle-{}-{tag}.sock",
        std::process::id()
    ));
    std::fs::write(
        &path,
        format!("status_socket = \"{}\"\n{extra}", socket.display()),
    )
    .unwrap();
    path
}

/// An admin firewall like the lab's, so that the accept rules are inserted too.
fn admin_firewall(ns: &Netns) {
    for ipt in ["iptables", "ip6tables"] {
        ns.run_ok(&[ipt, "-P", "FORWARD", "DROP"]);
        ns.run_ok(&[
            ipt,
            "-A",
            "FORWARD",
            "-m",
            "conntrack",
            "--ctstate",
            "INVALID",
            "-j",
            "DROP",
        ]);
        ns.run_ok(&[
            ipt,
            "-A",
            "FORWARD",
            "-m",
            "conntrack",
            "--ctstate",
            "ESTABLISHED,RELATED",
            "-j",
            "ACCEPT",
        ]);
    }
}

#[test]
fn sighup_reloads_and_sigterm_restores_the_ruleset() {
    let ns = Netns::new("fa-lc", "hup");
    admin_firewall(&ns);
    let before = ns.ruleset();
    let config = write_config("hup", "pinhole_timeout_secs = 30\n");
    // Stand in for systemd: readiness comes as a datagram on NOTIFY_SOCKET.
    let notify_path = config.with_extension("notify");
    let _ = std::fs::remove_file(&notify_path);
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let d = Daemon::start_with(&ns, &config, "hup", Some(&notify_path));
    let mut buf = [0u8; 64];
    let n = notify
        .recv(&mut buf)
        .expect("READY=1 sent to NOTIFY_SOCKET");
    assert_eq!(&buf[..n], b"READY=1");
    let with = ns.ruleset();
    assert!(with.contains("table inet ftp_alg"), "{with}");
    assert!(with.contains("queue num 21"), "{with}");
    // status answers over its socket
    let socket = config.with_extension("sock");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ftp-alg"))
        .args(["status", "--socket", socket.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 sessions, 0 pinholes"));
    // A bad file is refused and the old configuration kept.
    std::fs::write(&config, "pinhole_timeout_secs = 0\n").unwrap();
    d.signal(Signal::SIGHUP);
    d.wait_log("reload refused");
    // A good one is applied.
    std::fs::write(
        &config,
        format!(
            "status_socket = \"{}\"\npinhole_timeout_secs = 10\n",
            socket.display()
        ),
    )
    .unwrap();
    d.signal(Signal::SIGHUP);
    d.wait_log("configuration reloaded");
    d.signal(Signal::SIGTERM);
    let status = d.wait_exit();
    assert!(status.success(), "exit status {status:?}");
    let n = notify
        .recv(&mut buf)
        .expect("STOPPING=1 sent to NOTIFY_SOCKET");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let _ = std::fs::remove_file(&notify_path);
    assert_eq!(ns.ruleset(), before, "ruleset after SIGTERM");
    assert!(!socket.exists(), "status socket removed at exit");
    let _ = std::fs::remove_file(&config);
}

#[test]
fn restart_after_kill_9_removes_stale_rules() {
    let ns = Netns::new("fa-lc", "k9");
    admin_firewall(&ns);
    let before = ns.ruleset();
    let config = write_config("k9", "");
    let first = Daemon::start(&ns, &config, "k9a");
    first.signal(Signal::SIGKILL);
    let _ = first.wait_exit();
    let stale = ns.ruleset();
    assert!(
        stale.contains("table inet ftp_alg"),
        "a killed daemon leaves its rules: {stale}"
    );
    let second = Daemon::start(&ns, &config, "k9b");
    let running = ns.ruleset();
    // A third instance while the second runs: it cannot bind the queue and
    // must leave the running one's rules alone.
    let third = ns
        .command(&[
            env!("CARGO_BIN_EXE_ftp-alg"),
            "run",
            "--config",
            config.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        third.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    assert!(String::from_utf8_lossy(&third.stderr).contains("cannot bind NFQUEUE"));
    assert_eq!(
        ns.ruleset(),
        running,
        "the running instance's rules are untouched"
    );
    assert_eq!(
        running.matches("table inet ftp_alg").count(),
        1,
        "{running}"
    );
    // Per family: the two queue rules and [durable]'s server-side hold
    // rule (a queue without bypass).
    assert_eq!(
        running.matches("queue num 21").count(),
        6,
        "one copy of each queue rule: {running}"
    );
    assert_eq!(
        running.matches("queue num 21 bypass").count(),
        4,
        "{running}"
    );
    second.signal(Signal::SIGTERM);
    assert!(second.wait_exit().success());
    assert_eq!(
        ns.ruleset(),
        before,
        "ruleset after the restarted daemon's SIGTERM"
    );
    let _ = std::fs::remove_file(&config);
}
