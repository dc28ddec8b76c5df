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
