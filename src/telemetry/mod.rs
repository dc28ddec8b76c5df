//! What the daemon tells about itself: the state the workers publish
//! ([`shared`]), the Prometheus endpoint ([`metrics`]) and the status
//! socket with what it shows ([`status`]).

pub mod labels;
pub mod metrics;
pub mod shared;
pub mod status;

pub use shared::{Histogram, Published, RuleRepairs, Shared, ShellStats, PROCESSING_BOUNDS_US};
