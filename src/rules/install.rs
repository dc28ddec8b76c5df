//! The all-or-nothing installer and [`Installed`], the record of what it put
//! in place, whose removal restores the ruleset exactly.

use super::backend::{detect_queue_backend, QueueBackend};
use super::implicit::{restore_table, snapshot_without, TableSnapshot};
use super::listing::{commented_handles, exists};
use super::nft_text::{adopt_text, nft_accept_rule, table_text};
use super::stale::{chains_of_ours_only, remove_stale_after, remove_stale_with};
use super::tools::{run, strs, RulesetError, Tools};
use super::xtables::{accept_rules, queue_rules, Family, XtRule};
use crate::config::{AcceptRule, Config, NftChain, Paths, RULE_COMMENT, TABLE_NAME};

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
    if backend == QueueBackend::Xtables && !tools.complete() {
        return Err(RulesetError::other(
            "iptables-nft",
            "the kernel has no native nftables queue and iptables-nft/ip6tables-nft \
             were not found (iptables must be the nf_tables variant)",
        ));
    }
    remove_stale_with(cfg, &tools, true)?;

    // The killed instance's rules are still there (see remove_stale_after):
    // chains holding only those count as not there before.
    let before = snapshot_without(&chains_of_ours_only(&tools))?;
    let mut inst = Installed {
        backend,
        tools,
        before,
        table: false,
        labels: cfg.durable.enabled,
        paths: cfg.paths,
        ftps: !cfg.ftps.is_empty(),
        rules: Vec::new(),
        nft_accept: Vec::new(),
        done: false,
    };
    tracing::info!(?backend, "installing ftp-alg rules");
    match inst.install_steps(cfg) {
        Ok(()) => {
            if let Err(e) = remove_stale_after(cfg, &inst.tools, &inst.rules) {
                tracing::warn!("stale ftp-alg rules left in place: {e}");
            }
            Ok(inst)
        }
        Err(e) => {
            tracing::error!("installing ftp-alg rules failed, undoing: {e}");
            if let Err(undo) = inst.undo() {
                tracing::error!("undoing a failed install also failed: {undo}");
            }
            Err(e)
        }
    }
}

/// What [`install`] put in place, so that exactly that can be taken out again.
///
/// Dropping it without calling [`Installed::remove`] removes the rules too
/// (errors are only logged); `std::mem::forget` leaves them in place, as a
/// killed daemon would.
#[derive(Debug)]
pub struct Installed {
    /// How the queue rules were installed.
    pub(super) backend: QueueBackend,
    /// The iptables-nft binaries found at install time.
    pub(super) tools: Tools,
    /// The iptables-nft `raw`/`mangle` tables before install, to delete the
    /// ones (and the builtin chains) that iptables-nft created implicitly.
    pub(super) before: Vec<TableSnapshot>,
    /// Whether our table was loaded.
    pub(super) table: bool,
    /// Whether it has the `labels` chain (`[durable]` on).
    pub(super) labels: bool,
    /// The paths installed for (which chains the table has).
    pub(super) paths: Paths,
    /// Whether it has the FTPS range sets (`[[ftps]]` configured).
    pub(super) ftps: bool,
    /// The iptables rules inserted, in insertion order.
    pub(super) rules: Vec<(Family, XtRule)>,
    /// The accept rules inserted into the admin's nftables chains
    /// (`accept_rule = "nft ..."`, and `accept_rule_input`/`_output` with
    /// `local`), each with its handle, in [`nft_accept_chains`] order.
    pub(super) nft_accept: Vec<(NftChain, u64)>,
    /// Set once removed (or handed over), so that `Drop` does not remove.
    pub(super) done: bool,
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
        let table = table_text(cfg, self.backend);
        match existing_chains() {
            Some(chains) => {
                // Left by a killed instance: adopted in one transaction, so
                // its pending pinholes stay and its `labels` chain never goes
                // away (issue 10); replaced if that fails.
                tracing::warn!("adopting table inet {TABLE_NAME} left by an earlier ftp-alg (pending pinholes kept)");
                if let Err(e) = run("nft", &["-f", "-"], Some(&adopt_text(&table, &chains))) {
                    tracing::warn!("cannot adopt table inet {TABLE_NAME} ({e}); replacing it");
                    run("nft", &["delete", "table", "inet", TABLE_NAME], None)?;
                    run("nft", &["-f", "-"], Some(&table))?;
                }
            }
            None => {
                run("nft", &["-f", "-"], Some(&table))?;
            }
        }
        self.table = true;

        match &cfg.accept_rule {
            AcceptRule::Iptables => self.insert_iptables_accept(cfg)?,
            AcceptRule::None => tracing::info!(
                "accept_rule = \"none\": your forward chain must accept new connections \
                 marked {m:#010x} (`ct state new ct mark & {m:#010x} == {m:#010x} accept`)",
                m = cfg.ct_mark
            ),
            AcceptRule::Nft(_) => {
                for at in nft_accept_chains(cfg) {
                    let handle = insert_nft_accept(cfg, &at)?;
                    self.nft_accept.push((at, handle));
                }
            }
        }

        if self.backend == QueueBackend::Xtables {
            for fam in Family::BOTH {
                for r in queue_rules(cfg, fam) {
                    self.insert(fam, r)?;
                }
            }
        }
        Ok(())
    }

    /// `accept_rule = "iptables"`: first in filter FORWARD (and INPUT,
    /// OUTPUT with `local`) of each family whose chain exists.
    fn insert_iptables_accept(&mut self, cfg: &Config) -> Result<(), RulesetError> {
        for fam in Family::BOTH {
            for rule in accept_rules(cfg, fam) {
                // Never create the admin's filter table or chain: no such
                // chain there means iptables-nft is not what filters
                // that traffic.
                if !exists(&["chain", fam.nft_family(), "filter", rule.chain]) {
                    tracing::info!(
                        "no iptables-nft {} filter {} chain; if your firewall drops that \
                         traffic, add to its chain: ct state new ct mark & {m:#010x} == {m:#010x} accept",
                        fam.nft_family(),
                        rule.chain,
                        m = cfg.ct_mark
                    );
                    continue;
                }
                if self.tools.get(fam).is_err() {
                    // A hand-written nft table may use these names too;
                    // without iptables-nft we cannot manage a rule there.
                    // Say so instead of refusing to start.
                    tracing::warn!(
                        "{} filter {} exists but {}-nft was not found; add the accept \
                         rule yourself (see `ftp-alg rules`)",
                        fam.nft_family(),
                        rule.chain,
                        fam.iptables_name()
                    );
                    continue;
                }
                self.insert(fam, rule)?;
            }
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
        // A firewall reload may have taken any of these out already:
        // absent is what removal wants, not an error.
        while let Some((fam, rule)) = self.rules.pop() {
            note(self.delete_xt(fam, &rule));
        }
        while let Some((at, handle)) = self.nft_accept.pop() {
            note(delete_own_nft_rule(&at, handle));
        }
        if self.table {
            self.table = false;
            let table = ["table", "inet", TABLE_NAME];
            note(
                match run("nft", &["delete", table[0], table[1], table[2]], None) {
                    Err(e) if e.status().is_some() && !exists(&table) => {
                        tracing::debug!("table inet {TABLE_NAME} already gone");
                        Ok(())
                    }
                    other => other.map(drop),
                },
            );
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

impl Installed {
    /// Deletes one xtables rule; one that is no longer there (`-D` and
    /// `-C` both say so) is fine.
    fn delete_xt(&self, fam: Family, rule: &XtRule) -> Result<(), RulesetError> {
        let bin = self.tools.get(fam)?;
        match run(bin, &strs(&rule.delete_args()), None) {
            Ok(_) => Ok(()),
            Err(e) if e.status().is_some() => match run(bin, &strs(&rule.check_args()), None) {
                Err(c) if c.status().is_some() => {
                    tracing::debug!(
                        "{} -t {} {}: ftp-alg's rule already gone",
                        fam.iptables_name(),
                        rule.table,
                        rule.chain
                    );
                    Ok(())
                }
                _ => Err(e),
            },
            Err(e) => Err(e),
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

/// The admin's native chains that get the accept rule with
/// `accept_rule = "nft ..."`: that chain with the `forward` path,
/// `accept_rule_input` and `accept_rule_output` (when set) with `local`.
pub(super) fn nft_accept_chains(cfg: &Config) -> Vec<NftChain> {
    let AcceptRule::Nft(forward) = &cfg.accept_rule else {
        return Vec::new();
    };
    let mut v = Vec::new();
    if cfg.paths.forward {
        v.push(forward.clone());
    }
    if cfg.paths.local {
        v.extend(cfg.accept_rule_input.iter().cloned());
        v.extend(cfg.accept_rule_output.iter().cloned());
    }
    v
}

/// Inserts the accept rule first in `at` and returns its handle (to delete
/// exactly that rule at exit). The chain must exist: ftp-alg never creates
/// the admin's filter chain.
///
/// The handle is the one rule commented `ftp-alg` that was not in the chain
/// before (stale copies are gone by now, so normally the only one): nft
/// 1.0.6 echoes no handle in JSON for a rule given as text, and the rule is
/// given as text so that what is installed is what `ftp-alg rules` prints.
pub(super) fn insert_nft_accept(cfg: &Config, at: &NftChain) -> Result<u64, RulesetError> {
    let place = format!("{} {} {}", at.family, at.table, at.chain);
    let no_chain = || {
        RulesetError::other(
            &format!("nft list chain {place}"),
            "no such chain (ftp-alg never creates the admin's chain)",
        )
    };
    let before = commented_handles(at, RULE_COMMENT)?.ok_or_else(no_chain)?;
    let text = format!("insert rule {place} {}\n", nft_accept_rule(cfg));
    run("nft", &["-f", "-"], Some(&text))?;
    let after = commented_handles(at, RULE_COMMENT)?.ok_or_else(no_chain)?;
    let new: Vec<u64> = after.into_iter().filter(|h| !before.contains(h)).collect();
    match new.as_slice() {
        [handle] => Ok(*handle),
        _ => {
            // Someone else added one at the same moment: take out what
            // cannot be told apart rather than leave an unrecorded rule.
            for h in &new {
                let _ = delete_nft_rule(at, *h);
            }
            Err(RulesetError::other(
                &format!("nft insert rule {place}"),
                format!("expected one new rule commented {RULE_COMMENT}, found {new:?}"),
            ))
        }
    }
}

/// Deletes ftp-alg's accept rule `handle` from `at` if it is still there:
/// gone with its chain, or replaced by a reload (whose rules may reuse the
/// number: a chain created again numbers its rules from 1), it is left
/// alone, since a rule without the comment is the admin's.
fn delete_own_nft_rule(at: &NftChain, handle: u64) -> Result<(), RulesetError> {
    match commented_handles(at, RULE_COMMENT)? {
        Some(ours) if ours.contains(&handle) => delete_nft_rule(at, handle),
        _ => {
            tracing::debug!(
                "accept rule {handle} in {} {} {} already gone",
                at.family,
                at.table,
                at.chain
            );
            Ok(())
        }
    }
}

/// `nft delete rule FAMILY TABLE CHAIN handle HANDLE`.
pub(super) fn delete_nft_rule(at: &NftChain, handle: u64) -> Result<(), RulesetError> {
    let handle = handle.to_string();
    let args = [
        "delete", "rule", &at.family, &at.table, &at.chain, "handle", &handle,
    ];
    run("nft", &args, None).map(drop)
}

/// Rejects configurations that would produce a broken ruleset.
pub(super) fn validate(cfg: &Config) -> Result<(), RulesetError> {
    cfg.validate()
        .map_err(|e| RulesetError::other("config", e.to_string()))
}

/// The chains of ftp-alg's table as `nft list table` shows them, or `None`
/// when there is no such table.
fn existing_chains() -> Option<Vec<String>> {
    let listing = run("nft", &["list", "table", "inet", TABLE_NAME], None).ok()?;
    Some(
        listing
            .lines()
            .filter_map(|l| l.trim().strip_prefix("chain "))
            .filter_map(|rest| rest.split_whitespace().next().map(String::from))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_rejects_nonsense() {
        assert!(validate(&Config::default()).is_ok());
        let ports = |p: &[u16]| Config {
            control_ports: p.to_vec(),
            ..Config::default()
        };
        assert!(validate(&ports(&[])).is_err());
        assert!(validate(&ports(&[0])).is_err());
        let c = Config {
            ct_mark: 0,
            ..Config::default()
        };
        let e = validate(&c).unwrap_err();
        assert!(e.to_string().contains("ct_mark"), "{e}");
        assert_eq!(e.command(), "config");
    }

    #[test]
    fn native_accept_chains_follow_the_paths() {
        let names = |toml: &str| -> Vec<String> {
            nft_accept_chains(&Config::from_toml(toml).unwrap())
                .iter()
                .map(|c| c.chain.clone())
                .collect()
        };
        let native = "accept_rule = \"nft inet filter forward\"\n\
                      accept_rule_input = \"nft inet filter input\"\n\
                      accept_rule_output = \"nft inet filter output\"\n";
        assert_eq!(names(native), ["forward"]);
        assert_eq!(
            names(&format!("paths = [\"forward\", \"local\"]\n{native}")),
            ["forward", "input", "output"]
        );
        assert_eq!(
            names(&format!("paths = [\"local\"]\n{native}")),
            ["input", "output"]
        );
        assert!(names("paths = [\"local\"]").is_empty());
    }
}
