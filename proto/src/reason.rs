//! Why a line or an announcement opened nothing.
//!
//! Every "nothing opened" decision of the core carries one [`Reason`]: the
//! planner's refusals, the session state machine's ignored lines and the
//! engine's own limits. Counters are indexed by it ([`ReasonCounts`]); the
//! shells choose the words (metric labels, status text), the core only logs
//! the [`Display`](std::fmt::Display) sentence.

use std::fmt;

/// Why nothing was opened. Peer input that the protocol state does not
/// expect is never an error of the daemon: it is one of these, logged and
/// counted, and the packet is forwarded (rewritten only where it is safe).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The announced address is not the announcing peer's own (RFC 2577 §3:
    /// the FTP bounce attack), and third-party transfers are not allowed.
    ThirdPartyAddress,
    /// The announced port is below 1024 (a bounce towards a privileged
    /// service), and privileged data ports are not allowed.
    PrivilegedPort,
    /// Port 0 cannot be connected to.
    PortZero,
    /// The announced address family differs from the control connection's.
    FamilyMismatch,
    /// No free public port for a translated active-mode connection.
    NoPublicPort,
    /// The client spoke before the server's greeting (RFC 959 §5.4: the
    /// server speaks first), so the connection is not FTP.
    ClientSpokeFirst,
    /// The server's first line is not an FTP reply.
    BadGreeting,
    /// Picked up mid-stream and not yet synchronised with the replies.
    NotSynchronised,
    /// `PORT`/`EPRT` that does not parse (values out of range included).
    MalformedAnnouncement,
    /// `227`/`229` that does not parse.
    MalformedReply,
    /// `227`/`229` that answers no outstanding `PASV`/`EPSV`.
    UnsolicitedReply,
    /// A NUL byte in a control line (RFC 959 §4.1.3 forbids it in
    /// Telnet NVT text); the session is no longer parsed.
    NulByte,
    /// A control line longer than the configured limit: it is not parsed.
    OverlongLine,
    /// An announcement came before the control connection's NAT mapping
    /// was known.
    NatUnknown,
    /// The rewrite would overlap an earlier rewrite of the same stream.
    RewriteOverlap,
    /// The start of the line was held back for longer than the hold limit
    /// while the sender kept retransmitting it (its receiver never
    /// acknowledged the bytes the engine took over): it was let through
    /// untouched, so the announcement can no longer be rewritten.
    HeldLineReleased,
    /// A `PORT`/`EPRT`/`227`/`229` line longer than an announcement can
    /// be (see `engine::MAX_ANNOUNCEMENT`): not parsed as one.
    OverlongAnnouncement,
    /// An FTPS session's range would overlap a live range of the same
    /// client and server with other ports or another DNAT target (two
    /// `[[ftps]]` servers behind one public address with overlapping
    /// passive ranges): nftables cannot hold both, and a data connection
    /// could not tell which server it is for.
    RangeConflict,
}

impl Reason {
    /// Every reason, in declaration order (the index of [`ReasonCounts`]).
    pub const ALL: [Reason; 18] = [
        Reason::ThirdPartyAddress,
        Reason::PrivilegedPort,
        Reason::PortZero,
        Reason::FamilyMismatch,
        Reason::NoPublicPort,
        Reason::ClientSpokeFirst,
        Reason::BadGreeting,
        Reason::NotSynchronised,
        Reason::MalformedAnnouncement,
        Reason::MalformedReply,
        Reason::UnsolicitedReply,
        Reason::NulByte,
        Reason::OverlongLine,
        Reason::NatUnknown,
        Reason::RewriteOverlap,
        Reason::HeldLineReleased,
        Reason::OverlongAnnouncement,
        Reason::RangeConflict,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::ThirdPartyAddress => "address is not the announcing peer's own",
            Reason::PrivilegedPort => "data port below 1024",
            Reason::PortZero => "data port 0",
            Reason::FamilyMismatch => "address family differs from the control connection's",
            Reason::NoPublicPort => "no free public port for the translated connection",
            Reason::ClientSpokeFirst => "client spoke before the server greeting: not FTP",
            Reason::BadGreeting => "server greeting is not an FTP reply",
            Reason::NotSynchronised => "session not yet synchronised",
            Reason::MalformedAnnouncement => "malformed PORT/EPRT",
            Reason::MalformedReply => "malformed 227/229 reply",
            Reason::UnsolicitedReply => "227/229 reply without a matching PASV/EPSV",
            Reason::NulByte => "NUL byte in a control line; session no longer parsed",
            Reason::OverlongLine => "control line over the length limit",
            Reason::NatUnknown => "announcement before the NAT mapping is known",
            Reason::RewriteOverlap => "rewrite overlaps an earlier one",
            Reason::HeldLineReleased => {
                "line start held back too long and let through untouched: not rewritten"
            }
            Reason::OverlongAnnouncement => "announcement longer than 256 bytes",
            Reason::RangeConflict => {
                "FTPS range overlaps a live range of the same client and server with another target"
            }
        })
    }
}

/// One counter per [`Reason`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReasonCounts([u64; Reason::ALL.len()]);

impl ReasonCounts {
    /// Counts one more `reason`.
    pub fn add(&mut self, reason: Reason) {
        self.0[reason.index()] += 1;
    }

    /// How often `reason` was counted.
    pub fn get(&self, reason: Reason) -> u64 {
        self.0[reason.index()]
    }

    /// Every reason with its count, in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = (Reason, u64)> + '_ {
        Reason::ALL.iter().map(|&r| (r, self.get(r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_at_its_index() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
    }

    #[test]
    fn counts_are_kept_per_reason() {
        let mut c = ReasonCounts::default();
        c.add(Reason::NulByte);
        c.add(Reason::NulByte);
        c.add(Reason::PortZero);
        assert_eq!(c.get(Reason::NulByte), 2);
        assert_eq!(c.get(Reason::PortZero), 1);
        assert_eq!(c.get(Reason::OverlongLine), 0);
        assert_eq!(c.iter().map(|(_, n)| n).sum::<u64>(), 3);
    }
}
