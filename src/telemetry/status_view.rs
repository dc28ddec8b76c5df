//! What `ftp-alg status` shows, as one value: the daemon sends it over the
//! status socket as JSON, `ftp-alg status --json` prints that JSON as it
//! came, and the text view is rendered from the same parsed value, so the
//! two can never disagree.
//!
//! # JSON schema (`"schema": 1`)
//!
//! One object on one line, ended by a newline:
//!
//! ```json
//! {"schema":1,"version":"0.1.0","listed":true,"session_count":1,"pinhole_count":1,
//!  "sessions":[{"client":"192.0.2.10:51000","client_public":"203.0.113.1:40000",
//!   "server_public":"198.51.100.5:21","server_real":null,"state":"ready","idle_secs":3,
//!   "seq_delta_to_server":2,"seq_delta_to_client":0,
//!   "pinholes":[{"src":"198.51.100.5","dst":"203.0.113.1","dport":40001,
//!     "dnat":"192.0.2.10:50000","expires_in_secs":28}]}]}
//! ```
//!
//! * `schema`: this layout's number; a change that removes or retypes a
//!   field gets a new number, added fields do not.
//! * `version`: the daemon's version.
//! * `listed`: `false` when the packet loop did not list its sessions in
//!   time; `sessions` is then empty and the counts are the latest published.
//! * `session_count`, `pinhole_count`: live sessions and pinholes.
//! * per session: `client` (its own address), `client_public` (as the
//!   server sees it, after source NAT), `server_public` (as the client
//!   addresses it), `server_real` (after destination NAT); each
//!   `"ADDRESS:PORT"` (`"[V6]:PORT"`) or `null` when unknown. `state` is one
//!   of `greeting`, `resync`, `ready`, `tls`, `not-ftp`, `closed`.
//!   `idle_secs`: since the last packet. `seq_delta_*`: the length change so
//!   far in that direction, in bytes.
//! * per pinhole: `src` and `dst` addresses, `dport`, `dnat` (the real
//!   listener, or `null`), `expires_in_secs`.
//!
//! Sessions are sorted by client address, pinholes by their addresses;
//! seconds are rounded down.
//!
//! # Text view
//!
//! One line per session and one per pinhole (a `conntrack -L expect` in
//! spirit), then the counts, the line scripts read:
//!
//! ```text
//! session 192.0.2.10:51000 client_public 203.0.113.1:40000 server_public 198.51.100.5:21 state ready idle 3s seq +2/+0
//!   pinhole 198.51.100.5 -> 203.0.113.1:40001 dnat 192.0.2.10:50000 expires in 28s
//! 1 sessions, 1 pinholes
//! ```
//!
//! `client_public` is shown only when known and different from the client,
//! `server_real` only when known and different from `server_public`;
//! `server_public` shows `?` when unknown; `seq` is always signed.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use ftp_alg_proto::stats::SessionInfo;
use serde::{Deserialize, Serialize};

use crate::telemetry::{labels, Published};

/// The number of the JSON layout described in the module documentation.
pub const SCHEMA: u32 = 1;

/// Everything `ftp-alg status` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The daemon's version.
    pub version: String,
    /// Whether `sessions` lists the sessions (false: the packet loop did not
    /// answer in time).
    pub listed: bool,
    /// Live sessions.
    pub session_count: usize,
    /// Live pinholes over all sessions.
    pub pinhole_count: usize,
    /// The sessions, sorted by client address.
    pub sessions: Vec<SessionView>,
}

/// One control session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    /// The client's own address.
    pub client: SocketAddr,
    /// The client as the server sees it, when known.
    pub client_public: Option<SocketAddr>,
    /// The server as the client addresses it, when known.
    pub server_public: Option<SocketAddr>,
    /// The server's own address, when known.
    pub server_real: Option<SocketAddr>,
    /// `greeting`, `resync`, `ready`, `tls`, `not-ftp` or `closed`.
    pub state: String,
    /// Seconds since the last packet.
    pub idle_secs: u64,
    /// Length change so far, client to server, in bytes.
    pub seq_delta_to_server: i64,
    /// Length change so far, server to client, in bytes.
    pub seq_delta_to_client: i64,
    /// Live pinholes, sorted by their addresses.
    pub pinholes: Vec<PinholeView>,
}

/// One pinhole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinholeView {
    /// Where the data connection comes from.
    pub src: IpAddr,
    /// Where it is sent, as announced.
    pub dst: IpAddr,
    /// The announced port.
    pub dport: u16,
    /// The real listener behind the gateway, when translated.
    pub dnat: Option<SocketAddr>,
    /// Seconds left before it closes unused.
    pub expires_in_secs: u64,
}

impl StatusReport {
    /// The report for the listed `sessions`.
    pub fn listed(sessions: &[SessionInfo]) -> StatusReport {
        let mut views: Vec<SessionView> = sessions.iter().map(SessionView::from).collect();
        views.sort_by_key(|s| (s.client, s.server_public));
        StatusReport {
            schema: SCHEMA,
            version: env!("CARGO_PKG_VERSION").to_string(),
            listed: true,
            session_count: views.len(),
            pinhole_count: views.iter().map(|s| s.pinholes.len()).sum(),
            sessions: views,
        }
    }

    /// The report when the packet loop did not list its sessions: the
    /// counts it published last.
    pub fn unlisted(p: &Published) -> StatusReport {
        StatusReport {
            listed: false,
            session_count: p.sessions,
            pinhole_count: p.pinholes,
            ..StatusReport::listed(&[])
        }
    }

    /// The JSON line the status socket carries.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialising cannot fail.
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }

    /// Parses what the status socket carried.
    pub fn from_json(text: &str) -> Result<StatusReport, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The text view (see the module documentation).
    pub fn render_text(&self) -> String {
        let mut out = String::with_capacity(128 * (self.session_count + self.pinhole_count + 1));
        if !self.listed {
            let _ = writeln!(
                out,
                "# sessions not listed: the packet loop did not answer within {}s",
                super::status::SESSIONS_TIMEOUT.as_secs()
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

impl From<&SessionInfo> for SessionView {
    fn from(s: &SessionInfo) -> SessionView {
        let mut pinholes: Vec<PinholeView> = s
            .pinholes
            .iter()
            .map(|(ph, left)| PinholeView {
                src: ph.src,
                dst: ph.dst,
                dport: ph.dport,
                dnat: ph.dnat,
                expires_in_secs: left.as_secs(),
            })
            .collect();
        pinholes.sort_by_key(|p| (p.src, p.dst, p.dport, p.dnat));
        SessionView {
            client: s.client,
            client_public: s.client_public,
            server_public: s.server_public,
            server_real: s.server_real,
            state: labels::state(s.state).to_string(),
            idle_secs: s.idle.as_secs(),
            seq_delta_to_server: s.delta_to_server,
            seq_delta_to_client: s.delta_to_client,
            pinholes,
        }
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
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ftp_alg_proto::pinhole::Pinhole;
    use ftp_alg_proto::stats::SessionState;
    use std::time::Duration;

    /// Three sessions: one unmapped in greeting, one behind NAT both ways
    /// with two pinholes, one IPv6 under TLS.
    pub(crate) fn sample() -> Vec<SessionInfo> {
        vec![
            SessionInfo {
                client: "192.0.2.20:40000".parse().unwrap(),
                // Same as the client: not shown.
                client_public: Some("192.0.2.20:40000".parse().unwrap()),
                server_public: None,
                server_real: None,
                state: SessionState::Greeting,
                delta_to_server: 0,
                delta_to_client: 0,
                idle: Duration::from_millis(999),
                pinholes: vec![],
            },
            SessionInfo {
                client: "192.0.2.10:51000".parse().unwrap(),
                client_public: Some("203.0.113.1:40000".parse().unwrap()),
                server_public: Some("198.51.100.5:21".parse().unwrap()),
                server_real: Some("10.0.0.5:21".parse().unwrap()),
                state: SessionState::Ready,
                delta_to_server: 1,
                delta_to_client: -3,
                idle: Duration::from_millis(3500),
                pinholes: vec![
                    (
                        Pinhole {
                            src: "198.51.100.5".parse().unwrap(),
                            dst: "203.0.113.1".parse().unwrap(),
                            dport: 40001,
                            dnat: Some("192.0.2.10:50000".parse().unwrap()),
                        },
                        Duration::from_millis(28_700),
                    ),
                    (
                        Pinhole {
                            src: "192.0.2.10".parse().unwrap(),
                            dst: "198.51.100.5".parse().unwrap(),
                            dport: 30000,
                            dnat: None,
                        },
                        Duration::from_secs(5),
                    ),
                ],
            },
            SessionInfo {
                client: "[2001:db8::1]:50000".parse().unwrap(),
                client_public: None,
                server_public: Some("[2001:db8::21]:21".parse().unwrap()),
                // Same as the public address: not shown.
                server_real: Some("[2001:db8::21]:21".parse().unwrap()),
                state: SessionState::Tls,
                delta_to_server: 0,
                delta_to_client: 12,
                idle: Duration::ZERO,
                pinholes: vec![(
                    Pinhole {
                        src: "2001:db8::21".parse().unwrap(),
                        dst: "2001:db8::1".parse().unwrap(),
                        dport: 2121,
                        dnat: None,
                    },
                    Duration::from_secs(60),
                )],
            },
        ]
    }

    /// [`sample`] as text.
    pub(crate) const SAMPLE: &str = "\
session 192.0.2.10:51000 client_public 203.0.113.1:40000 server_public 198.51.100.5:21 server_real 10.0.0.5:21 state ready idle 3s seq +1/-3
  pinhole 192.0.2.10 -> 198.51.100.5:30000 expires in 5s
  pinhole 198.51.100.5 -> 203.0.113.1:40001 dnat 192.0.2.10:50000 expires in 28s
session 192.0.2.20:40000 server_public ? state greeting idle 0s seq +0/+0
session [2001:db8::1]:50000 server_public [2001:db8::21]:21 state tls idle 0s seq +0/+12
  pinhole 2001:db8::21 -> [2001:db8::1]:2121 expires in 60s
3 sessions, 3 pinholes
";

    /// The text an answer over the socket renders to.
    pub(crate) fn text_of(json: &str) -> String {
        StatusReport::from_json(json).unwrap().render_text()
    }

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
    fn json_is_the_documented_schema() {
        let json = StatusReport::listed(&sample()).to_json();
        assert!(
            json.ends_with('\n') && json.trim_end().lines().count() == 1,
            "{json}"
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["listed"], true);
        assert_eq!(v["session_count"], 3);
        assert_eq!(v["pinhole_count"], 3);
        let s = &v["sessions"][0];
        assert_eq!(s["client"], "192.0.2.10:51000");
        assert_eq!(s["client_public"], "203.0.113.1:40000");
        assert_eq!(s["server_public"], "198.51.100.5:21");
        assert_eq!(s["server_real"], "10.0.0.5:21");
        assert_eq!(s["state"], "ready");
        assert_eq!(s["idle_secs"], 3);
        assert_eq!(s["seq_delta_to_server"], 1);
        assert_eq!(s["seq_delta_to_client"], -3);
        let p = &s["pinholes"][1];
        assert_eq!(p["src"], "198.51.100.5");
        assert_eq!(p["dst"], "203.0.113.1");
        assert_eq!(p["dport"], 40001);
        assert_eq!(p["dnat"], "192.0.2.10:50000");
        assert_eq!(p["expires_in_secs"], 28);
        assert_eq!(v["sessions"][1]["server_public"], serde_json::Value::Null);
        assert_eq!(v["sessions"][2]["client"], "[2001:db8::1]:50000");
        // Every field documented, none more.
        let keys = |o: &serde_json::Value| {
            let mut k: Vec<String> = o.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k.join(",")
        };
        assert_eq!(
            keys(&v),
            "listed,pinhole_count,schema,session_count,sessions,version"
        );
        assert_eq!(keys(s), "client,client_public,idle_secs,pinholes,seq_delta_to_client,seq_delta_to_server,server_public,server_real,state");
        assert_eq!(keys(p), "dnat,dport,dst,expires_in_secs,src");
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
