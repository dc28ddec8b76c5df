//! Prometheus metrics: the latest [`Published`] snapshot in the text
//! exposition format 0.0.4, served over plain HTTP by a tiny single-threaded
//! endpoint (off by default; the daemon starts it only when configured).
//!
//! The endpoint answers `GET /metrics` (and `HEAD /metrics`), one connection
//! at a time, then closes the connection. It reads at most
//! [`MAX_HEAD`] bytes of request head within [`READ_TIMEOUT`], ignores the
//! headers, and never panics on what a client sends.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ftp_alg_proto::ftp::session::Form;

use crate::telemetry::{labels, Histogram, Published, Shared};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Longest request head (request line and headers) the endpoint reads.
pub const MAX_HEAD: usize = 8 * 1024;

/// Time a client has to send its whole request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Time a client has to take the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Renders `p` in the Prometheus text exposition format 0.0.4.
pub fn render(p: &Published) -> String {
    let e = &p.engine;
    let s = &p.shell;
    let mut out = String::with_capacity(4096);

    build_info(&mut out);
    counter(
        &mut out,
        "sessions_opened_total",
        "FTP control sessions started.",
        e.sessions_opened,
    );
    counter(
        &mut out,
        "sessions_closed_total",
        "FTP control sessions forgotten (closed, idle or unanswered).",
        e.sessions_closed,
    );

    // Every form and reason is exported from the start (0 until seen), so
    // that the series exist before the first event.
    let forms: Vec<(&str, u64)> = Form::ALL
        .iter()
        .map(|&f| (labels::form(f), e.announcements.get(f)))
        .collect();
    labelled(
        &mut out,
        "announcements_total",
        "Data connection announcements accepted, by form.",
        "form",
        &forms,
    );

    counter(
        &mut out,
        "rewrites_total",
        "Announcements whose text was rewritten.",
        e.rewrites,
    );
    labelled(
        &mut out,
        "pinholes_total",
        "Pinholes by outcome: opened, closed by ftp-alg, or expired.",
        "outcome",
        &[
            ("opened", e.pinholes_opened),
            ("closed", e.pinholes_closed),
            ("expired", e.pinholes_expired),
        ],
    );
    counter(
        &mut out,
        "pinhole_errors_total",
        "Pinhole installs or removals that failed.",
        s.pinhole_errors,
    );
    labelled(
        &mut out,
        "rule_repairs_total",
        "Pieces of ftp-alg's rules put back after a firewall reload removed them.",
        "what",
        &s.rule_repairs.by_kind(),
    );
    let refusals: Vec<(&str, u64)> = e
        .refusals
        .iter()
        .map(|(r, n)| (labels::reason(r), n))
        .collect();
    labelled(
        &mut out,
        "refusals_total",
        "Announcements that opened nothing, by reason.",
        "reason",
        &refusals,
    );
    counter(
        &mut out,
        "tls_sessions_total",
        "Control sessions that switched to TLS.",
        e.tls_sessions,
    );
    counter(
        &mut out,
        "segments_held_total",
        "Control segments dropped on purpose (out of order or held back).",
        e.segments_held,
    );
    counter(
        &mut out,
        "packets_total",
        "Packets received from the queue.",
        s.packets,
    );
    counter(
        &mut out,
        "packets_modified_total",
        "Packets forwarded with a new payload or header.",
        s.packets_modified,
    );
    counter(
        &mut out,
        "verdict_errors_total",
        "Verdicts the kernel did not accept.",
        s.verdict_errors,
    );
    counter(
        &mut out,
        "queue_overruns_total",
        "Times the kernel's queue was full and dropped control packets.",
        s.queue_overruns,
    );

    gauge(
        &mut out,
        "sessions",
        "Live FTP control sessions.",
        p.sessions as u64,
    );
    gauge(&mut out, "pinholes", "Live pinholes.", p.pinholes as u64);

    histogram(
        &mut out,
        "packet_processing_seconds",
        "Time to process one queued packet.",
        &s.processing,
    );
    out
}

/// The labels of `ftp_alg_build_info`: what was built, for which machine.
pub const BUILD_INFO: &[(&str, &str)] = &[
    ("version", env!("CARGO_PKG_VERSION")),
    ("arch", std::env::consts::ARCH),
    ("os", std::env::consts::OS),
    (
        "profile",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    ),
];

/// `ftp_alg_build_info{version="...",...} 1`: the usual info-gauge idiom, so
/// that dashboards can join the running version onto any other series.
fn build_info(out: &mut String) {
    header(
        out,
        "build_info",
        "Always 1; the labels say which build is running.",
        "gauge",
    );
    let labels: Vec<String> = BUILD_INFO
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    let _ = writeln!(out, "ftp_alg_build_info{{{}}} 1", labels.join(","));
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    // Help texts are our own constants: no backslash or newline to escape.
    let _ = writeln!(out, "# HELP ftp_alg_{name} {help}");
    let _ = writeln!(out, "# TYPE ftp_alg_{name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, help, "counter");
    let _ = writeln!(out, "ftp_alg_{name} {value}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, help, "gauge");
    let _ = writeln!(out, "ftp_alg_{name} {value}");
}

fn labelled(out: &mut String, name: &str, help: &str, label: &str, values: &[(&str, u64)]) {
    header(out, name, help, "counter");
    for (v, n) in values {
        let _ = writeln!(out, "ftp_alg_{name}{{{label}=\"{}\"}} {n}", escape(v));
    }
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    header(out, name, help, "histogram");
    let mut cumulative = 0u64;
    for (i, bound) in h.bounds_us.iter().enumerate() {
        cumulative = cumulative.saturating_add(h.counts.get(i).copied().unwrap_or(0));
        let _ = writeln!(
            out,
            "ftp_alg_{name}_bucket{{le=\"{}\"}} {cumulative}",
            decimal(*bound, -6)
        );
    }
    // The +Inf bucket and the count are the same number by definition.
    let total = h.counts.iter().fold(0u64, |a, c| a.saturating_add(*c));
    let _ = writeln!(out, "ftp_alg_{name}_bucket{{le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "ftp_alg_{name}_sum {}", decimal(h.sum_ns, -9));
    let _ = writeln!(out, "ftp_alg_{name}_count {total}");
}

/// Escapes a label value: backslash, double quote and newline.
pub fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Formats `value * 10^scale` exactly, the way Go's `%g` (shortest) does,
/// as the Go client library writes `le` labels: `5e-06`, `0.0001`, `0.025`,
/// `1`, `1e+06`.
fn decimal(value: u64, scale: i32) -> String {
    if value == 0 {
        return "0".to_string();
    }
    let mut m = value;
    let mut k = scale;
    while m % 10 == 0 {
        m /= 10;
        k += 1;
    }
    let digits = m.to_string();
    let nd = digits.len() as i32;
    // Decimal exponent of the first significant digit.
    let exp = nd - 1 + k;
    let mut s = String::new();
    if !(-4..6).contains(&exp) {
        s.push_str(&digits[..1]);
        if nd > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        let _ = write!(s, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else if exp < 0 {
        s.push_str("0.");
        for _ in 0..(-exp - 1) {
            s.push('0');
        }
        s.push_str(&digits);
    } else {
        let int_len = (exp + 1) as usize;
        if digits.len() <= int_len {
            s.push_str(&digits);
            for _ in digits.len()..int_len {
                s.push('0');
            }
        } else {
            s.push_str(&digits[..int_len]);
            s.push('.');
            s.push_str(&digits[int_len..]);
        }
    }
    s
}

/// Binds `addr` and serves `GET /metrics` from `shared` on one background
/// thread (named `ftp-alg-metrics`) for the life of the process.
///
/// Returns the address actually bound (useful with port 0) and the thread's
/// handle. Bind errors (address in use, permission denied) are returned;
/// errors of single connections are only logged at debug level.
pub fn serve(addr: SocketAddr, shared: Shared) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let handle = thread::Builder::new()
        .name("ftp-alg-metrics".into())
        .spawn(move || accept_loop(listener, shared))?;
    Ok((local, handle))
}

fn accept_loop(listener: TcpListener, shared: Shared) {
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = handle(stream, &shared) {
                    tracing::debug!(%peer, error = %e, "metrics request failed");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                // Out of descriptors or similar: do not spin.
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// What the request head asked for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
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
fn read_head(stream: &mut TcpStream) -> io::Result<Option<Request>> {
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

fn handle(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let request = match read_head(&mut stream) {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            respond(
                &mut stream,
                "408 Request Timeout",
                None,
                "request timeout\n",
            )?;
            return linger(stream);
        }
        Err(e) => return Err(e),
    };
    match request {
        Request::Metrics { body } => {
            let text = {
                let p = shared.latest();
                render(&p)
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                text.len()
            );
            stream.write_all(head.as_bytes())?;
            if body {
                stream.write_all(text.as_bytes())?;
            }
            stream.flush()?;
            Ok(())
        }
        Request::NotFound => respond(&mut stream, "404 Not Found", None, "not found\n"),
        Request::BadMethod => respond(
            &mut stream,
            "405 Method Not Allowed",
            Some("Allow: GET, HEAD\r\n"),
            "method not allowed\n",
        ),
        Request::Malformed => {
            respond(&mut stream, "400 Bad Request", None, "bad request\n")?;
            linger(stream)
        }
        Request::TooLarge => {
            respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                None,
                "request head too large\n",
            )?;
            linger(stream)
        }
    }
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    extra: Option<&str>,
    body: &str,
) -> io::Result<()> {
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n{body}",
        body.len(),
        extra.unwrap_or("")
    );
    stream.write_all(msg.as_bytes())?;
    stream.flush()
}

/// After an error response to a client that may still be sending: close our
/// side, then drain a little so that closing does not reset the connection
/// (which could destroy the response before the client reads it).
fn linger(mut stream: TcpStream) -> io::Result<()> {
    stream.shutdown(Shutdown::Write)?;
    let deadline = Instant::now() + Duration::from_millis(200);
    let mut buf = [0u8; 4096];
    let mut drained = 0usize;
    while drained < 64 * 1024 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftp_alg_proto::reason::Reason;

    fn sample() -> Published {
        let mut p = Published::default();
        p.engine.sessions_opened = 7;
        p.engine.sessions_closed = 5;
        for _ in 0..3 {
            p.engine.announcements.add(Form::Pasv227);
        }
        p.engine.announcements.add(Form::Epsv229);
        p.engine.rewrites = 2;
        p.engine.pinholes_opened = 4;
        p.engine.pinholes_closed = 1;
        p.engine.pinholes_expired = 2;
        for _ in 0..6 {
            p.engine.refusals.add(Reason::ThirdPartyAddress);
        }
        p.engine.tls_sessions = 1;
        p.engine.segments_held = 9;
        p.shell.packets = 1000;
        p.shell.packets_modified = 12;
        p.shell.verdict_errors = 0;
        p.shell.pinhole_errors = 3;
        p.shell.rule_repairs.count("table");
        p.shell.rule_repairs.count("accept_rule");
        p.shell.rule_repairs.count("accept_rule");
        // 3 at <=5us, 1 at <=100us, 2 above 25ms.
        p.shell.processing.observe(Duration::from_micros(2));
        p.shell.processing.observe(Duration::from_micros(5));
        p.shell.processing.observe(Duration::from_nanos(4_500));
        p.shell.processing.observe(Duration::from_micros(80));
        p.shell.processing.observe(Duration::from_millis(30));
        p.shell.processing.observe(Duration::from_secs(1));
        p.sessions = 2;
        p.pinholes = 3;
        p
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn counters_and_labels() {
        let text = render(&sample());
        let l = lines(&text);
        for want in [
            "# HELP ftp_alg_sessions_opened_total FTP control sessions started.",
            "# TYPE ftp_alg_sessions_opened_total counter",
            "ftp_alg_sessions_opened_total 7",
            "ftp_alg_sessions_closed_total 5",
            "# TYPE ftp_alg_announcements_total counter",
            "ftp_alg_announcements_total{form=\"port\"} 0",
            "ftp_alg_announcements_total{form=\"eprt\"} 0",
            "ftp_alg_announcements_total{form=\"pasv227\"} 3",
            "ftp_alg_announcements_total{form=\"epsv229\"} 1",
            "ftp_alg_rewrites_total 2",
            "ftp_alg_pinholes_total{outcome=\"opened\"} 4",
            "ftp_alg_pinholes_total{outcome=\"closed\"} 1",
            "ftp_alg_pinholes_total{outcome=\"expired\"} 2",
            "ftp_alg_pinhole_errors_total 3",
            "ftp_alg_rule_repairs_total{what=\"table\"} 1",
            "ftp_alg_rule_repairs_total{what=\"queue_rule\"} 0",
            "ftp_alg_rule_repairs_total{what=\"accept_rule\"} 2",
            "ftp_alg_refusals_total{reason=\"third_party_address\"} 6",
            "ftp_alg_refusals_total{reason=\"nul_byte\"} 0",
            "ftp_alg_tls_sessions_total 1",
            "ftp_alg_segments_held_total 9",
            "ftp_alg_packets_total 1000",
            "ftp_alg_packets_modified_total 12",
            "ftp_alg_verdict_errors_total 0",
        ] {
            assert!(l.contains(&want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn build_info_names_the_version() {
        let text = render(&Published::default());
        let l = lines(&text);
        assert!(l.contains(&"# TYPE ftp_alg_build_info gauge"), "{text}");
        let profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        let want = format!(
            "ftp_alg_build_info{{version=\"{}\",arch=\"{}\",os=\"linux\",profile=\"{profile}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH
        );
        assert!(l.contains(&want.as_str()), "missing {want:?} in\n{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\\b\"c\nd"), r#"a\\b\"c\nd"#);
        assert_eq!(escape("plain-text"), "plain-text");
    }

    #[test]
    fn gauges() {
        let text = render(&sample());
        let l = lines(&text);
        assert!(l.contains(&"# TYPE ftp_alg_sessions gauge"), "{text}");
        assert!(l.contains(&"ftp_alg_sessions 2"), "{text}");
        assert!(l.contains(&"# TYPE ftp_alg_pinholes gauge"), "{text}");
        assert!(l.contains(&"ftp_alg_pinholes 3"), "{text}");
    }

    #[test]
    fn histogram_is_cumulative() {
        let text = render(&sample());
        let hist: Vec<&str> = lines(&text)
            .into_iter()
            .filter(|l| l.contains("packet_processing_seconds"))
            .collect();
        assert_eq!(
            hist,
            [
                "# HELP ftp_alg_packet_processing_seconds Time to process one queued packet.",
                "# TYPE ftp_alg_packet_processing_seconds histogram",
                "ftp_alg_packet_processing_seconds_bucket{le=\"5e-06\"} 3",
                "ftp_alg_packet_processing_seconds_bucket{le=\"1e-05\"} 3",
                "ftp_alg_packet_processing_seconds_bucket{le=\"2.5e-05\"} 3",
                "ftp_alg_packet_processing_seconds_bucket{le=\"5e-05\"} 3",
                "ftp_alg_packet_processing_seconds_bucket{le=\"0.0001\"} 4",
                "ftp_alg_packet_processing_seconds_bucket{le=\"0.00025\"} 4",
                "ftp_alg_packet_processing_seconds_bucket{le=\"0.0005\"} 4",
                "ftp_alg_packet_processing_seconds_bucket{le=\"0.001\"} 4",
                "ftp_alg_packet_processing_seconds_bucket{le=\"0.005\"} 4",
                "ftp_alg_packet_processing_seconds_bucket{le=\"0.025\"} 4",
                "ftp_alg_packet_processing_seconds_bucket{le=\"+Inf\"} 6",
                "ftp_alg_packet_processing_seconds_sum 1.0300915",
                "ftp_alg_packet_processing_seconds_count 6",
            ]
        );
    }

    #[test]
    fn histogram_tolerates_short_counts() {
        let mut p = Published::default();
        p.shell.processing.counts = vec![1];
        let text = render(&p);
        assert!(text.contains("_bucket{le=\"1e-05\"} 1\n"), "{text}");
        assert!(text.contains("_bucket{le=\"+Inf\"} 1\n"), "{text}");
        assert!(text.contains("_sum 0\n"), "{text}");
    }

    #[test]
    fn every_family_is_described_once_and_grouped() {
        let text = render(&sample());
        let mut seen = Vec::new();
        let mut current = String::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(!seen.contains(&name), "{name} twice");
                seen.push(name.clone());
                current = name;
            } else if !l.starts_with('#') {
                assert!(
                    l.starts_with(&current),
                    "{l:?} outside its family {current}"
                );
                let value = l.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "bad value in {l:?}");
            }
        }
        assert_eq!(seen.len(), 18);
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn decimal_like_go() {
        assert_eq!(decimal(0, -6), "0");
        assert_eq!(decimal(5, -6), "5e-06");
        assert_eq!(decimal(100, -6), "0.0001");
        assert_eq!(decimal(1_000_000, -6), "1");
        assert_eq!(decimal(2_500_000, -6), "2.5");
        assert_eq!(decimal(120_000_000, -6), "120");
        assert_eq!(decimal(1_000_000, 0), "1e+06");
        assert_eq!(decimal(123_456_789, -9), "0.123456789");
        assert_eq!(decimal(12_345, -9), "1.2345e-05");
    }

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

    /// Sends `request`, reads the whole response, splits status line,
    /// headers and body.
    fn fetch(addr: SocketAddr, request: &[u8]) -> (String, String, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let (head, body) = resp.split_once("\r\n\r\n").expect("no head end");
        let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        (status.to_string(), headers.to_string(), body.to_string())
    }

    fn get(addr: SocketAddr, path: &str) -> (String, String, String) {
        fetch(
            addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nUser-Agent: test\r\n\r\n").as_bytes(),
        )
    }

    fn start() -> (SocketAddr, Shared) {
        let shared = Shared::new(sample());
        let (addr, _thread) = serve("127.0.0.1:0".parse().unwrap(), shared.clone()).unwrap();
        assert_ne!(addr.port(), 0);
        (addr, shared)
    }

    #[test]
    fn serves_metrics_and_follows_updates() {
        let (addr, shared) = start();
        let (status, headers, body) = get(addr, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        let headers: Vec<&str> = headers.split("\r\n").collect();
        assert!(
            headers.contains(&"Content-Type: text/plain; version=0.0.4"),
            "{headers:?}"
        );
        assert!(headers.contains(&"Connection: close"), "{headers:?}");
        assert!(
            headers.contains(&format!("Content-Length: {}", body.len()).as_str()),
            "{headers:?}"
        );
        assert_eq!(body, render(&sample()));
        assert!(body.contains("\nftp_alg_packets_total 1000\n"));

        shared.latest().shell.packets = 1001;
        let (_, _, body) = get(addr, "/metrics");
        assert!(body.contains("\nftp_alg_packets_total 1001\n"), "{body}");
        assert!(!body.contains("\nftp_alg_packets_total 1000\n"));
    }

    #[test]
    fn head_has_no_body() {
        let (addr, _) = start();
        let (status, headers, body) = fetch(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(headers.contains("Content-Length: "));
        assert_eq!(body, "");
    }

    #[test]
    fn other_paths_methods_and_garbage() {
        let (addr, _) = start();
        assert_eq!(get(addr, "/other").0, "HTTP/1.1 404 Not Found");
        assert_eq!(get(addr, "/").0, "HTTP/1.1 404 Not Found");
        let (status, headers, _) =
            fetch(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
        assert!(headers.contains("Allow: GET, HEAD"));
        assert_eq!(
            fetch(addr, b"\x00\xff\xfegarbage\r\n\r\n").0,
            "HTTP/1.1 400 Bad Request"
        );
        assert_eq!(
            fetch(addr, b"GET /metrics\r\n\r\n").0,
            "HTTP/1.1 400 Bad Request"
        );
        // A request line without the empty line, then half-close: answered.
        assert_eq!(
            {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET /metrics HTTP/1.0\r\n").unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                let mut r = String::new();
                s.read_to_string(&mut r).unwrap();
                r.lines().next().unwrap_or("").to_string()
            },
            "HTTP/1.1 200 OK"
        );
        // Connect and hang up without a word.
        drop(TcpStream::connect(addr).unwrap());
        // Partial garbage, then hang up.
        {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"\x16\x03\x01\x02\x00\x01").unwrap();
        }
        // Still serving.
        let (status, _, body) = get(addr, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(body.contains("ftp_alg_sessions 2\n"));
    }

    #[test]
    fn oversized_head_is_refused() {
        let (addr, _) = start();
        let mut req = b"GET /metrics HTTP/1.1\r\n".to_vec();
        while req.len() <= MAX_HEAD + 100 {
            req.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        req.extend_from_slice(b"\r\n");
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // The server may stop reading (and reset) before all is written.
        let _ = s.write_all(&req);
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        assert!(
            resp.starts_with(b"HTTP/1.1 431 "),
            "{:?}",
            String::from_utf8_lossy(&resp)
        );
        assert_eq!(get(addr, "/metrics").0, "HTTP/1.1 200 OK");
    }

    #[test]
    fn silent_client_times_out() {
        let (addr, _) = start();
        let t0 = Instant::now();
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        slow.write_all(b"GET /metr").unwrap();
        // Served after the slow client's 2 s are up, not never.
        let (status, _, _) = get(addr, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        let waited = t0.elapsed();
        assert!(
            waited >= READ_TIMEOUT - Duration::from_millis(100),
            "{waited:?}"
        );
        assert!(waited < READ_TIMEOUT + Duration::from_secs(3), "{waited:?}");
        let mut resp = String::new();
        let _ = slow.read_to_string(&mut resp);
        assert!(resp.starts_with("HTTP/1.1 408 "), "{resp:?}");
    }

    #[test]
    fn poisoned_mutex_is_still_read() {
        let (addr, shared) = start();
        let s2 = shared.clone();
        let _ = thread::spawn(move || {
            let _g = s2.latest();
            panic!("poison on purpose");
        })
        .join();
        let (status, _, body) = get(addr, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(body.contains("ftp_alg_packets_total 1000\n"));
    }

    #[test]
    fn bind_error_is_returned() {
        let (addr, _) = start();
        let err = serve(addr, Shared::default()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
