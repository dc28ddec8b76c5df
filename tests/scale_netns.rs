//! 1000 concurrent FTP control sessions through ftp-alg, in network
//! namespaces: `scripts/scale.sh` builds its own lab (scripts/lib-lab.sh, lab
//! id `sc<pid>`), starts this crate's `ftp-alg` on the gateway, and a python
//! asyncio client (scripts/ftp_peers.py) in the inside client namespace opens
//! 1000 control connections to the outside vsftpd, holds them all open at
//! once (the daemon's gauge `ftp_alg_sessions` must reach 1000), then every
//! session does one passive (EPSV) download of a 4 KiB file, sha256 checked,
//! and QUITs.
//!
//! The script exits 0 only if every session completed, no pinhole was left
//! (nft sets `inet ftp_alg pin4`/`pin6` empty, `ftp-alg status` "0
//! pinholes"), the gateway counted 0 INVALID packets, and the daemon was still
//! running and exited 0 on SIGTERM. It prints the figures (wall time, peak
//! sessions, daemon RSS, ...) whether it passes or not.
//!
//! The lab needs root and network namespaces. Without them this test FAILS
//! with a message; it never passes without testing anything.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

mod netns;

const SESSIONS: &str = "1000";

#[test]
fn netns_scale_1000_concurrent_sessions() {
    netns::require_lab(
        "tests/scale_netns.rs",
        &[
            "ip",
            "iptables-nft",
            "ip6tables-nft",
            "nft",
            "vsftpd",
            "curl",
            "conntrack",
            "ethtool",
            "python3",
            "timeout",
        ],
    );
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let script = repo.join("scripts/scale.sh");
    let started = Instant::now();
    // Written to the real stderr; the script's report goes straight to this
    // process's stdout/stderr (not through the harness's capture), so it
    // shows in CI logs whether the test passes or fails.
    let _ = writeln!(
        std::io::stderr(),
        "=== scale_netns: SESSIONS={SESSIONS} scripts/scale.sh"
    );
    let mut cmd = Command::new("timeout");
    // A hard bound on top of the script's own (about 4 minutes; it cleans
    // up on TERM).
    cmd.args(["-k", "30", "360", "bash"])
        .arg(&script)
        .current_dir(&repo)
        .env("SESSIONS", SESSIONS)
        .env("SCALE_MODE", "alg")
        .env("FTP_ALG_BIN", env!("CARGO_BIN_EXE_ftp-alg"))
        .env("LAB_LOG_DIR", repo.join("target/lab-logs"));
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "debug");
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let _ = writeln!(
        std::io::stderr(),
        "=== scale_netns: exit status {:?} after {:.1} s",
        status.code(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        status.code(),
        Some(0),
        "scripts/scale.sh with {SESSIONS} concurrent sessions through ftp-alg failed: some \
         session failed, pinholes were left, INVALID drops were counted or the daemon died \
         (exit 1), or the lab could not be set up (exit 2); see the report above and \
         target/lab-logs/sc*/"
    );
}
