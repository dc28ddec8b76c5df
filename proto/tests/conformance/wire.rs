//! Bytes of the table: placeholders, fake TLS records, and what the
//! scripted peers read out of what they received (the same rules as
//! scripts/conformance.py's `parse_active` and `received_passive`, so that both
//! runners connect where the far side was told).

use std::net::{IpAddr, SocketAddr};

/// Fills the placeholders of `text` (see cases.toml): `{portK}`, `{hiK}`,
/// `{loK}`, `{hiK:03}`, `{C*N}`; `port(K)` is slot K's port.
pub fn fill(text: &str, port: impl Fn(usize) -> u16) -> Result<Vec<u8>, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed placeholder in {text:?}"))?;
        let inner = &rest[open + 1..open + close];
        out.push_str(
            &placeholder(inner, &port).ok_or_else(|| format!("bad placeholder {{{inner}}}"))?,
        );
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out.into_bytes())
}

fn placeholder(inner: &str, port: &impl Fn(usize) -> u16) -> Option<String> {
    if let Some((c, n)) = inner.split_once('*') {
        let mut chars = c.chars();
        let (ch, None) = (chars.next()?, chars.next()) else {
            return None;
        };
        return Some(ch.to_string().repeat(n.parse().ok()?));
    }
    let (name, width) = match inner.split_once(':') {
        Some((name, w)) => (name, w.strip_prefix('0')?.parse::<usize>().ok()?),
        None => (inner, 0),
    };
    let digit = name.len().checked_sub(1)?;
    let slot: usize = name[digit..].parse().ok()?;
    let p = port(slot);
    let value = match &name[..digit] {
        "port" => p,
        "hi" => p >> 8,
        "lo" => p & 0xff,
        _ => return None,
    };
    Some(format!("{value:0width$}"))
}

/// A fake TLS 1.2 record: header `kind 3 3 len`, then `len` opaque bytes
/// (byte i is (i * 73 + kind * 31 + len) mod 256; nothing is encrypted).
pub fn tls_record(kind: u8, len: u16) -> Vec<u8> {
    let [l1, l2] = len.to_be_bytes();
    let seed = usize::from(kind) * 31 + usize::from(len);
    let body = (0..usize::from(len)).map(|i| ((i * 73 + seed) % 256) as u8);
    [kind, 3, 3, l1, l2].into_iter().chain(body).collect()
}

/// The PORT/EPRT lines in `text` (what the server received), each with
/// the address and port it names if it parses strictly.
pub fn received_ports(text: &[u8]) -> Vec<Option<SocketAddr>> {
    text.split(|&b| b == b'\n')
        .map(|l| trim_end(l, b"\r "))
        .filter(|l| l.len() >= 4 && matches!(&l[..4].to_ascii_uppercase()[..], b"PORT" | b"EPRT"))
        .map(parse_active)
        .collect()
}

/// Strict parse of one PORT/EPRT line (values out of range: `None`).
fn parse_active(line: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(line).ok()?;
    let (verb, arg) = text.split_once(' ').unwrap_or((text, ""));
    let arg = arg.trim();
    if verb.eq_ignore_ascii_case("PORT") {
        let n: Vec<u16> = arg
            .split(',')
            .map(|x| x.trim().parse().ok().filter(|&v| v <= 255))
            .collect::<Option<_>>()?;
        let [a, b, c, d, p1, p2] = n[..] else {
            return None;
        };
        let ip = IpAddr::from([a as u8, b as u8, c as u8, d as u8]);
        return Some(SocketAddr::new(ip, p1 * 256 + p2));
    }
    let delim = arg.chars().next()?;
    let inner = arg.strip_prefix(delim)?.strip_suffix(delim)?;
    let f: Vec<&str> = inner.split(delim).collect();
    let [_, addr, port] = f[..] else {
        return None;
    };
    let port: u16 = port.trim().parse().ok().filter(|&p| p > 0)?;
    Some(SocketAddr::new(addr.parse().ok()?, port))
}

/// Where the last passive reply in `text` (what the client received) tells
/// the client to connect: a final `227 ` line's first six comma-separated
/// numbers, all <= 255; or a final `229 ` line's `(|||port|)` (any one
/// delimiter, RFC 2428 §3) at `server`, the address the client dials.
pub fn received_passive(text: &[u8], server: IpAddr) -> Option<SocketAddr> {
    text.split(|&b| b == b'\n')
        .filter_map(|l| match l.get(..4)? {
            b"227 " => six_numbers(l)
                .filter(|n| n.iter().all(|&v| v <= 255))
                .map(|n| {
                    let ip = IpAddr::from([n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8]);
                    SocketAddr::new(ip, (n[4] * 256 + n[5]) as u16)
                }),
            b"229 " => epsv_port(l).map(|p| SocketAddr::new(server, p)),
            _ => None,
        })
        .next_back()
}

/// The port in a 229 line: `(` three delimiters, the port, a delimiter `)`.
fn epsv_port(line: &[u8]) -> Option<u16> {
    let open = line.iter().position(|&b| b == b'(')?;
    let inner = &line[open + 1..];
    let d = *inner.first()?;
    if inner.get(1..3)? != [d, d] {
        return None;
    }
    let rest = &inner[3..];
    let end = rest.iter().position(|&b| b == d)?;
    std::str::from_utf8(&rest[..end])
        .ok()?
        .parse()
        .ok()
        .filter(|&p| p > 0)
}

/// The first run of six comma-separated decimal numbers in `line` (the
/// regular expression `(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)`).
fn six_numbers(line: &[u8]) -> Option<[u64; 6]> {
    (0..line.len()).find_map(|start| {
        let mut n = [0u64; 6];
        let mut i = start;
        for (k, v) in n.iter_mut().enumerate() {
            if k > 0 {
                (line.get(i) == Some(&b',')).then_some(())?;
                i += 1;
            }
            let digits = line[i.min(line.len())..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            (digits > 0).then_some(())?;
            *v = line[i..i + digits].iter().fold(0u64, |acc, d| {
                acc.saturating_mul(10).saturating_add(u64::from(d - b'0'))
            });
            i += digits;
        }
        Some(n)
    })
}

fn trim_end<'a>(mut l: &'a [u8], set: &[u8]) -> &'a [u8] {
    while let Some((last, rest)) = l.split_last() {
        if !set.contains(last) {
            break;
        }
        l = rest;
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_fill_like_the_lab() {
        let port = |slot: usize| [61016u16, 61017][slot];
        let got = fill("PORT 1,{hi0:03},{lo1} {port0} {x*3}", port).unwrap();
        assert_eq!(got, b"PORT 1,238,89 61016 xxx");
        assert!(fill("{bad0}", port).is_err());
    }

    #[test]
    fn received_lines_parse_strictly() {
        let text = b"PORT 203,0,113,254,238,88\r\nport 1,2,3,258,0,1\r\nEPRT |2|2001:db8::1|5|\n";
        let got = received_ports(text);
        assert_eq!(got[0], Some("203.0.113.254:61016".parse().unwrap()));
        assert_eq!(got[1], None);
        assert_eq!(got[2], Some("[2001:db8::1]:5".parse().unwrap()));
        let reply = b"227-x (1,1,1,1,1,1)\r\n227 Entering (203,0,113,1,238,88).\r\n";
        let server: IpAddr = "2001:db8:2::10".parse().unwrap();
        assert_eq!(
            received_passive(reply, server),
            Some("203.0.113.1:61016".parse().unwrap())
        );
        let reply = b"229 Entering Extended Passive Mode (!!!61016!)\r\n229 (||1|)\n";
        assert_eq!(
            received_passive(reply, server),
            Some("[2001:db8:2::10]:61016".parse().unwrap()),
            "the last well-formed one"
        );
    }
}
