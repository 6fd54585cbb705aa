//! The referral ledger: one SQLite file (WAL), opened, migrated and written only through here.
//!
//! The ledger never speaks HTTP and never sees a patient value: the model it stores already
//! carries tokens and ZIP3s only. The database file is created with mode 0600 before SQLite opens
//! it, so the WAL and shared-memory files SQLite creates beside it inherit that mode.
//!
//! # Layout
//! - `migrations`: the versioned schema.
//! - [`store`]: the statements an import uses (partners, referrals, runs, quarantine, audit).
//! - [`crm`]: the statements CRM sync uses (records, cursors, sync runs, outbox).
//! - [`liveness`]: the lock every open ledger holds, and runs of dead processes marked
//!   `interrupted`.

pub mod crm;
pub mod liveness;
mod migrations;
pub mod store;

use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// Ledger failures, with the file they concern.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot create the ledger directory {path}")]
    CreateDirectory {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create the ledger file {path}")]
    CreateFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("there is no ledger at {path} yet: check ledger.path, or import something first")]
    Missing { path: PathBuf },
    #[error("cannot open the ledger {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the ledger {path} has schema version {found}, newer than this refbridge knows ({known}); upgrade refbridge"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("migration {version} ({what}) failed on {path}")]
    Migration {
        path: PathBuf,
        version: i64,
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot lock {path} (the ledger's lock file)")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ledger {path}")]
    Sql {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

/// WAL pages written between two automatic checkpoints (16 MiB with 4 KiB pages).
const AUTOCHECKPOINT_PAGES: i64 = 4096;

/// An open, migrated ledger.
pub struct Ledger {
    connection: Connection,
    path: PathBuf,
    /// The shared lock that tells other handles this one is alive (see [`liveness`]).
    _alive: Option<std::fs::File>,
    busy_timeout: Duration,
}

impl Ledger {
    /// Opens (creating with mode 0600 if needed) and migrates the ledger at `path`.
    pub fn open(path: &Path, busy_timeout: Duration) -> Result<Ledger, LedgerError> {
        if let Some(directory) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Owner-only, like the ledger: the directory names exports and holds backups.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(directory)
                .map_err(|source| LedgerError::CreateDirectory {
                    path: directory.to_path_buf(),
                    source,
                })?;
        }
        // Create the file ourselves so that it is 0600 from its first byte.
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|source| LedgerError::CreateFile {
                path: path.to_path_buf(),
                source,
            })?;
        let connection = connect(path, busy_timeout).map_err(|source| LedgerError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let mut ledger = Ledger {
            connection,
            path: path.to_path_buf(),
            _alive: None,
            busy_timeout,
        };
        ledger.migrate()?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let (alive, _) =
            liveness::hold(path, &ledger.connection, &now).map_err(|source| LedgerError::Lock {
                path: liveness::lock_path(path),
                source,
            })?;
        ledger._alive = alive;
        Ok(ledger)
    }

    /// Opens (and migrates) a ledger that must already exist: for reports, which should not
    /// create an empty ledger at a mistyped path.
    pub fn open_existing(path: &Path, busy_timeout: Duration) -> Result<Ledger, LedgerError> {
        if !path.is_file() {
            return Err(LedgerError::Missing {
                path: path.to_path_buf(),
            });
        }
        Ledger::open(path, busy_timeout)
    }

    /// The schema version this build writes.
    pub fn known_version() -> i64 {
        migrations::MIGRATIONS
            .last()
            .map_or(0, |(version, _, _)| *version)
    }

    fn migrate(&mut self) -> Result<(), LedgerError> {
        let current: i64 = self
            .connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|source| self.sql_error(source))?;
        let known = Self::known_version();
        if current > known {
            return Err(LedgerError::TooNew {
                path: self.path.clone(),
                found: current,
                known,
            });
        }
        for (version, what, sql) in migrations::MIGRATIONS
            .iter()
            .filter(|(v, _, _)| *v > current)
        {
            let migration_error = |source| LedgerError::Migration {
                path: self.path.clone(),
                version: *version,
                what,
                source,
            };
            let transaction = self.connection.transaction().map_err(migration_error)?;
            transaction.execute_batch(sql).map_err(migration_error)?;
            transaction
                .pragma_update(None, "user_version", version)
                .map_err(migration_error)?;
            transaction.commit().map_err(migration_error)?;
            tracing::info!(version, what, "ledger migrated");
        }
        Ok(())
    }

    /// The file this ledger lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Another connection to this ledger's file, set up like the ledger's own (busy timeout, WAL,
    /// foreign keys; the schema is already migrated): for a writer on another thread, such as the
    /// CRM pull's page store. It takes part in SQLite's locking like any other connection.
    pub fn another_connection(&self) -> Result<Connection, LedgerError> {
        connect(&self.path, self.busy_timeout).map_err(|source| LedgerError::Open {
            path: self.path.clone(),
            source,
        })
    }

    /// The connection, for the ledger's own modules and read-only reports.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// A SQLite failure on this ledger, naming its file.
    pub fn sql_error(&self, source: rusqlite::Error) -> LedgerError {
        LedgerError::Sql {
            path: self.path.clone(),
            source,
        }
    }
}

/// A connection to an existing ledger file with the settings every ledger connection has.
fn connect(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(busy_timeout)?;
    connection.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -32768;
         PRAGMA temp_store = MEMORY;",
    )?;
    connection.pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_PAGES)?;
    Ok(connection)
}

/// A ledger in a fresh temporary directory, for unit tests (the directory goes with the guard).
#[cfg(test)]
pub(crate) fn scratch() -> (tempfile::TempDir, Ledger) {
    let directory = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(
        &directory.path().join("ledger.db"),
        std::time::Duration::from_secs(1),
    )
    .unwrap();
    (directory, ledger)
}
