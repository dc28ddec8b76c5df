//! How the configured control ports and queue numbers are written in rules:
//! once each, in the syntax nft or xtables expects.

use std::collections::BTreeSet;

use crate::config::Config;

/// The queue numbers as nft writes them: `21`, or `21-24` for 4 queues.
pub fn queue_range(cfg: &Config) -> String {
    if cfg.queues > 1 {
        format!("{}-{}", cfg.queue_num, cfg.queue_num + (cfg.queues - 1))
    } else {
        cfg.queue_num.to_string()
    }
}

/// Ports in configured order, without repeats (nft rejects a repeated
/// element in an anonymous set).
pub(super) fn dedup_ports(ports: &[u16]) -> Vec<u16> {
    let mut seen = BTreeSet::new();
    ports.iter().copied().filter(|p| seen.insert(*p)).collect()
}

/// `21` or `{ 21, 2121 }`.
pub(super) fn nft_ports(ports: &[u16]) -> String {
    let ports = dedup_ports(ports);
    if let [one] = ports.as_slice() {
        one.to_string()
    } else {
        let list: Vec<String> = ports.iter().map(u16::to_string).collect();
        format!("{{ {} }}", list.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_keep_their_order_without_repeats() {
        assert_eq!(dedup_ports(&[2121, 21, 2121, 990, 21]), [2121, 21, 990]);
        assert_eq!(nft_ports(&[21, 21]), "21");
        assert_eq!(nft_ports(&[2121, 21, 2121]), "{ 2121, 21 }");
    }

    #[test]
    fn queue_range_spans_every_queue() {
        let mut c = Config {
            queue_num: 7,
            ..Config::default()
        };
        assert_eq!(queue_range(&c), "7");
        c.queues = 4;
        assert_eq!(queue_range(&c), "7-10");
    }
}
