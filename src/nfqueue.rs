//! The queue loop: the shell that connects NFQUEUE, conntrack and the
//! pinhole backend to the engine.
//!
//! One thread receives packets (blocking `recv`, as `nfq` offers no
//! pollable descriptor) and a second one wakes it with a harmless signal
//! once a second, for timers and telemetry, and at once when a signal
//! asks to stop or to reload.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, SigHandler, SigSet, Signal};
use tracing::{debug, error, info, warn};

use crate::config::NatOverride;
use crate::conntrack::Conntrack;
use crate::engine::{Decision, Engine, EngineConfig, NatMapping, Outcome, Verdict};
use crate::nft::NftPinholes;
use crate::pinhole::Pinhole;
use crate::telemetry::{self, ShellStats};

/// Packets the kernel may hold for ftp-alg before it drops.
const QUEUE_MAX_LEN: u32 = 8192;

/// How often the engine's timers run and telemetry is published.
const TICK: Duration = Duration::from_secs(1);

/// The I/O around one engine: a bound queue, a conntrack socket and the
/// pinhole backend.
pub struct Worker {
    queue: nfq::Queue,
    engine: Engine,
    conntrack: Conntrack,
    pinholes: NftPinholes,
    pinhole_timeout: Duration,
    stats: ShellStats,
    published: telemetry::Shared,
    nat_overrides: Vec<NatOverride>,
}

impl Worker {
    /// Opens every socket and binds `queue_num`. Fails if another process
    /// holds the queue (the kernel answers EPERM).
    pub fn open(
        engine: Engine,
        queue_num: u16,
        table: &str,
        pinhole_timeout: Duration,
        published: telemetry::Shared,
    ) -> io::Result<Self> {
        let mut queue = nfq::Queue::open()?;
        queue.bind(queue_num).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot bind NFQUEUE {queue_num} (is another instance running?): {e}"),
            )
        })?;
        // Room for bursts (the kernel's default is 1024 packets), and
        // report overruns: nfq turns ENOBUFS off, which hides drops.
        queue.set_queue_max_len(queue_num, QUEUE_MAX_LEN)?;
        queue.set_recv_enobufs(true)?;
        Ok(Worker {
            queue,
            engine,
            conntrack: Conntrack::open()?,
            pinholes: NftPinholes::open(table)?,
            pinhole_timeout,
            stats: ShellStats::default(),
            published,
            nat_overrides: Vec::new(),
        })
    }

    /// Sets the `[[nat_override]]` tables (at start and on SIGHUP). The
    /// interfaces' addresses are read now and again at every tick.
    pub fn set_nat_overrides(&mut self, overrides: Vec<NatOverride>) {
        self.nat_overrides = overrides;
        self.refresh_announced_addresses();
    }

    fn refresh_announced_addresses(&mut self) {
        match crate::nat_override::announced_addresses(&self.nat_overrides) {
            Ok(table) => self.engine.set_announced_addresses(table),
            // Keep the last table: a failed read says nothing about the
            // addresses having changed.
            Err(e) => warn!(error = %e, "cannot read interface addresses for nat_override"),
        }
    }

    /// Replaces the engine's settings (SIGHUP); sessions are kept.
    pub fn reconfigure(&mut self, cfg: EngineConfig, pinhole_timeout: Duration) {
        self.engine.set_config(cfg);
        self.pinhole_timeout = pinhole_timeout;
    }

    /// Processes packets until `signals.stop` is raised, calling `reload`
    /// when `signals.reload` is. Returns an error only when the queue
    /// socket itself fails.
    pub fn run(
        &mut self,
        signals: &Signals,
        reload: &mut dyn FnMut(&mut Worker),
    ) -> io::Result<()> {
        let mut next_tick = Instant::now() + TICK;
        self.publish();
        while !signals.stop.load(Ordering::SeqCst) {
            if signals.reload.swap(false, Ordering::SeqCst) {
                reload(self);
            }
            // The waker interrupts recv once a second: that is the tick
            // when no packet arrives.
            let mut tick = false;
            match self.queue.recv() {
                Ok(msg) => self.process(msg),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => tick = true,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.stats.queue_overruns += 1;
                    warn!("queue overrun: the kernel dropped control packets (they will be retransmitted)")
                }
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            if tick || now >= next_tick {
                next_tick = now + TICK;
                for p in self.engine.poll(now) {
                    self.remove_pinhole(&p);
                }
                if !self.nat_overrides.is_empty() {
                    self.refresh_announced_addresses();
                }
                self.publish();
            }
            self.answer_status(now);
        }
        Ok(())
    }

    /// Publishes counters and gauges for the metrics endpoint and the
    /// status socket (readers never touch the engine). The list of
    /// sessions is not part of it: see [`Worker::answer_status`].
    fn publish(&mut self) {
        self.published.publish(telemetry::Published {
            engine: self.engine.stats().clone(),
            shell: self.stats.clone(),
            sessions: self.engine.session_count(),
            pinholes: self.engine.pinhole_count(),
        });
    }

    /// Lists the sessions when `ftp-alg status` asks: the list takes time
    /// in proportion to the sessions, too much to build every second for
    /// nobody (15 ms at 100,000 sessions, while packets wait).
    fn answer_status(&mut self, now: Instant) {
        if self.published.sessions_wanted() {
            self.published.answer_sessions(self.engine.snapshot(now));
        }
    }

    fn process(&mut self, mut msg: nfq::Message) {
        let now = Instant::now();
        self.stats.packets += 1;
        let decision = self.decide(now, msg.get_payload());
        for p in &decision.close {
            self.remove_pinhole(p);
        }
        for p in &decision.open {
            // Installed before the verdict: the peer may connect as soon
            // as the announcement reaches it.
            if let Err(e) = self.pinholes.add(p, self.pinhole_timeout) {
                self.stats.pinhole_errors += 1;
                error!(pinhole = %p, error = %e, "cannot install pinhole");
            }
        }
        match decision.verdict {
            Verdict::Accept => msg.set_verdict(nfq::Verdict::Accept),
            Verdict::Replace(bytes) => {
                self.stats.packets_modified += 1;
                msg.set_payload(bytes);
                msg.set_verdict(nfq::Verdict::Accept);
            }
            Verdict::Drop => msg.set_verdict(nfq::Verdict::Drop),
        }
        // A failed verdict loses this one packet (the kernel drops it after
        // its queue timeout and the sender retransmits); a broken socket
        // shows up in the next recv, which ends the loop.
        if let Err(e) = self.queue.verdict(msg) {
            self.stats.verdict_errors += 1;
            error!(error = %e, "verdict not accepted by the kernel");
        }
        self.stats.processing.observe(now.elapsed());
    }

    fn decide(&mut self, now: Instant, packet: &[u8]) -> Decision {
        // At most one lookup per packet: set_nat always records a mapping.
        for _ in 0..2 {
            match self.engine.handle(now, packet) {
                Outcome::Done(decision) => return decision,
                Outcome::NeedNat { src, dst } => {
                    let mapping = self.lookup_nat(src, dst);
                    self.engine.set_nat(src, mapping);
                }
            }
        }
        error!("engine asked twice for the same NAT mapping; packet forwarded untouched");
        Decision {
            verdict: Verdict::Accept,
            open: Vec::new(),
            close: Vec::new(),
        }
    }

    fn lookup_nat(&mut self, src: SocketAddr, dst: SocketAddr) -> Option<NatMapping> {
        match self.conntrack.lookup_tcp(src, dst) {
            Ok(Some(ct)) => Some(NatMapping {
                client_public: ct.reply_dst,
                server_real: ct.reply_src,
            }),
            Ok(None) => {
                debug!(%src, %dst, "no conntrack entry: control connection taken as untranslated");
                None
            }
            Err(e) => {
                warn!(%src, %dst, error = %e, "conntrack lookup failed: control connection taken as untranslated");
                None
            }
        }
    }

    fn remove_pinhole(&mut self, p: &Pinhole) {
        if let Err(e) = self.pinholes.remove(p) {
            self.stats.pinhole_errors += 1;
            warn!(pinhole = %p, error = %e, "cannot remove pinhole (it expires by itself)");
        }
    }
}

/// Requests from signals to the worker loop.
#[derive(Debug, Default)]
pub struct Signals {
    /// SIGTERM or SIGINT: remove everything and exit.
    pub stop: AtomicBool,
    /// SIGHUP: reload policy and timeouts.
    pub reload: AtomicBool,
}

extern "C" fn on_wake(_: libc::c_int) {}

/// The signals the daemon handles itself.
fn control_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGHUP);
    set
}

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread and so in every
/// thread it starts afterwards. Call it before any thread exists: a thread
/// that left them unblocked would take SIGTERM with its default action and
/// kill the process before the rules are removed.
pub fn block_control_signals() -> io::Result<()> {
    control_signals().thread_block().map_err(io::Error::from)
}

/// Runs `worker` on the calling thread until SIGTERM or SIGINT; SIGHUP
/// calls `reload`. A helper thread takes those signals (blocked everywhere
/// by [`block_control_signals`]), and interrupts the worker's blocking
/// `recv` with SIGUSR1, once a second for timers and at once for a signal.
pub fn run_until_signalled(
    worker: &mut Worker,
    reload: &mut dyn FnMut(&mut Worker),
) -> io::Result<()> {
    block_control_signals()?;
    let handled = control_signals();
    // SIGUSR1 only interrupts system calls: no SA_RESTART, empty handler.
    let wake = signal::SigAction::new(
        SigHandler::Handler(on_wake),
        signal::SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler is async-signal-safe (it does nothing).
    unsafe { signal::sigaction(Signal::SIGUSR1, &wake) }.map_err(io::Error::from)?;

    let signals = Arc::new(Signals::default());
    // SAFETY: pthread_self has no preconditions.
    let worker_thread = unsafe { libc::pthread_self() };
    let done = Arc::new(AtomicBool::new(false));
    let waker = {
        let (signals, done) = (signals.clone(), done.clone());
        std::thread::spawn(move || {
            let (tx, rx) = std::sync::mpsc::channel();
            // Detached on purpose: it waits in sigwait until the process ends.
            std::thread::spawn(move || {
                while let Ok(sig) = handled.wait() {
                    if tx.send(sig).is_err() {
                        break;
                    }
                }
            });
            while !done.load(Ordering::SeqCst) {
                match rx.recv_timeout(TICK) {
                    Ok(Signal::SIGHUP) => {
                        info!("SIGHUP: reloading configuration");
                        signals.reload.store(true, Ordering::SeqCst);
                    }
                    Ok(sig) => {
                        info!(signal = ?sig, "stopping");
                        signals.stop.store(true, Ordering::SeqCst);
                    }
                    Err(_) => {}
                }
                // SAFETY: the worker thread outlives this loop: it sets
                // `done` before returning and we stop signalling then.
                if !done.load(Ordering::SeqCst) {
                    unsafe { libc::pthread_kill(worker_thread, libc::SIGUSR1) };
                }
                if signals.stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        })
    };
    let result = worker.run(&signals, reload);
    done.store(true, Ordering::SeqCst);
    let _ = waker.join();
    result
}
