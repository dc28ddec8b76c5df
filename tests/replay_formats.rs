//! `ftp-alg replay` beyond the recorded form: the same captures as pcapng
//! with raw IP, without link-layer directions, as a client-side Ethernet
//! capture with `--nat`; a pinhole that expires unused; the command line
//! and its JSON lines.

mod replay_support;

use std::process::Command;
use std::time::Duration;

use ftp_alg::replay::capture::Frame;
use ftp_alg::replay::What;
use ftp_alg_proto::event::Event;
use replay_support::{frames, lines, path, replay_bytes, replay_file, to_ethernet_pcap, to_pcapng};
use serde_json::Value;

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
    assert_eq!(
        kinds,
        ["session-start", "nat", "refusal", "blocked", "session-end"]
    );
    assert_eq!(events[1]["source"], "option");
    assert_eq!(events[2]["reason"], "third_party_address");
    assert_eq!(events[2]["form"], "pasv227");
    assert_eq!(events[2]["session"], "203.0.113.20:46358");
    // The client's data connection then finds no pinhole.
    assert_eq!(
        (&events[3]["from"], &events[3]["to"]),
        (
            &Value::from("203.0.113.20:55190"),
            &Value::from("203.0.113.1:42185")
        )
    );
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

#[test]
fn cut_or_damaged_captures_never_panic() {
    // Peer input is never an error of ours, and neither is a damaged
    // file: every prefix, and every prefix with a flipped byte, reads as
    // a capture (maybe cut short) or is refused.
    for name in ["lftp-pasv-dnat.pcap", "ftplib-epsv-v6.pcap"] {
        let bytes = std::fs::read(path(name)).unwrap();
        let ng = to_pcapng(&frames(name));
        for data in [bytes, ng] {
            for end in (0..data.len()).step_by(157) {
                let mut d = data[..end].to_vec();
                let _ = ftp_alg::replay::replay(&d[..], Default::default(), &[]);
                if let Some(b) = d.get_mut(end / 2) {
                    *b ^= 0x5a;
                }
                let _ = ftp_alg::replay::replay(&d[..], Default::default(), &[]);
            }
        }
    }
}

#[test]
fn a_capture_started_mid_session_still_finds_the_mapping() {
    // Without the handshake and the greeting (both copies of the first
    // eight packets dropped): the copies pair up on a later segment, the
    // session resynchronises on a reply, and the PORT is still rewritten.
    let all = frames("curl-port-plus1.pcap");
    let full = lines(&replay_file("curl-port-plus1.pcap"));
    let cut = lines(&replay_bytes(&to_pcapng(&all[16..]), &[]));
    assert_eq!(
        cut[0],
        "198.51.100.2:41970 session-start to server 203.0.113.10:21 (picked up mid-stream)"
    );
    assert_eq!(cut[1..], full[1..], "{cut:#?}");
}

#[test]
fn a_policy_file_answers_what_if() {
    // The same capture under `allow_privileged_ports = true`: the PORT to
    // port 25 would have been rewritten and pinholed.
    let cfg = std::env::temp_dir().join(format!("ftp-alg-replay-{}.toml", std::process::id()));
    std::fs::write(&cfg, "[policy]\nallow_privileged_ports = true\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ftp-alg"))
        .arg("replay")
        .arg("--config")
        .arg(&cfg)
        .arg(path("ftplib-refusals.pcap"))
        .output()
        .unwrap();
    std::fs::remove_file(&cfg).unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let events: Vec<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
    assert_eq!(
        events[2..5],
        [
            "198.51.100.2:39768 announcement PORT 198.51.100.2 port 25",
            "198.51.100.2:39768 rewrite PORT \"198,51,100,2,0,25\" -> \"203,0,113,254,0,25\" (+1 bytes)",
            "198.51.100.2:39768 pinhole 203.0.113.10 -> 203.0.113.254:25 (dnat 198.51.100.2:25) for 30 s (PORT)",
        ]
    );
    // The capture's server still answers 500 (it got the PORT untranslated
    // in reality): the core closes the pinhole on that refusal.
    assert_eq!(
        events[5],
        "198.51.100.2:39768 pinhole-closed 203.0.113.10 -> 203.0.113.254:25 (dnat 198.51.100.2:25)"
    );
    assert!(events[6].contains("third_party_address"), "{events:#?}");
}
