//! Firewall reloads while ftp-alg runs (root): `iptables-restore` of the
//! admin's saved rules, `nft flush ruleset` with the firewall set up again,
//! and `nft -f` of a native ruleset file that starts with `flush ruleset`.
//! After each, ftp-alg must log what it repaired within 2 s, a pinhole held
//! across the reload and real transfers in every mode must work, and the
//! repair metric must count it; SIGTERM then exits 0 with the ruleset as
//! before. Drives `scripts/reload.sh`.

mod netns;

#[test]
fn netns_firewall_reloads_are_repaired() {
    netns::require_lab(
        "reload_netns",
        &[
            "ip",
            "nft",
            "iptables-nft",
            "ip6tables-nft",
            "vsftpd",
            "curl",
            "lftp",
            "python3",
        ],
    );
    let status = netns::run_lab_script("reload.sh", &[], &[], 420);
    assert_eq!(
        status,
        Some(0),
        "scripts/reload.sh failed (see its log above)"
    );
}
