//! Removing what a killed instance of ftp-alg left behind (its table and
//! every rule carrying the comment `ftp-alg`) before a new one installs.

use std::path::Path;

use super::implicit::delete_empty;
use super::install::delete_nft_rule;
use super::listing::{commented_handles, exists, list_table, ChainState};
use super::tools::{run, strs, RulesetError, Tools};
use super::xtables::{accept_rules, queue_rules, Family, XtRule};
use crate::config::{AcceptRule, Config, NftChain, RULE_COMMENT, TABLE_NAME};

/// Removes what a killed instance of ftp-alg left behind: the table
/// `inet ftp_alg` and every iptables-nft rule commented `ftp-alg`; then any
/// `raw`/`mangle` chain those rules leave empty (policy accept) and such a
/// table left with nothing in it, since iptables-nft created them implicitly.
/// Where iptables cannot list a table (it holds rules iptables cannot parse),
/// the rules `cfg` would produce are deleted by their spec instead.
/// Returns whether anything was found. [`install`](super::install()) calls
/// this itself.
pub fn remove_stale(cfg: &Config) -> Result<bool, RulesetError> {
    remove_stale_with(cfg, &Tools::discover(), false)
}

/// [`remove_stale`] with the iptables-nft binaries already found.
/// `adopting`: the installer keeps ftp-alg's own table and the old
/// iptables rules until its own are in ([`remove_stale_after`]), so that
/// at no moment an edited stream can pass unadjusted (issue 10).
pub(super) fn remove_stale_with(
    cfg: &Config,
    tools: &Tools,
    adopting: bool,
) -> Result<bool, RulesetError> {
    let mut found = false;
    if let AcceptRule::Nft(at) = &cfg.accept_rule {
        // Every chain configured, whatever the paths: a killed instance
        // may have run with others.
        let local = [&cfg.accept_rule_input, &cfg.accept_rule_output];
        for at in std::iter::once(at).chain(local.into_iter().flatten()) {
            found |= remove_stale_nft_accept(at)?;
        }
    }
    if adopting {
        return Ok(found);
    }
    if exists(&["table", "inet", TABLE_NAME]) {
        tracing::warn!("removing stale table inet {TABLE_NAME} (left by an earlier ftp-alg?)");
        run("nft", &["delete", "table", "inet", TABLE_NAME], None)?;
        found = true;
    }
    for fam in Family::BOTH {
        let Ok(bin) = tools.get(fam) else { continue };
        for table in ["raw", "mangle", "filter"] {
            found |= remove_stale_xtables(cfg, fam, bin, table, &|_| 0)?;
        }
    }
    Ok(found)
}

/// The `raw`/`mangle` chains that hold only rules commented `ftp-alg`
/// (a killed instance's, which [`remove_stale_after`] takes out).
pub(super) fn chains_of_ours_only(tools: &Tools) -> Vec<(Family, &'static str, String)> {
    let quoted = format!("\"{RULE_COMMENT}\"");
    let mut out = Vec::new();
    for fam in Family::BOTH {
        let Ok(bin) = tools.get(fam) else { continue };
        for table in ["raw", "mangle"] {
            if !exists(&["table", fam.nft_family(), table]) {
                continue;
            }
            let Ok(save) = run(bin, &["-t", table, "-S"], None) else {
                continue;
            };
            let mut counts: Vec<(String, usize, usize)> = Vec::new();
            for line in save.lines().filter(|l| l.starts_with("-A ")) {
                let chain = line.split_whitespace().nth(1).unwrap_or_default();
                let ours = line.contains(&format!("--comment {RULE_COMMENT} "))
                    || line.contains(&format!("--comment {quoted} "));
                match counts.iter_mut().find(|(c, _, _)| c == chain) {
                    Some((_, all, mine)) => {
                        *all += 1;
                        *mine += usize::from(ours);
                    }
                    None => counts.push((chain.to_string(), 1, usize::from(ours))),
                }
            }
            out.extend(
                counts
                    .into_iter()
                    .filter(|(_, all, mine)| all == mine)
                    .map(|(chain, _, _)| (fam, table, chain)),
            );
        }
    }
    out
}

/// After an install that left a killed instance's iptables rules in place:
/// removes those old copies (and those of a configuration that changed).
/// The new rules, inserted at the head of their chains, come first, so the
/// old ones are the commented rules after them.
pub(super) fn remove_stale_after(
    cfg: &Config,
    tools: &Tools,
    fresh: &[(Family, XtRule)],
) -> Result<bool, RulesetError> {
    let mut found = false;
    for fam in Family::BOTH {
        let Ok(bin) = tools.get(fam) else { continue };
        for table in ["raw", "mangle", "filter"] {
            let ours: Vec<&XtRule> = fresh
                .iter()
                .filter(|(f, r)| *f == fam && r.table == table)
                .map(|(_, r)| r)
                .collect();
            if exists(&["table", fam.nft_family(), table])
                && run(bin, &["-t", table, "-S"], None).is_err()
            {
                // Unlistable (rules iptables cannot parse): every copy goes
                // by spec, then ours come back.
                if remove_stale_by_spec(cfg, fam, bin, table) {
                    found = true;
                    for r in &ours {
                        run(bin, &strs(&r.insert_args()), None)?;
                    }
                }
                continue;
            }
            let ahead = |chain: &str| ours.iter().filter(|r| r.chain == chain).count();
            found |= remove_stale_xtables(cfg, fam, bin, table, &ahead)?;
        }
    }
    Ok(found)
}

/// Deletes the rules commented `ftp-alg` from one iptables-nft table, then
/// the `raw`/`mangle` chains and table they leave empty.
/// The first `ahead(chain)` rules of each chain are this instance's own.
fn remove_stale_xtables(
    cfg: &Config,
    fam: Family,
    bin: &Path,
    table: &str,
    ahead: &dyn Fn(&str) -> usize,
) -> Result<bool, RulesetError> {
    if !exists(&["table", fam.nft_family(), table]) {
        return Ok(false);
    }
    // iptables-nft keeps the comment in an xt match that `nft -j` does not
    // show, so the rules are found in iptables' own listing.
    let save = match run(bin, &["-t", table, "-S"], None) {
        Ok(s) => s,
        Err(e) => {
            // A table with rules iptables cannot parse ("incompatible")
            // still takes -I and -D: delete what this config would add.
            tracing::debug!("cannot list {table} ({e}); deleting by rule spec");
            if ["PREROUTING", "FORWARD", "INPUT", "OUTPUT"]
                .iter()
                .any(|c| ahead(c) > 0)
            {
                // By spec the first copy, our own, would go.
                tracing::warn!("cannot list {table}; stale ftp-alg rules there are left in place");
                return Ok(false);
            }
            return Ok(remove_stale_by_spec(cfg, fam, bin, table));
        }
    };
    let mut stale = stale_rules(&save);
    stale.retain(|(chain, n)| *n > ahead(chain));
    if stale.is_empty() {
        return Ok(false);
    }
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
        return Ok(true);
    }
    if let Some(now) = list_table(fam.nft_family(), table)? {
        let touched: Vec<&ChainState> = now
            .chains
            .iter()
            .filter(|c| stale.iter().any(|(s, _)| *s == c.name))
            .collect();
        delete_empty(fam, table, &now, &touched, true)?;
    }
    Ok(true)
}

/// Deletes every copy of the rules `cfg` puts into `table`, by spec; true if
/// any was there. Bounded: one stale copy per killed instance is expected.
fn remove_stale_by_spec(cfg: &Config, fam: Family, bin: &Path, table: &str) -> bool {
    let mut rules = queue_rules(cfg, fam);
    rules.extend(accept_rules(cfg, fam));
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

/// Deletes every rule commented `ftp-alg` from `at` (left by a killed
/// instance); true if any was there. A missing chain has none.
fn remove_stale_nft_accept(at: &NftChain) -> Result<bool, RulesetError> {
    let Some(handles) = commented_handles(at, RULE_COMMENT)? else {
        return Ok(false);
    };
    for handle in &handles {
        tracing::warn!(
            "removing stale ftp-alg rule in {} {} {} (handle {handle})",
            at.family,
            at.table,
            at.chain
        );
        delete_nft_rule(at, *handle)?;
    }
    Ok(!handles.is_empty())
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
