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
