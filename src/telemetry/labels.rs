//! The words for the core's enums, as metrics labels and status text show
//! them. Kept here so that the core stays free of presentation; a renamed
//! label is a change to dashboards, made in one place.

use ftp_alg_proto::ftp::session::Form;
use ftp_alg_proto::reason::Reason;
use ftp_alg_proto::stats::SessionState;

/// The `form` label of an announcement.
pub fn form(form: Form) -> &'static str {
    match form {
        Form::Port => "port",
        Form::Eprt => "eprt",
        Form::Pasv227 => "pasv227",
        Form::Epsv229 => "epsv229",
    }
}

/// The `reason` label of a refusal.
pub fn reason(reason: Reason) -> &'static str {
    match reason {
        Reason::ThirdPartyAddress => "third_party_address",
        Reason::PrivilegedPort => "privileged_port",
        Reason::PortZero => "port_zero",
        Reason::FamilyMismatch => "family_mismatch",
        Reason::NoPublicPort => "no_public_port",
        Reason::ClientSpokeFirst => "client_spoke_first",
        Reason::BadGreeting => "bad_greeting",
        Reason::NotSynchronised => "not_synchronised",
        Reason::MalformedAnnouncement => "malformed_announcement",
        Reason::MalformedReply => "malformed_reply",
        Reason::UnsolicitedReply => "unsolicited_reply",
        Reason::NulByte => "nul_byte",
        Reason::OverlongLine => "overlong_line",
        Reason::NatUnknown => "nat_unknown",
        Reason::RewriteOverlap => "rewrite_overlap",
        Reason::HeldLineReleased => "held_line_released",
        Reason::OverlongAnnouncement => "overlong_announcement",
        Reason::RangeConflict => "range_conflict",
        // A reason added to the core shows until it gets a label here.
        _ => "other",
    }
}

/// A session's state in `ftp-alg status`.
pub fn state(state: SessionState) -> &'static str {
    match state {
        SessionState::Greeting => "greeting",
        SessionState::Resync => "resync",
        SessionState::Ready => "ready",
        SessionState::Tls => "tls",
        SessionState::NotFtp => "not-ftp",
        SessionState::Closed => "closed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_own_label() {
        let mut seen: Vec<&str> = Reason::ALL.iter().map(|&r| reason(r)).collect();
        assert!(!seen.contains(&"other"));
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), Reason::ALL.len());
    }
}
