//! `refbridge status`: what the ledger holds and what went wrong, for ops.
//!
//! Reads only. Shows counts, recent import runs and quarantine entries by location, field and
//! reason, CRM streams, the outbox, and identity resolution (live partners, how source records
//! were linked, the matches it was unsure of with a merge ready to paste). Quarantine never holds
//! row values and identity holds partner names and ids only, so nothing here can print a patient
//! value.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rusqlite::Connection;
use serde::Serialize;

use crate::ledger::Ledger;

/// How many import runs and quarantine entries the report lists.
const RECENT_RUNS: usize = 20;
const RECENT_QUARANTINE: usize = 50;
/// How many uncertain matches the text report lists (JSON lists all).
const TEXT_SUGGESTIONS: usize = 20;

#[derive(Debug, Serialize)]
pub struct Status {
    pub ledger: LedgerStatus,
    pub partners: PartnerCounts,
    pub referrals: ReferralCounts,
    pub import_runs: Vec<ImportRunRow>,
    pub quarantine: QuarantineStatus,
    /// The latest pull of each CRM stream.
    pub crm_streams: Vec<CrmStreamRow>,
    pub outbox: OutboxStatus,
    pub identity: IdentityStatus,
}

/// What identity resolution made of the source records.
#[derive(Debug, Serialize)]
pub struct IdentityStatus {
    /// Partners not merged into another.
    pub live_partners: i64,
    /// Partners merged into another (their ids still resolve).
    pub merged_partners: i64,
    /// Source records by how they were linked to their partner.
    pub source_records_by_method: BTreeMap<String, i64>,
    /// Matches identity resolution was not sure of, most confident first.
    pub suggestions: Vec<SuggestionRow>,
}

/// One uncertain match, with the config that would merge it.
#[derive(Debug, Serialize)]
pub struct SuggestionRow {
    pub partner_id: i64,
    pub partner_name: String,
    pub candidate_id: i64,
    pub candidate_name: String,
    pub method: String,
    pub confidence: f64,
    pub reason: String,
    pub first_seen_at: String,
    /// `[[identity.merge]]` with one record of each partner, ready to paste into the config.
    pub config: String,
}

#[derive(Debug, Serialize)]
pub struct CrmStreamRow {
    pub system: String,
    pub stream: String,
    pub records: i64,
    pub deleted: i64,
    pub last_run_at: Option<String>,
    pub last_outcome: Option<String>,
    pub last_api_calls: Option<i64>,
    pub watermark: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct OutboxStatus {
    pub pending: i64,
    pub stored: i64,
    pub refused: i64,
    /// Intents the CRM refused, latest first: key, error code and message.
    pub recent_refused: Vec<RefusedIntent>,
    /// Alerts by rule and state (`open`, `waiting` for a rep's budget, `done` by the rep).
    pub alerts: BTreeMap<String, BTreeMap<String, i64>>,
}

#[derive(Debug, Serialize)]
pub struct RefusedIntent {
    pub system: String,
    pub key: String,
    pub code: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct LedgerStatus {
    pub path: String,
    pub schema_version: i64,
}

#[derive(Debug, Serialize)]
pub struct PartnerCounts {
    pub total: i64,
    pub known_only_from_ehr: i64,
    pub with_npi: i64,
    pub source_records: i64,
}

#[derive(Debug, Serialize)]
pub struct ReferralCounts {
    pub total: i64,
    pub inbound: i64,
    pub outbound: i64,
    pub admitted: i64,
    pub not_admitted: i64,
    pub pending: i64,
    pub referred_out: i64,
}

#[derive(Debug, Serialize)]
pub struct ImportRunRow {
    pub id: i64,
    pub file_name: String,
    pub format: Option<String>,
    pub started_at: String,
    pub outcome: String,
    pub rows: i64,
    pub referrals_new: i64,
    pub referrals_updated: i64,
    pub referrals_unchanged: i64,
    pub quarantined: i64,
    pub warnings: i64,
    pub message: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct QuarantineStatus {
    pub rejected: i64,
    pub warnings: i64,
    pub recent: Vec<QuarantineRow>,
}

#[derive(Debug, Serialize)]
pub struct QuarantineRow {
    pub import_run_id: i64,
    pub file_name: String,
    pub location: String,
    pub field: Option<String>,
    pub severity: String,
    pub reason: String,
}

impl Status {
    /// Reads the report from the ledger.
    pub fn read(ledger: &Ledger) -> rusqlite::Result<Status> {
        let c = ledger.connection();
        let count = |sql: &str| -> rusqlite::Result<i64> { c.query_row(sql, [], |row| row.get(0)) };
        let by_disposition = |value: &str| -> rusqlite::Result<i64> {
            c.query_row(
                "SELECT count(*) FROM referral WHERE direction = 'in' AND disposition = ?1",
                [value],
                |row| row.get(0),
            )
        };
        Ok(Status {
            ledger: LedgerStatus {
                path: ledger.path().display().to_string(),
                schema_version: count("PRAGMA user_version")?,
            },
            partners: PartnerCounts {
                // Live partners: one merged into another is counted as that one.
                total: count("SELECT count(*) FROM partner WHERE merged_into IS NULL")?,
                known_only_from_ehr: count(
                    "SELECT count(*) FROM partner p WHERE merged_into IS NULL AND NOT EXISTS
                       (SELECT 1 FROM partner_source_record s
                        WHERE s.partner_id = p.id AND s.system <> 'ehr')",
                )?,
                with_npi: count(
                    "SELECT count(*) FROM partner WHERE merged_into IS NULL AND npi IS NOT NULL",
                )?,
                source_records: count("SELECT count(*) FROM partner_source_record")?,
            },
            referrals: ReferralCounts {
                total: count("SELECT count(*) FROM referral")?,
                inbound: count("SELECT count(*) FROM referral WHERE direction = 'in'")?,
                outbound: count("SELECT count(*) FROM referral WHERE direction = 'out'")?,
                admitted: by_disposition("admitted")?,
                not_admitted: by_disposition("not_admitted")?,
                pending: by_disposition("pending")?,
                referred_out: by_disposition("referred_out")?,
            },
            import_runs: recent_runs(c)?,
            quarantine: QuarantineStatus {
                rejected: count("SELECT count(*) FROM quarantine WHERE severity = 'rejected'")?,
                warnings: count("SELECT count(*) FROM quarantine WHERE severity = 'warning'")?,
                recent: recent_quarantine(c)?,
            },
            crm_streams: crm_streams(c)?,
            outbox: OutboxStatus {
                pending: count("SELECT count(*) FROM outbox WHERE status = 'pending'")?,
                stored: count("SELECT count(*) FROM outbox WHERE status = 'stored'")?,
                refused: count("SELECT count(*) FROM outbox WHERE status = 'permanent'")?,
                recent_refused: recent_refused(c)?,
                alerts: alerts_by_rule(c)?,
            },
            identity: IdentityStatus {
                live_partners: count("SELECT count(*) FROM partner WHERE merged_into IS NULL")?,
                merged_partners: count(
                    "SELECT count(*) FROM partner WHERE merged_into IS NOT NULL",
                )?,
                source_records_by_method: records_by_method(c)?,
                suggestions: suggestions(c)?,
            },
        })
    }

    /// The report as a terminal reads it.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Ledger     {} (schema {})",
            self.ledger.path, self.ledger.schema_version
        );
        let p = &self.partners;
        let _ = writeln!(
            out,
            "Partners   {} ({} known only from EHR names, {} with NPI; {} source records)",
            p.total, p.known_only_from_ehr, p.with_npi, p.source_records
        );
        let r = &self.referrals;
        let _ = writeln!(
            out,
            "Referrals  {} ({} inbound: {} admitted, {} not admitted, {} pending, {} referred out; {} outbound)",
            r.total, r.inbound, r.admitted, r.not_admitted, r.pending, r.referred_out, r.outbound
        );
        let _ = writeln!(out, "\nImport runs (latest {RECENT_RUNS})");
        if self.import_runs.is_empty() {
            let _ = writeln!(out, "  none yet");
        }
        for run in &self.import_runs {
            let _ = writeln!(
                out,
                "  #{:<5} {}  {:<9} {:<11} {}: {} rows, {} new, {} updated, {} unchanged, {} quarantined, {} warnings",
                run.id,
                run.started_at,
                run.outcome,
                run.format.as_deref().unwrap_or("-"),
                run.file_name,
                run.rows,
                run.referrals_new,
                run.referrals_updated,
                run.referrals_unchanged,
                run.quarantined,
                run.warnings
            );
            if let Some(message) = &run.message {
                let _ = writeln!(out, "         {message}");
            }
        }
        let q = &self.quarantine;
        let _ = writeln!(
            out,
            "\nQuarantine {} rejected, {} warnings (latest {RECENT_QUARANTINE})",
            q.rejected, q.warnings
        );
        for entry in &q.recent {
            let field = entry
                .field
                .as_deref()
                .map(|f| format!(", field {f}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:<8} {} {}{}: {} (run #{})",
                entry.severity,
                entry.file_name,
                entry.location,
                field,
                entry.reason,
                entry.import_run_id
            );
        }
        if !self.crm_streams.is_empty() {
            let _ = writeln!(out, "\nCRM streams");
            for row in &self.crm_streams {
                let _ = writeln!(
                    out,
                    "  {:<10} {:<10} {} records ({} deleted); last pull {} {} ({} API call(s)), watermark {}",
                    row.system,
                    row.stream,
                    row.records,
                    row.deleted,
                    row.last_run_at.as_deref().unwrap_or("never"),
                    row.last_outcome.as_deref().unwrap_or("-"),
                    row.last_api_calls.unwrap_or(0),
                    row.watermark.as_deref().unwrap_or("-")
                );
                if let Some(message) = &row.message {
                    let _ = writeln!(out, "             {message}");
                }
            }
        }
        let o = &self.outbox;
        if o.pending + o.stored + o.refused > 0 {
            let _ = writeln!(
                out,
                "\nOutbox     {} pending, {} stored, {} refused by the CRM",
                o.pending, o.stored, o.refused
            );
            for (rule, states) in &o.alerts {
                let get = |state: &str| states.get(state).copied().unwrap_or(0);
                let _ = writeln!(
                    out,
                    "  {rule:<20} {} open, {} waiting for budget, {} completed by the rep",
                    get("open"),
                    get("waiting"),
                    get("done")
                );
            }
            for refused in &o.recent_refused {
                let _ = writeln!(
                    out,
                    "  refused  {} {}: {} {}",
                    refused.system,
                    refused.key,
                    refused.code.as_deref().unwrap_or("-"),
                    refused.message.as_deref().unwrap_or("")
                );
            }
        }
        let i = &self.identity;
        let methods: Vec<String> = i
            .source_records_by_method
            .iter()
            .map(|(method, count)| format!("{method} {count}"))
            .collect();
        let _ = writeln!(
            out,
            "\nIdentity   {} live partners ({} merged into another); source records by link: {}",
            i.live_partners,
            i.merged_partners,
            if methods.is_empty() {
                "none yet".to_string()
            } else {
                methods.join(", ")
            }
        );
        if !i.suggestions.is_empty() {
            let _ = writeln!(
                out,
                "  {} uncertain matches, not merged (the {} most confident; paste a merge into the config to accept one):",
                i.suggestions.len(),
                TEXT_SUGGESTIONS.min(i.suggestions.len())
            );
        }
        for suggestion in i.suggestions.iter().take(TEXT_SUGGESTIONS) {
            let _ = writeln!(
                out,
                "  {:.2} {:<15} #{} {} / #{} {}: {}",
                suggestion.confidence,
                suggestion.method,
                suggestion.partner_id,
                suggestion.partner_name,
                suggestion.candidate_id,
                suggestion.candidate_name,
                suggestion.reason
            );
            for line in suggestion.config.lines() {
                let _ = writeln!(out, "       {line}");
            }
        }
        out
    }
}

fn records_by_method(c: &Connection) -> rusqlite::Result<BTreeMap<String, i64>> {
    let mut statement = c.prepare(
        "SELECT match_method, count(*) FROM partner_source_record GROUP BY match_method",
    )?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    rows.collect()
}

fn suggestions(c: &Connection) -> rusqlite::Result<Vec<SuggestionRow>> {
    // One record per partner for the merge line: its home CRM record, else its oldest record.
    let mut statement = c.prepare(
        "WITH reference AS (
             SELECT r.partner_id, r.system || ':' || r.external_key AS text,
                    row_number() OVER (PARTITION BY r.partner_id
                        ORDER BY (r.system = f.home_system AND r.external_key = f.home_crm_id) DESC,
                                 r.id) AS rank
             FROM partner_source_record r LEFT JOIN partner_profile f ON f.partner_id = r.partner_id
             WHERE r.partner_id IN (SELECT partner_id FROM identity_suggestion
                                    UNION SELECT candidate_id FROM identity_suggestion))
         SELECT s.partner_id, a.name, s.candidate_id, b.name, s.method, s.confidence, s.reason,
                s.first_seen_at, ra.text, rb.text
         FROM identity_suggestion s
         JOIN partner a ON a.id = s.partner_id
         JOIN partner b ON b.id = s.candidate_id
         LEFT JOIN reference ra ON ra.partner_id = s.partner_id AND ra.rank = 1
         LEFT JOIN reference rb ON rb.partner_id = s.candidate_id AND rb.rank = 1
         ORDER BY s.confidence DESC, s.partner_id, s.candidate_id",
    )?;
    let rows = statement.query_map([], |row| {
        let first: Option<String> = row.get(8)?;
        let second: Option<String> = row.get(9)?;
        let records: Vec<String> = [first, second]
            .into_iter()
            .flatten()
            .map(|reference| toml::Value::String(reference).to_string())
            .collect();
        Ok(SuggestionRow {
            partner_id: row.get(0)?,
            partner_name: row.get(1)?,
            candidate_id: row.get(2)?,
            candidate_name: row.get(3)?,
            method: row.get(4)?,
            confidence: row.get(5)?,
            reason: row.get(6)?,
            first_seen_at: row.get(7)?,
            config: format!("[[identity.merge]]\nrecords = [{}]", records.join(", ")),
        })
    })?;
    rows.collect()
}

fn crm_streams(c: &Connection) -> rusqlite::Result<Vec<CrmStreamRow>> {
    let mut statement = c.prepare(
        "SELECT s.system, s.stream,
                (SELECT count(*) FROM crm_record r WHERE r.system = s.system AND r.stream = s.stream),
                (SELECT count(*) FROM crm_record r WHERE r.system = s.system AND r.stream = s.stream AND r.deleted = 1),
                s.started_at, s.outcome, s.api_calls, s.watermark_after, s.message
         FROM sync_run s
         WHERE s.kind = 'pull' AND s.id = (SELECT max(id) FROM sync_run t
                                           WHERE t.system = s.system AND t.stream = s.stream AND t.kind = 'pull')
         ORDER BY s.system, s.stream",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(CrmStreamRow {
            system: row.get(0)?,
            stream: row.get(1)?,
            records: row.get(2)?,
            deleted: row.get(3)?,
            last_run_at: row.get(4)?,
            last_outcome: row.get(5)?,
            last_api_calls: row.get(6)?,
            watermark: row.get(7)?,
            message: row.get(8)?,
        })
    })?;
    rows.collect()
}

fn alerts_by_rule(c: &Connection) -> rusqlite::Result<BTreeMap<String, BTreeMap<String, i64>>> {
    let mut statement = c.prepare(
        "SELECT rule, state, count(*) FROM alert WHERE state != 'closed' GROUP BY rule, state",
    )?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, i64>(2)?,
        ))
    })?;
    let mut alerts: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for row in rows {
        let (rule, state, count) = row?;
        alerts.entry(rule).or_default().insert(state, count);
    }
    Ok(alerts)
}

fn recent_refused(c: &Connection) -> rusqlite::Result<Vec<RefusedIntent>> {
    let mut statement = c.prepare(
        "SELECT system, key, last_error_code, last_error FROM outbox WHERE status = 'permanent'
         ORDER BY updated_at DESC, id DESC LIMIT 20",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(RefusedIntent {
            system: row.get(0)?,
            key: row.get(1)?,
            code: row.get(2)?,
            message: row.get(3)?,
        })
    })?;
    rows.collect()
}

fn recent_runs(c: &Connection) -> rusqlite::Result<Vec<ImportRunRow>> {
    let mut statement = c.prepare(
        "SELECT id, file_name, format, started_at, outcome, rows, referrals_new, referrals_updated,
                referrals_unchanged, quarantined, warnings, message
         FROM import_run ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = statement.query_map([RECENT_RUNS as i64], |row| {
        Ok(ImportRunRow {
            id: row.get(0)?,
            file_name: row.get(1)?,
            format: row.get(2)?,
            started_at: row.get(3)?,
            outcome: row.get(4)?,
            rows: row.get(5)?,
            referrals_new: row.get(6)?,
            referrals_updated: row.get(7)?,
            referrals_unchanged: row.get(8)?,
            quarantined: row.get(9)?,
            warnings: row.get(10)?,
            message: row.get(11)?,
        })
    })?;
    rows.collect()
}

fn recent_quarantine(c: &Connection) -> rusqlite::Result<Vec<QuarantineRow>> {
    let mut statement = c.prepare(
        "SELECT import_run_id, file_name, location, field, severity, reason
         FROM quarantine ORDER BY id DESC LIMIT ?1",
    )?;
    let rows = statement.query_map([RECENT_QUARANTINE as i64], |row| {
        Ok(QuarantineRow {
            import_run_id: row.get(0)?,
            file_name: row.get(1)?,
            location: row.get(2)?,
            field: row.get(3)?,
            severity: row.get(4)?,
            reason: row.get(5)?,
        })
    })?;
    rows.collect()
}
