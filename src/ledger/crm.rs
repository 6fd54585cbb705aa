//! The statements CRM sync uses: records, cursors, sync runs and the outbox.
//!
//! Callers own the transaction: a pulled page and the cursor after it are stored by
//! [`store_page`] inside one transaction that the caller commits, so a crash between pages resumes
//! from the last committed cursor and never skips or duplicates a record.

use chrono::{DateTime, Utc};
use refbridge_model::crm::{CrmSystem, Cursor, PulledPage, PushResult, StreamKind, TaskIntent};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// Per-stream figures of one sync run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PageCounts {
    pub read: u64,
    pub new: u64,
    pub changed: u64,
    pub unchanged: u64,
    pub deleted: u64,
    pub api_calls: u64,
}

impl std::ops::AddAssign for PageCounts {
    fn add_assign(&mut self, other: PageCounts) {
        self.read += other.read;
        self.new += other.new;
        self.changed += other.changed;
        self.unchanged += other.unchanged;
        self.deleted += other.deleted;
        self.api_calls += other.api_calls;
    }
}

fn timestamp(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The stream's cursor, if a page was ever stored.
pub fn load_cursor(
    connection: &Connection,
    system: CrmSystem,
    stream: StreamKind,
) -> rusqlite::Result<Option<Cursor>> {
    connection
        .query_row(
            "SELECT modified_at, external_id FROM sync_cursor WHERE system = ?1 AND stream = ?2",
            params![system.as_str(), stream.as_str()],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
        )
        .optional()?
        .map(|(at, id)| {
            let modified_at = DateTime::parse_from_rfc3339(&at)
                .map_err(|error| {
                    rusqlite::Error::FromSqlConversionFailure(
                        0,
                        rusqlite::types::Type::Text,
                        Box::new(error),
                    )
                })?
                .with_timezone(&Utc);
            Ok(Cursor { modified_at, id })
        })
        .transpose()
}

/// Stores one page's records and advances the stream's cursor. Call inside a transaction.
pub fn store_page(
    connection: &Connection,
    system: CrmSystem,
    page: &PulledPage,
    sync_run_id: i64,
    now: &str,
) -> rusqlite::Result<PageCounts> {
    let mut counts = PageCounts {
        api_calls: u64::from(page.api_calls),
        ..PageCounts::default()
    };
    let mut insert = connection.prepare_cached(
        "INSERT INTO crm_record (system, stream, external_id, modified_at, deleted, merged_into, body,
             first_sync_run_id, last_sync_run_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
         ON CONFLICT (system, stream, external_id) DO NOTHING",
    )?;
    let mut update = connection.prepare_cached(
        "UPDATE crm_record SET modified_at = ?4, deleted = ?5, merged_into = ?6, body = ?7, last_sync_run_id = ?8
         WHERE system = ?1 AND stream = ?2 AND external_id = ?3
           AND (deleted IS NOT ?5 OR merged_into IS NOT ?6 OR body IS NOT ?7)",
    )?;
    for record in &page.records {
        counts.read += 1;
        let body = serde_json::to_string(&record.body)
            .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))?;
        let values = params![
            system.as_str(),
            page.stream.as_str(),
            record.id,
            timestamp(&record.modified_at),
            record.deleted,
            record.merged_into,
            body,
            sync_run_id
        ];
        if insert.execute(values)? == 1 {
            counts.new += 1;
            if record.deleted {
                counts.deleted += 1;
            }
        } else if update.execute(values)? == 1 {
            if record.deleted {
                counts.deleted += 1;
            } else {
                counts.changed += 1;
            }
        } else {
            counts.unchanged += 1;
        }
    }
    if let Some(cursor) = &page.cursor {
        connection
            .prepare_cached(
                "INSERT INTO sync_cursor (system, stream, modified_at, external_id, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (system, stream) DO UPDATE SET modified_at = excluded.modified_at,
                     external_id = excluded.external_id, updated_at = excluded.updated_at",
            )?
            .execute(params![
                system.as_str(),
                page.stream.as_str(),
                timestamp(&cursor.modified_at),
                cursor.id,
                now
            ])?;
    }
    Ok(counts)
}

/// Marks records that a reconciliation pass no longer finds in the CRM as deleted. Returns how many.
pub fn mark_missing_deleted(
    connection: &Connection,
    system: CrmSystem,
    stream: StreamKind,
    live_ids: &std::collections::HashSet<String>,
    sync_run_id: i64,
) -> rusqlite::Result<u64> {
    let mut statement = connection.prepare(
        "SELECT external_id FROM crm_record WHERE system = ?1 AND stream = ?2 AND deleted = 0",
    )?;
    let known: Vec<String> = statement
        .query_map(params![system.as_str(), stream.as_str()], |row| row.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut marked = 0;
    for id in known.iter().filter(|id| !live_ids.contains(*id)) {
        marked += connection.execute(
            "UPDATE crm_record SET deleted = 1, last_sync_run_id = ?4 WHERE system = ?1 AND stream = ?2 AND external_id = ?3",
            params![system.as_str(), stream.as_str(), id, sync_run_id],
        )? as u64;
    }
    Ok(marked)
}

/// External ids the ledger holds (deleted ones included) for a stream.
pub fn known_ids(
    connection: &Connection,
    system: CrmSystem,
    stream: StreamKind,
) -> rusqlite::Result<std::collections::HashSet<String>> {
    let mut statement = connection
        .prepare("SELECT external_id FROM crm_record WHERE system = ?1 AND stream = ?2")?;
    let ids = statement.query_map(params![system.as_str(), stream.as_str()], |row| row.get(0))?;
    ids.collect()
}

/// Forgets a stream's cursor: its next pull reads the whole stream again (stored rows that did not
/// change stay untouched).
pub fn reset_cursor(
    connection: &Connection,
    system: CrmSystem,
    stream: StreamKind,
) -> rusqlite::Result<()> {
    connection.execute(
        "DELETE FROM sync_cursor WHERE system = ?1 AND stream = ?2",
        params![system.as_str(), stream.as_str()],
    )?;
    Ok(())
}

pub fn begin_sync_run(
    connection: &Connection,
    system: CrmSystem,
    stream: &str,
    kind: &str,
    watermark_before: Option<&Cursor>,
    now: &str,
) -> rusqlite::Result<i64> {
    connection.execute(
        "INSERT INTO sync_run (system, stream, kind, started_at, outcome, watermark_before)
         VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
        params![
            system.as_str(),
            stream,
            kind,
            now,
            watermark_before.map(ToString::to_string)
        ],
    )?;
    Ok(connection.last_insert_rowid())
}

/// The system under which refbridge records its own jobs in `sync_run` (EHR inbox scans,
/// evaluations, ledger maintenance); CRM runs use the CRM's name.
pub const REFBRIDGE_SYSTEM: &str = "refbridge";

/// Starts a `sync_run` row for one of refbridge's own jobs (outcome `running`).
pub fn begin_job_run(
    connection: &Connection,
    stream: &str,
    kind: &str,
    now: &str,
) -> rusqlite::Result<i64> {
    connection.execute(
        "INSERT INTO sync_run (system, stream, kind, started_at, outcome)
         VALUES (?1, ?2, ?3, ?4, 'running')",
        params![REFBRIDGE_SYSTEM, stream, kind, now],
    )?;
    Ok(connection.last_insert_rowid())
}

/// The figures of a finished run, for the `records_*` and `api_calls` columns of `sync_run`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunFigures {
    pub read: u64,
    pub new: u64,
    pub changed: u64,
    pub unchanged: u64,
    pub deleted: u64,
    pub rejected: u64,
    pub api_calls: u64,
}

/// Finishes a `sync_run` row with its figures, outcome and message.
pub fn finish_run(
    connection: &Connection,
    run_id: i64,
    figures: &RunFigures,
    outcome: &str,
    message: Option<&str>,
    now: &str,
) -> rusqlite::Result<()> {
    connection.execute(
        "UPDATE sync_run SET records_read = ?2, records_new = ?3, records_changed = ?4,
             records_unchanged = ?5, records_deleted = ?6, records_rejected = ?7, api_calls = ?8,
             outcome = ?9, message = ?10, finished_at = ?11
         WHERE id = ?1",
        params![
            run_id,
            figures.read as i64,
            figures.new as i64,
            figures.changed as i64,
            figures.unchanged as i64,
            figures.deleted as i64,
            figures.rejected as i64,
            figures.api_calls as i64,
            outcome,
            message,
            now
        ],
    )?;
    Ok(())
}

/// Records a run's figures so far; called with each page, so a crashed run still shows its progress.
pub fn update_sync_run(
    connection: &Connection,
    run_id: i64,
    counts: &PageCounts,
    watermark_after: Option<&Cursor>,
    outcome: &str,
    message: Option<&str>,
    now: Option<&str>,
) -> rusqlite::Result<()> {
    connection.execute(
        "UPDATE sync_run SET records_read = ?2, records_new = ?3, records_changed = ?4,
             records_unchanged = ?5, records_deleted = ?6, api_calls = ?7,
             watermark_after = COALESCE(?8, watermark_after), outcome = ?9, message = ?10,
             finished_at = COALESCE(?11, finished_at)
         WHERE id = ?1",
        params![
            run_id,
            counts.read as i64,
            counts.new as i64,
            counts.changed as i64,
            counts.unchanged as i64,
            counts.deleted as i64,
            counts.api_calls as i64,
            watermark_after.map(ToString::to_string),
            outcome,
            message,
            now
        ],
    )?;
    Ok(())
}

/// Queues intents for a CRM. An intent whose key is already queued replaces the queued content and
/// becomes pending again unless it is identical to what the CRM already holds.
pub fn enqueue(
    connection: &Connection,
    system: CrmSystem,
    intents: &[TaskIntent],
    now: &str,
) -> rusqlite::Result<u64> {
    let mut queued = 0;
    let mut statement = connection.prepare_cached(
        "INSERT INTO outbox (system, key, intent, status, created_at, updated_at)
         VALUES (?1, ?2, ?3, 'pending', ?4, ?4)
         ON CONFLICT (system, key) DO UPDATE SET intent = excluded.intent, status = 'pending',
             updated_at = excluded.updated_at
         WHERE outbox.intent IS NOT excluded.intent",
    )?;
    for intent in intents {
        let json = serde_json::to_string(intent)
            .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))?;
        queued += statement.execute(params![system.as_str(), intent.key, json, now])? as u64;
    }
    Ok(queued)
}

/// Up to `limit` pending intents for a CRM, oldest first.
pub fn pending(
    connection: &Connection,
    system: CrmSystem,
    limit: usize,
) -> rusqlite::Result<Vec<TaskIntent>> {
    let mut statement = connection.prepare_cached(
        "SELECT intent FROM outbox WHERE system = ?1 AND status = 'pending' ORDER BY id LIMIT ?2",
    )?;
    let rows = statement.query_map(params![system.as_str(), limit as i64], |row| {
        row.get::<_, String>(0)
    })?;
    rows.map(|row| {
        let text = row?;
        serde_json::from_str(&text).map_err(|error| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                Box::new(error),
            )
        })
    })
    .collect()
}

/// Records what the CRM did with each intent: stored (with its task id), still pending, or refused.
pub fn record_results(
    connection: &Connection,
    system: CrmSystem,
    results: &[PushResult],
    now: &str,
) -> rusqlite::Result<()> {
    let mut statement = connection.prepare_cached(
        "UPDATE outbox SET status = ?3, attempts = attempts + 1, crm_task_id = COALESCE(?4, crm_task_id),
             last_error_code = ?5, last_error = ?6, updated_at = ?7
         WHERE system = ?1 AND key = ?2",
    )?;
    for result in results {
        let (key, status, task_id, code, message) = match result {
            PushResult::Stored { key, task_id, .. } => {
                (key, "stored", Some(task_id.as_str()), None, None)
            }
            PushResult::Retryable { key, reason } => (
                key,
                "pending",
                None,
                Some("retryable"),
                Some(reason.as_str()),
            ),
            PushResult::Permanent { key, code, message } => (
                key,
                "permanent",
                None,
                Some(code.as_str()),
                Some(message.as_str()),
            ),
        };
        statement.execute(params![
            system.as_str(),
            key,
            status,
            task_id,
            code,
            message,
            now
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Ledger;
    use chrono::TimeZone;
    use refbridge_model::crm::{CrmOwner, CrmRecord, CrmRecordBody, TaskKind, TaskPriority};

    fn ledger() -> (tempfile::TempDir, Ledger) {
        crate::ledger::scratch()
    }

    fn owner(id: &str, name: &str, second: u32, deleted: bool) -> CrmRecord {
        CrmRecord {
            id: id.to_string(),
            modified_at: Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, second).unwrap(),
            deleted,
            merged_into: None,
            body: CrmRecordBody::Owner(CrmOwner {
                id: id.to_string(),
                name: name.to_string(),
                email: None,
                active: true,
            }),
        }
    }

    fn page(records: Vec<CrmRecord>) -> PulledPage {
        let cursor = records.last().map(|r| Cursor {
            modified_at: r.modified_at,
            id: r.id.clone(),
        });
        PulledPage {
            stream: StreamKind::Owners,
            records,
            cursor,
            api_calls: 1,
        }
    }

    #[test]
    fn pages_count_new_changed_unchanged_and_deleted_and_move_the_cursor() {
        let (_directory, ledger) = ledger();
        let c = ledger.connection();
        let system = CrmSystem::Salesforce;
        assert_eq!(load_cursor(c, system, StreamKind::Owners).unwrap(), None);
        let first = store_page(
            c,
            system,
            &page(vec![
                owner("005A", "Ana", 1, false),
                owner("005B", "Ben", 2, false),
            ]),
            1,
            "now",
        )
        .unwrap();
        assert_eq!(
            (first.read, first.new, first.changed, first.unchanged),
            (2, 2, 0, 0)
        );
        let again = store_page(
            c,
            system,
            &page(vec![
                owner("005A", "Ana", 1, false),
                owner("005B", "Benjamin", 3, false),
                owner("005C", "Cy", 4, true),
            ]),
            2,
            "now",
        )
        .unwrap();
        assert_eq!(
            (again.new, again.changed, again.unchanged, again.deleted),
            (1, 1, 1, 1)
        );
        let gone = store_page(
            c,
            system,
            &page(vec![owner("005A", "Ana", 5, true)]),
            3,
            "now",
        )
        .unwrap();
        assert_eq!((gone.changed, gone.deleted), (0, 1));
        let cursor = load_cursor(c, system, StreamKind::Owners).unwrap().unwrap();
        assert_eq!(
            (cursor.id.as_str(), cursor.modified_at.timestamp() % 60),
            ("005A", 5)
        );
        let live: std::collections::HashSet<String> = ["005B".to_string()].into();
        assert_eq!(
            mark_missing_deleted(c, system, StreamKind::Owners, &live, 4).unwrap(),
            0,
            "005A and 005C are already deleted"
        );
    }

    #[test]
    fn the_outbox_keeps_one_row_per_key_and_records_results() {
        let (_directory, ledger) = ledger();
        let c = ledger.connection();
        let intent = |key: &str, subject: &str| TaskIntent {
            key: key.to_string(),
            owner_id: None,
            about_id: "001A".to_string(),
            subject: subject.to_string(),
            description: String::new(),
            due: chrono::NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
            priority: TaskPriority::Normal,
            kind: TaskKind::Call,
            completed: false,
        };
        let system = CrmSystem::Salesforce;
        assert_eq!(
            enqueue(c, system, &[intent("k1", "a"), intent("k2", "b")], "t0").unwrap(),
            2
        );
        record_results(
            c,
            system,
            &[
                PushResult::Stored {
                    key: "k1".into(),
                    task_id: "00T1".into(),
                    created: true,
                },
                PushResult::Permanent {
                    key: "k2".into(),
                    code: "INVALID_FIELD".into(),
                    message: "bad".into(),
                },
            ],
            "t1",
        )
        .unwrap();
        assert!(pending(c, system, 10).unwrap().is_empty());
        assert_eq!(
            enqueue(c, system, &[intent("k1", "a")], "t2").unwrap(),
            0,
            "an identical intent stays stored"
        );
        assert_eq!(
            enqueue(c, system, &[intent("k1", "changed")], "t3").unwrap(),
            1
        );
        let waiting = pending(c, system, 10).unwrap();
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].subject, "changed");
        let task_id: String = c
            .query_row("SELECT crm_task_id FROM outbox WHERE key = 'k1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(
            task_id, "00T1",
            "the CRM task id is kept while the change waits"
        );
    }
}
