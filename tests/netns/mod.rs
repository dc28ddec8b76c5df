//! Network namespaces owned by one test, shared by the root-tier tests:
//! created with a prefix of the test file's own and the test process's pid
//! in the name, deleted on drop (also when the test panics), entered by
//! the current thread with a guard that proves the thread and its children
//! are inside before the test touches any firewall rule. Without root, or
//! without a tool they need, they fail loudly: they never skip.

#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sched::{setns, CloneFlags};
use nix::unistd::geteuid;

/// The network namespace of the calling thread (not of the whole process:
/// setns(2) moves one thread).
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// Fails the test, saying why, when not run as root: these tests need
/// network namespaces and netfilter, and must never pass silently.
pub fn require_root() {
    let uid = geteuid();
    assert!(
        uid.is_root(),
        "{} needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network namespaces \
         and load rules in them; effective uid is {uid}. Run it as root (scripts/test.sh).",
        test_name()
    );
}

/// The test binary's name, for messages.
fn test_name() -> String {
    std::env::args()
        .next()
        .and_then(|a| {
            let file = std::path::Path::new(&a).file_name()?.to_str()?.to_owned();
            // Cargo appends `-<hash>` to test binaries.
            Some(
                file.rsplit_once('-')
                    .map_or(file.clone(), |(n, _)| n.to_owned()),
            )
        })
        .unwrap_or_else(|| "this test".into())
}

/// Runs a program (not in any namespace of ours unless the thread entered
/// one); panics with its output unless it succeeds, returns its stdout.
pub fn run_ok(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (scripts/test.sh installs it)"));
    assert!(
        out.status.success(),
        "{program} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace named `<prefix>-<tag>-<pid>`, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates the namespace with its loopback up. `prefix` is the test
    /// file's own (`fa-rs`, `fa-nl`, ...), so leftovers say whose they are.
    pub fn new(prefix: &str, tag: &str) -> Netns {
        require_root();
        let name = format!("{prefix}-{tag}-{}", std::process::id());
        // A namespace of that name can only be a leftover of a crashed run
        // with the same pid; `add` would fail on it.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run_ok("ip", &["netns", "add", &name]);
        // From here on the guard deletes the namespace whatever happens.
        let ns = Netns { name };
        ns.run_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// A command that runs inside the namespace (`ip netns exec` execs it,
    /// so the child's PID is the program's).
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(argv);
        c
    }

    /// Runs a command inside; returns its output whatever the status.
    pub fn run(&self, argv: &[&str]) -> Output {
        self.command(argv)
            .output()
            .unwrap_or_else(|e| panic!("cannot run ip netns exec {argv:?}: {e}"))
    }

    /// Runs a command inside and returns its stdout; panics on failure.
    pub fn run_ok(&self, argv: &[&str]) -> String {
        let out = self.run(argv);
        assert!(
            out.status.success(),
            "{argv:?} in {}: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a shell command inside and returns its stdout; panics on failure.
    pub fn sh(&self, cmd: &str) -> String {
        self.run_ok(&["sh", "-c", cmd])
    }

    /// Loads rules from text with `nft -f -` inside; panics on failure.
    pub fn nft_load(&self, text: &str) {
        let mut child = self
            .command(&["nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run nft in {}: {e}", self.name));
        let stdin = child.stdin.take();
        stdin
            .expect("piped stdin")
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft -f in {}: {}\n{text}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The namespace's whole nftables ruleset, as text.
    pub fn ruleset(&self) -> String {
        self.run_ok(&["nft", "-s", "list", "ruleset"])
    }

    /// Starts a long-running program inside, its stdout read line by line.
    pub fn spawn(&self, argv: &[&str]) -> Spawned {
        let mut child = self
            .command(argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {argv:?} in {}: {e}", self.name));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Spawned {
            child,
            _stdin: stdin,
            lines,
        }
    }

    /// Moves the calling thread into the namespace until the guard drops,
    /// and proves it: the thread's namespace is this one, and so is that
    /// of a child it spawns (children inherit the spawning thread's).
    /// Netlink sockets opened and programs run meanwhile act in here, never
    /// on the host's firewall.
    pub fn enter(&self) -> Entered {
        let original = File::open(THREAD_NETNS).expect("open the thread's netns");
        let target = File::open(format!("/run/netns/{}", self.name))
            .unwrap_or_else(|e| panic!("open netns {}: {e}", self.name));
        setns(&target, CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns into {}: {e}", self.name));
        // From here on the guard takes the thread back whatever happens.
        let entered = Entered { original };
        let want = target.metadata().unwrap().ino();
        let here = std::fs::metadata(THREAD_NETNS).unwrap().ino();
        assert_eq!(here, want, "thread is not in namespace {}", self.name);
        let child = run_ok("readlink", &["/proc/self/ns/net"]);
        assert_eq!(
            child.trim(),
            format!("net:[{want}]"),
            "children are not in namespace {}",
            self.name
        );
        entered
    }

    /// Creates the namespace and enters it at once: the guard leaves the
    /// namespace, then deletes it.
    pub fn new_entered(prefix: &str, tag: &str) -> Inside {
        let ns = Netns::new(prefix, tag);
        let entered = ns.enter();
        Inside {
            _entered: entered,
            ns,
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The calling thread lives in a test namespace until this drops; then it
/// returns to the namespace it came from.
pub struct Entered {
    original: File,
}

impl Drop for Entered {
    fn drop(&mut self) {
        let back = setns(&self.original, CloneFlags::CLONE_NEWNET);
        // A second panic while unwinding would abort and hide the first.
        if !std::thread::panicking() {
            back.expect("setns back to the original namespace");
        }
    }
}

/// A namespace the calling thread is in: [`Netns::new_entered`].
pub struct Inside {
    // Fields drop in order: leave the namespace, then delete it.
    _entered: Entered,
    pub ns: Netns,
}

/// A program started with [`Netns::spawn`]; killed (by its own PID) and
/// reaped on drop.
pub struct Spawned {
    child: Child,
    /// Kept open: the test's scripts exit when their stdin closes.
    _stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Spawned {
    /// The next line of its stdout; panics if none comes within `timeout`.
    pub fn line(&self, timeout: Duration) -> String {
        self.lines
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("no output from child within {timeout:?}: {e}"))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails the test (never skips) unless running as root with every tool of
/// `tools` on PATH. `test` names the test file in the message.
pub fn require_lab(test: &str, tools: &[&str]) {
    let uid = geteuid();
    assert!(
        uid.is_root(),
        "{test} needs root and network namespaces (it builds a lab of `ip netns` namespaces \
         with a NAT gateway); effective uid is {uid}. Run it as root, e.g. `sudo scripts/test.sh`."
    );
    require_tools(test, tools);
}

/// Fails the test (never skips) unless every tool of `tools` is on PATH.
pub fn require_tools(test: &str, tools: &[&str]) {
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(
            found,
            "{test} needs `{tool}`; scripts/test.sh installs the lab's packages"
        );
    }
}

/// The command that runs `bash scripts/SCRIPT ARGS` from the repository
/// under `timeout` (a hard bound on top of the scripts' own, which clean up
/// on TERM) with this crate's binary as FTP_ALG_BIN and the extra
/// environment `env`.
fn lab_script_command(
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
    limit_secs: u32,
) -> Command {
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = repo.join("scripts").join(script);
    let mut cmd = Command::new("timeout");
    cmd.args(["-k", "30", &limit_secs.to_string(), "bash"])
        .arg(&path)
        .args(args)
        .current_dir(&repo)
        .env("FTP_ALG_BIN", env!("CARGO_BIN_EXE_ftp-alg"))
        .env("LAB_LOG_DIR", repo.join("target/lab-logs"))
        .envs(env.iter().copied());
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "debug");
    }
    cmd
}

/// Runs `bash scripts/SCRIPT ARGS` (see [`lab_script_command`]). Its output
/// goes straight to this process's stdout and stderr (not through the
/// harness's capture), so tables show in CI logs whether the test passes
/// or fails. Returns the exit status.
pub fn run_lab_script(
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
    limit_secs: u32,
) -> Option<i32> {
    use std::io::Write;
    let started = std::time::Instant::now();
    let _ = writeln!(std::io::stderr(), "=== scripts/{script} {}", args.join(" "));
    let status = lab_script_command(script, args, env, limit_secs)
        .status()
        .unwrap_or_else(|e| panic!("cannot run scripts/{script}: {e}"));
    let _ = writeln!(
        std::io::stderr(),
        "=== scripts/{script}: exit status {:?} after {:.1} s",
        status.code(),
        started.elapsed().as_secs_f64()
    );
    status.code()
}

/// As [`run_lab_script`], and also returns what the script printed on its
/// stdout (copied line by line to this process's stderr as it comes), for
/// tests that assert on the script's summary lines.
pub fn run_lab_script_output(
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
    limit_secs: u32,
) -> (Option<i32>, String) {
    use std::io::Write;
    let started = std::time::Instant::now();
    let _ = writeln!(std::io::stderr(), "=== scripts/{script} {}", args.join(" "));
    let mut child = lab_script_command(script, args, env, limit_secs)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run scripts/{script}: {e}"));
    let mut stdout = String::new();
    for line in BufReader::new(child.stdout.take().expect("piped stdout"))
        .lines()
        .map_while(Result::ok)
    {
        let _ = writeln!(std::io::stderr(), "{line}");
        stdout.push_str(&line);
        stdout.push('\n');
    }
    let status = child
        .wait()
        .unwrap_or_else(|e| panic!("cannot wait for scripts/{script}: {e}"));
    let _ = writeln!(
        std::io::stderr(),
        "=== scripts/{script}: exit status {:?} after {:.1} s",
        status.code(),
        started.elapsed().as_secs_f64()
    );
    (status.code(), stdout)
}
