//! The statements an import uses. Callers hold the transaction; these functions never commit.

use rusqlite::{Connection, OptionalExtension, params};

use refbridge_model::{Problem, Referral};

/// The per-file figures an import run records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RunCounts {
    pub rows: u64,
    pub referrals_new: u64,
    pub referrals_updated: u64,
    pub referrals_unchanged: u64,
    pub quarantined: u64,
    pub warnings: u64,
    pub skipped: u64,
}

impl std::ops::AddAssign for RunCounts {
    fn add_assign(&mut self, other: RunCounts) {
        self.rows += other.rows;
        self.referrals_new += other.referrals_new;
        self.referrals_updated += other.referrals_updated;
        self.referrals_unchanged += other.referrals_unchanged;
        self.quarantined += other.quarantined;
        self.warnings += other.warnings;
        self.skipped += other.skipped;
    }
}

/// What storing a referral did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    New,
    Updated,
    Unchanged,
}

pub fn begin_import_run(
    connection: &Connection,
    file_name: &str,
    file_path: &str,
    sha256: &str,
    size_bytes: u64,
    now: &str,
) -> rusqlite::Result<i64> {
    connection.execute(
        "INSERT INTO import_run (file_name, file_path, sha256, size_bytes, started_at, outcome)
         VALUES (?1, ?2, ?3, ?4, ?5, 'running')",
        params![file_name, file_path, sha256, size_bytes as i64, now],
    )?;
    Ok(connection.last_insert_rowid())
}

#[allow(clippy::too_many_arguments)]
pub fn finish_import_run(
    connection: &Connection,
    run_id: i64,
    format: Option<&str>,
    counts: &RunCounts,
    outcome: &str,
    message: Option<&str>,
    now: &str,
) -> rusqlite::Result<()> {
    connection.execute(
        "UPDATE import_run SET format = ?2, finished_at = ?3, rows = ?4, referrals_new = ?5,
             referrals_updated = ?6, referrals_unchanged = ?7, quarantined = ?8, warnings = ?9,
             skipped = ?10, outcome = ?11, message = ?12
         WHERE id = ?1",
        params![
            run_id,
            format,
            now,
            counts.rows as i64,
            counts.referrals_new as i64,
            counts.referrals_updated as i64,
            counts.referrals_unchanged as i64,
            counts.quarantined as i64,
            counts.warnings as i64,
            counts.skipped as i64,
            outcome,
            message
        ],
    )?;
    Ok(())
}

/// The run that already imported a file with this hash, if any.
pub fn find_imported(connection: &Connection, sha256: &str) -> rusqlite::Result<Option<i64>> {
    connection
        .query_row(
            "SELECT id FROM import_run WHERE sha256 = ?1 AND outcome IN ('imported', 'partial')
             ORDER BY id LIMIT 1",
            [sha256],
            |row| row.get(0),
        )
        .optional()
}

pub fn insert_quarantine(
    connection: &Connection,
    run_id: i64,
    file_name: &str,
    problem: &Problem,
    severity: &str,
    now: &str,
) -> rusqlite::Result<()> {
    connection
        .prepare_cached(
            "INSERT INTO quarantine (import_run_id, file_name, location, field, reason, severity, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            run_id,
            file_name,
            problem.location.to_string(),
            problem.field,
            problem.reason,
            severity,
            now
        ])?;
    Ok(())
}

pub fn append_audit(
    connection: &Connection,
    action: &str,
    subject: &str,
    detail: &str,
    now: &str,
) -> rusqlite::Result<()> {
    connection.execute(
        "INSERT INTO audit_log (at, action, subject, detail) VALUES (?1, ?2, ?3, ?4)",
        params![now, action, subject, detail],
    )?;
    Ok(())
}

/// Where a referral's partners and run come from.
pub struct ReferralLinks<'a> {
    pub source_system: &'a str,
    pub partner_id: Option<i64>,
    pub run_id: i64,
    pub now: &'a str,
}

/// Inserts a referral by its natural key (source system, inquiry id, direction), or updates it when
/// any stored value differs; an identical row is left untouched.
pub fn upsert_referral(
    connection: &Connection,
    referral: &Referral,
    links: &ReferralLinks<'_>,
) -> rusqlite::Result<Upsert> {
    let inquiry_date = referral.inquiry_date.to_string();
    let admit_date = referral.admit_date.map(|date| date.to_string());
    let values = params![
        links.source_system,
        referral.inquiry_id,
        referral.direction.as_str(),
        links.partner_id,
        referral.parent_inquiry_id,
        inquiry_date,
        referral.referred_by,
        referral.rep,
        referral.payer,
        referral.plan_type,
        referral
            .level_of_care
            .as_ref()
            .map(|loc| loc.scheme.as_str()),
        referral.level_of_care.as_ref().map(|loc| loc.code.as_str()),
        referral.disposition.as_str(),
        referral.disposition_reason.map(|reason| reason.as_str()),
        admit_date,
        referral.patient.as_ref().map(|token| token.as_str()),
        referral.zip3,
        links.run_id,
        links.now,
    ];
    let inserted = connection
        .prepare_cached(
            "INSERT INTO referral (source_system, inquiry_id, direction, partner_id, parent_inquiry_id,
                 inquiry_date, referred_by, rep, payer, plan_type, level_of_care_scheme,
                 level_of_care_code, disposition, disposition_reason, admit_date, patient_token, zip3,
                 first_import_run_id, last_import_run_id, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                 ?18, ?18, ?19, ?19)
             ON CONFLICT (source_system, inquiry_id, direction) DO NOTHING",
        )?
        .execute(values)?;
    if inserted == 1 {
        return Ok(Upsert::New);
    }
    let updated = connection
        .prepare_cached(
            "UPDATE referral SET partner_id = ?4, parent_inquiry_id = ?5, inquiry_date = ?6,
                 referred_by = ?7, rep = ?8, payer = ?9, plan_type = ?10, level_of_care_scheme = ?11,
                 level_of_care_code = ?12, disposition = ?13, disposition_reason = ?14,
                 admit_date = ?15, patient_token = ?16, zip3 = ?17, last_import_run_id = ?18,
                 updated_at = ?19
             WHERE source_system = ?1 AND inquiry_id = ?2 AND direction = ?3
               AND (partner_id IS NOT ?4 OR parent_inquiry_id IS NOT ?5 OR inquiry_date IS NOT ?6
                 OR referred_by IS NOT ?7 OR rep IS NOT ?8 OR payer IS NOT ?9 OR plan_type IS NOT ?10
                 OR level_of_care_scheme IS NOT ?11 OR level_of_care_code IS NOT ?12
                 OR disposition IS NOT ?13 OR disposition_reason IS NOT ?14 OR admit_date IS NOT ?15
                 OR patient_token IS NOT ?16 OR zip3 IS NOT ?17)",
        )?
        .execute(values)?;
    Ok(if updated == 1 {
        Upsert::Updated
    } else {
        Upsert::Unchanged
    })
}

/// A partner row as identity resolution needs it.
pub struct PartnerRow {
    pub id: i64,
    pub normalized_name: String,
    pub npi: Option<String>,
}

pub fn load_partners(connection: &Connection) -> rusqlite::Result<Vec<PartnerRow>> {
    let mut statement = connection.prepare("SELECT id, normalized_name, npi FROM partner")?;
    let rows = statement.query_map([], |row| {
        Ok(PartnerRow {
            id: row.get(0)?,
            normalized_name: row.get(1)?,
            npi: row.get(2)?,
        })
    })?;
    rows.collect()
}

/// (system, external key, normalized name, partner id) of every source record.
pub fn load_source_records(
    connection: &Connection,
) -> rusqlite::Result<Vec<(String, String, String, i64)>> {
    let mut statement = connection.prepare(
        "SELECT system, external_key, normalized_name, partner_id FROM partner_source_record",
    )?;
    let rows = statement.query_map([], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
    })?;
    rows.collect()
}

pub struct NewPartner<'a> {
    pub name: &'a str,
    pub normalized_name: &'a str,
    pub npi: Option<&'a str>,
    pub source_type: Option<&'a str>,
    pub origin: &'a str,
}

pub fn insert_partner(
    connection: &Connection,
    partner: &NewPartner<'_>,
    now: &str,
) -> rusqlite::Result<i64> {
    connection
        .prepare_cached(
            "INSERT INTO partner (name, normalized_name, npi, source_type, origin, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        )?
        .execute(params![
            partner.name,
            partner.normalized_name,
            partner.npi,
            partner.source_type,
            partner.origin,
            now
        ])?;
    Ok(connection.last_insert_rowid())
}

/// Fills in a partner's NPI or source type where they are still unknown.
pub fn complete_partner(
    connection: &Connection,
    partner_id: i64,
    npi: Option<&str>,
    source_type: Option<&str>,
    now: &str,
) -> rusqlite::Result<()> {
    connection
        .prepare_cached(
            "UPDATE partner SET npi = COALESCE(npi, ?2), source_type = COALESCE(source_type, ?3),
                 updated_at = ?4
             WHERE id = ?1 AND ((npi IS NULL AND ?2 IS NOT NULL) OR (source_type IS NULL AND ?3 IS NOT NULL))",
        )?
        .execute(params![partner_id, npi, source_type, now])?;
    Ok(())
}

pub struct NewSourceRecord<'a> {
    pub partner_id: i64,
    pub system: &'a str,
    pub external_key: &'a str,
    pub raw_name: &'a str,
    pub normalized_name: &'a str,
    pub match_method: &'a str,
    pub confidence: f64,
}

pub fn insert_source_record(
    connection: &Connection,
    record: &NewSourceRecord<'_>,
    now: &str,
) -> rusqlite::Result<()> {
    connection
        .prepare_cached(
            "INSERT INTO partner_source_record (partner_id, system, external_key, raw_name,
                 normalized_name, match_method, confidence, first_seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (system, external_key) DO NOTHING",
        )?
        .execute(params![
            record.partner_id,
            record.system,
            record.external_key,
            record.raw_name,
            record.normalized_name,
            record.match_method,
            record.confidence,
            now
        ])?;
    Ok(())
}
