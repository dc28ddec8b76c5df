//! The metrics endpoint: one background thread accepts connections one at
//! a time, reads the request head ([`super::request`]), answers it and
//! closes the connection.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::render::render;
use super::request::{read_head, Request};
use crate::telemetry::Shared;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Time a client has to take the response.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

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
    use super::super::render::tests::sample;
    use super::super::request::{MAX_HEAD, READ_TIMEOUT};
    use super::*;

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
