//! The NFQUEUE shell: worker threads that feed queued control packets to
//! the engine and carry out its decisions ([`worker`]), the housekeeper
//! that runs its timers, telemetry and reloads ([`housekeeping`]), the
//! repair of rules a firewall reload removed ([`repair`]), the signals
//! that start and stop them ([`signals`]), and systemd's watchdog, fed
//! while the workers are alive ([`watchdog`]).

mod core;
pub mod housekeeping;
pub mod repair;
pub mod signals;
pub mod upgrade;
pub mod watchdog;
pub mod worker;

pub use housekeeping::Housekeeper;
pub use repair::RuleRepair;
pub use signals::{block_control_signals, run_until_signalled};
pub use worker::Worker;
