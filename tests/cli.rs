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
