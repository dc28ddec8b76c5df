//! Property: however a dialogue is cut into TCP segments, whatever is
//! retransmitted (re-cut or not) and whatever arrives out of order, each
//! side receives the same bytes and the same pinholes open as when every
//! message travels in one segment.

mod support;

use proptest::prelude::*;
use support::{Side, Sim};

/// One write of one side: the lines, in order.
#[derive(Clone, Debug)]
struct Write {
    side: Side,
    text: String,
    cuts: Vec<usize>,
    resend: Vec<(usize, usize)>,
    /// Adjacent segments whose first copies arrive swapped.
    swaps: Vec<usize>,
}

fn client_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("NOOP\r\n".to_string()),
        Just("PASV\r\n".to_string()),
        Just("EPSV\r\n".to_string()),
        Just("USER anonymous\r\n".to_string()),
        (1024u16..=65535).prop_map(|p| format!("PORT 198,51,100,2,{},{}\r\n", p >> 8, p & 0xff)),
        (1024u16..=65535).prop_map(|p| format!("port 198,51,100,2,{},{}\n", p >> 8, p & 0xff)),
        (1024u16..=65535).prop_map(|p| format!("EPRT |1|198.51.100.2|{p}|\r\n")),
        Just("PORT 198,51,100,2,300,1\r\n".to_string()),
    ]
}

fn server_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("200 ok\r\n".to_string()),
        Just("150-opening\r\n150 data\r\n".to_string()),
        Just("500 no\r\n".to_string()),
        (1024u16..=65535).prop_map(|p| format!(
            "227 Entering Passive Mode (192,0,2,10,{},{}).\r\n",
            p >> 8,
            p & 0xff
        )),
        (1024u16..=65535).prop_map(|p| format!("229 Entering Extended Passive Mode (|||{p}|)\r\n")),
        Just("227-multi\r\n227 Entering Passive Mode (192,0,2,10,4,1)\r\n".to_string()),
    ]
}

fn write() -> impl Strategy<Value = Write> {
    let lines = |side: Side| -> BoxedStrategy<String> {
        match side {
            Side::Client => prop::collection::vec(client_line(), 1..4)
                .prop_map(|v| v.concat())
                .boxed(),
            Side::Server => prop::collection::vec(server_line(), 1..4)
                .prop_map(|v| v.concat())
                .boxed(),
        }
    };
    prop_oneof![Just(Side::Client), Just(Side::Server)]
        .prop_flat_map(move |side| (Just(side), lines(side)))
        .prop_flat_map(|(side, text)| {
            let n = text.len();
            (
                Just(side),
                Just(text),
                prop::collection::vec(1..n.max(2), 0..6),
                prop::collection::vec((0..n, 0..n + 1), 0..3),
                prop::collection::vec(0..6usize, 0..2),
            )
        })
        .prop_map(|(side, text, cuts, resend, swaps)| Write {
            side,
            text,
            cuts,
            resend,
            swaps,
        })
}

/// Client behind SNAT, server behind DNAT: both directions are rewritten.
fn run(writes: &[Write], cut: bool) -> (Vec<u8>, Vec<u8>, Vec<ftp_alg_proto::pinhole::Pinhole>) {
    let mut sim = Sim::new(
        "198.51.100.2:40000",
        "203.0.113.254:40000",
        "203.0.113.1:21",
        "192.0.2.10:21",
    );
    sim.handshake();
    sim.send(Side::Server, b"220 hi\r\n", &[]);
    for w in writes {
        if cut {
            sim.send_shuffled(w.side, w.text.as_bytes(), &w.cuts, &w.resend, &w.swaps);
        } else {
            sim.send(w.side, w.text.as_bytes(), &[]);
        }
    }
    (
        sim.received(Side::Client),
        sim.received(Side::Server),
        sim.opened,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn segmentation_does_not_change_the_outcome(writes in prop::collection::vec(write(), 1..12)) {
        let whole = run(&writes, false);
        let cut = run(&writes, true);
        prop_assert_eq!(&whole.0, &cut.0, "bytes the server received");
        prop_assert_eq!(&whole.1, &cut.1, "bytes the client received");
        prop_assert_eq!(&whole.2, &cut.2, "pinholes opened");
    }
}

/// The uncut run itself rewrites: the property above is not vacuous.
#[test]
fn uncut_run_rewrites_both_directions() {
    let writes = [
        Write {
            side: Side::Client,
            text: "PASV\r\n".into(),
            cuts: vec![],
            resend: vec![],
            swaps: vec![],
        },
        Write {
            side: Side::Server,
            text: "227 Entering Passive Mode (192,0,2,10,4,1)\r\n".into(),
            cuts: vec![],
            resend: vec![],
            swaps: vec![],
        },
        Write {
            side: Side::Client,
            text: "PORT 198,51,100,2,4,2\r\n".into(),
            cuts: vec![],
            resend: vec![],
            swaps: vec![],
        },
    ];
    let (to_server, to_client, opened) = run(&writes, false);
    assert_eq!(to_server, b"PASV\r\nPORT 203,0,113,254,4,2\r\n");
    assert_eq!(
        to_client,
        b"220 hi\r\n227 Entering Passive Mode (203,0,113,1,4,1)\r\n"
    );
    assert_eq!(opened.len(), 2);
}
