//! The nft text of ftp-alg's own table `inet ftp_alg` and of the accept
//! rule it puts into an admin's native chain. Pure: text only, loaded
//! elsewhere.

use super::backend::QueueBackend;
use super::ports::{nft_ports, queue_range};
use crate::config::{Config, RULE_COMMENT, TABLE_NAME};

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

/// The sets, maps and chains [`table_text`] declares, by kind and name: what
/// must still be there for the table to work.
pub(super) fn table_objects(backend: QueueBackend) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![
        ("set", "pin4"),
        ("set", "pin6"),
        ("map", "dnat4"),
        ("map", "dnat6"),
        ("chain", "pinholes"),
    ];
    if backend == QueueBackend::Native {
        v.extend([("chain", "queue_to_server"), ("chain", "queue_to_client")]);
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
        let c = Config::default();
        let n = table_text(&c, QueueBackend::Native);
        let x = table_text(&c, QueueBackend::Xtables);
        // The native variant is the xtables one plus the two queue chains.
        assert_eq!(
            n,
            format!(
                "{}\tchain queue_to_server {{\n\
                 \t\ttype filter hook prerouting priority raw; policy accept;\n\
                 \t\ttcp dport 21 queue num 21 bypass\n\
                 \t}}\n\
                 \tchain queue_to_client {{\n\
                 \t\ttype filter hook forward priority mangle; policy accept;\n\
                 \t\ttcp sport 21 queue num 21 bypass\n\
                 \t}}\n}}\n",
                x.strip_suffix("}\n").unwrap()
            )
        );
    }

    #[test]
    fn table_objects_are_the_ones_declared() {
        for backend in [QueueBackend::Xtables, QueueBackend::Native] {
            let t = table_text(&Config::default(), backend);
            let declared: Vec<&str> = t
                .lines()
                .filter(|l| l.starts_with('\t') && !l.starts_with("\t\t") && l != &"\t}")
                .collect();
            let want: Vec<String> = table_objects(backend)
                .iter()
                .map(|(kind, name)| format!("\t{kind} {name} {{"))
                .collect();
            assert_eq!(declared, want, "{backend:?}");
        }
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
