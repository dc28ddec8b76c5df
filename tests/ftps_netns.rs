//! FTPS (issue 12, root): encrypted control sessions through ftp-alg.
//! Drives `scripts/ftps.sh`, which builds the gateway lab of
//! `scripts/lib-lab.sh` with FTPS servers of its own (vsftpd `ssl_enable`
//! explicit on 21 and `implicit_ssl` on 990, proftpd with mod_tls; a
//! certificate made with openssl) and runs curl `--ssl-reqd` (EPSV, PASV),
//! curl `ftps://` (implicit) and lftp `ftp:ssl-force` (explicit, implicit),
//! downloads and uploads, sha256 compared, in three placements:
//!
//! - `gw`: through the default-drop gateway to an outside server, with
//!   only `[[ftps]]` entries configured (session-scoped range pinholes);
//! - `dnat`: to servers behind the gateway's port forward of 21/990 (the
//!   passive ranges are not forwarded: the pinholes' DNAT does it), the
//!   servers announcing the public address (`pasv_address`,
//!   `MasqueradeAddress`);
//! - `host`: on the server's own host, INPUT policy drop,
//!   `ftp-alg run --paths local` and nothing configured (exact pinholes,
//!   found from the listener the server opened), over IPv4 and IPv6; the
//!   implicit vsftpd listens with `listen_ipv6=YES` on `*:990`, so its
//!   IPv4 sessions run through `::ffff:` mapped data listeners. Every
//!   transfer must get an exact pinhole (metrics, and the log for each IPv6
//!   one) and none a fallback to a range.
//!
//! and in three modes: ftp-alg (every transfer passes, and the scope
//! checks hold: a second client cannot reach the range during the
//! session, the session's client cannot after QUIT, and on the server's
//! host not even a port of the range the server did not open for it), the
//! kernel's helper (the reference: it opens nothing for FTPS, every
//! transfer fails) and a plain open range (every transfer passes and every
//! scope check comes out "reachable": that is what shows the checks can
//! fail). 0 INVALID on the firewall running ftp-alg, and its ruleset after
//! SIGTERM identical to before.
//!
//! Without root this test FAILS; it never skips.

mod netns;

/// The summary line of PLACE and MODE: "transfers A/B" and the verdict.
fn summary<'a>(out: &'a str, place: &str, mode: &str) -> &'a str {
    let prefix = format!("ftps summary {place} {mode}: ");
    out.lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("scripts/ftps.sh printed no line starting with {prefix:?}"))
}

/// The (passed, total) of a summary line's "transfers A/B".
fn transfers(line: &str) -> (u32, u32) {
    let t = line
        .split("transfers ")
        .nth(1)
        .and_then(|r| r.split([',', ':']).next())
        .and_then(|ab| ab.split_once('/'))
        .unwrap_or_else(|| panic!("no 'transfers A/B' in {line:?}"));
    (
        t.0.trim().parse().expect("passed count"),
        t.1.trim().parse().expect("total count"),
    )
}

/// The results ("pass", "fail ...") of the cases of PLACE, MODE and PATH.
fn cases<'a>(out: &'a str, place: &str, mode: &str, path: &str) -> Vec<&'a str> {
    out.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() >= 9 && w[..5] == ["ftps", "case", place, mode, path]).then(|| w[8])
        })
        .collect()
}

/// The number after WORD in LINE ("transfers 24" -> 24).
fn count_after(line: &str, word: &str) -> u32 {
    line.split(word)
        .nth(1)
        .and_then(|r| r.split([',', ' ', '(', ')']).find(|t| !t.is_empty()))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after {word:?} in {line:?}"))
}

/// What the scope check NAME of PLACE and MODE found (reachable, blocked,
/// ok, failed).
fn scope<'a>(out: &'a str, place: &str, mode: &str, name: &str) -> &'a str {
    out.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("ftps")
                && w.next() == Some("scope")
                && w.next() == Some(place)
                && w.next() == Some(mode)
                && w.next() == Some(name))
            .then(|| w.next())
            .flatten()
        })
        .unwrap_or_else(|| panic!("scripts/ftps.sh printed no scope check {place} {mode} {name}"))
}

#[test]
fn netns_ftps_gateway_dnat_and_host_with_scope_checks() {
    netns::require_lab(
        "ftps_netns",
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
            "openssl",
            "dpkg",
            "apt-get",
        ],
    );
    // About 2 minutes here; the bound leaves a margin for a loaded machine.
    let (status, out) = netns::run_lab_script_output("ftps.sh", &[], &[], 420);
    for place in ["gw", "dnat", "host"] {
        let alg = summary(&out, place, "alg");
        let (passed, total) = transfers(alg);
        assert!(
            total >= if place == "host" { 24 } else { 16 } && passed == total,
            "{place}: with ftp-alg too few FTPS transfers, or not every one passed: {alg}"
        );
        assert!(
            alg.contains("INVALID 0,")
                && alg.contains("ruleset after SIGTERM identical")
                && alg.ends_with(": OK"),
            "{place}: ftp-alg's run was not clean: {alg}"
        );
        // A second client and the same client after QUIT never get in.
        for check in ["second-port", "second-range", "after-quit"] {
            assert_eq!(
                scope(&out, place, "alg", check),
                "blocked",
                "{place}: scope check {check} with ftp-alg"
            );
        }
        assert_eq!(scope(&out, place, "alg", "own-transfer"), "ok");
        // A range pinhole admits the session's client to the range; an
        // exact one (the server's own host) only to the port it opened.
        let own = if place == "host" {
            "blocked"
        } else {
            "reachable"
        };
        assert_eq!(
            scope(&out, place, "alg", "own-range"),
            own,
            "{place}: scope check own-range with ftp-alg"
        );

        let kernel = summary(&out, place, "kernel");
        assert_eq!(
            transfers(kernel).0,
            0,
            "{place}: the kernel helper cannot read TLS, yet a transfer passed: {kernel}"
        );
        // The open range is what the checks must catch.
        let open = summary(&out, place, "open");
        let (passed, total) = transfers(open);
        assert!(passed == total && total > 0, "{place}: open range: {open}");
        for check in ["second-port", "second-range", "after-quit"] {
            assert_eq!(
                scope(&out, place, "open", check),
                "reachable",
                "{place}: on a plain open range scope check {check} must fail"
            );
        }
    }
    // The server's own host over IPv6: every transfer passes with
    // ftp-alg, none without it (the negative control: the helper opens
    // nothing for TLS), on the explicit and on the dual-stack implicit vsftpd.
    let v6 = cases(&out, "host", "alg", "co-so6");
    assert!(
        v6.len() >= 8 && v6.iter().all(|r| *r == "pass"),
        "host: IPv6 FTPS transfers with ftp-alg: {v6:?}"
    );
    let v6_kernel = cases(&out, "host", "kernel", "co-so6");
    assert!(
        v6_kernel.len() >= 4 && v6_kernel.iter().all(|r| *r == "fail"),
        "host: IPv6 FTPS transfers without ftp-alg must fail: {v6_kernel:?}"
    );
    // The implicit vsftpd is one dual-stack socket: the IPv4 cases to it
    // (counted in the host summary above) went through ::ffff: listeners.
    assert!(
        out.lines()
            .any(|l| l == "ftps listener so vsftpd-implicit *:990 (listen_ipv6=YES)"),
        "the implicit vsftpd did not listen dual-stack on *:990"
    );
    // Exact pinholes only, one per transfer; the log names one to the
    // server's IPv6 address per IPv6 transfer.
    let exact = out
        .lines()
        .find(|l| l.starts_with("ftps exact host alg: "))
        .expect("scripts/ftps.sh printed no 'ftps exact host alg' line");
    let (xfers, xfers6) = (
        count_after(exact, "transfers "),
        count_after(exact, "(IPv6 "),
    );
    assert!(
        xfers >= 24 && xfers6 == v6.len() as u32,
        "host: transfers counted for the metrics: {exact}"
    );
    assert!(
        count_after(exact, "exact pinholes ") >= xfers
            && count_after(exact, "fallbacks ") == 0
            && count_after(exact, "IPv6 exact-pinhole log lines ") >= xfers6,
        "host: not an exact pinhole per transfer, or a fallback: {exact}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("ftps result: OK")),
        "scripts/ftps.sh did not report OK"
    );
    assert_eq!(
        status,
        Some(0),
        "scripts/ftps.sh failed (see its summary above and target/lab-logs/ft*/)"
    );
}
