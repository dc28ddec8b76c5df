//! The Debian package, as an admin installs it (root tier: installs a
//! package on this machine): `scripts/package.sh` builds the .deb,
//! `dpkg -i` installs it, every file is where it belongs, `man -w` finds
//! the page, the installed binary accepts the installed configuration,
//! systemd accepts the installed unit and rates its exposure, and
//! `dpkg -r` removes it again (the package is purged also when the test
//! fails). And what the unit's watchdog relies on, from the running daemon.

mod netns;

use std::path::Path;
use std::process::{Command, Output};

const PACKAGE: &str = "ftp-alg";

/// `systemd-analyze security` must rate the unit below this ("OK" is
/// below 4.0; the unit is meant to stay well under it). README quotes the
/// figure this test prints.
const EXPOSURE_BOUND: f64 = 2.0;

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed ({:?}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The package's status word(s) as dpkg keeps them, `None` if unknown.
fn dpkg_status() -> Option<String> {
    let out = run("dpkg-query", &["-W", "-f=${Status}", PACKAGE]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        .filter(|s| !s.contains("not-installed"))
}

/// Purges the package when dropped: the machine is left as it was, also
/// when an assertion fails half-way.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", PACKAGE]);
    }
}

#[test]
fn deb_installs_checks_and_removes() {
    netns::require_root();
    assert_eq!(
        dpkg_status(),
        None,
        "{PACKAGE} is already installed here; this test installs and removes its own \
         build and will not touch an existing installation (dpkg --purge {PACKAGE} first)"
    );
    let repo = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{repo}/scripts/package.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/package.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deb = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        deb.ends_with(".deb") && Path::new(repo).join(&deb).is_file(),
        "{deb:?}"
    );
    let deb = Path::new(repo).join(deb);

    let fields = run_ok(
        "dpkg-deb",
        &["-f", deb.to_str().unwrap(), "Package", "Depends", "Section"],
    );
    assert!(fields.contains("Package: ftp-alg"), "{fields}");
    let depends = fields
        .lines()
        .find(|l| l.starts_with("Depends:"))
        .unwrap_or_default();
    for dep in ["nftables", "iptables"] {
        assert!(
            depends.split([',', ' ']).any(|d| d == dep),
            "Depends lacks {dep}: {depends}"
        );
    }

    let _installed = Installed;
    run_ok("dpkg", &["-i", deb.to_str().unwrap()]);
    assert_eq!(dpkg_status().as_deref(), Some("install ok installed"));

    // Every file where it belongs.
    let listed = run_ok("dpkg", &["-L", PACKAGE]);
    for path in [
        "/usr/sbin/ftp-alg",
        "/lib/systemd/system/ftp-alg.service",
        "/etc/ftp-alg/ftp-alg.toml",
        "/usr/share/man/man8/ftp-alg.8.gz",
        "/usr/share/bash-completion/completions/ftp-alg",
        "/usr/share/zsh/vendor-completions/_ftp-alg",
        "/usr/share/fish/vendor_completions.d/ftp-alg.fish",
        "/usr/share/doc/ftp-alg/examples/rules/iptables-nft.nft",
        "/usr/share/doc/ftp-alg/examples/rules/iptables-nft.rules.v4",
        "/usr/share/doc/ftp-alg/examples/rules/iptables-nft.rules.v6",
        "/usr/share/doc/ftp-alg/examples/rules/nftables.nft",
        "/usr/share/doc/ftp-alg/copyright",
    ] {
        assert!(
            listed.lines().any(|l| l == path),
            "{path} not in dpkg -L:\n{listed}"
        );
        assert!(Path::new(path).is_file(), "{path} not installed");
    }
    for (installed, shipped) in [
        ("/etc/ftp-alg/ftp-alg.toml", "deploy/ftp-alg.toml"),
        (
            "/lib/systemd/system/ftp-alg.service",
            "deploy/ftp-alg.service",
        ),
        (
            "/usr/share/doc/ftp-alg/examples/rules/nftables.nft",
            "deploy/rules/nftables.nft",
        ),
    ] {
        assert_eq!(
            std::fs::read(installed).unwrap(),
            std::fs::read(Path::new(repo).join(shipped)).unwrap(),
            "{installed} differs from {shipped}"
        );
    }
    let conffiles = run_ok("dpkg-query", &["-W", "-f=${Conffiles}", PACKAGE]);
    assert!(
        conffiles.contains("/etc/ftp-alg/ftp-alg.toml"),
        "config not a conffile: {conffiles:?}"
    );
    let unit = std::fs::read_to_string("/lib/systemd/system/ftp-alg.service").unwrap();
    assert!(
        unit.lines()
            .any(|l| l == "ExecStart=/usr/sbin/ftp-alg run --config /etc/ftp-alg/ftp-alg.toml"),
        "{unit}"
    );
    for want in [
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=",
        "RuntimeDirectory=ftp-alg",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(want)),
            "unit lacks {want}"
        );
    }
    // The generated files are what the installed binary generates.
    let bash = std::fs::read_to_string("/usr/share/bash-completion/completions/ftp-alg").unwrap();
    assert!(bash.contains("complete -F _ftp__alg"), "{bash}");
    assert!(
        std::fs::read_to_string("/usr/share/zsh/vendor-completions/_ftp-alg")
            .unwrap()
            .starts_with("#compdef ftp-alg")
    );
    assert!(
        std::fs::read_to_string("/usr/share/fish/vendor_completions.d/ftp-alg.fish")
            .unwrap()
            .contains("complete -c ftp-alg")
    );
    let page = std::fs::read("/usr/share/man/man8/ftp-alg.8.gz").unwrap();
    assert_eq!(&page[..2], &[0x1f, 0x8b], "man page not gzipped");

    // man finds the page; the page renders.
    let where_ = run_ok("man", &["-w", "ftp-alg"]);
    assert_eq!(where_.trim(), "/usr/share/man/man8/ftp-alg.8.gz");
    let shown = run_ok("man", &["-P", "cat", "8", "ftp-alg"]);
    assert!(shown.contains("check-config"), "{shown}");

    // The installed binary accepts the installed configuration.
    let checked = run_ok(
        "/usr/sbin/ftp-alg",
        &["check-config", "/etc/ftp-alg/ftp-alg.toml"],
    );
    assert!(checked.contains(": ok"), "{checked}");

    // systemd accepts the installed unit, and rates it.
    let out = run(
        "systemd-analyze",
        &["verify", "--man=no", "/lib/systemd/system/ftp-alg.service"],
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exposure = exposure_of("/lib/systemd/system/ftp-alg.service");
    eprintln!("systemd-analyze security: exposure {exposure:.1}");
    assert!(
        exposure < EXPOSURE_BOUND,
        "exposure {exposure} not below {EXPOSURE_BOUND}"
    );

    // Removed again: the files go, the conffile stays until purge.
    run_ok("dpkg", &["-r", PACKAGE]);
    assert!(
        !Path::new("/usr/sbin/ftp-alg").exists(),
        "binary left after dpkg -r"
    );
    assert!(!Path::new("/lib/systemd/system/ftp-alg.service").exists());
    assert!(!Path::new("/usr/share/man/man8/ftp-alg.8.gz").exists());
    assert_eq!(dpkg_status().as_deref(), Some("deinstall ok config-files"));
    run_ok("dpkg", &["--purge", PACKAGE]);
    assert_eq!(dpkg_status(), None);
    assert!(!Path::new("/etc/ftp-alg/ftp-alg.toml").exists());
}

/// The overall exposure `systemd-analyze security` gives the unit file.
fn exposure_of(unit: &str) -> f64 {
    let out = run(
        "systemd-analyze",
        &["security", "--offline=true", "--no-pager", unit],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no exposure in systemd-analyze security output:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    // "→ Overall exposure level for ftp-alg.service: 1.1 OK 🙂"
    line.rsplit(": ")
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the exposure in {line:?}"))
}

/// What the unit's `WatchdogSec=` relies on: the running daemon, given
/// `WATCHDOG_USEC` and `NOTIFY_SOCKET` as systemd gives them, reports
/// `READY=1` and then `WATCHDOG=1` at least twice per timeout while its
/// (idle) queue worker waits for packets, and `STOPPING=1` on SIGTERM.
#[test]
fn watchdog_pings_from_the_running_daemon() {
    use std::os::unix::net::UnixDatagram;
    use std::time::{Duration, Instant};
    let ns = netns::Netns::new("fa-t", "wdog");
    let dir = std::env::temp_dir().join(format!("ftp-alg-wdog-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("ftp-alg.toml");
    std::fs::write(
        &config,
        format!("status_socket = \"{}/run/status.sock\"\n", dir.display()),
    )
    .unwrap();
    let notify_path = dir.join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut child = ns
        .command(&[
            env!("CARGO_BIN_EXE_ftp-alg"),
            "run",
            "--config",
            config.to_str().unwrap(),
        ])
        .env("NOTIFY_SOCKET", &notify_path)
        // 2 s: pings every second (half of it, at most 1 s).
        .env("WATCHDOG_USEC", "2000000")
        .env_remove("WATCHDOG_PID")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 64];
    let t0 = Instant::now();
    while received.iter().filter(|m| *m == "WATCHDOG=1").count() < 3
        && t0.elapsed() < Duration::from_secs(10)
    {
        match notify.recv(&mut buf) {
            Ok(n) => received.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => break,
        }
    }
    let pinged_for = t0.elapsed();
    // `status --json` and the text view, from the same answer.
    let socket = dir.join("run/status.sock");
    let socket = socket.to_str().unwrap();
    let json = run_ok(
        env!("CARGO_BIN_EXE_ftp-alg"),
        &["status", "--json", "--socket", socket],
    );
    let text = run_ok(
        env!("CARGO_BIN_EXE_ftp-alg"),
        &["status", "--socket", socket],
    );
    // Our own child, by its PID (not yet reaped, so not reused).
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM to our child");
    let mut stopping = false;
    while let Ok(n) = notify.recv(&mut buf) {
        if &buf[..n] == b"STOPPING=1" {
            stopping = true;
            break;
        }
    }
    let status = child.wait().unwrap();
    // The daemon made the status socket's missing directory, private.
    let run_dir = std::fs::metadata(dir.join("run")).map(|m| {
        use std::os::unix::fs::PermissionsExt;
        m.permissions().mode() & 0o777
    });
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        received.first().map(String::as_str),
        Some("READY=1"),
        "{received:?}"
    );
    assert_eq!(
        received[1..].iter().filter(|m| *m == "WATCHDOG=1").count(),
        3,
        "{received:?}"
    );
    assert!(
        pinged_for < Duration::from_secs(5),
        "3 pings took {pinged_for:?}"
    );
    assert!(stopping, "no STOPPING=1");
    assert!(status.success(), "{status:?}");
    assert_eq!(run_dir.ok(), Some(0o700));
    assert!(
        json.starts_with("{\"schema\":1,") && json.contains("\"session_count\":0"),
        "{json}"
    );
    assert_eq!(text, "0 sessions, 0 pinholes\n");
}
