//! The text view of a [`StatusReport`]: one line per session and pinhole,
//! then the counts (described in [`crate::telemetry::status`]).

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::{SessionView, StatusReport, SESSIONS_TIMEOUT};

impl StatusReport {
    /// The text view (see [`crate::telemetry::status`]).
    pub fn render_text(&self) -> String {
        let mut out = String::with_capacity(128 * (self.session_count + self.pinhole_count + 1));
        if !self.listed {
            let _ = writeln!(
                out,
                "# sessions not listed: the packet loop did not answer within {}s",
                SESSIONS_TIMEOUT.as_secs()
            );
        }
        for s in &self.sessions {
            s.render(&mut out);
        }
        let _ = writeln!(
            out,
            "{} sessions, {} pinholes",
            self.session_count, self.pinhole_count
        );
        out
    }
}

impl SessionView {
    fn render(&self, out: &mut String) {
        let _ = write!(out, "session {}", self.client);
        if let Some(cp) = self.client_public.filter(|cp| *cp != self.client) {
            let _ = write!(out, " client_public {cp}");
        }
        match self.server_public {
            Some(sp) => {
                let _ = write!(out, " server_public {sp}");
            }
            None => out.push_str(" server_public ?"),
        }
        if let Some(sr) = self
            .server_real
            .filter(|sr| Some(*sr) != self.server_public)
        {
            let _ = write!(out, " server_real {sr}");
        }
        let _ = writeln!(
            out,
            " state {} idle {}s seq {:+}/{:+}",
            self.state, self.idle_secs, self.seq_delta_to_server, self.seq_delta_to_client
        );
        for p in &self.pinholes {
            let _ = write!(
                out,
                "  pinhole {} -> {}",
                p.src,
                SocketAddr::new(p.dst, p.dport)
            );
            if let Some(real) = p.dnat {
                let _ = write!(out, " dnat {real}");
            }
            let _ = writeln!(out, " expires in {}s", p.expires_in_secs);
        }
        if let Some(r) = &self.ftps_range {
            let _ = write!(
                out,
                "  range {} -> {}-{}",
                r.src,
                SocketAddr::new(r.dst, r.low),
                r.high
            );
            if let Some(real) = r.dnat {
                let _ = write!(out, " dnat {real}");
            }
            let _ = writeln!(out, " ftps[{}] while the session lives", r.ftps_entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{sample, text_of, SAMPLE};
    use super::*;
    use crate::telemetry::Published;

    #[test]
    fn render_exact() {
        assert_eq!(StatusReport::listed(&sample()).render_text(), SAMPLE);
        assert_eq!(
            StatusReport::listed(&[]).render_text(),
            "0 sessions, 0 pinholes\n"
        );
        let p = Published {
            sessions: 4,
            pinholes: 1,
            ..Default::default()
        };
        assert_eq!(
            StatusReport::unlisted(&p).render_text(),
            "# sessions not listed: the packet loop did not answer within 3s\n4 sessions, 1 pinholes\n"
        );
    }

    #[test]
    fn text_renders_from_the_parsed_json() {
        let json = StatusReport::listed(&sample()).to_json();
        assert_eq!(text_of(&json), SAMPLE);
        let unlisted = StatusReport::unlisted(&Published::default()).to_json();
        assert!(text_of(&unlisted).starts_with("# sessions not listed"));
        // A field a newer daemon adds does not break an older client.
        let newer = json.replacen('{', "{\"uptime_secs\":5,", 1);
        assert_eq!(text_of(&newer), SAMPLE);
        assert!(StatusReport::from_json("3 sessions, 3 pinholes\n").is_err());
    }
}
