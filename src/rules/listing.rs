//! Reading the live ruleset: `nft -j list ...` parsed with serde_json into
//! the few facts the installer acts on (which tables, chains and sets exist,
//! how many rules a chain holds and its policy, the handles of the rules
//! that carry a given comment).
//!
//! Anything the parser does not know (flowtables, counters, table flags...)
//! counts as content, so that a table or chain never looks emptier than it
//! is: the installer deletes only what it proves empty.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::tools::{run, RulesetError};
use crate::config::NftChain;

/// One chain as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ChainState {
    /// The chain's name.
    pub(super) name: String,
    /// Rules in the chain. A chain comment also counts: when unsure, keep
    /// the chain.
    pub(super) rules: usize,
    /// True for a regular chain or a base chain with policy accept.
    pub(super) policy_accept: bool,
}

/// One table as listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct TableState {
    /// Its chains, in listing order.
    pub(super) chains: Vec<ChainState>,
    /// Sets, maps, flowtables, table flags or comment...: anything that is
    /// not a chain.
    pub(super) other: usize,
}

/// Everything one `nft -j list ...` printed, flattened.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Listing {
    tables: Vec<Table>,
    chains: Vec<Chain>,
    rules: Vec<Rule>,
    others: Vec<Other>,
}

#[derive(Debug, PartialEq, Eq, Deserialize)]
struct Table {
    family: String,
    name: String,
    /// Present when the table has flags (e.g. dormant).
    flags: Option<Value>,
    comment: Option<String>,
}

#[derive(Debug, PartialEq, Eq, Deserialize)]
struct Chain {
    family: String,
    table: String,
    name: String,
    /// Base chains only.
    policy: Option<String>,
    comment: Option<String>,
}

#[derive(Debug, PartialEq, Eq, Deserialize)]
struct Rule {
    family: String,
    table: String,
    chain: String,
    handle: u64,
    comment: Option<String>,
}

/// A set, map, flowtable, stateful object...: kept by kind and name.
#[derive(Debug, PartialEq, Eq, Deserialize)]
struct Other {
    #[serde(skip)]
    kind: String,
    family: Option<String>,
    table: Option<String>,
    name: Option<String>,
}

/// The top level of nft's JSON output.
#[derive(Deserialize)]
struct Document {
    nftables: Vec<Map<String, Value>>,
}

impl Listing {
    /// Runs `nft -j ARGS` (e.g. `["list", "ruleset"]`) and parses its output.
    pub(super) fn read(args: &[&str]) -> Result<Listing, RulesetError> {
        let mut all = vec!["-j"];
        all.extend_from_slice(args);
        let out = run("nft", &all, None)?;
        Listing::parse(&out).map_err(|e| {
            RulesetError::other(&format!("nft {}", all.join(" ")), format!("output: {e}"))
        })
    }

    /// Parses nft's JSON output (schema version 1, nftables 0.9.3 and later).
    pub(super) fn parse(json: &str) -> Result<Listing, serde_json::Error> {
        let doc: Document = serde_json::from_str(json)?;
        let mut l = Listing::default();
        for object in doc.nftables {
            // Every object is `{ "KIND": { ... } }`.
            for (kind, body) in object {
                match kind.as_str() {
                    "metainfo" => {}
                    "table" => l.tables.push(serde_json::from_value(body)?),
                    "chain" => l.chains.push(serde_json::from_value(body)?),
                    "rule" => l.rules.push(serde_json::from_value(body)?),
                    _ => {
                        let mut o: Other = serde_json::from_value(body)?;
                        o.kind = kind;
                        l.others.push(o);
                    }
                }
            }
        }
        Ok(l)
    }

    /// Whether table `family name` was listed.
    pub(super) fn has_table(&self, family: &str, name: &str) -> bool {
        self.tables
            .iter()
            .any(|t| t.family == family && t.name == name)
    }

    /// Whether `table` of `family` holds a `kind` (`chain`, `set`, `map`...)
    /// called `name`.
    pub(super) fn has_object(&self, family: &str, table: &str, kind: &str, name: &str) -> bool {
        if kind == "chain" {
            return self
                .chains
                .iter()
                .any(|c| c.family == family && c.table == table && c.name == name);
        }
        self.others.iter().any(|o| {
            o.kind == kind
                && o.family.as_deref() == Some(family)
                && o.table.as_deref() == Some(table)
                && o.name.as_deref() == Some(name)
        })
    }

    /// Handles of the rules in `family table chain` whose comment is
    /// `comment`, in listing (= chain) order.
    pub(super) fn handles_commented(
        &self,
        family: &str,
        table: &str,
        chain: &str,
        comment: &str,
    ) -> Vec<u64> {
        self.rules
            .iter()
            .filter(|r| r.family == family && r.table == table && r.chain == chain)
            .filter(|r| r.comment.as_deref() == Some(comment))
            .map(|r| r.handle)
            .collect()
    }

    /// The chains and other content of one table, `None` if not listed.
    pub(super) fn table(&self, family: &str, name: &str) -> Option<TableState> {
        let t = self
            .tables
            .iter()
            .find(|t| t.family == family && t.name == name)?;
        let in_table = |f: &str, n: &str| f == family && n == name;
        let chains = self
            .chains
            .iter()
            .filter(|c| in_table(&c.family, &c.table))
            .map(|c| ChainState {
                name: c.name.clone(),
                rules: self
                    .rules
                    .iter()
                    .filter(|r| in_table(&r.family, &r.table) && r.chain == c.name)
                    .count()
                    + usize::from(c.comment.is_some()),
                policy_accept: c.policy.as_deref().is_none_or(|p| p == "accept"),
            })
            .collect();
        let others = self
            .others
            .iter()
            .filter(|o| o.family.as_deref() == Some(family) && o.table.as_deref() == Some(name))
            .count();
        Some(TableState {
            chains,
            other: others + usize::from(t.flags.is_some()) + usize::from(t.comment.is_some()),
        })
    }
}

/// Like [`Listing::read`], but `Ok(None)` when nft refuses to list (what
/// was asked for does not exist); an error when the output does not parse.
pub(super) fn read_if_exists(args: &[&str]) -> Result<Option<Listing>, RulesetError> {
    match Listing::read(args) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.status().is_some() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The live state of table `family name`, `None` when it does not exist.
pub(super) fn list_table(family: &str, name: &str) -> Result<Option<TableState>, RulesetError> {
    Ok(read_if_exists(&["list", "table", family, name])?.and_then(|l| l.table(family, name)))
}

/// Handles of the rules commented `comment` in the nft chain `at`, `None`
/// when the chain does not exist.
pub(super) fn commented_handles(
    at: &NftChain,
    comment: &str,
) -> Result<Option<Vec<u64>>, RulesetError> {
    let listing = read_if_exists(&["list", "chain", &at.family, &at.table, &at.chain])?;
    Ok(listing.map(|l| l.handles_commented(&at.family, &at.table, &at.chain, comment)))
}

/// Whether nft can list `what` (e.g. `["table", "ip", "filter"]`), i.e. it
/// exists.
pub(super) fn exists(what: &[&str]) -> bool {
    let mut args = vec!["list"];
    args.extend_from_slice(what);
    run("nft", &args, None).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nft -j list ruleset` of nftables 1.0.6 (Debian 12) for: iptables-nft
    /// `raw` with ftp-alg's queue rule, a drop policy and, added with nft, a
    /// regular chain and a set; a native `inet filter forward` with ftp-alg's
    /// accept rule first; a dormant table.
    const RULESET: &str = include_str!("testdata/listing_ruleset.json");

    fn chain(name: &str, rules: usize, policy_accept: bool) -> ChainState {
        ChainState {
            name: name.into(),
            rules,
            policy_accept,
        }
    }

    #[test]
    fn tables_count_rules_policy_and_other_content() {
        let l = Listing::parse(RULESET).unwrap();
        assert_eq!(
            l.table("ip", "raw"),
            Some(TableState {
                chains: vec![
                    chain("PREROUTING", 1, true),
                    chain("OUTPUT", 0, false),
                    chain("user", 0, true),
                ],
                other: 1,
            })
        );
        assert_eq!(
            l.table("inet", "filter"),
            Some(TableState {
                chains: vec![chain("forward", 2, false)],
                other: 0,
            })
        );
        // Flags make a table non-empty: it is someone's on purpose.
        assert_eq!(
            l.table("ip", "dormant"),
            Some(TableState {
                chains: vec![chain("c", 0, true)],
                other: 1,
            })
        );
        assert_eq!(l.table("ip6", "raw"), None);
        assert_eq!(l.table("inet", "raw"), None, "family matters");
    }

    #[test]
    fn rules_are_found_by_comment_and_handle() {
        let l = Listing::parse(RULESET).unwrap();
        assert_eq!(
            l.handles_commented("inet", "filter", "forward", "ftp-alg"),
            [3]
        );
        assert!(l
            .handles_commented("inet", "filter", "forward", "ftp")
            .is_empty());
        // iptables-nft keeps its comment in an xt match nft cannot show.
        assert!(l
            .handles_commented("ip", "raw", "PREROUTING", "ftp-alg")
            .is_empty());
    }

    #[test]
    fn objects_are_found_by_kind_and_name() {
        let l = Listing::parse(RULESET).unwrap();
        assert!(l.has_table("ip", "raw") && l.has_table("ip", "dormant"));
        assert!(!l.has_table("ip6", "raw"));
        assert!(l.has_object("ip", "raw", "set", "s"));
        assert!(!l.has_object("ip", "raw", "map", "s"));
        assert!(l.has_object("ip", "raw", "chain", "user"));
        assert!(!l.has_object("ip", "filter", "chain", "user"));
    }

    #[test]
    fn unknown_objects_count_and_bad_output_is_an_error() {
        let l = Listing::parse(
            r#"{"nftables": [{"table": {"family": "inet", "name": "t", "handle": 1}},
                {"flowtable": {"family": "inet", "name": "f", "table": "t", "handle": 2,
                 "hook": "ingress", "prio": 0, "dev": "lo"}},
                {"chain": {"family": "inet", "table": "t", "name": "c", "handle": 3,
                 "comment": "keep me"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            l.table("inet", "t"),
            Some(TableState {
                chains: vec![chain("c", 1, true)],
                other: 1,
            })
        );
        assert_eq!(
            Listing::parse(r#"{"nftables": []}"#).unwrap(),
            Listing::default()
        );
        assert!(Listing::parse("table ip raw {").is_err());
        assert!(Listing::parse(r#"{"nftables": [{"rule": {"family": "ip"}}]}"#).is_err());
    }
}
