//! Arbitrary bytes through every control-line parser.
//!
//! Checks, besides the absence of panics:
//! * every returned span lies within the line, with `start <= end`;
//! * the text in the span is what the parser read: writing
//!   `format_host_port(addr, port, delimiter)` over it (as the engine does
//!   when it rewrites an announcement) and parsing again gives the same
//!   address, port and delimiter, with the span now covering exactly the
//!   formatted text (PORT, EPRT and 227 with IPv4; the port alone for 229).

#![no_main]

use std::net::IpAddr;
use std::ops::Range;

use ftp_alg_proto::ftp::parse::{
    format_host_port, parse_227, parse_229, parse_client_line, parse_reply_line, ClientLine,
    HostPort,
};
use libfuzzer_sys::fuzz_target;

fn check_span(line: &[u8], hp: &HostPort, what: &str) {
    assert!(
        hp.span.start <= hp.span.end && hp.span.end <= line.len(),
        "{what}: span {:?} outside line of {} bytes",
        hp.span,
        line.len()
    );
}

/// `line` with `span` replaced by `text`, and the range `text` now occupies.
fn splice(line: &[u8], span: &Range<usize>, text: &[u8]) -> (Vec<u8>, Range<usize>) {
    let mut out = Vec::with_capacity(line.len() + text.len());
    out.extend_from_slice(&line[..span.start]);
    out.extend_from_slice(text);
    out.extend_from_slice(&line[span.end..]);
    (out, span.start..span.start + text.len())
}

fn assert_same(
    what: &str,
    line: &[u8],
    new_line: &[u8],
    new_span: &Range<usize>,
    a: &HostPort,
    b: Option<&HostPort>,
) {
    let Some(b) = b else {
        panic!(
            "{what}: rewritten line no longer parses\n  line: {:?}\n  new:  {:?}",
            String::from_utf8_lossy(line),
            String::from_utf8_lossy(new_line)
        );
    };
    assert_eq!(
        (a.addr, a.port, a.delimiter),
        (b.addr, b.port, b.delimiter),
        "{what}: round trip changed the announcement\n  line: {:?}\n  new:  {:?}",
        String::from_utf8_lossy(line),
        String::from_utf8_lossy(new_line)
    );
    assert_eq!(
        &b.span,
        new_span,
        "{what}: span after rewrite\n  line: {:?}\n  new:  {:?}",
        String::from_utf8_lossy(line),
        String::from_utf8_lossy(new_line)
    );
}

fuzz_target!(|line: &[u8]| {
    // Client lines: PORT / EPRT carry an address.
    match parse_client_line(line) {
        ClientLine::Port(hp) => {
            check_span(line, &hp, "PORT");
            assert_eq!(hp.delimiter, None, "PORT has no delimiter");
            let Some(IpAddr::V4(_)) = hp.addr else {
                panic!("PORT without an IPv4 address: {hp:?}");
            };
            let text = format_host_port(hp.addr.unwrap(), hp.port, None);
            let (new_line, new_span) = splice(line, &hp.span, &text);
            let again = match parse_client_line(&new_line) {
                ClientLine::Port(hp2) => Some(hp2),
                _ => None,
            };
            assert_same("PORT", line, &new_line, &new_span, &hp, again.as_ref());
        }
        ClientLine::Eprt(hp) => {
            check_span(line, &hp, "EPRT");
            assert!(hp.delimiter.is_some(), "EPRT without a delimiter: {hp:?}");
            let addr = hp.addr.expect("EPRT carries an address");
            if addr.is_ipv4() {
                let text = format_host_port(addr, hp.port, hp.delimiter);
                let (new_line, new_span) = splice(line, &hp.span, &text);
                let again = match parse_client_line(&new_line) {
                    ClientLine::Eprt(hp2) => Some(hp2),
                    _ => None,
                };
                assert_same("EPRT", line, &new_line, &new_span, &hp, again.as_ref());
            }
        }
        _ => {}
    }

    // Reply code.
    if let Some(reply) = parse_reply_line(line) {
        assert!(reply.code <= 999, "reply code {} out of range", reply.code);
        assert!(line.len() >= 3 && line[..3].iter().all(u8::is_ascii_digit));
    }

    // 227: IPv4 address and port.
    if let Some(hp) = parse_227(line) {
        check_span(line, &hp, "227");
        assert_eq!(hp.delimiter, None, "227 has no delimiter");
        let Some(addr @ IpAddr::V4(_)) = hp.addr else {
            panic!("227 without an IPv4 address: {hp:?}");
        };
        let text = format_host_port(addr, hp.port, None);
        let (new_line, new_span) = splice(line, &hp.span, &text);
        let again = parse_227(&new_line);
        assert_same("227", line, &new_line, &new_span, &hp, again.as_ref());
    }

    // 229: a port only.
    if let Some(hp) = parse_229(line) {
        check_span(line, &hp, "229");
        assert_eq!(hp.addr, None, "229 carries no address");
        assert!(hp.delimiter.is_some(), "229 without a delimiter");
        let text = hp.port.to_string().into_bytes();
        let (new_line, new_span) = splice(line, &hp.span, &text);
        let again = parse_229(&new_line);
        assert_same("229", line, &new_line, &new_span, &hp, again.as_ref());
    }
});
