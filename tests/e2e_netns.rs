//! End-to-end test in network namespaces: `scripts/lab.sh matrix` builds a
//! gateway with a default-drop, stateful firewall and NAT, real vsftpd servers
//! and real curl and lftp clients (passive EPSV/PASV, active EPRT/PORT; SNAT
//! that lengthens and that shortens the PORT text, a port-forwarded inside
//! server, IPv6 without NAT), and moves sha256-checked files through it.
//!
//! - mode `alg`: this crate's `ftp-alg` binary runs on the gateway; every
//!   download and upload must pass, the firewall's INVALID counters must stay
//!   0, and after SIGTERM the daemon must exit 0 and leave the ruleset exactly
//!   as it found it;
//! - mode `none`: negative control, no ALG; every data transfer must fail
//!   (proves that the firewall really blocks what the ALG has to open).
//!
//! The lab needs root and network namespaces. Without them this test FAILS
//! with a message; it never passes without testing anything.
//!
//! Both modes run one after the other inside one test: the lab script uses
//! fixed addresses and the gateway's netfilter state, and tests of one binary
//! run in parallel threads.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// Effective uid from /proc (no extra dependency).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `scripts/lab.sh matrix --mode MODE`; its table goes straight to this
/// process's stdout/stderr (not captured by the test harness), so it shows in
/// CI logs whether the test passes or fails. Returns the exit status.
fn run_matrix(mode: &str) -> Option<i32> {
    let script = repo().join("scripts/lab.sh");
    let started = Instant::now();
    // Written to the real stderr, not through the test harness's capture.
    let _ = writeln!(
        std::io::stderr(),
        "=== e2e_netns: scripts/lab.sh matrix --mode {mode}"
    );
    let mut cmd = Command::new("timeout");
    // Hard upper bound; lab.sh bounds every step itself and cleans up on TERM.
    cmd.args(["-k", "30", "1500", "bash"])
        .arg(&script)
        .args(["matrix", "--mode", mode])
        .current_dir(repo())
        .env("FTP_ALG_BIN", env!("CARGO_BIN_EXE_ftp-alg"))
        .env("LAB_LOG_DIR", repo().join("target/lab-logs"));
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "debug");
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let _ = writeln!(
        std::io::stderr(),
        "=== e2e_netns: mode {mode}: exit status {:?} after {:.1} s",
        status.code(),
        started.elapsed().as_secs_f64()
    );
    status.code()
}

#[test]
fn netns_lab_matrix_alg_and_negative_control() {
    match effective_uid() {
        Some(0) => {}
        other => panic!(
            "tests/e2e_netns.rs needs root and network namespaces (it builds a lab of \
             `ip netns` namespaces with nftables, vsftpd, curl and lftp); effective uid is \
             {other:?}. Run it as root, e.g. `sudo scripts/test.sh` or \
             `sudo -E cargo test --test e2e_netns`."
        ),
    }
    for tool in [
        "ip",
        "iptables-nft",
        "nft",
        "vsftpd",
        "lftp",
        "curl",
        "conntrack",
        "ethtool",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            found,
            "tests/e2e_netns.rs needs `{tool}` (root + netns lab); scripts/test.sh installs \
             the lab's packages"
        );
    }

    let alg = run_matrix("alg");
    let none = run_matrix("none");

    assert_eq!(
        alg,
        Some(0),
        "mode alg: some transfers through ftp-alg failed, INVALID drops were counted, the \
         daemon did not exit 0 on SIGTERM, or the ruleset was not restored (exit 1), or the \
         lab could not be set up (exit 2); see the table above and target/lab-logs/"
    );
    assert_eq!(
        none,
        Some(0),
        "mode none (negative control, no ALG): some data transfer passed although the \
         firewall should block it, or the lab could not be set up; see the table above"
    );
}
