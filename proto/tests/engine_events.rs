//! The events the engine reports with its decisions: exactly what it
//! decided, in order, for consumers that print it (`ftp-alg replay`).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use ftp_alg_proto::engine::Opening;
use ftp_alg_proto::event::Event;
use ftp_alg_proto::ftp::session::Form;
use ftp_alg_proto::pinhole::Pinhole;
use ftp_alg_proto::reason::Reason;
use support::{Side, Sim};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn snat_session_reports_start_announcement_rewrite_pinhole_refusal_end() {
    let mut sim = Sim::new(
        "198.51.100.2:40000",
        "203.0.113.254:40000",
        "203.0.113.10:21",
        "203.0.113.10:21",
    );
    sim.handshake();
    for (side, text) in [
        (Side::Server, "220 hi\r\n"),
        (Side::Client, "PORT 198,51,100,2,195,80\r\n"),
        (Side::Server, "200 ok\r\n"),
        (Side::Client, "PORT 198,51,100,2,0,21\r\n"),
        (Side::Server, "200 ok\r\n"),
    ] {
        sim.send(side, text.as_bytes(), &[]);
    }
    sim.close();
    let pinhole = Pinhole {
        src: "203.0.113.10".parse().unwrap(),
        dst: "203.0.113.254".parse().unwrap(),
        dport: 50000,
        dnat: Some(sa("198.51.100.2:50000")),
    };
    assert_eq!(
        sim.events,
        vec![
            Event::SessionOpened {
                server: sa("203.0.113.10:21"),
                mid_stream: false
            },
            Event::Announcement {
                form: Form::Port,
                addr: Some("198.51.100.2".parse().unwrap()),
                port: 50000
            },
            Event::Rewrite {
                form: Form::Port,
                from: "198,51,100,2,195,80".into(),
                to: "203,0,113,254,195,80".into(),
                delta: 1
            },
            Event::Pinhole {
                form: Form::Port,
                opening: Opening {
                    pinhole,
                    lifetime: Duration::from_secs(30)
                }
            },
            Event::Refusal {
                form: Some(Form::Port),
                reason: Reason::PrivilegedPort
            },
            Event::SessionClosed,
        ]
    );
}

#[test]
fn unsolicited_227_and_tls_are_reported() {
    let mut sim = Sim::new(
        "203.0.113.20:40000",
        "203.0.113.20:40000",
        "203.0.113.1:21",
        "192.0.2.10:21",
    );
    sim.handshake();
    for (side, text) in [
        (Side::Server, "220 hi\r\n"),
        (
            Side::Server,
            "227 Entering Passive Mode (192,0,2,10,195,80).\r\n",
        ),
        (Side::Client, "AUTH TLS\r\n"),
        (Side::Server, "234 go ahead\r\n"),
    ] {
        sim.send(side, text.as_bytes(), &[]);
    }
    assert_eq!(
        sim.events[1..],
        [
            Event::Refusal {
                form: None,
                reason: Reason::UnsolicitedReply
            },
            Event::TlsStarted,
        ]
    );
}
