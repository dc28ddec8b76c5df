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
    let status = netns::run_lab_script(
        "scale.sh",
        &[],
        &[("SESSIONS", SESSIONS), ("SCALE_MODE", "alg")],
        360,
    );
    assert_eq!(
        status,
        Some(0),
        "scripts/scale.sh with {SESSIONS} concurrent sessions through ftp-alg failed: some \
         session failed, pinholes were left, INVALID drops were counted or the daemon died \
         (exit 1), or the lab could not be set up (exit 2); see the report above and \
         target/lab-logs/sc*/"
    );
}
