//! The protocol state of one FTP control session.
//!
//! The state machine decides which lines may announce a data connection:
//! nothing before the server's greeting, a `227`/`229` only as the answer to
//! an outstanding `PASV`/`EPSV` of the same session, nothing at all once the
//! session turns to TLS (RFC 4217) or is found not to be FTP. Replies are
//! paired with commands in order (RFC 959 §4.2: every command gets exactly
//! one final reply, preceded by any number of `1yz` preliminary replies).

use std::collections::VecDeque;

use crate::reason::Reason;

use super::parse::{
    parse_227, parse_229, parse_client_line, parse_reply_line, ClientLine, HostPort,
};

/// Which form announced a data connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `PORT` (RFC 959).
    Port,
    /// `EPRT` (RFC 2428).
    Eprt,
    /// `227` reply to `PASV` (RFC 959).
    Pasv227,
    /// `229` reply to `EPSV` (RFC 2428).
    Epsv229,
}

impl Form {
    /// Every form, in declaration order.
    pub const ALL: [Form; 4] = [Form::Port, Form::Eprt, Form::Pasv227, Form::Epsv229];
}

/// What a line means for data connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A data connection is announced.
    Announce(Form, HostPort),
    /// The server refused the last `PORT`/`EPRT` (4yz/5yz): close its pinhole.
    ActiveRefused,
    /// An announcement that the state does not expect or that does not
    /// parse, or a session found not to be FTP: nothing is opened.
    Ignored(Reason),
    /// The session switched to TLS: nothing that follows is parsed.
    TlsStarted,
    /// `REIN` or `QUIT` was accepted: every pinhole of the session closes.
    Reset,
}

/// Where the session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the server's `220` greeting.
    AwaitGreeting,
    /// Picked up mid-stream: the first well-formed reply synchronises.
    Resync,
    /// Greeted: announcements are honoured.
    Ready,
    /// TLS protects the control channel (RFC 4217 `AUTH` answered `234`).
    Tls,
    /// The peers do not speak FTP (e.g. the client spoke first): nothing
    /// from this session is ever honoured.
    NotFtp,
}

/// A command waiting for its final reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outstanding {
    Pasv,
    Epsv,
    Active,
    Auth,
    /// `REIN` (RFC 959 §4.1.1) or `QUIT`: the session's transfers end.
    Reset,
    Other,
}

/// Commands that may be pipelined before their replies arrive; beyond this
/// the oldest is forgotten (a client that pipelines more is not expected).
const MAX_OUTSTANDING: usize = 16;

/// Protocol state of one control session.
#[derive(Clone, Debug)]
pub struct ControlSession {
    phase: Phase,
    outstanding: VecDeque<Outstanding>,
    /// Code of a multi-line reply in progress (`ddd-` seen, `ddd ` not yet).
    multiline: Option<u16>,
}

impl ControlSession {
    /// A session seen from its first segment.
    pub fn new() -> Self {
        Self::with_phase(Phase::AwaitGreeting)
    }

    /// A session on an implicit-TLS port: encrypted from its first byte,
    /// as if `AUTH TLS` had been answered `234`; nothing is parsed unless
    /// `CCC` brings it back to cleartext.
    pub fn implicit_tls() -> Self {
        Self::with_phase(Phase::Tls)
    }

    /// A session picked up after its start (e.g. after a daemon restart).
    pub fn resync() -> Self {
        Self::with_phase(Phase::Resync)
    }

    /// A session taken over from an earlier instance's stored state (see
    /// `durable`): it was greeted before, so announcements are honoured
    /// from its next line on; one that had left cleartext (`parsed`
    /// false: TLS, whose record framing is not stored) is never parsed.
    pub fn adopted(parsed: bool) -> Self {
        Self::with_phase(if parsed { Phase::Ready } else { Phase::NotFtp })
    }

    fn with_phase(phase: Phase) -> Self {
        ControlSession {
            phase,
            outstanding: VecDeque::new(),
            multiline: None,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// True when lines of this session are still parsed.
    pub fn is_parsing(&self) -> bool {
        !matches!(self.phase, Phase::Tls | Phase::NotFtp)
    }

    /// After `CCC` (RFC 4217 §6) both directions are cleartext again:
    /// parse again, pairing replies from the next command on (the commands
    /// sent under TLS were not seen).
    pub fn resume_cleartext(&mut self) {
        if self.phase == Phase::Tls {
            self.phase = Phase::Ready;
            self.outstanding.clear();
            self.multiline = None;
        }
    }

    /// Handles one complete line from the client.
    pub fn on_client_line(&mut self, line: &[u8]) -> Option<Event> {
        if let Some(event) = self.refuse_nul(line) {
            return Some(event);
        }
        match self.phase {
            Phase::AwaitGreeting => {
                // An FTP client waits for the greeting (RFC 959 §5.4); a
                // client that talks first is something else, such as an
                // HTTP request aimed at port 21 (NAT Slipstreaming).
                self.phase = Phase::NotFtp;
                return Some(Event::Ignored(Reason::ClientSpokeFirst));
            }
            Phase::Tls | Phase::NotFtp => return None,
            Phase::Resync | Phase::Ready => {}
        }
        let parsed = parse_client_line(line);
        let (kind, event) = match parsed {
            ClientLine::Port(hp) => (Outstanding::Active, Some(Event::Announce(Form::Port, hp))),
            ClientLine::Eprt(hp) => (Outstanding::Active, Some(Event::Announce(Form::Eprt, hp))),
            ClientLine::BadAnnouncement => (
                Outstanding::Other,
                Some(Event::Ignored(Reason::MalformedAnnouncement)),
            ),
            ClientLine::Pasv => (Outstanding::Pasv, None),
            ClientLine::Epsv => (Outstanding::Epsv, None),
            ClientLine::Auth => (Outstanding::Auth, None),
            ClientLine::Reset => (Outstanding::Reset, None),
            ClientLine::Other => (Outstanding::Other, None),
        };
        if self.outstanding.len() == MAX_OUTSTANDING {
            self.outstanding.pop_front();
        }
        self.outstanding.push_back(kind);
        if self.phase == Phase::Resync {
            // Until a reply synchronises us we cannot pair replies, and an
            // announcement might answer a command we never saw.
            return event.map(|_| Event::Ignored(Reason::NotSynchronised));
        }
        event
    }

    /// Handles one complete line from the server.
    pub fn on_server_line(&mut self, line: &[u8]) -> Option<Event> {
        if !self.is_parsing() {
            return None;
        }
        if let Some(event) = self.refuse_nul(line) {
            return Some(event);
        }
        let reply = parse_reply_line(line);
        if let Some(code) = self.multiline {
            // Inside a multi-line reply only `code SP` ends it (RFC 959 §4.2).
            if reply.is_some_and(|r| r.code == code && r.last) {
                self.multiline = None;
                return self.final_reply(code, line);
            }
            return None;
        }
        let Some(reply) = reply else {
            if matches!(self.phase, Phase::AwaitGreeting) {
                self.phase = Phase::NotFtp;
                return Some(Event::Ignored(Reason::BadGreeting));
            }
            return None;
        };
        if !reply.last {
            self.multiline = Some(reply.code);
            return None;
        }
        self.final_reply(reply.code, line)
    }

    /// A client line over the length limit, of which only `head` (its
    /// first bytes) was kept. It is still a command that gets a reply, so
    /// it is counted for pairing (and an `AUTH` still turns the session to
    /// TLS), but nothing it says is honoured: it announces nothing.
    pub fn on_client_overlong(&mut self, head: &[u8]) -> Option<Event> {
        unparsed(self.on_client_line(head))
    }

    /// A server line over the length limit, of which only `head` was kept:
    /// it may end a reply (paired as usual), but announces nothing.
    pub fn on_server_overlong(&mut self, head: &[u8]) -> Option<Event> {
        unparsed(self.on_server_line(head))
    }

    /// A NUL byte has no place in a control line (RFC 959 §4: Telnet
    /// NVT ASCII text); a peer that sends one is not parsed any more.
    fn refuse_nul(&mut self, line: &[u8]) -> Option<Event> {
        if !self.is_parsing() || !line.contains(&0) {
            return None;
        }
        self.phase = Phase::NotFtp;
        Some(Event::Ignored(Reason::NulByte))
    }

    fn final_reply(&mut self, code: u16, line: &[u8]) -> Option<Event> {
        match self.phase {
            Phase::AwaitGreeting => {
                // 120 "ready in nnn minutes" precedes the 220 (RFC 959 §4.2).
                match code {
                    220 => self.phase = Phase::Ready,
                    120 => {}
                    _ => self.phase = Phase::NotFtp,
                }
                return None;
            }
            Phase::Resync => {
                // The reply cannot be paired with a command we are sure of:
                // start pairing from the next command on.
                self.phase = Phase::Ready;
                self.outstanding.clear();
                return None;
            }
            Phase::Ready => {}
            Phase::Tls | Phase::NotFtp => return None,
        }
        if (100..200).contains(&code) {
            return None; // preliminary: the command is still outstanding
        }
        let command = self.outstanding.pop_front();
        match (command, code) {
            (Some(Outstanding::Pasv), 227) => Some(match parse_227(line) {
                Some(hp) => Event::Announce(Form::Pasv227, hp),
                None => Event::Ignored(Reason::MalformedReply),
            }),
            (Some(Outstanding::Epsv), 229) => Some(match parse_229(line) {
                Some(hp) => Event::Announce(Form::Epsv229, hp),
                None => Event::Ignored(Reason::MalformedReply),
            }),
            (_, 227 | 229) => Some(Event::Ignored(Reason::UnsolicitedReply)),
            (Some(Outstanding::Active), 400..=599) => Some(Event::ActiveRefused),
            // 220 answers REIN (RFC 959 §5.4), 221 answers QUIT.
            (Some(Outstanding::Reset), 220 | 221) => Some(Event::Reset),
            (Some(Outstanding::Auth), 234) => {
                self.phase = Phase::Tls;
                Some(Event::TlsStarted)
            }
            _ => None,
        }
    }
}

/// What a line over the length limit means: its effect on the session,
/// but never an announcement, nor a refusal of one (its text is not known).
fn unparsed(event: Option<Event>) -> Option<Event> {
    match event {
        None
        | Some(Event::Announce(..))
        | Some(Event::Ignored(Reason::MalformedAnnouncement | Reason::MalformedReply)) => {
            Some(Event::Ignored(Reason::OverlongLine))
        }
        other => other,
    }
}

impl Default for ControlSession {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> ControlSession {
        let mut s = ControlSession::new();
        assert_eq!(s.on_server_line(b"220 hi\r\n"), None);
        assert_eq!(s.phase(), Phase::Ready);
        s
    }

    #[test]
    fn pasv_227_pairs() {
        let mut s = ready();
        assert_eq!(s.on_client_line(b"PASV\r\n"), None);
        match s.on_server_line(b"227 Entering Passive Mode (192,0,2,10,4,1)\r\n") {
            Some(Event::Announce(Form::Pasv227, hp)) => assert_eq!(hp.port, 1025),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unsolicited_227_opens_nothing() {
        let mut s = ready();
        assert!(matches!(
            s.on_server_line(b"227 Entering Passive Mode (192,0,2,10,4,1)\r\n"),
            Some(Event::Ignored(_))
        ));
        // EPSV answered with 227 is not accepted either.
        s.on_client_line(b"EPSV\r\n");
        assert!(matches!(
            s.on_server_line(b"227 (192,0,2,10,4,1)\r\n"),
            Some(Event::Ignored(_))
        ));
    }

    #[test]
    fn pipelined_commands_pair_in_order() {
        let mut s = ready();
        s.on_client_line(b"NOOP\r\n");
        s.on_client_line(b"EPSV\r\n");
        assert_eq!(s.on_server_line(b"200 ok\r\n"), None);
        assert_eq!(s.on_server_line(b"150 preliminary\r\n"), None);
        assert!(matches!(
            s.on_server_line(b"229 Entering Extended Passive Mode (|||6446|)\r\n"),
            Some(Event::Announce(Form::Epsv229, _))
        ));
    }

    #[test]
    fn multiline_227_uses_final_line() {
        let mut s = ready();
        s.on_client_line(b"PASV\r\n");
        assert_eq!(s.on_server_line(b"227-Entering Passive Mode\r\n"), None);
        assert_eq!(s.on_server_line(b" (1,2,3,4,5,6) is not it\r\n"), None);
        assert!(matches!(
            s.on_server_line(b"227 Entering Passive Mode (192,0,2,10,4,1)\r\n"),
            Some(Event::Announce(Form::Pasv227, _))
        ));
    }

    #[test]
    fn client_speaking_first_is_not_ftp() {
        let mut s = ControlSession::new();
        assert!(matches!(
            s.on_client_line(b"GET / HTTP/1.1\r\n"),
            Some(Event::Ignored(_))
        ));
        s.on_server_line(b"220 hi\r\n");
        assert_eq!(s.on_client_line(b"PORT 1,2,3,4,5,6\r\n"), None);
        assert_eq!(s.phase(), Phase::NotFtp);
    }

    #[test]
    fn nul_stops_parsing() {
        let mut s = ready();
        assert!(matches!(
            s.on_client_line(b"NO\0OP\r\n"),
            Some(Event::Ignored(_))
        ));
        assert_eq!(s.on_client_line(b"PORT 1,2,3,4,5,6\r\n"), None);
        assert_eq!(s.phase(), Phase::NotFtp);
    }

    #[test]
    fn rein_and_quit_reset() {
        let mut s = ready();
        s.on_client_line(b"REIN\r\n");
        assert_eq!(s.on_server_line(b"220 again\r\n"), Some(Event::Reset));
        s.on_client_line(b"QUIT\r\n");
        assert_eq!(s.on_server_line(b"221 bye\r\n"), Some(Event::Reset));
        // still FTP: a PASV after REIN is honoured
        s.on_client_line(b"PASV\r\n");
        assert!(matches!(
            s.on_server_line(b"227 (192,0,2,10,4,1)\r\n"),
            Some(Event::Announce(Form::Pasv227, _))
        ));
    }

    #[test]
    fn overlong_lines_pair_but_never_announce() {
        let mut s = ready();
        let over = Some(Event::Ignored(Reason::OverlongLine));
        // A long CWD, then PASV: the CWD's reply pairs with the CWD.
        assert_eq!(s.on_client_overlong(b"CWD /aaaaaaaa"), over);
        s.on_client_line(b"PASV\r\n");
        assert_eq!(s.on_server_line(b"250 ok\r\n"), None);
        assert!(matches!(
            s.on_server_line(b"227 (192,0,2,10,4,1)\r\n"),
            Some(Event::Announce(Form::Pasv227, _))
        ));
        // An overlong 227 answers its PASV but opens nothing.
        s.on_client_line(b"PASV\r\n");
        assert_eq!(s.on_server_overlong(b"227 (192,0,2,10,4,1) xxxx"), over);
        assert_eq!(s.on_client_overlong(b"PORT 1,2,3,4,5,6 xxxx"), over);
        assert_eq!(s.on_server_line(b"200 ok\r\n"), None);
        // An overlong AUTH still turns the session to TLS.
        s.on_client_overlong(b"AUTH TLS xxxxxxxx");
        assert_eq!(s.on_server_line(b"234 go\r\n"), Some(Event::TlsStarted));
    }

    #[test]
    fn port_refused_and_tls() {
        let mut s = ready();
        assert!(matches!(
            s.on_client_line(b"PORT 1,2,3,4,5,6\r\n"),
            Some(Event::Announce(Form::Port, _))
        ));
        assert_eq!(s.on_server_line(b"500 no\r\n"), Some(Event::ActiveRefused));
        s.on_client_line(b"AUTH TLS\r\n");
        assert_eq!(s.on_server_line(b"234 go\r\n"), Some(Event::TlsStarted));
        assert_eq!(s.on_client_line(b"PORT 1,2,3,4,5,6\r\n"), None);
    }
}
