//! The request head of the metrics endpoint: read within a time and size
//! limit, then its request line parsed (RFC 9112 section 3); the headers
//! are ignored.

use std::io::{self, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Longest request head (request line and headers) the endpoint reads.
pub const MAX_HEAD: usize = 8 * 1024;

/// Time a client has to send its whole request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// What the request head asked for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Request {
    /// `GET /metrics`, or `HEAD /metrics` when `body` is false.
    Metrics {
        body: bool,
    },
    NotFound,
    BadMethod,
    Malformed,
    TooLarge,
}

/// Reads the request head: up to the empty line, [`MAX_HEAD`] bytes and
/// [`READ_TIMEOUT`] in all. `Ok(None)` when the client sent nothing.
pub(super) fn read_head(stream: &mut TcpStream) -> io::Result<Option<Request>> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = head_end(&head) {
            return Ok(Some(parse(&head[..end])));
        }
        if head.len() >= MAX_HEAD {
            return Ok(Some(Request::TooLarge));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        let want = (MAX_HEAD - head.len()).min(buf.len());
        match stream.read(&mut buf[..want]) {
            Ok(0) if head.is_empty() => return Ok(None),
            // The client half-closed before the empty line: take the
            // request line if it is complete (`printf 'GET /metrics
            // HTTP/1.0\r\n' | nc` works).
            Ok(0) => {
                return Ok(Some(match head.iter().position(|&b| b == b'\n') {
                    Some(i) => parse(&head[..=i]),
                    None => Request::Malformed,
                }));
            }
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// End of the head (after the empty line), with bare LF tolerated.
fn head_end(head: &[u8]) -> Option<usize> {
    let crlf = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = head.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Parses the request line of a complete head.
fn parse(head: &[u8]) -> Request {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = &head[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(line) = std::str::from_utf8(line) else {
        return Request::Malformed;
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Malformed;
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    if !token(method)
        || !target.starts_with('/')
        || target.bytes().any(|b| b.is_ascii_control())
        || !matches!(version, "HTTP/1.0" | "HTTP/1.1")
    {
        return Request::Malformed;
    }
    let body = match method {
        "GET" => true,
        "HEAD" => false,
        _ => return Request::BadMethod,
    };
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if path == "/metrics" {
        Request::Metrics { body }
    } else {
        Request::NotFound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_requests() {
        let p = |s: &str| parse(s.as_bytes());
        assert_eq!(
            p("GET /metrics HTTP/1.1\r\n\r\n"),
            Request::Metrics { body: true }
        );
        assert_eq!(
            p("GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Request::Metrics { body: true }
        );
        assert_eq!(
            p("HEAD /metrics HTTP/1.1\r\n\r\n"),
            Request::Metrics { body: false }
        );
        assert_eq!(p("GET / HTTP/1.1\r\n\r\n"), Request::NotFound);
        assert_eq!(p("POST /metrics HTTP/1.1\r\n\r\n"), Request::BadMethod);
        assert_eq!(p("GET /metrics\r\n\r\n"), Request::Malformed);
        assert_eq!(p("GET  /metrics HTTP/1.1\r\n\r\n"), Request::Malformed);
        assert_eq!(p("GET /metrics HTTP/2\r\n\r\n"), Request::Malformed);
        assert_eq!(p("G(T /metrics HTTP/1.1\r\n\r\n"), Request::Malformed);
        assert_eq!(p("GET metrics HTTP/1.1\r\n\r\n"), Request::Malformed);
        assert_eq!(parse(b"GET /\xff HTTP/1.1\r\n\r\n"), Request::Malformed);
    }
}
