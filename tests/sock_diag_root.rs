//! Root-only test of the socket diagnostics shell (`kernel::sock_diag`)
//! against the real kernel: in a namespace of its own (prefix `fx-sd`),
//! listeners of another user on chosen addresses and ports, dumped by
//! ftp-alg's code from a thread that has given up root and every
//! capability, compared with what `ss` reports; and the cost of one query
//! with 10 and with 1000 listeners. Without root it fails loudly.

mod netns;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ftp_alg::kernel::sock_diag::SockDiag;
use ftp_alg_proto::engine::Listener;
use netns::Netns;

/// Listens as `nobody` on what the test names, then waits for stdin to
/// close. Arguments: ADDR,PORT[,v6] ... where `v6` binds an IPv6 socket
/// (for `::ffff:` addresses).
const LISTENERS: &str = r#"
import socket, sys, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
keep = []
for spec in sys.argv[1:]:
    parts = spec.split(",")
    addr, port = parts[0], int(parts[1])
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(4)
    keep.append(s)
# A connected socket too: not a listener, never listed.
c = socket.create_connection((keep[0].getsockname()[0], keep[0].getsockname()[1]))
keep.append(c)
print("ready", flush=True)
sys.stdin.read()
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A namespace `fx-sd-<tag>-<pid>` with 192.0.2.10, 192.0.2.11 and
/// 2001:db8::10 on a veth (this kernel has no dummy interfaces).
fn lab(tag: &str) -> Netns {
    let ns = Netns::new("fx-sd", tag);
    ns.sh(
        "ip link add d0 type veth peer name d1 && ip link set d0 up && ip link set d1 up && \
         ip addr add 192.0.2.10/24 dev d0 && ip addr add 192.0.2.11/24 dev d0 && \
         ip -6 addr add 2001:db8::10/64 dev d0 nodad",
    );
    ns
}

/// Starts the listeners as user nobody.
fn listen(ns: &Netns, specs: &[String]) -> netns::Spawned {
    let mut argv = vec![
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        // The system's interpreter: one under root's home (pyenv) is not
        // readable by nobody.
        "/usr/bin/python3",
        "-c",
        LISTENERS,
    ];
    argv.extend(specs.iter().map(String::as_str));
    let p = ns.spawn(&argv);
    assert_eq!(p.line(Duration::from_secs(30)), "ready");
    p
}

/// What `ss` lists as listening on exactly `addr`: (port, inode).
fn ss_listeners(ns: &Netns, addr: &str) -> BTreeSet<(u16, u64)> {
    let out = ns.run_ok(&["ss", "-Hltne"]);
    out.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let local = cols.get(3)?;
            let (a, port) = local.rsplit_once(':')?;
            let a = a.trim_start_matches('[').trim_end_matches(']');
            if a != addr && a != format!("::ffff:{addr}") {
                return None;
            }
            let ino = cols.iter().find_map(|c| c.strip_prefix("ino:"))?;
            Some((port.parse().ok()?, ino.parse().ok()?))
        })
        .collect()
}

fn as_set(listed: &[Listener]) -> BTreeSet<(u16, u64)> {
    listed.iter().map(|l| (l.port, l.inode)).collect()
}

/// Runs `f` on a new thread inside `ns` that has then dropped root: all
/// of its uids are nobody's (setresuid(2) as a raw system call changes the
/// calling thread only, and clears its capabilities), checked in
/// /proc/thread-self/status.
fn unprivileged<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    let name = ns.name.clone();
    std::thread::spawn(move || {
        let target = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
        nix::sched::setns(&target, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        // SAFETY: a system call with integer arguments; it affects only
        // this thread, which ends with the closure.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        assert_eq!(rc, 0, "setresuid: {}", std::io::Error::last_os_error());
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        for key in ["CapEff:", "CapPrm:"] {
            let line = status.lines().find(|l| l.starts_with(key)).unwrap();
            assert!(line.ends_with("0000000000000000"), "{line}");
        }
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert!(
            uid.split_whitespace().skip(1).all(|u| u == "65534"),
            "{uid}"
        );
        f()
    })
    .join()
    .expect("unprivileged thread")
}

#[test]
fn listeners_of_another_user_are_dumped_without_any_capability() {
    let ns = lab("nocap");
    let specs: Vec<String> = [
        "192.0.2.10,50001",
        "192.0.2.10,50002",
        "192.0.2.11,50003",        // another address of the host
        "0.0.0.0,50004",           // wildcard: never a candidate
        "::ffff:192.0.2.10,50005", // an IPv6 socket for IPv4 clients
        "2001:db8::10,50006",
        "::,50007",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let _p = listen(&ns, &specs);
    let (v4, v6) = unprivileged(&ns, || {
        let mut diag = SockDiag::open().expect("sock_diag socket as nobody");
        (
            diag.listeners(ip("192.0.2.10")).expect("dump v4"),
            diag.listeners(ip("2001:db8::10")).expect("dump v6"),
        )
    });
    let ports = |l: &[Listener]| l.iter().map(|l| l.port).collect::<Vec<_>>();
    assert_eq!(ports(&v4), [50001, 50002, 50005], "{v4:?}");
    assert_eq!(ports(&v6), [50006], "{v6:?}");
    // The inodes are the sockets' own (what tells a new socket on an old
    // port from the old one).
    assert_eq!(as_set(&v4), ss_listeners(&ns, "192.0.2.10"));
    assert_eq!(as_set(&v6), ss_listeners(&ns, "2001:db8::10"));
    assert!(v4.iter().all(|l| l.inode != 0));
}

#[test]
fn a_new_listener_shows_with_a_new_inode() {
    let ns = lab("inode");
    let first = listen(&ns, &["192.0.2.10,50001".to_string()]);
    let mut diag = {
        let _in = ns.enter();
        SockDiag::open().unwrap()
    };
    let before = diag.listeners(ip("192.0.2.10")).unwrap();
    drop(first);
    // The same port again, from a new socket.
    let _second = listen(&ns, &["192.0.2.10,50001".to_string()]);
    let after = diag.listeners(ip("192.0.2.10")).unwrap();
    assert_eq!(before.len(), 1);
    assert_eq!(after.len(), 1);
    assert_eq!(before[0].port, after[0].port);
    assert_ne!(before[0].inode, after[0].inode);
}

/// Median and 99th percentile of `rounds` queries of `addr`, in µs.
fn cost(diag: &mut SockDiag, addr: IpAddr, want: usize, rounds: usize) -> (u128, u128) {
    let mut t: Vec<u128> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            let listed = diag.listeners(addr).unwrap();
            let took = start.elapsed().as_micros();
            assert_eq!(listed.len(), want);
            took
        })
        .collect();
    t.sort_unstable();
    (t[t.len() / 2], t[t.len() * 99 / 100])
}

#[test]
fn cost_of_one_query_with_10_and_1000_listeners() {
    let ns = lab("cost");
    let ten: Vec<String> = (0..10)
        .map(|i| format!("192.0.2.10,{}", 40000 + i))
        .collect();
    let thousand_other: Vec<String> = (0..1000)
        .map(|i| format!("192.0.2.11,{}", 41000 + i))
        .collect();
    let thousand_same: Vec<String> = (0..990)
        .map(|i| format!("192.0.2.10,{}", 42000 + i))
        .collect();
    let mut diag = {
        let _in = ns.enter();
        SockDiag::open().unwrap()
    };
    let addr = ip("192.0.2.10");
    let p10 = listen(&ns, &ten);
    let (m10, p99_10) = cost(&mut diag, addr, 10, 300);
    // 1000 listeners on another address of the host: the kernel's filter
    // leaves them out.
    let p_other = listen(&ns, &thousand_other);
    let (m_other, p99_other) = cost(&mut diag, addr, 10, 300);
    drop(p_other);
    // 1000 listeners on the server's address: all listed.
    let _p_same = listen(&ns, &thousand_same);
    let (m1000, p99_1000) = cost(&mut diag, addr, 1000, 100);
    drop(p10);
    eprintln!(
        "sock_diag query (IPv4: two dumps, AF_INET and AF_INET6): \
         10 listeners {m10} us median / {p99_10} us p99; \
         10 listed of 1010 {m_other} us / {p99_other} us; \
         1000 listeners {m1000} us / {p99_1000} us"
    );
    // Loose bounds on a shared 2-core machine: the query waits on the
    // packet path, so it must stay far below a TCP retransmission.
    assert!(m10 < 5_000, "{m10} us");
    assert!(m1000 < 50_000, "{m1000} us");
}
