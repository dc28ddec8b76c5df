//! The table of `cases.toml` (its header says what every field means) and
//! its expansion into a flat list of actions for one run of one case.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    /// The lab's paths by name.
    pub paths: BTreeMap<String, Path>,
    /// Named step lists (`start`, `end`, `{ run = NAME }`).
    pub snippets: BTreeMap<String, Vec<Step>>,
    /// The cases, in table order.
    #[serde(rename = "case")]
    pub cases: Vec<Case>,
}

/// One client/server pair through the gateway.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Path {
    #[allow(dead_code)] // documentation in the table
    pub about: String,
    #[allow(dead_code)] // the lab's namespaces
    pub client_ns: String,
    pub client: IpAddr,
    pub client_public: IpAddr,
    #[allow(dead_code)]
    pub server_ns: String,
    pub server: IpAddr,
    pub server_real: IpAddr,
}

/// One row of the table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub num: u32,
    pub title: String,
    #[allow(dead_code)] // printed by the lab's table
    pub expect: String,
    #[allow(dead_code)]
    pub about: String,
    pub path: String,
    pub start: Option<String>,
    pub end: Option<String>,
    #[serde(default)]
    pub ports: Vec<u16>,
    pub flag: Option<String>,
    #[serde(default)]
    #[allow(dead_code)] // which lab pass plays it; the engine plays every case
    pub extra: bool,
    pub nat_override: Option<IpAddr>,
    pub steps: Vec<Step>,
}

/// One step as written: exactly one of its kinds is set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    client: Option<Vec<String>>,
    server: Option<Vec<String>>,
    gets: Option<String>,
    gap: Option<f64>,
    #[serde(default)]
    nagle: bool,
    client_tls: Option<u8>,
    server_tls: Option<u8>,
    len: Option<u16>,
    data: Option<String>,
    slot: Option<usize>,
    index: Option<i64>,
    ok: Option<bool>,
    #[serde(default)]
    closed: bool,
    #[serde(default)]
    probe: bool,
    why: Option<String>,
    listen: Option<Vec<String>>,
    run: Option<String>,
    open: Option<String>,
    pause: Option<f64>,
    #[serde(rename = "if")]
    cond: Option<String>,
}

/// Which peer acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Client,
    Server,
}

/// Where a data connection is accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// The path's client, at its own address.
    Client,
    /// The path's server, at its own (real) address.
    Server,
    /// Another host (a third party).
    At(IpAddr),
}

/// A data connection and what must become of it.
#[derive(Clone, Debug)]
pub struct Data {
    pub passive: bool,
    pub port: u16,
    pub index: i64,
    pub ok: bool,
    pub closed: bool,
    pub probe: bool,
    pub why: Option<String>,
    pub listen: Vec<Listen>,
}

/// One thing a runner does, placeholders filled in.
#[derive(Clone, Debug)]
pub enum Action {
    /// Open a control session on this path.
    Open(String),
    /// `from` sends `segments`, `gap` seconds apart, with Nagle's
    /// algorithm on or off (`TCP_NODELAY`); the far side gets `gets`.
    Send {
        from: Peer,
        segments: Vec<Vec<u8>>,
        gets: Vec<u8>,
        gap: f64,
        nagle: bool,
    },
    /// `from` sends one fake TLS record; the far side gets it unchanged.
    Tls {
        from: Peer,
        record: Vec<u8>,
    },
    Data(Data),
    Pause(f64),
    /// End the session (after its `end` snippet).
    Finish,
}

/// Seconds between two scripted segments (scripts/conformance.py's
/// SEGMENT_GAP).
pub const SEGMENT_GAP: f64 = 0.08;

/// Highest case number and slots per case of the data port scheme
/// (61000 + 900 * run + 16 * num + slot stays below 65536 and unique for
/// runs 0 to 4).
pub const MAX_NUM: u32 = 56;
pub const SLOTS: usize = 16;

/// Snippets nest at most this deep (a snippet naming itself is an error).
const MAX_DEPTH: usize = 8;

/// Reads the table next to this file.
pub fn load() -> Table {
    parse(include_str!("cases.toml")).unwrap_or_else(|e| panic!("cases.toml: {e}"))
}

/// Reads a table from TOML text.
pub fn parse(text: &str) -> Result<Table, String> {
    toml::from_str(text).map_err(|e| e.to_string())
}

impl Case {
    /// The flag sets this case is played with: none, and its `flag`.
    pub fn flag_sets(&self) -> Vec<Vec<String>> {
        let mut sets = vec![Vec::new()];
        sets.extend(self.flag.iter().map(|f| vec![f.clone()]));
        sets
    }

    /// Slot `slot`'s data port in run `run` (the Rust runner is run 0; the
    /// lab's runs are 0 to 4): `None` beyond what the scheme can keep
    /// unique (case numbers up to 56, slots up to 15).
    pub fn port(&self, slot: usize, run: u16) -> Option<u16> {
        match self.ports.get(slot) {
            Some(&p) if p > 0 => p.checked_add(run),
            _ if self.num <= MAX_NUM && slot < SLOTS => {
                Some(61000 + 900 * run + 16 * self.num as u16 + slot as u16)
            }
            _ => None,
        }
    }

    /// Every action of this case with `flags` set, in order.
    pub fn actions(&self, table: &Table, flags: &[String]) -> Result<Vec<Action>, String> {
        let mut x = Expander {
            table,
            case: self,
            flags,
            out: Vec::new(),
        };
        x.open(&self.path)?;
        x.steps(&self.steps, 0)?;
        x.finish()?;
        Ok(x.out)
    }
}

struct Expander<'a> {
    table: &'a Table,
    case: &'a Case,
    flags: &'a [String],
    out: Vec<Action>,
}

impl Expander<'_> {
    fn open(&mut self, path: &str) -> Result<(), String> {
        if !self.table.paths.contains_key(path) {
            return Err(format!("unknown path '{path}'"));
        }
        self.out.push(Action::Open(path.to_string()));
        match self.case.start.as_deref().unwrap_or("login") {
            "none" => Ok(()),
            name => self.snippet(name, 1),
        }
    }

    fn finish(&mut self) -> Result<(), String> {
        match self.case.end.as_deref().unwrap_or("noop") {
            "none" => {}
            name => self.snippet(name, 1)?,
        }
        self.out.push(Action::Finish);
        Ok(())
    }

    fn snippet(&mut self, name: &str, depth: usize) -> Result<(), String> {
        let steps = self
            .table
            .snippets
            .get(name)
            .ok_or_else(|| format!("unknown snippet '{name}'"))?;
        if depth > MAX_DEPTH {
            return Err(format!("snippets nest deeper than {MAX_DEPTH} at '{name}'"));
        }
        self.steps(steps, depth)
    }

    fn steps(&mut self, steps: &[Step], depth: usize) -> Result<(), String> {
        for s in steps {
            if self.applies(s.cond.as_deref()) {
                self.step(s, depth)?;
            }
        }
        Ok(())
    }

    fn applies(&self, cond: Option<&str>) -> bool {
        match cond {
            None => true,
            Some(c) => match c.strip_prefix('!') {
                Some(f) => !self.flags.iter().any(|x| x == f),
                None => self.flags.iter().any(|x| x == c),
            },
        }
    }

    fn port(&self, slot: usize) -> Result<u16, String> {
        self.case
            .port(slot, 0)
            .ok_or_else(|| format!("no data port for slot {slot} of case {}", self.case.num))
    }

    fn fill(&self, text: &str) -> Result<Vec<u8>, String> {
        let ports: Vec<u16> = (0..SLOTS)
            .map(|k| self.case.port(k, 0).unwrap_or(0))
            .collect();
        crate::wire::fill(text, |slot| ports.get(slot).copied().unwrap_or(0))
    }

    fn step(&mut self, s: &Step, depth: usize) -> Result<(), String> {
        let kinds = [
            s.client.is_some(),
            s.server.is_some(),
            s.client_tls.is_some(),
            s.server_tls.is_some(),
            s.data.is_some(),
            s.run.is_some(),
            s.open.is_some(),
            s.pause.is_some(),
        ];
        if kinds.iter().filter(|&&k| k).count() != 1 {
            return Err(format!("a step must be exactly one kind: {s:?}"));
        }
        if let Some(name) = &s.run {
            return self.snippet(name, depth + 1);
        }
        if let Some(path) = &s.open {
            self.finish()?;
            return self.open(path);
        }
        let action = if let Some(p) = s.pause {
            Action::Pause(p)
        } else if let Some((from, segs)) = s
            .client
            .as_ref()
            .map(|x| (Peer::Client, x))
            .or(s.server.as_ref().map(|x| (Peer::Server, x)))
        {
            let segments = segs
                .iter()
                .map(|t| self.fill(t))
                .collect::<Result<Vec<_>, _>>()?;
            let gets = match &s.gets {
                Some(g) => self.fill(g)?,
                None => segments.concat(),
            };
            Action::Send {
                from,
                segments,
                gets,
                gap: s.gap.unwrap_or(SEGMENT_GAP),
                nagle: s.nagle,
            }
        } else if let Some((from, kind)) = s
            .client_tls
            .map(|k| (Peer::Client, k))
            .or(s.server_tls.map(|k| (Peer::Server, k)))
        {
            let len = s.len.ok_or("a TLS step needs `len`")?;
            Action::Tls {
                from,
                record: crate::wire::tls_record(kind, len),
            }
        } else {
            Action::Data(self.data(s)?)
        };
        self.out.push(action);
        Ok(())
    }

    fn data(&self, s: &Step) -> Result<Data, String> {
        let passive = match s.data.as_deref() {
            Some("active") => false,
            Some("passive") => true,
            other => return Err(format!("data must be active or passive, not {other:?}")),
        };
        let listen = match &s.listen {
            None if passive => vec![Listen::Server],
            None => vec![Listen::Client],
            Some(l) => l
                .iter()
                .map(|x| parse_listen(x))
                .collect::<Result<_, _>>()?,
        };
        Ok(Data {
            passive,
            port: self.port(s.slot.unwrap_or(0))?,
            index: s.index.unwrap_or(-1),
            ok: s.ok.ok_or("a data step needs `ok`")?,
            closed: s.closed,
            probe: s.probe,
            why: s.why.clone(),
            listen,
        })
    }
}

fn parse_listen(s: &str) -> Result<Listen, String> {
    match s {
        "client" => Ok(Listen::Client),
        "server" => Ok(Listen::Server),
        _ => {
            let (_ns, addr) = s
                .split_once(':')
                .ok_or_else(|| format!("listen '{s}': client, server or NS:ADDR"))?;
            addr.parse()
                .map(Listen::At)
                .map_err(|e| format!("listen '{s}': {e}"))
        }
    }
}
