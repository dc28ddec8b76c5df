//! The primitives of the Prometheus text exposition format 0.0.4: family
//! headers, counter, gauge, labelled and histogram lines, label escaping and
//! the Go-style numbers of `le` labels.

use std::fmt::Write as _;

use crate::telemetry::Histogram;

pub(super) fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    // Help texts are our own constants: no backslash or newline to escape.
    let _ = writeln!(out, "# HELP ftp_alg_{name} {help}");
    let _ = writeln!(out, "# TYPE ftp_alg_{name} {kind}");
}

pub(super) fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, help, "counter");
    let _ = writeln!(out, "ftp_alg_{name} {value}");
}

pub(super) fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, help, "gauge");
    let _ = writeln!(out, "ftp_alg_{name} {value}");
}

pub(super) fn labelled(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: &[(&str, u64)],
) {
    header(out, name, help, "counter");
    for (v, n) in values {
        let _ = writeln!(out, "ftp_alg_{name}{{{label}=\"{}\"}} {n}", escape(v));
    }
}

/// A counter family with two labels: `values` holds (first, second, n).
pub(super) fn labelled2(
    out: &mut String,
    name: &str,
    help: &str,
    labels: (&str, &str),
    values: &[(&str, &str, u64)],
) {
    header(out, name, help, "counter");
    let (a, b) = labels;
    for (x, y, n) in values {
        let (x, y) = (escape(x), escape(y));
        let _ = writeln!(out, "ftp_alg_{name}{{{a}=\"{x}\",{b}=\"{y}\"}} {n}");
    }
}

pub(super) fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    header(out, name, help, "histogram");
    let mut cumulative = 0u64;
    for (i, bound) in h.bounds_us.iter().enumerate() {
        cumulative = cumulative.saturating_add(h.counts.get(i).copied().unwrap_or(0));
        let _ = writeln!(
            out,
            "ftp_alg_{name}_bucket{{le=\"{}\"}} {cumulative}",
            decimal(*bound, -6)
        );
    }
    // The +Inf bucket and the count are the same number by definition.
    let total = h.counts.iter().fold(0u64, |a, c| a.saturating_add(*c));
    let _ = writeln!(out, "ftp_alg_{name}_bucket{{le=\"+Inf\"}} {total}");
    let _ = writeln!(out, "ftp_alg_{name}_sum {}", decimal(h.sum_ns, -9));
    let _ = writeln!(out, "ftp_alg_{name}_count {total}");
}

/// Escapes a label value: backslash, double quote and newline.
pub fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Formats `value * 10^scale` exactly, the way Go's `%g` (shortest) does,
/// as the Go client library writes `le` labels: `5e-06`, `0.0001`, `0.025`,
/// `1`, `1e+06`.
fn decimal(value: u64, scale: i32) -> String {
    if value == 0 {
        return "0".to_string();
    }
    let mut m = value;
    let mut k = scale;
    while m % 10 == 0 {
        m /= 10;
        k += 1;
    }
    let digits = m.to_string();
    let nd = digits.len() as i32;
    // Decimal exponent of the first significant digit.
    let exp = nd - 1 + k;
    let mut s = String::new();
    if !(-4..6).contains(&exp) {
        s.push_str(&digits[..1]);
        if nd > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        let _ = write!(s, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else if exp < 0 {
        s.push_str("0.");
        for _ in 0..(-exp - 1) {
            s.push('0');
        }
        s.push_str(&digits);
    } else {
        let int_len = (exp + 1) as usize;
        if digits.len() <= int_len {
            s.push_str(&digits);
            for _ in digits.len()..int_len {
                s.push('0');
            }
        } else {
            s.push_str(&digits[..int_len]);
            s.push('.');
            s.push_str(&digits[int_len..]);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\\b\"c\nd"), r#"a\\b\"c\nd"#);
        assert_eq!(escape("plain-text"), "plain-text");
    }

    #[test]
    fn decimal_like_go() {
        assert_eq!(decimal(0, -6), "0");
        assert_eq!(decimal(5, -6), "5e-06");
        assert_eq!(decimal(100, -6), "0.0001");
        assert_eq!(decimal(1_000_000, -6), "1");
        assert_eq!(decimal(2_500_000, -6), "2.5");
        assert_eq!(decimal(120_000_000, -6), "120");
        assert_eq!(decimal(1_000_000, 0), "1e+06");
        assert_eq!(decimal(123_456_789, -9), "0.123456789");
        assert_eq!(decimal(12_345, -9), "1.2345e-05");
    }
}
