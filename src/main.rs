//! `ftp-alg`: command-line entry point.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tracing::{error, info};

use ftp_alg::config::{Config, TABLE_NAME};
use ftp_alg::engine::{Engine, EngineConfig};
use ftp_alg::ftp::plan::Policy;
use ftp_alg::nfqueue::{run_until_signalled, Worker};
use ftp_alg::ruleset;

/// Userspace FTP ALG for Linux gateways: follows FTP control connections
/// through NFQUEUE, rewrites PORT/EPRT/227/229 for NAT and opens exact,
/// single-use pinholes for the negotiated data connections.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the rules, process control traffic until SIGTERM/SIGINT,
    /// then remove everything that was installed.
    Run(RunArgs),
    /// Print the rules `run` would install (iptables-nft and native nftables).
    Rules(CommonArgs),
}

#[derive(Args)]
struct CommonArgs {
    /// NFQUEUE number for control packets.
    #[arg(long, default_value_t = Config::default().queue_num)]
    queue: u16,
    /// Server-side control port (repeat for several).
    #[arg(long = "control-port", default_values_t = Config::default().control_ports)]
    control_ports: Vec<u16>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Seconds an unused pinhole stays open.
    #[arg(long, default_value_t = 30)]
    pinhole_timeout: u64,
    /// Do not install or remove rules: the admin manages them (see `rules`).
    #[arg(long)]
    no_install_rules: bool,
    /// Accept data ports below 1024.
    #[arg(long)]
    allow_privileged_ports: bool,
    /// Accept announced addresses that are not the announcing peer's own.
    #[arg(long)]
    allow_third_party: bool,
}

impl CommonArgs {
    fn config(&self) -> Config {
        Config {
            control_ports: self.control_ports.clone(),
            queue_num: self.queue,
            ..Config::default()
        }
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Rules(args) => {
            print!("{}", ruleset::describe(&args.config()));
            ExitCode::SUCCESS
        }
        Command::Run(args) => match run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!("{e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(args: &RunArgs) -> Result<(), Box<dyn std::error::Error>> {
    let cfg = Config {
        pinhole_timeout: Duration::from_secs(args.pinhole_timeout),
        install_rules: !args.no_install_rules,
        ..args.common.config()
    };
    let engine = Engine::new(EngineConfig {
        control_ports: cfg.control_ports.clone(),
        pinhole_timeout: cfg.pinhole_timeout,
        policy: Policy {
            allow_privileged_ports: args.allow_privileged_ports,
            allow_third_party: args.allow_third_party,
        },
        ..EngineConfig::default()
    });
    // Rules first: the pinhole backend needs ftp-alg's table to exist.
    // The queue rules use bypass, so traffic flows (unhelped) until the
    // queue is bound just below.
    let installed = if cfg.install_rules {
        Some(ruleset::install(&cfg)?)
    } else {
        None
    };
    let result = Worker::open(engine, cfg.queue_num, TABLE_NAME, cfg.pinhole_timeout).and_then(
        |mut worker| {
            info!(queue = cfg.queue_num, ports = ?cfg.control_ports, "ftp-alg ready");
            println!("ftp-alg ready (queue {})", cfg.queue_num);
            let _ = std::io::stdout().flush();
            run_until_signalled(&mut worker)
        },
    );
    if let Some(installed) = installed {
        installed.remove()?;
        info!("rules removed");
    }
    result?;
    Ok(())
}
