//! Parsing of the control lines that announce data connections.
//!
//! Only the forms that carry an address or a port are parsed in depth:
//! `PORT` (RFC 959 §4.1.2), `EPRT` (RFC 2428 §2), the `227` reply to `PASV`
//! (RFC 959 §4.2, scanned as RFC 1123 §4.1.2.6 recommends) and the `229`
//! reply to `EPSV` (RFC 2428 §3). Every other line is classified only as far
//! as the session state machine needs. Parsing is strict: a value out of
//! range makes the whole line "not an announcement" (the kernel helper
//! wraps such numbers instead).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

/// A line from the client, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientLine {
    /// `PORT h1,h2,h3,h4,p1,p2`: active mode, IPv4.
    Port(HostPort),
    /// `EPRT |af|addr|port|`: active mode, IPv4 or IPv6.
    Eprt(HostPort),
    /// `PASV`: the server is asked for a 227 reply.
    Pasv,
    /// `EPSV` (any argument): the server is asked for a 229 reply.
    Epsv,
    /// `PORT`/`EPRT` whose argument does not parse: never opens anything.
    BadAnnouncement,
    /// `AUTH` (RFC 2228): a `234` answer turns the session to TLS.
    Auth,
    /// `REIN` or `QUIT`: once accepted, the session's transfers end.
    Reset,
    /// Any other command.
    Other,
}

/// A reply line from the server, classified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyLine {
    /// The three-digit reply code.
    pub code: u16,
    /// True for the last line of a reply (`ddd SP`), false for `ddd-`.
    pub last: bool,
}

/// An address and port found in a line, with the byte range that holds
/// them so that a rewrite replaces exactly that text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    /// The announced address (`None` for a 229 reply, which has none).
    pub addr: Option<IpAddr>,
    /// The announced port.
    pub port: u16,
    /// Byte range of the address-and-port text within the line.
    pub span: Range<usize>,
    /// For EPRT/229: the delimiter character used, to keep it on rewrite.
    pub delimiter: Option<u8>,
}

/// Strips the line ending (CRLF or a bare LF, RFC 1123 §4.1.1.4 asks to
/// accept both) and trailing spaces.
fn trim_end(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r' | b' ') {
        end -= 1;
    }
    &line[..end]
}

/// Classifies one complete client line (including its line ending).
pub fn parse_client_line(line: &[u8]) -> ClientLine {
    let body = trim_end(line);
    let verb_end = body.iter().position(|&b| b == b' ').unwrap_or(body.len());
    let verb = &body[..verb_end];
    // RFC 959 §5.3: command verbs are case-insensitive.
    if verb.eq_ignore_ascii_case(b"PORT") {
        return parse_port_arg(body, verb_end + 1)
            .map(ClientLine::Port)
            .unwrap_or(ClientLine::BadAnnouncement);
    }
    if verb.eq_ignore_ascii_case(b"EPRT") {
        return parse_eprt_arg(body, verb_end + 1)
            .map(ClientLine::Eprt)
            .unwrap_or(ClientLine::BadAnnouncement);
    }
    if verb.eq_ignore_ascii_case(b"PASV") && verb_end == body.len() {
        return ClientLine::Pasv;
    }
    if verb.eq_ignore_ascii_case(b"EPSV") {
        return ClientLine::Epsv;
    }
    if verb.eq_ignore_ascii_case(b"AUTH") {
        return ClientLine::Auth;
    }
    if verb.eq_ignore_ascii_case(b"REIN") || verb.eq_ignore_ascii_case(b"QUIT") {
        return ClientLine::Reset;
    }
    ClientLine::Other
}

/// Parses the reply code of a server line: `ddd SP` or `ddd-` (RFC 959 §4.2).
/// A line of a multi-line reply that does not start with a code returns None.
pub fn parse_reply_line(line: &[u8]) -> Option<ReplyLine> {
    let body = trim_end(line);
    if body.len() < 3 || !body[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code =
        (body[0] - b'0') as u16 * 100 + (body[1] - b'0') as u16 * 10 + (body[2] - b'0') as u16;
    match body.get(3) {
        None | Some(b' ') => Some(ReplyLine { code, last: true }),
        Some(b'-') => Some(ReplyLine { code, last: false }),
        Some(_) => None,
    }
}

/// Parses a decimal number of at most `max_digits` digits no larger than `max`.
fn number(text: &[u8], max_digits: usize, max: u32) -> Option<u32> {
    if text.is_empty() || text.len() > max_digits || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = text
        .iter()
        .fold(0u32, |acc, d| acc * 10 + (d - b'0') as u32);
    (v <= max).then_some(v)
}

/// Parses `h1,h2,h3,h4,p1,p2` exactly filling `text`.
fn six_numbers(text: &[u8]) -> Option<(Ipv4Addr, u16)> {
    let mut parts = text.split(|&b| b == b',');
    let mut n = [0u8; 6];
    for slot in &mut n {
        // Leading zeros are allowed ("010"), so allow a few digits, but
        // the value must fit a byte: 256 is refused, not wrapped.
        *slot = number(parts.next()?, 3, 255)? as u8;
    }
    if parts.next().is_some() {
        return None;
    }
    let port = u16::from_be_bytes([n[4], n[5]]);
    Some((Ipv4Addr::new(n[0], n[1], n[2], n[3]), port))
}

fn parse_port_arg(body: &[u8], start: usize) -> Option<HostPort> {
    let arg = body.get(start..)?;
    // Tolerate extra spaces between verb and argument.
    let skip = arg.iter().take_while(|&&b| b == b' ').count();
    six_numbers_at(body, start + skip..body.len())
}

/// The `h1,h2,h3,h4,p1,p2` of `PORT` and `227` (RFC 959 §4.1.2) at `span`
/// of `body`, with the span kept for the rewrite.
fn six_numbers_at(body: &[u8], span: std::ops::Range<usize>) -> Option<HostPort> {
    let (addr, port) = six_numbers(body.get(span.clone())?)?;
    Some(HostPort {
        addr: Some(IpAddr::V4(addr)),
        port,
        span,
        delimiter: None,
    })
}

/// RFC 2428 §2: the delimiter is any character in ASCII 33..=126.
fn is_delimiter(b: u8) -> bool {
    (33..=126).contains(&b)
}

fn parse_eprt_arg(body: &[u8], start: usize) -> Option<HostPort> {
    let arg = body.get(start..)?;
    let d = *arg.first()?;
    if !is_delimiter(d) || arg.len() < 2 || arg[arg.len() - 1] != d {
        return None;
    }
    let fields: Vec<&[u8]> = arg[1..arg.len() - 1].split(|&b| b == d).collect();
    let [af, addr, port] = fields.as_slice() else {
        return None;
    };
    let addr_text = std::str::from_utf8(addr).ok()?;
    let addr = match *af {
        b"1" => IpAddr::V4(addr_text.parse::<Ipv4Addr>().ok()?),
        b"2" => IpAddr::V6(addr_text.parse::<Ipv6Addr>().ok()?),
        _ => return None,
    };
    let port = number(port, 5, 65535)? as u16;
    // The span covers "addr<d>port" so the family and delimiters stay.
    let span_start = start + 1 + af.len() + 1;
    let span_end = body.len() - 1;
    Some(HostPort {
        addr: Some(addr),
        port,
        span: span_start..span_end,
        delimiter: Some(d),
    })
}

/// Finds the address and port of a `227` line. RFC 1123 §4.1.2.6: the
/// text around the numbers is not standardised, so scan for the first
/// digit after the code and take the six comma-separated numbers there.
pub fn parse_227(line: &[u8]) -> Option<HostPort> {
    let body = trim_end(line);
    let text = body.get(4..)?;
    let first = text.iter().position(u8::is_ascii_digit)? + 4;
    let len = body[first..]
        .iter()
        .take_while(|&&b| b.is_ascii_digit() || b == b',')
        .count();
    six_numbers_at(body, first..first + len)
}

/// Finds the port of a `229` line: `(<d><d><d>port<d>)` (RFC 2428 §3).
pub fn parse_229(line: &[u8]) -> Option<HostPort> {
    let body = trim_end(line);
    let open = body.iter().position(|&b| b == b'(')?;
    let close = open + body[open..].iter().position(|&b| b == b')')?;
    let inner = &body[open + 1..close];
    if inner.len() < 5 {
        return None;
    }
    let d = inner[0];
    if !is_delimiter(d) || inner[1] != d || inner[2] != d || inner[inner.len() - 1] != d {
        return None;
    }
    let digits = &inner[3..inner.len() - 1];
    let port = number(digits, 5, 65535)? as u16;
    let start = open + 4;
    Some(HostPort {
        addr: None,
        port,
        span: start..start + digits.len(),
        delimiter: Some(d),
    })
}

/// Formats an address and port in the style of the line it replaces:
/// `h1,h2,h3,h4,p1,p2` for PORT/227, `addr<d>port` for EPRT.
pub fn format_host_port(addr: IpAddr, port: u16, delimiter: Option<u8>) -> Vec<u8> {
    match (delimiter, addr) {
        (None, IpAddr::V4(a)) => {
            let o = a.octets();
            let [p1, p2] = port.to_be_bytes();
            format!("{},{},{},{},{},{}", o[0], o[1], o[2], o[3], p1, p2).into_bytes()
        }
        (Some(d), addr) => {
            let mut v = addr.to_string().into_bytes();
            v.push(d);
            v.extend_from_slice(port.to_string().as_bytes());
            v
        }
        (None, IpAddr::V6(_)) => unreachable!("PORT and 227 carry IPv4 only"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn port_forms() {
        let l = b"PORT 198,51,100,2,195,80\r\n";
        let ClientLine::Port(hp) = parse_client_line(l) else {
            panic!()
        };
        assert_eq!(hp.addr, v4("198.51.100.2"));
        assert_eq!(hp.port, 195 * 256 + 80);
        assert_eq!(&l[hp.span.clone()], b"198,51,100,2,195,80");
        // lower case, bare LF, trailing spaces, leading zeros
        let ClientLine::Port(hp) = parse_client_line(b"port 010,000,002,001,004,001  \n") else {
            panic!()
        };
        assert_eq!(hp.addr, v4("10.0.2.1"));
        assert_eq!(hp.port, 1025);
    }

    #[test]
    fn port_out_of_range_is_refused_not_wrapped() {
        for l in [
            &b"PORT 256,0,2,1,4,1\r\n"[..],
            b"PORT 1,2,3,4,5\r\n",
            b"PORT 1,2,3,4,5,6,7\r\n",
            b"PORT 1,2,3,4,5,1000\r\n",
            b"PORT 1,2,3,4,5,-6\r\n",
            b"PORT\r\n",
        ] {
            assert_eq!(parse_client_line(l), ClientLine::BadAnnouncement, "{l:?}");
        }
    }

    #[test]
    fn eprt_forms() {
        let l = b"EPRT |1|198.51.100.2|6000|\r\n";
        let ClientLine::Eprt(hp) = parse_client_line(l) else {
            panic!()
        };
        assert_eq!((hp.addr, hp.port), (v4("198.51.100.2"), 6000));
        assert_eq!(&l[hp.span.clone()], b"198.51.100.2|6000");
        let l = b"eprt !2!2001:db8:1::2!6001!\n";
        let ClientLine::Eprt(hp) = parse_client_line(l) else {
            panic!()
        };
        assert_eq!(hp.addr, Some("2001:db8:1::2".parse().unwrap()));
        assert_eq!(hp.delimiter, Some(b'!'));
        assert_eq!(&l[hp.span.clone()], b"2001:db8:1::2!6001");
        for bad in [
            &b"EPRT |3|1.2.3.4|5|\r\n"[..],
            b"EPRT |1|1.2.3.4|70000|\r\n",
            b"EPRT |1|::1|5|\r\n",
            b"EPRT |1|1.2.3.4|5\r\n",
        ] {
            assert_eq!(parse_client_line(bad), ClientLine::BadAnnouncement);
        }
    }

    #[test]
    fn passive_requests() {
        assert_eq!(parse_client_line(b"PASV\r\n"), ClientLine::Pasv);
        assert_eq!(parse_client_line(b"epsv\n"), ClientLine::Epsv);
        assert_eq!(parse_client_line(b"EPSV 2\r\n"), ClientLine::Epsv);
        assert_eq!(parse_client_line(b"PASVX\r\n"), ClientLine::Other);
        assert_eq!(parse_client_line(b"RETR f\r\n"), ClientLine::Other);
        assert_eq!(parse_client_line(b"auth TLS\r\n"), ClientLine::Auth);
        assert_eq!(parse_client_line(b"AUTHX\r\n"), ClientLine::Other);
        assert_eq!(parse_client_line(b"QUIT\r\n"), ClientLine::Reset);
    }

    #[test]
    fn reply_codes() {
        assert_eq!(
            parse_reply_line(b"227 Entering\r\n"),
            Some(ReplyLine {
                code: 227,
                last: true
            })
        );
        assert_eq!(
            parse_reply_line(b"230-Welcome\r\n"),
            Some(ReplyLine {
                code: 230,
                last: false
            })
        );
        assert_eq!(
            parse_reply_line(b"220\r\n"),
            Some(ReplyLine {
                code: 220,
                last: true
            })
        );
        assert_eq!(parse_reply_line(b" hello\r\n"), None);
        assert_eq!(parse_reply_line(b"22x\r\n"), None);
    }

    #[test]
    fn reply_227_scans_for_digits() {
        let l = b"227 Entering Passive Mode (192,0,2,10,39,16).\r\n";
        let hp = parse_227(l).unwrap();
        assert_eq!((hp.addr, hp.port), (v4("192.0.2.10"), 39 * 256 + 16));
        assert_eq!(&l[hp.span.clone()], b"192,0,2,10,39,16");
        // No parentheses at all (RFC 1123 §4.1.2.6).
        let hp = parse_227(b"227 =192,0,2,10,0,21\n").unwrap();
        assert_eq!(hp.port, 21);
        assert!(parse_227(b"227 Entering Passive Mode (300,0,2,10,39,16)\r\n").is_none());
    }

    #[test]
    fn reply_229() {
        let l = b"229 Entering Extended Passive Mode (|||6446|)\r\n";
        let hp = parse_229(l).unwrap();
        assert_eq!((hp.addr, hp.port), (None, 6446));
        assert_eq!(&l[hp.span.clone()], b"6446");
        assert_eq!(parse_229(b"229 x (!!!10!)\r\n").unwrap().port, 10);
        assert!(parse_229(b"229 x (|||70000|)\r\n").is_none());
        assert!(parse_229(b"229 x (||6446|)\r\n").is_none());
    }

    #[test]
    fn formatting_keeps_style() {
        assert_eq!(
            format_host_port(v4("203.0.113.254").unwrap(), 50000, None),
            b"203,0,113,254,195,80"
        );
        assert_eq!(
            format_host_port(v4("203.0.113.1").unwrap(), 6000, Some(b'!')),
            b"203.0.113.1!6000"
        );
    }
}
