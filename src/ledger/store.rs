//! The statements an import uses. Callers hold the transaction; these functions never commit.

use rusqlite::{Connection, OptionalExtension, Statement, params};

use refbridge_model::{Problem, Referral};

use crate::partners::Resolved;

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

/// The run that already imported every row of a file with this hash, if any. A file that stopped
/// part-way (`partial`) may be imported again: its stored rows are upserted unchanged.
pub fn find_imported(connection: &Connection, sha256: &str) -> rusqlite::Result<Option<i64>> {
    connection
        .query_row(
            "SELECT id FROM import_run WHERE sha256 = ?1 AND outcome = 'imported'
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

/// Referrals stored by a [`ReferralWriter`], by what storing them did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertCounts {
    pub new: u64,
    pub updated: u64,
    pub unchanged: u64,
}

/// Stores referrals by natural key (source system, inquiry id, direction): a new key is inserted,
/// a known key is updated only when the new record changes a stored value (an empty value changes
/// nothing), an identical row is left untouched.
/// Statements are prepared once per import.
pub struct ReferralWriter<'c> {
    source_system: &'c str,
    run_id: i64,
    insert: Statement<'c>,
    update: Statement<'c>,
    counts: UpsertCounts,
}

impl<'c> ReferralWriter<'c> {
    pub fn new(
        connection: &'c Connection,
        source_system: &'c str,
        run_id: i64,
    ) -> rusqlite::Result<ReferralWriter<'c>> {
        Ok(ReferralWriter {
            source_system,
            run_id,
            insert: connection.prepare(
                "INSERT INTO referral (source_system, inquiry_id, direction, partner_id, parent_inquiry_id,
                     inquiry_date, referred_by, rep, payer, plan_type, level_of_care_scheme,
                     level_of_care_code, disposition, disposition_reason, admit_date, patient_token, zip3,
                     first_import_run_id, last_import_run_id, partner_source_record_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?18, ?19)
                 ON CONFLICT (source_system, inquiry_id, direction) DO NOTHING",
            )?,
            // A value the new record leaves empty never erases a stored one: exports differ in
            // what they carry (a FHIR request has no rep, a CSV row no ASAM coding). The
            // disposition and its reason always move together. The spelling moves with the partner:
            // a re-read naming the same partner by another spelling changes nothing, one naming
            // another partner moves both.
            update: connection.prepare(
                "UPDATE referral SET
                     partner_source_record_id = CASE WHEN ?4 IS NOT NULL AND partner_id IS NOT ?4
                         THEN ?19 ELSE COALESCE(partner_source_record_id, ?19) END,
                     partner_id = COALESCE(?4, partner_id),
                     parent_inquiry_id = COALESCE(?5, parent_inquiry_id), inquiry_date = ?6,
                     referred_by = COALESCE(?7, referred_by), rep = COALESCE(?8, rep),
                     payer = COALESCE(?9, payer), plan_type = COALESCE(?10, plan_type),
                     level_of_care_scheme = COALESCE(?11, level_of_care_scheme),
                     level_of_care_code = COALESCE(?12, level_of_care_code), disposition = ?13,
                     disposition_reason = ?14, admit_date = COALESCE(?15, admit_date),
                     patient_token = COALESCE(?16, patient_token), zip3 = COALESCE(?17, zip3),
                     last_import_run_id = ?18
                 WHERE source_system = ?1 AND inquiry_id = ?2 AND direction = ?3
                   AND ((?4 IS NOT NULL AND partner_id IS NOT ?4)
                     OR (?19 IS NOT NULL AND partner_source_record_id IS NULL)
                     OR (?5 IS NOT NULL AND parent_inquiry_id IS NOT ?5) OR inquiry_date IS NOT ?6
                     OR (?7 IS NOT NULL AND referred_by IS NOT ?7) OR (?8 IS NOT NULL AND rep IS NOT ?8)
                     OR (?9 IS NOT NULL AND payer IS NOT ?9) OR (?10 IS NOT NULL AND plan_type IS NOT ?10)
                     OR (?11 IS NOT NULL AND level_of_care_scheme IS NOT ?11)
                     OR (?12 IS NOT NULL AND level_of_care_code IS NOT ?12)
                     OR disposition IS NOT ?13 OR disposition_reason IS NOT ?14
                     OR (?15 IS NOT NULL AND admit_date IS NOT ?15)
                     OR (?16 IS NOT NULL AND patient_token IS NOT ?16)
                     OR (?17 IS NOT NULL AND zip3 IS NOT ?17))",
            )?,
            counts: UpsertCounts::default(),
        })
    }

    /// Stores one referral, named by `partner` (its partner and spelling), if it names one.
    pub fn upsert(
        &mut self,
        referral: &Referral,
        partner: Option<Resolved>,
    ) -> rusqlite::Result<()> {
        bind_referral(
            &mut self.insert,
            self.source_system,
            referral,
            partner,
            self.run_id,
        )?;
        if self.insert.raw_execute()? == 1 {
            self.counts.new += 1;
            return Ok(());
        }
        bind_referral(
            &mut self.update,
            self.source_system,
            referral,
            partner,
            self.run_id,
        )?;
        if self.update.raw_execute()? == 1 {
            self.counts.updated += 1;
        } else {
            self.counts.unchanged += 1;
        }
        Ok(())
    }

    /// What the referrals stored so far did.
    pub fn counts(&self) -> UpsertCounts {
        self.counts
    }
}

/// Binds one referral's values to parameters 1 to 19.
fn bind_referral(
    statement: &mut Statement<'_>,
    source_system: &str,
    referral: &Referral,
    partner: Option<Resolved>,
    run_id: i64,
) -> rusqlite::Result<()> {
    let mut inquiry_date = [0u8; 10];
    let mut admit_date = [0u8; 10];
    statement.raw_bind_parameter(1, source_system)?;
    statement.raw_bind_parameter(2, &referral.inquiry_id)?;
    statement.raw_bind_parameter(3, referral.direction.as_str())?;
    statement.raw_bind_parameter(4, partner.map(|p| p.partner_id))?;
    statement.raw_bind_parameter(5, &referral.parent_inquiry_id)?;
    statement.raw_bind_parameter(6, iso_date(referral.inquiry_date, &mut inquiry_date))?;
    statement.raw_bind_parameter(7, &referral.referred_by)?;
    statement.raw_bind_parameter(8, &referral.rep)?;
    statement.raw_bind_parameter(9, &referral.payer)?;
    statement.raw_bind_parameter(10, &referral.plan_type)?;
    statement.raw_bind_parameter(
        11,
        referral
            .level_of_care
            .as_ref()
            .map(|loc| loc.scheme.as_str()),
    )?;
    statement.raw_bind_parameter(
        12,
        referral.level_of_care.as_ref().map(|loc| loc.code.as_str()),
    )?;
    statement.raw_bind_parameter(13, referral.disposition.as_str())?;
    statement.raw_bind_parameter(
        14,
        referral.disposition_reason.map(|reason| reason.as_str()),
    )?;
    statement.raw_bind_parameter(
        15,
        referral
            .admit_date
            .map(|date| iso_date(date, &mut admit_date)),
    )?;
    statement.raw_bind_parameter(16, referral.patient.as_ref().map(|token| token.as_str()))?;
    statement.raw_bind_parameter(17, &referral.zip3)?;
    statement.raw_bind_parameter(18, run_id)?;
    statement.raw_bind_parameter(19, partner.map(|p| p.source_record_id))?;
    Ok(())
}

/// `YYYY-MM-DD` without an allocation.
fn iso_date(date: chrono::NaiveDate, buffer: &mut [u8; 10]) -> &str {
    use chrono::Datelike;
    let year = date.year().clamp(0, 9999) as u32;
    let digits = [
        year / 1000,
        year / 100 % 10,
        year / 10 % 10,
        year % 10,
        date.month() / 10,
        date.month() % 10,
        date.day() / 10,
        date.day() % 10,
    ];
    let positions = [0, 1, 2, 3, 5, 6, 8, 9];
    buffer[4] = b'-';
    buffer[7] = b'-';
    for (position, digit) in positions.iter().zip(digits) {
        buffer[*position] = b'0' + digit as u8;
    }
    std::str::from_utf8(buffer).expect("ASCII digits")
}

/// A partner row as the import's partner index needs it.
pub struct PartnerRow {
    pub id: i64,
    pub normalized_name: String,
    pub npi: Option<String>,
    /// The partner identity resolution merged this one into, if any.
    pub merged_into: Option<i64>,
}

pub fn load_partners(connection: &Connection) -> rusqlite::Result<Vec<PartnerRow>> {
    let mut statement = connection
        .prepare("SELECT id, normalized_name, npi, merged_into FROM partner ORDER BY id")?;
    let rows = statement.query_map([], |row| {
        Ok(PartnerRow {
            id: row.get(0)?,
            normalized_name: row.get(1)?,
            npi: row.get(2)?,
            merged_into: row.get(3)?,
        })
    })?;
    rows.collect()
}

/// A source record as the import's partner index needs it.
pub struct SourceRecordRow {
    pub id: i64,
    pub system: String,
    pub external_key: String,
    pub normalized_name: String,
    /// Its partner, or the partner that one was merged into.
    pub live_partner_id: i64,
}

/// Every source record (every spelling and CRM record already matched), oldest first.
pub fn load_source_records(connection: &Connection) -> rusqlite::Result<Vec<SourceRecordRow>> {
    let mut statement = connection.prepare(
        "SELECT s.id, s.system, s.external_key, s.normalized_name, COALESCE(p.merged_into, p.id)
         FROM partner_source_record s JOIN partner p ON p.id = s.partner_id
         ORDER BY s.id",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(SourceRecordRow {
            id: row.get(0)?,
            system: row.get(1)?,
            external_key: row.get(2)?,
            normalized_name: row.get(3)?,
            live_partner_id: row.get(4)?,
        })
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

/// Stores a new source record and returns its id (the existing one's when the key is known).
pub fn insert_source_record(
    connection: &Connection,
    record: &NewSourceRecord<'_>,
    now: &str,
) -> rusqlite::Result<i64> {
    let inserted = connection
        .prepare_cached(
            "INSERT INTO partner_source_record (partner_id, system, external_key, raw_name,
                 normalized_name, match_method, confidence, first_seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (system, external_key) DO NOTHING
             RETURNING id",
        )?
        .query_row(
            params![
                record.partner_id,
                record.system,
                record.external_key,
                record.raw_name,
                record.normalized_name,
                record.match_method,
                record.confidence,
                now
            ],
            |row| row.get(0),
        )
        .optional()?;
    match inserted {
        Some(id) => Ok(id),
        None => connection
            .prepare_cached(
                "SELECT id FROM partner_source_record WHERE system = ?1 AND external_key = ?2",
            )?
            .query_row(params![record.system, record.external_key], |row| {
                row.get(0)
            }),
    }
}
