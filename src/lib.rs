//! ftp-alg: a userspace FTP application-layer gateway for Linux.
//!
//! The crate is split into a pure core and thin shells:
//!
//! * core (no I/O, no clock): [`ftp`] (line assembly, parsing, session
//!   state), [`seq`] (sequence-number offsets), [`packet`] (IP/TCP views and
//!   payload splicing), [`pinhole`] (what to open), [`engine`] (flows to
//!   sessions, packet in, verdict and actions out);
//! * shells: [`nfqueue`] (the queue loop), [`nft`] (pinholes over netlink),
//!   [`conntrack`] (NAT mapping lookups), [`nat_override`] (addresses a further NAT
//!   presents), [`ruleset`] (install and remove
//!   the rules ftp-alg needs), [`metrics`] and [`status`] (read what the
//!   worker publishes in [`telemetry`]), [`config`].

pub mod config;
pub mod conntrack;
pub mod engine;
pub mod ftp;
pub mod metrics;
pub mod nat_override;
mod netlink;
pub mod nfqueue;
pub mod nft;
pub mod packet;
pub mod pinhole;
pub mod ruleset;
pub mod seq;
pub mod status;
pub mod telemetry;
