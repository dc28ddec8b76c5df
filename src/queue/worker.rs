//! One worker per NFQUEUE: receives queued control packets, has the engine
//! decide, installs and removes pinholes, gives the verdict.
//!
//! The workers share one engine behind a mutex, held only while the engine
//! decides (well under a microsecond; a session's first packet also waits
//! for its conntrack lookup, once). Receiving, pinhole updates over
//! netlink and verdicts, the bulk of the cost, run in parallel. Sharing is
//! what makes balancing safe: the kernel spreads flows over the queues by a
//! hash of the addresses, and under DNAT the two directions of one control
//! connection show different addresses at their hooks, so they may reach
//! different workers. Each direction always hashes alike, so its packets
//! stay in order. All workers are alike: timers, telemetry and reloads are
//! the housekeeper's ([`super::housekeeping`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ftp_alg_proto::durable::LabelLayout;
use ftp_alg_proto::engine::{Decision, Engine, Lookup, NatMapping, Persist, Verdict};
use tracing::{debug, error, warn};

use super::core::{lock, Core, SharedCore};
use super::housekeeping::Housekeeper;
use super::watchdog::Heartbeat;
use crate::config::DurableConfig;
use crate::kernel::conntrack::{Conntrack, CtEntry, StateUpdate};
use crate::kernel::nfqueue::{self, NfQueue, Packet, RecvError};
use crate::kernel::nft::NftPinholes;
use crate::telemetry;

/// Packets the kernel may hold for ftp-alg before it drops.
const QUEUE_MAX_LEN: u32 = 8192;

/// Refused verdicts or malformed messages in a row, with no packet in
/// between, after which the queue socket is taken as broken.
const MAX_ERRORS_IN_A_ROW: u32 = 1000;

/// The I/O around the shared engine for one queue: the bound queue, a
/// conntrack socket and the pinhole backend.
pub struct Worker {
    queue: NfQueue,
    core: SharedCore,
    conntrack: Conntrack,
    pinholes: NftPinholes,
    busy_poll: Duration,
    last_packet: Option<Instant>,
    heartbeat: Arc<Heartbeat>,
    durable: Option<DurableMarks>,
}

/// Where session state goes in conntrack (`docs/durable.md`).
#[derive(Clone, Copy, Debug)]
struct DurableMarks {
    layout: LabelLayout,
    edited_mark: u32,
    seen_mark: u32,
}

impl Worker {
    /// Opens one worker per queue `first ..= first + count - 1`, all sharing
    /// `engine`, and the housekeeper that runs its timers. Fails if another
    /// process holds one of the queues (the kernel answers EPERM).
    pub fn open_all(
        engine: Engine,
        first: u16,
        count: u16,
        table: &str,
        published: telemetry::Shared,
    ) -> io::Result<(Vec<Worker>, Housekeeper)> {
        // Room for bursts: the kernel's default is 1024 packets.
        let queues = (0..count.max(1))
            .map(|i| NfQueue::bind(first + i, QUEUE_MAX_LEN))
            .collect::<io::Result<_>>()?;
        Worker::serve_all(engine, queues, table, published)
    }

    /// One worker per queue socket already bound (by [`Worker::open_all`],
    /// or by an earlier image handing them over: see [`super::upgrade`]),
    /// all sharing `engine`, and the housekeeper.
    pub fn serve_all(
        engine: Engine,
        queues: Vec<NfQueue>,
        table: &str,
        published: telemetry::Shared,
    ) -> io::Result<(Vec<Worker>, Housekeeper)> {
        let core = Core::shared(engine);
        let workers = queues
            .into_iter()
            .map(|q| Worker::open(core.clone(), q, table))
            .collect::<io::Result<_>>()?;
        let housekeeper = Housekeeper::open(core, table, published)?;
        Ok((workers, housekeeper))
    }

    /// The worker's queue socket, still bound (for an upgrade).
    pub fn into_queue(self) -> NfQueue {
        self.queue
    }

    fn open(core: SharedCore, queue: NfQueue, table: &str) -> io::Result<Self> {
        Ok(Worker {
            queue,
            core,
            conntrack: Conntrack::open()?,
            pinholes: NftPinholes::open(table)?,
            busy_poll: Duration::ZERO,
            last_packet: None,
            heartbeat: Heartbeat::shared(),
            durable: None,
        })
    }

    /// After each packet, keep polling the queue without sleeping for this
    /// long before blocking again (0: block at once). An FTP reply follows
    /// its command within a few hundred microseconds; a worker that slept
    /// in between must be woken, which on a virtual machine whose vCPU went
    /// idle costs about 250 us per packet (measured on the lab VM: the
    /// packets after a pause waited 240-310 us in ftp-alg, the others
    /// 10-80 us). Spinning trades CPU during sessions for that latency.
    pub fn set_busy_poll(&mut self, busy_poll: Duration) {
        self.busy_poll = busy_poll;
    }

    /// This worker's progress counter, for the watchdog.
    pub(crate) fn heartbeat(&self) -> Arc<Heartbeat> {
        self.heartbeat.clone()
    }

    /// Keeps session state in conntrack as `cfg` says (off until called):
    /// stores it after each rewrite that asks for it, reads it back for
    /// sessions picked up mid-stream, and marks every packet it gives a
    /// verdict for as seen (the hold rules in mangle FORWARD drop packets of
    /// edited connections that no instance saw).
    pub fn set_durable(&mut self, cfg: &DurableConfig) {
        self.durable = LabelLayout::new(cfg.label_first_bit)
            .filter(|_| cfg.enabled)
            .map(|layout| DurableMarks {
                layout,
                edited_mark: cfg.edited_mark,
                seen_mark: cfg.seen_mark,
            });
    }

    /// The next queued packet: first polled without sleeping while within
    /// `busy_poll` of the last one, then with a blocking receive.
    fn next_packet(&mut self) -> Result<Packet, RecvError> {
        if let Some(last) = self.last_packet.filter(|_| !self.busy_poll.is_zero()) {
            self.queue
                .set_nonblocking(true)
                .map_err(RecvError::Socket)?;
            let polled = loop {
                if last.elapsed() >= self.busy_poll {
                    break None;
                }
                match self.queue.recv() {
                    Err(RecvError::WouldBlock) => std::hint::spin_loop(),
                    other => break Some(other),
                }
            };
            self.queue
                .set_nonblocking(false)
                .map_err(RecvError::Socket)?;
            if let Some(result) = polled {
                return result;
            }
        }
        // Idle while blocked here, however long: the watchdog must not
        // take a quiet gateway for a stuck worker.
        self.heartbeat.entering_recv();
        let received = self.queue.recv();
        self.heartbeat.left_recv();
        received
    }

    /// Processes packets until `stop()` is true (checked whenever a signal
    /// interrupts the blocking receive). Returns an error only when the
    /// queue socket itself fails.
    pub(crate) fn run(&mut self, stop: &dyn Fn() -> bool) -> io::Result<()> {
        let mut errors_in_a_row = 0u32;
        while !stop() {
            match self.next_packet() {
                Ok(packet) => {
                    errors_in_a_row = 0;
                    self.process(packet);
                    self.last_packet = Some(Instant::now());
                }
                Err(RecvError::Interrupted | RecvError::WouldBlock) => {}
                Err(RecvError::Overrun) => {
                    lock(&self.core).stats.queue_overruns += 1;
                    warn!(queue = self.queue.queue(), "queue overrun: the kernel dropped control packets (they will be retransmitted)")
                }
                Err(RecvError::Socket(e)) => return Err(e),
                Err(e @ (RecvError::VerdictRefused(_) | RecvError::Malformed(_))) => {
                    // One packet is lost (e.g. ENOENT: the kernel dropped it
                    // when its hook was unregistered, as a firewall reload
                    // does) and its sender retransmits; the queue itself is
                    // fine. Only an unbroken run means the socket is unusable.
                    errors_in_a_row += 1;
                    lock(&self.core).stats.verdict_errors += 1;
                    if errors_in_a_row >= MAX_ERRORS_IN_A_ROW {
                        return Err(e.into());
                    }
                    debug!(queue = self.queue.queue(), error = %e, "queue message lost");
                }
            }
        }
        Ok(())
    }

    fn process(&mut self, packet: Packet) {
        let now = Instant::now();
        let decision = self.decide(now, &packet.payload);
        for p in &decision.close {
            if let Err(e) = self.pinholes.remove(p) {
                lock(&self.core).stats.pinhole_errors += 1;
                warn!(pinhole = %p, error = %e, "cannot remove pinhole (it expires by itself)");
            }
        }
        for open in &decision.open {
            // Installed before the verdict: the peer may connect as soon
            // as the announcement reaches it.
            if let Err(e) = self.pinholes.add(&open.pinhole, open.lifetime) {
                lock(&self.core).stats.pinhole_errors += 1;
                error!(pinhole = %open.pinhole, error = %e, "cannot install pinhole");
            }
        }
        self.open_ranges(&decision);
        if let (Some(p), Some(marks)) = (&decision.persist, self.durable) {
            // Before the verdict: no byte that depends on the new offsets
            // leaves before they are in conntrack.
            store_state(&mut self.conntrack, marks, p);
        }
        // Seen: the hold rules pass this packet even if its
        // connection is marked edited.
        let mark = self
            .durable
            .map(|marks| packet.mark.unwrap_or(0) | marks.seen_mark);
        let modified = matches!(decision.verdict, Verdict::Replace(_));
        let (verdict, payload) = match &decision.verdict {
            Verdict::Accept => (nfqueue::Verdict::Accept, None),
            Verdict::Replace(bytes) => (nfqueue::Verdict::Accept, Some(&bytes[..])),
            Verdict::Drop => (nfqueue::Verdict::Drop, None),
        };
        // A failed verdict loses this one packet (the kernel drops it after
        // its queue timeout and the sender retransmits); a broken socket
        // shows up in the next recv, which ends the loop.
        let verdict = self.queue.verdict(packet.id, verdict, payload, mark);
        if let Err(e) = &verdict {
            error!(error = %e, "verdict not accepted by the kernel");
        }
        self.close_ranges(&decision);
        let mut core = lock(&self.core);
        core.stats.packets += 1;
        core.stats.packets_modified += u64::from(modified);
        core.stats.verdict_errors += u64::from(verdict.is_err());
        core.stats.processing.observe(now.elapsed());
    }

    /// FTPS ranges to open, before the verdict: the packet may be the 234
    /// after which the client sends PASV under TLS.
    fn open_ranges(&mut self, decision: &Decision) {
        for open in &decision.open_ranges {
            if let Err(e) = self.pinholes.add_range(&open.range, open.lifetime) {
                lock(&self.core).stats.pinhole_errors += 1;
                error!(range = %open.range, error = %e, "cannot install FTPS range");
            }
        }
    }

    /// FTPS ranges whose last session ended, removed in one batch after
    /// the verdict: nothing waits for a range to go (the session's data
    /// connections are over), so the packet is not held for it.
    fn close_ranges(&mut self, decision: &Decision) {
        if let Err(e) = self.pinholes.remove_ranges(&decision.close_ranges) {
            lock(&self.core).stats.pinhole_errors += 1;
            warn!(ranges = decision.close_ranges.len(), error = %e,
                  "cannot remove FTPS ranges (they expire by their element timeout)");
        }
    }

    /// The engine's decision. A session's first packet waits for its NAT
    /// mapping under the lock: once per session, and the packet may not
    /// leave before the engine has seen it anyway.
    fn decide(&mut self, now: Instant, packet: &[u8]) -> Decision {
        let conntrack = &mut self.conntrack;
        let durable = self.durable;
        lock(&self.core)
            .engine
            .handle_lookup(now, packet, |src, dst| lookup(conntrack, durable, src, dst))
    }
}

/// The NAT mapping of the control connection `src -> dst` from conntrack,
/// with the session state stored there; nothing (untranslated) when there
/// is no entry or the lookup fails. Asked from a server's packet under
/// destination NAT, `dst` is the reply source and no entry has `src -> dst`
/// as its original tuple: then the edited entries are searched.
fn lookup(
    conntrack: &mut Conntrack,
    durable: Option<DurableMarks>,
    src: SocketAddr,
    dst: SocketAddr,
) -> Lookup {
    let entry = match conntrack.lookup_entry(src, dst) {
        Ok(None) => match durable {
            Some(d) => conntrack.find_marked(src, dst, d.edited_mark),
            None => Ok(None),
        },
        other => other,
    };
    match entry {
        Ok(Some(e)) => Lookup {
            nat: Some(NatMapping {
                client_public: e.tuples.reply_dst,
                server_real: e.tuples.reply_src,
            }),
            stored: durable.and_then(|d| stored_state(d, &e)),
            server_public: Some(e.tuples.orig_dst),
        },
        Ok(None) => {
            debug!(%src, %dst, "no conntrack entry: control connection taken as untranslated");
            Lookup::default()
        }
        Err(e) => {
            warn!(%src, %dst, error = %e, "conntrack lookup failed: control connection taken as untranslated");
            Lookup::default()
        }
    }
}

/// The state an earlier instance stored in `e`, if it is marked edited.
fn stored_state(d: DurableMarks, e: &CtEntry) -> Option<ftp_alg_proto::durable::Durable> {
    if e.mark & d.edited_mark == 0 {
        return None;
    }
    let state = d.layout.decode(e.labels);
    if state.is_none() {
        warn!(client = %e.tuples.orig_src, "edited control connection without readable state: picked up without its offsets");
    }
    state
}

/// Writes `p` into its connection's labels and sets the edited mark. The
/// kernel applies the mark before the labels: if the labels cannot be
/// written (ENOSPC: the entry predates ftp-alg's `ct label` rule), the mark
/// is cleared again, so no instance holds a stream it cannot adjust.
fn store_state(conntrack: &mut Conntrack, d: DurableMarks, p: &Persist) {
    let bits = match d.layout.encode(&p.state) {
        Ok(bits) => bits,
        Err(e) => {
            warn!(client = %p.client, ?e, "session state does not fit the label; kept in memory only");
            return;
        }
    };
    let mask = d.layout.mask();
    let store = StateUpdate {
        mark: d.edited_mark,
        mark_mask: d.edited_mark,
        labels: Some((bits, mask)),
        liberal: true,
    };
    match conntrack.update_state(p.client, p.server, &store) {
        Ok(()) => debug!(client = %p.client, state = ?p.state, "session state stored in conntrack"),
        Err(e) => {
            warn!(client = %p.client, error = %e, "session state not stored in conntrack; kept in memory only");
            let clear = StateUpdate {
                mark: 0,
                mark_mask: d.edited_mark,
                labels: None,
                liberal: false,
            };
            if let Err(e) = conntrack.update_state(p.client, p.server, &clear) {
                debug!(client = %p.client, error = %e, "edited mark not cleared");
            }
        }
    }
}
