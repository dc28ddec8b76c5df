//! Sessions survive `kill -9` of ftp-alg (root): a control session whose
//! text was rewritten with a length change (PORT +1, PORT -3, 227 +1 under
//! DNAT) keeps working across a crash and a restart, the client sending
//! while no instance runs; scripted peers for the exact bytes and lftp with
//! sha256-checked files; 0 INVALID; the ruleset as before after SIGTERM.
//! Drives `scripts/durable.sh`.

mod netns;

#[test]
fn netns_sessions_survive_kill_and_restart() {
    netns::require_lab(
        "durable_netns",
        &[
            "ip",
            "nft",
            "iptables-nft",
            "vsftpd",
            "python3",
            "lftp",
            "conntrack",
        ],
    );
    let status = netns::run_lab_script("durable.sh", &[], &[], 600);
    assert_eq!(
        status,
        Some(0),
        "scripts/durable.sh failed (see its log above)"
    );
}
