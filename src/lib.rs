//! ftp-alg: the daemon around the pure core [`ftp_alg_proto`].
//!
//! Everything here is a shell: it does I/O for the core and nothing else.
//!
//! * [`daemon`]: `ftp-alg run`, the daemon's life from start to stop;
//! * [`queue`]: the NFQUEUE workers and the signal handling;
//! * [`kernel`]: netlink to the kernel: nf_tables pinholes, conntrack
//!   lookups, interface addresses for NAT overrides;
//! * [`rules`]: the rules ftp-alg needs, as text and installed;
//! * [`telemetry`]: what the workers publish, the metrics endpoint and the
//!   status socket;
//! * [`replay`]: `ftp-alg replay`, a capture run offline through the core;
//! * [`config`]: the typed, validated configuration.

pub mod config;
pub mod daemon;
pub mod kernel;
pub mod queue;
pub mod replay;
pub mod rules;
pub mod telemetry;
