//! What ftp-alg prints for admins: `ftp-alg rules` (both variants, as
//! commands) and the files of `deploy/rules/` (`ftp-alg rules --file NAME`),
//! built from the same pieces the installer loads.

use super::backend::QueueBackend;
use super::hooks::{accept_chains, queue_hooks};
use super::nft_text::table_text;
use super::ports::{dedup_ports, queue_range};
use super::xtables::{accept_rules, queue_rules, Family};
use crate::config::{Config, TABLE_NAME};

/// What `ftp-alg rules` prints: for an iptables-nft firewall (table text +
/// iptables/ip6tables commands + accept rules) and for a native nftables
/// firewall (table text with queue chains + the one-line accept rule to add
/// to the admin's own chains, e.g.
/// `ct state new ct mark & 0x01000000 == 0x01000000 accept`), for the paths
/// configured: each queue hook is named with what crosses it. Readable,
/// commented with `#` lines.
pub fn describe(cfg: &Config) -> String {
    let ports = dedup_ports(&cfg.queued_ports());
    let port_list: Vec<String> = ports.iter().map(u16::to_string).collect();
    let mark = format!("{:#010x}", cfg.ct_mark);
    let mut s = String::new();
    s.push_str(&format!(
        "# Rules ftp-alg needs (paths {}, control ports {}, queue {}, conntrack mark {mark}).\n\
         # With install_rules = true ftp-alg installs them itself at start and\n\
         # removes them at exit; otherwise install the variant that fits this host.\n\
         #\n",
        cfg.paths,
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
         #     queued before conntrack (raw), server->client packets after it (mangle):\n\
         #     this split keeps conntrack's view of the TCP sequence numbers consistent\n\
         #     after a rewrite changes a length. Loopback is never queued.\n",
    );
    for h in queue_hooks(cfg.paths) {
        s.push_str(&format!("#       {} {}: {}\n", h.table, h.chain, h.what));
    }
    s.push_str("#     --queue-bypass lets the packets pass while ftp-alg is not running.\n");
    for fam in Family::BOTH {
        for r in queue_rules(cfg, fam) {
            s.push_str(&shell_line(fam.iptables_name(), &r.insert_args()));
        }
    }
    let chains = accept_chains(cfg.paths).join(", ");
    s.push_str(&format!(
        "#\n\
         # 1.3 Accept the pinholed data connections: first in filter {chains}, before\n\
         #     any drop (ftp-alg marks exactly one NEW connection per pinhole).\n",
    ));
    for fam in Family::BOTH {
        for r in accept_rules(cfg, fam) {
            s.push_str(&shell_line(fam.iptables_name(), &r.insert_args()));
        }
    }

    let nft_chains = native_chain_names(cfg);
    s.push_str(
        "#\n\
         # ===== Variant 2: the firewall is native nftables (and the kernel has `queue`) =====\n\
         #\n\
         # 2.1 ftp-alg's table, including its queue chains (same hooks and reasons\n\
         #     as in 1.2). Load it with: nft -f FILE\n",
    );
    s.push_str(&table_text(cfg, QueueBackend::Native));
    s.push_str(&format!(
        "#\n\
         # 2.2 Add this rule first in your own filter chains ({nft_chains}), before any\n\
         #     rule that drops; or let ftp-alg insert it there: accept_rule = \"nft inet filter forward\"\n",
    ));
    if cfg.paths.local {
        s.push_str(
            "#     with accept_rule_input (and accept_rule_output) naming your input (output) chain:\n",
        );
    }
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
             # it again after changing paths, control_ports, queue, queue_bypass or ct_mark.\n",
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
                "iptables-nft firewall, 1 of 3: ftp-alg's table (pinhole sets, DNAT maps, the chains using them).",
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
                    "iptables-nft firewall, {n} of 3: queue rules (raw to the server, mangle to the\n\
                     # client; paths {paths}) and the accept rule, first in filter {chains}, for\n\
                     # new connections ftp-alg's pinholes marked {mark}.",
                    paths = cfg.paths,
                    chains = accept_chains(cfg.paths).join(", "),
                ),
                &format!("{tool} --noflush < {}", file.name()),
            );
            let mut rules = queue_rules(cfg, fam);
            rules.extend(accept_rules(cfg, fam));
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
                "native nftables firewall: ftp-alg's table, with its queue chains.",
                "nft -f nftables.nft",
            ) + &format!(
                "# Then accept the marked connections in your own filter chains ({chains}),\n\
                 # before any rule that drops (or set accept_rule = \"nft FAMILY TABLE CHAIN\"):\n\
                 #   ct state new ct mark & {mark} == {mark} accept\n",
                chains = native_chain_names(cfg),
            ) + &replace
                + &table_text(cfg, QueueBackend::Native)
        }
    }
}

/// The admin's chains for the accept rule, as a native ruleset names them
/// (`forward, input, output`).
fn native_chain_names(cfg: &Config) -> String {
    accept_chains(cfg.paths)
        .iter()
        .map(|c| c.to_lowercase())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A command line for printing: words quoted only when a shell needs it.
fn shell_line(prog: &str, args: &[String]) -> String {
    let mut s = prog.to_string();
    for a in args {
        s.push(' ');
        let plain = !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./,:=+@%!".contains(c));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_is_the_documented_text() {
        let c = Config {
            control_ports: vec![21, 990],
            queue_num: 7,
            ct_mark: 0x40,
            ..Config::default()
        };
        assert_eq!(
            describe(&c),
            include_str!("testdata/describe_ports_21_990.txt")
        );
    }

    #[test]
    fn host_mode_is_the_documented_text() {
        let mut c = Config::default();
        c.paths.local = true;
        assert_eq!(
            describe(&c),
            include_str!("testdata/describe_paths_forward_local.txt")
        );
        assert_eq!(
            deploy_file(&c, DeployFile::IptablesV4),
            include_str!("testdata/deploy_paths_forward_local.rules.v4")
        );
    }

    #[test]
    fn describe_embeds_both_table_texts() {
        let c = Config::default();
        let d = describe(&c);
        for backend in [QueueBackend::Xtables, QueueBackend::Native] {
            let t = table_text(&c, backend);
            assert_eq!(d.matches(&t).count(), 1, "{backend:?}");
        }
    }

    #[test]
    fn deploy_files_for_other_configs() {
        let many = Config {
            control_ports: (1..=20).collect(),
            queue_num: 7,
            ct_mark: 0x40,
            ..Config::default()
        };
        assert_eq!(
            deploy_file(&many, DeployFile::IptablesV6),
            include_str!("testdata/deploy_ports_1_to_20.rules.v6")
        );
        let multi = Config {
            control_ports: vec![21, 2121, 21],
            queue_num: 7,
            queues: 4,
            queue_bypass: false,
            ct_mark: 0x40,
            ..Config::default()
        };
        assert_eq!(
            deploy_file(&multi, DeployFile::Nftables),
            include_str!("testdata/deploy_ports_21_2121_queues_4.nft")
        );
    }

    #[test]
    fn deploy_file_names_round_trip() {
        for (name, file) in DeployFile::ALL {
            assert_eq!(file.name(), name);
            assert!(deploy_file(&Config::default(), file).starts_with(&format!("# {name} -- ")));
        }
    }

    #[test]
    fn shell_line_quotes_only_when_needed() {
        assert_eq!(
            shell_line("iptables", &["-m".into(), "a b".into(), "it's".into()]),
            "iptables -m 'a b' 'it'\\''s'\n"
        );
    }
}
