//! Finding `nft`, `iptables-nft` and `ip6tables-nft` and running them (no
//! shell), with one error type that says which command failed and why.
//!
//! Spawning these programs is fine at start-up and exit, never per data
//! connection (pinholes go over netlink, see `kernel/`).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use super::xtables::Family;

/// A command that failed, with what it said: enough to act on from a log line.
#[derive(Debug)]
pub struct RulesetError {
    /// The command line as it would be typed (for the log, not for a shell).
    command: String,
    /// Exit status, when the command ran.
    status: Option<ExitStatus>,
    /// Captured standard error (or the reason, when nothing ran).
    stderr: String,
    /// Why the command could not be started, when it could not.
    source: Option<std::io::Error>,
}

impl RulesetError {
    /// The failing command line, e.g. `nft -f -`.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Exit status of the command, or `None` when it could not be started
    /// (or when the error is not about a command, e.g. an invalid config).
    pub fn status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// What the command wrote to standard error, trimmed.
    pub fn stderr(&self) -> &str {
        &self.stderr
    }

    /// An error that is not a command's failure (bad configuration, a missing
    /// program, output that does not parse); `what` takes the place of the
    /// command line.
    pub(super) fn other(what: &str, reason: impl Into<String>) -> Self {
        RulesetError {
            command: what.to_string(),
            status: None,
            stderr: reason.into(),
            source: None,
        }
    }
}

impl fmt::Display for RulesetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` failed", self.command)?;
        if let Some(status) = self.status {
            write!(f, " ({status})")?;
        }
        if let Some(e) = &self.source {
            write!(f, ": {e}")?;
        }
        if !self.stderr.is_empty() {
            write!(f, ": {}", self.stderr)?;
        }
        Ok(())
    }
}

impl std::error::Error for RulesetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The iptables-nft binaries, found once per install.
#[derive(Debug)]
pub(super) struct Tools {
    ipt4: Option<PathBuf>,
    ipt6: Option<PathBuf>,
}

impl Tools {
    /// Looks for `iptables-nft` and `ip6tables-nft` (see [`find_xtables`]).
    pub(super) fn discover() -> Tools {
        Tools {
            ipt4: find_xtables("iptables"),
            ipt6: find_xtables("ip6tables"),
        }
    }

    /// Whether both families' binaries were found.
    pub(super) fn complete(&self) -> bool {
        self.ipt4.is_some() && self.ipt6.is_some()
    }

    /// The binary for `fam`, or an error naming the one that is missing.
    pub(super) fn get(&self, fam: Family) -> Result<&Path, RulesetError> {
        let p = match fam {
            Family::V4 => &self.ipt4,
            Family::V6 => &self.ipt6,
        };
        p.as_deref().ok_or_else(|| {
            RulesetError::other(
                &format!("{}-nft", fam.iptables_name()),
                "not found (and the plain binary is not the nf_tables variant)",
            )
        })
    }
}

/// `NAME-nft` if present, else `NAME` if `NAME --version` says nf_tables:
/// the legacy variant would write to tables that `nft` cannot see or restore.
fn find_xtables(name: &str) -> Option<PathBuf> {
    if let Some(p) = find_in_path(&format!("{name}-nft")) {
        return Some(p);
    }
    let p = find_in_path(name)?;
    match run(&p, &["--version"], None) {
        Ok(v) if v.contains("nf_tables") => Some(p),
        Ok(v) => {
            tracing::debug!("{} is not iptables-nft: {}", p.display(), v.trim());
            None
        }
        Err(_) => None,
    }
}

/// Looks a program up in `PATH` plus the sbin directories (a daemon's PATH
/// may lack them).
fn find_in_path(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(prog))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Borrows a list of owned arguments for [`run`].
pub(super) fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Runs `prog args` (no shell), feeding `stdin` if given; returns stdout, or
/// an error carrying the command line, exit status and stderr.
pub(super) fn run(
    prog: impl AsRef<Path>,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, RulesetError> {
    let prog = prog.as_ref();
    let cmdline = {
        let mut s = prog.display().to_string();
        for a in args {
            s.push(' ');
            s.push_str(a);
        }
        s
    };
    tracing::debug!("running {cmdline}");
    let spawn_err = |e: std::io::Error| RulesetError {
        command: cmdline.clone(),
        status: None,
        stderr: String::new(),
        source: Some(e),
    };
    let mut child = Command::new(prog)
        .args(args)
        // Error texts are matched (detect_queue_backend): keep them English.
        .env("LC_ALL", "C")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // nft reads all of its input before it writes much, and our inputs
        // are a few kB: writing before reading cannot deadlock.
        if let Err(e) = pipe.write_all(input.as_bytes()) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(spawn_err(e));
        }
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(RulesetError {
            command: cmdline,
            status: Some(out.status),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            source: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display_names_the_command() {
        let e = run("/nonexistent/ftp-alg-nft", &["-f", "-"], None).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("/nonexistent/ftp-alg-nft -f -"), "{s}");
        assert!(std::error::Error::source(&e).is_some());
        let e = run("false", &[], None).unwrap_err();
        assert!(e.status().is_some_and(|s| !s.success()));
    }

    #[test]
    fn run_feeds_stdin_and_returns_stdout() {
        assert_eq!(run("cat", &[], Some("a\nb\n")).unwrap(), "a\nb\n");
        let e = run("sh", &["-c", "echo oops >&2; exit 3"], None).unwrap_err();
        assert_eq!(e.stderr(), "oops");
        assert_eq!(e.status().and_then(|s| s.code()), Some(3));
        assert_eq!(
            e.to_string(),
            "`sh -c echo oops >&2; exit 3` failed (exit status: 3): oops"
        );
    }

    #[test]
    fn missing_tool_is_named() {
        let t = Tools {
            ipt4: Some(PathBuf::from("/usr/sbin/iptables-nft")),
            ipt6: None,
        };
        assert!(!t.complete());
        assert_eq!(
            t.get(Family::V4).unwrap(),
            Path::new("/usr/sbin/iptables-nft")
        );
        assert_eq!(t.get(Family::V6).unwrap_err().command(), "ip6tables-nft");
    }
}
