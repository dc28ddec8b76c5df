//! The xtables rule specs ftp-alg gives iptables-nft / ip6tables-nft: the
//! NFQUEUE rules (for kernels without nftables' native `queue`) and the
//! accept rules for the admin's `filter` chains (FORWARD; INPUT and OUTPUT
//! with the `local` path). Pure: argument lists
//! only, run elsewhere.

use super::hooks::{accept_chains, queue_hooks, Lo, QueueHook, Toward};
use super::ports::{dedup_ports, queue_range};
use crate::config::{Config, RULE_COMMENT};

/// The xtables `multiport` match takes at most 15 ports per rule.
const MULTIPORT_MAX: usize = 15;

/// Address family of an iptables-nft command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Family {
    V4,
    V6,
}

impl Family {
    /// Both families, in the order rules are installed.
    pub(super) const BOTH: [Family; 2] = [Family::V4, Family::V6];

    /// The nftables family iptables-nft writes this family's tables to.
    pub(super) fn nft_family(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    /// Name used in printed commands (the admin's `iptables` is the nft one
    /// on the gateways variant 1 is for).
    pub(super) fn iptables_name(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }
}

/// One iptables rule: where it goes and its match/target spec. The same spec
/// is used for `-I`, `-C` and `-D`, so removal deletes exactly this rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct XtRule {
    /// `raw`, `mangle` or `filter`.
    pub(super) table: &'static str,
    /// A builtin chain of `table`.
    pub(super) chain: &'static str,
    /// `Some(1)` for "must come first" (`-I CHAIN 1`); `None` inserts at the
    /// head too, without a number.
    pub(super) position: Option<u32>,
    pub(super) spec: Vec<String>,
}

impl XtRule {
    /// `-t TABLE -I CHAIN [N] SPEC...`.
    pub(super) fn insert_args(&self) -> Vec<String> {
        let mut a = self.head("-I");
        if let Some(n) = self.position {
            a.push(n.to_string());
        }
        a.extend(self.spec.iter().cloned());
        a
    }

    /// `-t TABLE -D CHAIN SPEC...`: deletes the first rule with this spec.
    pub(super) fn delete_args(&self) -> Vec<String> {
        let mut a = self.head("-D");
        a.extend(self.spec.iter().cloned());
        a
    }

    /// `-t TABLE -C CHAIN SPEC...`: succeeds when a rule with this spec is
    /// in the chain.
    pub(super) fn check_args(&self) -> Vec<String> {
        let mut a = self.head("-C");
        a.extend(self.spec.iter().cloned());
        a
    }

    fn head(&self, op: &str) -> Vec<String> {
        vec![
            "-t".to_string(),
            self.table.to_string(),
            op.to_string(),
            self.chain.to_string(),
        ]
    }
}

/// The xtables queue rules for one family, at the hooks `cfg.paths`
/// needs (see `hooks` for why there). Several ports use `multiport`, 15
/// ports per rule at most.
pub(super) fn queue_rules(cfg: &Config, _fam: Family) -> Vec<XtRule> {
    let ports = dedup_ports(&cfg.queued_ports());
    let hooks = queue_hooks(cfg.paths);
    let mut out = Vec::new();
    for hook in &hooks {
        for chunk in ports.chunks(MULTIPORT_MAX) {
            let mut spec = hook_match(hook);
            spec.extend(port_match(chunk, hook.toward));
            spec.extend(comment_spec());
            spec.extend(queue_target(cfg));
            if cfg.queue_bypass {
                // Let control traffic pass (unhelped) while ftp-alg is down.
                spec.push("--queue-bypass".to_string());
            }
            out.push(XtRule {
                table: hook.table,
                chain: hook.chain,
                position: None,
                spec,
            });
        }
    }
    for hook in hooks.iter().filter(|h| h.hold) {
        out.extend(hold_rules(cfg, &ports, hook.chain));
    }
    out
}

/// The loopback exclusion and local-destination restriction of a hook.
fn hook_match(hook: &QueueHook) -> Vec<String> {
    let mut spec = Vec::new();
    match hook.lo {
        Some(Lo::In) => spec.extend(["!", "-i", "lo"].map(String::from)),
        Some(Lo::Out) => spec.extend(["!", "-o", "lo"].map(String::from)),
        None => {}
    }
    spec.extend(["-p", "tcp"].map(String::from));
    if hook.local_dst {
        spec.extend(["-m", "addrtype", "--dst-type", "LOCAL"].map(String::from));
    }
    spec
}

/// `--dport P` or `-m multiport --dports P1,P2` (sport toward the client).
fn port_match(chunk: &[u16], toward: Toward) -> Vec<String> {
    let dir = toward.port_letter();
    if let [one] = chunk {
        vec![format!("--{dir}port"), one.to_string()]
    } else {
        let list: Vec<String> = chunk.iter().map(u16::to_string).collect();
        vec![
            "-m".to_string(),
            "multiport".to_string(),
            format!("--{dir}ports"),
            list.join(","),
        ]
    }
}

/// `-j NFQUEUE` with the queue number or range, without bypass.
fn queue_target(cfg: &Config) -> Vec<String> {
    let mut spec: Vec<String> = ["-j", "NFQUEUE"].map(String::from).to_vec();
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
    spec
}

/// With `[durable]` on (`docs/durable.md`): the rules that keep an edited
/// stream from passing unadjusted while no instance runs, for one mangle
/// chain (FORWARD, or INPUT/OUTPUT with the `local` path). Inserted at the
/// head of the chain after the queue rule there, so they come before it: a
/// client's packet of a connection marked edited that no instance saw
/// (queued at raw PREROUTING or raw OUTPUT with bypass, so without the seen
/// mark) is dropped; a server's packet of such a connection is queued
/// without bypass (dropped while nobody listens). TCP retransmits both.
/// They sit in a chain those packets cross anyway: no extra hook.
fn hold_rules(cfg: &Config, ports: &[u16], chain: &'static str) -> Vec<XtRule> {
    let d = &cfg.durable;
    if !d.enabled {
        return Vec::new();
    }
    let edited = format!("{:#x}/{:#x}", d.edited_mark, d.edited_mark);
    // Not seen: mark & seen == 0 (no `!`, which restore files would need
    // quoted).
    let unseen = format!("0x0/{:#x}", d.seen_mark);
    let mut out = Vec::new();
    for chunk in ports.chunks(MULTIPORT_MAX) {
        for toward in [Toward::Server, Toward::Client] {
            let mut spec = vec!["-p".to_string(), "tcp".to_string()];
            spec.extend(port_match(chunk, toward));
            spec.extend(["-m", "connmark", "--mark", &edited].map(String::from));
            if toward == Toward::Server {
                spec.extend(["-m", "mark", "--mark", &unseen].map(String::from));
            }
            spec.extend(comment_spec());
            if toward == Toward::Server {
                spec.extend(["-j", "DROP"].map(String::from));
            } else {
                spec.extend(queue_target(cfg));
            }
            out.push(XtRule {
                table: "mangle",
                chain,
                position: None,
                spec,
            });
        }
    }
    out
}

/// The accept rules for the admin's filter chains, one per chain
/// `cfg.paths` needs (FORWARD; INPUT and OUTPUT for `local`).
pub(super) fn accept_rules(cfg: &Config, _fam: Family) -> Vec<XtRule> {
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
    accept_chains(cfg.paths)
        .into_iter()
        .map(|chain| XtRule {
            table: "filter",
            chain,
            position: Some(1),
            spec: spec.clone(),
        })
        .collect()
}

/// Every rule of ftp-alg's carries this comment, so that a stale copy is
/// found again after a crash.
fn comment_spec() -> [String; 4] {
    ["-m", "comment", "--comment", RULE_COMMENT].map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ports: &[u16]) -> Config {
        Config {
            control_ports: ports.to_vec(),
            queue_num: 7,
            ct_mark: 0x0000_0040,
            ..plain()
        }
    }

    fn lines(rules: &[XtRule], args: fn(&XtRule) -> Vec<String>) -> Vec<String> {
        rules.iter().map(|r| args(r).join(" ")).collect()
    }

    /// The default configuration without `[durable]`'s hold rules.
    fn plain() -> Config {
        let mut c = Config::default();
        c.durable.enabled = false;
        c
    }

    #[test]
    fn edited_streams_are_held_in_mangle_forward() {
        let all = queue_rules(&Config::default(), Family::V4);
        let plain = queue_rules(&plain(), Family::V4);
        assert_eq!(all[..2], plain[..]);
        assert_eq!(
            lines(&all[2..], XtRule::insert_args),
            [
                "-t mangle -I FORWARD -p tcp --dport 21 -m connmark --mark 0x2000000/0x2000000 \
                 -m mark --mark 0x0/0x2000000 -m comment --comment ftp-alg -j DROP",
                "-t mangle -I FORWARD -p tcp --sport 21 -m connmark --mark 0x2000000/0x2000000 \
                 -m comment --comment ftp-alg -j NFQUEUE --queue-num 21",
            ]
        );
    }

    #[test]
    fn one_port_one_queue() {
        let r = queue_rules(&plain(), Family::V4);
        assert_eq!(
            lines(&r, XtRule::insert_args),
            [
                "-t raw -I PREROUTING ! -i lo -p tcp --dport 21 -m comment --comment ftp-alg \
                 -j NFQUEUE --queue-num 21 --queue-bypass",
                "-t mangle -I FORWARD -p tcp --sport 21 -m comment --comment ftp-alg \
                 -j NFQUEUE --queue-num 21 --queue-bypass",
            ]
        );
        assert_eq!(
            lines(&r, XtRule::delete_args),
            [
                "-t raw -D PREROUTING ! -i lo -p tcp --dport 21 -m comment --comment ftp-alg \
                 -j NFQUEUE --queue-num 21 --queue-bypass",
                "-t mangle -D FORWARD -p tcp --sport 21 -m comment --comment ftp-alg \
                 -j NFQUEUE --queue-num 21 --queue-bypass",
            ]
        );
        assert_eq!(
            lines(&r, XtRule::check_args),
            [
                "-t raw -C PREROUTING ! -i lo -p tcp --dport 21 -m comment --comment ftp-alg \
                 -j NFQUEUE --queue-num 21 --queue-bypass",
                "-t mangle -C FORWARD -p tcp --sport 21 -m comment --comment ftp-alg \
                 -j NFQUEUE --queue-num 21 --queue-bypass",
            ]
        );
    }

    #[test]
    fn several_ports_several_queues_no_bypass() {
        let mut c = cfg(&[21, 2121, 21]);
        c.queues = 4;
        c.queue_bypass = false;
        let r = queue_rules(&c, Family::V6);
        assert_eq!(
            lines(&r, XtRule::insert_args),
            [
                "-t raw -I PREROUTING ! -i lo -p tcp -m multiport --dports 21,2121 \
                 -m comment --comment ftp-alg -j NFQUEUE --queue-balance 7:10",
                "-t mangle -I FORWARD -p tcp -m multiport --sports 21,2121 \
                 -m comment --comment ftp-alg -j NFQUEUE --queue-balance 7:10",
            ]
        );
    }

    #[test]
    fn multiport_takes_15_ports_per_rule() {
        let many: Vec<u16> = (1..=20).collect();
        let r = queue_rules(&cfg(&many), Family::V4);
        let tail = "-m comment --comment ftp-alg -j NFQUEUE --queue-num 7 --queue-bypass";
        assert_eq!(
            lines(&r, XtRule::insert_args),
            [
                format!("-t raw -I PREROUTING ! -i lo -p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 {tail}"),
                format!("-t raw -I PREROUTING ! -i lo -p tcp -m multiport --dports 16,17,18,19,20 {tail}"),
                format!("-t mangle -I FORWARD -p tcp -m multiport --sports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 {tail}"),
                format!("-t mangle -I FORWARD -p tcp -m multiport --sports 16,17,18,19,20 {tail}"),
            ]
        );
    }

    fn with_paths(forward: bool, local: bool) -> Config {
        Config {
            paths: crate::config::Paths { forward, local },
            ..plain()
        }
    }

    #[test]
    fn local_path_queues_at_output_input_and_output() {
        let tail = "-m comment --comment ftp-alg -j NFQUEUE --queue-num 21 --queue-bypass";
        assert_eq!(
            lines(&queue_rules(&with_paths(false, true), Family::V4), XtRule::insert_args),
            [
                // Alone, only to this host's addresses: a forwarded
                // session's other direction is queued nowhere.
                format!("-t raw -I PREROUTING ! -i lo -p tcp -m addrtype --dst-type LOCAL --dport 21 {tail}"),
                format!("-t raw -I OUTPUT ! -o lo -p tcp --dport 21 {tail}"),
                format!("-t mangle -I INPUT ! -i lo -p tcp --sport 21 {tail}"),
                format!("-t mangle -I OUTPUT ! -o lo -p tcp --sport 21 {tail}"),
            ]
        );
        assert_eq!(
            lines(
                &queue_rules(&with_paths(true, true), Family::V6),
                XtRule::insert_args
            ),
            [
                format!("-t raw -I PREROUTING ! -i lo -p tcp --dport 21 {tail}"),
                format!("-t mangle -I FORWARD -p tcp --sport 21 {tail}"),
                format!("-t raw -I OUTPUT ! -o lo -p tcp --dport 21 {tail}"),
                format!("-t mangle -I INPUT ! -i lo -p tcp --sport 21 {tail}"),
                format!("-t mangle -I OUTPUT ! -o lo -p tcp --sport 21 {tail}"),
            ]
        );
    }

    #[test]
    fn local_holds_go_into_mangle_input_and_output() {
        let mut c = Config::default();
        c.paths.local = true;
        let held: Vec<String> = queue_rules(&c, Family::V4)
            .iter()
            .filter(|r| r.spec.iter().any(|w| w == "connmark"))
            .map(|r| format!("{} {} {}", r.table, r.chain, r.spec.last().unwrap()))
            .collect();
        // Each chain: the drop of an unseen client->server packet, the
        // queue without bypass of a server->client one.
        assert_eq!(
            held,
            [
                "mangle FORWARD DROP",
                "mangle FORWARD 21",
                "mangle INPUT DROP",
                "mangle INPUT 21",
                "mangle OUTPUT DROP",
                "mangle OUTPUT 21",
            ]
        );
    }

    #[test]
    fn accept_rules_go_into_input_and_output_with_local() {
        let chains = |c: &Config| -> Vec<&str> {
            accept_rules(c, Family::V4)
                .iter()
                .map(|r| r.chain)
                .collect()
        };
        assert_eq!(chains(&with_paths(true, false)), ["FORWARD"]);
        assert_eq!(chains(&with_paths(false, true)), ["INPUT", "OUTPUT"]);
        let all = accept_rules(&with_paths(true, true), Family::V6);
        assert_eq!(all.len(), 3);
        assert!(all
            .iter()
            .all(|r| r.spec == all[0].spec && r.position == Some(1)));
    }

    #[test]
    fn accept_rule_uses_the_mark_and_comes_first() {
        let a = accept_rules(&Config::default(), Family::V4).remove(0);
        assert_eq!(
            a.insert_args().join(" "),
            "-t filter -I FORWARD 1 -m conntrack --ctstate NEW -m connmark \
             --mark 0x1000000/0x1000000 -m comment --comment ftp-alg -j ACCEPT"
        );
        let a = accept_rules(&cfg(&[21]), Family::V6).remove(0);
        assert_eq!(
            a.delete_args().join(" "),
            "-t filter -D FORWARD -m conntrack --ctstate NEW -m connmark \
             --mark 0x40/0x40 -m comment --comment ftp-alg -j ACCEPT"
        );
        assert_eq!(
            a.check_args().join(" "),
            "-t filter -C FORWARD -m conntrack --ctstate NEW -m connmark \
             --mark 0x40/0x40 -m comment --comment ftp-alg -j ACCEPT"
        );
    }
}
