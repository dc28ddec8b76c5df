//! The value `ftp-alg status` shows ([`StatusReport`]), built from the
//! sessions the packet loop lists, and its JSON (schema 1, described in
//! [`crate::telemetry::status`]).

use std::net::{IpAddr, SocketAddr};

use ftp_alg_proto::stats::SessionInfo;
use serde::{Deserialize, Serialize};

use crate::telemetry::{labels, Published};

/// The number of the JSON layout described in [`crate::telemetry::status`].
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
    /// The FTPS range the session holds (`null`: none).
    #[serde(default)]
    pub ftps_range: Option<RangeView>,
}

/// An encrypted session's range of data ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeView {
    /// Index of the `[[ftps]]` entry that matched the server.
    pub ftps_entry: usize,
    /// Where the data connections come from (the client).
    pub src: IpAddr,
    /// The server as the client addresses it.
    pub dst: IpAddr,
    /// Lowest port admitted.
    pub low: u16,
    /// Highest port admitted.
    pub high: u16,
    /// The server's real address when translated (port kept).
    pub dnat: Option<IpAddr>,
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
            ftps_range: s.range.map(|(ftps_entry, r)| RangeView {
                ftps_entry,
                src: r.src,
                dst: r.dst,
                low: r.low,
                high: r.high,
                dnat: r.dnat,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::sample;
    use super::*;

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
        assert_eq!(s["ftps_range"], serde_json::Value::Null);
        let r = &v["sessions"][2]["ftps_range"];
        assert_eq!(r["ftps_entry"], 1);
        assert_eq!(r["src"], "2001:db8::1");
        assert_eq!(r["dst"], "2001:db8::21");
        assert_eq!(
            (r["low"].as_u64(), r["high"].as_u64()),
            (Some(40000), Some(40100))
        );
        assert_eq!(r["dnat"], serde_json::Value::Null);
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
        assert_eq!(keys(s), "client,client_public,ftps_range,idle_secs,pinholes,seq_delta_to_client,seq_delta_to_server,server_public,server_real,state");
        assert_eq!(keys(p), "dnat,dport,dst,expires_in_secs,src");
        assert_eq!(keys(r), "dnat,dst,ftps_entry,high,low,src");
        // A report of an older daemon (no ftps_range) still parses.
        let old = json.replace(",\"ftps_range\":null", "");
        assert!(!old.contains("\"ftps_range\":null"));
        assert!(StatusReport::from_json(&old).is_ok());
    }
}
