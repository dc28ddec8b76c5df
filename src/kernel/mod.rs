//! Netlink to the kernel: the queue socket ([`nfqueue`]), nf_tables pinhole
//! elements ([`nft`]), ruleset change events ([`nft_events`]), conntrack
//! lookups ([`conntrack`]), interface addresses for `[[nat_override]]`
//! ([`nat_override`]) and for telling a local server ([`local_addrs`]), the
//! listeners of a local server ([`sock_diag`]), and the message plumbing they share (`netlink`).

pub mod conntrack;
pub mod local_addrs;
pub mod nat_override;
mod netlink;
pub mod nfqueue;
pub mod nft;
pub mod nft_events;
pub mod sock_diag;
