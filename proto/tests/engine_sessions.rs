//! Scripted control sessions through the engine (no root): exact bytes
//! each side receives, pinholes opened and closed. The dialogues of the
//! conformance table are in tests/conformance/cases.toml (replayed by
//! tests/conformance/main.rs); these are the ones it does not cover:
//! counters, 229, rewrites in both directions at once, every cut position,
//! the session table's bounds, QUIT, TLS records cut across segments.

mod support;

use std::net::SocketAddr;

use ftp_alg_proto::ftp::session::Form;
use ftp_alg_proto::pinhole::Pinhole;
use support::{Side, Sim};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Plays a dialogue; each message is sent whole.
fn play(sim: &mut Sim, dialogue: &[(Side, &str)]) {
    sim.handshake();
    for (side, text) in dialogue {
        sim.send(*side, text.as_bytes(), &[]);
    }
}

fn snat_sim(client: &str, public: &str) -> Sim {
    Sim::new(
        &format!("{client}:40000"),
        &format!("{public}:40000"),
        "203.0.113.10:21",
        "203.0.113.10:21",
    )
}

/// The engine's counters for one session (the conformance table,
/// tests/conformance/cases.toml, checks the bytes and pinholes of many more).
#[test]
fn counters_of_a_rewritten_session() {
    let mut sim = snat_sim("198.51.100.2", "203.0.113.254");
    play(
        &mut sim,
        &[
            (Side::Server, "220 hi\r\n"),
            (Side::Client, "USER a\r\n"),
            (Side::Server, "331 ok\r\n"),
            (Side::Client, "PORT 198,51,100,2,195,80\r\n"),
            (Side::Server, "200 PORT ok\r\n"),
            (Side::Client, "NOOP\r\n"),
            (Side::Server, "200 NOOP ok\r\n"),
        ],
    );
    assert_eq!(
        sim.received(Side::Client),
        b"USER a\r\nPORT 203,0,113,254,195,80\r\nNOOP\r\n"
    );
    assert_eq!(
        sim.received(Side::Server),
        b"220 hi\r\n331 ok\r\n200 PORT ok\r\n200 NOOP ok\r\n"
    );
    assert_eq!(
        sim.opened,
        vec![Pinhole {
            src: "203.0.113.10".parse().unwrap(),
            dst: "203.0.113.254".parse().unwrap(),
            dport: 50000,
            dnat: Some(sa("198.51.100.2:50000")),
        }]
    );
    sim.close();
    assert_eq!(sim.closed, sim.opened, "pinholes closed with the session");
    let stats = sim.engine.stats();
    assert_eq!(stats.sessions_opened, 1);
    assert_eq!(stats.announcements.get(Form::Port), 1);
    assert_eq!(stats.rewrites, 1);
    assert_eq!((stats.pinholes_opened, stats.pinholes_closed), (1, 1));
}

fn dnat_sim() -> Sim {
    Sim::new(
        "203.0.113.20:40000",
        "203.0.113.20:40000",
        "203.0.113.1:21",
        "192.0.2.10:21",
    )
}

#[test]
fn epsv_229_behind_dnat_opens_without_rewrite() {
    let mut sim = dnat_sim();
    play(
        &mut sim,
        &[
            (Side::Server, "220 hi\r\n"),
            (Side::Client, "EPSV\r\n"),
            (
                Side::Server,
                "229 Entering Extended Passive Mode (|||10001|)\r\n",
            ),
        ],
    );
    assert_eq!(
        sim.received(Side::Server),
        b"220 hi\r\n229 Entering Extended Passive Mode (|||10001|)\r\n"
    );
    assert_eq!(sim.opened[0].dnat, Some(sa("192.0.2.10:10001")));
}

#[test]
fn rewrites_in_both_directions_keep_both_streams_exact() {
    // Client behind SNAT talking to a server behind DNAT: PORT and 227 are
    // both rewritten, with opposite length changes, several times.
    let mut sim = Sim::new(
        "198.51.100.2:40000",
        "203.0.113.254:40000",
        "203.0.113.1:21",
        "192.0.2.10:21",
    );
    let mut client_expect = Vec::new();
    let mut server_expect = b"220 hi\r\n".to_vec();
    sim.handshake();
    sim.send(Side::Server, b"220 hi\r\n", &[]);
    for i in 0..5u16 {
        let port = 50000 + i;
        let [p1, p2] = port.to_be_bytes();
        sim.send(
            Side::Client,
            format!("PORT 198,51,100,2,{p1},{p2}\r\n").as_bytes(),
            &[],
        );
        client_expect.extend_from_slice(format!("PORT 203,0,113,254,{p1},{p2}\r\n").as_bytes());
        sim.send(Side::Server, b"200 ok\r\n", &[]);
        server_expect.extend_from_slice(b"200 ok\r\n");
        sim.send(Side::Client, b"PASV\r\n", &[]);
        client_expect.extend_from_slice(b"PASV\r\n");
        sim.send(
            Side::Server,
            format!("227 Entering Passive Mode (192,0,2,10,{p1},{p2})\r\n").as_bytes(),
            &[],
        );
        server_expect.extend_from_slice(
            format!("227 Entering Passive Mode (203,0,113,1,{p1},{p2})\r\n").as_bytes(),
        );
    }
    assert_eq!(sim.received(Side::Client), client_expect);
    assert_eq!(sim.received(Side::Server), server_expect);
    assert_eq!(sim.opened.len(), 10);
}

#[test]
fn announcement_split_at_every_position_is_rewritten() {
    let port = "PORT 198,51,100,2,195,80\r\n";
    for cut in 1..port.len() {
        let mut sim = snat_sim("198.51.100.2", "203.0.113.254");
        sim.handshake();
        sim.send(Side::Server, b"220 hi\r\n", &[]);
        let text = format!("NOOP\r\n{port}NOOP\r\n");
        sim.send(Side::Client, text.as_bytes(), &[6 + cut]);
        assert_eq!(
            sim.received(Side::Client),
            b"NOOP\r\nPORT 203,0,113,254,195,80\r\nNOOP\r\n",
            "cut at {cut}"
        );
        assert_eq!(sim.opened.len(), 1, "cut at {cut}");
    }
    let reply = "227 Entering Passive Mode (192,0,2,10,39,16).\r\n";
    for cut in 1..reply.len() {
        let mut sim = dnat_sim();
        sim.handshake();
        sim.send(Side::Server, b"220 hi\r\n", &[]);
        sim.send(Side::Client, b"PASV\r\n", &[]);
        sim.send(Side::Server, reply.as_bytes(), &[cut]);
        assert_eq!(
            sim.received(Side::Server),
            b"220 hi\r\n227 Entering Passive Mode (203,0,113,1,39,16).\r\n",
            "cut at {cut}"
        );
        assert_eq!(sim.opened.len(), 1, "cut at {cut}");
    }
}

#[test]
fn unanswered_syns_expire_and_the_table_is_bounded() {
    use ftp_alg_proto::engine::EngineConfig;
    use std::time::Duration;
    let cfg = EngineConfig {
        max_sessions: 3,
        ..EngineConfig::default()
    };
    let mut sim = Sim::with_config(
        "198.51.100.2:40000",
        "198.51.100.2:40000",
        "203.0.113.10:21",
        "203.0.113.10:21",
        cfg,
    );
    let now = sim.now;
    for port in 0..10u16 {
        let mut p = Vec::new();
        etherparse::PacketBuilder::ipv4([198, 51, 100, 2], [203, 0, 113, 10], 64)
            .tcp(30000 + port, 21, 1, 1000)
            .syn()
            .write(&mut p, b"")
            .unwrap();
        let _ = sim.engine.handle(now, &p);
    }
    assert_eq!(sim.engine.session_count(), 3, "bounded by max_sessions");
    assert_eq!(sim.engine.stats().sessions_untracked, 7, "the rest counted");
    sim.engine.poll(now + Duration::from_secs(119));
    assert_eq!(sim.engine.session_count(), 3);
    sim.engine.poll(now + Duration::from_secs(121));
    assert_eq!(sim.engine.session_count(), 0, "unanswered SYNs forgotten");
}

#[test]
fn refused_port_and_quit_close_pinholes() {
    let mut sim = snat_sim("198.51.100.2", "203.0.113.254");
    play(
        &mut sim,
        &[
            (Side::Server, "220 hi\r\n"),
            (Side::Client, "PORT 198,51,100,2,195,80\r\n"),
            (Side::Server, "500 no\r\n"),
        ],
    );
    assert_eq!(sim.opened.len(), 1);
    assert_eq!(sim.closed, sim.opened, "a refused PORT closes its pinhole");
    sim.send(Side::Client, b"EPRT |1|198.51.100.2|50001|\r\n", &[]);
    sim.send(Side::Server, b"200 ok\r\n", &[]);
    assert_eq!(sim.closed.len(), 1, "an accepted EPRT keeps its pinhole");
    sim.send(Side::Client, b"QUIT\r\n", &[]);
    sim.send(Side::Server, b"221 bye\r\n", &[]);
    assert_eq!(sim.closed, sim.opened, "QUIT closes the rest");
}

/// A TLS record of `kind` with `len` opaque bytes.
fn tls_record(kind: u8, len: usize) -> Vec<u8> {
    let mut r = vec![kind, 3, 3, (len >> 8) as u8, len as u8];
    r.extend(std::iter::repeat_n(0x5a, len));
    r
}

#[test]
fn auth_tls_stops_parsing_and_ccc_resumes_it() {
    let mut sim = snat_sim("198.51.100.2", "203.0.113.254");
    play(
        &mut sim,
        &[
            (Side::Server, "220 hi\r\n"),
            (Side::Client, "AUTH TLS\r\n"),
            (Side::Server, "234 go ahead\r\n"),
        ],
    );
    // Under TLS: bytes that look like an announcement are opaque record
    // content, never parsed, never rewritten.
    let mut hello = tls_record(22, 200);
    hello.extend_from_slice(&tls_record(23, 30));
    sim.send(Side::Client, &hello, &[7, 100]);
    let mut server_hs = tls_record(22, 120);
    server_hs.extend_from_slice(&tls_record(23, 40)); // "200 CCC ok" inside TLS
    server_hs.extend_from_slice(&tls_record(21, 26)); // close_notify
    sim.send(Side::Server, &server_hs, &[3]);
    let mut client_close = tls_record(23, 20); // "CCC" inside TLS
    client_close.extend_from_slice(&tls_record(21, 26));
    sim.send(Side::Client, &client_close, &[]);
    assert!(sim.opened.is_empty());
    // Both sides left TLS: cleartext is parsed again.
    sim.send(Side::Client, b"PORT 198,51,100,2,195,80\r\n", &[9]);
    sim.send(Side::Server, b"200 ok\r\n", &[]);
    assert_eq!(sim.opened.len(), 1, "PORT after CCC honoured");
    let got = sim.received(Side::Client);
    assert!(
        got.ends_with(b"PORT 203,0,113,254,195,80\r\n"),
        "{:?}",
        String::from_utf8_lossy(&got[got.len() - 30..])
    );
}

/// `[[nat_override]]` for a server behind DNAT: the 227 carries the address
/// the further NAT presents while the pinhole matches the gateway's own
/// (the PORT side is case 25 of tests/conformance/cases.toml).
#[test]
fn announced_address_override_applies_to_227() {
    let mut sim = Sim::new(
        "203.0.113.20:40000",
        "203.0.113.20:40000",
        "203.0.113.1:21",
        "192.0.2.10:21",
    );
    sim.engine.set_announced_addresses(vec![(
        "203.0.113.1".parse().unwrap(),
        "198.51.100.88".parse().unwrap(),
    )]);
    play(
        &mut sim,
        &[
            (Side::Server, "220 hi\r\n"),
            (Side::Client, "PASV\r\n"),
            (
                Side::Server,
                "227 Entering Passive Mode (192,0,2,10,195,80).\r\n",
            ),
        ],
    );
    assert_eq!(
        sim.received(Side::Server),
        b"220 hi\r\n227 Entering Passive Mode (198,51,100,88,195,80).\r\n"
    );
    assert_eq!(
        sim.opened[0].dst,
        "203.0.113.1".parse::<std::net::IpAddr>().unwrap()
    );
}

/// What a shell re-installs after a firewall reload: every live pinhole
/// with the lifetime it has left, none once it expired or its session
/// ended.
#[test]
fn live_pinholes_carry_their_remaining_lifetime() {
    let mut sim = snat_sim("198.51.100.2", "203.0.113.254");
    assert!(sim.engine.live_pinholes(sim.now).is_empty());
    play(
        &mut sim,
        &[
            (Side::Server, "220 hi\r\n"),
            (Side::Client, "PORT 198,51,100,2,195,80\r\n"),
            (Side::Server, "200 PORT ok\r\n"),
        ],
    );
    let timeout = ftp_alg_proto::engine::EngineConfig::default().pinhole_timeout;
    let later = sim.now + std::time::Duration::from_secs(10);
    let live = sim.engine.live_pinholes(later);
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].pinhole, sim.opened[0]);
    assert!(
        live[0].lifetime <= timeout - std::time::Duration::from_secs(10)
            && live[0].lifetime > timeout - std::time::Duration::from_secs(11),
        "{:?} left of {timeout:?}",
        live[0].lifetime
    );
    assert!(sim.engine.live_pinholes(sim.now + timeout).is_empty());
    sim.close();
    assert!(sim.engine.live_pinholes(sim.now).is_empty());
}
