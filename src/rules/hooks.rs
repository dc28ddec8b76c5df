//! Where each path's control packets are queued: the hooks, as data that
//! both rule syntaxes (xtables in `xtables`, native nft in `nft_text`) and
//! the printed explanation are written from. Pure.
//!
//! The rule behind every placement: after a rewrite that changes a length,
//! conntrack must see each direction's sequence numbers and the other
//! side's acknowledgements in one sequence space (DESIGN.md, measured), so
//! client->server packets are queued BEFORE conntrack (priority raw, -300)
//! and server->client packets AFTER it (priority mangle, -150), whichever
//! direction was rewritten. Conntrack then sees the server's view of both.
//!
//! | path | direction | crosses | queued at |
//! |---|---|---|---|
//! | forward | client->server | PREROUTING | raw PREROUTING, `dport` |
//! | forward | server->client | FORWARD (after de-NAT) | mangle FORWARD, `sport` |
//! | local server | client->server | PREROUTING, INPUT | raw PREROUTING (the same rule) |
//! | local server | server->client | OUTPUT (generated here) | mangle OUTPUT, `sport` |
//! | local client | client->server | OUTPUT (generated here) | raw OUTPUT, `dport` |
//! | local client | server->client | PREROUTING, INPUT | mangle INPUT, `sport` |
//!
//! Loopback is left out everywhere (`-i lo`/`-o lo` excluded): the local
//! rules must leave it out (this host talking to itself needs no pinhole),
//! and raw PREROUTING then must too, or a session over `lo` would be
//! followed in one direction only, and a rewrite of one direction only
//! corrupts the stream; forwarded traffic never arrives on `lo`. With `local` alone, raw PREROUTING queues only
//! packets to this host's own addresses: a forwarded session's
//! server->client direction would never be queued. (A port forward's DNAT
//! runs after raw, so its sessions still look local there: such a host
//! needs `forward` too.)
//!
//! With `[durable]`, the hold rules go into each mangle hook: FORWARD for
//! forwarded sessions, INPUT and OUTPUT for local ones (the chains the
//! local directions cross after raw, each carrying one direction of a
//! local server and the other of a local client).

use crate::config::Paths;

/// Which end of the control connection a hook's packets go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Toward {
    /// Client->server: matched by destination port (`dport`), before
    /// conntrack.
    Server,
    /// Server->client: matched by source port (`sport`), after conntrack.
    Client,
}

impl Toward {
    /// `d` or `s`, as in `--dport`/`tcp sport`.
    pub(super) fn port_letter(self) -> char {
        match self {
            Toward::Server => 'd',
            Toward::Client => 's',
        }
    }
}

/// Which loopback interface match a hook excludes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lo {
    /// Incoming interface (PREROUTING, INPUT).
    In,
    /// Outgoing interface (OUTPUT).
    Out,
}

/// One hook a path queues control packets at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct QueueHook {
    /// iptables-nft table: `raw` or `mangle`.
    pub(super) table: &'static str,
    /// iptables-nft builtin chain.
    pub(super) chain: &'static str,
    /// The native chain's name in ftp-alg's table.
    pub(super) nft_chain: &'static str,
    /// The native chain's hook.
    pub(super) nft_hook: &'static str,
    /// The native chain's priority keyword (raw or mangle, as iptables-nft).
    pub(super) nft_priority: &'static str,
    /// Which direction of the control connection is queued here.
    pub(super) toward: Toward,
    /// Loopback excluded (`None`: the hook never sees it, FORWARD).
    pub(super) lo: Option<Lo>,
    /// Only packets to this host's own addresses (raw PREROUTING with
    /// `local` alone).
    pub(super) local_dst: bool,
    /// The `[durable]` hold rules go before the queue rule here.
    pub(super) hold: bool,
    /// One line for `ftp-alg rules`: what crosses this hook.
    pub(super) what: &'static str,
}

/// raw PREROUTING: client->server of forwarded sessions and of a local
/// server.
const PREROUTING: QueueHook = QueueHook {
    table: "raw",
    chain: "PREROUTING",
    nft_chain: "queue_to_server",
    nft_hook: "prerouting",
    nft_priority: "raw",
    toward: Toward::Server,
    lo: Some(Lo::In),
    local_dst: false,
    hold: false,
    what: "client->server arriving (forwarded, or to a server on this host), before conntrack",
};

/// mangle FORWARD: server->client of forwarded sessions.
const FORWARD: QueueHook = QueueHook {
    table: "mangle",
    chain: "FORWARD",
    nft_chain: "queue_to_client",
    nft_hook: "forward",
    nft_priority: "mangle",
    toward: Toward::Client,
    lo: None,
    local_dst: false,
    hold: true,
    what: "server->client forwarded, after conntrack and de-NAT",
};

/// raw OUTPUT: client->server of a local client.
const OUTPUT_TO_SERVER: QueueHook = QueueHook {
    table: "raw",
    chain: "OUTPUT",
    nft_chain: "queue_out_to_server",
    nft_hook: "output",
    nft_priority: "raw",
    toward: Toward::Server,
    lo: Some(Lo::Out),
    local_dst: false,
    hold: false,
    what: "client->server from a client on this host, before conntrack",
};

/// mangle INPUT: server->client to a local client.
const INPUT_TO_CLIENT: QueueHook = QueueHook {
    table: "mangle",
    chain: "INPUT",
    nft_chain: "queue_in_to_client",
    nft_hook: "input",
    nft_priority: "mangle",
    toward: Toward::Client,
    lo: Some(Lo::In),
    local_dst: false,
    hold: true,
    what: "server->client to a client on this host, after conntrack",
};

/// mangle OUTPUT: server->client from a local server.
const OUTPUT_TO_CLIENT: QueueHook = QueueHook {
    table: "mangle",
    chain: "OUTPUT",
    nft_chain: "queue_out_to_client",
    nft_hook: "output",
    nft_priority: "mangle",
    toward: Toward::Client,
    lo: Some(Lo::Out),
    local_dst: false,
    hold: true,
    what: "server->client from a server on this host, after conntrack",
};

/// The hooks `paths` queues at, in install order (raw PREROUTING first,
/// shared by both paths).
pub(super) fn queue_hooks(paths: Paths) -> Vec<QueueHook> {
    let mut v = vec![QueueHook {
        local_dst: !paths.forward,
        ..PREROUTING
    }];
    if paths.forward {
        v.push(FORWARD);
    }
    if paths.local {
        v.extend([OUTPUT_TO_SERVER, INPUT_TO_CLIENT, OUTPUT_TO_CLIENT]);
    }
    v
}

/// The admin's filter chains (iptables-nft names) that get the accept rule:
/// FORWARD for forwarded data connections, INPUT for those to this host,
/// OUTPUT for those this host opens (local server active mode, local client
/// passive mode: only matters when OUTPUT drops).
pub(super) fn accept_chains(paths: Paths) -> Vec<&'static str> {
    let mut v = Vec::new();
    if paths.forward {
        v.push("FORWARD");
    }
    if paths.local {
        v.extend(["INPUT", "OUTPUT"]);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(forward: bool, local: bool) -> Paths {
        Paths { forward, local }
    }

    fn at(h: &[QueueHook]) -> Vec<String> {
        h.iter()
            .map(|h| format!("{} {} {:?}", h.table, h.chain, h.toward))
            .collect()
    }

    #[test]
    fn each_direction_is_queued_before_or_after_conntrack() {
        assert_eq!(
            at(&queue_hooks(paths(true, false))),
            ["raw PREROUTING Server", "mangle FORWARD Client"]
        );
        assert_eq!(
            at(&queue_hooks(paths(false, true))),
            [
                "raw PREROUTING Server",
                "raw OUTPUT Server",
                "mangle INPUT Client",
                "mangle OUTPUT Client"
            ]
        );
        for p in [paths(true, false), paths(false, true), paths(true, true)] {
            for h in queue_hooks(p) {
                // Before conntrack (raw) toward the server, after it
                // (mangle) toward the client, the holds after it too.
                let raw = h.toward == Toward::Server;
                assert_eq!(h.table == "raw", raw, "{h:?}");
                assert_eq!(h.nft_priority == "raw", raw, "{h:?}");
                assert_eq!(h.hold, !raw, "{h:?}");
                assert_eq!(h.lo.is_none(), h.chain == "FORWARD", "{h:?}");
            }
        }
    }

    #[test]
    fn prerouting_is_restricted_to_local_addresses_only_without_forward() {
        let pre = |p| queue_hooks(p)[0];
        assert!(pre(paths(false, true)).local_dst);
        assert!(!pre(paths(true, true)).local_dst);
        assert!(!pre(paths(true, false)).local_dst);
        assert_eq!(queue_hooks(paths(true, true)).len(), 5);
    }

    #[test]
    fn accept_chains_follow_the_paths() {
        assert_eq!(accept_chains(paths(true, false)), ["FORWARD"]);
        assert_eq!(accept_chains(paths(false, true)), ["INPUT", "OUTPUT"]);
        assert_eq!(
            accept_chains(paths(true, true)),
            ["FORWARD", "INPUT", "OUTPUT"]
        );
    }
}
