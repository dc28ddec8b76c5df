//! Exact FTPS pinholes on the server's own host, live (root): vsftpd with
//! `ssl_enable=YES` behind its host's INPUT policy drop, `ftp-alg run
//! --paths local` with nothing configured; curl --ssl-reqd downloads (EPSV
//! over IPv4 and IPv6, PASV) and an upload must pass with sha256 equal,
//! through exact pinholes only (no fallback), a third host must not reach
//! the session's passive port nor the client a port the server did not
//! open, 0 INVALID, SIGTERM exits 0 with the ruleset as before; without
//! ftp-alg the download must fail. Drives `scripts/ftps-exact.sh`.

mod netns;

#[test]
fn netns_ftps_exact_pinholes_on_the_servers_host() {
    netns::require_lab(
        "ftps_exact_netns",
        &[
            "ip",
            "nft",
            "iptables-nft",
            "ip6tables-nft",
            "vsftpd",
            "curl",
            "openssl",
            "python3",
            "ss",
        ],
    );
    let status = netns::run_lab_script("ftps-exact.sh", &[], &[], 180);
    assert_eq!(
        status,
        Some(0),
        "scripts/ftps-exact.sh failed (see its log above)"
    );
}
