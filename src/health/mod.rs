//! Partner health: one score per referral partner, from components that each carry a sentence a
//! rep can read, plus the raw facts the rule engine decides on.
//!
//! [`compute`] reads the ledger and scores every partner in scope as of a day without writing;
//! [`refresh`] does the same, stores a snapshot per partner and a `health_run`, and returns the
//! stored snapshots untouched when nothing it depends on changed since the last run for that day.
//! This module never writes a task, never talks to a CRM, and never reads a patient value (the
//! ledger has none: it reads partner ids, dates, directions and dispositions). Reciprocity is
//! computed and shown; with its default weight of 0 it never moves a score, and nothing here
//! uses it to rank or choose a partner.
//!
//! # Layout
//! - [`config`]: `[health]`, its defaults and problems.
//! - [`stats`]: pure statistics (Poisson lower tail, silence, shrinkage, recency ramp).
//! - `read`: one pass over the ledger into per-partner counts (the only place that queries
//!   referrals, activities and profiles).
//! - `score`: counts → components, reasons, score and state (pure).
//! - `store`: snapshots, runs and the input fingerprint.
//! - [`report`]: the `refbridge health` output (table, JSON, CSV, one partner in detail).

pub mod config;
mod read;
pub mod report;
mod score;
pub mod stats;
mod store;
#[cfg(test)]
mod tests;

use chrono::NaiveDate;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};

pub use config::{HealthConfig, HealthWeights};

/// The version of the scoring model. Stored with every snapshot and part of the fingerprint:
/// bump it whenever a formula or a reason changes, so that stored snapshots are recomputed.
pub const MODEL_VERSION: i64 = 1;

/// A partner's overall state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    Healthy,
    Watch,
    AtRisk,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::Watch => "watch",
            HealthState::AtRisk => "at_risk",
        }
    }

    pub fn parse(text: &str) -> Option<HealthState> {
        [
            HealthState::Healthy,
            HealthState::Watch,
            HealthState::AtRisk,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }
}

/// How the score moved against an earlier snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trend {
    Up,
    Down,
    Flat,
}

impl Trend {
    pub fn as_str(self) -> &'static str {
        match self {
            Trend::Up => "up",
            Trend::Down => "down",
            Trend::Flat => "flat",
        }
    }

    pub fn parse(text: &str) -> Option<Trend> {
        [Trend::Up, Trend::Down, Trend::Flat]
            .into_iter()
            .find(|trend| trend.as_str() == text)
    }
}

/// The components of partner health, in display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    Volume,
    Decline,
    Conversion,
    Recency,
    Ownership,
    Reciprocity,
}

impl ComponentKind {
    pub const ALL: [ComponentKind; 6] = [
        ComponentKind::Volume,
        ComponentKind::Decline,
        ComponentKind::Conversion,
        ComponentKind::Recency,
        ComponentKind::Ownership,
        ComponentKind::Reciprocity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Volume => "volume",
            ComponentKind::Decline => "decline",
            ComponentKind::Conversion => "conversion",
            ComponentKind::Recency => "recency",
            ComponentKind::Ownership => "ownership",
            ComponentKind::Reciprocity => "reciprocity",
        }
    }

    /// This component's weight in `weights`.
    pub fn weight(self, weights: &HealthWeights) -> f64 {
        match self {
            ComponentKind::Volume => weights.volume,
            ComponentKind::Decline => weights.decline,
            ComponentKind::Conversion => weights.conversion,
            ComponentKind::Recency => weights.recency,
            ComponentKind::Ownership => weights.ownership,
            ComponentKind::Reciprocity => weights.reciprocity,
        }
    }
}

/// One component: a score from 0 to 100 (`None`: does not apply to this partner, and the reason
/// says why), its configured weight, and one sentence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Component {
    pub kind: ComponentKind,
    pub score: Option<f64>,
    pub weight: f64,
    pub reason: String,
}

/// The raw facts behind the components, for the rule engine. Referral counts are inbound unless
/// named otherwise (`sent_*` is outbound); `first_referral`/`last_referral` are inbound too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthFacts {
    /// Inbound referrals a month in the baseline; `None` without a baseline (too new).
    pub baseline_per_month: Option<f64>,
    pub referrals_current_window: u64,
    /// What the baseline predicts for the current window.
    pub expected_current_window: Option<f64>,
    /// The lower-sided Poisson test fired (p < alpha).
    pub declining: bool,
    pub decline_p: Option<f64>,
    /// The silence test fired (p < alpha).
    pub silent: bool,
    pub silence_p: Option<f64>,
    pub days_since_last_referral: Option<i64>,
    pub first_referral: Option<NaiveDate>,
    pub last_referral: Option<NaiveDate>,
    pub referrals_last_365_days: u64,
    pub admitted_last_365_days: u64,
    /// Admitted + not admitted.
    pub decided_last_365_days: u64,
    pub last_touch: Option<NaiveDate>,
    pub days_since_touch: Option<i64>,
    /// Has an active owner; `None` when no CRM record says.
    pub owned: Option<bool>,
    pub sent_last_365_days: u64,
    pub received_last_365_days: u64,
}

/// One partner's health as of a day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartnerHealth {
    pub partner_id: i64,
    pub name: String,
    /// The weighted score over the components that apply; `None` when none does.
    pub score: Option<f64>,
    pub state: HealthState,
    pub trend: Trend,
    pub components: Vec<Component>,
    pub facts: HealthFacts,
}

impl PartnerHealth {
    /// The component of `kind`.
    pub fn component(&self, kind: ComponentKind) -> Option<&Component> {
        self.components
            .iter()
            .find(|component| component.kind == kind)
    }

    /// The lowest-scoring component that applies and counts (weight > 0); ties go to the one
    /// listed first. Reciprocity at weight 0 is never the reason a partner looks weak.
    pub fn weakest(&self) -> Option<&Component> {
        self.components
            .iter()
            .filter(|component| component.weight > 0.0)
            .filter_map(|component| component.score.map(|score| (score, component)))
            .fold(
                None,
                |weakest: Option<(f64, &Component)>, (score, component)| match weakest {
                    Some((lowest, _)) if lowest <= score => weakest,
                    _ => Some((score, component)),
                },
            )
            .map(|(_, component)| component)
    }
}

/// What [`refresh`] did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthRefresh {
    /// False when the inputs were unchanged and the stored snapshots were returned.
    pub recomputed: bool,
    pub health: Vec<PartnerHealth>,
}

/// Deletes health runs and snapshots of days before `before` (ledger maintenance keeps more than
/// a year, so trends and `health --as-of` a year back still read stored days). Returns (runs,
/// snapshots) deleted. Call inside a transaction.
pub fn prune_before(connection: &Connection, before: NaiveDate) -> rusqlite::Result<(u64, u64)> {
    store::prune_before(connection, before)
}

/// Computes every in-scope partner's health as of `as_of` without storing anything (used by
/// `plan`). Trends compare with stored snapshots. Sorted worst first.
pub fn compute(
    connection: &Connection,
    config: &HealthConfig,
    as_of: NaiveDate,
) -> rusqlite::Result<Vec<PartnerHealth>> {
    let read = read_transaction(connection)?;
    let health = compute_within(connection, config, as_of)?;
    if let Some(read) = read {
        read.commit()?;
    }
    Ok(health)
}

/// Computes and stores a snapshot per partner and a `health_run` for `as_of`, or returns the
/// stored snapshots when the fingerprint of everything the result depends on is the one of the
/// latest run for that day. `now` (RFC 3339) stamps the run and the snapshots.
pub fn refresh(
    connection: &Connection,
    config: &HealthConfig,
    as_of: NaiveDate,
    now: &str,
) -> rusqlite::Result<HealthRefresh> {
    let started = std::time::Instant::now();
    let read = read_transaction(connection)?;
    let fingerprint = store::fingerprint(connection, config, as_of)?;
    if fingerprint.settled
        && store::latest_fingerprint(connection, as_of)?.as_deref()
            == Some(fingerprint.value.as_str())
    {
        let health = store::load_snapshots(connection, as_of)?;
        if let Some(read) = read {
            read.commit()?;
        }
        tracing::info!(%as_of, partners = health.len(), "partner health unchanged since the last run");
        return Ok(HealthRefresh {
            recomputed: false,
            health,
        });
    }
    let health = compute_within(connection, config, as_of)?;
    if let Some(read) = read {
        read.commit()?;
    }
    // Written after reading: data that arrived in between changes the next fingerprint, so at
    // worst the next run computes again.
    let write = if connection.is_autocommit() {
        Some(Transaction::new_unchecked(
            connection,
            TransactionBehavior::Immediate,
        )?)
    } else {
        None
    };
    store::save(
        connection,
        as_of,
        &fingerprint.value,
        &health,
        now,
        started.elapsed(),
    )?;
    if let Some(write) = write {
        write.commit()?;
    }
    let count = |state| {
        health
            .iter()
            .filter(|partner| partner.state == state)
            .count()
    };
    tracing::info!(
        %as_of,
        partners = health.len(),
        at_risk = count(HealthState::AtRisk),
        watch = count(HealthState::Watch),
        seconds = started.elapsed().as_secs_f64(),
        "partner health computed"
    );
    Ok(HealthRefresh {
        recomputed: true,
        health,
    })
}

/// A deferred transaction for a consistent read when the caller has none open.
fn read_transaction(connection: &Connection) -> rusqlite::Result<Option<Transaction<'_>>> {
    if connection.is_autocommit() {
        Transaction::new_unchecked(connection, TransactionBehavior::Deferred).map(Some)
    } else {
        Ok(None)
    }
}

fn compute_within(
    connection: &Connection,
    config: &HealthConfig,
    as_of: NaiveDate,
) -> rusqlite::Result<Vec<PartnerHealth>> {
    let windows = score::Windows::new(as_of, config);
    let ledger = read::read_ledger(connection, &windows)?;
    let facility_mean = ledger.facility_conversion();
    let mut trends = store::TrendReader::new(connection, as_of)?;
    let mut health = Vec::with_capacity(ledger.partners.len());
    for partner in ledger.partners.iter().filter(|partner| partner.in_scope()) {
        let mut scored = score::score_partner(partner, &windows, config, facility_mean);
        scored.trend = trends.trend(partner.partner_id, scored.score)?;
        health.push(scored);
    }
    sort_worst_first(&mut health);
    Ok(health)
}

/// At risk first, then by score ascending (no score last), then by partner id.
pub fn sort_worst_first(health: &mut [PartnerHealth]) {
    health.sort_by(|a, b| {
        let key = |p: &PartnerHealth| (p.state != HealthState::AtRisk, p.score.is_none());
        key(a)
            .cmp(&key(b))
            .then_with(|| {
                let (x, y) = (a.score.unwrap_or(0.0), b.score.unwrap_or(0.0));
                x.total_cmp(&y)
            })
            .then_with(|| a.partner_id.cmp(&b.partner_id))
    });
}
