//! Replay's report: one line per record, as text for people or as JSON
//! (one object per line) for scripts.
//!
//! Every record names its session by the client's own address and port
//! (what the daemon keys sessions by, and what `ftp-alg status` shows) and
//! its time as UTC with microseconds. The words for forms and reasons are
//! the metrics labels ([`crate::telemetry::labels`]), so a refusal here
//! reads like `ftp_alg_refusals_total{reason=...}` on the live gateway.

use std::time::Duration;

use ftp_alg_proto::event::Event;
use ftp_alg_proto::ftp::session::Form;
use ftp_alg_proto::pinhole::Pinhole;
use serde_json::{json, Map, Value};

use super::copies::NatSource;
use super::feed::{Record, What};
use crate::telemetry::labels;

/// `time` (since the Unix epoch) as RFC 3339 UTC with microseconds.
pub fn utc(time: Duration) -> String {
    let secs = time.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days to civil date (Howard Hinnant's algorithm, proleptic Gregorian).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        time.subsec_micros()
    )
}

/// The form as the protocol writes it.
fn form_text(form: Form) -> &'static str {
    match form {
        Form::Port => "PORT",
        Form::Eprt => "EPRT",
        Form::Pasv227 => "227",
        Form::Epsv229 => "229",
    }
}

fn source_label(source: NatSource) -> &'static str {
    match source {
        NatSource::Capture => "capture",
        NatSource::Option => "option",
        NatSource::Assumed => "assumed",
    }
}

/// The record's `event` word.
pub fn kind(what: &What) -> &'static str {
    match what {
        What::Core(Event::SessionOpened { .. }) => "session-start",
        What::Core(Event::Announcement { .. }) => "announcement",
        What::Core(Event::Rewrite { .. }) => "rewrite",
        What::Core(Event::Pinhole { .. }) => "pinhole",
        What::Core(Event::Refusal { .. }) => "refusal",
        What::Core(Event::TlsStarted) => "tls",
        What::Core(Event::SessionClosed) => "session-end",
        What::Core(Event::FtpsRange { .. }) => "ftps-range",
        What::Core(Event::FtpsRangeClosed { .. }) => "ftps-range-closed",
        What::Core(_) => "other",
        What::Nat(..) => "nat",
        What::PinholeClosed(_) => "pinhole-closed",
        What::PinholeExpired(_) => "pinhole-expired",
        What::DataConnection { .. } | What::RangeConnection { .. } => "data-connection",
        What::Blocked { .. } => "blocked",
        What::OpenAtEnd => "open-at-end",
    }
}

fn details(what: &What) -> String {
    match what {
        What::Core(Event::SessionOpened { server, mid_stream }) => {
            let how = if *mid_stream {
                " (picked up mid-stream)"
            } else {
                ""
            };
            format!("to server {server}{how}")
        }
        What::Core(Event::Announcement { form, addr, port }) => match addr {
            Some(a) => format!("{} {a} port {port}", form_text(*form)),
            None => format!("{} port {port}", form_text(*form)),
        },
        What::Core(Event::Rewrite {
            form,
            from,
            to,
            delta,
        }) => format!(
            "{} \"{from}\" -> \"{to}\" ({delta:+} bytes)",
            form_text(*form)
        ),
        What::Core(Event::Pinhole { form, opening }) => format!(
            "{} for {} s ({})",
            opening.pinhole,
            opening.lifetime.as_secs(),
            form_text(*form)
        ),
        What::Core(Event::Refusal { form, reason }) => {
            let form = form.map_or(String::new(), |f| format!("{} ", form_text(f)));
            format!(
                "{form}nothing opened: {reason} ({})",
                labels::reason(*reason)
            )
        }
        What::Core(Event::TlsStarted) => "switched to TLS: nothing more is parsed or opened".into(),
        What::Core(Event::SessionClosed) => "control connection closed".into(),
        What::Core(Event::FtpsRange {
            entry,
            opening,
            shared,
        }) => {
            let shared = if *shared {
                ", shared with another session"
            } else {
                ""
            };
            format!(
                "{} while the session lives (ftps[{entry}]{shared})",
                opening.range
            )
        }
        What::Core(Event::FtpsRangeClosed { range, removed }) => {
            let still = if *removed {
                ""
            } else {
                " (another session still uses it)"
            };
            format!("{range}{still}")
        }
        What::Core(other) => format!("{other:?}"),
        What::Nat(Some(m), source) => format!(
            "client seen by the server as {}, server is {} ({})",
            m.client_public,
            m.server_real,
            source_label(*source)
        ),
        What::Nat(None, source) => format!("untranslated ({})", source_label(*source)),
        What::PinholeClosed(p) => format!("{p}"),
        What::PinholeExpired(p) => format!("{p}: no connection within its lifetime"),
        What::DataConnection { pinhole, from } => format!("from {from} through {pinhole}"),
        What::RangeConnection { range, from, to } => {
            format!("from {from} to {to} through the FTPS range {range}")
        }
        What::Blocked { from, to } => {
            format!("connection from {from} to {to}: no pinhole admits it")
        }
        What::OpenAtEnd => "the capture ends with the session open".into(),
    }
}

/// One record as a line of text.
pub fn text(r: &Record) -> String {
    format!(
        "{} {} {} {}",
        utc(r.time),
        r.session,
        kind(&r.what),
        details(&r.what)
    )
}

fn pinhole_fields(m: &mut Map<String, Value>, p: &Pinhole) {
    m.insert("src".into(), json!(p.src.to_string()));
    m.insert("dst".into(), json!(p.dst.to_string()));
    m.insert("dport".into(), json!(p.dport));
    m.insert("dnat".into(), json!(p.dnat.map(|a| a.to_string())));
}

/// One record as a JSON object (one line).
pub fn json(r: &Record) -> Value {
    let mut m = Map::new();
    m.insert("time".into(), json!(utc(r.time)));
    m.insert("session".into(), json!(r.session.to_string()));
    m.insert("event".into(), json!(kind(&r.what)));
    match &r.what {
        What::Core(Event::SessionOpened { server, mid_stream }) => {
            m.insert("server".into(), json!(server.to_string()));
            m.insert("mid_stream".into(), json!(mid_stream));
        }
        What::Core(Event::Announcement { form, addr, port }) => {
            m.insert("form".into(), json!(labels::form(*form)));
            m.insert("address".into(), json!(addr.map(|a| a.to_string())));
            m.insert("port".into(), json!(port));
        }
        What::Core(Event::Rewrite {
            form,
            from,
            to,
            delta,
        }) => {
            m.insert("form".into(), json!(labels::form(*form)));
            m.insert("from".into(), json!(from));
            m.insert("to".into(), json!(to));
            m.insert("delta".into(), json!(delta));
        }
        What::Core(Event::Pinhole { form, opening }) => {
            m.insert("form".into(), json!(labels::form(*form)));
            pinhole_fields(&mut m, &opening.pinhole);
            m.insert(
                "lifetime_secs".into(),
                json!(opening.lifetime.as_secs_f64()),
            );
        }
        What::Core(Event::Refusal { form, reason }) => {
            m.insert("form".into(), json!(form.map(labels::form)));
            m.insert("reason".into(), json!(labels::reason(*reason)));
            m.insert("reason_text".into(), json!(reason.to_string()));
        }
        What::Core(Event::TlsStarted | Event::SessionClosed) => {}
        What::Core(other) => {
            m.insert("detail".into(), json!(format!("{other:?}")));
        }
        What::Nat(mapping, source) => {
            m.insert("source".into(), json!(source_label(*source)));
            // null for both: untranslated.
            let (client_public, server_real) = match mapping {
                Some(n) => (
                    Some(n.client_public.to_string()),
                    Some(n.server_real.to_string()),
                ),
                None => (None, None),
            };
            m.insert("client_public".into(), json!(client_public));
            m.insert("server_real".into(), json!(server_real));
        }
        What::PinholeClosed(p) | What::PinholeExpired(p) => pinhole_fields(&mut m, p),
        What::DataConnection { pinhole, from } => {
            pinhole_fields(&mut m, pinhole);
            m.insert("from".into(), json!(from.to_string()));
        }
        What::RangeConnection { range, from, to } => {
            m.insert("range".into(), json!(range.to_string()));
            m.insert("from".into(), json!(from.to_string()));
            m.insert("to".into(), json!(to.to_string()));
        }
        What::Blocked { from, to } => {
            m.insert("from".into(), json!(from.to_string()));
            m.insert("to".into(), json!(to.to_string()));
        }
        What::OpenAtEnd => {}
    }
    Value::Object(m)
}

/// Writes every record, as text or JSON lines.
pub fn write(
    records: &[Record],
    as_json: bool,
    mut out: impl std::io::Write,
) -> std::io::Result<()> {
    for r in records {
        if as_json {
            writeln!(out, "{}", json(r))?;
        } else {
            writeln!(out, "{}", text(r))?;
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_civil_time() {
        assert_eq!(utc(Duration::ZERO), "1970-01-01T00:00:00.000000Z");
        // 2026-12-01T09:31:02.5Z
        assert_eq!(
            utc(Duration::from_millis(1_796_117_462_500)),
            "2026-12-01T09:31:02.500000Z"
        );
        assert_eq!(
            utc(Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000000Z"
        );
    }
}
