//! Root-only tests of FTPS ranges against the real kernel: the interval
//! elements over netlink exactly as `nft list` shows them, and what the
//! table's rules let through: the range's client, to the range's ports,
//! DNATed to the real server with the port kept, and nothing else.
//!
//! Namespaces `fr-nl-*` ("FTPS ranges"), built and deleted by each test,
//! also when it fails. Without root the tests fail loudly.

mod netns;

use std::net::IpAddr;
use std::time::Duration;

use ftp_alg::config::Config;
use ftp_alg::kernel::nft::NftPinholes;
use ftp_alg::rules::{self, QueueBackend};
use ftp_alg_proto::pinhole::RangePinhole;
use netns::Netns;

/// A configuration with one `[[ftps]]` entry: the table gets the range
/// sets and rules.
fn ftps_config() -> Config {
    Config::from_toml("[[ftps]]\nserver = \"203.0.113.10\"\npassive_ports = \"50000-50100\"\n")
        .unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn range(src: &str, dst: &str, low: u16, high: u16, dnat: Option<&str>) -> RangePinhole {
    RangePinhole {
        src: ip(src),
        dst: ip(dst),
        low,
        high,
        dnat: dnat.map(ip),
    }
}

/// The elements of a set or map of ftp-alg's table as `nft list` prints
/// them, without `timeout`/`expires`, and the timeouts seen.
fn elements(ns: &Netns, kind: &str, name: &str) -> (Vec<String>, Vec<String>) {
    let out = ns.sh(&format!("nft list {kind} inet ftp_alg {name}"));
    let Some(start) = out.find("elements = {") else {
        return (Vec::new(), Vec::new());
    };
    let body = &out[start + "elements = {".len()..];
    let body = &body[..body.find('}').expect("unterminated element list")];
    let mut texts = Vec::new();
    let mut timeouts = Vec::new();
    for element in body.split(',') {
        let mut words = Vec::new();
        let mut it = element.split_whitespace();
        while let Some(w) = it.next() {
            match w {
                "timeout" => timeouts.extend(it.next().map(str::to_owned)),
                "expires" => {
                    it.next();
                }
                _ => words.push(w),
            }
        }
        texts.push(words.join(" "));
    }
    texts.sort();
    (texts, timeouts)
}

#[test]
fn range_elements_are_listed_exactly_and_removed() {
    let ns = Netns::new("fr-nl", "elems");
    ns.nft_load(&rules::table_text(&ftps_config(), QueueBackend::Xtables));
    let _in = ns.enter();
    let mut nft = NftPinholes::open("ftp_alg").unwrap();
    let nat4 = range(
        "198.51.100.2",
        "203.0.113.1",
        50000,
        50100,
        Some("192.0.2.10"),
    );
    let plain6 = range("2001:db8:1::2", "2001:db8:2::10", 40000, 40100, None);
    let t = Duration::from_secs(7200);
    for r in [&nat4, &plain6] {
        nft.add_range(r, t)
            .unwrap_or_else(|e| panic!("add {r}: {e}"));
    }
    let (ftps4, timeouts) = elements(&ns, "set", "ftps4");
    assert_eq!(ftps4, ["198.51.100.2 . 203.0.113.1 . 50000-50100"]);
    assert_eq!(timeouts, ["2h"]);
    assert_eq!(
        elements(&ns, "map", "ftpsdnat4").0,
        ["198.51.100.2 . 203.0.113.1 . 50000-50100 : 192.0.2.10"]
    );
    assert_eq!(
        elements(&ns, "set", "ftps6").0,
        ["2001:db8:1::2 . 2001:db8:2::10 . 40000-40100"]
    );
    assert!(elements(&ns, "map", "ftpsdnat6").0.is_empty());
    // Re-adding (the engine's refresh, the reload repair) succeeds.
    nft.add_range(&nat4, t).expect("re-add refreshes");
    assert_eq!(elements(&ns, "set", "ftps4").0.len(), 1);
    // An overlapping interval of the same pair is refused by the kernel;
    // the engine never asks for one (Reason::RangeConflict).
    let overlap = range(
        "198.51.100.2",
        "203.0.113.1",
        50050,
        50150,
        Some("192.0.2.11"),
    );
    assert!(nft.add_range(&overlap, t).is_err());
    assert_eq!(
        elements(&ns, "map", "ftpsdnat4").0,
        ["198.51.100.2 . 203.0.113.1 . 50000-50100 : 192.0.2.10"],
        "the refused batch left nothing behind"
    );
    nft.remove_ranges(&[nat4, plain6]).unwrap();
    for (kind, name) in [
        ("set", "ftps4"),
        ("set", "ftps6"),
        ("map", "ftpsdnat4"),
        ("map", "ftpsdnat6"),
    ] {
        assert!(elements(&ns, kind, name).0.is_empty(), "{name} not empty");
    }
    nft.remove_ranges(&[nat4, plain6])
        .expect("removing what is gone is fine");
}

/// A gateway between a client namespace (two addresses) and a server
/// namespace, with a default-drop forward filter that accepts only
/// established connections and ftp-alg's mark.
struct Lab {
    cli: Netns,
    gw: Netns,
    srv: Netns,
}

fn lab() -> Lab {
    let cli = Netns::new("fr-nl", "cli");
    let gw = Netns::new("fr-nl", "gw");
    let srv = Netns::new("fr-nl", "srv");
    for (ns, dev, peer, gwdev) in [(&cli, "c0", &gw, "gc0"), (&srv, "s0", &gw, "gs0")] {
        netns::run_ok(
            "ip",
            &[
                "link", "add", dev, "netns", &ns.name, "type", "veth", "peer", "name", gwdev,
                "netns", &peer.name,
            ],
        );
    }
    cli.sh("ip addr add 198.51.100.2/24 dev c0 && ip addr add 198.51.100.3/24 dev c0 && ip link set c0 up && ip route add default via 198.51.100.1");
    srv.sh("ip addr add 203.0.113.10/24 dev s0 && ip link set s0 up && ip route add default via 203.0.113.1");
    gw.sh("ip addr add 198.51.100.1/24 dev gc0 && ip addr add 203.0.113.1/24 dev gs0 && ip link set gc0 up && ip link set gs0 up && sysctl -qw net.ipv4.ip_forward=1");
    gw.nft_load(&rules::table_text(&ftps_config(), QueueBackend::Xtables));
    gw.nft_load(
        "table inet filter {\n\
         \tchain forward {\n\
         \t\ttype filter hook forward priority filter; policy drop;\n\
         \t\tct state established,related accept\n\
         \t\tct state new ct mark & 0x01000000 == 0x01000000 accept\n\
         \t}\n\
         }\n",
    );
    Lab { cli, gw, srv }
}

/// Listens on `ports` in `ns` and answers every connection with `ok`;
/// the listener ends after `secs`.
fn listen(ns: &Netns, ports: &[u16], secs: u32) -> netns::Spawned {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    let script = format!(
        "import socket, select, time\n\
         ss = []\n\
         for p in [{}]:\n\
         \x20   s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         \x20   s.bind(('0.0.0.0', p)); s.listen(8); ss.append(s)\n\
         print('ready', flush=True)\n\
         end = time.time() + {secs}\n\
         while time.time() < end:\n\
         \x20   r, _, _ = select.select(ss, [], [], 0.2)\n\
         \x20   for s in r:\n\
         \x20       c, _ = s.accept(); c.sendall(b'ok'); c.close()\n",
        ports.join(", ")
    );
    let l = ns.spawn(&["python3", "-c", &script]);
    assert_eq!(l.line(Duration::from_secs(10)), "ready");
    l
}

/// Whether a connection from `src` to `dst`:`port` is answered within 2 s.
fn connects(ns: &Netns, src: &str, dst: &str, port: u16) -> bool {
    let script = format!(
        "import socket, sys\n\
         s = socket.socket(); s.settimeout(2); s.bind(('{src}', 0))\n\
         try:\n\
         \x20   s.connect(('{dst}', {port})); sys.exit(0 if s.recv(2) == b'ok' else 1)\n\
         except OSError:\n\
         \x20   sys.exit(1)\n"
    );
    ns.run(&["python3", "-c", &script]).status.success()
}

#[test]
fn a_range_admits_its_client_to_its_ports_only_while_it_exists() {
    let lab = lab();
    let _listener = listen(&lab.srv, &[50000, 50100, 50101], 30);
    let plain = range("198.51.100.2", "203.0.113.10", 50000, 50100, None);
    let nat = range(
        "198.51.100.2",
        "198.51.100.1",
        50000,
        50100,
        Some("203.0.113.10"),
    );
    // Nothing open yet: the default drop holds.
    assert!(!connects(&lab.cli, "198.51.100.2", "203.0.113.10", 50000));
    {
        let _in = lab.gw.enter();
        let mut nft = NftPinholes::open("ftp_alg").unwrap();
        nft.add_range(&plain, Duration::from_secs(60)).unwrap();
        nft.add_range(&nat, Duration::from_secs(60)).unwrap();
    }
    // Both ends of the range, more than once (not consumed on use).
    for port in [50000, 50100, 50000] {
        assert!(
            connects(&lab.cli, "198.51.100.2", "203.0.113.10", port),
            "the range's client to port {port}"
        );
    }
    assert!(
        !connects(&lab.cli, "198.51.100.2", "203.0.113.10", 50101),
        "a port above the range"
    );
    assert!(
        !connects(&lab.cli, "198.51.100.3", "203.0.113.10", 50000),
        "another client address"
    );
    // Through the gateway's address: DNAT to the real server, port kept.
    assert!(
        connects(&lab.cli, "198.51.100.2", "198.51.100.1", 50100),
        "DNAT range"
    );
    assert!(!connects(&lab.cli, "198.51.100.3", "198.51.100.1", 50100));
    {
        let _in = lab.gw.enter();
        let mut nft = NftPinholes::open("ftp_alg").unwrap();
        nft.remove_ranges(&[plain, nat]).unwrap();
    }
    assert!(
        !connects(&lab.cli, "198.51.100.2", "203.0.113.10", 50000),
        "closed with its session"
    );
}
