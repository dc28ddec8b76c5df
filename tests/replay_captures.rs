//! `ftp-alg replay` on the lab captures in `tests/captures/` (recorded by
//! `tests/captures/record.sh` on the gateway with `tcpdump -i any`, SLL2):
//! the exact decisions, the same as the live daemon logged for the same
//! session, and the same again from the capture rewritten as pcapng with
//! raw IP, and as a client-side Ethernet capture.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ftp_alg::replay::capture::{self, Frame};
use ftp_alg::replay::link::Direction;
use ftp_alg::replay::{output, replay, NatOption, Record, What};
use ftp_alg_proto::engine::EngineConfig;
use ftp_alg_proto::event::Event;
use serde_json::Value;

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/captures")
        .join(name)
}

fn replay_bytes(bytes: &[u8], nat: &[NatOption]) -> Vec<Record> {
    replay(bytes, EngineConfig::default(), nat).unwrap().records
}

fn replay_file(name: &str) -> Vec<Record> {
    let r = replay(
        File::open(path(name)).unwrap(),
        EngineConfig::default(),
        &[],
    )
    .unwrap();
    assert_eq!((r.truncated, r.unknown_link, r.cut_at_end), (0, 0, false));
    r.records
}

/// The report without its timestamps (the first word).
fn lines(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| output::text(r).split_once(' ').unwrap().1.to_string())
        .collect()
}

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

/// The daemon's INFO lines for a session (JSON logs, saved by record.sh)
/// and replay's records, in the same words: translation, rewrite, pinhole.
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

fn frames(name: &str) -> Vec<Frame> {
    capture::read(File::open(path(name)).unwrap(), |_| true)
        .unwrap()
        .frames
}

fn pad4(v: &mut Vec<u8>) {
    while v.len() % 4 != 0 {
        v.push(0);
    }
}

/// The frames as pcapng (little-endian): one raw-IP interface, each
/// packet's direction in `epb_flags`.
fn to_pcapng(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    let block = |out: &mut Vec<u8>, kind: u32, body: &[u8]| {
        let len = (body.len() + 12) as u32;
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&len.to_le_bytes());
    };
    let mut shb = Vec::new();
    shb.extend_from_slice(&0x1A2B_3C4Du32.to_le_bytes());
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    block(&mut out, 0x0A0D_0D0A, &shb);
    let mut idb = Vec::new();
    idb.extend_from_slice(&101u16.to_le_bytes()); // raw IP
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&0u32.to_le_bytes());
    block(&mut out, 1, &idb);
    for f in frames {
        let micros = f.time.as_micros() as u64;
        let mut epb = Vec::new();
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&((micros >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(micros as u32).to_le_bytes());
        epb.extend_from_slice(&(f.ip.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(f.ip.len() as u32).to_le_bytes());
        epb.extend_from_slice(&f.ip);
        pad4(&mut epb);
        let flags: u32 = match f.direction {
            Some(Direction::Incoming) => 1,
            Some(Direction::Outgoing) => 2,
            None => 0,
        };
        epb.extend_from_slice(&[2, 0, 4, 0]);
        epb.extend_from_slice(&flags.to_le_bytes());
        epb.extend_from_slice(&[0, 0, 0, 0]);
        block(&mut out, 6, &epb);
    }
    out
}

/// The frames as a classic pcap of Ethernet frames.
fn to_ethernet_pcap(frames: &[Frame]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for f in frames {
        let mut frame = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        frame.extend_from_slice(if f.ip[0] >> 4 == 6 {
            &[0x86, 0xdd]
        } else {
            &[0x08, 0x00]
        });
        frame.extend_from_slice(&f.ip);
        let t = f.time;
        for v in [
            t.as_secs() as u32,
            t.subsec_micros(),
            frame.len() as u32,
            frame.len() as u32,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&frame);
    }
    out
}

#[test]
fn pcapng_with_epb_flags_reads_like_the_pcap() {
    for name in ["lftp-pasv-dnat.pcap", "ftplib-epsv-v6.pcap"] {
        let ng = to_pcapng(&frames(name));
        assert_eq!(replay_bytes(&ng, &[]), replay_file(name), "{name}");
    }
}

#[test]
fn without_direction_the_untranslated_copies_are_told_apart_by_time() {
    let mut f = frames("ftplib-epsv-v6.pcap");
    f.iter_mut().for_each(|f| f.direction = None);
    assert_eq!(
        replay_bytes(&to_pcapng(&f), &[]),
        replay_file("ftplib-epsv-v6.pcap")
    );
}

#[test]
fn client_side_ethernet_capture_needs_nat_to_match() {
    // Only the client's interface: each packet once, before SNAT.
    let all = frames("curl-port-plus1.pcap");
    let client_side = all[0].interface;
    let one: Vec<Frame> = all
        .into_iter()
        .filter(|f| f.interface == client_side)
        .collect();
    let pcap = to_ethernet_pcap(&one);
    let gateway = lines(&replay_file("curl-port-plus1.pcap"));
    let with_nat = lines(&replay_bytes(
        &pcap,
        &["198.51.100.2=203.0.113.254".parse().unwrap()],
    ));
    assert_eq!(with_nat[1], gateway[1].replace("(capture)", "(option)"));
    assert_eq!(with_nat[2..5], gateway[2..5]);
    // The data connection reaches the client after DNAT: still matched.
    assert_eq!(with_nat[5], "198.51.100.2:41970 data-connection from 203.0.113.10:35001 through 203.0.113.10 -> 203.0.113.254:54929 (dnat 198.51.100.2:54929)");
    // Without it, the session looks untranslated: no rewrite.
    let plain = lines(&replay_bytes(&pcap, &[]));
    assert!(plain[1].ends_with("untranslated (assumed)"), "{plain:?}");
    assert!(!plain.iter().any(|l| l.contains(" rewrite ")), "{plain:?}");
}

#[test]
fn an_unused_pinhole_expires_after_its_lifetime() {
    // The capture cut just before the data connection's SYN, plus one
    // copy of the client's last packet a minute later: the pinhole is
    // never used, and the session is still open when the capture ends.
    let mut f = frames("curl-epsv.pcap");
    let data_syn = f
        .iter()
        .position(|fr| {
            let s = ftp_alg_proto::packet::TcpSegment::parse(&fr.ip).unwrap();
            s.flags.syn && !s.flags.ack && s.dst.port() != 21
        })
        .unwrap();
    f.truncate(data_syn);
    let mut late = f[data_syn - 2].clone();
    late.time += Duration::from_secs(60);
    f.push(late);
    let records = replay_bytes(&to_pcapng(&f), &[]);
    let opened = records
        .iter()
        .find(|r| matches!(r.what, What::Core(Event::Pinhole { .. })))
        .unwrap();
    let expired = records
        .iter()
        .find(|r| matches!(r.what, What::PinholeExpired(_)))
        .unwrap();
    assert_eq!(expired.time - opened.time, Duration::from_secs(30));
    assert_eq!(
        lines(&records)[4..],
        [
            "198.51.100.2:41958 pinhole-expired 198.51.100.2 -> 203.0.113.10:34572: no connection within its lifetime",
            "198.51.100.2:41958 open-at-end the capture ends with the session open",
        ]
    );
}

#[test]
fn cli_prints_json_lines() {
    let out = Command::new(env!("CARGO_BIN_EXE_ftp-alg"))
        .args(["replay", "--json"])
        .arg(path("curl-port-minus3.pcap"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rewrite = events.iter().find(|e| e["event"] == "rewrite").unwrap();
    assert_eq!(rewrite["session"], "198.51.100.222:48242");
    assert_eq!(rewrite["delta"], -3);
    assert_eq!(rewrite["to"], "203,0,113,1,209,7");
    assert_eq!(rewrite["time"], "2026-12-01T09:37:38.388808Z");
    let pinhole = events.iter().find(|e| e["event"] == "pinhole").unwrap();
    assert_eq!(
        (
            &pinhole["src"],
            &pinhole["dst"],
            &pinhole["dport"],
            &pinhole["dnat"]
        ),
        (
            &Value::from("203.0.113.10"),
            &Value::from("203.0.113.1"),
            &Value::from(53511),
            &Value::from("198.51.100.222:53511")
        )
    );
    assert_eq!(pinhole["lifetime_secs"], 30.0);
}

#[test]
fn a_refusal_carries_its_reason_in_json() {
    // Told that the server behind the DNAT is another host, replay finds
    // the 227's address is not the server's own: a bounce, refused.
    let out = Command::new(env!("CARGO_BIN_EXE_ftp-alg"))
        .args(["replay", "--json", "--nat", "203.0.113.1:21=192.0.2.99:21"])
        .arg(path("lftp-pasv-dnat.pcap"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["session-start", "nat", "refusal", "session-end"]);
    assert_eq!(events[1]["source"], "option");
    assert_eq!(events[2]["reason"], "third_party_address");
    assert_eq!(events[2]["form"], "pasv227");
    assert_eq!(events[2]["session"], "203.0.113.20:46358");
}

#[test]
fn other_control_ports_see_nothing() {
    let out = Command::new(env!("CARGO_BIN_EXE_ftp-alg"))
        .args(["replay", "--control-port", "2121"])
        .arg(path("curl-port-minus3.pcap"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn not_a_capture_is_an_error_not_a_panic() {
    let out = Command::new(env!("CARGO_BIN_EXE_ftp-alg"))
        .args(["replay"])
        .arg(path("curl-epsv.alg.log"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a pcap or pcapng file"));
}
