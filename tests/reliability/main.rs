//! The reliability suite (issue 8), one test target: `cargo test --test reliability`. Everything
//! goes through the real binary, real loopback HTTP sandboxes and real SQLite files.
//!
//! - `crash`: `sync --once` and the daemon killed with SIGKILL at random points, then run to the
//!   end: no duplicate CRM task, nothing lost, cursors at the end, an intact ledger.
//! - `faults`: 429s, 5xx, connection resets, latency and token expiry injected by the sandboxes;
//!   the ledger and the pushed tasks end identical to a fault-free run.
//! - `bad_input`: a generated corpus of broken exports (CSV, FHIR Bundle, NDJSON) and broken
//!   configs; exit statuses, no panic, every problem named with its location, good rows kept.
//! - `properties`: seeded mutations of valid CSV, FHIR Bundle and NDJSON exports; nothing panics,
//!   every row is accounted for and named where rejected, untouched rows are stored as before.
//! - `crm_pages`: seeded mutations of Salesforce query pages and HubSpot list, search and owners
//!   pages served through a mutating loopback proxy; no crash, failures named, and a clean pull
//!   afterwards leaves the ledger as a clean reference run does.
//! - `privacy`: canary patient values in every input field and canary secrets, searched for in
//!   every byte refbridge writes, prints, serves or sends.
//! - `security`: file modes of the ledger and backups, https for non-loopback CRM URLs, the
//!   systemd unit's exposure budget.
//!
//! `mutate` holds the seeded mutators; `support` holds the crash and fault tests' prepared worlds, CRM task read-back and ledger dump.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod crash;
mod crm_pages;
mod faults;
mod mutate;
mod privacy;
mod properties;
mod security;
mod support;

/// Prints one figure of the suite (kills survived, faults injected, inputs tried) and appends it to
/// `target/tmp/reliability-figures.txt`, which `.ci/run` prints after the tests: cargo hides what a
/// passing test prints.
pub fn figure(line: &str) {
    use std::io::Write;
    eprintln!("{line}");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("reliability-figures.txt");
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "{line}");
    }
}
