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
//! - mode `alg-files`: the same, with the rules managed by the admin: the lab
//!   loads the iptables-nft files of `deploy/rules/` and ftp-alg runs with
//!   `install_rules = false`, and must leave those rules as it found them;
//! - mode `alg-native`: the same, with the gateway's forward filter a native
//!   nftables chain (policy drop) where ftp-alg inserts its accept rule
//!   (`accept_rule = "nft inet lab_fw forward"`);
//! - mode `none`: negative control, no ALG; every data transfer must fail
//!   (proves that the firewall really blocks what the ALG has to open).
//!
//! The lab needs root and network namespaces. Without them this test FAILS
//! with a message; it never passes without testing anything.
//!
//! The alg modes run the daemon with `queues = 3` (one worker thread per
//! queue, one shared engine) and `busy_poll_us = 300`.
//!
//! The modes run one after the other inside one test: the lab script uses
//! fixed addresses and the gateway's netfilter state, and tests of one binary
//! run in parallel threads.

mod netns;

#[test]
fn netns_lab_matrix_alg_and_negative_control() {
    netns::require_lab(
        "tests/e2e_netns.rs",
        &[
            "ip",
            "iptables-nft",
            "nft",
            "vsftpd",
            "lftp",
            "curl",
            "conntrack",
            "ethtool",
        ],
    );
    // Three queues: the kernel spreads the sessions over three workers
    // sharing one engine, and under DNAT the two directions of a session
    // hash to different queues; and busy polling, so that packets are also
    // taken by the non-blocking path (the single-queue, sleeping daemon is
    // what the conformance and scale tests run).
    let alg = netns::run_lab_script(
        "lab.sh",
        &["matrix", "--mode", "alg,alg-files,alg-native"],
        &[("LAB_ALG_CONFIG", "queues = 3\nbusy_poll_us = 300\n")],
        1500,
    );
    let none = netns::run_lab_script("lab.sh", &["matrix", "--mode", "none"], &[], 1500);
    assert_eq!(
        alg,
        Some(0),
        "modes alg, alg-files, alg-native: some transfers through ftp-alg failed, INVALID drops were counted, the \
         daemon did not exit 0 on SIGTERM, the ruleset was not restored or its metrics and \
         status did not match (exit 1), or the lab could not be set up (exit 2); see the \
         table above and target/lab-logs/"
    );
    assert_eq!(
        none,
        Some(0),
        "mode none (negative control, no ALG): some data transfer passed although the \
         firewall should block it, or the lab could not be set up; see the table above"
    );
}
