//! `ftp-alg run`: the daemon's life from start to stop.
//!
//! [`run`] blocks the control signals, takes over what an upgrading
//! predecessor handed over (its bound queues and the record of its rules)
//! or binds the queues and installs the rules afresh, starts the telemetry
//! (metrics endpoint, status socket), tells systemd it is ready, serves
//! until a signal (SIGHUP reloads the configuration, a firewall reload gets
//! ftp-alg's rules repaired, SIGUSR2 re-executes the binary in place), and
//! then removes what it installed. [`init_logging`] sets up the log first.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::config::{Config, LogFormat, TABLE_NAME};
use crate::queue::signals::Ending;
use crate::queue::watchdog::sd_notify;
use crate::queue::{
    block_control_signals, run_until_signalled, upgrade, Housekeeper, RuleRepair, Worker,
};
use crate::rules;
use crate::rules::Installed;
use crate::telemetry;
use crate::telemetry::{metrics, status};
use ftp_alg_proto::engine::Engine;

/// Logs to stderr at `cfg.log.level` (`RUST_LOG` overrides it), as text
/// (coloured on a terminal) or JSON lines.
pub fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.level));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match cfg.log.format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs the daemon with `cfg` until SIGTERM or SIGINT (or a failed
/// upgrade), then removes the rules it installed; `config_path` is the file
/// SIGHUP reloads. Errors: the queues cannot be bound, the rules cannot be
/// installed or removed, the metrics endpoint cannot be bound.
pub fn run(cfg: &Config, config_path: Option<PathBuf>) -> Result<(), Box<dyn std::error::Error>> {
    // Before any thread starts, so that all of them inherit the mask and a
    // SIGTERM always reaches the handler that removes the rules.
    block_control_signals()?;
    // An upgrade: the previous image handed over its bound queues and the
    // record of its rules (read before any thread starts).
    let handover = upgrade::take()?;
    let published = telemetry::Shared::default();
    let engine = Engine::new(cfg.engine());
    let (mut workers, housekeeper, mut installed) = match handover {
        Some((queues, installed)) => {
            info!(
                queues = queues.len(),
                "upgraded in place: queues and rules taken over"
            );
            let (w, h) = Worker::serve_all(engine, queues, TABLE_NAME, published.clone())?;
            let installed = installed.map(Installed::take_over).transpose()?;
            (w, h, installed)
        }
        None => {
            // The queue first: binding fails (EPERM) while another instance
            // holds it, and this instance must then stop before it touches
            // that one's rules (installing starts by removing "stale" ones).
            let (w, h) = Worker::open_all(
                engine,
                cfg.queue_num,
                cfg.queues,
                TABLE_NAME,
                published.clone(),
            )?;
            let installed = if cfg.install_rules {
                Some(rules::install(cfg)?)
            } else {
                None
            };
            (w, h, installed)
        }
    };
    housekeeper.set_nat_overrides(cfg.nat_override.clone());
    for worker in &mut workers {
        worker.set_busy_poll(Duration::from_micros(cfg.busy_poll_us.into()));
        worker.set_durable(&cfg.durable);
    }
    let result = serve_telemetry(cfg, &published).and_then(|_status| {
        info!(queue = cfg.queue_num, queues = cfg.queues, ports = ?cfg.control_ports, "ftp-alg ready");
        println!("ftp-alg ready (queue {})", rules::queue_range(cfg));
        let _ = std::io::stdout().flush();
        sd_notify("READY=1");
        let mut reload = |hk: &Housekeeper| reload_config(cfg, config_path.as_deref(), hk);
        // Rules the admin manages (install_rules = false) are theirs to keep.
        let mut repair = installed.as_mut().map(|i| RuleRepair::new(i, cfg));
        run_until_signalled(workers, housekeeper, &mut reload, repair.as_mut())
        // `_status` drops here: the socket file is removed.
    });
    let result = match result {
        Ok(Ending::Upgrade(queues)) => {
            // Returns only when the new image could not be started: then
            // this one stops like at SIGTERM, and says why (systemd's
            // Restart= starts the binary afresh).
            let state = installed.take().map(Installed::hand_over);
            let (e, _queues, state) = upgrade::exec_self(queues, state);
            error!("upgrade failed: cannot execute the new binary: {e}; stopping");
            installed = state.map(Installed::take_over).transpose()?;
            Err(e)
        }
        other => other.map(drop),
    };
    sd_notify("STOPPING=1");
    if let Some(installed) = installed {
        installed.remove()?;
        info!("rules removed");
    }
    result?;
    Ok(())
}

/// Starts the metrics endpoint when configured (failing to bind it is an
/// error: the admin asked for it) and the status socket (a warning only:
/// another instance in another network namespace may hold the path).
fn serve_telemetry(
    cfg: &Config,
    published: &telemetry::Shared,
) -> std::io::Result<Option<status::StatusServer>> {
    if let Some(addr) = cfg.metrics_address {
        let (bound, _thread) = metrics::serve(addr, published.clone())
            .map_err(|e| std::io::Error::new(e.kind(), format!("metrics endpoint {addr}: {e}")))?;
        info!(address = %bound, "metrics served at /metrics");
    }
    // systemd's RuntimeDirectory= makes the directory; elsewhere the first
    // start does, private like the socket.
    if let Some(dir) = cfg.status_socket.parent().filter(|d| !d.exists()) {
        use std::os::unix::fs::DirBuilderExt;
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
        {
            warn!(error = %e, dir = %dir.display(), "cannot create the status socket's directory");
        }
    }
    match status::serve(&cfg.status_socket, published.clone()) {
        Ok(server) => Ok(Some(server)),
        Err(e) => {
            warn!(error = %e, "status socket unavailable; `ftp-alg status` will not work");
            Ok(None)
        }
    }
}

/// SIGHUP: policy, limits, timeouts and NAT overrides take effect at once; other keys
/// (rules, sockets, logging) need a restart and are reported.
fn reload_config(running: &Config, path: Option<&std::path::Path>, housekeeper: &Housekeeper) {
    let Some(path) = path else {
        info!("SIGHUP without --config: nothing to reload");
        return;
    };
    match Config::load(path) {
        Ok(new) => {
            // Everything but the reloadable keys must be as running.
            let rest = Config {
                pinhole_timeout: running.pinhole_timeout,
                max_pinholes_per_session: running.max_pinholes_per_session,
                policy: running.policy.clone(),
                nat_override: running.nat_override.clone(),
                ..new.clone()
            };
            if rest != *running {
                warn!("only pinhole_timeout_secs, max_pinholes_per_session, [policy] and [[nat_override]] apply on reload; other changed keys need a restart");
            }
            // [[ftps]] and ftps_control_ports shape the table and the queue
            // rules, which a reload does not touch: they stay as running.
            let applied = Config {
                ftps: running.ftps.clone(),
                ftps_control_ports: running.ftps_control_ports.clone(),
                ..new.clone()
            };
            housekeeper.reconfigure(applied.engine());
            housekeeper.set_nat_overrides(new.nat_override.clone());
            info!(file = %path.display(), "configuration reloaded");
        }
        Err(e) => error!("reload refused, previous configuration kept: {e}"),
    }
}
