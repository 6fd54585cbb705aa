//! refbridge: a referral ledger for behavioral-health facilities.
//!
//! The library behind the `refbridge` binary; `main.rs` is only CLI glue over these modules.
//!
//! # Layout
//! - [`config`]: the TOML model, validation with `line:column`, secrets from files.
//! - [`ledger`]: the SQLite referral ledger (WAL, migrations, mode 0600) and its statements.
//! - [`partners`]: partner identity from referral-source names at import (NPI, name, aliases).
//! - [`identity`]: identity resolution: every source record clustered into partners, merges and
//!   splits from config, uncertain matches as suggestions, partner profiles, CRM referrals.
//! - [`import`]: EHR exports into the ledger (file hash, batches, quarantine, inbox).
//! - [`health`]: partner health (score, components with reasons, snapshots) and `refbridge health`.
//! - [`status`]: the `status` report.
//! - [`sync`]: CRM streams into the ledger (pages + cursors), the outbox out to the CRM.
//! - [`rules`]: health, placements, identity doubts and refer-out options → conditions (tasks).
//! - [`outbox`]: conditions → alerts and task intents (create/update/close, budget, snoozes,
//!   circuit breaker); `plan` is the same run rolled back.
//! - [`cycle`]: one whole cycle (`sync --once`): pull, import, identity, health, rules, push;
//!   each step a function the daemon's jobs reuse.
//! - [`daemon`]: `refbridge run`: the scheduled jobs, signals and reloads, systemd notifications,
//!   the loopback HTTP listener (health, readiness, metrics) and ledger maintenance.
//! - [`stop`]: the stop request that long work checks between transactions.
//! - [`routing`]: refer-out routing: up to three partners that fit a patient we cannot admit.
//! - [`demo`]: `refbridge demo`, the whole product on in-process sandboxes, in one command.
//! - [`sandbox`]: `refbridge sandbox`, both CRM sandboxes on one synthetic world.
//! - [`telemetry`]: logging setup.
//!
//! Connectors live in their own crates under `connectors/` and never touch the ledger.

pub mod config;
pub mod cycle;
pub mod daemon;
pub mod demo;
pub mod health;
pub mod identity;
pub mod import;
pub mod ledger;
pub mod outbox;
pub mod partners;
pub mod routing;
pub mod rules;
pub mod sandbox;
pub mod status;
pub mod stop;
pub mod sync;
pub mod telemetry;
