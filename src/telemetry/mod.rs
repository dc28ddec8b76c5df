//! What the daemon tells about itself: the state the workers publish
//! ([`shared`]), the Prometheus endpoint ([`metrics`]) and the status
//! socket ([`status`]) with what it shows ([`status_view`]).

pub mod labels;
pub mod metrics;
pub mod shared;
pub mod status;
pub mod status_view;

pub use shared::{Histogram, Published, RuleRepairs, Shared, ShellStats, PROCESSING_BOUNDS_US};
