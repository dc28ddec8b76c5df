//! Host mode (issue 11) through the engine: this host is the FTP server or
//! client, with no NAT of its own, behind a further 1:1 NAT that conntrack
//! cannot see (`[[nat_override]]`: the engine's announced table maps its
//! interface address to the public one). The 227 / PORT naming the local
//! address is rewritten to the public one, a length change, and both
//! streams stay exact: every later byte arrives at the shifted sequence
//! number and every acknowledgement maps back, so each sender sees all it
//! wrote acknowledged (`Sim::settle` checks that).

mod support;

use std::net::IpAddr;

use ftp_alg_proto::event::Event;
use ftp_alg_proto::pinhole::Pinhole;
use support::{Side, Sim};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn deltas(sim: &Sim) -> Vec<i64> {
    sim.events
        .iter()
        .filter_map(|e| match e {
            Event::Rewrite { delta, .. } => Some(*delta),
            _ => None,
        })
        .collect()
}

#[test]
fn local_server_227_is_rewritten_to_the_public_address_and_the_stream_stays_exact() {
    // The server 192.0.2.10 is this host; 198.51.100.88 is what the
    // further NAT presents for it (3 bytes longer in a 227).
    let mut sim = Sim::new(
        "203.0.113.20:40000",
        "203.0.113.20:40000",
        "192.0.2.10:21",
        "192.0.2.10:21",
    );
    sim.engine
        .set_announced_addresses(vec![(ip("192.0.2.10"), ip("198.51.100.88"))]);
    sim.handshake();
    sim.send(Side::Server, b"220 hi\r\n", &[]);
    sim.send(Side::Client, b"PASV\r\n", &[]);
    // Cut inside the address, and a re-cut early retransmission of it:
    // every copy must carry the same rewritten bytes.
    let reply = b"227 Entering Passive Mode (192,0,2,10,195,80).\r\n";
    sim.send_with_retransmissions(Side::Server, reply, &[30], &[(20, 40)]);
    sim.send(Side::Client, b"RETR f\r\n", &[]);
    sim.send(Side::Server, b"150 here\r\n226 done\r\n", &[4]);
    sim.send(Side::Client, b"NOOP\r\n", &[]);
    sim.send(Side::Server, b"200 ok\r\n", &[]);
    assert_eq!(
        String::from_utf8(sim.received(Side::Server)).unwrap(),
        "220 hi\r\n227 Entering Passive Mode (198,51,100,88,195,80).\r\n\
         150 here\r\n226 done\r\n200 ok\r\n"
    );
    assert_eq!(sim.received(Side::Client), b"PASV\r\nRETR f\r\nNOOP\r\n");
    assert_eq!(deltas(&sim), [3]);
    // The further NAT delivers the data connection already translated:
    // exactly client -> the local address, no DNAT here.
    assert_eq!(
        sim.opened,
        [Pinhole {
            src: ip("203.0.113.20"),
            dst: ip("192.0.2.10"),
            dport: 50000,
            dnat: None,
        }]
    );
    sim.close();
    assert_eq!(sim.closed, sim.opened);
}

#[test]
fn local_client_port_is_rewritten_to_the_public_address_and_the_stream_stays_exact() {
    // The client 192.0.2.20 is this host; the further NAT presents it as
    // 198.51.100.7 (2 bytes longer in a PORT).
    let mut sim = Sim::new(
        "192.0.2.20:40000",
        "192.0.2.20:40000",
        "203.0.113.10:21",
        "203.0.113.10:21",
    );
    sim.engine
        .set_announced_addresses(vec![(ip("192.0.2.20"), ip("198.51.100.7"))]);
    sim.handshake();
    sim.send(Side::Server, b"220 hi\r\n", &[]);
    sim.send(Side::Client, b"PORT 192,0,2,20,195,80\r\n", &[9]);
    sim.send(Side::Server, b"200 PORT ok\r\n", &[]);
    sim.send(Side::Client, b"RETR f\r\nNOOP\r\n", &[3]);
    sim.send(Side::Server, b"150 here\r\n226 done\r\n200 ok\r\n", &[]);
    assert_eq!(
        String::from_utf8(sim.received(Side::Client)).unwrap(),
        "PORT 198,51,100,7,195,80\r\nRETR f\r\nNOOP\r\n"
    );
    assert_eq!(
        sim.received(Side::Server),
        b"220 hi\r\n200 PORT ok\r\n150 here\r\n226 done\r\n200 ok\r\n"
    );
    assert_eq!(deltas(&sim), [2]);
    assert_eq!(
        sim.opened,
        [Pinhole {
            src: ip("203.0.113.10"),
            dst: ip("192.0.2.20"),
            dport: 50000,
            dnat: None,
        }]
    );
}
