//! The command line: configuration errors exit 2 before anything is
//! installed; `rules` prints both variants.

use std::process::Command;

fn ftp_alg(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ftp-alg"))
        .args(args)
        .output()
        .unwrap()
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("ftp-alg-cli-{}-{name}", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn shipped_example_config_checks_ok() {
    let out = ftp_alg(&[
        "check-config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/ftp-alg.toml"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_configs_exit_2_naming_the_key() {
    for (name, text, key) in [
        ("unknown", "[policy]\nallow_bounce = true\n", "allow_bounce"),
        (
            "type",
            "pinhole_timeout_secs = \"long\"\n",
            "pinhole_timeout_secs",
        ),
        (
            "value",
            "max_pinholes_per_session = 0\n",
            "max_pinholes_per_session",
        ),
    ] {
        let path = temp_file(name, text);
        for args in [
            vec!["check-config", path.to_str().unwrap()],
            vec!["run", "--config", path.to_str().unwrap()],
        ] {
            let out = ftp_alg(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(err.contains(key), "{args:?}: {err}");
            // `run` stopped before doing anything: no "ready", no rules.
            assert!(!String::from_utf8_lossy(&out.stdout).contains("ready"));
        }
        std::fs::remove_file(path).unwrap();
    }
    let out = ftp_alg(&["check-config", "/nonexistent/ftp-alg.toml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn rules_prints_both_variants_with_overrides() {
    let out = ftp_alg(&[
        "rules",
        "--queue",
        "7",
        "--control-port",
        "21",
        "--control-port",
        "2121",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("--queue-num 7"), "{text}");
    assert!(text.contains("queue num 7"), "{text}");
    assert!(
        text.contains("21,2121") || text.contains("{ 21, 2121 }"),
        "{text}"
    );
    assert!(text.contains("table inet ftp_alg"));
}

#[test]
fn man_page_and_completions_are_generated() {
    let man = ftp_alg(&["man"]);
    assert!(man.status.success());
    let page = String::from_utf8(man.stdout).unwrap();
    assert!(page.contains(".TH ftp-alg 8"), "{page}");
    assert!(
        page.contains("check\\-config"),
        "subcommands listed: {page}"
    );
    let bash = ftp_alg(&["completions", "bash"]);
    assert!(bash.status.success());
    assert!(String::from_utf8(bash.stdout)
        .unwrap()
        .contains("complete -F _ftp__alg"));
}

#[test]
fn systemd_unit_verifies() {
    // The unit as shipped, pointed at the binary under test.
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/ftp-alg.service"
    ))
    .unwrap();
    assert!(
        unit.contains("CapabilityBoundingSet=CAP_NET_ADMIN\n"),
        "only CAP_NET_ADMIN"
    );
    let dir = std::env::temp_dir().join(format!("ftp-alg-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ftp-alg.service");
    std::fs::write(
        &path,
        unit.replace("/usr/sbin/ftp-alg", env!("CARGO_BIN_EXE_ftp-alg")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no", path.to_str().unwrap()])
        .output()
        .expect("systemd-analyze is needed (Debian package systemd; scripts/test.sh installs it)");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The rule files shipped in deploy/rules/ are what `ftp-alg rules --file`
/// prints for the default configuration (the e2e lab loads these files, so
/// they must not drift from the code).
#[test]
fn deploy_rule_files_match_the_generator() {
    for name in [
        "iptables-nft.nft",
        "iptables-nft.rules.v4",
        "iptables-nft.rules.v6",
        "nftables.nft",
    ] {
        let out = ftp_alg(&["rules", "--file", name]);
        assert!(out.status.success(), "{name}");
        let shipped = std::fs::read_to_string(format!(
            "{}/deploy/rules/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            shipped,
            "deploy/rules/{name} differs from `ftp-alg rules --file {name}`; regenerate it"
        );
    }
    let bad = ftp_alg(&["rules", "--file", "pf.conf"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("iptables-nft.nft"));
}

#[test]
fn paths_on_the_command_line_override_the_file() {
    let local = ftp_alg(&["rules", "--paths", "local"]);
    assert!(local.status.success());
    let text = String::from_utf8(local.stdout).unwrap();
    assert!(text.contains("(paths local,"), "{text}");
    assert!(text.contains("-t mangle -I OUTPUT ! -o lo"), "{text}");
    assert!(!text.contains("-I FORWARD"), "{text}");
    let both = temp_file("both", "paths = [\"forward\", \"local\"]\n");
    let checked = ftp_alg(&["check-config", both.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&checked.stdout);
    assert!(out.contains(": ok (paths forward,local)"), "{out}");
    let forward = ftp_alg(&[
        "rules",
        "--config",
        both.to_str().unwrap(),
        "--paths",
        "forward",
    ]);
    let text = String::from_utf8(forward.stdout).unwrap();
    assert!(text.contains("(paths forward,"), "{text}");
    assert!(!text.contains("OUTPUT"), "{text}");
    std::fs::remove_file(both).unwrap();
    // A bad value, and a path that needs a key the file lacks, exit 2
    // before anything is installed.
    for args in [vec!["rules", "--paths", "host"], vec!["run", "--paths", ""]] {
        let out = ftp_alg(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("path"),
            "{args:?}"
        );
    }
    let native = temp_file("native", "accept_rule = \"nft inet filter forward\"\n");
    let out = ftp_alg(&[
        "run",
        "--config",
        native.to_str().unwrap(),
        "--paths",
        "forward,local",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("accept_rule_input"), "{err}");
    std::fs::remove_file(native).unwrap();
}
