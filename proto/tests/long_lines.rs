//! Long control lines: a line over the length limit is not parsed, but the
//! session goes on with the next line (RFC 959 sets no line limit; vsftpd
//! accepts 4096-byte commands, and a deep path makes lines that long).

mod support;

use ftp_alg_proto::engine::EngineConfig;
use ftp_alg_proto::reason::Reason;
use support::{Side, Sim};

fn sim(max_line: Option<usize>) -> Sim {
    let mut cfg = EngineConfig::default();
    if let Some(n) = max_line {
        cfg.max_line = n;
    }
    Sim::with_config(
        "198.51.100.2:40000",
        "203.0.113.254:40000",
        "203.0.113.10:21",
        "203.0.113.10:21",
        cfg,
    )
}

/// `CWD` of a 604-byte path: a 610-byte line.
fn long_cwd() -> String {
    let line = format!("CWD /{}\r\n", "d".repeat(603));
    assert_eq!(line.len(), 610);
    line
}

/// Greeting, the long command (cut in three), its reply, then a PORT.
fn long_command_then_port(sim: &mut Sim) {
    sim.handshake();
    sim.send(Side::Server, b"220 hi\r\n", &[]);
    sim.send(Side::Client, long_cwd().as_bytes(), &[100, 500]);
    sim.send(Side::Server, b"250 ok\r\n", &[]);
    sim.send(Side::Client, b"PORT 198,51,100,2,195,80\r\n", &[]);
    sim.send(Side::Server, b"200 ok\r\n", &[]);
}

#[test]
fn a_610_byte_command_then_port_is_rewritten_by_default() {
    let mut sim = sim(None);
    long_command_then_port(&mut sim);
    let expect = format!("{}PORT 203,0,113,254,195,80\r\n", long_cwd());
    assert_eq!(sim.received(Side::Client), expect.as_bytes());
    assert_eq!(sim.opened.len(), 1);
    assert_eq!(sim.engine.stats().refusals.get(Reason::OverlongLine), 0);
}

#[test]
fn a_line_over_the_limit_does_not_switch_the_session_off() {
    let mut sim = sim(Some(512));
    long_command_then_port(&mut sim);
    let expect = format!("{}PORT 203,0,113,254,195,80\r\n", long_cwd());
    assert_eq!(
        sim.received(Side::Client),
        expect.as_bytes(),
        "forwarded, then rewritten"
    );
    assert_eq!(sim.opened.len(), 1, "PORT after the long line honoured");
    assert_eq!(sim.engine.stats().refusals.get(Reason::OverlongLine), 1);
}

#[test]
fn an_overlong_reply_still_pairs_with_its_command() {
    // A 257 naming a long path, over the limit: it answers the PWD, so the
    // 227 that follows answers the PASV.
    let mut sim = Sim::with_config(
        "203.0.113.20:40000",
        "203.0.113.20:40000",
        "203.0.113.1:21",
        "192.0.2.10:21",
        EngineConfig {
            max_line: 512,
            ..EngineConfig::default()
        },
    );
    sim.handshake();
    sim.send(Side::Server, b"220 hi\r\n", &[]);
    sim.send(Side::Client, b"PWD\r\nPASV\r\n", &[]);
    let reply = format!("257 \"/{}\" is the current directory\r\n", "d".repeat(700));
    sim.send(Side::Server, reply.as_bytes(), &[3, 300]);
    sim.send(
        Side::Server,
        b"227 Entering Passive Mode (192,0,2,10,39,16).\r\n",
        &[],
    );
    assert!(sim
        .received(Side::Server)
        .ends_with(b"227 Entering Passive Mode (203,0,113,1,39,16).\r\n"));
    assert_eq!(sim.opened.len(), 1);
}

#[test]
fn announcements_longer_than_256_bytes_are_refused() {
    let mut sim = sim(None);
    sim.handshake();
    sim.send(Side::Server, b"220 hi\r\n", &[]);
    let port = format!("PORT 198,51,100,2,195,80{}\r\n", " ".repeat(300));
    sim.send(Side::Client, port.as_bytes(), &[5, 120]);
    sim.send(Side::Server, b"200 ok\r\n", &[]);
    assert!(sim.opened.is_empty());
    assert_eq!(
        sim.received(Side::Client),
        port.as_bytes(),
        "forwarded untouched"
    );
    let refusals = &sim.engine.stats().refusals;
    assert_eq!(refusals.get(Reason::OverlongAnnouncement), 1);
}

#[test]
fn a_limit_below_256_is_kept_too() {
    // A 100-byte CWD over a 64-byte limit is not parsed (counted), though
    // its head is kept whole.
    let mut sim = sim(Some(64));
    sim.handshake();
    sim.send(Side::Server, b"220 hi\r\n", &[]);
    let cwd = format!("CWD /{}\r\n", "d".repeat(93));
    sim.send(Side::Client, cwd.as_bytes(), &[]);
    assert_eq!(sim.engine.stats().refusals.get(Reason::OverlongLine), 1);
}
