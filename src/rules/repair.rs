//! Putting back what a firewall reload took away: `iptables-restore` of
//! the admin's saved rules (what `netfilter-persistent reload` does) flushes
//! the tables it names, accept rule included; `nft flush ruleset` (the
//! first line of Debian's stock `/etc/nftables.conf`) deletes ftp-alg's
//! table with its pinholes and the queue rules. Only what is missing goes
//! back, the same way [`install`](super::install()) put it there, and
//! [`Installed`] keeps the record of it, so that removal still takes out
//! exactly what is there.

use super::implicit::narrowed;
use super::install::{insert_nft_accept, Installed};
use super::listing::exists;
use super::nft_text::table_text;
use super::presence::{Missing, Piece};
use super::tools::{run, strs, RulesetError};
use crate::config::{Config, TABLE_NAME};

/// What one [`Installed::repair`] found missing and did about it.
#[derive(Debug, Default)]
pub struct Repair {
    /// Pieces put back.
    pub repaired: Vec<Missing>,
    /// Pieces that could not be put back, with why (for example the admin's
    /// chain for the accept rule is gone too: ftp-alg never creates it).
    /// They are still missing, so the next check tries again.
    pub failed: Vec<(Missing, RulesetError)>,
    /// The table was loaded again: its pinhole sets and maps are empty, and
    /// the caller must add the live pinholes back.
    pub table_reloaded: bool,
}

impl Installed {
    /// Reads the live ruleset ([`Installed::missing`]) and puts back what
    /// is gone, in install order: the table, the accept rules, the queue
    /// rules last. Nothing missing costs one check and changes nothing.
    ///
    /// `cfg` is the running configuration: the one the rules were
    /// installed from (rule settings only change with a restart).
    ///
    /// An error means the ruleset could not be read; a piece that cannot be
    /// put back is reported in [`Repair::failed`] and the others still are.
    pub fn repair(&mut self, cfg: &Config) -> Result<Repair, RulesetError> {
        let mut pieces = self.missing_pieces()?;
        pieces.sort_by_key(|(_, piece)| *piece);
        let mut out = Repair::default();
        let mut narrowed_snapshots = false;
        for (missing, piece) in pieces {
            let result = match piece {
                // One reload puts back every object of the table.
                Piece::Table if out.table_reloaded => Ok(()),
                Piece::Table => {
                    let r = self.reload_table(cfg);
                    out.table_reloaded = r.is_ok();
                    r
                }
                Piece::NftAccept(i) => self.reinsert_nft_accept(cfg, i),
                Piece::Xt(i) => {
                    if !narrowed_snapshots {
                        // Before iptables-nft creates tables again.
                        self.before = narrowed(&self.before)?;
                        narrowed_snapshots = true;
                    }
                    self.reinsert_xt(i)
                }
            };
            match result {
                Ok(()) => out.repaired.push(missing),
                Err(e) => out.failed.push((missing, e)),
            }
        }
        Ok(out)
    }

    /// Loads the whole table again in one transaction: created if absent
    /// (`table` is a no-op then), deleted, declared. A table that lost only
    /// a chain cannot take the declaration on top of what is left, since a
    /// chain declared again would get its rules twice.
    fn reload_table(&self, cfg: &Config) -> Result<(), RulesetError> {
        let text = format!(
            "table inet {TABLE_NAME}\ndelete table inet {TABLE_NAME}\n{}",
            table_text(cfg, self.backend)
        );
        run("nft", &["-f", "-"], Some(&text)).map(drop)
    }

    /// Accept rule `i` in the admin's native chain, with its new handle.
    fn reinsert_nft_accept(&mut self, cfg: &Config, i: usize) -> Result<(), RulesetError> {
        let Some((at, _)) = self.nft_accept.get(i).cloned() else {
            return Ok(());
        };
        let handle = insert_nft_accept(cfg, &at)?;
        self.nft_accept[i] = (at, handle);
        Ok(())
    }

    /// One xtables rule, with the same spec (so removal finds it). An
    /// accept rule goes back only into an admin's filter chain that
    /// still exists: `iptables -I` would create it, policy accept.
    fn reinsert_xt(&self, i: usize) -> Result<(), RulesetError> {
        let Some((fam, rule)) = self.rules.get(i) else {
            return Ok(());
        };
        let bin = self.tools.get(*fam)?;
        if rule.table == "filter" && !exists(&["chain", fam.nft_family(), "filter", rule.chain]) {
            return Err(RulesetError::other(
                &format!("{} -t filter -I {}", fam.iptables_name(), rule.chain),
                "the chain is gone (ftp-alg never creates the admin's filter chain)",
            ));
        }
        run(bin, &strs(&rule.insert_args()), None).map(drop)
    }
}
