//! The nft text of ftp-alg's own table `inet ftp_alg` and of the accept
//! rule it puts into an admin's native chain. Pure: text only, loaded
//! elsewhere.

use super::backend::QueueBackend;
use super::hooks::{queue_hooks, Lo, QueueHook};
use super::ports::{nft_ports, queue_range};
use crate::config::{Config, Paths, RULE_COMMENT, TABLE_NAME};

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
    t.push_str(&ftps_sets(cfg));
    t.push_str(&pinhole_chain(
        "pinholes",
        "type nat hook prerouting priority dstnat - 10",
        &mark,
        cfg,
    ));
    if cfg.paths.local {
        // This host's own outgoing data connections (a local server's
        // active mode, a local client's passive mode) never cross
        // prerouting: the same rules at nat output, before the admin's
        // output filter. (`dstnat` names no priority at output in an inet
        // table for nft 1.0.6; -110 is the same number.)
        t.push_str(&pinhole_chain(
            "pinholes_out",
            "type nat hook output priority -110",
            &mark,
            cfg,
        ));
    }
    t.push_str(&labels_chain(cfg));
    if backend == QueueBackend::Native {
        let ports = nft_ports(&cfg.queued_ports());
        let q = queue_range(cfg);
        let bypass = if cfg.queue_bypass { " bypass" } else { "" };
        for hook in queue_hooks(cfg.paths) {
            let hold = if hook.hold {
                native_hold(cfg, &ports, &q)
            } else {
                String::new()
            };
            t.push_str(&format!(
                "\tchain {name} {{\n\
                 \t\ttype filter hook {h} priority {prio}; policy accept;\n\
                 {hold}\
                 \t\t{m}tcp {dir}port {ports} queue num {q}{bypass}\n\
                 \t}}\n",
                name = hook.nft_chain,
                h = hook.nft_hook,
                prio = hook.nft_priority,
                m = native_hook_match(&hook),
                dir = hook.toward.port_letter(),
            ));
        }
    }
    t.push_str("}\n");
    t
}

/// One chain consuming pinholes at `hook` (the text after `type`): the
/// same rules for prerouting and, with `local`, output. Mark first: `dnat`
/// ends the chain. (Chain names `dnat`/`forward` would collide with nft
/// keywords.)
/// With `[[ftps]]`, the FTPS ranges' rules go in the same places: their
/// marks after the exact ones and before every `dnat`, their DNAT after.
fn pinhole_chain(name: &str, hook: &str, mark: &str, cfg: &Config) -> String {
    format!(
        "\tchain {name} {{\n\
         \t\t{hook}; policy accept;\n\
         \t\tip saddr . ip daddr . tcp dport @pin4 delete @pin4 {{ ip saddr . ip daddr . tcp dport }} ct mark set ct mark | {mark}\n\
         \t\tip6 saddr . ip6 daddr . tcp dport @pin6 delete @pin6 {{ ip6 saddr . ip6 daddr . tcp dport }} ct mark set ct mark | {mark}\n\
         {ftps_marks}\
         \t\tdnat ip to ip saddr . ip daddr . tcp dport map @dnat4\n\
         \t\tdnat ip6 to ip6 saddr . ip6 daddr . tcp dport map @dnat6\n\
         {ftps_dnats}\
         \t}}\n",
        ftps_marks = ftps_marks(cfg, mark),
        ftps_dnats = ftps_dnats(cfg),
    )
}

/// The native form of `xtables::hook_match`: loopback excluded, and only
/// this host's addresses for raw PREROUTING with `local` alone.
fn native_hook_match(hook: &QueueHook) -> String {
    let mut m = String::new();
    match hook.lo {
        Some(Lo::In) => m.push_str("iifname != \"lo\" "),
        Some(Lo::Out) => m.push_str("oifname != \"lo\" "),
        None => {}
    }
    if hook.local_dst {
        m.push_str("fib daddr type local ");
    }
    m
}

/// The FTPS range sets and maps (with `[[ftps]]` configured): intervals
/// over the pinhole sets' concatenation (`flags interval`: nft's pipapo
/// set type; with `timeout`, accepted on 6.18, measured), so one element
/// admits one client to one server's whole passive range. The maps' value
/// is the address alone: `dnat ip to` keeps the destination port.
fn ftps_sets(cfg: &Config) -> String {
    if cfg.ftps.is_empty() {
        return String::new();
    }
    let mut t = String::new();
    for (v, addr) in [("4", "ipv4_addr"), ("6", "ipv6_addr")] {
        t.push_str(&format!(
            "\tset ftps{v} {{\n\
             \t\ttype {addr} . {addr} . inet_service\n\
             \t\tflags interval,timeout\n\
             \t}}\n"
        ));
    }
    for (v, addr) in [("4", "ipv4_addr"), ("6", "ipv6_addr")] {
        t.push_str(&format!(
            "\tmap ftpsdnat{v} {{\n\
             \t\ttype {addr} . {addr} . inet_service : {addr}\n\
             \t\tflags interval,timeout\n\
             \t}}\n"
        ));
    }
    t
}

/// The pinhole chains' mark rules for FTPS ranges: they mark every
/// connection of the range and delete nothing (the range serves all data
/// connections of its session). Before every `dnat` rule, which ends the
/// chain.
fn ftps_marks(cfg: &Config, mark: &str) -> String {
    if cfg.ftps.is_empty() {
        return String::new();
    }
    format!(
        "\t\tip saddr . ip daddr . tcp dport @ftps4 ct mark set ct mark | {mark}\n\
         \t\tip6 saddr . ip6 daddr . tcp dport @ftps6 ct mark set ct mark | {mark}\n"
    )
}

/// The pinhole chains' DNAT rules for FTPS ranges (to the real server,
/// port kept), after the exact pinholes' own.
fn ftps_dnats(cfg: &Config) -> String {
    if cfg.ftps.is_empty() {
        return String::new();
    }
    "\t\tdnat ip to ip saddr . ip daddr . tcp dport map @ftpsdnat4\n\
     \t\tdnat ip6 to ip6 saddr . ip6 daddr . tcp dport map @ftpsdnat6\n"
        .to_string()
}

/// The chain `labels` (with `[durable]` on, `docs/durable.md`): hooked
/// nowhere, so no packet crosses it; its `ct label` rule alone makes the
/// kernel give every new connection the label extension, without which a
/// session's state cannot be stored (DESIGN.md: loaded before traffic).
fn labels_chain(cfg: &Config) -> String {
    let d = &cfg.durable;
    if !d.enabled {
        return String::new();
    }
    format!(
        "\tchain labels {{\n\
         \t\tct label {bit} counter\n\
         \t}}\n",
        bit = d.label_first_bit,
    )
}

/// The native counterpart of the xtables hold rules (`xtables::hold_rules`),
/// put before the server-to-client queue rule.
fn native_hold(cfg: &Config, ports: &str, q: &str) -> String {
    let d = &cfg.durable;
    if !d.enabled {
        return String::new();
    }
    format!(
        "\t\ttcp dport {ports} ct mark & {e:#010x} == {e:#010x} meta mark & {m:#010x} == 0 drop\n\
         \t\ttcp sport {ports} ct mark & {e:#010x} == {e:#010x} queue num {q}\n",
        e = d.edited_mark,
        m = d.seen_mark,
    )
}

/// The `nft -f` text that makes ftp-alg's table what `cfg` needs while
/// keeping the table a killed instance left (`existing`: its chains), so
/// that its pending pinholes stay and its `hold` chain never goes away:
/// one transaction that empties the chains, drops those no longer wanted,
/// and loads the table text (sets and chains that exist are kept).
pub(super) fn adopt_text(table: &str, existing: &[String]) -> String {
    let mut t = String::new();
    for chain in existing {
        let wanted = table.contains(&format!("\tchain {chain} {{\n"));
        let verb = if wanted { "flush" } else { "delete" };
        t.push_str(&format!("{verb} chain inet {TABLE_NAME} {chain}\n"));
    }
    t.push_str(table);
    t
}

/// The sets, maps and chains [`table_text`] declares, by kind and name: what
/// must still be there for the table to work.
pub(super) fn table_objects(
    backend: QueueBackend,
    labels: bool,
    paths: Paths,
    ftps: bool,
) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![
        ("set", "pin4"),
        ("set", "pin6"),
        ("map", "dnat4"),
        ("map", "dnat6"),
    ];
    if ftps {
        v.extend([
            ("set", "ftps4"),
            ("set", "ftps6"),
            ("map", "ftpsdnat4"),
            ("map", "ftpsdnat6"),
        ]);
    }
    v.push(("chain", "pinholes"));
    if paths.local {
        v.push(("chain", "pinholes_out"));
    }
    if labels {
        v.push(("chain", "labels"));
    }
    if backend == QueueBackend::Native {
        v.extend(queue_hooks(paths).iter().map(|h| ("chain", h.nft_chain)));
    }
    v
}

/// The accept rule in nft syntax, commented so that a stale copy can be
/// found again.
pub(super) fn nft_accept_rule(cfg: &Config) -> String {
    format!(
        "ct state new ct mark & {m:#010x} == {m:#010x} counter accept comment \"{RULE_COMMENT}\"",
        m = cfg.ct_mark
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_rule_is_loaded_but_crossed_by_no_packet() {
        let t = table_text(&Config::default(), QueueBackend::Xtables);
        assert!(t.contains("\tchain labels {\n\t\tct label 12 counter\n\t}\n"));
        let n = table_text(&Config::default(), QueueBackend::Native);
        assert!(n.contains(
            "\t\ttcp dport 21 ct mark & 0x02000000 == 0x02000000 meta mark & 0x02000000 == 0 drop\n\
             \t\ttcp sport 21 ct mark & 0x02000000 == 0x02000000 queue num 21\n\
             \t\ttcp sport 21 queue num 21 bypass\n"
        ));
        let mut off = Config::default();
        off.durable.enabled = false;
        for b in [QueueBackend::Xtables, QueueBackend::Native] {
            let t = table_text(&off, b);
            assert!(
                !t.contains("chain labels") && !t.contains("0x02000000"),
                "{t}"
            );
        }
    }

    #[test]
    fn adopting_empties_kept_chains_and_drops_unwanted_ones_in_one_load() {
        let table = table_text(&Config::default(), QueueBackend::Xtables);
        let chains = ["pinholes", "labels", "queue_to_server"].map(String::from);
        let t = adopt_text(&table, &chains);
        assert!(t.starts_with(
            "flush chain inet ftp_alg pinholes\nflush chain inet ftp_alg labels\n\
             delete chain inet ftp_alg queue_to_server\ntable inet ftp_alg {\n"
        ));
        assert!(t.ends_with(&table));
    }

    #[test]
    fn default_table_is_the_documented_text() {
        let t = table_text(&Config::default(), QueueBackend::Xtables);
        assert_eq!(t, include_str!("testdata/table_default_xtables.nft"));
        // Why the text is what it is, should the file ever be regenerated:
        // no chain of ftp-alg's sees established data packets, and the mark
        // comes before the DNAT, which ends the chain.
        assert!(!t.contains("hook forward"), "{t}");
        assert!(t.find("ct mark set").unwrap() < t.find("dnat ip to").unwrap());
    }

    #[test]
    fn native_table_has_the_queue_chains_at_their_hooks() {
        let c = Config {
            control_ports: vec![21, 2121, 21],
            queue_num: 7,
            queues: 4,
            queue_bypass: false,
            ct_mark: 0x40,
            ..Config::default()
        };
        assert_eq!(
            table_text(&c, QueueBackend::Native),
            include_str!("testdata/table_ports_21_2121_queues_4_native.nft")
        );
        let mut c = Config::default();
        // Without `[durable]`'s hold rules (tested on their own above).
        c.durable.enabled = false;
        let n = table_text(&c, QueueBackend::Native);
        let x = table_text(&c, QueueBackend::Xtables);
        // The native variant is the xtables one plus the two queue chains.
        assert_eq!(
            n,
            format!(
                "{}\tchain queue_to_server {{\n\
                 \t\ttype filter hook prerouting priority raw; policy accept;\n\
                 \t\tiifname != \"lo\" tcp dport 21 queue num 21 bypass\n\
                 \t}}\n\
                 \tchain queue_to_client {{\n\
                 \t\ttype filter hook forward priority mangle; policy accept;\n\
                 \t\ttcp sport 21 queue num 21 bypass\n\
                 \t}}\n}}\n",
                x.strip_suffix("}\n").unwrap()
            )
        );
    }

    fn local(forward: bool) -> Config {
        Config {
            paths: Paths {
                forward,
                local: true,
            },
            ..Config::default()
        }
    }

    #[test]
    fn local_table_is_the_documented_text() {
        assert_eq!(
            table_text(&local(false), QueueBackend::Native),
            include_str!("testdata/table_paths_local_native.nft")
        );
        // The output chain consumes pinholes with the very rules of the
        // prerouting one; only its hook differs.
        let t = table_text(&local(true), QueueBackend::Xtables);
        let body = |name: &str| {
            let start = t.find(&format!("\tchain {name} {{\n")).unwrap();
            let rest = &t[start..];
            let rules = rest.find(";\n").unwrap() + 2;
            rest[rules..rest.find("\t}\n").unwrap()].to_string()
        };
        assert!(body("pinholes").contains("@pin4"), "{t}");
        assert_eq!(body("pinholes"), body("pinholes_out"));
        assert!(t.contains("\tchain pinholes_out {\n\t\ttype nat hook output priority -110;"));
        // Without local, no output chain of ftp-alg's at all.
        let f = table_text(&Config::default(), QueueBackend::Native);
        assert!(
            !f.contains("hook output") && !f.contains("hook input"),
            "{f}"
        );
    }

    fn ftps_config() -> Config {
        Config::from_toml("[[ftps]]\nserver = \"192.0.2.10\"\npassive_ports = \"50000-50100\"\n")
            .unwrap()
    }

    #[test]
    fn table_objects_are_the_ones_declared() {
        for (backend, cfg) in [
            (QueueBackend::Xtables, Config::default()),
            (QueueBackend::Native, Config::default()),
            (QueueBackend::Xtables, local(false)),
            (QueueBackend::Native, local(false)),
            (QueueBackend::Native, local(true)),
            (QueueBackend::Xtables, ftps_config()),
            (QueueBackend::Native, ftps_config()),
            (
                QueueBackend::Native,
                Config {
                    paths: local(true).paths,
                    ..ftps_config()
                },
            ),
        ] {
            let t = table_text(&cfg, backend);
            let declared: Vec<&str> = t
                .lines()
                .filter(|l| l.starts_with('\t') && !l.starts_with("\t\t") && l != &"\t}")
                .collect();
            let ftps = !cfg.ftps.is_empty();
            let want: Vec<String> = table_objects(backend, true, cfg.paths, ftps)
                .iter()
                .map(|(kind, name)| format!("\t{kind} {name} {{"))
                .collect();
            assert_eq!(declared, want, "{backend:?} {} ftps {ftps}", cfg.paths);
        }
    }

    #[test]
    fn ftps_ranges_mark_before_every_dnat_and_delete_nothing() {
        let t = table_text(&ftps_config(), QueueBackend::Xtables);
        assert!(t.contains(
            "\tset ftps4 {\n\t\ttype ipv4_addr . ipv4_addr . inet_service\n\t\tflags interval,timeout\n\t}\n"
        ));
        assert!(t.contains(
            "\tmap ftpsdnat6 {\n\t\ttype ipv6_addr . ipv6_addr . inet_service : ipv6_addr\n\t\tflags interval,timeout\n\t}\n"
        ));
        let chain = &t[t.find("\tchain pinholes {").unwrap()..];
        let chain = &chain[..chain.find("\t}\n").unwrap()];
        let lines: Vec<&str> = chain.lines().collect();
        let last_mark = lines
            .iter()
            .rposition(|l| l.contains("ct mark set"))
            .unwrap();
        let first_dnat = lines.iter().position(|l| l.contains("dnat ")).unwrap();
        assert!(last_mark < first_dnat, "{chain}");
        assert!(chain.contains(
            "\t\tip saddr . ip daddr . tcp dport @ftps4 ct mark set ct mark | 0x01000000\n"
        ));
        assert!(chain.contains("\t\tdnat ip6 to ip6 saddr . ip6 daddr . tcp dport map @ftpsdnat6"));
        assert!(!chain.contains("delete @ftps"), "{chain}");
        // Without [[ftps]] the table is the one the shipped files hold.
        let plain = table_text(&Config::default(), QueueBackend::Xtables);
        assert!(!plain.contains("ftps"), "{plain}");
        // The implicit-TLS port is queued only with [[ftps]].
        let native = table_text(&ftps_config(), QueueBackend::Native);
        assert!(
            native.contains("tcp dport { 21, 990 } queue num 21 bypass"),
            "{native}"
        );
    }

    #[test]
    fn nft_accept_rule_carries_mark_and_comment() {
        let c = Config {
            ct_mark: 0x40,
            ..Config::default()
        };
        assert_eq!(
            nft_accept_rule(&c),
            "ct state new ct mark & 0x00000040 == 0x00000040 counter accept comment \"ftp-alg\""
        );
    }
}
