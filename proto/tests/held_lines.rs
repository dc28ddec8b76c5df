//! Lines cut in two with a pause between the pieces never stall the
//! control connection, whatever the sender's timing: with Nagle on (the
//! second piece waits for the first one's ACK) and off, pauses shorter and
//! longer than the sender's retransmission timeout, from the client and
//! from the server, IPv4 and IPv6. Announcements are still rewritten to
//! the exact bytes and open their pinhole.

mod support;

use std::time::Duration;

use ftp_alg_proto::reason::Reason;
use support::{Receiver, Sender, Side, Sim};

const PAUSES_MS: [u64; 4] = [50, 500, 1500, 3000];

/// One way of cutting a line, and what each side must get.
struct Case {
    name: &'static str,
    v6: bool,
    side: Side,
    first: &'static str,
    rest: &'static str,
    /// What the receiver must get for the line.
    expect: &'static str,
    opens: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "PORT cut in the address",
        v6: false,
        side: Side::Client,
        first: "PORT 198,51,",
        rest: "100,2,195,80\r\n",
        expect: "PORT 203,0,113,254,195,80\r\n",
        opens: true,
    },
    Case {
        name: "PORT cut after the verb",
        v6: false,
        side: Side::Client,
        first: "PORT ",
        rest: "198,51,100,2,195,80\r\n",
        expect: "PORT 203,0,113,254,195,80\r\n",
        opens: true,
    },
    Case {
        name: "a lone P (PWD typed slowly)",
        v6: false,
        side: Side::Client,
        first: "P",
        rest: "WD\r\n",
        expect: "PWD\r\n",
        opens: false,
    },
    Case {
        name: "227 through DNAT",
        v6: false,
        side: Side::Server,
        first: "227 Entering",
        rest: " Passive Mode (192,0,2,10,39,16).\r\n",
        expect: "227 Entering Passive Mode (203,0,113,1,39,16).\r\n",
        opens: true,
    },
    Case {
        name: "IPv6 EPRT cut in the address",
        v6: true,
        side: Side::Client,
        first: "EPRT |2|2001:db8:1::2|",
        rest: "50000|\r\n",
        expect: "EPRT |2|2001:db8:1::2|50000|\r\n",
        opens: true,
    },
    Case {
        name: "IPv6 EPRT cut after the verb",
        v6: true,
        side: Side::Client,
        first: "EPRT ",
        rest: "|2|2001:db8:1::2|50000|\r\n",
        expect: "EPRT |2|2001:db8:1::2|50000|\r\n",
        opens: true,
    },
    Case {
        name: "IPv6 lone P",
        v6: true,
        side: Side::Client,
        first: "P",
        rest: "WD\r\n",
        expect: "PWD\r\n",
        opens: false,
    },
    Case {
        name: "IPv6 229",
        v6: true,
        side: Side::Server,
        first: "229 Entering",
        rest: " Extended Passive Mode (|||50001|)\r\n",
        expect: "229 Entering Extended Passive Mode (|||50001|)\r\n",
        opens: true,
    },
];

fn sim_for(case: &Case) -> Sim {
    match (case.v6, case.side) {
        (false, Side::Client) => Sim::new(
            "198.51.100.2:40000",
            "203.0.113.254:40000",
            "203.0.113.10:21",
            "203.0.113.10:21",
        ),
        (false, Side::Server) => Sim::new(
            "203.0.113.20:40000",
            "203.0.113.20:40000",
            "203.0.113.1:21",
            "192.0.2.10:21",
        ),
        (true, _) => {
            let (c, s) = ("[2001:db8:1::2]:40000", "[2001:db8:2::10]:21");
            Sim::new(c, c, s, s)
        }
    }
}

fn quick(pause: Duration, text: &str) -> [(Duration, &[u8]); 1] {
    [(pause, text.as_bytes())]
}

/// Plays greeting, the cut line (with its command or reply around it) and
/// a NOOP round trip; returns what went wrong, if anything.
fn play(case: &Case, pause: Duration, sender: Sender, receiver: Receiver) -> Result<Sim, String> {
    let mut sim = sim_for(case);
    let std = Sender { nagle: true };
    let zero = Duration::ZERO;
    let ok = Receiver::Standard;
    sim.handshake();
    sim.write_timed(Side::Server, &quick(zero, "220 hi\r\n"), std, ok)?;
    let pieces = [(zero, case.first.as_bytes()), (pause, case.rest.as_bytes())];
    let (expect_c2s, expect_s2c);
    match case.side {
        Side::Client => {
            sim.write_timed(Side::Client, &pieces, sender, receiver)?;
            sim.write_timed(Side::Server, &quick(zero, "200 ok\r\n"), std, ok)?;
            expect_c2s = format!("{}NOOP\r\n", case.expect);
            expect_s2c = "220 hi\r\n200 ok\r\n200 ok\r\n".to_string();
        }
        Side::Server => {
            let ask = if case.expect.starts_with("227") {
                "PASV\r\n"
            } else {
                "EPSV\r\n"
            };
            sim.write_timed(Side::Client, &quick(zero, ask), std, ok)?;
            sim.write_timed(Side::Server, &pieces, sender, receiver)?;
            expect_c2s = format!("{ask}NOOP\r\n");
            expect_s2c = format!("220 hi\r\n{}200 ok\r\n", case.expect);
        }
    }
    // The session goes on: a NOOP round trip.
    sim.write_timed(Side::Client, &quick(zero, "NOOP\r\n"), std, ok)?;
    sim.write_timed(Side::Server, &quick(zero, "200 ok\r\n"), std, ok)?;
    let got = (sim.received(Side::Client), sim.received(Side::Server));
    if got
        != (
            expect_c2s.clone().into_bytes(),
            expect_s2c.clone().into_bytes(),
        )
    {
        return Err(format!(
            "bytes: server got {:?}, client got {:?}",
            String::from_utf8_lossy(&got.0),
            String::from_utf8_lossy(&got.1)
        ));
    }
    Ok(sim)
}

#[test]
fn no_timing_stalls_and_announcements_are_rewritten() {
    let mut failures = Vec::new();
    let mut runs = 0;
    for case in CASES {
        for ms in PAUSES_MS {
            for nagle in [false, true] {
                runs += 1;
                let pause = Duration::from_millis(ms);
                let label = format!("{} / pause {ms} ms / nagle {nagle}", case.name);
                match play(case, pause, Sender { nagle }, Receiver::Standard) {
                    Err(why) => failures.push(format!("{label}: {why}")),
                    Ok(sim) => {
                        let opened = sim.opened.len();
                        if opened != usize::from(case.opens) {
                            failures.push(format!("{label}: {opened} pinholes opened"));
                        }
                        let stats = sim.engine.stats();
                        if stats.refusals.get(Reason::HeldLineReleased) != 0 {
                            failures.push(format!("{label}: released instead of taken over"));
                        }
                        if stats.segments_held == 0 || sim.dropped != 0 {
                            failures.push(format!(
                                "{label}: {} segments held, {} dropped",
                                stats.segments_held, sim.dropped
                            ));
                        }
                    }
                }
            }
        }
    }
    assert_eq!(runs, 64);
    assert!(
        failures.is_empty(),
        "{} of {runs} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The last resort: a receiver that never acknowledges a duplicate gets
/// no ACK for the bytes taken over, so the sender keeps retransmitting
/// them; after the hold limit the engine lets them through untouched and
/// the announcement, now unrewritable, opens nothing. Nothing stalls.
#[test]
fn held_bytes_are_released_when_the_takeover_cannot_work() {
    let case = &CASES[1]; // "PORT " then the rest, a rewrite needed
    for nagle in [false, true] {
        let sim = play_released(case, nagle);
        let refusals = &sim.engine.stats().refusals;
        assert_eq!(refusals.get(Reason::HeldLineReleased), 1, "nagle {nagle}");
        assert!(sim.opened.is_empty(), "nagle {nagle}: {:?}", sim.opened);
    }
}

fn play_released(case: &Case, nagle: bool) -> Sim {
    let mut sim = sim_for(case);
    let (std, ok, zero) = (Sender { nagle: true }, Receiver::Standard, Duration::ZERO);
    sim.handshake();
    sim.write_timed(Side::Server, &quick(zero, "220 hi\r\n"), std, ok)
        .unwrap();
    let pieces = [
        (zero, case.first.as_bytes()),
        (Duration::from_millis(1500), case.rest.as_bytes()),
    ];
    sim.write_timed(
        Side::Client,
        &pieces,
        Sender { nagle },
        Receiver::IgnoresDuplicates,
    )
    .unwrap();
    let line = format!("{}{}", case.first, case.rest);
    assert_eq!(
        sim.received(Side::Client),
        line.as_bytes(),
        "forwarded untouched"
    );
    sim
}

/// Bytes taken over are the engine's to deliver: a stream that ends right
/// after them (a lone `P`, then FIN) carries them in its FIN, in every
/// copy of it; so does a line that turns out harmless (`PW`).
#[test]
fn held_bytes_go_out_with_the_fin_and_with_a_harmless_rest() {
    let mut sim = sim_for(&CASES[0]);
    let (std, ok, zero) = (Sender { nagle: true }, Receiver::Standard, Duration::ZERO);
    sim.handshake();
    sim.write_timed(Side::Server, &quick(zero, "220 hi\r\n"), std, ok)
        .unwrap();
    sim.write_timed(Side::Client, &quick(zero, "P"), std, ok)
        .unwrap();
    assert_eq!(sim.received(Side::Client), b"", "held, yet acknowledged");
    sim.write_timed(Side::Client, &quick(zero, "W"), std, ok)
        .unwrap();
    assert_eq!(sim.received(Side::Client), b"PW", "harmless: released");
    sim.write_timed(Side::Client, &quick(zero, "D\r\nP"), std, ok)
        .unwrap();
    assert_eq!(sim.received(Side::Client), b"PWD\r\n");
    sim.fin(Side::Client);
    sim.fin(Side::Client); // a retransmitted FIN carries the same bytes
    assert_eq!(sim.received(Side::Client), b"PWD\r\nP");
    assert!(sim.opened.is_empty());
}

/// Held bytes of a line that will never be parsed to its end (TLS began
/// meanwhile: a pipelined `AUTH TLS`) go out in front of the next segment.
#[test]
fn held_bytes_go_out_when_the_session_turns_to_tls() {
    let mut sim = sim_for(&CASES[0]);
    let (std, ok, zero) = (Sender { nagle: true }, Receiver::Standard, Duration::ZERO);
    sim.handshake();
    sim.write_timed(Side::Server, &quick(zero, "220 hi\r\n"), std, ok)
        .unwrap();
    sim.write_timed(Side::Client, &quick(zero, "AUTH TLS\r\nP"), std, ok)
        .unwrap();
    sim.write_timed(Side::Server, &quick(zero, "234 go\r\n"), std, ok)
        .unwrap();
    let record = [22u8, 3, 3, 0, 2, 0xaa, 0xbb];
    sim.write_timed(Side::Client, &[(zero, &record[..])], std, ok)
        .unwrap();
    let mut expect = b"AUTH TLS\r\nP".to_vec();
    expect.extend_from_slice(&record);
    assert_eq!(sim.received(Side::Client), expect);
}
