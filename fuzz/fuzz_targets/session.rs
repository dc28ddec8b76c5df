//! A sequence of (side, line) pairs through one `ControlSession`.
//!
//! Lines are either picked from FTP-ish templates (so that the fuzzer
//! reaches the greeting, PASV/227 pairing, multi-line replies and AUTH/234
//! quickly) or raw bytes. Checks, besides the absence of panics:
//! * once the phase is `NotFtp` or `Tls`, no line changes it and no
//!   `Event::Announce` is ever returned; `NotFtp` is never left, `Tls` only
//!   by `resume_cleartext` (what the engine calls after `CCC`), to `Ready`;
//! * an announcement only comes out of a session in the `Ready` phase;
//! * an announced span lies within the line.

#![no_main]

use arbitrary::Arbitrary;
use ftp_alg_proto::ftp::session::{ControlSession, Event, Phase};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Template {
    Greeting,
    Greeting120,
    Pasv,
    Epsv,
    Port,
    Eprt,
    Eprt6,
    Auth,
    Rein,
    Quit,
    Reply227,
    Reply229,
    Reply234,
    Reply221,
    Reply200,
    Reply150,
    Reply500,
    Multi227Start,
    Multi230Start,
    Continuation,
}

impl Template {
    fn text(&self) -> &'static [u8] {
        match self {
            Template::Greeting => b"220 Service ready",
            Template::Greeting120 => b"120 Ready in 5 minutes",
            Template::Pasv => b"PASV",
            Template::Epsv => b"EPSV",
            Template::Port => b"PORT 198,51,100,2,195,80",
            Template::Eprt => b"EPRT |1|198.51.100.2|6000|",
            Template::Eprt6 => b"EPRT |2|2001:db8:1::2|6001|",
            Template::Auth => b"AUTH TLS",
            Template::Rein => b"REIN",
            Template::Quit => b"QUIT",
            Template::Reply227 => b"227 Entering Passive Mode (203,0,113,10,4,1).",
            Template::Reply229 => b"229 Entering Extended Passive Mode (|||6446|)",
            Template::Reply234 => b"234 AUTH TLS OK",
            Template::Reply221 => b"221 Goodbye",
            Template::Reply200 => b"200 Command okay",
            Template::Reply150 => b"150 Opening data connection",
            Template::Reply500 => b"500 Syntax error",
            Template::Multi227Start => b"227-Entering Passive Mode",
            Template::Multi230Start => b"230-Welcome",
            Template::Continuation => b" (1,2,3,4,5,6) is not it",
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Ending {
    CrLf,
    Lf,
    None,
    SpacesCrLf,
}

#[derive(Arbitrary, Debug)]
enum Body {
    Template(Template),
    /// A template with bytes appended (before the line ending).
    TemplatePlus(Template, Vec<u8>),
    Raw(Vec<u8>),
}

impl Body {
    fn write(&self, line: &mut Vec<u8>) {
        match self {
            Body::Template(t) => line.extend_from_slice(t.text()),
            Body::TemplatePlus(t, extra) => {
                line.extend_from_slice(t.text());
                line.extend_from_slice(extra);
            }
            Body::Raw(raw) => line.extend_from_slice(raw),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Step {
    Line {
        from_client: bool,
        body: Body,
        ending: Ending,
    },
    /// A line over the length limit: the engine hands over only its head.
    Overlong { from_client: bool, body: Body },
    /// What the engine calls once both directions are cleartext after CCC.
    ResumeCleartext,
}

#[derive(Arbitrary, Debug)]
struct Input {
    resync: bool,
    steps: Vec<Step>,
}

fn terminal(phase: Phase) -> bool {
    matches!(phase, Phase::NotFtp | Phase::Tls)
}

fuzz_target!(|input: Input| {
    let mut session = if input.resync {
        ControlSession::resync()
    } else {
        ControlSession::new()
    };
    let mut line = Vec::new();
    for step in input.steps.iter().take(256) {
        let before = session.phase();
        let (from_client, event) = match step {
            Step::Overlong { from_client, body } => {
                line.clear();
                body.write(&mut line);
                let event = if *from_client {
                    session.on_client_overlong(&line)
                } else {
                    session.on_server_overlong(&line)
                };
                // Its text is not all there: it must never announce.
                assert!(
                    !matches!(event, Some(Event::Announce(..))),
                    "a line over the limit announced: {event:?}"
                );
                (*from_client, event)
            }
            Step::ResumeCleartext => {
                session.resume_cleartext();
                let expected = if before == Phase::Tls {
                    Phase::Ready
                } else {
                    before
                };
                assert_eq!(
                    session.phase(),
                    expected,
                    "resume_cleartext from {before:?}"
                );
                continue;
            }
            Step::Line {
                from_client,
                body,
                ending,
            } => {
                line.clear();
                body.write(&mut line);
                line.extend_from_slice(match ending {
                    Ending::CrLf => b"\r\n",
                    Ending::Lf => b"\n",
                    Ending::None => b"",
                    Ending::SpacesCrLf => b"  \r\n",
                });
                let event = if *from_client {
                    session.on_client_line(&line)
                } else {
                    session.on_server_line(&line)
                };
                (*from_client, event)
            }
        };
        let after = session.phase();
        // Lines never lead out of NotFtp or Tls (only resume_cleartext,
        // called by the engine after CCC, leaves Tls).
        if terminal(before) {
            assert_eq!(after, before, "a line left the {before:?} phase");
        }
        assert_eq!(session.is_parsing(), !terminal(after));
        if let Some(Event::Announce(form, hp)) = &event {
            assert!(
                !terminal(before) && !terminal(after),
                "announcement {form:?} {hp:?} in phase {before:?} -> {after:?} (client: {from_client})"
            );
            assert_eq!(
                before,
                Phase::Ready,
                "announcement {form:?} outside the Ready phase (client: {from_client})"
            );
            assert!(
                hp.span.start <= hp.span.end && hp.span.end <= line.len(),
                "span {:?} outside line of {} bytes",
                hp.span,
                line.len()
            );
        }
    }
});
