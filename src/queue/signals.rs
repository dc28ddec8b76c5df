//! Signals and the threads that serve them: the workers on threads of
//! their own, the housekeeper on the calling thread. SIGTERM and SIGINT
//! stop, SIGHUP reloads; SIGUSR1 interrupts a worker's blocking `recv`
//! (`nfq` offers no pollable descriptor) so that it sees the stop.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::pthread::{pthread_kill, pthread_self, Pthread};
use nix::sys::signal::{self, SigHandler, SigSet, Signal};
use tracing::{info, warn};

use super::core::lock;
use super::housekeeping::{Housekeeper, TICK};
use super::repair::RuleRepair;
use super::watchdog::Watchdog;
use super::worker::Worker;
use crate::kernel::nfqueue::NfQueue;
use crate::kernel::nft_events::NftEvents;

/// How often stopping workers are interrupted until they have all ended
/// (a worker may enter `recv` just after a wake-up).
const STOP_NUDGE: Duration = Duration::from_millis(20);

extern "C" fn on_wake(_: libc::c_int) {}

/// What wakes the housekeeper.
enum Wake {
    /// A signal the daemon handles.
    Signal(Signal),
    /// nf_tables events that may have removed some of ftp-alg's rules.
    Ruleset,
}

/// The signals the daemon handles itself.
fn control_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGHUP);
    set.add(Signal::SIGUSR2);
    set
}

/// How [`run_until_signalled`] ended.
pub enum Ending {
    /// SIGTERM or SIGINT: remove the rules and exit.
    Stopped,
    /// SIGUSR2: every worker finished its packet; here are their queue
    /// sockets, still bound, for the new image ([`super::upgrade`]).
    Upgrade(Vec<NfQueue>),
}

/// Blocks SIGTERM, SIGINT, SIGHUP and SIGUSR2 in the calling thread and so in every
/// thread it starts afterwards. Call it before any thread exists: a thread
/// that left them unblocked would take SIGTERM with its default action and
/// kill the process before the rules are removed.
pub fn block_control_signals() -> io::Result<()> {
    control_signals().thread_block().map_err(io::Error::from)
}

/// The worker threads that may be interrupted. A thread is listed only
/// while it runs a worker loop, so a signal never goes to a thread that is
/// gone.
#[derive(Default)]
struct Wakeable(Mutex<Vec<Pthread>>);

/// Takes the calling thread off [`Wakeable`]'s list when dropped (also
/// when its worker panics).
struct Registered<'a>(&'a Wakeable, Pthread);

impl Wakeable {
    fn register(&self) -> Registered<'_> {
        let me = pthread_self();
        lock(&self.0).push(me);
        Registered(self, me)
    }

    fn wake_all(&self) {
        for &thread in lock(&self.0).iter() {
            // Listed threads are alive: they leave the list (under this
            // lock) before they end. ESRCH could only mean that they did.
            let _ = pthread_kill(thread, Signal::SIGUSR1);
        }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        // pthread_t is an integer on Linux: equality is pthread_equal.
        lock(&self.0 .0).retain(|&t| t != self.1);
    }
}

/// Runs every worker on a thread of its own and the housekeeper on the
/// calling thread until SIGTERM or SIGINT, or SIGUSR2 (the upgrade); SIGHUP
/// calls `reload`. The
/// housekeeper sleeps until a signal, the engine's next timer or the next
/// telemetry tick. A worker whose queue socket fails stops them all, and
/// its error is returned. Under systemd's `WatchdogSec=` the housekeeper
/// pings it while every worker is alive ([`Watchdog`]).
///
/// With `repair`, one more thread listens to nf_tables events, and the
/// housekeeper puts back the rules a firewall reload removed.
pub fn run_until_signalled(
    workers: Vec<Worker>,
    mut housekeeper: Housekeeper,
    reload: &mut dyn FnMut(&Housekeeper),
    mut repair: Option<&mut RuleRepair<'_>>,
) -> io::Result<Ending> {
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
    if workers.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no queue to serve",
        ));
    }
    let mut watchdog = Watchdog::from_env(workers.iter().map(Worker::heartbeat).collect());
    let (tx, rx) = mpsc::channel();
    let events_tx = tx.clone();
    // Detached on purpose: it waits in sigwait until the process ends.
    std::thread::spawn(move || {
        while let Ok(sig) = handled.wait() {
            if tx.send(Wake::Signal(sig)).is_err() {
                break;
            }
        }
    });
    // Opened before the threads start, in the caller's network namespace.
    let events = match repair {
        Some(_) => match NftEvents::open() {
            Ok(events) => Some(events),
            Err(e) => {
                warn!(error = %e, "cannot watch nf_tables events; checking ftp-alg's rules every 30 s only");
                None
            }
        },
        None => None,
    };
    let stop = AtomicBool::new(false);
    let mut upgrade = false;
    let wakeable = Wakeable::default();
    std::thread::scope(|scope| {
        let handles: Vec<_> = workers
            .into_iter()
            .map(|mut worker| {
                let (stop, wakeable) = (&stop, &wakeable);
                scope.spawn(move || {
                    let _listed = wakeable.register();
                    let result = worker.run(&|| stop.load(Ordering::SeqCst));
                    stop.store(true, Ordering::SeqCst);
                    result.map(|()| worker)
                })
            })
            .collect();
        let watcher = events.map(|events| {
            let (stop, wakeable) = (&stop, &wakeable);
            scope.spawn(move || watch_events(events, &events_tx, stop, wakeable))
        });
        housekeeper.publish();
        let mut next_publish = Instant::now() + TICK;
        while !stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            let mut wait = housekeeper
                .wait(now)
                .min(next_publish.saturating_duration_since(now));
            if let Some(r) = &repair {
                wait = wait.min(r.next_check().saturating_duration_since(now));
            }
            match rx.recv_timeout(wait.max(Duration::from_millis(1))) {
                Ok(Wake::Signal(Signal::SIGHUP)) => {
                    info!("SIGHUP: reloading configuration");
                    reload(&housekeeper);
                }
                Ok(Wake::Signal(Signal::SIGUSR2)) => {
                    info!("SIGUSR2: upgrading in place");
                    upgrade = true;
                    stop.store(true, Ordering::SeqCst);
                }
                Ok(Wake::Signal(sig)) => {
                    info!(signal = ?sig, "stopping");
                    stop.store(true, Ordering::SeqCst);
                }
                Ok(Wake::Ruleset) => {
                    if let Some(r) = repair.as_mut() {
                        r.changed(Instant::now());
                    }
                }
                Err(_) => {}
            }
            let now = Instant::now();
            let publish = now >= next_publish;
            if publish {
                next_publish = now + TICK;
            }
            housekeeper.tick(now, publish);
            if let Some(watchdog) = &mut watchdog {
                watchdog.tick(now);
            }
            if let Some(r) = repair.as_mut() {
                if !stop.load(Ordering::SeqCst) {
                    r.run_if_due(now, &mut housekeeper);
                }
            }
        }
        if let Some(handle) = watcher {
            while !handle.is_finished() {
                wakeable.wake_all();
                std::thread::sleep(STOP_NUDGE);
            }
            let _ = handle.join();
        }
        let mut result = Ok(Vec::new());
        for handle in handles {
            while !handle.is_finished() {
                wakeable.wake_all();
                std::thread::sleep(STOP_NUDGE);
            }
            let ended = handle
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("a queue worker panicked")));
            match (&mut result, ended) {
                (Ok(queues), Ok(worker)) => queues.push(worker.into_queue()),
                (Ok(_), Err(e)) => result = Err(e),
                (Err(_), _) => {}
            }
        }
        // A worker that failed ends the upgrade too: its socket is gone.
        result.map(|queues| {
            if upgrade {
                Ending::Upgrade(queues)
            } else {
                Ending::Stopped
            }
        })
    })
}

/// The event thread: tells the housekeeper about nf_tables events that may
/// have removed ftp-alg's rules, until `stop` (a wake-up signal or the
/// receive timeout lets it see the flag). A failing socket ends it with a
/// warning; the housekeeper's safety check still runs.
fn watch_events(
    mut events: NftEvents,
    tx: &mpsc::Sender<Wake>,
    stop: &AtomicBool,
    wakeable: &Wakeable,
) {
    let _listed = wakeable.register();
    while !stop.load(Ordering::SeqCst) {
        match events.wait() {
            Ok(true) => {
                if tx.send(Wake::Ruleset).is_err() {
                    return;
                }
            }
            Ok(false) => {}
            Err(e) => {
                warn!(error = %e, "nf_tables event socket failed; checking ftp-alg's rules every 30 s only");
                return;
            }
        }
    }
}
