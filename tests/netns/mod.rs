//! A network namespace owned by one test: created with a unique name,
//! deleted on drop (also when the test panics).

#![allow(dead_code)]

use std::process::{Command, Output};

/// Fails the test, saying why, when not run as root: these tests need
/// network namespaces and netfilter, and must never pass silently.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network namespaces; run it as root (scripts/test.sh)");
    }
}

/// A namespace named `fa-t-<tag>-<pid>`.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates the namespace with its loopback up.
    pub fn new(tag: &str) -> Netns {
        require_root();
        let name = format!("fa-t-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ns = Netns { name };
        ns.run_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(argv);
        c
    }

    /// Runs a command inside; returns its output whatever the status.
    pub fn run(&self, argv: &[&str]) -> Output {
        self.command(argv).output().unwrap()
    }

    /// Runs a command inside and returns its stdout; panics on failure.
    pub fn run_ok(&self, argv: &[&str]) -> String {
        let out = self.run(argv);
        assert!(
            out.status.success(),
            "{argv:?} in {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The namespace's whole nftables ruleset, as text.
    pub fn ruleset(&self) -> String {
        self.run_ok(&["nft", "-s", "list", "ruleset"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Fails the test (never skips) unless running as root with every tool of
/// `tools` on PATH. `test` names the test file in the message.
pub fn require_lab(test: &str, tools: &[&str]) {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "{test} needs root and network namespaces (it builds a lab of `ip netns` namespaces \
         with a NAT gateway); effective uid is {uid}. Run it as root, e.g. `sudo scripts/test.sh`."
    );
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            found,
            "{test} needs `{tool}`; scripts/test.sh installs the lab's packages"
        );
    }
}

/// Runs `bash scripts/SCRIPT ARGS` from the repository under `timeout`
/// with this crate's binary as FTP_ALG_BIN and the extra environment `env`. Its output goes straight to
/// this process's stdout and stderr (not through the harness's capture), so
/// tables show in CI logs whether the test passes or fails. Returns the
/// exit status.
pub fn run_lab_script(
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
    limit_secs: u32,
) -> Option<i32> {
    use std::io::Write;
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = repo.join("scripts").join(script);
    let started = std::time::Instant::now();
    let _ = writeln!(std::io::stderr(), "=== scripts/{script} {}", args.join(" "));
    let mut cmd = Command::new("timeout");
    // A hard bound on top of the scripts' own (they clean up on TERM).
    cmd.args(["-k", "30", &limit_secs.to_string(), "bash"])
        .arg(&path)
        .args(args)
        .current_dir(&repo)
        .env("FTP_ALG_BIN", env!("CARGO_BIN_EXE_ftp-alg"))
        .env("LAB_LOG_DIR", repo.join("target/lab-logs"))
        .envs(env.iter().copied());
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "debug");
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    let _ = writeln!(
        std::io::stderr(),
        "=== scripts/{script}: exit status {:?} after {:.1} s",
        status.code(),
        started.elapsed().as_secs_f64()
    );
    status.code()
}
