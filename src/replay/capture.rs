//! Reading a capture file: pcap or pcapng, into timestamped IP packets.
//!
//! `pcap-parser` (rusticata) reads both formats as a stream of blocks;
//! this module keeps what replay needs from them: per packet its time
//! (since the Unix epoch, in the file's resolution), its IP bytes, and
//! the direction and interface where the link layer or pcapng's
//! `epb_flags` record them. Frames cut short by the capture's snap length
//! are counted and left out: a cut control segment cannot be parsed, and
//! feeding it would make the engine see a hole in the stream.

use std::fmt;
use std::io::Read;
use std::time::Duration;

use pcap_parser::pcapng::Block;
use pcap_parser::{create_reader, PcapBlockOwned, PcapError};

use super::link::{decode, Direction, LinkType};

/// One packet of the capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Capture time, since the Unix epoch.
    pub time: Duration,
    /// Received or sent by the capturing host, when recorded.
    pub direction: Option<Direction>,
    /// Interface (SLL2 index, or pcapng interface number).
    pub interface: Option<u32>,
    /// The IP packet.
    pub ip: Vec<u8>,
}

/// The packets kept from a capture, and what was left out.
#[derive(Debug, Default)]
pub struct Capture {
    /// Packets kept, in file order.
    pub frames: Vec<Frame>,
    /// Frames cut by the snap length (left out).
    pub truncated: usize,
    /// Frames of a link type this reader does not know (left out).
    pub unknown_link: usize,
    /// The file ended inside a block (a capture still being written).
    pub cut_at_end: bool,
}

/// Why a capture cannot be read at all.
#[derive(Debug)]
pub struct CaptureError(String);

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CaptureError {}

/// One pcapng interface: its link type and clock.
#[derive(Clone, Copy)]
struct Interface {
    link: Option<LinkType>,
    /// Timestamp units per second (`if_tsresol`, default microseconds).
    resolution: u64,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset: i64,
}

/// pcapng `epb_flags` (option 2 of an Enhanced Packet Block): bits 0-1
/// are the direction, 1 inbound, 2 outbound.
const EPB_FLAGS: u16 = 2;

fn epb_direction(flags: u32) -> Option<Direction> {
    match flags & 3 {
        1 => Some(Direction::Incoming),
        2 => Some(Direction::Outgoing),
        _ => None,
    }
}

fn time(secs: u64, frac: u64, resolution: u64) -> Duration {
    let nanos = u128::from(frac) * 1_000_000_000 / u128::from(resolution.max(1));
    Duration::from_secs(secs) + Duration::from_nanos(nanos as u64)
}

/// One frame as the file describes it, before its link layer is decoded.
struct Raw<'a> {
    link: Option<LinkType>,
    data: &'a [u8],
    /// Shorter than on the wire (snap length).
    cut: bool,
    time: Duration,
    /// From pcapng's `epb_flags`; the link layer's own wins.
    direction: Option<Direction>,
    interface: Option<u32>,
}

impl Capture {
    /// Decodes `raw` and keeps its IP packet if `keep` wants it.
    fn push(&mut self, raw: Raw<'_>, keep: &mut impl FnMut(&[u8]) -> bool) {
        let Some(link) = raw.link else {
            self.unknown_link += 1;
            return;
        };
        let Some(d) = decode(link, raw.data) else {
            return;
        };
        if raw.cut {
            self.truncated += 1;
        } else if keep(d.ip) {
            self.frames.push(Frame {
                time: raw.time,
                direction: d.direction.or(raw.direction),
                interface: d.interface.or(raw.interface),
                ip: d.ip.to_vec(),
            });
        }
    }
}

/// Reads every packet of a pcap or pcapng stream; `keep` chooses the IP
/// packets worth keeping in memory (replay keeps TCP control packets and
/// connection openings).
pub fn read(
    input: impl Read + Send,
    mut keep: impl FnMut(&[u8]) -> bool,
) -> Result<Capture, CaptureError> {
    const START: usize = 1 << 16;
    const MAX: usize = 1 << 26;
    let mut capacity = START;
    let mut reader = create_reader(capacity, input)
        .map_err(|e| CaptureError(format!("not a pcap or pcapng file ({e:?})")))?;
    let mut out = Capture::default();
    let mut legacy: Option<(Option<LinkType>, bool)> = None;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut last_time = Duration::ZERO;
    let mut stalled = 0u32;
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                stalled = 0;
                match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        legacy = Some((
                            LinkType::from_number(h.network.0),
                            h.is_nanosecond_precision(),
                        ));
                    }
                    PcapBlockOwned::Legacy(b) => {
                        let (link, nanos) = legacy.unwrap_or((None, false));
                        let resolution = if nanos { 1_000_000_000 } else { 1_000_000 };
                        last_time = time(b.ts_sec.into(), b.ts_usec.into(), resolution);
                        let raw = Raw {
                            link,
                            data: b.data,
                            cut: b.caplen < b.origlen,
                            time: last_time,
                            direction: None,
                            interface: None,
                        };
                        out.push(raw, &mut keep);
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => interfaces.clear(),
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        interfaces.push(Interface {
                            link: LinkType::from_number(idb.linktype.0),
                            resolution: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                            offset: idb.ts_offset(),
                        })
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        let iface = interfaces.get(epb.if_id as usize).copied();
                        let link = iface.and_then(|i| i.link);
                        if let Some(i) = iface {
                            let (secs, frac) = epb.decode_ts(0, i.resolution);
                            let secs = (i64::from(secs) + i.offset).max(0) as u64;
                            last_time = time(secs, frac.into(), i.resolution);
                        }
                        let direction = epb
                            .options
                            .iter()
                            .find(|o| o.code.0 == EPB_FLAGS)
                            .and_then(|o| o.as_u32_le().ok())
                            .and_then(epb_direction);
                        let raw = Raw {
                            link,
                            data: epb.data,
                            cut: epb.caplen < epb.origlen,
                            time: last_time,
                            direction,
                            interface: Some(epb.if_id),
                        };
                        out.push(raw, &mut keep);
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        // No timestamp, interface 0 (pcapng §4.4).
                        let link = interfaces.first().and_then(|i| i.link);
                        let raw = Raw {
                            link,
                            data: spb.data,
                            cut: (spb.data.len() as u32) < spb.origlen,
                            time: last_time,
                            direction: None,
                            interface: Some(0),
                        };
                        out.push(raw, &mut keep);
                    }
                    PcapBlockOwned::NG(_) => {}
                }
                reader.consume(offset);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::UnexpectedEof) => {
                out.cut_at_end = true;
                break;
            }
            Err(PcapError::Incomplete(_)) => {
                // A block larger than the buffer: grow it (bounded).
                stalled += 1;
                if stalled > 2 {
                    capacity *= 2;
                    if capacity > MAX || !reader.grow(capacity) {
                        return Err(CaptureError("a block larger than 64 MiB".into()));
                    }
                }
                reader
                    .refill()
                    .map_err(|e| CaptureError(format!("read error ({e:?})")))?;
            }
            Err(e) => return Err(CaptureError(format!("malformed capture ({e:?})"))),
        }
    }
    Ok(out)
}
