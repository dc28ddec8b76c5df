//! Root-only tests of the netlink shells against the real kernel: pinhole
//! elements in ftp-alg's nftables table and conntrack NAT lookups.
//!
//! Every test builds its own network namespaces (prefix `fa-nl-`), enters
//! them with setns(2) for the test thread only (netlink sockets opened
//! afterwards belong to that namespace), and deletes them on the way out,
//! also when the test fails. Without root the tests fail loudly: they must
//! never pass silently.

mod netns;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ftp_alg::config::Config;
use ftp_alg::kernel::conntrack::Conntrack;
use ftp_alg::kernel::nft::NftPinholes;
use ftp_alg::rules::{self, QueueBackend};
use ftp_alg_proto::pinhole::Pinhole;
use netns::{run_ok, Entered, Netns};

/// ftp-alg's table, exactly as the ruleset module loads it with `nft -f`.
fn table() -> String {
    rules::table_text(&Config::default(), QueueBackend::Xtables)
}

// ---------------------------------------------------------------- helpers

/// A namespace `fa-nl-<test>-<role>-<pid>` (the shared helper's).
fn new_ns(test: &str, role: &str) -> Netns {
    Netns::new("fa-nl", &format!("{test}-{role}"))
}

/// One element as `nft list` shows it, without the timing fields.
#[derive(Debug)]
struct Listed {
    text: String,
    timeout_ms: Option<u64>,
    expires_ms: Option<u64>,
}

/// Parses an nft duration such as `1m`, `29s996ms`, `1h2m`.
fn nft_duration_ms(s: &str) -> u64 {
    let mut total = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits]
            .parse()
            .unwrap_or_else(|_| panic!("bad duration {s}"));
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        total += n * match &rest[..unit] {
            "d" => 86_400_000,
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1000,
            "ms" => 1,
            u => panic!("unknown unit {u} in {s}"),
        };
        rest = &rest[unit..];
    }
    total
}

/// The elements of a set or map of ftp-alg's table (entered namespace not
/// needed: runs `nft` through `ip netns exec`), sorted by text.
fn list(ns: &Netns, kind: &str, name: &str) -> Vec<Listed> {
    let out = ns.sh(&format!("nft list {kind} inet ftp_alg {name}"));
    let Some(start) = out.find("elements = {") else {
        return Vec::new();
    };
    let body = &out[start + "elements = {".len()..];
    let body = &body[..body.find('}').expect("unterminated element list")];
    let mut listed: Vec<Listed> = body
        .split(',')
        .map(|element| {
            let mut words = Vec::new();
            let (mut timeout_ms, mut expires_ms) = (None, None);
            let mut it = element.split_whitespace();
            while let Some(w) = it.next() {
                match w {
                    "timeout" => timeout_ms = it.next().map(nft_duration_ms),
                    "expires" => expires_ms = it.next().map(nft_duration_ms),
                    _ => words.push(w),
                }
            }
            Listed {
                text: words.join(" "),
                timeout_ms,
                expires_ms,
            }
        })
        .collect();
    listed.sort_by(|a, b| a.text.cmp(&b.text));
    listed
}

fn texts(listed: &[Listed]) -> Vec<&str> {
    listed.iter().map(|l| l.text.as_str()).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn pinhole(src: &str, dst: &str, dport: u16, dnat: Option<&str>) -> Pinhole {
    Pinhole {
        src: ip(src),
        dst: ip(dst),
        dport,
        dnat: dnat.map(sock),
    }
}

/// A namespace with ftp-alg's table loaded, entered by this thread.
fn table_ns(test: &str) -> (Netns, Entered) {
    let ns = new_ns(test, "gw");
    ns.nft_load(&table());
    let entered = ns.enter();
    (ns, entered)
}

// ------------------------------------------------------------------ tests

#[test]
fn add_shows_exact_elements_and_remove_deletes_them() {
    // `_in` drops first: the thread leaves the namespace before it is deleted.
    let (ns, _in) = table_ns("elems");
    let mut nft = NftPinholes::open("ftp_alg").unwrap();
    let t = Duration::from_secs(30);
    let plain4 = pinhole("192.0.2.10", "198.51.100.20", 40000, None);
    let nat4 = pinhole(
        "192.0.2.11",
        "198.51.100.1",
        50001,
        Some("203.0.113.7:2121"),
    );
    let plain6 = pinhole("2001:db8:1::10", "2001:db8:2::20", 40001, None);
    let nat6 = pinhole(
        "2001:db8:1::11",
        "2001:db8:2::1",
        50002,
        Some("[2001:db8:3::7]:2122"),
    );
    for p in [&plain4, &nat4, &plain6, &nat6] {
        nft.add(p, t).unwrap_or_else(|e| panic!("add {p}: {e}"));
    }

    let pin4 = list(&ns, "set", "pin4");
    assert_eq!(
        texts(&pin4),
        [
            "192.0.2.10 . 198.51.100.20 . 40000",
            // Matched before DNAT: keyed by the announced address.
            "192.0.2.11 . 198.51.100.1 . 50001",
        ]
    );
    let dnat4 = list(&ns, "map", "dnat4");
    assert_eq!(
        texts(&dnat4),
        ["192.0.2.11 . 198.51.100.1 . 50001 : 203.0.113.7 . 2121"]
    );
    assert_eq!(
        texts(&list(&ns, "set", "pin6")),
        [
            "2001:db8:1::10 . 2001:db8:2::20 . 40001",
            "2001:db8:1::11 . 2001:db8:2::1 . 50002",
        ]
    );
    assert_eq!(
        texts(&list(&ns, "map", "dnat6")),
        ["2001:db8:1::11 . 2001:db8:2::1 . 50002 : 2001:db8:3::7 . 2122"]
    );
    for l in pin4.iter().chain(&dnat4) {
        assert_eq!(l.timeout_ms, Some(30_000), "{l:?}");
        assert!(
            l.expires_ms.is_some_and(|e| e <= 30_000 && e > 20_000),
            "{l:?}"
        );
    }

    for p in [&plain4, &nat4, &plain6, &nat6] {
        nft.remove(p).unwrap_or_else(|e| panic!("remove {p}: {e}"));
    }
    for (kind, name) in [
        ("set", "pin4"),
        ("set", "pin6"),
        ("map", "dnat4"),
        ("map", "dnat6"),
    ] {
        assert!(
            list(&ns, kind, name).is_empty(),
            "{name} not empty after remove"
        );
    }
    // Removing what is already gone is fine.
    for p in [&plain4, &nat4, &plain6, &nat6] {
        nft.remove(p)
            .unwrap_or_else(|e| panic!("second remove {p}: {e}"));
    }
}

#[test]
fn remove_after_the_filter_element_was_consumed_still_removes_the_dnat_element() {
    let (ns, _in) = table_ns("consumed");
    let mut nft = NftPinholes::open("ftp_alg").unwrap();
    let p = pinhole(
        "192.0.2.11",
        "198.51.100.1",
        50001,
        Some("203.0.113.7:2121"),
    );
    nft.add(&p, Duration::from_secs(30)).unwrap();
    // What the pinhole rule does when the data connection arrives.
    ns.sh("nft delete element inet ftp_alg pin4 '{ 192.0.2.11 . 198.51.100.1 . 50001 }'");
    assert_eq!(list(&ns, "map", "dnat4").len(), 1);

    // The first batch fails with ENOENT for pin4 and is aborted as a whole;
    // remove() must still delete the dnat4 element.
    nft.remove(&p).unwrap();
    assert!(list(&ns, "map", "dnat4").is_empty());
    assert!(list(&ns, "set", "pin4").is_empty());
}

#[test]
fn re_add_refreshes_the_timeout() {
    let (ns, _in) = table_ns("refresh");
    let mut nft = NftPinholes::open("ftp_alg").unwrap();
    let p4 = pinhole(
        "192.0.2.11",
        "198.51.100.1",
        50001,
        Some("203.0.113.7:2121"),
    );
    let p6 = pinhole("2001:db8:1::10", "2001:db8:2::20", 40001, None);
    for p in [&p4, &p6] {
        nft.add(p, Duration::from_secs(10)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1500));
    let aged = list(&ns, "map", "dnat4");
    assert!(aged[0].expires_ms.unwrap() <= 8_600, "{aged:?}");

    // Same timeout again: the expiry moves forward.
    for p in [&p4, &p6] {
        nft.add(p, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("re-add {p}: {e}"));
    }
    for (kind, name) in [("map", "dnat4"), ("set", "pin4"), ("set", "pin6")] {
        let listed = list(&ns, kind, name);
        assert_eq!(listed.len(), 1, "{name}: {listed:?}");
        assert!(listed[0].expires_ms.unwrap() > 9_000, "{name}: {listed:?}");
    }

    // A longer timeout replaces the old one.
    nft.add(&p4, Duration::from_secs(120)).unwrap();
    for (kind, name) in [("map", "dnat4"), ("set", "pin4")] {
        let listed = list(&ns, kind, name);
        assert_eq!(listed[0].timeout_ms, Some(120_000), "{name}: {listed:?}");
        assert!(
            listed[0].expires_ms.unwrap() > 110_000,
            "{name}: {listed:?}"
        );
    }
}

#[test]
fn errors_name_the_set_and_fail_atomically() {
    let (ns, _in) = table_ns("errors");
    let mut nft = NftPinholes::open("ftp_alg").unwrap();
    let p = pinhole(
        "192.0.2.11",
        "198.51.100.1",
        50001,
        Some("203.0.113.7:2121"),
    );

    let mixed = pinhole("192.0.2.11", "2001:db8::1", 50001, None);
    assert_eq!(
        nft.add(&mixed, Duration::from_secs(1)).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(
        nft.remove(&mixed).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );

    let mut missing = NftPinholes::open("no_such_table").unwrap();
    let err = missing.add(&p, Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("no_such_table pin4"), "{err}");

    // The same announced address mapped to another listener: refused, and
    // the batch's filter element is not added either.
    nft.add(&p, Duration::from_secs(30)).unwrap();
    let other = pinhole(
        "192.0.2.11",
        "198.51.100.1",
        50001,
        Some("203.0.113.8:2121"),
    );
    let err = nft.add(&other, Duration::from_secs(30)).unwrap_err();
    assert!(err.to_string().contains("dnat4"), "{err}");
    assert!(
        err.raw_os_error().is_none() && err.get_ref().is_some(),
        "{err:?}"
    );
    assert_eq!(
        texts(&list(&ns, "set", "pin4")),
        ["192.0.2.11 . 198.51.100.1 . 50001"]
    );
}

/// Client -- router (masquerade to 203.0.113.1 / 2001:db8:2::1) -- server.
#[test]
fn conntrack_lookup_returns_the_snat_mapping() {
    let client = new_ns("ct", "c");
    let router = new_ns("ct", "r");
    let server = new_ns("ct", "s");
    run_ok(
        "ip",
        &[
            "link",
            "add",
            "c0",
            "netns",
            &client.name,
            "type",
            "veth",
            "peer",
            "name",
            "r0",
            "netns",
            &router.name,
        ],
    );
    run_ok(
        "ip",
        &[
            "link",
            "add",
            "r1",
            "netns",
            &router.name,
            "type",
            "veth",
            "peer",
            "name",
            "s0",
            "netns",
            &server.name,
        ],
    );
    client.sh(
        "ip addr add 192.0.2.2/24 dev c0 && ip addr add 2001:db8:1::2/64 dev c0 nodad && \
         ip link set c0 up && ip route add default via 192.0.2.1 && \
         ip -6 route add default via 2001:db8:1::1",
    );
    router.sh(
        "ip addr add 192.0.2.1/24 dev r0 && ip addr add 2001:db8:1::1/64 dev r0 nodad && \
         ip addr add 203.0.113.1/24 dev r1 && ip addr add 2001:db8:2::1/64 dev r1 nodad && \
         ip link set r0 up && ip link set r1 up && \
         sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1",
    );
    router.nft_load(
        "table inet fa_nl_nat {\n chain post { type nat hook postrouting priority srcnat; \
         oifname \"r1\" masquerade; }\n}\n",
    );
    server.sh(
        "ip addr add 203.0.113.2/24 dev s0 && ip addr add 2001:db8:2::2/64 dev s0 nodad && \
         ip link set s0 up",
    );

    // Accepts and holds connections until stdin closes (or 30 s pass).
    let server_py = r#"
import socket, select, sys, time
ls = []
for fam, addr in ((socket.AF_INET, "203.0.113.2"), (socket.AF_INET6, "2001:db8:2::2")):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 2121)); s.listen(8); ls.append(s)
print("ready", flush=True)
held, end = [], time.time() + 30
while time.time() < end:
    r, _, _ = select.select(ls + [sys.stdin], [], [], 0.2)
    if sys.stdin in r: break
    for s in ls:
        if s in r: held.append(s.accept()[0])
"#;
    // Connects, prints its local port, holds the connection until stdin
    // closes (or 30 s pass).
    let client_py = r#"
import socket, select, sys
s = socket.create_connection((sys.argv[1], 2121), timeout=5)
print(s.getsockname()[1], flush=True)
select.select([sys.stdin], [], [], 30)
"#;
    let wait = Duration::from_secs(10);
    let srv = server.spawn(&["python3", "-c", server_py]);
    assert_eq!(srv.line(wait), "ready");
    let cli4 = client.spawn(&["python3", "-c", client_py, "203.0.113.2"]);
    let port4: u16 = cli4.line(wait).parse().unwrap();
    let cli6 = client.spawn(&["python3", "-c", client_py, "2001:db8:2::2"]);
    let port6: u16 = cli6.line(wait).parse().unwrap();

    let _in = router.enter();
    let mut ct = Conntrack::open().unwrap();

    let (c4, s4) = (
        SocketAddr::new(ip("192.0.2.2"), port4),
        sock("203.0.113.2:2121"),
    );
    let t4 = ct.lookup_tcp(c4, s4).unwrap().expect("v4 entry");
    assert_eq!((t4.orig_src, t4.orig_dst, t4.reply_src), (c4, s4, s4));
    assert_eq!(t4.reply_dst.ip(), ip("203.0.113.1"), "{t4:?}");

    let (c6, s6) = (
        SocketAddr::new(ip("2001:db8:1::2"), port6),
        sock("[2001:db8:2::2]:2121"),
    );
    let t6 = ct.lookup_tcp(c6, s6).unwrap().expect("v6 entry");
    assert_eq!((t6.orig_src, t6.orig_dst, t6.reply_src), (c6, s6, s6));
    assert_eq!(t6.reply_dst.ip(), ip("2001:db8:2::1"), "{t6:?}");

    // No entry: another client port.
    let other = SocketAddr::new(ip("192.0.2.2"), port4.wrapping_add(1).max(1));
    assert_eq!(ct.lookup_tcp(other, s4).unwrap(), None);
    let other6 = SocketAddr::new(ip("2001:db8:1::2"), port6.wrapping_add(1).max(1));
    assert_eq!(ct.lookup_tcp(other6, s6).unwrap(), None);
    // The reply tuple is not an ORIGINAL tuple.
    assert_eq!(ct.lookup_tcp(t4.reply_src, t4.reply_dst).unwrap(), None);
}

/// Prints the median add() latency (run with --nocapture to see it).
#[test]
fn add_latency_for_1000_pinholes() {
    let (ns, _in) = table_ns("latency");
    let mut nft = NftPinholes::open("ftp_alg").unwrap();
    let mut report = String::new();
    for with_dnat in [false, true] {
        let mut samples = Vec::with_capacity(1000);
        for i in 0..1000u16 {
            let dnat = with_dnat.then(|| format!("203.0.113.7:{}", 10000 + i));
            let port = if with_dnat { 30000 } else { 20000 } + i;
            let p = pinhole("192.0.2.11", "198.51.100.1", port, dnat.as_deref());
            let start = Instant::now();
            nft.add(&p, Duration::from_secs(60)).unwrap();
            samples.push(start.elapsed());
        }
        samples.sort();
        let median = samples[samples.len() / 2];
        report += &format!(
            "add() {} dnat, 1000 pinholes: median {:?}, p90 {:?}, p99 {:?}, max {:?}\n",
            if with_dnat { "with" } else { "without" },
            median,
            samples[900],
            samples[990],
            samples[999]
        );
        // Far below the 4-6 ms of one `nft` run per pinhole.
        assert!(median < Duration::from_millis(2), "median {median:?}");
    }
    println!("{report}");
    assert_eq!(list(&ns, "map", "dnat4").len(), 1000);
    // 1000 plain + 1000 DNATed filter elements (keyed by the announced port).
    assert_eq!(list(&ns, "set", "pin4").len(), 2000);
}
