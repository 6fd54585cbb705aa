//! EHR exports into the ledger: file hash, format, streaming parse, partner resolution, upserts.
//!
//! One code path serves `refbridge import FILE…` and the inbox scan. Each file becomes an
//! `import_run`; rows are stored in transactions of `ledger.import_batch_rows`, so a crash loses at
//! most the batch in flight and a re-run (upsert by natural key) completes the file without
//! duplicates. A file whose bytes were already imported is recorded as a duplicate and changes no
//! referral. Bad rows go to quarantine beside the good ones; nothing here logs a row's values.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use refbridge_ehr::{ExportReader, Format, ReadError, Record, detect_format};
use refbridge_model::{Direction, Disposition, Location, PartnerRef, Problem, Referral};
use rusqlite::Connection;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{AliasConfig, EhrConfig};
use crate::ledger::store::{self, ReferralWriter, RunCounts};
use crate::ledger::{Ledger, LedgerError};
use crate::partners::{PartnerResolver, normalize_name};
use crate::stop::StopSignal;

/// The source system EHR referrals are keyed under.
pub const EHR_SYSTEM: &str = "ehr";

/// Rows between two progress events.
const PROGRESS_EVERY_ROWS: u64 = 100_000;

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every row was read (bad ones quarantined).
    Imported,
    /// The file stopped being readable part-way; the rows before that point are stored.
    Partial,
    /// Nothing in the file could be read as an export; the file is quarantined whole.
    Rejected,
    /// The same bytes were imported before; nothing changed.
    Duplicate,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Imported => "imported",
            Outcome::Partial => "partial",
            Outcome::Rejected => "rejected",
            Outcome::Duplicate => "duplicate",
        }
    }
}

/// The result of importing one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub path: PathBuf,
    pub run_id: i64,
    pub format: Option<&'static str>,
    pub outcome: Outcome,
    #[serde(flatten)]
    pub counts: RunCounts,
    /// Why the file was rejected or stopped early, or which run it duplicates.
    pub message: Option<String>,
}

/// The result of importing several files.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub files: u64,
    #[serde(flatten)]
    pub totals: RunCounts,
    pub partners_new: u64,
    pub file_reports: Vec<FileReport>,
    /// True when a stop request ended an inbox scan before every waiting file was imported.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
}

/// Failures that stop an import: the ledger, or a file that cannot be opened at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot move {path} out of the inbox")]
    Move {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Imports EHR exports into one ledger.
pub struct Importer<'a> {
    ledger: &'a mut Ledger,
    reader: ExportReader,
    aliases: Vec<AliasConfig>,
    batch_rows: usize,
    stop: Option<StopSignal>,
}

impl<'a> Importer<'a> {
    pub fn new(
        ledger: &'a mut Ledger,
        reader: ExportReader,
        aliases: &[AliasConfig],
        batch_rows: usize,
    ) -> Importer<'a> {
        Importer {
            ledger,
            reader,
            aliases: aliases.to_vec(),
            batch_rows: batch_rows.max(1),
            stop: None,
        }
    }

    /// Makes an inbox scan stop after the file it is importing once `stop` is raised; the files
    /// not reached stay in the inbox for the next scan.
    pub fn stop_on(mut self, stop: StopSignal) -> Importer<'a> {
        self.stop = Some(stop);
        self
    }

    /// Builds the export reader for a configured EHR connector.
    pub fn reader_for(ehr: &EhrConfig, patient_key: &[u8]) -> ExportReader {
        ExportReader {
            csv: ehr.csv.clone(),
            fhir: ehr.fhir.clone(),
            patient_key: refbridge_model::PatientKey::new(patient_key),
            level_of_care_scheme: ehr.level_of_care_scheme.clone(),
        }
    }

    /// Imports each file in order.
    pub fn import_files(&mut self, paths: &[PathBuf]) -> Result<ImportReport, ImportError> {
        let mut report = ImportReport::default();
        for path in paths {
            let file_report = self.import_file(path, &mut report.partners_new)?;
            report.files += 1;
            report.totals += file_report.counts;
            report.file_reports.push(file_report);
        }
        Ok(report)
    }

    /// Imports every export waiting in `inbox`, then moves each file to `inbox/imported/` (or
    /// `inbox/rejected/` when nothing in it could be read). Hidden files and names ending in
    /// `.tmp`, `.part` or `.partial` are still being written and are left alone.
    pub fn import_inbox(&mut self, inbox: &Path) -> Result<ImportReport, ImportError> {
        let read_error = |source| ImportError::Read {
            path: inbox.to_path_buf(),
            source,
        };
        private_dir(inbox).map_err(read_error)?;
        let mut waiting = Vec::new();
        for entry in std::fs::read_dir(inbox).map_err(read_error)? {
            let entry = entry.map_err(read_error)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let in_progress = name.starts_with('.')
                || [".tmp", ".part", ".partial"]
                    .iter()
                    .any(|suffix| name.ends_with(suffix));
            if entry.file_type().map_err(read_error)?.is_file() && !in_progress {
                waiting.push(entry.path());
            }
        }
        waiting.sort();
        let mut report = ImportReport::default();
        for path in waiting {
            if self.stop.as_ref().is_some_and(StopSignal::is_requested) {
                report.stopped = true;
                break;
            }
            let file_report = self.import_file(&path, &mut report.partners_new)?;
            let folder = if file_report.outcome == Outcome::Rejected {
                "rejected"
            } else {
                "imported"
            };
            move_into(&path, &inbox.join(folder), file_report.run_id)?;
            report.files += 1;
            report.totals += file_report.counts;
            report.file_reports.push(file_report);
        }
        Ok(report)
    }

    fn import_file(
        &mut self,
        path: &Path,
        partners_new: &mut u64,
    ) -> Result<FileReport, ImportError> {
        let file_name = path.file_name().map_or_else(
            || path.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        );
        let (sha256, size_bytes) = hash_file(path).map_err(|source| ImportError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let now = now();
        let connection = self.ledger.connection();
        let path_text = path.display().to_string();
        let sql = |source| self.ledger.sql_error(source);

        if let Some(earlier) = store::find_imported(connection, &sha256).map_err(sql)? {
            let message =
                format!("identical to the file imported by run {earlier}; nothing changed");
            let run_id = in_transaction(connection, |c| {
                let run_id =
                    store::begin_import_run(c, &file_name, &path_text, &sha256, size_bytes, &now)?;
                store::finish_import_run(
                    c,
                    run_id,
                    None,
                    &RunCounts::default(),
                    "duplicate",
                    Some(&message),
                    &now,
                )?;
                store::append_audit(
                    c,
                    "import",
                    &file_name,
                    &audit_detail(&sha256, None, Outcome::Duplicate, &RunCounts::default()),
                    &now,
                )?;
                Ok(run_id)
            })
            .map_err(sql)?;
            tracing::info!(file = %file_name, run_id, earlier_run = earlier, "file already imported; skipped");
            return Ok(FileReport {
                path: path.to_path_buf(),
                run_id,
                format: None,
                outcome: Outcome::Duplicate,
                counts: RunCounts::default(),
                message: Some(message),
            });
        }

        let format = match detect_format(path) {
            Ok(format) => Ok(format),
            Err(refbridge_ehr::DetectError::Unusable(problem)) => Err(problem),
            Err(refbridge_ehr::DetectError::Io(source)) => {
                return Err(ImportError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let mut resolver =
            PartnerResolver::load(connection, EHR_SYSTEM, &self.aliases).map_err(sql)?;
        connection.execute_batch("BEGIN IMMEDIATE").map_err(sql)?;
        let run_id = store::begin_import_run(
            connection, &file_name, &path_text, &sha256, size_bytes, &now,
        )
        .map_err(|source| rollback(connection, source))
        .map_err(sql)?;
        tracing::info!(file = %file_name, run_id, size_bytes, "import started");

        let mut counts = RunCounts::default();
        let mut stopped: Option<Problem> = None;
        let format = match format {
            Ok(format) => {
                let referrals = ReferralWriter::new(connection, EHR_SYSTEM, run_id)
                    .map_err(|source| rollback(connection, source))
                    .map_err(sql)?;
                let mut writer = BatchWriter {
                    connection,
                    referrals,
                    resolver: &mut resolver,
                    counts: &mut counts,
                    run_id,
                    file_name: &file_name,
                    now: &now,
                    in_batch: 0,
                    batch_rows: self.batch_rows,
                };
                let read = self
                    .reader
                    .read(path, format, &mut |record| writer.store(record));
                // Whatever stopped the reader, the rows before it are stored.
                let failed = match read {
                    Ok(()) => writer.finish().err(),
                    Err(ReadError::Unusable(problem)) => {
                        stopped = Some(problem);
                        writer.finish().err()
                    }
                    Err(ReadError::Io(error)) => {
                        stopped = Some(Problem::new(
                            Location::File,
                            None,
                            format!("reading stopped: {error}"),
                        ));
                        writer.finish().err()
                    }
                    Err(ReadError::Sink(source)) => Some(source),
                };
                if let Some(source) = failed {
                    let error = rollback(connection, source);
                    mark_failed(connection, run_id, &error, &now);
                    return Err(sql(error).into());
                }
                Some(format)
            }
            Err(problem) => {
                stopped = Some(problem);
                None
            }
        };

        let outcome = match (&stopped, counts.rows) {
            (None, _) => Outcome::Imported,
            (Some(_), 0) => Outcome::Rejected,
            (Some(_), _) => Outcome::Partial,
        };
        let message = stopped.as_ref().map(|problem| problem.to_string());
        let finish = |c: &Connection| -> rusqlite::Result<()> {
            if let Some(problem) = &stopped {
                store::insert_quarantine(c, run_id, &file_name, problem, "rejected", &now)?;
            }
            let mut final_counts = counts;
            final_counts.quarantined += u64::from(stopped.is_some());
            store::finish_import_run(
                c,
                run_id,
                format.map(Format::as_str),
                &final_counts,
                outcome.as_str(),
                message.as_deref(),
                &now,
            )?;
            store::append_audit(
                c,
                "import",
                &file_name,
                &audit_detail(&sha256, format, outcome, &final_counts),
                &now,
            )?;
            c.execute_batch("COMMIT")
        };
        finish(connection)
            .map_err(|source| rollback(connection, source))
            .map_err(sql)?;
        counts.quarantined += u64::from(stopped.is_some());
        *partners_new += resolver.partners_created;
        match &message {
            Some(reason) => {
                tracing::warn!(file = %file_name, run_id, outcome = outcome.as_str(), rows = counts.rows, reason = %reason, "import stopped early")
            }
            None => tracing::info!(
                file = %file_name, run_id, rows = counts.rows, new = counts.referrals_new,
                updated = counts.referrals_updated, unchanged = counts.referrals_unchanged,
                quarantined = counts.quarantined, warnings = counts.warnings, "import finished"
            ),
        }
        Ok(FileReport {
            path: path.to_path_buf(),
            run_id,
            format: format.map(Format::as_str),
            outcome,
            counts,
            message,
        })
    }
}

/// Stores records as the reader hands them over, committing every `batch_rows` rows.
struct BatchWriter<'a> {
    connection: &'a Connection,
    referrals: ReferralWriter<'a>,
    resolver: &'a mut PartnerResolver,
    counts: &'a mut RunCounts,
    run_id: i64,
    file_name: &'a str,
    now: &'a str,
    in_batch: usize,
    batch_rows: usize,
}

impl BatchWriter<'_> {
    fn store(&mut self, record: Record) -> rusqlite::Result<()> {
        self.counts.rows += 1;
        match record {
            Record::Referral {
                mut referral,
                warnings,
                ..
            } => {
                for warning in &warnings {
                    store::insert_quarantine(
                        self.connection,
                        self.run_id,
                        self.file_name,
                        warning,
                        "warning",
                        self.now,
                    )?;
                    self.counts.warnings += 1;
                }
                if referral.direction == Direction::Out
                    && let Some(parent) = &referral.parent_inquiry_id
                {
                    referral.inquiry_id = outbound_key(parent, referral.partner.as_ref());
                }
                let refer_out = referral.referred_out_to.clone().map(|target| Referral {
                    inquiry_id: outbound_key(&referral.inquiry_id, Some(&target)),
                    direction: Direction::Out,
                    partner: Some(target),
                    referred_out_to: None,
                    parent_inquiry_id: Some(referral.inquiry_id.clone()),
                    referred_by: None,
                    disposition: Disposition::Pending,
                    disposition_reason: None,
                    admit_date: None,
                    ..referral.clone()
                });
                self.store_referral(referral)?;
                if let Some(refer_out) = refer_out {
                    self.store_referral(refer_out)?;
                }
            }
            Record::Rejected(problem) => {
                store::insert_quarantine(
                    self.connection,
                    self.run_id,
                    self.file_name,
                    &problem,
                    "rejected",
                    self.now,
                )?;
                self.counts.quarantined += 1;
            }
            Record::Skipped { .. } => self.counts.skipped += 1,
        }
        self.in_batch += 1;
        if self.in_batch >= self.batch_rows {
            self.connection.execute_batch("COMMIT; BEGIN IMMEDIATE")?;
            self.in_batch = 0;
        }
        if self.counts.rows.is_multiple_of(PROGRESS_EVERY_ROWS) {
            tracing::info!(file = %self.file_name, rows = self.counts.rows, "import progress");
        }
        Ok(())
    }

    fn store_referral(&mut self, referral: Referral) -> rusqlite::Result<()> {
        let partner = match &referral.partner {
            Some(partner) => Some(self.resolver.resolve(self.connection, partner, self.now)?),
            None => None,
        };
        self.referrals.upsert(&referral, partner)
    }

    /// Adds the referral counts to the run's.
    fn finish(self) -> rusqlite::Result<()> {
        let stored = self.referrals.counts();
        self.counts.referrals_new = stored.new;
        self.counts.referrals_updated = stored.updated;
        self.counts.referrals_unchanged = stored.unchanged;
        Ok(())
    }
}

/// The natural key of an outbound referral whose inquiry is known: the inquiry and the partner it
/// went to. A CSV row's `referred_out_to` and a FHIR request `basedOn` that inquiry and performed by
/// that partner are then one referral, and two partners tried for one inquiry are two.
fn outbound_key(parent_inquiry_id: &str, partner: Option<&PartnerRef>) -> String {
    match partner {
        Some(partner) => format!("{parent_inquiry_id}>{}", normalize_name(&partner.name)),
        None => parent_inquiry_id.to_string(),
    }
}

fn in_transaction<T>(
    connection: &Connection,
    work: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    connection.execute_batch("BEGIN IMMEDIATE")?;
    match work(connection) {
        Ok(value) => {
            connection.execute_batch("COMMIT")?;
            Ok(value)
        }
        Err(error) => Err(rollback(connection, error)),
    }
}

/// Rolls back the open transaction (if any) and hands the original error back.
fn rollback(connection: &Connection, error: rusqlite::Error) -> rusqlite::Error {
    if !connection.is_autocommit() {
        let _ = connection.execute_batch("ROLLBACK");
    }
    error
}

/// Records a run that a ledger error interrupted, so `status` shows it; best effort.
fn mark_failed(connection: &Connection, run_id: i64, error: &rusqlite::Error, now: &str) {
    let _ = connection.execute(
        "UPDATE import_run SET outcome = 'failed', finished_at = ?2, message = ?3 WHERE id = ?1",
        rusqlite::params![run_id, now, format!("ledger error: {error}")],
    );
}

fn audit_detail(
    sha256: &str,
    format: Option<Format>,
    outcome: Outcome,
    counts: &RunCounts,
) -> String {
    serde_json::json!({
        "sha256": sha256,
        "format": format.map(Format::as_str),
        "outcome": outcome.as_str(),
        "counts": counts,
    })
    .to_string()
}

fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

fn move_into(path: &Path, folder: &Path, run_id: i64) -> Result<(), ImportError> {
    let error = |source| ImportError::Move {
        path: path.to_path_buf(),
        source,
    };
    private_dir(folder).map_err(error)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::rename(path, folder.join(format!("{run_id}-{name}"))).map_err(error)
}

/// Creates `dir` (and its parents) owner-only when missing: the inbox and its folders hold
/// patient data at rest.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The current time as stored in the ledger (UTC, RFC 3339, seconds).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
