//! Snapshots, runs and the fingerprint of the inputs: what lets a second run with no new data do
//! almost nothing.
//!
//! The fingerprint is a SHA-256 over the as-of day, the model version, the `[health]` values and
//! cheap watermarks of every table the result depends on. It must change whenever an input
//! changes and may change when one did not (then the next run merely computes again); it never
//! reads a patient column. Only this module writes `health_snapshot` and `health_run`.

use std::time::Duration;

use chrono::{Days, NaiveDate};
use rusqlite::{Connection, OptionalExtension, Statement, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    Component, HealthConfig, HealthFacts, HealthState, MODEL_VERSION, PartnerHealth, Trend,
};

/// The trend compares with the latest snapshot at least this many days older than the as-of day
/// (else with the oldest earlier one).
pub(super) const TREND_LOOKBACK_DAYS: u64 = 28;
/// A score that moved at least this many points is a trend.
pub(super) const TREND_MIN_CHANGE: f64 = 5.0;

/// What a snapshot's `components` column holds: enough to load a full `PartnerHealth` back.
#[derive(Serialize, Deserialize)]
struct StoredComponents {
    components: Vec<Component>,
    facts: HealthFacts,
}

/// The inputs' fingerprint. Not `settled` while an import is running: rows may still change
/// under an unchanged watermark, so such a fingerprint is stored but never trusted.
pub(super) struct Fingerprint {
    pub value: String,
    pub settled: bool,
}

pub(super) fn fingerprint(
    connection: &Connection,
    config: &HealthConfig,
    as_of: NaiveDate,
) -> rusqlite::Result<Fingerprint> {
    let mut hash = Sha256::new();
    let config_json = serde_json::to_string(config).unwrap_or_default();
    hash.update(format!(
        "model {MODEL_VERSION}\nas_of {as_of}\nconfig {config_json}\n"
    ));

    // Referrals change only through imports (a changed row gets that run's id), so the newest
    // import run that could have written stands for every update; count, max(id) and a checksum
    // of (id, partner) — all three read from the covering index referral_partner_date — catch
    // inserts, deletes and rows moved to another partner by identity resolution.
    let (import_watermark, running): (i64, i64) = connection.query_row(
        "SELECT coalesce(max(id), 0), count(CASE WHEN outcome = 'running' THEN 1 END)
         FROM import_run WHERE outcome <> 'duplicate'",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let referral: (i64, i64, f64) = connection.query_row(
        "SELECT count(*), coalesce(max(id), 0), total(partner_id * (id % 4093 + 1))
         FROM referral INDEXED BY referral_partner_date",
        [],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )?;
    hash.update(format!(
        "imports {import_watermark}\nreferral {referral:?}\n"
    ));

    // The small tables identity resolution rewrites: every column health reads, hashed.
    for sql in [
        "SELECT id, name, merged_into FROM partner",
        "SELECT id, partner_id, referral_id, direction, inquiry_date, disposition, deleted
         FROM crm_referral",
        "SELECT id, partner_id, kind, at FROM activity",
        "SELECT partner_id, owner_id, owner_name, owner_active FROM partner_profile",
    ] {
        hash_rows(connection, sql, &mut hash)?;
    }

    // Trends read earlier snapshots; every write of those comes with a run.
    let earlier: (i64, i64) = connection.query_row(
        "SELECT count(*), coalesce(max(id), 0) FROM health_run WHERE as_of < ?1",
        [as_of.to_string()],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    hash.update(format!("earlier runs {earlier:?}\n"));

    let value = hex::encode(hash.finalize());
    Ok(if running > 0 {
        Fingerprint {
            value: format!("unsettled:{value}"),
            settled: false,
        }
    } else {
        Fingerprint {
            value,
            settled: true,
        }
    })
}

/// Feeds every value of every row, with type tags and separators, into `hash`.
fn hash_rows(connection: &Connection, sql: &str, hash: &mut Sha256) -> rusqlite::Result<()> {
    use rusqlite::types::ValueRef;
    let mut statement = connection.prepare(sql)?;
    let columns = statement.column_count();
    let mut rows = statement.query([])?;
    let mut count: u64 = 0;
    while let Some(row) = rows.next()? {
        count += 1;
        for index in 0..columns {
            match row.get_ref(index)? {
                ValueRef::Null => hash.update([0u8]),
                ValueRef::Integer(value) => {
                    hash.update([1u8]);
                    hash.update(value.to_le_bytes());
                }
                ValueRef::Real(value) => {
                    hash.update([2u8]);
                    hash.update(value.to_le_bytes());
                }
                ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
                    hash.update([3u8]);
                    hash.update((bytes.len() as u64).to_le_bytes());
                    hash.update(bytes);
                }
            }
        }
    }
    hash.update(count.to_le_bytes());
    Ok(())
}

/// Deletes runs and snapshots of days before `before` (ledger maintenance); the newest run is
/// always kept. Returns (runs, snapshots) deleted. Call inside a transaction.
pub(super) fn prune_before(
    connection: &Connection,
    before: NaiveDate,
) -> rusqlite::Result<(u64, u64)> {
    let before = before.to_string();
    let runs = connection.execute(
        "DELETE FROM health_run WHERE as_of < ?1 AND id <> (SELECT max(id) FROM health_run)",
        [&before],
    )?;
    let snapshots =
        connection.execute("DELETE FROM health_snapshot WHERE as_of < ?1", [&before])?;
    Ok((runs as u64, snapshots as u64))
}

/// The fingerprint of the latest run for `as_of`.
pub(super) fn latest_fingerprint(
    connection: &Connection,
    as_of: NaiveDate,
) -> rusqlite::Result<Option<String>> {
    connection
        .query_row(
            "SELECT fingerprint FROM health_run WHERE as_of = ?1 ORDER BY id DESC LIMIT 1",
            [as_of.to_string()],
            |row| row.get(0),
        )
        .optional()
}

/// The stored snapshots of `as_of`, worst first.
pub(super) fn load_snapshots(
    connection: &Connection,
    as_of: NaiveDate,
) -> rusqlite::Result<Vec<PartnerHealth>> {
    // One primary-key lookup per partner (CROSS JOIN keeps partner as the outer loop), instead
    // of a scan of every snapshot ever stored.
    let mut statement = connection.prepare(
        "SELECT p.id, p.name, s.score, s.state, s.trend, s.components
         FROM partner p CROSS JOIN health_snapshot s
         WHERE s.partner_id = p.id AND s.as_of = ?1",
    )?;
    let rows = statement.query_map([as_of.to_string()], |row| {
        let invalid = |index: usize, what: &str| {
            rusqlite::Error::FromSqlConversionFailure(
                index,
                rusqlite::types::Type::Text,
                format!("not a stored {what}").into(),
            )
        };
        let state: String = row.get(3)?;
        let trend: String = row.get(4)?;
        let components: String = row.get(5)?;
        let stored: StoredComponents = serde_json::from_str(&components).map_err(|error| {
            rusqlite::Error::FromSqlConversionFailure(
                5,
                rusqlite::types::Type::Text,
                Box::new(error),
            )
        })?;
        Ok(PartnerHealth {
            partner_id: row.get(0)?,
            name: row.get(1)?,
            score: row.get(2)?,
            state: HealthState::parse(&state).ok_or_else(|| invalid(3, "state"))?,
            trend: Trend::parse(&trend).ok_or_else(|| invalid(4, "trend"))?,
            components: stored.components,
            facts: stored.facts,
        })
    })?;
    let mut health = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    super::sort_worst_first(&mut health);
    Ok(health)
}

/// Stores `health` as the snapshots of `as_of` (replacing that day's earlier ones, and removing
/// those of partners no longer in scope) and records the run. The caller owns the transaction.
pub(super) fn save(
    connection: &Connection,
    as_of: NaiveDate,
    fingerprint: &str,
    health: &[PartnerHealth],
    now: &str,
    elapsed: Duration,
) -> rusqlite::Result<()> {
    let day = as_of.to_string();
    let mut upsert = connection.prepare(
        "INSERT INTO health_snapshot
             (partner_id, as_of, score, state, trend, components, model_version, computed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (partner_id, as_of) DO UPDATE SET
             score = excluded.score, state = excluded.state, trend = excluded.trend,
             components = excluded.components, model_version = excluded.model_version,
             computed_at = excluded.computed_at",
    )?;
    let mut kept = std::collections::HashSet::with_capacity(health.len());
    for partner in health {
        let components = serde_json::to_string(&StoredComponents {
            components: partner.components.clone(),
            facts: partner.facts.clone(),
        })
        .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))?;
        upsert.execute(params![
            partner.partner_id,
            day,
            partner.score,
            partner.state.as_str(),
            partner.trend.as_str(),
            components,
            MODEL_VERSION,
            now,
        ])?;
        kept.insert(partner.partner_id);
    }
    let mut remove =
        connection.prepare("DELETE FROM health_snapshot WHERE partner_id = ?1 AND as_of = ?2")?;
    let mut partners = connection.prepare("SELECT id FROM partner")?;
    let ids = partners
        .query_map([], |row| row.get::<_, i64>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for id in ids.into_iter().filter(|id| !kept.contains(id)) {
        remove.execute(params![id, day])?;
    }
    let finished = chrono::DateTime::parse_from_rfc3339(now)
        .ok()
        .and_then(|started| {
            chrono::TimeDelta::from_std(elapsed)
                .ok()
                .map(|delta| started + delta)
        })
        .map_or_else(|| now.to_string(), |finished| finished.to_rfc3339());
    connection.execute(
        "INSERT INTO health_run (as_of, fingerprint, partners, started_at, finished_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![day, fingerprint, health.len() as i64, now, finished],
    )?;
    Ok(())
}

/// Reads the score each partner's trend compares with.
pub(super) struct TrendReader<'c> {
    latest_before: Statement<'c>,
    oldest_before: Statement<'c>,
    lookback_day: String,
    as_of_day: String,
}

impl<'c> TrendReader<'c> {
    pub fn new(connection: &'c Connection, as_of: NaiveDate) -> rusqlite::Result<TrendReader<'c>> {
        Ok(TrendReader {
            latest_before: connection.prepare(
                "SELECT score FROM health_snapshot WHERE partner_id = ?1 AND as_of <= ?2
                 ORDER BY as_of DESC LIMIT 1",
            )?,
            oldest_before: connection.prepare(
                "SELECT score FROM health_snapshot WHERE partner_id = ?1 AND as_of < ?2
                 ORDER BY as_of ASC LIMIT 1",
            )?,
            lookback_day: as_of
                .checked_sub_days(Days::new(TREND_LOOKBACK_DAYS))
                .unwrap_or(NaiveDate::MIN)
                .to_string(),
            as_of_day: as_of.to_string(),
        })
    }

    /// Up or down when `score` moved by at least [`TREND_MIN_CHANGE`] against the snapshot
    /// compared with; flat otherwise, or when either score is missing.
    pub fn trend(&mut self, partner_id: i64, score: Option<f64>) -> rusqlite::Result<Trend> {
        let Some(score) = score else {
            return Ok(Trend::Flat);
        };
        let earlier: Option<Option<f64>> = match self
            .latest_before
            .query_row(params![partner_id, self.lookback_day], |row| row.get(0))
            .optional()?
        {
            Some(found) => Some(found),
            None => self
                .oldest_before
                .query_row(params![partner_id, self.as_of_day], |row| row.get(0))
                .optional()?,
        };
        Ok(match earlier.flatten() {
            Some(before) if score - before >= TREND_MIN_CHANGE => Trend::Up,
            Some(before) if before - score >= TREND_MIN_CHANGE => Trend::Down,
            _ => Trend::Flat,
        })
    }
}
