//! Sessions that survive the engine: state stored in the (simulated)
//! conntrack label by one engine, adopted by a new one mid-stream.

mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};

use ftp_alg_proto::durable::{Durable, LabelLayout};
use ftp_alg_proto::pinhole::Pinhole;
use proptest::prelude::*;
use support::{Side, Sim};

/// Client behind SNAT (PORT text +1 byte) talking to a server behind DNAT
/// (227 text -3 bytes).
fn nat_sim() -> Sim {
    Sim::new(
        "198.51.100.2:40000",
        "203.0.113.254:40000",
        "203.0.113.1:21",
        "198.51.100.222:21",
    )
}

/// Before the crash: a +1 rewrite to the server, a -3 rewrite to the client.
fn before_crash(sim: &mut Sim) {
    sim.handshake();
    for (side, text) in [
        (Side::Server, "220 hi\r\n"),
        (Side::Client, "USER a\r\n"),
        (Side::Server, "331 ok\r\n"),
        (Side::Client, "PORT 198,51,100,2,195,80\r\n"),
        (Side::Server, "200 PORT ok\r\n"),
        (Side::Client, "PASV\r\n"),
        (
            Side::Server,
            "227 Entering Passive Mode (198,51,100,222,195,81)\r\n",
        ),
    ] {
        sim.send(side, text.as_bytes(), &[]);
    }
}

const SERVER_GOT: &[u8] = b"USER a\r\nPORT 203,0,113,254,195,80\r\nPASV\r\n";
const CLIENT_GOT: &[u8] =
    b"220 hi\r\n331 ok\r\n200 PORT ok\r\n227 Entering Passive Mode (203,0,113,1,195,81)\r\n";

/// After the restart: the client's next commands, a new PORT among them.
fn after_crash(sim: &mut Sim) {
    for (side, text) in [
        (Side::Client, "NOOP\r\n"),
        (Side::Server, "200 NOOP ok\r\n"),
        (Side::Client, "PORT 198,51,100,2,195,90\r\n"),
        (Side::Server, "200 PORT ok\r\n"),
    ] {
        sim.send(side, text.as_bytes(), &[]);
    }
}

fn second_port_pinhole() -> Pinhole {
    Pinhole {
        src: "198.51.100.222".parse().unwrap(),
        dst: "203.0.113.254".parse().unwrap(),
        dport: 50010,
        dnat: Some("198.51.100.2:50010".parse().unwrap()),
    }
}

fn assert_continued(sim: &Sim) {
    let mut server = SERVER_GOT.to_vec();
    server.extend_from_slice(b"NOOP\r\nPORT 203,0,113,254,195,90\r\n");
    assert_eq!(
        String::from_utf8_lossy(&sim.received(Side::Client)),
        String::from_utf8_lossy(&server)
    );
    let mut client = CLIENT_GOT.to_vec();
    client.extend_from_slice(b"200 NOOP ok\r\n200 PORT ok\r\n");
    assert_eq!(sim.received(Side::Server), client);
    assert_eq!(sim.opened.last(), Some(&second_port_pinhole()));
}

#[test]
fn rewrites_are_persisted_once_each() {
    let mut sim = nat_sim();
    before_crash(&mut sim);
    assert_eq!(sim.received(Side::Client), SERVER_GOT);
    assert_eq!(sim.received(Side::Server), CLIENT_GOT);
    assert_eq!(sim.persisted, 2, "one store per length-changing rewrite");
    let state = sim.layout.decode(sim.label).expect("state stored");
    assert_eq!((state.to_server.before, state.to_server.after), (0, 1));
    assert_eq!((state.to_client.before, state.to_client.after), (0, -3));
    assert!(!state.unparsed);
}

#[test]
fn new_engine_adopts_mid_stream_from_the_client() {
    let mut sim = nat_sim();
    before_crash(&mut sim);
    let opened = sim.opened.len();
    sim.restart();
    after_crash(&mut sim);
    assert_continued(&sim);
    assert_eq!(
        sim.opened.len(),
        opened + 1,
        "the next PORT got its pinhole"
    );
    assert_eq!(sim.engine.stats().rewrites, 1);
}

#[test]
fn new_engine_adopts_from_the_servers_packet_first() {
    let mut sim = nat_sim();
    before_crash(&mut sim);
    sim.send(Side::Client, b"NOOP\r\n", &[]);
    sim.restart();
    // The reply reaches the new engine before any client packet.
    sim.send(Side::Server, b"200 NOOP ok\r\n", &[]);
    sim.send(Side::Client, b"PORT 198,51,100,2,195,90\r\n", &[]);
    sim.send(Side::Server, b"200 PORT ok\r\n", &[]);
    assert_continued(&sim);
}

#[test]
fn unacknowledged_rewrite_is_planned_again_after_adoption() {
    let mut sim = nat_sim();
    before_crash(&mut sim);
    sim.send(Side::Client, b"NOOP\r\n", &[]);
    sim.send(Side::Server, b"200 NOOP ok\r\n", &[]);
    // The PORT leaves rewritten and is lost; the daemon dies.
    let line = b"PORT 198,51,100,2,195,90\r\n";
    let at = sim.write(Side::Client, line);
    sim.lose_range(Side::Client, at, at + line.len());
    sim.restart();
    // The retransmission (the same bytes) reaches the new engine.
    sim.settle(Side::Client);
    sim.send(Side::Server, b"200 PORT ok\r\n", &[]);
    assert_continued(&sim);
    assert_eq!(
        sim.engine.stats().rewrites,
        1,
        "planned again, to the same bytes"
    );
}

#[test]
fn tls_after_a_rewrite_is_stored_as_unparsed() {
    let mut sim = nat_sim();
    before_crash(&mut sim);
    sim.send(Side::Client, b"AUTH TLS\r\n", &[]);
    sim.send(Side::Server, b"234 go\r\n", &[]);
    let state = sim.layout.decode(sim.label).unwrap();
    assert!(state.unparsed);
    assert_eq!(sim.persisted, 3);
}

/// Without the stored state the same restart breaks the stream: the
/// tests above could not pass on an engine that does not adopt.
#[test]
fn without_adoption_the_stream_breaks() {
    for from_server in [false, true] {
        let broke = catch_unwind(AssertUnwindSafe(|| {
            let mut sim = nat_sim();
            before_crash(&mut sim);
            sim.adopt = false;
            sim.restart();
            if from_server {
                sim.send(Side::Client, b"NOOP\r\n", &[]);
                sim.restart();
                sim.send(Side::Server, b"200 NOOP ok\r\n", &[]);
                sim.send(Side::Client, b"PORT 198,51,100,2,195,90\r\n", &[]);
                sim.send(Side::Server, b"200 PORT ok\r\n", &[]);
            } else {
                after_crash(&mut sim);
            }
            assert_continued(&sim);
        }))
        .is_err();
        assert!(
            broke,
            "a restart without stored state went unnoticed (from_server {from_server})"
        );
    }
}

proptest! {
    #[test]
    fn label_round_trip(
        first_bit in 0u32..=12,
        admin in any::<u128>(),
        p1 in any::<u32>(), a1 in any::<i16>(), d1 in any::<i8>(),
        p2 in any::<u32>(), a2 in any::<i16>(), d2 in any::<i8>(),
        unparsed in any::<bool>(),
    ) {
        let layout = LabelLayout::new(first_bit).unwrap();
        let dir = |pos: u32, after: i16, delta: i8| ftp_alg_proto::durable::DirState {
            pos: ftp_alg_proto::seq::SeqNum(pos),
            before: i64::from(after) - i64::from(delta),
            after: i64::from(after),
        };
        let state = Durable { to_server: dir(p1, a1, d1), to_client: dir(p2, a2, d2), unparsed };
        let bits = layout.encode(&state).unwrap();
        prop_assert_eq!(bits & !layout.mask(), 0);
        // Written with the mask, over whatever the admin keeps there.
        let label = (admin & !layout.mask()) | bits;
        prop_assert_eq!(layout.decode(label), Some(state));
        prop_assert_eq!(label & !layout.mask(), admin & !layout.mask());
    }
}
