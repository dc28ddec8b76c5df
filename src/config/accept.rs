//! `accept_rule` and its native-chain form: where ftp-alg inserts the rule
//! that accepts the data connections its pinholes mark.

use serde::Deserialize;

/// Where ftp-alg inserts the rule that accepts the data connections its
/// pinholes mark: `"iptables"`, `"none"` or `"nft FAMILY TABLE CHAIN"`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum AcceptRule {
    /// First in iptables-nft's `filter FORWARD` (IPv4 and IPv6), where
    /// that chain exists.
    Iptables,
    /// Nowhere: the admin's own ruleset accepts the marked connections.
    None,
    /// First in this native nftables chain, which must exist.
    Nft(NftChain),
}

/// An nftables chain of the admin's: `"nft FAMILY TABLE CHAIN"` in the
/// configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct NftChain {
    /// `ip`, `ip6` or `inet`.
    pub family: String,
    /// The admin's table.
    pub table: String,
    /// The admin's filter chain (forward, input or output).
    pub chain: String,
}

impl NftChain {
    /// `FAMILY TABLE CHAIN` (the words after `nft`), checked; `s` is the
    /// whole value, for the message.
    fn from_words(family: &str, table: &str, chain: &str, s: &str) -> Result<NftChain, String> {
        if !["ip", "ip6", "inet"].contains(&family) {
            return Err(format!("family {family:?} in {s:?} is not ip, ip6 or inet"));
        }
        for name in [table, chain] {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            if !ok {
                return Err(format!("{name:?} in {s:?} is not an nftables name"));
            }
        }
        Ok(NftChain {
            family: family.to_string(),
            table: table.to_string(),
            chain: chain.to_string(),
        })
    }
}

impl TryFrom<String> for NftChain {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["nft", family, table, chain] => NftChain::from_words(family, table, chain, &s),
            _ => Err(format!("{s:?} is not \"nft FAMILY TABLE CHAIN\"")),
        }
    }
}

impl TryFrom<String> for AcceptRule {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        match words.as_slice() {
            ["iptables"] => Ok(AcceptRule::Iptables),
            ["none"] => Ok(AcceptRule::None),
            ["nft", family, table, chain] => {
                NftChain::from_words(family, table, chain, &s).map(AcceptRule::Nft)
            }
            _ => Err(format!(
                "{s:?} is not \"iptables\", \"none\" or \"nft FAMILY TABLE CHAIN\""
            )),
        }
    }
}
