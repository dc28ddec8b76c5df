//! FTP control-connection logic: line assembly, parsing, the per-session
//! state machine and the rewrite planner. Pure: no I/O, no clock.

pub mod held;
pub mod lines;
pub mod parse;
pub mod plan;
pub mod session;
pub mod tls;
