//! `paths`: which control connections ftp-alg follows (forwarded ones,
//! this host's own, or both).

use std::fmt;

use serde::Deserialize;

/// Which control connections ftp-alg follows (`paths`): at least one.
///
/// `forward`: connections this host forwards (a gateway, a NAT router, a
/// container host). `local`: connections that end or start on this host
/// (its own FTP server or client: Windows Firewall's StatefulFTP). The
/// queue rules each path needs are in the `rules` module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct Paths {
    /// Forwarded control connections.
    pub forward: bool,
    /// This host's own control connections.
    pub local: bool,
}

impl Paths {
    /// The words of `paths`, in the configuration's spelling.
    pub const NAMES: [&'static str; 2] = ["forward", "local"];

    /// Parses the words of `paths` (`["forward", "local"]`, or the
    /// command line's `forward,local`): none, or an unknown one, is an error.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Paths, String> {
        let mut p = Paths {
            forward: false,
            local: false,
        };
        for name in names {
            match name.as_ref().trim() {
                "forward" => p.forward = true,
                "local" => p.local = true,
                other => {
                    return Err(format!(
                        "{other:?} is not a path (one of \"forward\", \"local\")"
                    ))
                }
            }
        }
        if !(p.forward || p.local) {
            return Err("is empty: no control connection would be followed \
                        (use [\"forward\"], [\"local\"] or both)"
                .into());
        }
        Ok(p)
    }
}

impl TryFrom<Vec<String>> for Paths {
    type Error = String;

    fn try_from(v: Vec<String>) -> Result<Self, String> {
        Paths::from_names(&v)
    }
}

impl std::str::FromStr for Paths {
    type Err = String;

    /// The command line's form: `forward`, `local` or `forward,local`.
    fn from_str(s: &str) -> Result<Self, String> {
        let words: Vec<&str> = s.split(',').collect();
        Paths::from_names(&words)
    }
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            forward: true,
            local: false,
        }
    }
}

impl fmt::Display for Paths {
    /// `forward`, `local` or `forward,local` (what `--paths` takes).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = [self.forward, self.local];
        let names: Vec<&str> = Paths::NAMES
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect();
        f.write_str(&names.join(","))
    }
}
