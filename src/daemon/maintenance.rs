//! Ledger maintenance, the nightly job: an online backup with retention, a WAL checkpoint, and
//! pruning of what nothing reads any more.
//!
//! The backup uses SQLite's online backup API from a read transaction (writers go on), into a
//! file created 0600 before SQLite writes to it, under a hidden `.partial` name that becomes
//! `<ledger stem>-<UTC timestamp>.db` only when complete; only files of that pattern are ever
//! deleted. Pruned: `sync_run` rows older than `prune_after_days` (the latest of each system,
//! stream and kind, and its latest success, stay), health runs and snapshots older than
//! [`HEALTH_KEEP_DAYS`], and exports in the inbox's `imported/` and `rejected/` folders whose import
//! run started more than `prune_after_days` ago (each deletion written to `audit_log`).
//! Deliberately untouched: `referral`, `import_run`, `quarantine`, `crm_record` (identity
//! resolution reads deleted and merged records), `outbox` (its rows make pushes exactly-once) and
//! `audit_log` (append-only).

use std::fmt::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Days, Utc};
use rusqlite::{Connection, OptionalExtension};

use crate::config::LoadedConfig;
use crate::import::now as now_text;
use crate::ledger::{Ledger, LedgerError, store};
use crate::stop::StopSignal;

/// Health runs and snapshots are kept this many days: more than a year of trend.
pub const HEALTH_KEEP_DAYS: u64 = 400;

/// What one maintenance run did.
#[derive(Debug, Clone, Default)]
pub struct MaintenanceReport {
    /// The backup written.
    pub backup: Option<PathBuf>,
    /// Older backups deleted (beyond `backup_keep`).
    pub backups_removed: u64,
    /// WAL pages written back by the checkpoint, and whether a reader kept it from finishing.
    pub checkpointed_pages: i64,
    pub checkpoint_busy: bool,
    pub sync_runs_pruned: u64,
    pub health_runs_pruned: u64,
    pub snapshots_pruned: u64,
    pub exports_removed: u64,
    /// True when a stop request ended the run between two of its steps.
    pub stopped: bool,
}

impl MaintenanceReport {
    /// Ledger rows deleted.
    pub fn rows_pruned(&self) -> u64 {
        self.sync_runs_pruned + self.health_runs_pruned + self.snapshots_pruned
    }

    /// One sentence for the log and the run's message.
    pub fn summary(&self) -> String {
        let mut text = match &self.backup {
            Some(path) => format!(
                "backup {}",
                path.file_name().unwrap_or_default().to_string_lossy()
            ),
            None => "no backup".to_string(),
        };
        let _ = write!(
            text,
            "; {} older backup(s) removed; {} WAL page(s) checkpointed{}; pruned {} run log row(s), {} health run(s), {} snapshot(s), {} export file(s)",
            self.backups_removed,
            self.checkpointed_pages,
            if self.checkpoint_busy {
                " (a reader kept the WAL)"
            } else {
                ""
            },
            self.sync_runs_pruned,
            self.health_runs_pruned,
            self.snapshots_pruned,
            self.exports_removed
        );
        if self.stopped {
            text.push_str("; stopped early: a stop was requested");
        }
        text
    }
}

/// Why maintenance stopped.
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("cannot write the backup {path}")]
    Backup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the backup into {path} failed")]
    BackupSql {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot list or delete files in {path}")]
    Files {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Backup, checkpoint, prune, in that order; a stop request lands between them.
pub fn run(
    loaded: &LoadedConfig,
    ledger: &mut Ledger,
    stop: &StopSignal,
    now: DateTime<Utc>,
) -> Result<MaintenanceReport, MaintenanceError> {
    let config = &loaded.config;
    let settings = &config.maintenance;
    let mut report = MaintenanceReport::default();
    let directory = settings.backup_dir(ledger.path());
    let backup = backup(ledger, &directory, now)?;
    report.backups_removed = remove_old_backups(ledger.path(), &directory, settings.backup_keep)?;
    tracing::info!(file = %backup.display(), removed = report.backups_removed, "ledger backed up");
    report.backup = Some(backup);
    if stop.is_requested() {
        report.stopped = true;
        return Ok(report);
    }

    let (busy, pages) = ledger
        .connection()
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(2)?))
        })
        .map_err(|source| ledger.sql_error(source))?;
    report.checkpoint_busy = busy != 0;
    report.checkpointed_pages = pages.max(0);
    if stop.is_requested() {
        report.stopped = true;
        return Ok(report);
    }

    let cutoff = now - chrono::Duration::days(i64::from(settings.prune_after_days));
    let cutoff_text = cutoff.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let health_cutoff = now
        .date_naive()
        .checked_sub_days(Days::new(HEALTH_KEEP_DAYS))
        .unwrap_or_default();
    let connection = ledger.connection();
    let pruned = (|| -> rusqlite::Result<(u64, u64, u64)> {
        connection.execute_batch("BEGIN IMMEDIATE")?;
        let runs = prune_sync_runs(connection, &cutoff_text)?;
        let (health_runs, snapshots) = crate::health::prune_before(connection, health_cutoff)?;
        connection.execute_batch("COMMIT")?;
        Ok((runs, health_runs, snapshots))
    })();
    let (runs, health_runs, snapshots) = match pruned {
        Ok(pruned) => pruned,
        Err(source) => {
            let _ = connection.execute_batch("ROLLBACK");
            return Err(ledger.sql_error(source).into());
        }
    };
    report.sync_runs_pruned = runs;
    report.health_runs_pruned = health_runs;
    report.snapshots_pruned = snapshots;
    if let Some(ehr) = &config.connectors.ehr {
        report.exports_removed = remove_old_exports(ledger, &ehr.inbox, &cutoff_text)?;
    }
    Ok(report)
}

/// The file name of a backup of `ledger` taken at `at`.
pub fn backup_name(ledger: &Path, at: DateTime<Utc>) -> String {
    format!("{}-{}.db", ledger_stem(ledger), at.format("%Y%m%dT%H%M%SZ"))
}

fn ledger_stem(ledger: &Path) -> String {
    ledger.file_stem().map_or_else(
        || "ledger".to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// Whether `name` is a backup of `ledger` (`<stem>-YYYYMMDDTHHMMSSZ.db`).
fn is_backup_name(ledger: &Path, name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(&ledger_stem(ledger))
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|rest| rest.strip_suffix(".db"))
    else {
        return false;
    };
    chrono::NaiveDateTime::parse_from_str(rest, "%Y%m%dT%H%M%SZ").is_ok()
}

/// Copies the ledger, online, into `directory`. The file is 0600 from its first byte.
fn backup(
    ledger: &Ledger,
    directory: &Path,
    now: DateTime<Utc>,
) -> Result<PathBuf, MaintenanceError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MaintenanceError::Backup { path, source }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(directory)
        .map_err(io(directory))?;
    let name = backup_name(ledger.path(), now);
    let target = directory.join(&name);
    if target.exists() {
        // A backup of this very second exists (a schedule faster than once a second).
        return Ok(target);
    }
    remove_partial_backups(ledger.path(), directory)?;
    let partial = directory.join(format!(".{name}.partial"));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(io(&partial))?;
    let copied = (|| -> rusqlite::Result<()> {
        let mut destination = Connection::open(&partial)?;
        {
            let backup = rusqlite::backup::Backup::new(ledger.connection(), &mut destination)?;
            // One step: the copy reads one consistent snapshot; writers are not blocked (WAL).
            backup.run_to_completion(std::os::raw::c_int::MAX, Duration::ZERO, None)?;
        }
        // A backup is one self-contained file.
        destination.pragma_update(None, "journal_mode", "DELETE")?;
        Ok(())
    })();
    if let Err(source) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(MaintenanceError::BackupSql {
            path: target,
            source,
        });
    }
    std::fs::rename(&partial, &target).map_err(io(&target))?;
    Ok(target)
}

/// Deletes backups an earlier run left unfinished (`.<backup name>.partial`).
fn remove_partial_backups(ledger: &Path, directory: &Path) -> Result<(), MaintenanceError> {
    let error = |source| MaintenanceError::Files {
        path: directory.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(directory).map_err(error)? {
        let entry = entry.map_err(error)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let unfinished = name
            .strip_prefix('.')
            .and_then(|rest| rest.strip_suffix(".partial"))
            .is_some_and(|inner| is_backup_name(ledger, inner));
        if unfinished {
            std::fs::remove_file(entry.path()).map_err(error)?;
        }
    }
    Ok(())
}

/// Deletes the oldest backups of `ledger` in `directory` beyond the newest `keep`.
fn remove_old_backups(
    ledger: &Path,
    directory: &Path,
    keep: usize,
) -> Result<u64, MaintenanceError> {
    let error = |source| MaintenanceError::Files {
        path: directory.to_path_buf(),
        source,
    };
    let mut backups = Vec::new();
    for entry in std::fs::read_dir(directory).map_err(error)? {
        let entry = entry.map_err(error)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_backup_name(ledger, &name) && entry.file_type().map_err(error)?.is_file() {
            backups.push(name);
        }
    }
    // Names sort by their timestamp.
    backups.sort_unstable_by(|a, b| b.cmp(a));
    let mut removed = 0;
    for name in backups.iter().skip(keep) {
        std::fs::remove_file(directory.join(name)).map_err(error)?;
        removed += 1;
    }
    Ok(removed)
}

/// Deletes old `sync_run` rows, keeping the latest run and the latest success of every system,
/// stream and kind (what `status` and the metrics read).
fn prune_sync_runs(connection: &Connection, cutoff: &str) -> rusqlite::Result<u64> {
    let deleted = connection.execute(
        "DELETE FROM sync_run
         WHERE started_at < ?1 AND outcome <> 'running'
           AND id NOT IN (SELECT max(id) FROM sync_run GROUP BY system, stream, kind)
           AND id NOT IN (SELECT max(id) FROM sync_run WHERE outcome = 'ok'
                          GROUP BY system, stream, kind)",
        [cutoff],
    )?;
    Ok(deleted as u64)
}

/// Deletes exports in `inbox/imported/` and `inbox/rejected/` whose import run (the number before
/// the first `-` of the moved file's name) started before `cutoff`. The ledger holds what they
/// held (and a re-sent copy is still recognized by its hash); the files are patient data at rest.
fn remove_old_exports(
    ledger: &Ledger,
    inbox: &Path,
    cutoff: &str,
) -> Result<u64, MaintenanceError> {
    let mut removed = 0;
    for folder in ["imported", "rejected"] {
        let directory = inbox.join(folder);
        if !directory.is_dir() {
            continue;
        }
        let error = |source| MaintenanceError::Files {
            path: directory.clone(),
            source,
        };
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&directory).map_err(error)? {
            let entry = entry.map_err(error)?;
            if entry.file_type().map_err(error)?.is_file() {
                entries.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        entries.sort();
        for name in entries {
            let Some(run_id) = name
                .split_once('-')
                .and_then(|(number, _)| number.parse::<i64>().ok())
            else {
                continue;
            };
            let connection = ledger.connection();
            let started: Option<String> = connection
                .query_row(
                    "SELECT started_at FROM import_run WHERE id = ?1",
                    [run_id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(|source| ledger.sql_error(source))?;
            if started.is_none_or(|started| started.as_str() >= cutoff) {
                continue;
            }
            std::fs::remove_file(directory.join(&name)).map_err(error)?;
            store::append_audit(
                connection,
                "delete_export",
                &name,
                &format!("{{\"folder\":\"{folder}\",\"import_run\":{run_id}}}"),
                &now_text(),
            )
            .map_err(|source| ledger.sql_error(source))?;
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::info!(
            files = removed,
            "old exports deleted from the inbox folders"
        );
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_carry_a_sortable_utc_timestamp_and_nothing_else_matches() {
        let ledger = Path::new("/var/lib/refbridge/ledger.db");
        let at = DateTime::parse_from_rfc3339("2026-11-01T03:30:07Z")
            .unwrap()
            .with_timezone(&Utc);
        let name = backup_name(ledger, at);
        assert_eq!(name, "ledger-20261101T033007Z.db");
        assert!(is_backup_name(ledger, &name));
        for other in [
            "ledger.db",
            "ledger-latest.db",
            "other-20261101T033007Z.db",
            ".ledger-20261101T033007Z.db.partial",
            "ledger-20261101T033007Z.db.bak",
        ] {
            assert!(!is_backup_name(ledger, other), "{other}");
        }
    }

    #[test]
    fn old_run_log_rows_go_but_the_latest_of_each_and_its_latest_success_stay() {
        let (_directory, ledger) = crate::ledger::scratch();
        let connection = ledger.connection();
        let insert = |system: &str, started: &str, outcome: &str| {
            connection
                .execute(
                    "INSERT INTO sync_run (system, stream, kind, started_at, outcome)
                     VALUES (?1, 'partners', 'pull', ?2, ?3)",
                    rusqlite::params![system, started, outcome],
                )
                .unwrap();
            connection.last_insert_rowid()
        };
        let old_ok = insert("salesforce", "2025-01-01T00:00:00Z", "ok");
        let older_ok = insert("salesforce", "2025-01-02T00:00:00Z", "ok");
        let old_failed = insert("salesforce", "2025-01-03T00:00:00Z", "failed");
        let hubspot_old = insert("hubspot", "2025-01-01T00:00:00Z", "ok");
        let recent = insert("hubspot", "2026-10-30T00:00:00Z", "ok");
        let deleted = prune_sync_runs(connection, "2026-08-01T00:00:00Z").unwrap();
        let left: Vec<i64> = connection
            .prepare("SELECT id FROM sync_run ORDER BY id")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(deleted, 2);
        // Salesforce keeps its latest run (failed) and its latest success; HubSpot its recent run.
        assert_eq!(left, [older_ok, old_failed, recent]);
        assert!(!left.contains(&old_ok) && !left.contains(&hubspot_old));
    }

    #[test]
    fn exports_go_once_their_import_run_is_old_and_each_deletion_is_audited() {
        let (directory, ledger) = crate::ledger::scratch();
        let connection = ledger.connection();
        for (id, started) in [(1, "2025-01-01T00:00:00Z"), (2, "2026-11-01T00:00:00Z")] {
            connection
                .execute(
                    "INSERT INTO import_run (id, file_name, file_path, sha256, size_bytes, started_at, outcome)
                     VALUES (?1, 'f', 'f', 'h', 1, ?2, 'imported')",
                    rusqlite::params![id, started],
                )
                .unwrap();
        }
        let inbox = directory.path().join("inbox");
        for (folder, name) in [
            ("imported", "1-old.csv"),
            ("imported", "2-new.csv"),
            ("imported", "notes.txt"),
            ("imported", "7-no-such-run.csv"),
            ("rejected", "1-bad.csv"),
        ] {
            std::fs::create_dir_all(inbox.join(folder)).unwrap();
            std::fs::write(inbox.join(folder).join(name), "x").unwrap();
        }
        std::fs::write(inbox.join("1-waiting.csv"), "x").unwrap();
        let removed = remove_old_exports(&ledger, &inbox, "2026-08-01T00:00:00Z").unwrap();
        assert_eq!(removed, 2);
        let left = |folder: &str| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(inbox.join(folder))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(
            left("imported"),
            ["2-new.csv", "7-no-such-run.csv", "notes.txt"]
        );
        assert!(left("rejected").is_empty());
        assert!(
            inbox.join("1-waiting.csv").exists(),
            "the inbox itself is never pruned"
        );
        let audited: i64 = connection
            .query_row(
                "SELECT count(*) FROM audit_log WHERE action = 'delete_export'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(audited, 2);
    }
}
