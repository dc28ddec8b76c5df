//! The pure core of ftp-alg, an FTP application-layer gateway.
//!
//! Bytes and a `now` go in, decisions come out: no socket, no netlink, no
//! clock, no filesystem, no `unsafe`. The compiler keeps it so: this crate
//! depends on nothing that does I/O, forbids `unsafe`, and clippy's
//! `disallowed-methods` bans clock reads here (see `clippy.toml`). Its
//! shells (the NFQUEUE daemon, the capture replayer, the fuzzers) do the
//! I/O.
//!
//! # Contract
//!
//! * [`engine::Engine::handle`]`(now, packet)` takes one IPv4 or IPv6 packet
//!   of an FTP control connection, as queued at the gateway, and returns an
//!   [`engine::Outcome`]: either the [`engine::Decision`] (verdict, pinholes
//!   to open before the verdict, pinholes to close, and the
//!   [`event::Event`]s that say what was decided) or
//!   [`engine::Outcome::NeedNat`], a request for the connection's NAT
//!   mapping. The re-entry rule is documented at `handle`;
//!   [`engine::Engine::handle_with`] applies it for callers that can look
//!   the mapping up on the spot.
//! * [`engine::Engine::poll_at`] says when the engine's timers next fall
//!   due, [`engine::Engine::poll`]`(now)` runs them and returns the pinholes
//!   and ranges to remove.
//! * Peer input is never an error: hostile or malformed traffic gets a
//!   decision (forward untouched, open nothing), counted by
//!   [`reason::Reason`] in [`stats::EngineStats`].
//!
//! # Modules
//!
//! * [`ftp`]: control-line assembly, parsing, the per-session state machine
//!   and the rewrite planner;
//! * [`seq`]: per-direction sequence edits (RFC 9293 sequence space);
//! * [`durable`]: what a session needs to continue in another instance,
//!   packed into a conntrack label;
//! * [`packet`]: IPv4/IPv6 + TCP views, payload splice and checksums;
//! * [`pinhole`]: the data connections a firewall may admit;
//! * [`ftps`]: the FTPS servers whose encrypted sessions get a range of
//!   data ports for the session's life;
//! * [`engine`]: flows to sessions, packets in, decisions out;
//! * [`event`]: those decisions as data, for consumers that report them;
//! * [`reason`], [`stats`]: why nothing was opened, and what is counted.

#![forbid(unsafe_code)]
#![deny(clippy::disallowed_methods)]

pub mod durable;
pub mod engine;
pub mod event;
pub mod ftp;
pub mod ftps;
pub mod packet;
pub mod pinhole;
pub mod reason;
pub mod seq;
pub mod stats;
