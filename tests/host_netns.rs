//! Host mode (issue 11, root): ftp-alg on the FTP server or client host
//! itself, whose INPUT is `policy drop` with no RELATED rule. Drives
//! `scripts/host.sh`, which builds the host lab of `scripts/lib-lab.sh`
//! (`host_lab_up`) and runs real curl and lftp transfers (EPSV, PASV, EPRT,
//! PORT; downloads and uploads, sha256 compared) in three modes:
//!
//! - `alg`: `ftp-alg run --paths local` on a server host (vsftpd and
//!   proftpd, IPv4 and IPv6) and on a client host (against an outside
//!   vsftpd), `paths = ["local"]` with a `[[nat_override]]` on a server host
//!   behind a 1:1 NAT (the 227 rewritten to the public address), and
//!   `--paths forward,local` on a gateway that is an FTP server too. Every
//!   transfer must pass, a pinhole must admit only its peer and only once,
//!   nothing announced may be reachable after QUIT, 0 INVALID in the hosts,
//!   exit 0 on SIGTERM with the ruleset as before;
//! - `none` (negative control): passive transfers to a local server fail,
//!   active ones from the client host fail (the others pass while OUTPUT
//!   accepts), forwarded ones fail;
//! - `kernel`: the kernel's helper attached in host mode, recorded only
//!   (the README's comparison).
//!
//! Without root this test FAILS; it never skips.

mod netns;

#[test]
fn netns_host_mode_server_client_nat_and_gateway() {
    netns::require_lab(
        "host_netns",
        &[
            "ip",
            "nft",
            "iptables-nft",
            "ip6tables-nft",
            "vsftpd",
            "curl",
            "lftp",
            "python3",
            "conntrack",
            "dpkg",
            "apt-get",
        ],
    );
    // The script takes about 2.5 minutes here; the bound leaves a margin
    // for a loaded machine.
    let (status, out) = netns::run_lab_script_output("host.sh", &[], &[], 420);
    let line = |prefix: &str| {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("scripts/host.sh printed no line starting with {prefix:?}"))
            .to_owned()
    };
    let alg = line("host summary alg: ");
    let none = line("host summary none: ");
    line("host summary kernel: ");
    assert!(
        alg.ends_with("-- OK") && alg.contains(" 0 unexpected;"),
        "with ftp-alg some transfer or check failed: {alg}"
    );
    assert!(
        none.ends_with("-- OK") && none.contains(" 0 unexpected;"),
        "without ftp-alg some transfer did not fail or pass as the firewall dictates: {none}"
    );
    // The checks that make the host mode what it is, each named in the
    // check table with ok under alg.
    for check in [
        "srv-pasv4-scope",
        "srv-epsv6-scope",
        "ch-port4-scope",
        "ch-eprt6-scope",
        "nat-pasv-scope",
        "nat-227-public",
        "srv-invalid",
        "ch-invalid",
        "nat-invalid",
        "gs-invalid",
        "srv-ruleset",
        "ch-ruleset",
        "nat-ruleset",
        "gs-ruleset",
    ] {
        let row = line(&format!("{check} "));
        assert_eq!(
            row.split_whitespace().nth(1),
            Some("ok"),
            "check {check} is not ok with ftp-alg: {row}"
        );
    }
    assert_eq!(
        status,
        Some(0),
        "scripts/host.sh failed (see its table above and target/lab-logs/)"
    );
}
