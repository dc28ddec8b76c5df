//! The queue loop: the shell that connects NFQUEUE, conntrack and the
//! pinhole backend to the engine.
//!
//! One worker thread per queue (`queues = N`) receives packets (blocking
//! `recv`, as `nfq` offers no pollable descriptor). The workers share one
//! engine behind a mutex, held only while the engine decides (well under a
//! microsecond); receiving, conntrack lookups, pinhole updates over netlink
//! and verdicts, the bulk of the cost, run in parallel. Sharing is what makes
//! balancing safe: the kernel spreads flows over the queues by a hash of the
//! addresses, and under DNAT the two directions of one control connection
//! show different addresses at their hooks, so they may reach different
//! workers. Each direction always hashes alike, so its packets stay in order.
//!
//! A further thread wakes the workers with a harmless signal once a second
//! and at once when a signal asks to stop or to reload. The first worker
//! runs the timers, publishes telemetry and answers status requests.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
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

/// What the workers share: the engine and the settings and counters that
/// go with it.
struct Core {
    engine: Engine,
    stats: ShellStats,
    pinhole_timeout: Duration,
    nat_overrides: Vec<NatOverride>,
}

/// Locks `m`; a worker that panicked while holding it does not stop the
/// others (every value in there stays usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The I/O around the shared engine for one queue: the bound queue, a
/// conntrack socket and the pinhole backend.
pub struct Worker {
    queue: nfq::Queue,
    queue_num: u16,
    core: Arc<Mutex<Core>>,
    conntrack: Conntrack,
    pinholes: NftPinholes,
    published: telemetry::Shared,
    busy_poll: Duration,
    last_packet: Option<Instant>,
}

impl Worker {
    /// Opens one worker per queue `first ..= first + count - 1`, all sharing
    /// `engine`. Fails if another process holds one of the queues (the
    /// kernel answers EPERM).
    pub fn open_all(
        engine: Engine,
        first: u16,
        count: u16,
        table: &str,
        pinhole_timeout: Duration,
        published: telemetry::Shared,
    ) -> io::Result<Vec<Worker>> {
        let core = Arc::new(Mutex::new(Core {
            engine,
            stats: ShellStats::default(),
            pinhole_timeout,
            nat_overrides: Vec::new(),
        }));
        (0..count.max(1))
            .map(|i| Worker::open(core.clone(), first + i, table, published.clone()))
            .collect()
    }

    fn open(
        core: Arc<Mutex<Core>>,
        queue_num: u16,
        table: &str,
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
            queue_num,
            core,
            conntrack: Conntrack::open()?,
            pinholes: NftPinholes::open(table)?,
            published,
            busy_poll: Duration::ZERO,
            last_packet: None,
        })
    }

    /// Sets the `[[nat_override]]` tables (at start and on SIGHUP). The
    /// interfaces' addresses are read now and again at every tick.
    pub fn set_nat_overrides(&self, overrides: Vec<NatOverride>) {
        lock(&self.core).nat_overrides = overrides;
        self.refresh_announced_addresses();
    }

    fn refresh_announced_addresses(&self) {
        let overrides = lock(&self.core).nat_overrides.clone();
        if overrides.is_empty() {
            return;
        }
        // Read outside the lock: the other workers need the engine.
        match crate::nat_override::announced_addresses(&overrides) {
            Ok(table) => lock(&self.core).engine.set_announced_addresses(table),
            // Keep the last table: a failed read says nothing about the
            // addresses having changed.
            Err(e) => warn!(error = %e, "cannot read interface addresses for nat_override"),
        }
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

    /// The next queued packet: first polled without sleeping while within
    /// `busy_poll` of the last one, then with a blocking receive.
    fn next_packet(&mut self) -> io::Result<nfq::Message> {
        if let Some(last) = self.last_packet.filter(|_| !self.busy_poll.is_zero()) {
            self.queue.set_nonblocking(true);
            let polled = loop {
                if last.elapsed() >= self.busy_poll {
                    break None;
                }
                match self.queue.recv() {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::hint::spin_loop(),
                    other => break Some(other),
                }
            };
            self.queue.set_nonblocking(false);
            if let Some(result) = polled {
                return result;
            }
        }
        self.queue.recv()
    }

    /// Replaces the engine's settings (SIGHUP); sessions are kept.
    pub fn reconfigure(&self, cfg: EngineConfig, pinhole_timeout: Duration) {
        let mut core = lock(&self.core);
        core.engine.set_config(cfg);
        core.pinhole_timeout = pinhole_timeout;
    }

    /// Processes packets until `signals.stop` is raised. The first worker
    /// (`first` is set) also runs the timers, publishes telemetry, answers
    /// status requests and calls `reload` on SIGHUP. Returns an error only
    /// when the queue socket itself fails.
    fn run(
        &mut self,
        signals: &Signals,
        mut first: Option<&mut dyn FnMut(&Worker)>,
    ) -> io::Result<()> {
        let mut next_tick = Instant::now() + TICK;
        if first.is_some() {
            self.publish();
        }
        while !signals.stop.load(Ordering::SeqCst) {
            if let Some(reload) = first.as_mut() {
                if signals.reload.swap(false, Ordering::SeqCst) {
                    reload(self);
                }
            }
            // The waker interrupts recv once a second: that is the tick
            // when no packet arrives.
            let mut tick = false;
            match self.next_packet() {
                Ok(msg) => {
                    self.process(msg);
                    self.last_packet = Some(Instant::now());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => tick = true,
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    lock(&self.core).stats.queue_overruns += 1;
                    warn!(queue = self.queue_num, "queue overrun: the kernel dropped control packets (they will be retransmitted)")
                }
                Err(e) => return Err(e),
            }
            if first.is_none() {
                continue;
            }
            let now = Instant::now();
            if tick || now >= next_tick {
                next_tick = now + TICK;
                let expired = lock(&self.core).engine.poll(now);
                for p in expired {
                    self.remove_pinhole(&p);
                }
                self.refresh_announced_addresses();
                self.publish();
            }
            self.answer_status(now);
        }
        Ok(())
    }

    /// Publishes counters and gauges for the metrics endpoint and the
    /// status socket (readers never touch the engine). The list of
    /// sessions is not part of it: see [`Worker::answer_status`].
    fn publish(&self) {
        let snapshot = {
            let core = lock(&self.core);
            telemetry::Published {
                engine: core.engine.stats().clone(),
                shell: core.stats.clone(),
                sessions: core.engine.session_count(),
                pinholes: core.engine.pinhole_count(),
            }
        };
        self.published.publish(snapshot);
    }

    /// Lists the sessions when `ftp-alg status` asks: the list takes time
    /// in proportion to the sessions, too much to build every second for
    /// nobody (15 ms at 100,000 sessions, while packets wait).
    fn answer_status(&self, now: Instant) {
        if self.published.sessions_wanted() {
            let list = lock(&self.core).engine.snapshot(now);
            self.published.answer_sessions(list);
        }
    }

    fn process(&mut self, mut msg: nfq::Message) {
        let now = Instant::now();
        let (decision, pinhole_timeout) = self.decide(now, msg.get_payload());
        for p in &decision.close {
            self.remove_pinhole(p);
        }
        for p in &decision.open {
            // Installed before the verdict: the peer may connect as soon
            // as the announcement reaches it.
            if let Err(e) = self.pinholes.add(p, pinhole_timeout) {
                lock(&self.core).stats.pinhole_errors += 1;
                error!(pinhole = %p, error = %e, "cannot install pinhole");
            }
        }
        let modified = matches!(decision.verdict, Verdict::Replace(_));
        match decision.verdict {
            Verdict::Accept => msg.set_verdict(nfq::Verdict::Accept),
            Verdict::Replace(bytes) => {
                msg.set_payload(bytes);
                msg.set_verdict(nfq::Verdict::Accept);
            }
            Verdict::Drop => msg.set_verdict(nfq::Verdict::Drop),
        }
        // A failed verdict loses this one packet (the kernel drops it after
        // its queue timeout and the sender retransmits); a broken socket
        // shows up in the next recv, which ends the loop.
        let verdict = self.queue.verdict(msg);
        if let Err(e) = &verdict {
            error!(error = %e, "verdict not accepted by the kernel");
        }
        let mut core = lock(&self.core);
        core.stats.packets += 1;
        core.stats.packets_modified += u64::from(modified);
        core.stats.verdict_errors += u64::from(verdict.is_err());
        core.stats.processing.observe(now.elapsed());
    }

    /// The engine's decision and the pinhole lifetime to install with it.
    /// The lock is not held during the conntrack lookup.
    fn decide(&mut self, now: Instant, packet: &[u8]) -> (Decision, Duration) {
        // At most one lookup per packet: set_nat always records a mapping.
        for _ in 0..2 {
            let (outcome, pinhole_timeout) = {
                let mut core = lock(&self.core);
                (core.engine.handle(now, packet), core.pinhole_timeout)
            };
            match outcome {
                Outcome::Done(decision) => return (decision, pinhole_timeout),
                Outcome::NeedNat { src, dst } => {
                    let mapping = self.lookup_nat(src, dst);
                    lock(&self.core).engine.set_nat(src, mapping);
                }
            }
        }
        error!("engine asked twice for the same NAT mapping; packet forwarded untouched");
        let decision = Decision {
            verdict: Verdict::Accept,
            open: Vec::new(),
            close: Vec::new(),
        };
        (decision, Duration::ZERO)
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
            lock(&self.core).stats.pinhole_errors += 1;
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

/// The worker threads the waker may signal. A thread is listed only while
/// it runs a worker loop, so a signal never goes to a thread that is gone.
#[derive(Default)]
struct Wakeable(Mutex<Vec<libc::pthread_t>>);

/// Takes the calling thread off [`Wakeable`]'s list when dropped (also
/// when its worker panics).
struct Registered<'a>(&'a Wakeable, libc::pthread_t);

impl Wakeable {
    fn register(&self) -> Registered<'_> {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        lock(&self.0).push(me);
        Registered(self, me)
    }

    fn wake_all(&self) {
        for &thread in lock(&self.0).iter() {
            // SAFETY: listed threads are alive: they leave the list (under
            // this lock) before they end.
            unsafe { libc::pthread_kill(thread, libc::SIGUSR1) };
        }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        // SAFETY: pthread_equal has no preconditions.
        lock(&self.0 .0).retain(|&t| unsafe { libc::pthread_equal(t, self.1) } == 0);
    }
}

/// Runs the workers, the first on the calling thread and each other one on
/// a thread of its own, until SIGTERM or SIGINT; SIGHUP calls `reload` (on
/// the first worker: reloading acts on the shared engine). A helper thread
/// takes those signals (blocked everywhere by [`block_control_signals`])
/// and interrupts the workers' blocking `recv` with SIGUSR1, once a second
/// for timers and at once for a signal. A worker whose queue socket fails
/// stops them all, and its error is returned.
pub fn run_until_signalled(
    workers: Vec<Worker>,
    reload: &mut dyn FnMut(&Worker),
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

    let mut workers = workers.into_iter();
    let Some(mut first) = workers.next() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no queue to serve",
        ));
    };
    let signals = Signals::default();
    let wakeable = Wakeable::default();
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let waker = scope.spawn(|| {
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
                wakeable.wake_all();
                if signals.stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        });
        let others: Vec<_> = workers
            .map(|mut worker| {
                let (signals, wakeable) = (&signals, &wakeable);
                scope.spawn(move || {
                    let _listed = wakeable.register();
                    let result = worker.run(signals, None);
                    if result.is_err() {
                        signals.stop.store(true, Ordering::SeqCst);
                    }
                    result
                })
            })
            .collect();
        let mut result = {
            let _listed = wakeable.register();
            first.run(&signals, Some(reload))
        };
        // Whatever ended the first worker ends them all.
        signals.stop.store(true, Ordering::SeqCst);
        for handle in others {
            let ended = handle
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a queue worker panicked")));
            if result.is_ok() {
                result = ended;
            }
        }
        done.store(true, Ordering::SeqCst);
        let _ = waker.join();
        result
    })
}
