//! [`Installed`] handed to a new program image across `exec` (the in-place
//! upgrade): the rules stay as they are, and the new image takes over the
//! record of what to remove at exit, so that a later SIGTERM still leaves
//! the ruleset exactly as it was before the first image installed it.

use serde::{Deserialize, Serialize};

use super::backend::QueueBackend;
use super::implicit::{TableSnapshot, QUEUE_TABLES};
use super::install::Installed;
use super::listing::exists;
use super::tools::{RulesetError, Tools};
use super::xtables::{Family, XtRule};
use crate::config::{NftChain, Paths, TABLE_NAME};

/// The tables and chains ftp-alg's iptables rules may name.
const KNOWN_NAMES: [&str; 7] = [
    "raw",
    "mangle",
    "filter",
    "PREROUTING",
    "FORWARD",
    "INPUT",
    "OUTPUT",
];

/// One iptables rule: (IPv6?, table, chain, position, spec).
type RuleState = (bool, String, String, Option<u32>, Vec<String>);

/// One native accept rule: (family, table, chain, handle).
type NftRuleState = (String, String, String, u64);

/// `paths` of a record written before host mode: (forward, local).
fn forward_only() -> (bool, bool) {
    (true, false)
}

/// What an [`Installed`] holds, as plain data.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledState {
    native_queue: bool,
    table: bool,
    /// Each iptables rule.
    rules: Vec<RuleState>,
    /// (family, table, chain, handle) of the (first) native accept rule.
    nft_accept: Option<NftRuleState>,
    /// The further native accept rules (input, output with `local`);
    /// absent in the record of an image from before host mode.
    #[serde(default)]
    nft_accept_more: Vec<NftRuleState>,
    /// The paths the rules were installed for; an image from before host
    /// mode had only forward.
    #[serde(default = "forward_only")]
    paths: (bool, bool),
    /// (IPv6?, table, chains) of the queue tables before the first install.
    before: Vec<(bool, String, Option<Vec<String>>)>,
}

fn family(v6: bool) -> Family {
    if v6 {
        Family::V6
    } else {
        Family::V4
    }
}

/// The `'static` name equal to `s`, among those ftp-alg's rules use.
fn known(s: &str, among: &[&'static str]) -> Result<&'static str, RulesetError> {
    among.iter().copied().find(|k| *k == s).ok_or_else(|| {
        RulesetError::other("upgrade handover", format!("unknown table or chain {s:?}"))
    })
}

impl Installed {
    /// Gives up ownership of the rules: nothing is removed when this value
    /// goes; the returned state lets [`Installed::take_over`] remove them.
    pub fn hand_over(mut self) -> InstalledState {
        self.done = true;
        let mut nft_accept = self
            .nft_accept
            .iter()
            .map(|(c, h)| (c.family.clone(), c.table.clone(), c.chain.clone(), *h));
        InstalledState {
            native_queue: self.backend == QueueBackend::Native,
            table: self.table,
            rules: self
                .rules
                .iter()
                .map(|(fam, r)| {
                    let v6 = *fam == Family::V6;
                    (
                        v6,
                        r.table.into(),
                        r.chain.into(),
                        r.position,
                        r.spec.clone(),
                    )
                })
                .collect(),
            nft_accept: nft_accept.next(),
            nft_accept_more: nft_accept.collect(),
            paths: (self.paths.forward, self.paths.local),
            before: self
                .before
                .iter()
                .map(|t| (t.family == Family::V6, t.table.into(), t.chains.clone()))
                .collect(),
        }
    }

    /// The record an earlier image handed over; the rules themselves are
    /// not touched.
    pub fn take_over(state: InstalledState) -> Result<Installed, RulesetError> {
        let rules = state
            .rules
            .into_iter()
            .map(|(v6, table, chain, position, spec)| {
                Ok((
                    family(v6),
                    XtRule {
                        table: known(&table, &KNOWN_NAMES)?,
                        chain: known(&chain, &KNOWN_NAMES)?,
                        position,
                        spec,
                    },
                ))
            })
            .collect::<Result<_, RulesetError>>()?;
        let before = state
            .before
            .into_iter()
            .map(|(v6, table, chains)| {
                Ok(TableSnapshot {
                    family: family(v6),
                    table: known(&table, &QUEUE_TABLES)?,
                    chains,
                })
            })
            .collect::<Result<_, RulesetError>>()?;
        Ok(Installed {
            backend: if state.native_queue {
                QueueBackend::Native
            } else {
                QueueBackend::Xtables
            },
            tools: Tools::discover(),
            before,
            table: state.table,
            // Not in the record: whether the table has it is read live.
            labels: state.table && exists(&["chain", "inet", TABLE_NAME, "labels"]),
            ftps: state.table && exists(&["set", "inet", TABLE_NAME, "ftps4"]),
            rules,
            paths: Paths {
                forward: state.paths.0,
                local: state.paths.1,
            },
            nft_accept: state
                .nft_accept
                .into_iter()
                .chain(state.nft_accept_more)
                .map(|(family, table, chain, h)| {
                    (
                        NftChain {
                            family,
                            table,
                            chain,
                        },
                        h,
                    )
                })
                .collect(),
            done: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> InstalledState {
        InstalledState {
            native_queue: false,
            table: true,
            rules: vec![
                (
                    false,
                    "raw".into(),
                    "PREROUTING".into(),
                    None,
                    vec!["-p".into(), "tcp".into()],
                ),
                (
                    true,
                    "filter".into(),
                    "FORWARD".into(),
                    Some(1),
                    vec!["-j".into(), "ACCEPT".into()],
                ),
            ],
            nft_accept: Some(("inet".into(), "fw".into(), "forward".into(), 7)),
            nft_accept_more: vec![("inet".into(), "fw".into(), "input".into(), 9)],
            paths: (true, true),
            before: vec![
                (false, "raw".into(), None),
                (true, "mangle".into(), Some(vec!["FORWARD".into()])),
            ],
        }
    }

    #[test]
    fn a_handed_over_record_comes_back_unchanged() {
        let installed = Installed::take_over(sample()).unwrap();
        let json = serde_json::to_string(&installed.hand_over()).unwrap();
        let back: InstalledState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn a_record_from_before_host_mode_is_forward_only() {
        let old = r#"{"native_queue":false,"table":true,"rules":[],"nft_accept":["inet","fw","forward",7],"before":[]}"#;
        let state: InstalledState = serde_json::from_str(old).unwrap();
        let installed = Installed::take_over(state).unwrap();
        assert_eq!(installed.paths, Paths::default());
        assert_eq!(installed.nft_accept.len(), 1);
        let _ = installed.hand_over();
    }

    #[test]
    fn unknown_names_are_refused() {
        let mut s = sample();
        s.rules[0].1 = "nat".into();
        assert!(Installed::take_over(s).is_err());
        let mut s = sample();
        s.before[0].1 = "filter".into();
        assert!(Installed::take_over(s).is_err());
    }
}
