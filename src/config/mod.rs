//! Run-time configuration: typed, validated, with defaults that work with
//! no file. Every key is documented in `deploy/ftp-alg.toml`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use ftp_alg_proto::engine::EngineConfig;
use ftp_alg_proto::ftp::plan::Policy;
use ftp_alg_proto::ftps::{check_entries, FtpsServer, PortRange, Prefix};

mod accept;
mod paths;

pub use accept::{AcceptRule, NftChain};
pub use paths::Paths;

/// Name of ftp-alg's own nftables table (family `inet`).
pub const TABLE_NAME: &str = "ftp_alg";

/// Comment carried by every rule ftp-alg installs outside its own table, so
/// that it can find and remove exactly those rules.
pub const RULE_COMMENT: &str = "ftp-alg";

/// Default path of the status socket.
pub const DEFAULT_STATUS_SOCKET: &str = "/run/ftp-alg/status.sock";

/// Settings of one ftp-alg instance.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// TCP ports of FTP control connections (server side).
    pub control_ports: Vec<u16>,
    /// NFQUEUE number the control packets are queued to.
    #[serde(rename = "queue")]
    pub queue_num: u16,
    /// Queues `queue ..= queue + queues - 1`, one worker thread each; the
    /// kernel spreads control connections over them.
    pub queues: u16,
    /// Microseconds a worker keeps polling its queue after a packet before
    /// it sleeps (0: sleep at once).
    pub busy_poll_us: u32,
    /// How long an unused pinhole stays open.
    #[serde(rename = "pinhole_timeout_secs", deserialize_with = "seconds")]
    pub pinhole_timeout: Duration,
    /// Pinholes kept per control session; a new announcement closes the
    /// oldest.
    pub max_pinholes_per_session: usize,
    /// Conntrack mark bit that ftp-alg's forward chain sets on a pinholed
    /// data connection; the admin's filter accepts NEW connections carrying it.
    pub ct_mark: u32,
    /// Install the queue rules, the table and the accept rule at start and
    /// remove them at exit. When false the admin installs them.
    pub install_rules: bool,
    /// Queue rules with bypass: while ftp-alg is not running, control
    /// traffic passes unhelped (fail-open) instead of being dropped.
    pub queue_bypass: bool,
    /// Which control connections are followed: forwarded ones, this
    /// host's own, or both (`paths = ["forward", "local"]`).
    pub paths: Paths,
    /// Where the rule accepting pinholed data connections goes (when
    /// `install_rules` is true).
    pub accept_rule: AcceptRule,
    /// With `accept_rule = "nft ..."` and the `local` path: the admin's
    /// native input chain that gets the accept rule too (required then).
    pub accept_rule_input: Option<NftChain>,
    /// With `accept_rule = "nft ..."` and the `local` path: the admin's
    /// native output chain, when it drops new connections (optional).
    pub accept_rule_output: Option<NftChain>,
    /// Addresses a further NAT beyond this gateway presents for the
    /// gateway's own, per interface (`[[nat_override]]` tables).
    pub nat_override: Vec<NatOverride>,
    /// FTPS servers whose encrypted sessions get their passive port range
    /// opened for the session's client while the session lives
    /// (`[[ftps]]` tables; README "FTPS").
    pub ftps: Vec<FtpsEntry>,
    /// Server ports of implicit-TLS control connections (TLS from the
    /// first byte), queued and followed while `[[ftps]]` is configured.
    pub ftps_control_ports: Vec<u16>,
    /// Where Prometheus metrics are served (`GET /metrics`); off when unset.
    pub metrics_address: Option<SocketAddr>,
    /// Unix socket of `ftp-alg status` (created mode 0600: root only).
    pub status_socket: PathBuf,
    /// What announcements are accepted.
    pub policy: PolicyConfig,
    /// Session state kept in conntrack (survives a restart, an HA failover).
    pub durable: DurableConfig,
    /// Logging.
    pub log: LogConfig,
}

/// The `[durable]` section: what a session needs to continue is stored in
/// its control connection's conntrack entry (`docs/durable.md`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DurableConfig {
    /// Store session state, hold edited streams while no instance runs,
    /// adopt sessions from stored state.
    pub enabled: bool,
    /// First of the 116 ct label bits ftp-alg's block uses (0..=12).
    pub label_first_bit: u32,
    /// Conntrack mark bit: "this stream was rewritten with a length change".
    pub edited_mark: u32,
    /// Packet mark bit ftp-alg sets on every packet it gave a verdict for.
    pub seen_mark: u32,
}

impl Default for DurableConfig {
    fn default() -> Self {
        DurableConfig {
            enabled: true,
            label_first_bit: 12,
            edited_mark: 0x0200_0000,
            seen_mark: 0x0200_0000,
        }
    }
}

/// One `[[nat_override]]` table: for a further NAT beyond this gateway
/// that conntrack cannot see (a cloud's 1:1 NAT, an ISP router), the
/// address peers beyond it use for the gateway's address on `interface`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatOverride {
    /// The gateway's interface towards that NAT.
    pub interface: String,
    /// The address that NAT presents; it replaces the interface's address
    /// of the same family in PORT/EPRT/227 text.
    pub public_address: IpAddr,
}

/// One `[[ftps]]` table: an FTPS server, by its real address (after the
/// gateway's DNAT) or a prefix of such servers, and its passive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FtpsEntry {
    /// `"ADDR"` or `"ADDR/PREFIX"`.
    #[serde(deserialize_with = "from_str")]
    pub server: Prefix,
    /// `"LOW-HIGH"`: the server's passive ports (vsftpd
    /// `pasv_min_port`-`pasv_max_port`, proftpd `PassivePorts`).
    #[serde(deserialize_with = "from_str")]
    pub passive_ports: PortRange,
}

impl From<FtpsEntry> for FtpsServer {
    fn from(e: FtpsEntry) -> Self {
        FtpsServer {
            server: e.server,
            passive_ports: e.passive_ports,
        }
    }
}

fn from_str<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr<Err = String>,
{
    let text = String::deserialize(d)?;
    text.parse().map_err(serde::de::Error::custom)
}

/// The `[policy]` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Accept data ports below 1024.
    pub allow_privileged_ports: bool,
    /// Accept announced addresses that are not the announcing peer's own.
    pub allow_third_party: bool,
    /// Longest control line parsed; a longer one is forwarded unparsed and
    /// parsing resumes at the next line (announcements never exceed 256
    /// bytes; RFC 959 sets no limit, vsftpd accepts 4096-byte commands).
    pub max_line: usize,
}

/// The `[log]` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace` (RUST_LOG overrides).
    pub level: String,
    /// `text` (human-readable) or `json` (one object per line).
    pub format: LogFormat,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            control_ports: vec![21],
            queue_num: 21,
            queues: 1,
            busy_poll_us: 0,
            pinhole_timeout: Duration::from_secs(30),
            max_pinholes_per_session: 2,
            ct_mark: 0x0100_0000,
            install_rules: true,
            queue_bypass: true,
            paths: Paths::default(),
            accept_rule: AcceptRule::Iptables,
            accept_rule_input: None,
            accept_rule_output: None,
            nat_override: Vec::new(),
            ftps: Vec::new(),
            ftps_control_ports: vec![990],
            metrics_address: None,
            status_socket: PathBuf::from(DEFAULT_STATUS_SOCKET),
            policy: PolicyConfig::default(),
            durable: DurableConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            allow_privileged_ports: false,
            allow_third_party: false,
            max_line: 4096,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_secs)
}

/// A configuration that cannot be used: which key, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The offending key (dotted path), or empty when the file itself is
    /// unreadable or not TOML.
    pub key: String,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.problem)
        } else {
            write!(f, "key `{}`: {}", self.key, self.problem)
        }
    }
}

impl std::error::Error for ConfigError {}

fn bad(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        problem: problem.into(),
    }
}

impl Config {
    /// Parses and validates a TOML document.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config =
            toml::from_str(text).map_err(|e| bad("", e.to_string().trim_end().to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad("", format!("cannot read {}: {e}", path.display())))?;
        Config::from_toml(&text).map_err(|e| ConfigError {
            problem: format!("{}: {}", path.display(), e.problem),
            ..e
        })
    }

    /// Checks every value; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.control_ports.is_empty() {
            return Err(bad(
                "control_ports",
                "is empty: no control connection would be followed",
            ));
        }
        if self.control_ports.contains(&0) {
            return Err(bad("control_ports", "0 is not a port"));
        }
        if !(1..=64).contains(&self.queues) {
            return Err(bad("queues", format!("{} is outside 1..=64", self.queues)));
        }
        if u32::from(self.queue_num) + u32::from(self.queues) - 1 > u32::from(u16::MAX) {
            return Err(bad(
                "queues",
                format!(
                    "queue {} + {} queues goes past queue number 65535",
                    self.queue_num, self.queues
                ),
            ));
        }
        if self.busy_poll_us > 10_000 {
            return Err(bad(
                "busy_poll_us",
                format!("{} is outside 0..=10000", self.busy_poll_us),
            ));
        }
        let t = self.pinhole_timeout.as_secs();
        if !(1..=3600).contains(&t) {
            return Err(bad(
                "pinhole_timeout_secs",
                format!("{t} is outside 1..=3600"),
            ));
        }
        if !(1..=64).contains(&self.max_pinholes_per_session) {
            return Err(bad(
                "max_pinholes_per_session",
                format!("{} is outside 1..=64", self.max_pinholes_per_session),
            ));
        }
        if self.ct_mark == 0 {
            return Err(bad(
                "ct_mark",
                "is 0: no bit to mark pinholed connections with",
            ));
        }
        self.validate_accept_rules()?;
        let d = &self.durable;
        if d.label_first_bit > ftp_alg_proto::durable::MAX_FIRST_BIT {
            return Err(bad(
                "durable.label_first_bit",
                format!(
                    "{} is outside 0..=12 (the block is 116 of 128 bits)",
                    d.label_first_bit
                ),
            ));
        }
        for (key, bit) in [
            ("durable.edited_mark", d.edited_mark),
            ("durable.seen_mark", d.seen_mark),
        ] {
            if bit.count_ones() != 1 {
                return Err(bad(key, format!("{bit:#x} is not exactly one bit")));
            }
        }
        if d.edited_mark & self.ct_mark != 0 {
            return Err(bad(
                "durable.edited_mark",
                "shares a bit with ct_mark (both are conntrack marks)",
            ));
        }
        if !(64..=8192).contains(&self.policy.max_line) {
            return Err(bad(
                "policy.max_line",
                format!("{} is outside 64..=8192", self.policy.max_line),
            ));
        }
        for (i, o) in self.nat_override.iter().enumerate() {
            // IFNAMSIZ is 16 with the terminating NUL.
            let name_ok = !o.interface.is_empty()
                && o.interface.len() < 16
                && !o.interface.contains(['/', ' ', '\t', '\0']);
            if !name_ok {
                return Err(bad(
                    "nat_override.interface",
                    format!("{:?} is not an interface name", o.interface),
                ));
            }
            let twice = self.nat_override[..i].iter().any(|p| {
                p.interface == o.interface
                    && p.public_address.is_ipv4() == o.public_address.is_ipv4()
            });
            if twice {
                return Err(bad(
                    "nat_override",
                    format!(
                        "interface {:?} has two overrides of the same address family",
                        o.interface
                    ),
                ));
            }
        }
        self.validate_ftps()?;
        if self.status_socket.as_os_str().is_empty() || !self.status_socket.is_absolute() {
            return Err(bad("status_socket", "must be an absolute path"));
        }
        if !["error", "warn", "info", "debug", "trace"].contains(&self.log.level.as_str()) {
            return Err(bad(
                "log.level",
                format!(
                    "{:?} is not one of error, warn, info, debug, trace",
                    self.log.level
                ),
            ));
        }
        Ok(())
    }

    /// `accept_rule_input`/`accept_rule_output` name native chains, so they
    /// go with a native `accept_rule`; with the `local` path on, such a
    /// firewall must name its input chain, or passive transfers to this
    /// host would meet its drop while ftp-alg seemed to work.
    fn validate_accept_rules(&self) -> Result<(), ConfigError> {
        let native = matches!(self.accept_rule, AcceptRule::Nft(_));
        for (key, set) in [
            ("accept_rule_input", self.accept_rule_input.is_some()),
            ("accept_rule_output", self.accept_rule_output.is_some()),
        ] {
            if set && !native {
                return Err(bad(
                    key,
                    "names a native chain, so it needs accept_rule = \"nft FAMILY TABLE CHAIN\" \
                     (with \"iptables\" the rule goes to filter INPUT/OUTPUT by itself)",
                ));
            }
        }
        if native && self.paths.local && self.accept_rule_input.is_none() {
            return Err(bad(
                "accept_rule_input",
                "is missing: paths has \"local\" and accept_rule names a native chain, \
                 so name your input chain too (e.g. \"nft inet filter input\")",
            ));
        }
        Ok(())
    }

    /// `[[ftps]]` and `ftps_control_ports`.
    fn validate_ftps(&self) -> Result<(), ConfigError> {
        if self.ftps_control_ports.contains(&0) {
            return Err(bad("ftps_control_ports", "0 is not a port"));
        }
        if let Some(p) = self
            .ftps_control_ports
            .iter()
            .find(|p| self.control_ports.contains(p))
        {
            // One port cannot be cleartext and TLS from the first byte.
            return Err(bad(
                "ftps_control_ports",
                format!("{p} is in control_ports too"),
            ));
        }
        let servers: Vec<FtpsServer> = self.ftps.iter().map(|&e| e.into()).collect();
        check_entries(&servers, self.policy.allow_privileged_ports)
            .map_err(|e| bad("ftps", e.to_string()))
    }

    /// The server ports whose packets are queued: the control ports, plus
    /// the implicit-TLS ones while `[[ftps]]` is configured.
    pub fn queued_ports(&self) -> Vec<u16> {
        self.engine().followed_ports()
    }

    /// The engine's settings derived from this configuration.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig {
            control_ports: self.control_ports.clone(),
            policy: Policy {
                allow_privileged_ports: self.policy.allow_privileged_ports,
                allow_third_party: self.policy.allow_third_party,
            },
            max_line: self.policy.max_line,
            pinhole_timeout: self.pinhole_timeout,
            max_pinholes_per_session: self.max_pinholes_per_session,
            ftps: self.ftps.iter().map(|&e| e.into()).collect(),
            ftps_control_ports: self.ftps_control_ports.clone(),
            exact_ftps: self.paths.local,
            ..EngineConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
    }

    #[test]
    fn the_documented_example_is_valid_and_default() {
        let text = include_str!("../../deploy/ftp-alg.toml");
        assert_eq!(Config::from_toml(text).unwrap(), Config::default());
    }

    #[test]
    fn keys_are_read() {
        let c = Config::from_toml(
            "control_ports = [21, 2121]\nqueue = 5\npinhole_timeout_secs = 10\n[policy]\nmax_line = 1000\n[log]\nformat = \"json\"\n",
        )
        .unwrap();
        assert_eq!(c.control_ports, vec![21, 2121]);
        assert_eq!(c.queue_num, 5);
        assert_eq!(c.pinhole_timeout, Duration::from_secs(10));
        assert_eq!(c.engine().max_line, 1000);
        assert_eq!(c.log.format, LogFormat::Json);
        let c = Config::from_toml(
            "accept_rule = \"nft inet filter forward\"\n[[nat_override]]\ninterface = \"wan0\"\npublic_address = \"198.51.100.7\"\n[[nat_override]]\ninterface = \"wan0\"\npublic_address = \"2001:db8::7\"\n",
        )
        .unwrap();
        assert_eq!(
            c.accept_rule,
            AcceptRule::Nft(NftChain {
                family: "inet".into(),
                table: "filter".into(),
                chain: "forward".into()
            })
        );
        assert_eq!(c.nat_override.len(), 2);
        assert_eq!(
            c.nat_override[1].public_address,
            "2001:db8::7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            Config::from_toml("accept_rule = \"none\"")
                .unwrap()
                .accept_rule,
            AcceptRule::None
        );
    }

    #[test]
    fn paths_are_read_and_shown() {
        assert_eq!(Config::default().paths.to_string(), "forward");
        let c = Config::from_toml("paths = [\"local\"]").unwrap();
        assert_eq!((c.paths.forward, c.paths.local), (false, true));
        let c = Config::from_toml("paths = [\"local\", \"forward\", \"local\"]").unwrap();
        assert_eq!(c.paths.to_string(), "forward,local");
        assert_eq!("local,forward".parse::<Paths>(), Ok(c.paths));
        assert!("".parse::<Paths>().is_err());
        assert!("forward,,local".parse::<Paths>().is_err());
        let e = "forward,host".parse::<Paths>().unwrap_err();
        assert!(e.contains("\"host\" is not a path"), "{e}");
        let e = Config::from_toml("paths = []").unwrap_err().to_string();
        assert!(e.contains("is empty"), "{e}");
        let c = Config::from_toml(
            "paths = [\"forward\", \"local\"]\naccept_rule = \"nft inet filter forward\"\n\
             accept_rule_input = \"nft inet filter input\"\naccept_rule_output = \"nft ip fw out\"\n",
        )
        .unwrap();
        assert_eq!(c.accept_rule_input.unwrap().chain, "input");
        let out = c.accept_rule_output.unwrap();
        assert_eq!((out.family.as_str(), out.table.as_str()), ("ip", "fw"));
    }

    #[test]
    fn ftps_entries_parse_and_reach_the_engine_and_the_queue() {
        let c = Config::from_toml(
            "ftps_control_ports = [990, 8990]\n\
             [[ftps]]\nserver = \"192.0.2.10\"\npassive_ports = \"50000-50100\"\n\
             [[ftps]]\nserver = \"2001:db8:2::/64\"\npassive_ports = \"40000-40100\"\n",
        )
        .unwrap();
        assert_eq!(c.ftps.len(), 2);
        assert_eq!(c.ftps[1].server.to_string(), "2001:db8:2::/64");
        let e = c.engine();
        assert_eq!(
            e.ftps[0].passive_ports,
            PortRange {
                low: 50000,
                high: 50100
            }
        );
        assert_eq!(e.ftps_control_ports, [990, 8990]);
        assert_eq!(c.queued_ports(), [21, 990, 8990]);
        // Without [[ftps]] the implicit ports are not queued, unless the
        // local path gives local FTPS servers exact pinholes.
        assert_eq!(Config::default().queued_ports(), [21]);
        let local = Config::from_toml("paths = [\"local\"]").unwrap();
        assert_eq!(local.queued_ports(), [21, 990]);
        // A privileged range with the policy that allows it.
        let low = "[policy]\nallow_privileged_ports = true\n[[ftps]]\nserver = \"192.0.2.10\"\npassive_ports = \"1000-2000\"\n";
        assert!(Config::from_toml(low).is_ok());
    }

    #[test]
    fn errors_name_the_key() {
        for (text, key) in [
            ("contol_ports = [21]", "contol_ports"),
            ("queue = \"x\"", "queue"),
            ("queue = 70000", "queue"),
            ("queues = 0", "queues"),
            ("busy_poll_us = 20000", "busy_poll_us"),
            ("queue = 65535\nqueues = 2", "queues"),
            ("control_ports = []", "control_ports"),
            ("pinhole_timeout_secs = 0", "pinhole_timeout_secs"),
            ("[policy]\nmax_line = 1", "policy.max_line"),
            ("[policy]\nallow_bounce = true", "allow_bounce"),
            ("[log]\nlevel = \"loud\"", "log.level"),
            ("ct_mark = 0", "ct_mark"),
            ("[durable]\nlabel_first_bit = 13", "durable.label_first_bit"),
            ("[durable]\nedited_mark = 3", "durable.edited_mark"),
            ("[durable]\nseen_mark = 0", "durable.seen_mark"),
            ("[durable]\nedited_mark = 0x01000000", "durable.edited_mark"),
            ("metrics_address = \"localhost\"", "metrics_address"),
            ("status_socket = \"rel.sock\"", "status_socket"),
            ("accept_rule = \"forward\"", "accept_rule"),
            ("accept_rule = \"nft bridge filter forward\"", "accept_rule"),
            ("accept_rule = \"nft inet fil;ter forward\"", "accept_rule"),
            ("paths = []", "paths"),
            ("paths = [\"forward\", \"host\"]", "paths"),
            ("paths = \"local\"", "paths"),
            ("accept_rule_input = \"nft inet filter input\"", "accept_rule_input"),
            ("accept_rule = \"none\"\naccept_rule_output = \"nft inet filter output\"", "accept_rule_output"),
            ("accept_rule_input = \"inet filter input\"", "accept_rule_input"),
            ("paths = [\"local\"]\naccept_rule = \"nft inet filter forward\"", "accept_rule_input"),
            ("[[nat_override]]\ninterface = \"\"\npublic_address = \"192.0.2.1\"", "nat_override.interface"),
            ("[[nat_override]]\ninterface = \"wan0\"\npublic_address = \"wan\"", "public_address"),
            ("[[nat_override]]\ninterface = \"wan0\"\nip = \"192.0.2.1\"", "ip"),
            ("[[nat_override]]\ninterface = \"w\"\npublic_address = \"192.0.2.1\"\n[[nat_override]]\ninterface = \"w\"\npublic_address = \"192.0.2.2\"", "nat_override"),
            ("[[ftps]]\nserver = \"192.0.2.10\"\npassive_ports = \"50100-50000\"", "passive_ports"),
            ("[[ftps]]\nserver = \"192.0.2.10\"\npassive_ports = \"50000\"\nports = 1", "ports"),
            ("[[ftps]]\nserver = \"192.0.2.10/33\"\npassive_ports = \"50000-50100\"", "server"),
            ("[[ftps]]\nserver = \"ftp.example\"\npassive_ports = \"50000-50100\"", "server"),
            ("[[ftps]]\nserver = \"192.0.2.10\"", "passive_ports"),
            ("[[ftps]]\nserver = \"192.0.2.10\"\npassive_ports = \"1000-2000\"", "allow_privileged_ports"),
            ("[[ftps]]\nserver = \"192.0.2.0/24\"\npassive_ports = \"50000-50100\"\n[[ftps]]\nserver = \"192.0.2.10\"\npassive_ports = \"40000-40100\"", "overlap"),
            ("ftps_control_ports = [21]", "ftps_control_ports"),
            ("ftps_control_ports = [0]", "ftps_control_ports"),
        ] {
            let e = Config::from_toml(text).unwrap_err();
            assert!(e.to_string().contains(key), "{text:?} gave {e}");
        }
    }
}
