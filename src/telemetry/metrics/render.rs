//! The families ftp-alg exports: a [`Published`] snapshot rendered as
//! Prometheus text, every series present from the start.

use std::fmt::Write as _;

use ftp_alg_proto::ftp::session::Form;

use super::exposition::{counter, escape, gauge, header, histogram, labelled, labelled2};
use crate::telemetry::{labels, Published};

/// Renders `p` in the Prometheus text exposition format 0.0.4.
pub fn render(p: &Published) -> String {
    let e = &p.engine;
    let s = &p.shell;
    let mut out = String::with_capacity(4096);

    build_info(&mut out);
    counter(
        &mut out,
        "sessions_opened_total",
        "FTP control sessions started.",
        e.sessions_opened,
    );
    counter(
        &mut out,
        "sessions_closed_total",
        "FTP control sessions forgotten (closed, idle or unanswered).",
        e.sessions_closed,
    );

    // Every form and reason is exported from the start (0 until seen), so
    // that the series exist before the first event.
    let forms: Vec<(&str, u64)> = Form::ALL
        .iter()
        .map(|&f| (labels::form(f), e.announcements.get(f)))
        .collect();
    labelled(
        &mut out,
        "announcements_total",
        "Data connection announcements accepted, by form.",
        "form",
        &forms,
    );

    counter(
        &mut out,
        "rewrites_total",
        "Announcements whose text was rewritten.",
        e.rewrites,
    );
    // One family for every kind of pinhole: `form` "exact" (one announced
    // connection, used once) or "range" (an FTPS session's passive range,
    // one kernel element however many sessions share it; it never expires
    // while tracked, its expired series stays 0).
    labelled2(
        &mut out,
        "pinholes_total",
        "Pinholes by form (exact, range) and outcome: opened, closed by ftp-alg, or expired.",
        ("form", "outcome"),
        &[
            ("exact", "opened", e.pinholes_opened),
            ("exact", "closed", e.pinholes_closed),
            ("exact", "expired", e.pinholes_expired),
            ("range", "opened", e.ranges_opened),
            ("range", "closed", e.ranges_closed),
            ("range", "expired", 0),
        ],
    );
    counter(
        &mut out,
        "pinhole_errors_total",
        "Pinhole installs or removals that failed.",
        s.pinhole_errors,
    );
    labelled(
        &mut out,
        "rule_repairs_total",
        "Pieces of ftp-alg's rules put back after a firewall reload removed them.",
        "what",
        &s.rule_repairs.by_kind(),
    );
    let refusals: Vec<(&str, u64)> = e
        .refusals
        .iter()
        .map(|(r, n)| (labels::reason(r), n))
        .collect();
    labelled(
        &mut out,
        "refusals_total",
        "Announcements that opened nothing, by reason.",
        "reason",
        &refusals,
    );
    counter(
        &mut out,
        "tls_sessions_total",
        "Control sessions that switched to TLS (or started in it, on an implicit FTPS port).",
        e.tls_sessions,
    );
    counter(
        &mut out,
        "ftps_sessions_total",
        "Encrypted sessions whose server matched an [[ftps]] entry and that got its range.",
        e.ftps_sessions,
    );
    counter(
        &mut out,
        "segments_held_total",
        "Control segments dropped on purpose (out of order or held back).",
        e.segments_held,
    );
    counter(
        &mut out,
        "packets_total",
        "Packets received from the queue.",
        s.packets,
    );
    counter(
        &mut out,
        "packets_modified_total",
        "Packets forwarded with a new payload or header.",
        s.packets_modified,
    );
    counter(
        &mut out,
        "verdict_errors_total",
        "Verdicts the kernel did not accept.",
        s.verdict_errors,
    );
    counter(
        &mut out,
        "queue_overruns_total",
        "Times the kernel's queue was full and dropped control packets.",
        s.queue_overruns,
    );

    gauge(
        &mut out,
        "sessions",
        "Live FTP control sessions.",
        p.sessions as u64,
    );
    gauge(&mut out, "pinholes", "Live pinholes.", p.pinholes as u64);
    gauge(
        &mut out,
        "ftps_ranges",
        "Live FTPS range elements.",
        p.ranges as u64,
    );

    histogram(
        &mut out,
        "packet_processing_seconds",
        "Time to process one queued packet.",
        &s.processing,
    );
    out
}

/// The labels of `ftp_alg_build_info`: what was built, for which machine.
pub const BUILD_INFO: &[(&str, &str)] = &[
    ("version", env!("CARGO_PKG_VERSION")),
    ("arch", std::env::consts::ARCH),
    ("os", std::env::consts::OS),
    (
        "profile",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    ),
];

/// `ftp_alg_build_info{version="...",...} 1`: the usual info-gauge idiom, so
/// that dashboards can join the running version onto any other series.
fn build_info(out: &mut String) {
    header(
        out,
        "build_info",
        "Always 1; the labels say which build is running.",
        "gauge",
    );
    let labels: Vec<String> = BUILD_INFO
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    let _ = writeln!(out, "ftp_alg_build_info{{{}}} 1", labels.join(","));
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ftp_alg_proto::reason::Reason;
    use std::time::Duration;

    /// Counters of every kind, a histogram across the buckets.
    pub(crate) fn sample() -> Published {
        let mut p = Published::default();
        p.engine.sessions_opened = 7;
        p.engine.sessions_closed = 5;
        for _ in 0..3 {
            p.engine.announcements.add(Form::Pasv227);
        }
        p.engine.announcements.add(Form::Epsv229);
        p.engine.rewrites = 2;
        p.engine.pinholes_opened = 4;
        p.engine.pinholes_closed = 1;
        p.engine.pinholes_expired = 2;
        p.engine.ranges_opened = 5;
        p.engine.ranges_closed = 4;
        p.engine.ftps_sessions = 6;
        for _ in 0..6 {
            p.engine.refusals.add(Reason::ThirdPartyAddress);
        }
        p.engine.tls_sessions = 1;
        p.engine.segments_held = 9;
        p.shell.packets = 1000;
        p.shell.packets_modified = 12;
        p.shell.verdict_errors = 0;
        p.shell.pinhole_errors = 3;
        p.shell.rule_repairs.count("table");
        p.shell.rule_repairs.count("accept_rule");
        p.shell.rule_repairs.count("accept_rule");
        // 3 at <=5us, 1 at <=100us, 2 above 25ms.
        p.shell.processing.observe(Duration::from_micros(2));
        p.shell.processing.observe(Duration::from_micros(5));
        p.shell.processing.observe(Duration::from_nanos(4_500));
        p.shell.processing.observe(Duration::from_micros(80));
        p.shell.processing.observe(Duration::from_millis(30));
        p.shell.processing.observe(Duration::from_secs(1));
        p.sessions = 2;
        p.pinholes = 3;
        p.ranges = 1;
        p
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn counters_and_labels() {
        let text = render(&sample());
        let l = lines(&text);
        for want in [
            "# HELP ftp_alg_sessions_opened_total FTP control sessions started.",
            "# TYPE ftp_alg_sessions_opened_total counter",
            "ftp_alg_sessions_opened_total 7",
            "ftp_alg_sessions_closed_total 5",
            "# TYPE ftp_alg_announcements_total counter",
            "ftp_alg_announcements_total{form=\"port\"} 0",
            "ftp_alg_announcements_total{form=\"eprt\"} 0",
            "ftp_alg_announcements_total{form=\"pasv227\"} 3",
            "ftp_alg_announcements_total{form=\"epsv229\"} 1",
            "ftp_alg_rewrites_total 2",
            "ftp_alg_pinholes_total{form=\"exact\",outcome=\"opened\"} 4",
            "ftp_alg_pinholes_total{form=\"exact\",outcome=\"closed\"} 1",
            "ftp_alg_pinholes_total{form=\"exact\",outcome=\"expired\"} 2",
            "ftp_alg_pinholes_total{form=\"range\",outcome=\"opened\"} 5",
            "ftp_alg_pinholes_total{form=\"range\",outcome=\"closed\"} 4",
            "ftp_alg_pinholes_total{form=\"range\",outcome=\"expired\"} 0",
            "ftp_alg_ftps_sessions_total 6",
            "ftp_alg_ftps_ranges 1",
            "ftp_alg_pinhole_errors_total 3",
            "ftp_alg_rule_repairs_total{what=\"table\"} 1",
            "ftp_alg_rule_repairs_total{what=\"queue_rule\"} 0",
            "ftp_alg_rule_repairs_total{what=\"accept_rule\"} 2",
            "ftp_alg_refusals_total{reason=\"third_party_address\"} 6",
            "ftp_alg_refusals_total{reason=\"nul_byte\"} 0",
            "ftp_alg_tls_sessions_total 1",
            "ftp_alg_segments_held_total 9",
            "ftp_alg_packets_total 1000",
            "ftp_alg_packets_modified_total 12",
            "ftp_alg_verdict_errors_total 0",
        ] {
            assert!(l.contains(&want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn build_info_names_the_version() {
        let text = render(&Published::default());
        let l = lines(&text);
        assert!(l.contains(&"# TYPE ftp_alg_build_info gauge"), "{text}");
        let profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        let want = format!(
            "ftp_alg_build_info{{version=\"{}\",arch=\"{}\",os=\"linux\",profile=\"{profile}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH
        );
        assert!(l.contains(&want.as_str()), "missing {want:?} in\n{text}");
    }

    #[test]
    fn gauges() {
        let text = render(&sample());
        let l = lines(&text);
        assert!(l.contains(&"# TYPE ftp_alg_sessions gauge"), "{text}");
        assert!(l.contains(&"ftp_alg_sessions 2"), "{text}");
        assert!(l.contains(&"# TYPE ftp_alg_pinholes gauge"), "{text}");
        assert!(l.contains(&"ftp_alg_pinholes 3"), "{text}");
    }

    #[test]
    fn histogram_is_cumulative() {
        let text = render(&sample());
        let hist: Vec<&str> = lines(&text)
            .into_iter()
            .filter(|l| l.contains("packet_processing_seconds"))
            .collect();
        assert_eq!(
            hist,
            [
                "# HELP ftp_alg_packet_processing_seconds Time to process one queued packet.",
                "# TYPE ftp_alg_packet_processing_seconds histogram",
                "ftp_alg_packet_processing_seconds_bucket{le=\"5e-06\"} 3",
                "ftp_alg_packet_processing_seconds_bucket{le=\"1e-05\"} 3",
                "ftp_alg_packet_processing_seconds_bucket{le=\"2.5e-05\"} 3",
                "ftp_alg_packet_processing_seconds_bucket{le=\"5e-05\"} 3",
                "ftp_alg_packet_processing_seconds_bucket{le=\"0.0001\"} 4",
                "ftp_alg_packet_processing_seconds_bucket{le=\"0.00025\"} 4",
                "ftp_alg_packet_processing_seconds_bucket{le=\"0.0005\"} 4",
                "ftp_alg_packet_processing_seconds_bucket{le=\"0.001\"} 4",
                "ftp_alg_packet_processing_seconds_bucket{le=\"0.005\"} 4",
                "ftp_alg_packet_processing_seconds_bucket{le=\"0.025\"} 4",
                "ftp_alg_packet_processing_seconds_bucket{le=\"+Inf\"} 6",
                "ftp_alg_packet_processing_seconds_sum 1.0300915",
                "ftp_alg_packet_processing_seconds_count 6",
            ]
        );
    }

    #[test]
    fn histogram_tolerates_short_counts() {
        let mut p = Published::default();
        p.shell.processing.counts = vec![1];
        let text = render(&p);
        assert!(text.contains("_bucket{le=\"1e-05\"} 1\n"), "{text}");
        assert!(text.contains("_bucket{le=\"+Inf\"} 1\n"), "{text}");
        assert!(text.contains("_sum 0\n"), "{text}");
    }

    #[test]
    fn every_family_is_described_once_and_grouped() {
        let text = render(&sample());
        let mut seen = Vec::new();
        let mut current = String::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap().to_string();
                assert!(!seen.contains(&name), "{name} twice");
                seen.push(name.clone());
                current = name;
            } else if !l.starts_with('#') {
                assert!(
                    l.starts_with(&current),
                    "{l:?} outside its family {current}"
                );
                let value = l.rsplit(' ').next().unwrap();
                assert!(value.parse::<f64>().is_ok(), "bad value in {l:?}");
            }
        }
        assert_eq!(seen.len(), 20);
        assert!(text.ends_with('\n'));
    }
}
