//! FTPS sessions to a server on this host (issue 12, item 2): the engine
//! ties the one new listener of the server to the one session with a
//! request in flight and opens an exact pinhole for it; otherwise it falls
//! back to the `[[ftps]]` range or opens nothing, and it never asks for
//! listeners of a cleartext or a remote session.
//!
//! Each session is driven packet by packet (cleartext lines, then TLS
//! records that are only framing: nothing here is decrypted), through
//! `Engine::handle_queries` with a lookup that says "local" and a listing
//! of the simulated server's listeners.

#[allow(dead_code)]
mod counting_alloc;

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use ftp_alg_proto::engine::{Decision, Engine, EngineConfig, Listener, Lookup, Untied};
use ftp_alg_proto::event::Event;
use ftp_alg_proto::ftps::FtpsServer;
use ftp_alg_proto::pinhole::Pinhole;

#[global_allocator]
static ALLOC: counting_alloc::Counting = counting_alloc::Counting;

const SERVER: &str = "192.0.2.10:21";

/// The simulated host: its server's listeners, how often they were asked
/// for, and whether its lookups say the server is local.
struct Host {
    engine: Engine,
    now: Instant,
    listeners: RefCell<Vec<Listener>>,
    asked: RefCell<usize>,
    local: bool,
    next_inode: u64,
    /// Allocations of the engine's last `handle_queries` (this thread's).
    allocs: u64,
}

/// One control connection's two sequence counters.
struct Conn {
    client: SocketAddr,
    cseq: u32,
    sseq: u32,
}

#[derive(Clone, Copy)]
enum From {
    Client,
    Server,
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A TLS application-data record with `n` bytes of ciphertext.
fn record(n: usize) -> Vec<u8> {
    let mut r = vec![23, 3, 3, (n >> 8) as u8, n as u8];
    r.resize(5 + n, 0x5a);
    r
}

impl Host {
    fn new(cfg: EngineConfig) -> Host {
        Host {
            engine: Engine::new(cfg),
            // The test is the core's caller: it owns the clock.
            #[allow(clippy::disallowed_methods)]
            now: Instant::now(),
            listeners: RefCell::new(vec![Listener { inode: 1, port: 21 }]),
            asked: RefCell::new(0),
            local: true,
            next_inode: 100,
            allocs: 0,
        }
    }

    /// The server creates a passive listener (a new socket) on `port`.
    fn listen(&mut self, port: u16) {
        self.next_inode += 1;
        let l = Listener {
            inode: self.next_inode,
            port,
        };
        self.listeners.borrow_mut().push(l);
    }

    /// The server closes its listener on `port` (the data connection came).
    fn unlisten(&mut self, port: u16) {
        self.listeners.borrow_mut().retain(|l| l.port != port);
    }

    fn packet(&mut self, c: &mut Conn, from: From, syn: bool, payload: &[u8]) -> Decision {
        let server = sa(SERVER);
        let (src, dst, seq, ack) = match from {
            From::Client => (c.client, server, c.cseq, c.sseq),
            From::Server => (server, c.client, c.sseq, c.cseq),
        };
        let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
            panic!("IPv4 only here")
        };
        let mut t =
            PacketBuilder::ipv4(s.octets(), d.octets(), 64).tcp(src.port(), dst.port(), seq, 64000);
        let first = matches!(from, From::Client) && syn;
        if !first {
            t = t.ack(ack);
        }
        if syn {
            t = t.syn();
        }
        let mut p = Vec::new();
        t.write(&mut p, payload).unwrap();
        let advance = payload.len() as u32 + u32::from(syn);
        match from {
            From::Client => c.cseq = c.cseq.wrapping_add(advance),
            From::Server => c.sseq = c.sseq.wrapping_add(advance),
        }
        let local = self.local;
        let (listeners, asked) = (&self.listeners, &self.asked);
        let before = counting_alloc::allocs();
        let d = self.engine.handle_queries(
            self.now,
            &p,
            |_, _| Lookup {
                server_local: local,
                ..Lookup::default()
            },
            |addr| {
                assert_eq!(addr, sa(SERVER).ip(), "listeners of the server's address");
                *asked.borrow_mut() += 1;
                Some(listeners.borrow().clone())
            },
        );
        self.allocs = counting_alloc::allocs() - before;
        d
    }

    /// A session from `client` up to the `234` of `AUTH TLS` and one TLS
    /// handshake round.
    fn tls_session(&mut self, client: &str) -> Conn {
        let mut c = self.cleartext_session(client);
        self.packet(&mut c, From::Client, false, b"AUTH TLS\r\n");
        let d = self.packet(&mut c, From::Server, false, b"234 go ahead\r\n");
        assert!(d.events.contains(&Event::TlsStarted));
        assert!(
            d.open_ranges.is_empty(),
            "no range for a local server's session"
        );
        self.packet(&mut c, From::Client, false, &record(300)); // ClientHello
        self.packet(&mut c, From::Server, false, &record(1200)); // ServerHello ...
        self.packet(&mut c, From::Client, false, &record(80)); // Finished
        self.packet(&mut c, From::Server, false, &record(200)); // tickets
        c
    }

    fn cleartext_session(&mut self, client: &str) -> Conn {
        let mut c = Conn {
            client: sa(client),
            cseq: 1000,
            sseq: 900_000,
        };
        self.packet(&mut c, From::Client, true, b"");
        self.packet(&mut c, From::Server, true, b"");
        self.packet(&mut c, From::Client, false, b"");
        self.packet(&mut c, From::Server, false, b"220 hi\r\n");
        c
    }

    /// An encrypted command and the server's encrypted reply; `setup`
    /// runs in between (what the server does before it answers).
    fn exchange(&mut self, c: &mut Conn, setup: impl FnOnce(&mut Host)) -> Decision {
        self.packet(c, From::Client, false, &record(40));
        setup(self);
        self.packet(c, From::Server, false, &record(60))
    }
}

fn exact(client: &str, port: u16) -> Pinhole {
    Pinhole {
        src: sa(client).ip(),
        dst: sa(SERVER).ip(),
        dport: port,
        dnat: None,
    }
}

fn opened(d: &Decision) -> Vec<Pinhole> {
    d.open.iter().map(|o| o.pinhole).collect()
}

fn with_range(low: u16, high: u16) -> EngineConfig {
    EngineConfig {
        ftps: vec![FtpsServer {
            server: "192.0.2.10".parse().unwrap(),
            passive_ports: format!("{low}-{high}").parse().unwrap(),
        }],
        ..EngineConfig::default()
    }
}

#[test]
fn one_session_gets_an_exact_pinhole_for_its_new_listener_only() {
    let mut host = Host::new(EngineConfig::default());
    let mut c = host.tls_session("203.0.113.20:40000");
    // PBSZ/PROT: no listener.
    let d = host.exchange(&mut c, |_| {});
    assert!(d.open.is_empty());
    // EPSV: the server listens on 50001 before it answers.
    let d = host.exchange(&mut c, |h| h.listen(50001));
    assert_eq!(opened(&d), [exact("203.0.113.20:40000", 50001)]);
    assert_eq!(d.open[0].lifetime, Duration::from_secs(30));
    assert!(d
        .events
        .iter()
        .any(|e| matches!(e, Event::FtpsExact { opening } if opening.pinhole.dport == 50001)));
    // 150/226 of the transfer: the listener is the old one now.
    let d = host.exchange(&mut c, |h| h.unlisten(50001));
    assert!(d.open.is_empty());
    // The next EPSV gets the same port again from a new socket: new.
    let d = host.exchange(&mut c, |h| h.listen(50001));
    assert_eq!(opened(&d), [exact("203.0.113.20:40000", 50001)]);
    assert_eq!(host.engine.stats().ftps_exact, 2);
    assert_eq!(host.engine.stats().ftps_fallbacks, 0);
}

#[test]
fn a_listener_that_existed_before_the_request_is_not_attributed() {
    let mut host = Host::new(EngineConfig::default());
    let mut c = host.tls_session("203.0.113.20:40000");
    // Another service listens while no request is in flight...
    host.listen(50002);
    host.exchange(&mut c, |_| {});
    // ... and is still there when the session's next request is answered.
    let d = host.exchange(&mut c, |_| {});
    assert!(d.open.is_empty(), "{:?}", d.open);
}

#[test]
fn two_sessions_in_flight_fall_back_to_the_range() {
    let mut host = Host::new(with_range(50000, 50100));
    let mut a = host.tls_session("203.0.113.20:40000");
    let mut b = host.tls_session("203.0.113.21:40000");
    host.packet(&mut a, From::Client, false, &record(40));
    host.packet(&mut b, From::Client, false, &record(40));
    host.listen(50010);
    let d = host.packet(&mut a, From::Server, false, &record(60));
    assert!(
        d.open.is_empty(),
        "no exact pinhole when two sessions asked"
    );
    let mut ranges: Vec<IpAddr> = d.open_ranges.iter().map(|r| r.range.src).collect();
    ranges.sort();
    let both: Vec<IpAddr> = vec![sa("203.0.113.20:0").ip(), sa("203.0.113.21:0").ip()];
    assert_eq!(ranges, both, "both sessions in flight get their range");
    assert!(d
        .events
        .iter()
        .all(|e| !matches!(e, Event::FtpsUntied { range: false, .. })));
    assert!(d.events.contains(&Event::FtpsUntied {
        why: Untied::SessionsInFlight(2),
        range: true
    }));
    assert_eq!(host.engine.stats().ftps_fallbacks, 2);
    // B's own reply then finds nothing new.
    let d = host.packet(&mut b, From::Server, false, &record(60));
    assert!(d.open.is_empty() && d.open_ranges.is_empty());
}

#[test]
fn two_sessions_in_flight_without_a_range_open_nothing() {
    let mut host = Host::new(EngineConfig::default());
    let mut a = host.tls_session("203.0.113.20:40000");
    let mut b = host.tls_session("203.0.113.21:40000");
    host.packet(&mut a, From::Client, false, &record(40));
    host.packet(&mut b, From::Client, false, &record(40));
    host.listen(50010);
    let d = host.packet(&mut a, From::Server, false, &record(60));
    assert!(d.open.is_empty() && d.open_ranges.is_empty());
    assert!(d.events.contains(&Event::FtpsUntied {
        why: Untied::SessionsInFlight(2),
        range: false
    }));
}

#[test]
fn a_session_alone_in_flight_is_exact_while_another_is_idle() {
    let mut host = Host::new(EngineConfig::default());
    let _idle = host.tls_session("203.0.113.21:40000");
    let mut a = host.tls_session("203.0.113.20:40000");
    let d = host.exchange(&mut a, |h| h.listen(50010));
    assert_eq!(opened(&d), [exact("203.0.113.20:40000", 50010)]);
}

#[test]
fn a_port_outside_the_range_or_privileged_is_not_attributed() {
    let mut host = Host::new(with_range(50000, 50100));
    let mut c = host.tls_session("203.0.113.20:40000");
    let d = host.exchange(&mut c, |h| h.listen(40000));
    assert!(d.open.is_empty(), "40000 is outside 50000-50100");
    let d = host.exchange(&mut c, |h| h.listen(50050));
    assert_eq!(opened(&d), [exact("203.0.113.20:40000", 50050)]);
    let mut host = Host::new(EngineConfig::default());
    let mut c = host.tls_session("203.0.113.20:40000");
    let d = host.exchange(&mut c, |h| h.listen(990));
    assert!(d.open.is_empty(), "privileged port");
}

#[test]
fn cleartext_and_remote_sessions_never_ask_for_listeners() {
    let mut host = Host::new(EngineConfig::default());
    let mut c = host.cleartext_session("203.0.113.20:40000");
    host.packet(&mut c, From::Client, false, b"EPSV\r\n");
    host.listen(50001);
    let d = host.packet(
        &mut c,
        From::Server,
        false,
        b"229 Entering Extended Passive Mode (|||50001|)\r\n",
    );
    // The cleartext reply is read: its own pinhole, from the text.
    assert_eq!(opened(&d), [exact("203.0.113.20:40000", 50001)]);
    assert_eq!(*host.asked.borrow(), 0);

    let mut host = Host::new(EngineConfig::default());
    host.local = false;
    let mut c = host.tls_session("203.0.113.20:40000");
    let d = host.exchange(&mut c, |h| h.listen(50001));
    assert!(d.open.is_empty());
    assert_eq!(
        *host.asked.borrow(),
        0,
        "a remote server's listeners are not ours"
    );
}

#[test]
fn a_cleartext_sessions_announced_port_is_its_own() {
    let mut host = Host::new(EngineConfig::default());
    let mut f = host.tls_session("203.0.113.21:40000");
    let mut c = host.cleartext_session("203.0.113.20:40000");
    host.packet(&mut c, From::Client, false, b"EPSV\r\n");
    host.listen(50001);
    host.packet(
        &mut c,
        From::Server,
        false,
        b"229 Entering Extended Passive Mode (|||50001|)\r\n",
    );
    // The FTPS session's next reply sees 50001 as new since its last
    // listing, but that port was announced to the cleartext session.
    let d = host.exchange(&mut f, |_| {});
    assert!(d.open.is_empty(), "{:?}", d.open);
}

#[test]
fn a_failed_listing_falls_back_to_the_range() {
    let mut host = Host::new(with_range(50000, 50100));
    let mut c = host.tls_session("203.0.113.20:40000");
    host.packet(&mut c, From::Client, false, &record(40));
    let server = sa(SERVER);
    let mut p = Vec::new();
    PacketBuilder::ipv4([192, 0, 2, 10], [203, 0, 113, 20], 64)
        .tcp(server.port(), 40000, c.sseq, 64000)
        .ack(c.cseq)
        .write(&mut p, &record(60))
        .unwrap();
    let d = host
        .engine
        .handle_queries(host.now, &p, |_, _| unreachable!(), |_| None);
    assert_eq!(d.open_ranges.len(), 1);
    assert!(d.events.contains(&Event::FtpsUntied {
        why: Untied::ListingFailed,
        range: true
    }));
}

#[test]
fn packets_that_need_no_listing_do_not_allocate() {
    let mut host = Host::new(EngineConfig::default());
    let mut f = host.tls_session("203.0.113.21:40000");
    let mut c = host.cleartext_session("203.0.113.20:40000");
    // Warm up the session's command queue.
    host.packet(&mut c, From::Client, false, b"NOOP\r\n");
    host.packet(&mut c, From::Server, false, b"200 ok\r\n");
    // A local cleartext session's command and reply, and a local FTPS
    // session's command: no listing, nothing allocated.
    let tls_command = record(40);
    for (tls, from, payload) in [
        (false, From::Client, &b"NOOP\r\n"[..]),
        (false, From::Server, &b"200 ok\r\n"[..]),
        (true, From::Client, &tls_command[..]),
    ] {
        let conn = if tls { &mut f } else { &mut c };
        let d = host.packet(conn, from, false, payload);
        assert!(d.open.is_empty());
        assert_eq!(host.allocs, 0, "{payload:?}");
    }
    // Only the FTPS reply that answers it is listed.
    let asked = *host.asked.borrow();
    host.packet(&mut f, From::Server, false, &record(60));
    assert_eq!(*host.asked.borrow(), asked + 1);
}
