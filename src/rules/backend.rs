//! Which queue mechanism this kernel offers: nftables' native `queue`
//! (CONFIG_NFT_QUEUE) or only the xtables NFQUEUE target.

use super::tools::run;

/// Name of the throw-away table used to probe for native `queue` support.
const PROBE_TABLE: &str = "ftp_alg_probe";

/// How control packets reach NFQUEUE on this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueBackend {
    /// nftables' own `queue` statement, in two chains of ftp-alg's table.
    Native,
    /// The xtables NFQUEUE target, through iptables-nft and ip6tables-nft
    /// (for kernels built without CONFIG_NFT_QUEUE).
    Xtables,
}

/// Finds out whether nftables' native `queue` statement works here.
///
/// First asks the kernel in check mode (`nft -c -f -`, nothing is changed):
/// success means native; an error that points at the `queue` expression with
/// ENOENT/EOPNOTSUPP means no native support. Any other failure leaves the
/// question open, so the probe is loaded for real into a throw-away table,
/// which is deleted again. Anything that still fails means [`QueueBackend::Xtables`].
pub fn detect_queue_backend() -> QueueBackend {
    let probe = format!(
        "table inet {PROBE_TABLE} {{\n\
         \tchain probe {{\n\
         \t\ttype filter hook prerouting priority raw; policy accept;\n\
         \t\ttcp dport 21 queue num 21 bypass\n\
         \t}}\n\
         }}\n"
    );
    match run("nft", &["-c", "-f", "-"], Some(&probe)) {
        Ok(_) => {
            tracing::debug!("nft check mode accepts a queue rule: native queue");
            return QueueBackend::Native;
        }
        Err(e) if says_queue_unsupported(e.stderr()) => {
            tracing::debug!("nft check mode rejects a queue rule: xtables NFQUEUE ({e})");
            return QueueBackend::Xtables;
        }
        Err(e) => {
            tracing::debug!("nft check mode inconclusive ({e}); trying a throw-away table");
        }
    }
    match run("nft", &["-f", "-"], Some(&probe)) {
        Ok(_) => {
            if let Err(e) = run("nft", &["delete", "table", "inet", PROBE_TABLE], None) {
                tracing::warn!("could not delete the probe table inet {PROBE_TABLE}: {e}");
            }
            QueueBackend::Native
        }
        Err(e) => {
            tracing::debug!("a queue rule does not load: xtables NFQUEUE ({e})");
            QueueBackend::Xtables
        }
    }
}

/// True when nft's error output blames the `queue` statement on missing
/// kernel support (the module is not built: ENOENT, or EOPNOTSUPP).
fn says_queue_unsupported(stderr: &str) -> bool {
    let missing =
        stderr.contains("No such file or directory") || stderr.contains("Operation not supported");
    missing && stderr.contains("queue")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_queue_module_means_xtables() {
        // What nft 1.0.6 prints on a kernel without CONFIG_NFT_QUEUE.
        assert!(says_queue_unsupported(
            "Error: Could not process rule: No such file or directory\n\
             tcp dport 21 queue num 21 bypass\n\
             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^"
        ));
        assert!(says_queue_unsupported(
            "Error: Could not process rule: Operation not supported\nqueue num 21"
        ));
        // Without root, or any other failure: the question stays open.
        assert!(!says_queue_unsupported(
            "Error: Could not process rule: Operation not permitted\nqueue num 21"
        ));
        assert!(!says_queue_unsupported(
            "Error: Could not process rule: No such file or directory\ntable inet x"
        ));
    }
}
