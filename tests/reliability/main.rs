//! The reliability suite (issue 8), one test target: `cargo test --test reliability`.
//!
//! - `crash`: `sync --once` and the daemon killed with SIGKILL at random points, then run to the
//!   end: no duplicate CRM task, nothing lost, cursors at the end, an intact ledger.
//! - `faults`: 429s, 5xx, connection resets, latency and token expiry injected by the sandboxes;
//!   the ledger and the pushed tasks end identical to a fault-free run.

#[path = "../common/mod.rs"]
mod common;

mod crash;
mod faults;
mod support;
