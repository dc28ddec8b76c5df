//! The tables and builtin chains iptables-nft creates implicitly when a rule
//! goes into a table or chain that did not exist yet: noted before install,
//! deleted again when ftp-alg's rules leave them empty, so that removal
//! restores `nft list ruleset` exactly.

use super::listing::{list_table, ChainState, TableState};
use super::tools::{run, RulesetError};
use super::xtables::Family;

/// iptables-nft tables that ftp-alg's queue rules may create implicitly and
/// that must therefore be put back the way they were at removal.
pub(super) const QUEUE_TABLES: [&str; 2] = ["raw", "mangle"];

/// State of one iptables-nft table (`raw`/`mangle`) before install.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct TableSnapshot {
    pub(super) family: Family,
    pub(super) table: &'static str,
    /// `None` when the table did not exist; else the chain names.
    pub(super) chains: Option<Vec<String>>,
}

/// Notes which of the queue tables and their chains exist now.
pub(super) fn snapshot() -> Result<Vec<TableSnapshot>, RulesetError> {
    let mut out = Vec::new();
    for family in Family::BOTH {
        for table in QUEUE_TABLES {
            let chains = list_table(family.nft_family(), table)?
                .map(|t| t.chains.into_iter().map(|c| c.name).collect());
            out.push(TableSnapshot {
                family,
                table,
                chains,
            });
        }
    }
    Ok(out)
}

/// The snapshots narrowed to what still exists now (see [`narrow`]).
pub(super) fn narrowed(before: &[TableSnapshot]) -> Result<Vec<TableSnapshot>, RulesetError> {
    let now = snapshot()?;
    Ok(before
        .iter()
        .map(|b| {
            let n = now
                .iter()
                .find(|n| n.family == b.family && n.table == b.table);
            narrow(b, n)
        })
        .collect())
}

/// What of `before` is still there in `now`. Called before ftp-alg's
/// rules go back in after a firewall reload: a table or chain the reload
/// took away is one iptables-nft creates again for ftp-alg, so it is
/// ftp-alg's to delete at removal (when empty), even if the admin had it
/// before; one that stayed, or came back with the reload, stays theirs.
fn narrow(before: &TableSnapshot, now: Option<&TableSnapshot>) -> TableSnapshot {
    let chains = match (&before.chains, now.and_then(|n| n.chains.as_ref())) {
        (Some(b), Some(n)) => Some(b.iter().filter(|c| n.contains(c)).cloned().collect()),
        _ => None,
    };
    TableSnapshot {
        family: before.family,
        table: before.table,
        chains,
    }
}

/// [`snapshot`] as it would read without a killed instance's rules: the
/// chains in `ours_only` (holding nothing but such rules) are taken as not
/// there, and a table left with no chain as not there either, so that
/// removal deletes them as iptables-nft's implicit creations.
pub(super) fn snapshot_without(
    ours_only: &[(Family, &'static str, String)],
) -> Result<Vec<TableSnapshot>, RulesetError> {
    let mut snaps = snapshot()?;
    for snap in &mut snaps {
        if let Some(chains) = snap.chains.as_mut() {
            let before = chains.len();
            chains.retain(|c| {
                !ours_only
                    .iter()
                    .any(|(f, t, name)| *f == snap.family && *t == snap.table && name == c)
            });
            if chains.is_empty() && before > 0 {
                snap.chains = None;
            }
        }
    }
    Ok(snaps)
}

/// Deletes the chains of `snap`'s table that did not exist before and are
/// empty now, then the table if it did not exist before and is empty now.
/// Anything with rules in it (someone else's) stays.
pub(super) fn restore_table(snap: &TableSnapshot) -> Result<(), RulesetError> {
    let Some(now) = list_table(snap.family.nft_family(), snap.table)? else {
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
pub(super) fn delete_empty(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(chains: Option<&[&str]>) -> TableSnapshot {
        TableSnapshot {
            family: Family::V4,
            table: "raw",
            chains: chains.map(|c| c.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn what_a_reload_took_away_is_no_longer_the_admins() {
        let before = snap(Some(&["PREROUTING", "OUTPUT"]));
        // The reload deleted the table: all of it is ftp-alg's from now on.
        assert_eq!(narrow(&before, Some(&snap(None))), snap(None));
        assert_eq!(narrow(&before, None), snap(None));
        // It deleted one chain and brought a new one: only the chain that
        // stayed is still the admin's.
        assert_eq!(
            narrow(&before, Some(&snap(Some(&["OUTPUT", "user"])))),
            snap(Some(&["OUTPUT"]))
        );
        // A table that was not there before never becomes the admin's.
        assert_eq!(
            narrow(&snap(None), Some(&snap(Some(&["PREROUTING"])))),
            snap(None)
        );
    }
}
