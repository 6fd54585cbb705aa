//! The reliability suite (issue 8): refbridge under hostile conditions, through the real binary,
//! real loopback HTTP sandboxes and real SQLite files.
//!
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

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod crm_pages;
mod mutate;
mod privacy;
mod properties;
mod security;
