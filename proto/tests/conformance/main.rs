//! The conformance table (`cases.toml`, the same table scripts/conformance.py
//! plays in the netns lab) replayed through the engine simulator, no root:
//! every case, and every case again with its `flag` set, must give each far
//! side exactly the bytes the table says, open exactly the pinholes its data
//! steps expect and nothing for a refusal, with the refusal's reason.

#[path = "../support/mod.rs"]
mod support;

mod replay;
mod table;
mod wire;

use std::panic::{catch_unwind, AssertUnwindSafe};

#[test]
fn every_case_of_the_table_passes_through_the_engine() {
    let table = table::load();
    let mut failures = Vec::new();
    let mut played = 0;
    for case in &table.cases {
        for flags in case.flag_sets() {
            played += 1;
            let name = format!("case {} ({}) flags {flags:?}", case.num, case.title);
            match catch_unwind(AssertUnwindSafe(|| replay::play(&table, case, &flags))) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(format!("{name}: {e}")),
                Err(_) => failures.push(format!("{name}: panicked (see above)")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {played} runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every row ran: a table that silently lost its cases must not pass.
    let flagged = table.cases.iter().filter(|c| c.flag.is_some()).count();
    assert_eq!(played, table.cases.len() + flagged);
    assert!(table.cases.len() >= 25, "{} cases", table.cases.len());
}

#[test]
fn case_numbers_are_unique_and_their_data_ports_too() {
    let table = table::load();
    let mut nums: Vec<u32> = table.cases.iter().map(|c| c.num).collect();
    nums.sort_unstable();
    let n = nums.len();
    nums.dedup();
    assert_eq!(nums.len(), n, "a case number is used twice");
    // No pinhole of an earlier case or lab run may match a later one's.
    let mut ports = Vec::new();
    for case in &table.cases {
        assert!(
            case.num <= table::MAX_NUM,
            "case {}: numbers end at {}",
            case.num,
            table::MAX_NUM
        );
        for run in 0..5 {
            for slot in 0..table::SLOTS {
                if case.ports.get(slot).is_some_and(|&p| p > 0) {
                    continue; // a deliberate special port, shared by design
                }
                ports.push(case.port(slot, run).unwrap());
            }
        }
    }
    let n = ports.len();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), n, "two slots share a data port");
    assert!(
        ports[0] > 60999,
        "data ports stay above the ephemeral range"
    );
}

/// The runner can fail: rows whose expectations the engine does not meet
/// are reported, each for its own reason (and a row with a pause and a
/// slow sender passes).
#[test]
fn rows_the_engine_does_not_meet_fail() {
    let mut text = String::from(include_str!("cases.toml"));
    text.push_str(
        r#"
[[case]]
num = 51
title = "wrong bytes"
expect = ""
about = "expects the PORT unchanged behind SNAT"
path = "cl"
steps = [{ client = ["PORT 198,51,100,2,{hi0},{lo0}\r\n"] }]

[[case]]
num = 52
title = "data expected although refused"
expect = ""
about = "a third-party PORT must not open anything"
path = "cl"
steps = [
    { client = ["PORT 192,0,2,10,{hi0},{lo0}\r\n"] },
    { run = "port_ok" },
    { data = "active", ok = true },
]

[[case]]
num = 53
title = "refusal expected although opened"
expect = ""
about = "a PORT answered 200 keeps its pinhole"
path = "cl"
steps = [
    { client = ["PORT 198,51,100,2,{hi0},{lo0}\r\n"], gets = "PORT 203,0,113,254,{hi0},{lo0}\r\n" },
    { run = "port_ok" },
    { data = "active", ok = false },
]

[[case]]
num = 54
title = "wrong reason"
expect = ""
about = "a third-party PORT is not refused for its port"
path = "cl"
steps = [
    { client = ["PORT 192,0,2,10,{hi0},{lo0}\r\n"] },
    { run = "port_ok" },
    { data = "active", ok = false, why = "PrivilegedPort" },
]

[[case]]
num = 55
title = "pauses"
expect = ""
about = "a slow sender and a pause change nothing"
path = "co"
steps = [
    { client = ["PA", "SV\r\n"], gap = 2.5 },
    { pause = 10.0 },
    { server = ["227 Entering Passive Mode (192,0,2,10,{hi0},{lo0})\r\n"], gets = "227 Entering Passive Mode (203,0,113,1,{hi0},{lo0})\r\n" },
    { data = "passive", ok = true },
]
"#,
    );
    let table = table::parse(&text).unwrap();
    let result = |num: u32| {
        let case = table.cases.iter().find(|c| c.num == num).unwrap();
        replay::play(&table, case, &[])
    };
    let err = |num: u32, what: &str| {
        let e = result(num).expect_err("must fail");
        assert!(e.contains(what), "case {num}: {e}");
    };
    err(51, "the server received \"PORT 203,0,113,254,");
    err(52, "no live pinhole");
    err(53, "a pinhole lets the connection");
    err(
        54,
        "refusals counted: [\"ThirdPartyAddress\"], expected [\"PrivilegedPort\"]",
    );
    assert_eq!(result(55), Ok(()));
}
