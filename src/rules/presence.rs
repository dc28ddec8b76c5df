//! Whether what [`Installed`] put in place is still in the live ruleset: a
//! firewall reload (`iptables-restore`, `nft -f` with `flush ruleset`) can
//! take ftp-alg's rules out from under it. Reports only; repairing is the
//! caller's decision.

use std::fmt;

use super::install::Installed;
use super::listing::Listing;
use super::nft_text::table_objects;
use super::tools::{run, strs, RulesetError};
use crate::config::{RULE_COMMENT, TABLE_NAME};

/// Something [`install`](super::install()) put in place that the live
/// ruleset no longer has.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Missing {
    /// The table `inet ftp_alg` is gone (and with it everything in it).
    Table,
    /// The table is there but one of its sets, maps or chains is not.
    TableObject {
        /// `set`, `map` or `chain`.
        kind: &'static str,
        /// Its name, e.g. `pin4`.
        name: &'static str,
    },
    /// An xtables NFQUEUE rule: control packets of that family and
    /// direction are not queued (they pass unhelped, or are dropped without
    /// `queue_bypass`).
    QueueRule {
        /// `ip` or `ip6`.
        family: &'static str,
        /// `raw` or `mangle`.
        table: &'static str,
        /// `PREROUTING`, `FORWARD`, `INPUT` or `OUTPUT`.
        chain: &'static str,
    },
    /// The accept rule for pinholed connections: they meet the admin's drop.
    AcceptRule {
        /// `ip`, `ip6` or `inet`.
        family: String,
        /// The admin's table.
        table: String,
        /// The admin's chain.
        chain: String,
    },
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::Table => write!(f, "table inet {TABLE_NAME}"),
            Missing::TableObject { kind, name } => {
                write!(f, "{kind} {name} of table inet {TABLE_NAME}")
            }
            Missing::QueueRule {
                family,
                table,
                chain,
            } => write!(f, "queue rule in {family} {table} {chain}"),
            Missing::AcceptRule {
                family,
                table,
                chain,
            } => write!(f, "accept rule in {family} {table} {chain}"),
        }
    }
}

impl Missing {
    /// What kind of piece this is, as the `what` label of the repair
    /// counter shows it: `table` (the table or anything in it),
    /// `queue_rule` or `accept_rule`.
    pub fn kind(&self) -> &'static str {
        match self {
            Missing::Table | Missing::TableObject { .. } => "table",
            Missing::QueueRule { .. } => "queue_rule",
            Missing::AcceptRule { .. } => "accept_rule",
        }
    }
}

/// Which record of [`Installed`] a [`Missing`] piece is, so that the repair
/// puts back exactly that one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Piece {
    /// The table or one of its objects.
    Table,
    /// `Installed::nft_accept[i]`, an accept rule in an admin's native chain.
    NftAccept(usize),
    /// `Installed::rules[i]`.
    Xt(usize),
}

impl Installed {
    /// Reads the live ruleset and lists what of this installation is no
    /// longer there (empty: all present). One `nft -j list ruleset`, plus
    /// one `iptables -C` per xtables rule, since iptables-nft keeps its
    /// rules' comments where nft cannot show them.
    ///
    /// An error means the question could not be answered (a tool could not
    /// be run, nft's output did not parse), not that something is missing.
    pub fn missing(&self) -> Result<Vec<Missing>, RulesetError> {
        Ok(self.missing_pieces()?.into_iter().map(|(m, _)| m).collect())
    }

    /// [`Installed::missing`], each with the record it is about, in the
    /// order install put them in place (the table, the native accept rule,
    /// then the xtables rules as inserted).
    pub(super) fn missing_pieces(&self) -> Result<Vec<(Missing, Piece)>, RulesetError> {
        let live = Listing::read(&["list", "ruleset"])?;
        let mut out = Vec::new();
        if self.table {
            if !live.has_table("inet", TABLE_NAME) {
                out.push((Missing::Table, Piece::Table));
            } else {
                for (kind, name) in table_objects(self.backend, self.labels, self.paths, self.ftps)
                {
                    if !live.has_object("inet", TABLE_NAME, kind, name) {
                        out.push((Missing::TableObject { kind, name }, Piece::Table));
                    }
                }
            }
        }
        for (i, (at, handle)) in self.nft_accept.iter().enumerate() {
            // By handle AND comment: a chain deleted and created again
            // numbers its rules from 1, so the handle alone may now name
            // one of the admin's rules.
            let ours = live.handles_commented(&at.family, &at.table, &at.chain, RULE_COMMENT);
            if !ours.contains(handle) {
                let missing = Missing::AcceptRule {
                    family: at.family.clone(),
                    table: at.table.clone(),
                    chain: at.chain.clone(),
                };
                out.push((missing, Piece::NftAccept(i)));
            }
        }
        for (i, (fam, rule)) in self.rules.iter().enumerate() {
            let bin = self.tools.get(*fam)?;
            match run(bin, &strs(&rule.check_args()), None) {
                Ok(_) => {}
                // Exit status 1: no such rule (or chain, or table).
                Err(e) if e.status().is_some() => {
                    let (family, table, chain) = (fam.nft_family(), rule.table, rule.chain);
                    let missing = if table == "filter" {
                        Missing::AcceptRule {
                            family: family.into(),
                            table: table.into(),
                            chain: chain.into(),
                        }
                    } else {
                        Missing::QueueRule {
                            family,
                            table,
                            chain,
                        }
                    };
                    out.push((missing, Piece::Xt(i)));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_pieces_say_where() {
        let texts: Vec<String> = [
            Missing::Table,
            Missing::TableObject {
                kind: "set",
                name: "pin4",
            },
            Missing::QueueRule {
                family: "ip6",
                table: "mangle",
                chain: "FORWARD",
            },
            Missing::AcceptRule {
                family: "inet".into(),
                table: "filter".into(),
                chain: "forward".into(),
            },
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        let kinds: Vec<&str> = [
            Missing::Table,
            Missing::TableObject {
                kind: "chain",
                name: "pinholes",
            },
            Missing::QueueRule {
                family: "ip",
                table: "raw",
                chain: "PREROUTING",
            },
            Missing::AcceptRule {
                family: "ip".into(),
                table: "filter".into(),
                chain: "FORWARD".into(),
            },
        ]
        .iter()
        .map(Missing::kind)
        .collect();
        assert_eq!(kinds, ["table", "table", "queue_rule", "accept_rule"]);
        assert_eq!(
            texts,
            [
                "table inet ftp_alg",
                "set pin4 of table inet ftp_alg",
                "queue rule in ip6 mangle FORWARD",
                "accept rule in inet filter forward",
            ]
        );
    }
}
