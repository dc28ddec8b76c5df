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
fn case_numbers_are_unique() {
    let table = table::load();
    let mut nums: Vec<u32> = table.cases.iter().map(|c| c.num).collect();
    nums.sort_unstable();
    let n = nums.len();
    nums.dedup();
    assert_eq!(nums.len(), n, "a case number is used twice");
}
