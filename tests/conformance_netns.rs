//! The conformance table, in network namespaces: `scripts/conformance.sh`
//! builds its own lab (scripts/lib-lab.sh, lab id `cf<pid>`), replaces the
//! lab's FTP servers by the scripted peers of `scripts/conformance.py` and
//! plays 18 cases with exact segmentation (a `PORT` or `227` cut across
//! segments, two lines in one segment, multi-line `227-`, bare LF, pipelined
//! `PORT`s, an unsolicited `227`, a client that speaks first, third-party and
//! privileged `PORT`s, out-of-range numbers, `AUTH TLS`, a `PORT` answered
//! `500`, IPv6 `EPRT`), asserting the exact bytes each far side receives on
//! the control connection and whether a 1 KiB data connection gets through.
//!
//! Every case runs once with this crate's `ftp-alg` binary on the gateway
//! and once with the kernel's FTP helper as the reference; the script prints
//! the side-by-side table and exits 0 only if every ftp-alg case behaves as
//! expected and the gateway counted 0 INVALID packets (the kernel column is
//! report only).
//!
//! The lab needs root and network namespaces. Without them this test FAILS
//! with a message; it never passes without testing anything.

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

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn netns_conformance_table_alg_vs_kernel_helper() {
    match effective_uid() {
        Some(0) => {}
        other => panic!(
            "tests/conformance_netns.rs needs root and network namespaces (it builds a lab of \
             `ip netns` namespaces with a NAT gateway and scripted FTP peers); effective uid is \
             {other:?}. Run it as root, e.g. `sudo scripts/test.sh` or \
             `sudo -E cargo test --test conformance_netns`."
        ),
    }
    for tool in [
        "ip",
        "iptables-nft",
        "ip6tables-nft",
        "nft",
        "conntrack",
        "ethtool",
        "python3",
        "timeout",
    ] {
        assert!(
            have(tool),
            "tests/conformance_netns.rs needs `{tool}` (root + netns lab); scripts/test.sh \
             installs the lab's packages"
        );
    }

    let script = repo().join("scripts/conformance.sh");
    let started = Instant::now();
    // Written to the real stderr; the script's table goes straight to this
    // process's stdout (not through the harness's capture), so it shows in
    // CI logs whether the test passes or fails.
    let _ = writeln!(
        std::io::stderr(),
        "=== conformance_netns: scripts/conformance.sh --modes alg,kernel"
    );
    let mut cmd = Command::new("timeout");
    // Hard upper bound; the script bounds every step and cleans up on TERM.
    cmd.args(["-k", "30", "420", "bash"])
        .arg(&script)
        .args(["--modes", "alg,kernel"])
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
        "=== conformance_netns: exit status {:?} after {:.1} s",
        status.code(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        status.code(),
        Some(0),
        "the conformance table failed for ftp-alg: some case did not behave as expected, \
         INVALID drops were counted or the daemon died (exit 1), or the lab could not be set \
         up (exit 2); see the table and details above and target/lab-logs/cf*/"
    );
}
