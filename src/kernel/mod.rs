//! Netlink to the kernel: the queue socket ([`nfqueue`]), nf_tables pinhole
//! elements ([`nft`]), ruleset change events ([`nft_events`]), conntrack
//! lookups ([`conntrack`]), interface addresses for `[[nat_override]]`
//! ([`nat_override`]), and the message plumbing they share (`netlink`).

pub mod conntrack;
pub mod nat_override;
mod netlink;
pub mod nfqueue;
pub mod nft;
pub mod nft_events;
