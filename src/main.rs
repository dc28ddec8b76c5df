//! `ftp-alg`: command-line entry point: the subcommands, their arguments
//! and exit codes; `run` itself is [`ftp_alg::daemon`].

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use tracing::error;

use ftp_alg::config::{Config, ConfigError, Paths};
use ftp_alg::daemon;
use ftp_alg::rules;
use ftp_alg::telemetry::status;
use ftp_alg::telemetry::status::StatusReport;

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
    Rules {
        #[command(flatten)]
        common: Overrides,
        /// Print only this file of deploy/rules/ (for install_rules = false):
        /// iptables-nft.nft, iptables-nft.rules.v4, iptables-nft.rules.v6 or
        /// nftables.nft.
        #[arg(long, value_parser = deploy_file_name)]
        file: Option<rules::DeployFile>,
    },
    /// Check a configuration file: exit 0 if it is valid, 2 if not.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Print the man page (roff) to stdout: `ftp-alg man > ftp-alg.8`.
    Man,
    /// Print a shell completion script: `ftp-alg completions bash`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Replay a capture (pcap or pcapng) through the core offline: print
    /// per control session what ftp-alg would do (announcements,
    /// rewrites, pinholes, refusals with their reason). See docs/replay.md.
    Replay(ReplayArgs),
    /// Show the running daemon's sessions and pinholes (needs root).
    Status {
        /// Print the daemon's answer as JSON (one object on one line,
        /// "schema": 1) instead of the text view rendered from it.
        #[arg(long)]
        json: bool,
        /// Status socket [default: status_socket of --config, else /run/ftp-alg/status.sock].
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Configuration file naming the socket.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Command-line settings; each overrides the configuration file.
#[derive(Args)]
struct Overrides {
    /// TOML configuration file (see deploy/ftp-alg.toml); defaults apply without it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// NFQUEUE number for control packets [default: 21].
    #[arg(long)]
    queue: Option<u16>,
    /// Queues (and worker threads), numbered from --queue on [default: 1].
    #[arg(long)]
    queues: Option<u16>,
    /// Server-side control port, repeatable [default: 21].
    #[arg(long = "control-port")]
    control_ports: Vec<u16>,
    /// Control connections to follow: forward, local or forward,local
    /// (overrides `paths`) [default: forward].
    #[arg(long, value_name = "PATHS")]
    paths: Option<Paths>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: Overrides,
    /// Seconds an unused pinhole stays open [default: 30].
    #[arg(long)]
    pinhole_timeout: Option<u64>,
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

#[derive(Args)]
struct ReplayArgs {
    /// The capture: pcap or pcapng; Ethernet, Linux cooked (SLL, SLL2:
    /// `tcpdump -i any`) or raw IP. `-` reads standard input.
    file: PathBuf,
    /// One JSON object per line and event, instead of text.
    #[arg(long)]
    json: bool,
    /// TOML configuration file: control ports, [policy], pinhole timeout.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Server-side control port, repeatable [default: 21].
    #[arg(long = "control-port")]
    control_ports: Vec<u16>,
    /// A translation the capture cannot show, repeatable: a client's own
    /// address and what the server sees (`--nat 198.51.100.2=203.0.113.254`),
    /// or a server's public address and its real one
    /// (`--nat 203.0.113.1:21=192.0.2.10:21`).
    #[arg(long = "nat", value_name = "FROM=TO")]
    nat: Vec<ftp_alg::replay::NatOption>,
}

impl Overrides {
    fn config(&self) -> Result<Config, ConfigError> {
        let mut cfg = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(q) = self.queue {
            cfg.queue_num = q;
        }
        if let Some(n) = self.queues {
            cfg.queues = n;
        }
        if !self.control_ports.is_empty() {
            cfg.control_ports = self.control_ports.clone();
        }
        if let Some(p) = self.paths {
            cfg.paths = p;
        }
        // A path switched on here may need a key the file lacks
        // (accept_rule_input).
        cfg.validate()?;
        Ok(cfg)
    }
}

impl RunArgs {
    fn config(&self) -> Result<Config, ConfigError> {
        let mut cfg = self.common.config()?;
        if let Some(t) = self.pinhole_timeout {
            cfg.pinhole_timeout = Duration::from_secs(t);
        }
        cfg.install_rules &= !self.no_install_rules;
        cfg.policy.allow_privileged_ports |= self.allow_privileged_ports;
        cfg.policy.allow_third_party |= self.allow_third_party;
        cfg.validate()?;
        Ok(cfg)
    }
}

fn deploy_file_name(name: &str) -> Result<rules::DeployFile, String> {
    rules::DeployFile::ALL
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .ok_or_else(|| {
            let names: Vec<&str> = rules::DeployFile::ALL.iter().map(|(n, _)| *n).collect();
            format!("not one of {}", names.join(", "))
        })
}

/// Exit status for an unusable configuration (as in sysexits' spirit:
/// distinct from a run-time failure, which is 1).
const EXIT_CONFIG: u8 = 2;

/// Writes generated text to stdout; a closed pipe is not worth a panic.
fn write_stdout(text: std::io::Result<Vec<u8>>) -> ExitCode {
    match text.and_then(|t| std::io::stdout().write_all(&t)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ftp-alg: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config_error(e: &ConfigError) -> ExitCode {
    eprintln!("ftp-alg: configuration error: {e}");
    ExitCode::from(EXIT_CONFIG)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Rules { common, file } => match common.config() {
            Ok(cfg) => {
                match file {
                    Some(file) => print!("{}", rules::deploy_file(&cfg, file)),
                    None => print!("{}", rules::describe(&cfg)),
                }
                ExitCode::SUCCESS
            }
            Err(e) => config_error(&e),
        },
        Command::Man => {
            let mut page = Vec::new();
            let rendered = clap_mangen::Man::new(Cli::command())
                .section("8")
                .render(&mut page);
            write_stdout(rendered.map(|()| page))
        }
        Command::Completions { shell } => {
            // Rendered to memory first: the generator panics on a closed pipe.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ftp-alg", &mut script);
            write_stdout(Ok(script))
        }
        Command::Status {
            json,
            socket,
            config,
        } => {
            let path = match (socket, config) {
                (Some(path), _) => path,
                (None, Some(file)) => match Config::load(&file) {
                    Ok(cfg) => cfg.status_socket,
                    Err(e) => return config_error(&e),
                },
                (None, None) => Config::default().status_socket,
            };
            let answer = status::query(&path).and_then(|text| {
                StatusReport::from_json(&text)
                    .map(|report| (text, report))
                    .map_err(|e| {
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("{}: not a status report: {e}", path.display()),
                        )
                    })
            });
            match answer {
                // The JSON as the daemon sent it: fields this client does
                // not know survive.
                Ok((text, _)) if json => write_stdout(Ok(text.into_bytes())),
                Ok((_, report)) => write_stdout(Ok(report.render_text().into_bytes())),
                Err(e) => {
                    eprintln!("ftp-alg: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Replay(args) => replay(&args),
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(cfg) => {
                println!("{}: ok (paths {})", file.display(), cfg.paths);
                ExitCode::SUCCESS
            }
            Err(e) => config_error(&e),
        },
        Command::Run(args) => {
            let cfg = match args.config() {
                Ok(cfg) => cfg,
                Err(e) => return config_error(&e),
            };
            daemon::init_logging(&cfg);
            match daemon::run(&cfg, args.common.config.clone()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    error!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `ftp-alg replay`: the report on stdout, a summary of what was left out
/// on stderr; 1 when the capture cannot be read, 2 for a bad configuration.
fn replay(args: &ReplayArgs) -> ExitCode {
    let mut cfg = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(cfg) => cfg,
            Err(e) => return config_error(&e),
        },
        None => Config::default(),
    };
    if !args.control_ports.is_empty() {
        cfg.control_ports = args.control_ports.clone();
    }
    let input: Box<dyn std::io::Read + Send> = if args.file.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        match std::fs::File::open(&args.file) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => {
                eprintln!("ftp-alg: {}: {e}", args.file.display());
                return ExitCode::FAILURE;
            }
        }
    };
    let report = match ftp_alg::replay::replay(input, cfg.engine(), &args.nat) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("ftp-alg: {}: {e}", args.file.display());
            return ExitCode::FAILURE;
        }
    };
    let mut text = Vec::new();
    let written = ftp_alg::replay::output::write(&report.records, args.json, &mut text);
    let status = write_stdout(written.map(|()| text));
    eprintln!(
        "ftp-alg replay: {} packets fed, {} leaving copies left out, {} cut by the snap length{}{}",
        report.fed,
        report.copies,
        report.truncated,
        if report.unknown_link > 0 {
            format!(", {} frames of an unknown link type", report.unknown_link)
        } else {
            String::new()
        },
        if report.cut_at_end {
            "; the file ends inside a packet"
        } else {
            ""
        },
    );
    status
}
