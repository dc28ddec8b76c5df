//! `ftp-alg replay` on the lab captures in `tests/captures/` (recorded by
//! `tests/captures/record.sh` on the gateway with `tcpdump -i any`, SLL2):
//! the exact decisions, and the same as the live daemon logged for the
//! same session.

mod replay_support;

use ftp_alg::replay::{Record, What};
use ftp_alg_proto::event::Event;
use replay_support::{lines, path, replay_file};
use serde_json::Value;

#[test]
fn curl_epsv_through_snat() {
    assert_eq!(
        lines(&replay_file("curl-epsv.pcap")),
        [
            "198.51.100.2:41958 session-start to server 203.0.113.10:21",
            "198.51.100.2:41958 nat client seen by the server as 203.0.113.254:41958, server is 203.0.113.10:21 (capture)",
            "198.51.100.2:41958 announcement 229 port 34572",
            "198.51.100.2:41958 pinhole 198.51.100.2 -> 203.0.113.10:34572 for 30 s (229)",
            "198.51.100.2:41958 data-connection from 198.51.100.2:37494 through 198.51.100.2 -> 203.0.113.10:34572",
            "198.51.100.2:41958 session-end control connection closed",
        ]
    );
}

#[test]
fn curl_port_through_snat_lengthens_by_one() {
    assert_eq!(
        lines(&replay_file("curl-port-plus1.pcap")),
        [
            "198.51.100.2:41970 session-start to server 203.0.113.10:21",
            "198.51.100.2:41970 nat client seen by the server as 203.0.113.254:41970, server is 203.0.113.10:21 (capture)",
            "198.51.100.2:41970 announcement PORT 198.51.100.2 port 54929",
            "198.51.100.2:41970 rewrite PORT \"198,51,100,2,214,145\" -> \"203,0,113,254,214,145\" (+1 bytes)",
            "198.51.100.2:41970 pinhole 203.0.113.10 -> 203.0.113.254:54929 (dnat 198.51.100.2:54929) for 30 s (PORT)",
            "198.51.100.2:41970 data-connection from 203.0.113.10:35001 through 203.0.113.10 -> 203.0.113.254:54929 (dnat 198.51.100.2:54929)",
            "198.51.100.2:41970 session-end control connection closed",
        ]
    );
}

#[test]
fn curl_port_through_snat_shortens_by_three() {
    assert_eq!(
        lines(&replay_file("curl-port-minus3.pcap")),
        [
            "198.51.100.222:48242 session-start to server 203.0.113.10:21",
            "198.51.100.222:48242 nat client seen by the server as 203.0.113.1:48242, server is 203.0.113.10:21 (capture)",
            "198.51.100.222:48242 announcement PORT 198.51.100.222 port 53511",
            "198.51.100.222:48242 rewrite PORT \"198,51,100,222,209,7\" -> \"203,0,113,1,209,7\" (-3 bytes)",
            "198.51.100.222:48242 pinhole 203.0.113.10 -> 203.0.113.1:53511 (dnat 198.51.100.222:53511) for 30 s (PORT)",
            "198.51.100.222:48242 data-connection from 203.0.113.10:34249 through 203.0.113.10 -> 203.0.113.1:53511 (dnat 198.51.100.222:53511)",
            "198.51.100.222:48242 session-end control connection closed",
        ]
    );
}

#[test]
fn lftp_pasv_to_a_server_behind_dnat() {
    assert_eq!(
        lines(&replay_file("lftp-pasv-dnat.pcap")),
        [
            "203.0.113.20:46358 session-start to server 203.0.113.1:21",
            "203.0.113.20:46358 nat client seen by the server as 203.0.113.20:46358, server is 192.0.2.10:21 (capture)",
            "203.0.113.20:46358 announcement 227 192.0.2.10 port 42185",
            "203.0.113.20:46358 rewrite 227 \"192,0,2,10,164,201\" -> \"203,0,113,1,164,201\" (+1 bytes)",
            "203.0.113.20:46358 pinhole 203.0.113.20 -> 203.0.113.1:42185 (dnat 192.0.2.10:42185) for 30 s (227)",
            "203.0.113.20:46358 data-connection from 203.0.113.20:55190 through 203.0.113.20 -> 203.0.113.1:42185 (dnat 192.0.2.10:42185)",
            "203.0.113.20:46358 session-end control connection closed",
        ]
    );
}

#[test]
fn ftplib_epsv_over_ipv6_untranslated() {
    // Both copies have the same tuple: SLL2's direction tells them apart.
    assert_eq!(
        lines(&replay_file("ftplib-epsv-v6.pcap")),
        [
            "[2001:db8:1::2]:40518 session-start to server [2001:db8:2::10]:21",
            "[2001:db8:1::2]:40518 nat client seen by the server as [2001:db8:1::2]:40518, server is [2001:db8:2::10]:21 (capture)",
            "[2001:db8:1::2]:40518 announcement 229 port 30504",
            "[2001:db8:1::2]:40518 pinhole 2001:db8:1::2 -> [2001:db8:2::10]:30504 for 30 s (229)",
            "[2001:db8:1::2]:40518 data-connection from [2001:db8:1::2]:49144 through 2001:db8:1::2 -> [2001:db8:2::10]:30504",
            "[2001:db8:1::2]:40518 session-end control connection closed",
        ]
    );
}

#[test]
fn ftplib_refused_ports_then_pasv() {
    assert_eq!(
        lines(&replay_file("ftplib-refusals.pcap")),
        [
            "198.51.100.2:39768 session-start to server 203.0.113.10:21",
            "198.51.100.2:39768 nat client seen by the server as 203.0.113.254:39768, server is 203.0.113.10:21 (capture)",
            "198.51.100.2:39768 refusal PORT nothing opened: data port below 1024 (privileged_port)",
            "198.51.100.2:39768 refusal PORT nothing opened: address is not the announcing peer's own (third_party_address)",
            "198.51.100.2:39768 announcement 227 203.0.113.10 port 23077",
            "198.51.100.2:39768 pinhole 198.51.100.2 -> 203.0.113.10:23077 for 30 s (227)",
            "198.51.100.2:39768 data-connection from 198.51.100.2:58734 through 198.51.100.2 -> 203.0.113.10:23077",
            "198.51.100.2:39768 session-end control connection closed",
        ]
    );
}

/// The daemon's INFO lines for a session (JSON logs, saved by record.sh)
/// and replay's records, in the same words: translation, rewrite,
/// refusal, pinhole.
fn daemon_lines(name: &str) -> Vec<String> {
    let log = std::fs::read_to_string(path(name)).unwrap();
    log.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|v| {
            let f = &v["fields"];
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            match f["message"].as_str()? {
                "control session is translated" => Some(format!(
                    "{} nat {} {}",
                    s("client"),
                    s("client_public"),
                    s("server_real")
                )),
                "announcement rewritten" => Some(format!(
                    "{} rewrite {} {} {} {}",
                    s("client"),
                    s("form"),
                    s("from"),
                    s("to"),
                    f["delta"]
                )),
                "announcement refused; nothing opened" => Some(format!(
                    "{} refusal {} {}",
                    s("client"),
                    s("form"),
                    s("reason")
                )),
                "line ignored; nothing opened" => {
                    Some(format!("{} refusal - {}", s("client"), s("reason")))
                }
                "pinhole opened" => Some(format!(
                    "{} pinhole {} {}",
                    s("client"),
                    s("form"),
                    s("pinhole")
                )),
                _ => None,
            }
        })
        .collect()
}

fn replay_lines(records: &[Record]) -> Vec<String> {
    let mut server = std::collections::HashMap::new();
    records
        .iter()
        .filter_map(|r| {
            let c = r.session;
            match &r.what {
                What::Core(Event::SessionOpened { server: s, .. }) => {
                    server.insert(c, *s);
                    None
                }
                // Logged only when the mapping differs from the tuple.
                What::Nat(Some(m), _)
                    if m.client_public != c || Some(&m.server_real) != server.get(&c) =>
                {
                    Some(format!("{c} nat {} {}", m.client_public, m.server_real))
                }
                What::Core(Event::Rewrite {
                    form,
                    from,
                    to,
                    delta,
                }) => Some(format!("{c} rewrite {form:?} {from} {to} {delta}")),
                What::Core(Event::Refusal { form, reason }) => Some(match form {
                    Some(f) => format!("{c} refusal {f:?} {reason}"),
                    None => format!("{c} refusal - {reason}"),
                }),
                What::Core(Event::Pinhole { form, opening }) => {
                    Some(format!("{c} pinhole {form:?} {}", opening.pinhole))
                }
                _ => None,
            }
        })
        .collect()
}

#[test]
fn replay_decides_what_the_live_daemon_logged() {
    for name in [
        "curl-epsv",
        "curl-port-plus1",
        "curl-port-minus3",
        "lftp-pasv-dnat",
        "ftplib-epsv-v6",
        "ftplib-refusals",
    ] {
        let daemon = daemon_lines(&format!("{name}.alg.log"));
        assert!(!daemon.is_empty(), "{name}: no daemon lines");
        assert_eq!(
            replay_lines(&replay_file(&format!("{name}.pcap"))),
            daemon,
            "{name}"
        );
    }
}
