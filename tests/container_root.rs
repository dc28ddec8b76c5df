//! The container image (root tier): `scripts/container.sh` builds it from
//! a static binary with podman, and the lab's transfer matrix runs once
//! with the daemon inside it (`deploy/ftp-alg-podman` as the lab's binary,
//! host network of the lab's gateway namespace, mode `alg-files`: the image
//! has no nft or iptables, the lab loads deploy/rules/ as an admin would).

mod netns;

use std::process::Command;

/// Options `podman run` needs on the project's machines: their cgroup
/// hierarchy is hybrid, which crun refuses (runc takes it), and the
/// sandbox cannot raise rlimits to podman's defaults (1048576 files).
/// Harmless on an ordinary Debian host.
const PODMAN_ARGS: &str = "--runtime runc --ulimit nofile=4096:4096 --ulimit nproc=4096:4096";

#[test]
fn container_image_runs_the_lab_matrix() {
    netns::require_lab(
        "tests/package_root.rs",
        &[
            "podman",
            "runc",
            "ip",
            "iptables-nft",
            "nft",
            "vsftpd",
            "lftp",
            "curl",
            "conntrack",
        ],
    );
    let repo = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{repo}/scripts/container.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "scripts/container.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let image = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(
        image,
        concat!("localhost/ftp-alg:", env!("CARGO_PKG_VERSION"))
    );
    // An empty base: the binary is the only thing that runs in there.
    let history = run_ok(
        "podman",
        &[
            "image",
            "inspect",
            "--format",
            "{{.Os}} {{len .RootFS.Layers}}",
            &image,
        ],
    );
    assert_eq!(
        history.trim(),
        "linux 2",
        "scratch + binary + config: {history}"
    );
    let wrapper = format!("{repo}/deploy/ftp-alg-podman");
    let version = Command::new(&wrapper)
        .arg("--version")
        .env("FTP_ALG_IMAGE", &image)
        .env("FTP_ALG_PODMAN_ARGS", PODMAN_ARGS)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        concat!("ftp-alg ", env!("CARGO_PKG_VERSION")),
        "{}",
        String::from_utf8_lossy(&version.stderr)
    );
    let rc = netns::run_lab_script(
        "lab.sh",
        &["matrix", "--mode", "alg-files"],
        &[
            ("FTP_ALG_BIN", &wrapper),
            ("FTP_ALG_IMAGE", &image),
            ("FTP_ALG_PODMAN_ARGS", PODMAN_ARGS),
            // Starting a container takes longer than starting a process.
            ("ALG_READY_TIMEOUT", "60"),
        ],
        900,
    );
    assert_eq!(
        rc,
        Some(0),
        "mode alg-files with ftp-alg in its container: some transfer failed, INVALID drops \
         were counted, the daemon did not exit 0 on SIGTERM, the ruleset was not restored, \
         or metrics and status did not match; see the table above and target/lab-logs/"
    );
}

fn run_ok(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
