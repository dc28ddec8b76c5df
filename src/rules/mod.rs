//! Installs, removes and prints every firewall rule ftp-alg needs (shell).
//!
//! Three pieces, all derived from [`Config`]:
//!
//! 1. ftp-alg's own nftables table `inet ftp_alg`: the pinhole sets and DNAT
//!    maps that the netlink backend fills at run time, and the two chains that
//!    consume them. It is loaded with one `nft -f -` at start-up.
//! 2. The queue rules that send FTP control packets to NFQUEUE. Their hooks
//!    are not a matter of taste: client->server packets are queued before
//!    conntrack (prerouting, priority raw) and server->client packets after
//!    conntrack and DNAT (forward, priority mangle), so that conntrack sees
//!    each direction's sequence numbers and the other direction's
//!    acknowledgements in one sequence space after a length-changing rewrite.
//!    Kernels with nftables' native `queue` get two more chains in our table;
//!    kernels without it (CONFIG_NFT_QUEUE off) get the xtables NFQUEUE
//!    target through iptables-nft / ip6tables-nft.
//! 3. One accept rule in the admin's iptables-nft `filter FORWARD` chain, because
//!    an accept in our own table cannot override a drop in theirs.
//!
//! Removal restores the ruleset exactly: `nft list ruleset` after
//! [`Installed::remove`] is the text it was before [`install`]. That includes
//! the tables and chains iptables-nft creates implicitly when a rule is
//! inserted into a table or builtin chain that did not exist yet.
//!
//! Every command is run with [`std::process::Command`] (no shell); spawning
//! `nft`/`iptables` is fine at start-up and exit, never per data connection.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::config::{AcceptRule, Config, NftChain, RULE_COMMENT, TABLE_NAME};

/// Name of the throw-away table used to probe for native `queue` support.
const PROBE_TABLE: &str = "ftp_alg_probe";

/// The xtables `multiport` match takes at most 15 ports per rule.
const MULTIPORT_MAX: usize = 15;

/// iptables-nft tables that ftp-alg's queue rules may create implicitly and
/// that must therefore be put back the way they were at removal.
const QUEUE_TABLES: [&str; 2] = ["raw", "mangle"];

/// A command that failed, with what it said: enough to act on from a log line.
#[derive(Debug)]
pub struct RulesetError {
    /// The command line as it would be typed (for the log, not for a shell).
    command: String,
    /// Exit status, when the command ran.
    status: Option<ExitStatus>,
    /// Captured standard error (or the reason, when nothing ran).
    stderr: String,
    /// Why the command could not be started, when it could not.
    source: Option<std::io::Error>,
}

impl RulesetError {
    /// The failing command line, e.g. `nft -f -`.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Exit status of the command, or `None` when it could not be started
    /// (or when the error is not about a command, e.g. an invalid config).
    pub fn status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// What the command wrote to standard error, trimmed.
    pub fn stderr(&self) -> &str {
        &self.stderr
    }

    /// An error that is not a command's failure (bad configuration, a missing
    /// program); `what` takes the place of the command line.
    fn other(what: &str, reason: impl Into<String>) -> Self {
        RulesetError {
            command: what.to_string(),
            status: None,
            stderr: reason.into(),
            source: None,
        }
    }
}

impl fmt::Display for RulesetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` failed", self.command)?;
        if let Some(status) = self.status {
            write!(f, " ({status})")?;
        }
        if let Some(e) = &self.source {
            write!(f, ": {e}")?;
        }
        if !self.stderr.is_empty() {
            write!(f, ": {}", self.stderr)?;
        }
        Ok(())
    }
}

impl std::error::Error for RulesetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// How control packets reach NFQUEUE on this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueBackend {
    /// nftables' own `queue` statement, in two chains of ftp-alg's table.
    Native,
    /// The xtables NFQUEUE target, through iptables-nft and ip6tables-nft
    /// (for kernels built without CONFIG_NFT_QUEUE).
    Xtables,
}

/// Finds out whether nftables' native `queue` statement works here.
///
/// First asks the kernel in check mode (`nft -c -f -`, nothing is changed):
/// success means native; an error that points at the `queue` expression with
/// ENOENT/EOPNOTSUPP means no native support. Any other failure leaves the
/// question open, so the probe is loaded for real into a throw-away table,
/// which is deleted again. Anything that still fails means [`QueueBackend::Xtables`].
pub fn detect_queue_backend() -> QueueBackend {
    let probe = format!(
        "table inet {PROBE_TABLE} {{\n\
         \tchain probe {{\n\
         \t\ttype filter hook prerouting priority raw; policy accept;\n\
         \t\ttcp dport 21 queue num 21 bypass\n\
         \t}}\n\
         }}\n"
    );
    match run("nft", &["-c", "-f", "-"], Some(&probe)) {
        Ok(_) => {
            tracing::debug!("nft check mode accepts a queue rule: native queue");
            return QueueBackend::Native;
        }
        Err(e) if says_queue_unsupported(e.stderr()) => {
            tracing::debug!("nft check mode rejects a queue rule: xtables NFQUEUE ({e})");
            return QueueBackend::Xtables;
        }
        Err(e) => {
            tracing::debug!("nft check mode inconclusive ({e}); trying a throw-away table");
        }
    }
    match run("nft", &["-f", "-"], Some(&probe)) {
        Ok(_) => {
            if let Err(e) = run("nft", &["delete", "table", "inet", PROBE_TABLE], None) {
                tracing::warn!("could not delete the probe table inet {PROBE_TABLE}: {e}");
            }
            QueueBackend::Native
        }
        Err(e) => {
            tracing::debug!("a queue rule does not load: xtables NFQUEUE ({e})");
            QueueBackend::Xtables
        }
    }
}

/// True when nft's error output blames the `queue` statement on missing
/// kernel support (the module is not built: ENOENT, or EOPNOTSUPP).
fn says_queue_unsupported(stderr: &str) -> bool {
    let missing =
        stderr.contains("No such file or directory") || stderr.contains("Operation not supported");
    missing && stderr.contains("queue")
}

/// The queue numbers as nft writes them: `21`, or `21-24` for 4 queues.
pub fn queue_range(cfg: &Config) -> String {
    if cfg.queues > 1 {
        format!("{}-{}", cfg.queue_num, cfg.queue_num + (cfg.queues - 1))
    } else {
        cfg.queue_num.to_string()
    }
}

/// Text for `nft -f` of ftp-alg's table (with the native queue chains when
/// backend is Native).
///
/// The sets and maps are empty; the pinhole backend adds elements with a
/// timeout. The chain `pinholes` consumes a pinhole on first use, marks
/// that one connection with `ct_mark` (which the admin's filter accepts) and
/// applies the pinhole's DNAT.
///
/// It hooks NAT prerouting, which the kernel runs only for the first packet
/// of a connection: established data packets never cross a chain of
/// ftp-alg's. A forward filter chain would cost every forwarded packet a
/// hook traversal, measured as up to 6% of bulk throughput (issue 4). Its
/// priority, before the admin's DNAT (dstnat), matches the pinhole on the
/// addresses as announced, and sets the mark long before their filter
/// looks at it.
pub fn table_text(cfg: &Config, backend: QueueBackend) -> String {
    let mark = format!("{:#010x}", cfg.ct_mark);
    let mut t = String::new();
    t.push_str(&format!("table inet {TABLE_NAME} {{\n"));
    t.push_str(
        "\tset pin4 {\n\
         \t\ttype ipv4_addr . ipv4_addr . inet_service\n\
         \t\tflags dynamic,timeout\n\
         \t}\n\
         \tset pin6 {\n\
         \t\ttype ipv6_addr . ipv6_addr . inet_service\n\
         \t\tflags dynamic,timeout\n\
         \t}\n\
         \tmap dnat4 {\n\
         \t\ttype ipv4_addr . ipv4_addr . inet_service : ipv4_addr . inet_service\n\
         \t\tflags timeout\n\
         \t}\n\
         \tmap dnat6 {\n\
         \t\ttype ipv6_addr . ipv6_addr . inet_service : ipv6_addr . inet_service\n\
         \t\tflags timeout\n\
         \t}\n",
    );
    // Mark first: `dnat` ends the chain. (Chain names `dnat`/`forward`
    // would collide with nft keywords.)
    t.push_str(&format!(
        "\tchain pinholes {{\n\
         \t\ttype nat hook prerouting priority dstnat - 10; policy accept;\n\
         \t\tip saddr . ip daddr . tcp dport @pin4 delete @pin4 {{ ip saddr . ip daddr . tcp dport }} ct mark set ct mark | {mark}\n\
         \t\tip6 saddr . ip6 daddr . tcp dport @pin6 delete @pin6 {{ ip6 saddr . ip6 daddr . tcp dport }} ct mark set ct mark | {mark}\n\
         \t\tdnat ip to ip saddr . ip daddr . tcp dport map @dnat4\n\
         \t\tdnat ip6 to ip6 saddr . ip6 daddr . tcp dport map @dnat6\n\
         \t}}\n"
    ));
    if backend == QueueBackend::Native {
        let ports = nft_ports(&cfg.control_ports);
        let q = queue_range(cfg);
        let bypass = if cfg.queue_bypass { " bypass" } else { "" };
        t.push_str(&format!(
            "\tchain queue_to_server {{\n\
             \t\ttype filter hook prerouting priority raw; policy accept;\n\
             \t\ttcp dport {ports} queue num {q}{bypass}\n\
             \t}}\n\
             \tchain queue_to_client {{\n\
             \t\ttype filter hook forward priority mangle; policy accept;\n\
             \t\ttcp sport {ports} queue num {q}{bypass}\n\
             \t}}\n"
        ));
    }
    t.push_str("}\n");
    t
}

/// What `ftp-alg rules` prints: for an iptables-nft gateway (table text +
/// iptables/ip6tables commands + accept rule) and for a native nftables
/// gateway (table text with queue chains + the one-line accept rule to add to
/// the admin's own forward chain, e.g.
/// `ct state new ct mark & 0x01000000 == 0x01000000 accept`). Readable,
/// commented with `#` lines.
pub fn describe(cfg: &Config) -> String {
    let ports = dedup_ports(&cfg.control_ports);
    let port_list: Vec<String> = ports.iter().map(u16::to_string).collect();
    let mark = format!("{:#010x}", cfg.ct_mark);
    let mut s = String::new();
    s.push_str(&format!(
        "# Rules ftp-alg needs (control ports {}, queue {}, conntrack mark {mark}).\n\
         # With install_rules = true ftp-alg installs them itself at start and\n\
         # removes them at exit; otherwise install the variant that fits this gateway.\n\
         #\n",
        port_list.join(", "),
        queue_range(cfg)
    ));

    s.push_str(
        "# ===== Variant 1: the firewall is iptables-nft (iptables 1.8+, \"nf_tables\") =====\n\
         # This variant also fits kernels built without nftables' native queue.\n\
         #\n\
         # 1.1 ftp-alg's own table: pinhole sets, DNAT maps and the chains using them.\n\
         #     Load it with: nft -f FILE\n",
    );
    s.push_str(&table_text(cfg, QueueBackend::Xtables));
    s.push_str(
        "#\n\
         # 1.2 Queue the FTP control packets to ftp-alg. Client->server packets are\n\
         #     queued before conntrack (raw PREROUTING), server->client packets after\n\
         #     conntrack and DNAT (mangle FORWARD): this split keeps conntrack's view\n\
         #     of the TCP sequence numbers consistent after a rewrite changes a length.\n\
         #     --queue-bypass lets the packets pass while ftp-alg is not running.\n",
    );
    for fam in [Family::V4, Family::V6] {
        for r in queue_rules(cfg, fam) {
            s.push_str(&shell_line(fam.iptables_name(), &r.insert_args()));
        }
    }
    s.push_str(
        "#\n\
         # 1.3 Accept the pinholed data connections: first in filter FORWARD, before any\n\
         #     drop (ftp-alg marks exactly one NEW connection per pinhole).\n",
    );
    for fam in [Family::V4, Family::V6] {
        s.push_str(&shell_line(
            fam.iptables_name(),
            &accept_rule(cfg, fam).insert_args(),
        ));
    }

    s.push_str(
        "#\n\
         # ===== Variant 2: the firewall is native nftables (and the kernel has `queue`) =====\n\
         #\n\
         # 2.1 ftp-alg's table, including the two queue chains (same hooks and reasons\n\
         #     as in 1.2). Load it with: nft -f FILE\n",
    );
    s.push_str(&table_text(cfg, QueueBackend::Native));
    s.push_str(
        "#\n\
         # 2.2 Add this rule to your own forward filter chain, before any rule that drops\n\
         #     (or let ftp-alg insert it there: accept_rule = \"nft inet filter forward\"):\n",
    );
    s.push_str(&format!("ct state new ct mark & {mark} == {mark} accept\n"));
    s
}

/// One of the rule files in `deploy/rules/`, for an admin who manages the
/// rules (`install_rules = false`). `ftp-alg rules --file NAME` prints it
/// for the configuration in force; the shipped files are for the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeployFile {
    /// iptables-nft gateway: ftp-alg's table, for `nft -f`.
    IptablesTable,
    /// iptables-nft gateway: IPv4 rules, for `iptables-restore --noflush`.
    IptablesV4,
    /// iptables-nft gateway: IPv6 rules, for `ip6tables-restore --noflush`.
    IptablesV6,
    /// Native nftables gateway: ftp-alg's table with its queue chains.
    Nftables,
}

impl DeployFile {
    /// Every file, with its name under `deploy/rules/`.
    pub const ALL: [(&'static str, DeployFile); 4] = [
        ("iptables-nft.nft", DeployFile::IptablesTable),
        ("iptables-nft.rules.v4", DeployFile::IptablesV4),
        ("iptables-nft.rules.v6", DeployFile::IptablesV6),
        ("nftables.nft", DeployFile::Nftables),
    ];

    /// The file's name under `deploy/rules/`.
    pub fn name(self) -> &'static str {
        DeployFile::ALL
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
            .expect("every variant is listed")
    }
}

/// The text of one deploy file for `cfg`.
pub fn deploy_file(cfg: &Config, file: DeployFile) -> String {
    let mark = format!("{:#010x}", cfg.ct_mark);
    let header = |what: &str, load: &str| {
        format!(
            "# {} -- generated by `ftp-alg rules --file {}`\n\
             # {what}\n\
             # Load: {load}\n\
             # Use with install_rules = false (ftp-alg --no-install-rules), and load\n\
             # it again after changing control_ports, queue, queue_bypass or ct_mark.\n",
            file.name(),
            file.name()
        )
    };
    // Loading again replaces the table as one transaction instead of
    // appending a second copy of every rule.
    let replace = format!("table inet {TABLE_NAME}\ndelete table inet {TABLE_NAME}\n");
    match file {
        DeployFile::IptablesTable => {
            header(
                "iptables-nft gateway, 1 of 3: ftp-alg's table (pinhole sets, DNAT maps, the chains using them).",
                "nft -f iptables-nft.nft   (first; then the two iptables-restore files)",
            ) + &replace
                + &table_text(cfg, QueueBackend::Xtables)
        }
        DeployFile::IptablesV4 | DeployFile::IptablesV6 => {
            let (fam, n, tool) = if file == DeployFile::IptablesV4 {
                (Family::V4, 2, "iptables-restore")
            } else {
                (Family::V6, 3, "ip6tables-restore")
            };
            let mut t = header(
                &format!(
                    "iptables-nft gateway, {n} of 3: queue rules (raw PREROUTING to the server, mangle\n\
                     # FORWARD to the client) and the accept rule, first in filter FORWARD, for\n\
                     # new connections ftp-alg's pinholes marked {mark}."
                ),
                &format!("{tool} --noflush < {}", file.name()),
            );
            let mut rules = queue_rules(cfg, fam);
            rules.push(accept_rule(cfg, fam));
            for table in ["raw", "mangle", "filter"] {
                t.push_str(&format!("*{table}\n"));
                for r in rules.iter().filter(|r| r.table == table) {
                    // insert_args without the leading `-t TABLE`.
                    t.push_str(shell_line("", &r.insert_args()[2..]).trim_start());
                }
                t.push_str("COMMIT\n");
            }
            t
        }
        DeployFile::Nftables => {
            header(
                "native nftables gateway: ftp-alg's table, with its two queue chains.",
                "nft -f nftables.nft",
            ) + &format!(
                "# Then accept the marked connections in your own forward filter chain, before\n\
                 # any rule that drops (or set accept_rule = \"nft FAMILY TABLE CHAIN\"):\n\
                 #   ct state new ct mark & {mark} == {mark} accept\n"
            ) + &replace
                + &table_text(cfg, QueueBackend::Native)
        }
    }
}

/// Installs everything; returns a record of what to undo.
///
/// Order: stale leftovers of a killed instance are removed first (logged as
/// warnings), then ftp-alg's table, the accept rules, and the queue rules last
/// (so no packet is queued before the rest is in place). All-or-nothing: if a
/// step fails, the steps before it are undone and the first error returned.
///
/// Does not look at `cfg.install_rules`; the caller decides whether to call it.
pub fn install(cfg: &Config) -> Result<Installed, RulesetError> {
    validate(cfg)?;
    let backend = detect_queue_backend();
    let tools = Tools::discover();
    if backend == QueueBackend::Xtables && (tools.ipt4.is_none() || tools.ipt6.is_none()) {
        return Err(RulesetError::other(
            "iptables-nft",
            "the kernel has no native nftables queue and iptables-nft/ip6tables-nft \
             were not found (iptables must be the nf_tables variant)",
        ));
    }
    remove_stale_with(cfg, &tools)?;

    let mut inst = Installed {
        backend,
        tools,
        before: snapshot(),
        table: false,
        rules: Vec::new(),
        nft_accept: None,
        done: false,
    };
    tracing::info!(?backend, "installing ftp-alg rules");
    match inst.install_steps(cfg) {
        Ok(()) => Ok(inst),
        Err(e) => {
            tracing::error!("installing ftp-alg rules failed, undoing: {e}");
            if let Err(undo) = inst.undo() {
                tracing::error!("undoing a failed install also failed: {undo}");
            }
            Err(e)
        }
    }
}

/// Removes what a killed instance of ftp-alg left behind: the table
/// `inet ftp_alg` and every iptables-nft rule commented `ftp-alg`; then any
/// `raw`/`mangle` chain those rules leave empty (policy accept) and such a
/// table left with nothing in it, since iptables-nft created them implicitly.
/// Where iptables cannot list a table (it holds rules iptables cannot parse),
/// the rules `cfg` would produce are deleted by their spec instead.
/// Returns whether anything was found. [`install`] calls this itself.
pub fn remove_stale(cfg: &Config) -> Result<bool, RulesetError> {
    remove_stale_with(cfg, &Tools::discover())
}

/// What [`install`] put in place, so that exactly that can be taken out again.
///
/// Dropping it without calling [`Installed::remove`] removes the rules too
/// (errors are only logged); `std::mem::forget` leaves them in place, as a
/// killed daemon would.
#[derive(Debug)]
pub struct Installed {
    /// How the queue rules were installed.
    backend: QueueBackend,
    /// The iptables-nft binaries found at install time.
    tools: Tools,
    /// The iptables-nft `raw`/`mangle` tables before install, to delete the
    /// ones (and the builtin chains) that iptables-nft created implicitly.
    before: Vec<TableSnapshot>,
    /// Whether our table was loaded.
    table: bool,
    /// The iptables rules inserted, in insertion order.
    rules: Vec<(Family, XtRule)>,
    /// The accept rule inserted into the admin's nftables chain
    /// (`accept_rule = "nft ..."`), with its handle.
    nft_accept: Option<(NftChain, u64)>,
    /// Set once removed, so that `Drop` does not remove twice.
    done: bool,
}

impl Installed {
    /// Removes everything [`install`] added and whatever iptables-nft created
    /// implicitly, leaving `nft list ruleset` as it was before. Keeps going
    /// after a failure and returns the first error.
    pub fn remove(mut self) -> Result<(), RulesetError> {
        tracing::info!("removing ftp-alg rules");
        self.undo()
    }

    /// How the queue rules were installed.
    pub fn backend(&self) -> QueueBackend {
        self.backend
    }

    fn install_steps(&mut self, cfg: &Config) -> Result<(), RulesetError> {
        run("nft", &["-f", "-"], Some(&table_text(cfg, self.backend)))?;
        self.table = true;

        match &cfg.accept_rule {
            AcceptRule::Iptables => self.insert_iptables_accept(cfg)?,
            AcceptRule::None => tracing::info!(
                "accept_rule = \"none\": your forward chain must accept new connections \
                 marked {m:#010x} (`ct state new ct mark & {m:#010x} == {m:#010x} accept`)",
                m = cfg.ct_mark
            ),
            AcceptRule::Nft(at) => {
                let handle = insert_nft_accept(cfg, at)?;
                self.nft_accept = Some((at.clone(), handle));
            }
        }

        if self.backend == QueueBackend::Xtables {
            for fam in [Family::V4, Family::V6] {
                for r in queue_rules(cfg, fam) {
                    self.insert(fam, r)?;
                }
            }
        }
        Ok(())
    }

    /// `accept_rule = "iptables"`: first in filter FORWARD of each family
    /// whose chain exists.
    fn insert_iptables_accept(&mut self, cfg: &Config) -> Result<(), RulesetError> {
        let mut accepted = false;
        for fam in [Family::V4, Family::V6] {
            // Never create the admin's filter table: no FORWARD chain there
            // means iptables-nft is not what filters forwarded traffic.
            if !nft_ok(&["list", "chain", fam.nft_family(), "filter", "FORWARD"]) {
                continue;
            }
            if self.tools.get(fam).is_err() {
                // A hand-written nft table may use these names too; without
                // iptables-nft we cannot manage a rule there. Say so instead
                // of refusing to start.
                tracing::warn!(
                    "{} filter FORWARD exists but {}-nft was not found; add the accept \
                     rule yourself (see `ftp-alg rules`)",
                    fam.nft_family(),
                    fam.iptables_name()
                );
                continue;
            }
            self.insert(fam, accept_rule(cfg, fam))?;
            accepted = true;
        }
        if !accepted {
            tracing::info!(
                "no iptables-nft filter FORWARD chain; if your firewall drops forwarded \
                 traffic, add to its forward chain: ct state new ct mark & {m:#010x} == {m:#010x} accept",
                m = cfg.ct_mark
            );
        }

        Ok(())
    }

    fn insert(&mut self, fam: Family, rule: XtRule) -> Result<(), RulesetError> {
        let bin = self.tools.get(fam)?;
        run(bin, &strs(&rule.insert_args()), None)?;
        self.rules.push((fam, rule));
        Ok(())
    }

    /// Undoes in reverse order of installation: queue rules, accept rules,
    /// table, then the tables/chains iptables-nft created.
    fn undo(&mut self) -> Result<(), RulesetError> {
        self.done = true;
        let mut first: Option<RulesetError> = None;
        let mut note = |r: Result<(), RulesetError>| {
            if let Err(e) = r {
                tracing::error!("{e}");
                first.get_or_insert(e);
            }
        };
        while let Some((fam, rule)) = self.rules.pop() {
            note(
                self.tools
                    .get(fam)
                    .and_then(|bin| run(bin, &strs(&rule.delete_args()), None).map(drop)),
            );
        }
        if let Some((at, handle)) = self.nft_accept.take() {
            note(delete_nft_rule(&at, handle));
        }
        if self.table {
            self.table = false;
            note(run("nft", &["delete", "table", "inet", TABLE_NAME], None).map(drop));
        }
        for snap in &self.before {
            note(restore_table(snap));
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if !self.done {
            tracing::warn!("ftp-alg rules dropped without remove(); removing them now");
            // Errors are logged by undo(); nothing else can be done in drop.
            let _ = self.undo();
        }
    }
}

/// The accept rule in nft syntax, commented so that a stale copy can be
/// found again.
fn nft_accept_rule(cfg: &Config) -> String {
    format!(
        "ct state new ct mark & {m:#010x} == {m:#010x} counter accept comment \"{RULE_COMMENT}\"",
        m = cfg.ct_mark
    )
}

/// Inserts the accept rule first in `at` and returns its handle (to delete
/// exactly that rule at exit). The chain must exist: ftp-alg never creates
/// the admin's filter chain.
fn insert_nft_accept(cfg: &Config, at: &NftChain) -> Result<u64, RulesetError> {
    let text = format!(
        "insert rule {} {} {} {}\n",
        at.family,
        at.table,
        at.chain,
        nft_accept_rule(cfg)
    );
    let echoed = run("nft", &["--echo", "--handle", "-f", "-"], Some(&text))?;
    parse_handle(&echoed).ok_or_else(|| {
        RulesetError::other(
            "nft --echo",
            format!("no rule handle in its output: {echoed:?}"),
        )
    })
}

/// The number after the last `# handle ` in nft's output.
fn parse_handle(nft_output: &str) -> Option<u64> {
    let (_, rest) = nft_output.rsplit_once("# handle ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// `nft delete rule FAMILY TABLE CHAIN handle HANDLE`.
fn delete_nft_rule(at: &NftChain, handle: u64) -> Result<(), RulesetError> {
    let handle = handle.to_string();
    let args = [
        "delete", "rule", &at.family, &at.table, &at.chain, "handle", &handle,
    ];
    run("nft", &args, None).map(drop)
}

/// Deletes every rule commented `ftp-alg` from `at` (left by a killed
/// instance); true if any was there. A missing chain has none.
fn remove_stale_nft_accept(at: &NftChain) -> Result<bool, RulesetError> {
    let Ok(listing) = run(
        "nft",
        &["-a", "list", "chain", &at.family, &at.table, &at.chain],
        None,
    ) else {
        return Ok(false);
    };
    let marker = format!("comment \"{RULE_COMMENT}\"");
    let mut found = false;
    for line in listing.lines().filter(|l| l.contains(&marker)) {
        let Some(handle) = parse_handle(line) else {
            continue;
        };
        tracing::warn!(
            "removing stale ftp-alg rule in {} {} {} (handle {handle})",
            at.family,
            at.table,
            at.chain
        );
        delete_nft_rule(at, handle)?;
        found = true;
    }
    Ok(found)
}

/// Rejects configurations that would produce a broken ruleset.
fn validate(cfg: &Config) -> Result<(), RulesetError> {
    cfg.validate()
        .map_err(|e| RulesetError::other("config", e.to_string()))
}

/// Address family of an iptables-nft command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn nft_family(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    /// Name used in printed commands (the admin's `iptables` is the nft one
    /// on the gateways variant 1 is for).
    fn iptables_name(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }
}

/// The iptables-nft binaries, found once per install.
#[derive(Debug)]
struct Tools {
    ipt4: Option<PathBuf>,
    ipt6: Option<PathBuf>,
}

impl Tools {
    fn discover() -> Tools {
        Tools {
            ipt4: find_xtables("iptables"),
            ipt6: find_xtables("ip6tables"),
        }
    }

    fn get(&self, fam: Family) -> Result<&Path, RulesetError> {
        let p = match fam {
            Family::V4 => &self.ipt4,
            Family::V6 => &self.ipt6,
        };
        p.as_deref().ok_or_else(|| {
            RulesetError::other(
                &format!("{}-nft", fam.iptables_name()),
                "not found (and the plain binary is not the nf_tables variant)",
            )
        })
    }
}

/// `NAME-nft` if present, else `NAME` if `NAME --version` says nf_tables:
/// the legacy variant would write to tables that `nft` cannot see or restore.
fn find_xtables(name: &str) -> Option<PathBuf> {
    if let Some(p) = find_in_path(&format!("{name}-nft")) {
        return Some(p);
    }
    let p = find_in_path(name)?;
    match run(&p, &["--version"], None) {
        Ok(v) if v.contains("nf_tables") => Some(p),
        Ok(v) => {
            tracing::debug!("{} is not iptables-nft: {}", p.display(), v.trim());
            None
        }
        Err(_) => None,
    }
}

/// Looks a program up in `PATH` plus the sbin directories (a daemon's PATH
/// may lack them).
fn find_in_path(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(prog))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// One iptables rule: where it goes and its match/target spec. The same spec
/// is used for `-I` and `-D`, so removal deletes exactly this rule.
#[derive(Clone, Debug, PartialEq, Eq)]
struct XtRule {
    table: &'static str,
    chain: &'static str,
    /// `Some(1)` for "must come first" (`-I CHAIN 1`); `None` inserts at the
    /// head too, without a number.
    position: Option<u32>,
    spec: Vec<String>,
}

impl XtRule {
    fn insert_args(&self) -> Vec<String> {
        let mut a = vec![
            "-t".to_string(),
            self.table.to_string(),
            "-I".to_string(),
            self.chain.to_string(),
        ];
        if let Some(n) = self.position {
            a.push(n.to_string());
        }
        a.extend(self.spec.iter().cloned());
        a
    }

    fn delete_args(&self) -> Vec<String> {
        let mut a = vec![
            "-t".to_string(),
            self.table.to_string(),
            "-D".to_string(),
            self.chain.to_string(),
        ];
        a.extend(self.spec.iter().cloned());
        a
    }
}

/// The xtables queue rules for one family (see the module doc for why these
/// hooks). Several ports use `multiport`, 15 ports per rule at most.
fn queue_rules(cfg: &Config, _fam: Family) -> Vec<XtRule> {
    let ports = dedup_ports(&cfg.control_ports);
    let mut out = Vec::new();
    for (table, chain, dir) in [("raw", "PREROUTING", "d"), ("mangle", "FORWARD", "s")] {
        for chunk in ports.chunks(MULTIPORT_MAX) {
            let mut spec = vec!["-p".to_string(), "tcp".to_string()];
            if let [one] = chunk {
                spec.push(format!("--{dir}port"));
                spec.push(one.to_string());
            } else {
                let list: Vec<String> = chunk.iter().map(u16::to_string).collect();
                spec.extend(["-m".to_string(), "multiport".to_string()]);
                spec.push(format!("--{dir}ports"));
                spec.push(list.join(","));
            }
            spec.extend(comment_spec());
            spec.extend(["-j", "NFQUEUE"].map(String::from));
            // Several queues: the kernel picks one per flow by a hash of
            // its addresses (each direction always hashes alike, so its
            // packets stay in order; the workers share the engine).
            if cfg.queues > 1 {
                spec.push("--queue-balance".to_string());
                spec.push(queue_range(cfg).replace('-', ":"));
            } else {
                spec.push("--queue-num".to_string());
                spec.push(cfg.queue_num.to_string());
            }
            if cfg.queue_bypass {
                // Let control traffic pass (unhelped) while ftp-alg is down.
                spec.push("--queue-bypass".to_string());
            }
            out.push(XtRule {
                table,
                chain,
                position: None,
                spec,
            });
        }
    }
    out
}

/// The accept rule for the admin's filter FORWARD chain.
fn accept_rule(cfg: &Config, _fam: Family) -> XtRule {
    let m = format!("{:#x}/{:#x}", cfg.ct_mark, cfg.ct_mark);
    let mut spec: Vec<String> = [
        "-m",
        "conntrack",
        "--ctstate",
        "NEW",
        "-m",
        "connmark",
        "--mark",
    ]
    .map(String::from)
    .to_vec();
    spec.push(m);
    spec.extend(comment_spec());
    spec.extend(["-j", "ACCEPT"].map(String::from));
    XtRule {
        table: "filter",
        chain: "FORWARD",
        position: Some(1),
        spec,
    }
}

fn comment_spec() -> [String; 4] {
    ["-m", "comment", "--comment", RULE_COMMENT].map(String::from)
}

/// Ports in configured order, without repeats (nft rejects a repeated
/// element in an anonymous set).
fn dedup_ports(ports: &[u16]) -> Vec<u16> {
    let mut seen = BTreeSet::new();
    ports.iter().copied().filter(|p| seen.insert(*p)).collect()
}

/// `21` or `{ 21, 2121 }`.
fn nft_ports(ports: &[u16]) -> String {
    let ports = dedup_ports(ports);
    if let [one] = ports.as_slice() {
        one.to_string()
    } else {
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        format!("{{ {} }}", list.join(", "))
    }
}

/// State of one iptables-nft table (`raw`/`mangle`) before install.
#[derive(Clone, Debug, PartialEq, Eq)]
struct TableSnapshot {
    family: Family,
    table: &'static str,
    /// `None` when the table did not exist; else the chain names.
    chains: Option<Vec<String>>,
}

fn snapshot() -> Vec<TableSnapshot> {
    let mut out = Vec::new();
    for family in [Family::V4, Family::V6] {
        for table in QUEUE_TABLES {
            let chains =
                list_table(family, table).map(|t| t.chains.into_iter().map(|c| c.name).collect());
            out.push(TableSnapshot {
                family,
                table,
                chains,
            });
        }
    }
    out
}

/// Deletes the chains of `snap`'s table that did not exist before and are
/// empty now, then the table if it did not exist before and is empty now.
/// Anything with rules in it (someone else's) stays.
fn restore_table(snap: &TableSnapshot) -> Result<(), RulesetError> {
    let Some(now) = list_table(snap.family, snap.table) else {
        return Ok(());
    };
    let existed = |name: &str| {
        snap.chains
            .as_ref()
            .is_some_and(|c| c.iter().any(|n| n == name))
    };
    let new_chains: Vec<&ChainState> = now.chains.iter().filter(|c| !existed(&c.name)).collect();
    delete_empty(
        snap.family,
        snap.table,
        &now,
        &new_chains,
        snap.chains.is_none(),
    )
}

/// Deletes `chains` of `table` that are empty with policy accept, then the
/// table itself if `table_too` and nothing else is left in it.
fn delete_empty(
    family: Family,
    table: &str,
    now: &TableState,
    chains: &[&ChainState],
    table_too: bool,
) -> Result<(), RulesetError> {
    let fam = family.nft_family();
    let mut deleted = 0;
    for c in chains {
        if c.rules == 0 && c.policy_accept {
            run("nft", &["delete", "chain", fam, table, &c.name], None)?;
            tracing::debug!("deleted empty chain {fam} {table} {}", c.name);
            deleted += 1;
        }
    }
    if table_too && now.other == 0 && now.chains.len() == deleted {
        run("nft", &["delete", "table", fam, table], None)?;
        tracing::debug!("deleted empty table {fam} {table}");
    }
    Ok(())
}

fn remove_stale_with(cfg: &Config, tools: &Tools) -> Result<bool, RulesetError> {
    let mut found = false;
    if let AcceptRule::Nft(at) = &cfg.accept_rule {
        found |= remove_stale_nft_accept(at)?;
    }
    if nft_ok(&["list", "table", "inet", TABLE_NAME]) {
        tracing::warn!("removing stale table inet {TABLE_NAME} (left by an earlier ftp-alg?)");
        run("nft", &["delete", "table", "inet", TABLE_NAME], None)?;
        found = true;
    }
    for fam in [Family::V4, Family::V6] {
        let Ok(bin) = tools.get(fam) else { continue };
        for table in ["raw", "mangle", "filter"] {
            if !nft_ok(&["list", "table", fam.nft_family(), table]) {
                continue;
            }
            let save = match run(bin, &["-t", table, "-S"], None) {
                Ok(s) => s,
                Err(e) => {
                    // A table with rules iptables cannot parse ("incompatible")
                    // still takes -I and -D: delete what this config would add.
                    tracing::debug!("cannot list {table} ({e}); deleting by rule spec");
                    found |= remove_stale_by_spec(cfg, fam, bin, table);
                    continue;
                }
            };
            let stale = stale_rules(&save);
            if stale.is_empty() {
                continue;
            }
            found = true;
            // Highest number first, so the lower numbers stay valid.
            for (chain, n) in stale.iter().rev() {
                tracing::warn!(
                    "removing stale ftp-alg rule {} -t {table} {chain} #{n}",
                    fam.iptables_name()
                );
                run(bin, &["-t", table, "-D", chain, &n.to_string()], None)?;
            }
            if table == "filter" {
                // We never create filter or its chains: nothing more to undo.
                continue;
            }
            if let Some(now) = list_table(fam, table) {
                let touched: Vec<&ChainState> = now
                    .chains
                    .iter()
                    .filter(|c| stale.iter().any(|(s, _)| *s == c.name))
                    .collect();
                delete_empty(fam, table, &now, &touched, true)?;
            }
        }
    }
    Ok(found)
}

/// Deletes every copy of the rules `cfg` puts into `table`, by spec; true if
/// any was there. Bounded: one stale copy per killed instance is expected.
fn remove_stale_by_spec(cfg: &Config, fam: Family, bin: &Path, table: &str) -> bool {
    let mut rules = queue_rules(cfg, fam);
    rules.push(accept_rule(cfg, fam));
    let mut found = false;
    for r in rules.iter().filter(|r| r.table == table) {
        for _ in 0..16 {
            if run(bin, &strs(&r.delete_args()), None).is_err() {
                break;
            }
            tracing::warn!(
                "removed stale ftp-alg rule {} -t {table} {}",
                fam.iptables_name(),
                r.chain
            );
            found = true;
        }
    }
    found
}

/// Rules commented [`RULE_COMMENT`] in `iptables -S` output, as
/// (chain, 1-based rule number in that chain), in listing order.
fn stale_rules(save: &str) -> Vec<(String, usize)> {
    let quoted = format!("\"{RULE_COMMENT}\"");
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut out = Vec::new();
    for line in save.lines() {
        let toks: Vec<&str> = line.split_whitespace().collect();
        let [flag, chain, rest @ ..] = toks.as_slice() else {
            continue;
        };
        if *flag != "-A" {
            continue;
        }
        let n = match counts.iter_mut().find(|(c, _)| c == chain) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                counts.push((chain.to_string(), 1));
                1
            }
        };
        let ours = rest
            .windows(2)
            .any(|w| w[0] == "--comment" && (w[1] == RULE_COMMENT || w[1] == quoted));
        if ours {
            out.push((chain.to_string(), n));
        }
    }
    out
}

/// One chain as seen in `nft list table` output.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ChainState {
    name: String,
    /// Lines in the chain body other than its `type ...` header. A chain
    /// comment also counts: when unsure, keep the chain.
    rules: usize,
    policy_accept: bool,
}

/// One table as seen in `nft list table` output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct TableState {
    chains: Vec<ChainState>,
    /// Sets, maps, flowtables, table flags...: anything that is not a chain.
    other: usize,
}

fn list_table(family: Family, table: &str) -> Option<TableState> {
    run("nft", &["list", "table", family.nft_family(), table], None)
        .ok()
        .map(|t| parse_table(&t))
}

/// Parses the text of `nft list table` by brace depth; anything it does not
/// recognise makes the table or chain look non-empty, never empty.
fn parse_table(text: &str) -> TableState {
    let mut st = TableState::default();
    let mut depth = 0i32;
    let mut in_chain = false;
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let delta = t.matches('{').count() as i32 - t.matches('}').count() as i32;
        match depth {
            1 if t.starts_with("chain ") => {
                let name = t["chain ".len()..].trim_end_matches('{').trim();
                st.chains.push(ChainState {
                    name: name.to_string(),
                    rules: 0,
                    policy_accept: true,
                });
                in_chain = true;
            }
            1 if t != "}" => {
                st.other += 1;
                in_chain = false;
            }
            2 if in_chain && t != "}" => {
                if let Some(c) = st.chains.last_mut() {
                    if t.starts_with("type ") {
                        c.policy_accept = !t.contains("policy drop");
                    } else {
                        c.rules += 1;
                    }
                }
            }
            _ => {}
        }
        depth += delta;
        if depth <= 1 {
            in_chain = false;
        }
    }
    st
}

fn nft_ok(args: &[&str]) -> bool {
    run("nft", args, None).is_ok()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// A command line for printing: words quoted only when a shell needs it.
fn shell_line(prog: &str, args: &[String]) -> String {
    let mut s = prog.to_string();
    for a in args {
        s.push(' ');
        let plain = !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./,:=+@%".contains(c));
        if plain {
            s.push_str(a);
        } else {
            s.push('\'');
            s.push_str(&a.replace('\'', "'\\''"));
            s.push('\'');
        }
    }
    s.push('\n');
    s
}

/// Runs `prog args` (no shell), feeding `stdin` if given; returns stdout, or
/// an error carrying the command line, exit status and stderr.
fn run(prog: impl AsRef<Path>, args: &[&str], stdin: Option<&str>) -> Result<String, RulesetError> {
    let prog = prog.as_ref();
    let cmdline = {
        let mut s = prog.display().to_string();
        for a in args {
            s.push(' ');
            s.push_str(a);
        }
        s
    };
    tracing::debug!("running {cmdline}");
    let spawn_err = |e: std::io::Error| RulesetError {
        command: cmdline.clone(),
        status: None,
        stderr: String::new(),
        source: Some(e),
    };
    let mut child = Command::new(prog)
        .args(args)
        // Error texts are matched (detect_queue_backend): keep them English.
        .env("LC_ALL", "C")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // nft reads all of its input before it writes much, and our inputs
        // are a few kB: writing before reading cannot deadlock.
        if let Err(e) = pipe.write_all(input.as_bytes()) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(spawn_err(e));
        }
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(RulesetError {
            command: cmdline,
            status: Some(out.status),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            source: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ports: &[u16]) -> Config {
        Config {
            control_ports: ports.to_vec(),
            queue_num: 7,
            ct_mark: 0x0000_0040,
            ..Config::default()
        }
    }

    #[test]
    fn table_text_default_matches_design() {
        let t = table_text(&Config::default(), QueueBackend::Xtables);
        assert!(t.starts_with("table inet ftp_alg {\n"));
        assert!(t.contains("type ipv4_addr . ipv4_addr . inet_service\n\t\tflags dynamic,timeout"));
        assert!(t.contains(
            "type ipv6_addr . ipv6_addr . inet_service : ipv6_addr . inet_service\n\t\tflags timeout"
        ));
        assert!(t.contains("type nat hook prerouting priority dstnat - 10; policy accept;"));
        assert!(t.contains("dnat ip to ip saddr . ip daddr . tcp dport map @dnat4"));
        assert!(t.contains("dnat ip6 to ip6 saddr . ip6 daddr . tcp dport map @dnat6"));
        assert!(t.contains("chain pinholes {\n\t\ttype nat hook prerouting priority dstnat - 10;"));
        // No chain of ftp-alg's sees established data packets.
        assert!(!t.contains("hook forward priority filter"));
        // The mark comes before the DNAT, which ends the chain.
        let mark = t
            .find(
                "\t\tip saddr . ip daddr . tcp dport @pin4 delete @pin4 \
                   { ip saddr . ip daddr . tcp dport } ct mark set ct mark | 0x01000000\n",
            )
            .expect("pin4 rule");
        assert!(mark < t.find("dnat ip to").unwrap());
        assert!(t.contains("@pin6 delete @pin6 { ip6 saddr . ip6 daddr . tcp dport } ct mark set ct mark | 0x01000000\n"));
        assert!(!t.contains("queue"), "xtables variant has no queue chains");
        assert_eq!(t.matches('{').count(), t.matches('}').count());
    }

    #[test]
    fn table_text_native_has_queue_chains_at_the_right_hooks() {
        let t = table_text(&cfg(&[21]), QueueBackend::Native);
        assert!(t.contains(
            "chain queue_to_server {\n\t\ttype filter hook prerouting priority raw; policy accept;\n\
             \t\ttcp dport 21 queue num 7 bypass\n"
        ));
        assert!(t.contains(
            "chain queue_to_client {\n\t\ttype filter hook forward priority mangle; policy accept;\n\
             \t\ttcp sport 21 queue num 7 bypass\n"
        ));
        assert!(t.contains("ct mark set ct mark | 0x00000040"));
        assert!(t.ends_with("}\n"));
    }

    #[test]
    fn several_ports_become_a_set_without_repeats() {
        let t = table_text(&cfg(&[21, 2121, 21]), QueueBackend::Native);
        assert!(t.contains("tcp dport { 21, 2121 } queue num 7 bypass"));
        assert!(t.contains("tcp sport { 21, 2121 } queue num 7 bypass"));
    }

    #[test]
    fn queue_bypass_can_be_turned_off() {
        let mut c = cfg(&[21]);
        c.queue_bypass = false;
        for r in queue_rules(&c, Family::V4) {
            assert!(!r.insert_args().join(" ").contains("bypass"));
        }
        assert!(!table_text(&c, QueueBackend::Native).contains("bypass"));
        c.queue_bypass = true;
        assert!(table_text(&c, QueueBackend::Native).contains("queue num 7 bypass"));
    }

    #[test]
    fn several_queues_are_balanced() {
        let mut c = cfg(&[21]);
        c.queues = 4;
        assert!(table_text(&c, QueueBackend::Native).contains("tcp dport 21 queue num 7-10 bypass"));
        for r in queue_rules(&c, Family::V6) {
            assert!(
                r.insert_args()
                    .join(" ")
                    .ends_with("-j NFQUEUE --queue-balance 7:10 --queue-bypass"),
                "{r:?}"
            );
        }
    }

    #[test]
    fn xtables_queue_rules() {
        let r = queue_rules(&cfg(&[21]), Family::V4);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0].insert_args().join(" "),
            "-t raw -I PREROUTING -p tcp --dport 21 -m comment --comment ftp-alg \
             -j NFQUEUE --queue-num 7 --queue-bypass"
        );
        assert_eq!(
            r[1].delete_args().join(" "),
            "-t mangle -D FORWARD -p tcp --sport 21 -m comment --comment ftp-alg \
             -j NFQUEUE --queue-num 7 --queue-bypass"
        );
        let r = queue_rules(&cfg(&[21, 2121]), Family::V6);
        assert_eq!(r.len(), 2);
        assert!(r[0]
            .insert_args()
            .join(" ")
            .contains("-p tcp -m multiport --dports 21,2121 -m comment"));
        assert!(r[1]
            .insert_args()
            .join(" ")
            .contains("-p tcp -m multiport --sports 21,2121 -m comment"));
        let many: Vec<u16> = (1..=20).collect();
        let r = queue_rules(&cfg(&many), Family::V4);
        assert_eq!(r.len(), 4, "15 ports per multiport rule, two hooks");
    }

    #[test]
    fn accept_rule_uses_the_mark() {
        let a = accept_rule(&Config::default(), Family::V4);
        assert_eq!(
            a.insert_args().join(" "),
            "-t filter -I FORWARD 1 -m conntrack --ctstate NEW -m connmark \
             --mark 0x1000000/0x1000000 -m comment --comment ftp-alg -j ACCEPT"
        );
        assert!(!a.delete_args().contains(&"1".to_string()));
        let a = accept_rule(&cfg(&[21]), Family::V6);
        assert!(a.insert_args().join(" ").contains("--mark 0x40/0x40"));
    }

    #[test]
    fn describe_shows_both_variants() {
        let d = describe(&cfg(&[21, 990]));
        assert!(d.contains(
            "iptables -t raw -I PREROUTING -p tcp -m multiport --dports 21,990 \
             -m comment --comment ftp-alg -j NFQUEUE --queue-num 7 --queue-bypass\n"
        ));
        assert!(d.contains(
            "ip6tables -t mangle -I FORWARD -p tcp -m multiport --sports 21,990 \
             -m comment --comment ftp-alg -j NFQUEUE --queue-num 7 --queue-bypass\n"
        ));
        assert!(d.contains(
            "\nip6tables -t filter -I FORWARD 1 -m conntrack --ctstate NEW -m connmark \
             --mark 0x40/0x40 -m comment --comment ftp-alg -j ACCEPT\n"
        ));
        assert!(d.contains("\nct state new ct mark & 0x00000040 == 0x00000040 accept\n"));
        assert!(d.contains("tcp dport { 21, 990 } queue num 7 bypass"));
        assert_eq!(d.matches("table inet ftp_alg {").count(), 2);
        // Every line is a comment, part of a table, a command or the rule.
        for l in d.lines() {
            assert!(
                l.starts_with('#')
                    || l.starts_with("table ")
                    || l.starts_with('\t')
                    || l == "}"
                    || l.starts_with("iptables ")
                    || l.starts_with("ip6tables ")
                    || l.starts_with("ct state new"),
                "unexpected line {l:?}"
            );
        }
    }

    #[test]
    fn validate_rejects_nonsense() {
        assert!(validate(&Config::default()).is_ok());
        assert!(validate(&cfg(&[])).is_err());
        assert!(validate(&cfg(&[0])).is_err());
        let mut c = cfg(&[21]);
        c.ct_mark = 0;
        let e = validate(&c).unwrap_err();
        assert!(e.to_string().contains("ct_mark"), "{e}");
    }

    #[test]
    fn parse_table_counts_rules_and_policy() {
        let t = parse_table(
            "table ip raw {\n\
             \tchain PREROUTING {\n\
             \t\ttype filter hook prerouting priority raw; policy accept;\n\
             \t\ttcp dport { 21, 2121 } counter packets 0 bytes 0 queue num 21 bypass\n\
             \t}\n\
             \tchain OUTPUT {\n\
             \t\ttype filter hook output priority raw; policy drop;\n\
             \t}\n\
             \tchain user {\n\
             \t}\n\
             \tset s {\n\
             \t\ttype ipv4_addr\n\
             \t\telements = { 192.0.2.1,\n\
             \t\t\t     192.0.2.2 }\n\
             \t}\n\
             }\n",
        );
        assert_eq!(t.other, 1);
        assert_eq!(
            t.chains,
            vec![
                ChainState {
                    name: "PREROUTING".into(),
                    rules: 1,
                    policy_accept: true
                },
                ChainState {
                    name: "OUTPUT".into(),
                    rules: 0,
                    policy_accept: false
                },
                ChainState {
                    name: "user".into(),
                    rules: 0,
                    policy_accept: true
                },
            ]
        );
        assert_eq!(parse_table(""), TableState::default());
    }

    #[test]
    fn stale_rules_numbers_per_chain() {
        let save = "-P PREROUTING ACCEPT\n\
                    -P FORWARD ACCEPT\n\
                    -A FORWARD -j LOG\n\
                    -A PREROUTING -p tcp -m tcp --dport 21 -m comment --comment ftp-alg -j NFQUEUE --queue-num 21 --queue-bypass\n\
                    -A FORWARD -m comment --comment \"ftp-alg\" -j ACCEPT\n\
                    -A FORWARD -m comment --comment ftp-alg-other -j ACCEPT\n";
        assert_eq!(
            stale_rules(save),
            vec![("PREROUTING".to_string(), 1), ("FORWARD".to_string(), 2)]
        );
    }

    #[test]
    fn shell_line_quotes_only_when_needed() {
        assert_eq!(
            shell_line("iptables", &["-m".into(), "a b".into(), "it's".into()]),
            "iptables -m 'a b' 'it'\\''s'\n"
        );
    }

    #[test]
    fn error_display_names_the_command() {
        let e = run("/nonexistent/ftp-alg-nft", &["-f", "-"], None).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("/nonexistent/ftp-alg-nft -f -"), "{s}");
        assert!(std::error::Error::source(&e).is_some());
        let e = run("false", &[], None).unwrap_err();
        assert!(e.status().is_some_and(|s| !s.success()));
    }
}
