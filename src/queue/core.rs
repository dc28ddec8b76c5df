//! What the worker threads and the housekeeper share: the one engine, the
//! shell's counters, and the settings that go with them.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ftp_alg_proto::engine::Engine;

use crate::config::NatOverride;
use crate::telemetry::ShellStats;

/// The engine and the shell state that changes with it.
pub(crate) struct Core {
    pub(crate) engine: Engine,
    pub(crate) stats: ShellStats,
    pub(crate) nat_overrides: Vec<NatOverride>,
}

/// A [`Core`] shared between threads.
pub(crate) type SharedCore = Arc<Mutex<Core>>;

impl Core {
    pub(crate) fn shared(engine: Engine) -> SharedCore {
        Arc::new(Mutex::new(Core {
            engine,
            stats: ShellStats::default(),
            nat_overrides: Vec::new(),
        }))
    }
}

/// Locks `m`; a thread that panicked while holding it does not stop the
/// others (every value in there stays usable).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
