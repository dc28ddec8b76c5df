//! Installs, removes and prints every firewall rule ftp-alg needs (shell).
//!
//! Three pieces, all derived from [`Config`](crate::config::Config):
//!
//! 1. ftp-alg's own nftables table `inet ftp_alg`: the pinhole sets and DNAT
//!    maps that the netlink backend fills at run time, and the two chains that
//!    consume them. It is loaded with one `nft -f -` at start-up.
//! 2. The queue rules that send FTP control packets to NFQUEUE. Their hooks
//!    are not a matter of taste: client->server packets are queued before
//!    conntrack (priority raw) and server->client packets after conntrack
//!    and DNAT (priority mangle), so that conntrack sees each direction's
//!    sequence numbers and the other direction's acknowledgements in one
//!    sequence space after a length-changing rewrite. The `forward` path
//!    queues at raw PREROUTING and mangle FORWARD; the `local` path (this
//!    host's own FTP server or client) at raw PREROUTING (the same rule),
//!    raw OUTPUT, mangle INPUT and mangle OUTPUT; the table in `hooks`
//!    says which direction crosses which hook, and why loopback is left out.
//!    Kernels with nftables' native `queue` get these as chains in our
//!    table; kernels without it (CONFIG_NFT_QUEUE off) get the xtables
//!    NFQUEUE target through iptables-nft / ip6tables-nft. With `local`
//!    the table also has `pinholes_out` (nat output: the pinholes of this
//!    host's own outgoing data connections, the same rules as `pinholes`).
//! 3. One accept rule in each of the admin's iptables-nft `filter` chains
//!    the paths need (FORWARD; INPUT and OUTPUT with `local`), or native
//!    chains (`accept_rule`, `accept_rule_input`, `accept_rule_output`),
//!    because an accept in our own table cannot override a drop in theirs.
//!
//! Removal restores the ruleset exactly: `nft list ruleset` after
//! [`Installed::remove`] is the text it was before [`install()`]. That includes
//! the tables and chains iptables-nft creates implicitly when a rule is
//! inserted into a table or builtin chain that did not exist yet.
//!
//! The modules, pure text first, then what runs commands:
//!
//! | module | what |
//! |---|---|
//! | `hooks` | where each path queues which direction, and why |
//! | `ports` | control ports and queue numbers as rules write them |
//! | `nft_text` | ftp-alg's table text and the native accept rule |
//! | `xtables` | the iptables-nft rule specs (queue rules, accept rule) |
//! | `print` | `ftp-alg rules` and the `deploy/rules/` files |
//! | `tools` | finding and running nft / iptables-nft, [`RulesetError`] |
//! | `listing` | the live ruleset, from `nft -j list ...` |
//! | `backend` | native `queue` or xtables NFQUEUE on this kernel |
//! | `implicit` | tables/chains iptables-nft creates, put back at removal |
//! | `stale` | leftovers of a killed instance |
//! | `install` | the all-or-nothing installer and [`Installed`] |
//! | `presence` | what of an installation the live ruleset still has |
//! | `repair` | putting back what a firewall reload took away |
//!
//! Every command is run with [`std::process::Command`] (no shell); spawning
//! `nft`/`iptables` is fine at start-up and exit, never per data connection.

mod backend;
mod handover;
mod hooks;
mod implicit;
mod install;
mod listing;
mod nft_text;
mod ports;
mod presence;
mod print;
mod repair;
mod stale;
mod tools;
mod xtables;

pub use backend::{detect_queue_backend, QueueBackend};
pub use handover::InstalledState;
pub use install::{install, Installed};
pub use nft_text::table_text;
pub use ports::queue_range;
pub use presence::Missing;
pub use print::{deploy_file, describe, DeployFile};
pub use repair::Repair;
pub use stale::remove_stale;
pub use tools::RulesetError;
