//! Run-time configuration: typed, with defaults that work with no file.

use std::time::Duration;

/// Name of ftp-alg's own nftables table (family `inet`).
pub const TABLE_NAME: &str = "ftp_alg";

/// Comment carried by every rule ftp-alg installs outside its own table, so
/// that it can find and remove exactly those rules.
pub const RULE_COMMENT: &str = "ftp-alg";

/// Settings of one ftp-alg instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// TCP ports of FTP control connections (server side).
    pub control_ports: Vec<u16>,
    /// NFQUEUE number the control packets are queued to.
    pub queue_num: u16,
    /// How long an unused pinhole stays open.
    pub pinhole_timeout: Duration,
    /// Conntrack mark bit that ftp-alg's forward chain sets on a pinholed
    /// data connection; the admin's filter accepts NEW connections carrying it.
    pub ct_mark: u32,
    /// Install the queue rules, the table and the accept rule at start and
    /// remove them at exit. When false the admin installs them.
    pub install_rules: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            control_ports: vec![21],
            queue_num: 21,
            pinhole_timeout: Duration::from_secs(30),
            ct_mark: 0x0100_0000,
            install_rules: true,
        }
    }
}
