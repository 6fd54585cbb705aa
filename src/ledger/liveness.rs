//! Runs left `running` by a process that is gone: found and marked `interrupted`.
//!
//! Every open [`Ledger`](super::Ledger) holds a shared advisory lock (`flock`) on
//! `<ledger>.lock` beside the ledger file; the kernel drops it when the handle closes or the
//! process ends, however it ends (SIGKILL, OOM, power-off of the process). A ledger opened while
//! nothing else holds that lock — no refbridge process has the ledger open, not even this one —
//! knows that every `sync_run` and `import_run` row still `running` was left by a process that
//! died part-way, and marks it `interrupted` (with when it was found), so `status` and the
//! daemon's gauges stop showing runs that will never finish and health stops treating an import
//! as in progress. What such a run committed stays: pages, batches and outbox results are
//! committed one by one, and the next run continues from them.
//!
//! Must not: guess from timestamps (a long import is not a dead one), or touch a row while any
//! other handle on the ledger might still finish it. Where the file system refuses locks, nothing
//! is swept and the ledger opens as before.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

/// The message an interrupted run carries.
pub const INTERRUPTED_MESSAGE: &str = "the process running it ended before it finished (killed or crashed); what it committed is kept";

/// The lock file of the ledger at `ledger`: `<ledger file name>.lock` beside it.
pub fn lock_path(ledger: &Path) -> PathBuf {
    // Through symlinks to the real file: two names for one ledger must share one lock, or a
    // reading command opened through a link would sweep the daemon's live runs.
    let ledger = std::fs::canonicalize(ledger).unwrap_or_else(|_| ledger.to_path_buf());
    let mut name = ledger.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    ledger.with_file_name(name)
}

/// Takes the shared lock for this handle, sweeping stale `running` rows first when no other
/// handle holds it. Returns the locked file (dropping it releases the lock) and the rows marked.
pub fn hold(
    ledger: &Path,
    connection: &Connection,
    now: &str,
) -> std::io::Result<(Option<File>, usize)> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(lock_path(ledger))?;
    let swept = match file.try_lock() {
        Ok(()) => {
            // Alone: whatever is still running belongs to a process that is gone. Downgrading
            // to a shared lock afterwards lets the next process in.
            let swept = mark_interrupted(connection, now);
            file.lock_shared()?;
            // Best effort: a ledger that cannot be swept now (busy, read-only) still opens.
            swept.unwrap_or_else(|error| {
                tracing::warn!(%error, "runs left running by a killed process could not be marked interrupted");
                0
            })
        }
        Err(TryLockError::WouldBlock) => {
            // Someone has the ledger open (or is sweeping it): their runs may be alive.
            file.lock_shared()?;
            0
        }
        Err(TryLockError::Error(error)) if error.kind() == std::io::ErrorKind::Unsupported => {
            tracing::warn!(
                path = %lock_path(ledger).display(),
                "the file system refuses locks: runs left running by a killed process stay marked running"
            );
            return Ok((None, 0));
        }
        Err(TryLockError::Error(error)) => return Err(error),
    };
    if swept > 0 {
        tracing::warn!(
            runs = swept,
            "runs left running by a process that ended part-way are marked interrupted"
        );
    }
    Ok((Some(file), swept))
}

/// Marks every `running` run as `interrupted`; the caller knows no live process owns one.
fn mark_interrupted(connection: &Connection, now: &str) -> rusqlite::Result<usize> {
    let sync_runs = connection.execute(
        "UPDATE sync_run SET outcome = 'interrupted', finished_at = ?1, message = ?2
         WHERE outcome = 'running'",
        params![now, INTERRUPTED_MESSAGE],
    )?;
    let import_runs = connection.execute(
        "UPDATE import_run SET outcome = 'interrupted', finished_at = ?1, message = ?2
         WHERE outcome = 'running'",
        params![now, INTERRUPTED_MESSAGE],
    )?;
    Ok(sync_runs + import_runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Ledger;
    use std::time::Duration;

    fn running_rows(ledger: &Ledger) -> (i64, i64) {
        let count = |sql: &str| {
            ledger
                .connection()
                .query_row(sql, [], |row| row.get::<_, i64>(0))
                .unwrap()
        };
        (
            count("SELECT count(*) FROM sync_run WHERE outcome = 'running'"),
            count("SELECT count(*) FROM import_run WHERE outcome = 'running'"),
        )
    }

    #[test]
    fn running_rows_are_swept_only_when_no_other_handle_is_open() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("ledger.db");
        let first = Ledger::open(&path, Duration::from_secs(1)).unwrap();
        crate::ledger::crm::begin_job_run(first.connection(), "inbox", "import", "t0").unwrap();
        first
            .connection()
            .execute(
                "INSERT INTO import_run (file_name, file_path, sha256, size_bytes, started_at, outcome)
                 VALUES ('a.csv', 'a.csv', 'ab', 1, 't0', 'running')",
                [],
            )
            .unwrap();
        // A second handle while the first is open (another job, another process): untouched,
        // also when it names the ledger through a symlink.
        let second = Ledger::open(&path, Duration::from_secs(1)).unwrap();
        assert_eq!(running_rows(&second), (1, 1));
        drop(second);
        let link = directory.path().join("link.db");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let linked = Ledger::open(&link, Duration::from_secs(1)).unwrap();
        assert_eq!(running_rows(&linked), (1, 1));
        drop(linked);
        drop(first);
        // Opened alone: the rows' owner is gone.
        let alone = Ledger::open(&path, Duration::from_secs(1)).unwrap();
        assert_eq!(running_rows(&alone), (0, 0));
        let message: String = alone
            .connection()
            .query_row(
                "SELECT message FROM sync_run WHERE outcome = 'interrupted'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(message, INTERRUPTED_MESSAGE);
        let mode = std::fs::metadata(lock_path(&path)).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }
}
