//! Restarts under control traffic (root): `kill -9` and a new instance,
//! five times, while NOOP sessions keep running through the gateway; then
//! the queue rule's chain deleted under load. Drives `scripts/restart.sh`.

mod netns;

#[test]
fn netns_restarts_and_chain_removal_under_load() {
    netns::require_lab(
        "restart_netns",
        &[
            "ip",
            "nft",
            "iptables-nft",
            "vsftpd",
            "python3",
            "conntrack",
        ],
    );
    let status = netns::run_lab_script("restart.sh", &["5"], &[], 600);
    assert_eq!(
        status,
        Some(0),
        "scripts/restart.sh failed (see its log above)"
    );
}
