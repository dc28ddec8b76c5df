//! In-place upgrades under control traffic (root): SIGUSR2 three times,
//! each after the binary file was replaced, while NOOP sessions run through
//! the gateway: same PID, no queued packet dropped, every NOOP answered,
//! clean exit. Drives `scripts/upgrade.sh`.

mod netns;

#[test]
fn netns_upgrade_in_place_under_load() {
    netns::require_lab(
        "upgrade_netns",
        &[
            "ip",
            "nft",
            "iptables-nft",
            "vsftpd",
            "python3",
            "conntrack",
        ],
    );
    let status = netns::run_lab_script("upgrade.sh", &["3"], &[], 600);
    assert_eq!(
        status,
        Some(0),
        "scripts/upgrade.sh failed (see its log above)"
    );
}
