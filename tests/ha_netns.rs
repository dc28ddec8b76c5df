//! HA failover (root): two gateways with conntrackd FTFW and ftp-alg on
//! both; control sessions opened through the first, failed over to the
//! second mid-session, then a NOOP and a second transfer each. Drives
//! `scripts/ha.sh` (issue #10 item 7).

mod netns;

#[test]
fn netns_ha_failover_mid_session() {
    netns::require_lab(
        "ha_netns",
        &[
            "ip",
            "nft",
            "iptables-nft",
            "vsftpd",
            "python3",
            "conntrack",
            "conntrackd",
        ],
    );
    // The script's own waits add up to about a minute; the bound leaves a
    // margin for a loaded machine.
    let status = netns::run_lab_script("ha.sh", &[], &[], 180);
    assert_eq!(status, Some(0), "scripts/ha.sh failed (see its log above)");
}
