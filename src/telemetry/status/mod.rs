//! Live status over a Unix socket: `ftp-alg status` connects, the daemon
//! asks the packet loop for its sessions and pinholes
//! ([`Shared::request_sessions`]; answered at the loop's next wake-up, at
//! most a second away), writes them and closes. The socket file has mode
//! 0600 from before the first connection can be accepted, so only its owner
//! (root, when the daemon runs as root) can connect.
//!
//! The daemon writes one [`StatusReport`] as a JSON line (its schema
//! below); `ftp-alg status` renders the text view from it, `ftp-alg status
//! --json` prints it as it came.
//!
//! Should the packet loop not answer within [`SESSIONS_TIMEOUT`], the answer
//! says so (`listed: false`) with the counts of the latest published counters.
//!
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
//! * per session, `ftps_range`: `null`, or the range of data ports an
//!   encrypted session holds (README "FTPS"): `ftps_entry` (index of the
//!   `[[ftps]]` entry that matched), `src`, `dst`, `low`, `high`, `dnat`
//!   (the server's real address, or `null`; the port is kept). It lives as
//!   long as the session, so it has no expiry.
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
//! An encrypted session with an FTPS range has one more line:
//!
//! ```text
//!   range 198.51.100.2 -> 203.0.113.1:50000-50100 dnat 192.0.2.10 ftps[0] while the session lives
//! ```
//!
//! `client_public` is shown only when known and different from the client,
//! `server_real` only when known and different from `server_public`;
//! `server_public` shows `?` when unknown; `seq` is always signed.
//!
//! One concept a file: `server` (the socket the daemon serves), `client`
//! (the query of `ftp-alg status`), `report` (the value and its JSON),
//! `text` (the text view of it).

#[cfg(doc)]
use crate::telemetry::Shared;

mod client;
#[cfg(test)]
mod fixtures;
mod report;
mod server;
mod text;

pub use client::{query, QUERY_TIMEOUT};
pub use report::{PinholeView, RangeView, SessionView, StatusReport, SCHEMA};
pub use server::{serve, StatusServer, SESSIONS_TIMEOUT};
