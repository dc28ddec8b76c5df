//! The engine's settings.

use std::time::Duration;

use crate::ftp::plan::Policy;
use crate::ftps::FtpsServer;

/// Engine settings.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Server-side TCP ports of control connections.
    pub control_ports: Vec<u16>,
    /// What announcements are accepted.
    pub policy: Policy,
    /// Longest control line parsed. A longer line is not parsed (it still
    /// counts as a command or a reply, so replies stay paired), and parsing
    /// resumes with the next line. RFC 959 sets no limit; vsftpd accepts
    /// 4096-byte commands, and a long path makes lines that long.
    /// Announcements themselves never exceed 256 bytes.
    pub max_line: usize,
    /// Lifetime of an unused pinhole.
    pub pinhole_timeout: Duration,
    /// Pinholes kept per session; a new announcement closes the oldest.
    pub max_pinholes_per_session: usize,
    /// A session with no packet for this long is forgotten.
    pub idle_timeout: Duration,
    /// How long a closed session is kept to fix up late retransmissions.
    pub linger: Duration,
    /// How long the start of a possible announcement may be held while
    /// its sender keeps retransmitting it (see `ftp::held`: the receiver
    /// did not acknowledge the bytes taken over); a retransmission after
    /// this long lets them through untouched.
    pub hold_limit: Duration,
    /// A session the server never answered is forgotten after this long
    /// (conntrack keeps SYN_SENT for 120 s).
    pub handshake_timeout: Duration,
    /// Most sessions tracked at once; beyond it new control connections
    /// are forwarded untouched (and get no help), so a flood of SYNs to
    /// port 21 cannot exhaust memory.
    pub max_sessions: usize,
    /// FTPS servers whose encrypted sessions get a session-scoped range
    /// of data ports (see [`crate::ftps`]); the daemon checks them with
    /// [`crate::ftps::check_entries`]. Empty: FTPS sessions get nothing.
    pub ftps: Vec<FtpsServer>,
    /// Server ports of implicit-TLS control connections (TLS from the
    /// first byte; 990 is IANA's `ftps`). Implicit FTPS is not in RFC 4217
    /// (it was in its drafts and left out); the client behaves as if
    /// `AUTH TLS` had been answered `234` ([MS-FTPS], "Control Connection
    /// Negotiation with Implicit FTPS"). Followed
    /// only while `ftps` is not empty; a port must not also be in
    /// `control_ports`.
    pub ftps_control_ports: Vec<u16>,
}

impl EngineConfig {
    /// Every server port whose connections are followed: the control
    /// ports, then the implicit-TLS ones while `ftps` is not empty (what
    /// the daemon queues, and what the replayer sorts captures by).
    pub fn followed_ports(&self) -> Vec<u16> {
        let mut ports = self.control_ports.clone();
        if !self.ftps.is_empty() {
            ports.extend(&self.ftps_control_ports);
        }
        ports
    }

    /// Whether `port` is a control port: `Some(true)` for an implicit-TLS
    /// one, `Some(false)` for a cleartext (or explicit-TLS) one.
    pub(crate) fn control_port(&self, port: u16) -> Option<bool> {
        if self.control_ports.contains(&port) {
            Some(false)
        } else if !self.ftps.is_empty() && self.ftps_control_ports.contains(&port) {
            Some(true)
        } else {
            None
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            control_ports: vec![21],
            policy: Policy::default(),
            max_line: 4096,
            pinhole_timeout: Duration::from_secs(30),
            max_pinholes_per_session: 2,
            idle_timeout: Duration::from_secs(2 * 3600),
            linger: Duration::from_secs(30),
            hold_limit: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(120),
            max_sessions: 262_144,
            ftps: Vec::new(),
            ftps_control_ports: vec![990],
        }
    }
}
