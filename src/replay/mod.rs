//! `ftp-alg replay FILE`: what ftp-alg would have done with a capture.
//!
//! The second consumer of the pure core (the daemon is the first): a
//! pcap or pcapng capture, taken on the gateway or on either end, is run
//! offline through [`ftp_alg_proto::engine::Engine`] with the capture's
//! timestamps as `now`, and the engine's decisions
//! ([`ftp_alg_proto::event::Event`]) are printed per control session:
//! start and end, NAT mapping, announcements, rewrites with their length
//! change, pinholes with their lifetime, refusals with their reason, and
//! what became of each pinhole in the capture (a data connection used it,
//! the core closed it, it expired unused). It answers "why was this
//! transfer blocked?" without touching the live gateway. Nothing here
//! needs root or a network: it reads a file.
//!
//! The steps, one module each:
//!
//! * [`capture`]: pcap/pcapng blocks to timestamped IP packets
//!   ([`link`]: Ethernet, Linux SLL and SLL2, raw IP, loopback);
//! * [`copies`]: which copy of a forwarded packet the daemon's hooks would
//!   have seen, and the NAT mapping that the pair of copies shows (the
//!   design choice is documented there and in `docs/replay.md`);
//! * [`feed`]: the engine run;
//! * [`firewall`]: the pinholes' fate, judged from the data connections in
//!   the capture (used, expired unused, an attempt no pinhole admits);
//! * [`output`]: text or JSON lines.

pub mod capture;
pub mod copies;
pub mod feed;
pub mod firewall;
pub mod link;
pub mod output;

use std::io::Read;

use ftp_alg_proto::engine::EngineConfig;
use ftp_alg_proto::packet::TcpSegment;

pub use copies::{NatOption, NatSource};
pub use feed::{Record, What};

/// What a replay found, and what it had to leave out.
#[derive(Debug)]
pub struct Replay {
    /// The report, in capture order.
    pub records: Vec<Record>,
    /// Packets fed to the engine.
    pub fed: usize,
    /// Leaving copies of forwarded packets, not fed (see [`copies`]).
    pub copies: usize,
    /// Control packets cut by the capture's snap length (not fed).
    pub truncated: usize,
    /// Frames of a link type replay cannot read.
    pub unknown_link: usize,
    /// The file ended inside a block.
    pub cut_at_end: bool,
}

/// Replays a capture read from `input` with engine settings `cfg` (its
/// control ports, policy and pinhole lifetime) and `--nat` options.
pub fn replay(
    input: impl Read + Send,
    cfg: EngineConfig,
    nat: &[NatOption],
) -> Result<Replay, capture::CaptureError> {
    let ports = cfg.followed_ports();
    // Kept in memory: control packets, and connection openings (SYN without
    // ACK) for the data connections that pinholes admit; bulk data is not.
    let keep = |ip: &[u8]| match TcpSegment::parse(ip) {
        Ok(seg) => {
            ports.contains(&seg.src.port())
                || ports.contains(&seg.dst.port())
                || (seg.flags.syn && !seg.flags.ack)
        }
        Err(_) => false,
    };
    let cap = capture::read(input, keep)?;
    let sorted = copies::sort(&cap.frames, &cfg.followed_ports(), nat);
    let records = feed::run(&sorted, cfg);
    Ok(Replay {
        records,
        fed: sorted.feed.len(),
        copies: sorted.copies,
        truncated: cap.truncated,
        unknown_link: cap.unknown_link,
        cut_at_end: cap.cut_at_end,
    })
}
