//! Encrypted control sessions (FTPS) through the engine: which session gets
//! a range of data ports, when it is installed (before the reply that
//! makes the session encrypted is released), and every way it closes.

mod support;

use std::time::Duration;

use ftp_alg_proto::engine::{Engine, EngineConfig};
use ftp_alg_proto::event::Event;
use ftp_alg_proto::ftps::FtpsServer;
use ftp_alg_proto::pinhole::RangePinhole;
use ftp_alg_proto::reason::Reason;
use support::{Side, Sim};

fn entry(server: &str, ports: &str) -> FtpsServer {
    FtpsServer {
        server: server.parse().unwrap(),
        passive_ports: ports.parse().unwrap(),
    }
}

/// Outside server 203.0.113.10 with passive ports 50000-50100, and a
/// server behind DNAT, 192.0.2.0/28, with 40000-40100.
fn cfg() -> EngineConfig {
    EngineConfig {
        ftps: vec![
            entry("203.0.113.10", "50000-50100"),
            entry("192.0.2.0/28", "40000-40100"),
        ],
        ..EngineConfig::default()
    }
}

/// A client behind SNAT to the outside server, on `port`.
fn snat_sim(cfg: EngineConfig, port: u16) -> Sim {
    Sim::with_config(
        "198.51.100.2:40000",
        "203.0.113.254:40000",
        &format!("203.0.113.10:{port}"),
        &format!("203.0.113.10:{port}"),
        cfg,
    )
}

/// An outside client to the server behind DNAT (public 203.0.113.1).
fn dnat_sim(cfg: EngineConfig, client_port: u16) -> Sim {
    let client = format!("203.0.113.20:{client_port}");
    Sim::with_config(&client, &client, "203.0.113.1:21", "192.0.2.10:21", cfg)
}

fn range(src: &str, dst: &str, low: u16, high: u16, dnat: Option<&str>) -> RangePinhole {
    RangePinhole {
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        low,
        high,
        dnat: dnat.map(|d| d.parse().unwrap()),
    }
}

fn outside_range() -> RangePinhole {
    range("198.51.100.2", "203.0.113.10", 50000, 50100, None)
}

/// A TLS record of `kind` with `len` opaque bytes.
fn tls_record(kind: u8, len: usize) -> Vec<u8> {
    let mut r = vec![kind, 3, 3, (len >> 8) as u8, len as u8];
    r.extend(std::iter::repeat_n(0x5a, len));
    r
}

/// Greeting, AUTH TLS, 234, then a TLS handshake each way.
fn explicit_tls(sim: &mut Sim) {
    sim.handshake();
    sim.send(Side::Server, b"220 hi\r\n", &[]);
    sim.send(Side::Client, b"AUTH TLS\r\n", &[]);
    sim.send(Side::Server, b"234 go ahead\r\n", &[]);
    sim.send(Side::Client, &tls_record(22, 200), &[]);
    sim.send(Side::Server, &tls_record(22, 900), &[100]);
}

#[test]
fn auth_tls_opens_the_range_with_the_234_before_it_is_released() {
    let mut sim = snat_sim(cfg(), 21);
    explicit_tls(&mut sim);
    assert_eq!(
        sim.opened_ranges,
        vec![(outside_range(), b"234 go ahead\r\n".to_vec())],
        "installed by the decision of the packet carrying the 234"
    );
    // Exactly one range: the client's own address (the data connections
    // reach the gateway before SNAT), the server as addressed, no DNAT.
    assert!(sim.opened.is_empty(), "no exact pinhole");
    assert!(sim.events.iter().any(|e| matches!(
        e,
        Event::FtpsRange { entry: 0, shared: false, opening } if opening.range == outside_range()
            && opening.lifetime == EngineConfig::default().idle_timeout
    )));
    let stats = sim.engine.stats();
    assert_eq!((stats.tls_sessions, stats.ftps_sessions), (1, 1));
    assert_eq!((stats.ranges_opened, stats.ranges_closed), (1, 0));
    assert_eq!(sim.engine.range_count(), 1);
    let info = sim.engine.snapshot(sim.now);
    assert_eq!(info[0].range, Some((0, outside_range())));
    sim.close();
    assert_eq!(sim.closed_ranges, vec![outside_range()], "FIN closes it");
    assert_eq!(sim.engine.range_count(), 0);
    assert_eq!(sim.engine.stats().ranges_closed, 1);
}

#[test]
fn auth_ssl_behind_dnat_maps_the_range_to_the_real_server() {
    let mut sim = dnat_sim(cfg(), 40000);
    sim.handshake();
    sim.send(Side::Server, b"220 hi\r\n", &[]);
    sim.send(Side::Client, b"AUTH SSL\r\n", &[]);
    sim.send(Side::Server, b"234 AUTH SSL ok\r\n", &[]);
    let want = range(
        "203.0.113.20",
        "203.0.113.1",
        40000,
        40100,
        Some("192.0.2.10"),
    );
    assert_eq!(sim.opened_ranges.len(), 1);
    assert_eq!(sim.opened_ranges[0].0, want);
}

#[test]
fn cleartext_announcements_after_234_are_never_parsed() {
    let mut sim = dnat_sim(cfg(), 40000);
    sim.handshake();
    sim.send(Side::Server, b"220 hi\r\n", &[]);
    sim.send(Side::Client, b"AUTH TLS\r\n", &[]);
    sim.send(Side::Server, b"234 go\r\n", &[]);
    // Text that would open and rewrite in a cleartext session.
    sim.send(Side::Client, b"PASV\r\n", &[]);
    sim.send(
        Side::Server,
        b"227 Entering Passive Mode (192,0,2,10,156,64)\r\n",
        &[],
    );
    sim.send(Side::Client, b"PORT 203,0,113,20,195,80\r\n", &[]);
    assert!(sim.opened.is_empty(), "{:?}", sim.opened);
    assert!(
        sim.received(Side::Server)
            .ends_with(b"227 Entering Passive Mode (192,0,2,10,156,64)\r\n"),
        "not rewritten"
    );
    assert_eq!(sim.opened_ranges.len(), 1, "only the range");
}

#[test]
fn implicit_tls_opens_the_range_with_the_handshake() {
    let mut sim = snat_sim(cfg(), 990);
    sim.handshake();
    // Opened on the client's ACK of the handshake, before any TLS byte.
    assert_eq!(sim.opened_ranges, vec![(outside_range(), Vec::new())]);
    sim.send(Side::Client, &tls_record(22, 300), &[]);
    // A 227 look-alike never opens anything: nothing is parsed.
    sim.send(
        Side::Server,
        b"227 Entering Passive Mode (203,0,113,10,195,80)\r\n",
        &[],
    );
    assert!(sim.opened.is_empty());
    assert_eq!(sim.opened_ranges.len(), 1);
    assert_eq!(sim.engine.stats().tls_sessions, 1);
    sim.reset(Side::Server);
    assert_eq!(sim.closed_ranges, vec![outside_range()], "RST closes it");
}

#[test]
fn implicit_port_is_not_followed_without_ftps_entries() {
    let mut sim = snat_sim(EngineConfig::default(), 990);
    sim.handshake();
    sim.send(Side::Client, &tls_record(22, 300), &[]);
    assert_eq!(sim.engine.session_count(), 0, "990 is no control port then");
    assert!(sim.opened_ranges.is_empty());
}

#[test]
fn a_server_in_no_entry_gets_nothing() {
    let cfg = EngineConfig {
        ftps: vec![entry("203.0.113.99", "50000-50100")],
        ..EngineConfig::default()
    };
    for port in [21, 990] {
        let mut sim = snat_sim(cfg.clone(), port);
        if port == 21 {
            explicit_tls(&mut sim);
            assert!(sim.events.contains(&Event::TlsStarted));
        } else {
            sim.handshake();
            sim.send(Side::Client, &tls_record(22, 300), &[]);
        }
        assert!(sim.opened_ranges.is_empty(), "port {port}");
        assert!(sim.opened.is_empty(), "port {port}");
        assert_eq!(sim.engine.stats().ftps_sessions, 0);
        assert_eq!(sim.engine.stats().tls_sessions, 1);
    }
}

#[test]
fn two_sessions_of_one_client_share_one_element_until_the_last_ends() {
    let mut first = dnat_sim(cfg(), 40000);
    explicit_tls(&mut first);
    assert_eq!(first.opened_ranges.len(), 1);
    let want = first.opened_ranges[0].0;
    // The second session runs through the same engine.
    let mut second = dnat_sim(cfg(), 40001);
    second.engine = std::mem::replace(&mut first.engine, Engine::new(cfg()));
    explicit_tls(&mut second);
    assert!(
        second.opened_ranges.is_empty(),
        "the element exists already"
    );
    assert!(second.events.iter().any(|e| matches!(
        e,
        Event::FtpsRange { shared: true, opening, .. } if opening.range == want
    )));
    assert_eq!(second.engine.range_count(), 1);
    second.close();
    assert!(
        second.closed_ranges.is_empty(),
        "the first session still uses it"
    );
    assert!(second.events.contains(&Event::FtpsRangeClosed {
        range: want,
        removed: false
    }));
    first.engine = std::mem::replace(&mut second.engine, Engine::new(cfg()));
    first.close();
    assert_eq!(first.closed_ranges, vec![want], "the last session ends");
    let stats = first.engine.stats();
    assert_eq!(
        (
            stats.ftps_sessions,
            stats.ranges_opened,
            stats.ranges_closed
        ),
        (2, 1, 1)
    );
}

#[test]
fn two_servers_behind_one_address_with_overlapping_ranges_conflict() {
    let cfg = EngineConfig {
        control_ports: vec![21, 2121],
        ftps: vec![
            entry("192.0.2.10", "40000-40100"),
            entry("192.0.2.11", "40050-40150"),
        ],
        ..EngineConfig::default()
    };
    let mut first = dnat_sim(cfg.clone(), 40000);
    explicit_tls(&mut first);
    assert_eq!(first.opened_ranges.len(), 1);
    // Same client, same public address, another port forward.
    let mut second = Sim::with_config(
        "203.0.113.20:40001",
        "203.0.113.20:40001",
        "203.0.113.1:2121",
        "192.0.2.11:2121",
        cfg.clone(),
    );
    second.engine = std::mem::replace(&mut first.engine, Engine::new(cfg));
    explicit_tls(&mut second);
    assert!(second.opened_ranges.is_empty(), "refused");
    assert!(second.events.contains(&Event::Refusal {
        form: None,
        reason: Reason::RangeConflict
    }));
    assert_eq!(second.engine.stats().refusals.get(Reason::RangeConflict), 1);
    assert_eq!(second.engine.range_count(), 1, "the first one stays");
}

#[test]
fn an_idle_session_is_forgotten_with_its_range() {
    let mut sim = snat_sim(cfg(), 21);
    explicit_tls(&mut sim);
    let idle = EngineConfig::default().idle_timeout;
    let closing = sim.engine.poll(sim.now + idle - Duration::from_secs(1));
    assert!(closing.ranges.is_empty(), "not idle yet");
    let closing = sim.engine.poll(sim.now + idle);
    assert_eq!(closing.ranges, vec![outside_range()]);
    assert_eq!(sim.engine.range_count(), 0);
}

#[test]
fn a_live_session_refreshes_its_element_before_the_timeout() {
    let mut sim = snat_sim(cfg(), 21);
    explicit_tls(&mut sim);
    let idle = EngineConfig::default().idle_timeout;
    // Traffic at a third of the timeout: no refresh yet.
    sim.now += idle / 3;
    sim.send(Side::Client, &tls_record(23, 40), &[]);
    assert_eq!(sim.opened_ranges.len(), 1);
    // Beyond half of it: the next packet re-adds the element.
    sim.now += idle / 3;
    sim.send(Side::Server, &tls_record(23, 40), &[]);
    assert_eq!(sim.opened_ranges.len(), 2);
    assert_eq!(sim.opened_ranges[1].0, outside_range());
    let live = sim.engine.live_ranges(sim.now);
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].lifetime, idle, "just refreshed");
}

#[test]
fn ccc_closes_the_range_and_exact_pinholes_take_over() {
    let mut sim = snat_sim(cfg(), 21);
    explicit_tls(&mut sim);
    let mut server_close = tls_record(23, 40); // "200 CCC ok" inside TLS
    server_close.extend_from_slice(&tls_record(21, 26)); // close_notify
    sim.send(Side::Server, &server_close, &[]);
    assert!(sim.closed_ranges.is_empty(), "one side is still TLS");
    let mut client_close = tls_record(23, 20); // "CCC" inside TLS
    client_close.extend_from_slice(&tls_record(21, 26));
    sim.send(Side::Client, &client_close, &[]);
    assert_eq!(sim.closed_ranges, vec![outside_range()], "cleartext again");
    assert_eq!(sim.engine.range_count(), 0);
    sim.send(Side::Client, b"PASV\r\n", &[]);
    sim.send(
        Side::Server,
        b"227 Entering Passive Mode (203,0,113,10,195,80)\r\n",
        &[],
    );
    assert_eq!(sim.opened.len(), 1, "the exact pinhole of the 227");
    assert_eq!(sim.opened[0].dport, 50000);
    sim.close();
    assert_eq!(sim.closed_ranges.len(), 1, "closed once only");
}

#[test]
fn a_new_syn_from_the_same_client_port_gives_the_old_range_back() {
    let mut sim = snat_sim(cfg(), 21);
    explicit_tls(&mut sim);
    // The client reuses its address and port: the old session is over.
    sim.reconnect();
    sim.handshake();
    assert_eq!(sim.closed_ranges, vec![outside_range()]);
}
