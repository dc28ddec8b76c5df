//! The conformance table, in network namespaces: `scripts/conformance.sh`
//! builds its own lab (scripts/lib-lab.sh, lab id `cf<pid>`), replaces the
//! lab's FTP servers by the scripted peers of `scripts/conformance.py` and
//! plays the 24 cases of `proto/tests/conformance/cases.toml` (the table
//! that `cargo test -p ftp-alg-proto --test conformance` replays through
//! the engine without root) with exact segmentation (a `PORT` or `227` cut
//! across segments, two lines in one segment, multi-line `227-`, bare LF,
//! pipelined `PORT`s, an unsolicited `227`, a client that speaks first,
//! third-party and privileged `PORT`s, out-of-range numbers, `AUTH TLS`, a
//! `PORT` answered `500`, IPv6 `EPRT`), asserting the exact bytes each far side receives on
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

mod netns;

#[test]
fn netns_conformance_table_alg_vs_kernel_helper() {
    netns::require_lab(
        "tests/conformance_netns.rs",
        &[
            "ip",
            "iptables-nft",
            "ip6tables-nft",
            "nft",
            "conntrack",
            "ethtool",
            "python3",
            "timeout",
        ],
    );
    let status = netns::run_lab_script("conformance.sh", &["--modes", "alg,kernel"], &[], 420);
    assert_eq!(
        status,
        Some(0),
        "the conformance table failed for ftp-alg: some case did not behave as expected, \
         INVALID drops were counted or the daemon died (exit 1), or the lab could not be set \
         up (exit 2); see the table and details above and target/lab-logs/cf*/"
    );
}
