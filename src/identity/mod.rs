//! Identity resolution: one partner, many source records.
//!
//! The import matches EHR spellings exactly (see [`crate::partners`]) and sync stores CRM records
//! as pulled; this module, run after both in each cycle, clusters every source record — EHR
//! spellings and CRM partner records of both CRMs — into partners by evidence (NPI, the link a
//! record already has, website domain, phone with ZIP, name with city, name, config aliases),
//! applies the config's merges and splits, moves referrals and CRM facts along, stores the
//! matches it was unsure of as suggestions, and rebuilds each partner's CRM profile. It runs in
//! one transaction, and a run with nothing new changes nothing.
//!
//! It must not decide anything from patient values (the ledger holds none besides a token and a
//! ZIP3, and nothing here reads them), must not merge uncertain matches (they are suggestions
//! until a person writes the merge into the config), and must not speak to a CRM.
//!
//! # Layout
//! - `reference`: `system:key` record references used by the config and `status`.
//! - `records`: the records read from the ledger and their evidence keys.
//! - `cluster`: the union-find over records, evidence order, conflicts, methods.
//! - `assign`: clusters → partner ids; merges, new partners, referrals moved, NPIs kept unique.
//! - `suggest`: uncertain matches.
//! - `profile`: `partner_profile`.
//! - `facts`: reps, CRM referrals, activities.

mod assign;
mod cluster;
mod facts;
mod profile;
mod records;
mod reference;
mod suggest;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

use rusqlite::Connection;
use serde::Serialize;

use crate::config::IdentityConfig;
pub use reference::RecordRef;

/// What one run found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IdentityReport {
    /// Source records the ledger holds (EHR spellings and CRM partner records).
    pub source_records: u64,
    /// Partners not merged into another.
    pub partners_live: u64,
    /// Partners this run merged into another.
    pub partners_merged_this_run: u64,
    /// Records a config split holds apart.
    pub records_split: u64,
    /// Uncertain matches listed for a person to decide.
    pub suggestions: u64,
    /// Config merge/split references to records the ledger does not hold (yet).
    pub unknown_references: u64,
    pub reps: u64,
    /// CRM referrals not deleted in their CRM.
    pub crm_referrals: u64,
    /// Of those, the ones tied to the EHR referral of the same inquiry.
    pub crm_referrals_matched_to_ehr: u64,
    pub activities: u64,
}

/// Runs identity resolution over the whole ledger in one transaction (`BEGIN IMMEDIATE`; rolled
/// back on any error). `now` is the RFC 3339 time stored on what this run creates or changes.
pub fn resolve(
    connection: &Connection,
    config: &IdentityConfig,
    now: &str,
) -> rusqlite::Result<IdentityReport> {
    let started = std::time::Instant::now();
    connection.execute_batch("BEGIN IMMEDIATE")?;
    let report = match run(connection, config, now) {
        Ok(report) => report,
        Err(error) => {
            let _ = connection.execute_batch("ROLLBACK");
            return Err(error);
        }
    };
    if let Err(error) = connection.execute_batch("COMMIT") {
        if !connection.is_autocommit() {
            let _ = connection.execute_batch("ROLLBACK");
        }
        return Err(error);
    }
    tracing::info!(
        source_records = report.source_records,
        partners_live = report.partners_live,
        partners_merged_this_run = report.partners_merged_this_run,
        records_split = report.records_split,
        suggestions = report.suggestions,
        unknown_references = report.unknown_references,
        reps = report.reps,
        crm_referrals = report.crm_referrals,
        crm_referrals_matched_to_ehr = report.crm_referrals_matched_to_ehr,
        activities = report.activities,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "identity resolved"
    );
    Ok(report)
}

fn run(
    connection: &Connection,
    config: &IdentityConfig,
    now: &str,
) -> rusqlite::Result<IdentityReport> {
    let reps = facts::reps(connection)?;
    let loaded = records::load(connection)?;

    // The config's merges and splits, as record indices; references the ledger does not hold
    // are counted and named once.
    let mut unknown: Vec<String> = Vec::new();
    let mut find = |text: &str| -> Option<usize> {
        let reference = RecordRef::parse(text).ok()?;
        let found = loaded
            .by_reference
            .get(&(reference.system.clone(), reference.key.clone()))
            .copied();
        if found.is_none() {
            unknown.push(reference.to_string());
        }
        found
    };
    let merges: Vec<Vec<usize>> = config
        .merge
        .iter()
        .map(|merge| merge.records.iter().filter_map(|text| find(text)).collect())
        .collect();
    let mut split = vec![false; loaded.records.len()];
    for entry in &config.split {
        if let Some(index) = find(&entry.record) {
            split[index] = true;
        }
    }
    warn_once_about(&unknown);
    let overrides = cluster::Overrides {
        merges,
        split,
        aliases: &config.alias,
    };
    let edges = cluster::evidence(&loaded.records, &overrides);
    let clustering = cluster::cluster(&loaded.records, &edges, &overrides.split);
    let assignment = assign::apply(connection, &loaded, &clustering, now)?;

    let found = suggest::find(&loaded.records, &assignment.partner_of, &overrides.split);
    let suggestions = suggest::store(connection, &found, now)?;
    profile::rebuild(
        connection,
        &loaded.records,
        &assignment.partner_of,
        &config.queue_owners,
        now,
    )?;

    let mut partners: facts::PartnerIndex = HashMap::new();
    for (index, record) in loaded.records.iter().enumerate() {
        if record.is_crm() {
            partners.insert(
                (record.system.clone(), record.key.clone()),
                assignment.partner_of[index],
            );
        }
    }
    let referrals = facts::crm_referrals(connection, &partners)?;
    let activities = facts::activities(connection, &partners)?;

    let count = |sql: &str| facts::count(connection, sql);
    Ok(IdentityReport {
        source_records: count("SELECT count(*) FROM partner_source_record")?,
        partners_live: count("SELECT count(*) FROM partner WHERE merged_into IS NULL")?,
        partners_merged_this_run: assignment.merged,
        records_split: overrides.split.iter().filter(|s| **s).count() as u64,
        suggestions,
        unknown_references: unknown.len() as u64,
        reps,
        crm_referrals: referrals.live,
        crm_referrals_matched_to_ehr: referrals.matched_to_ehr,
        activities,
    })
}

/// Names each config reference the ledger does not hold once per process (a daemon runs a cycle
/// every few minutes; the report counts them every time).
fn warn_once_about(unknown: &[String]) {
    static WARNED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let mut warned = WARNED
        .get_or_init(|| Mutex::new(HashSet::new()))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for reference in unknown {
        if warned.insert(reference.clone()) {
            tracing::warn!(
                reference = %reference,
                "an identity merge or split names a record the ledger does not hold (yet); it waits for it"
            );
        }
    }
}
