//! `refbridge sync --once`: every stream of every configured CRM into the ledger, then the outbox.
//!
//! Each pulled page and the cursor after it are stored in one ledger transaction (see
//! [`crate::ledger::crm`]), so a run stopped at any point resumes from the last committed page
//! without losing or repeating a record. Pages are stored in order on a thread of their own, with
//! a second connection to the ledger, while the connector fetches and decodes the next page (a
//! bounded queue of one page between them). A spent API quota defers the rest of the run (it is
//! not a failure); a configuration error stops it with the connector's message. Push sends every
//! pending intent once per run; what the CRM answers goes back to the outbox row by row.
//!
//! A [`StopSignal`] lands between transactions: a pull stops after the page it is committing (or
//! while it waits for the CRM, when no transaction is open; a page fetched but not yet stored is
//! left for the next pull), reconciliation between streams, a push between batches; the run is
//! recorded as `stopped`, never `failed`.

use chrono::{DateTime, Utc};
use refbridge_hubspot::HubspotClient;
use refbridge_model::crm::{CrmSystem, Cursor, FailureClass, PushResult, StreamKind};
use refbridge_model::crm::{PulledPage, TaskIntent};
use refbridge_salesforce::SalesforceClient;
use serde::Serialize;

use crate::import::now as now_text;
use crate::ledger::crm::{self, PageCounts};
use crate::ledger::{Ledger, LedgerError};
use crate::stop::StopSignal;

/// Why storing a pulled page ended the pull: the ledger failed, or a stop was requested after
/// the page was committed.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
    #[error("a stop was requested")]
    Stopped,
}

/// The page callback a connector pulls into.
pub type OnPage<'a> = dyn FnMut(PulledPage) -> Result<(), PageError> + Send + 'a;

/// What the sync engine needs of a CRM connector. Each connector crate keeps its own client; this
/// trait only adapts them, so that pulling, reconciling and pushing are written once here.
#[allow(async_fn_in_trait)] // implemented and called inside this crate only, never boxed
pub trait Connector {
    fn system(&self) -> CrmSystem;
    /// Intents per push call (Salesforce Collections: 200; HubSpot batch: 100).
    fn push_batch(&self) -> usize;
    /// The end of this run's window: now minus the settle lag.
    fn window_end(&self, now: DateTime<Utc>) -> DateTime<Utc>;
    /// API calls made so far (authentication excluded).
    fn api_calls(&self) -> u64;
    /// Pulls a stream page by page into `on_page`.
    async fn pull_pages(
        &self,
        stream: StreamKind,
        after: Option<&Cursor>,
        until: DateTime<Utc>,
        on_page: &mut OnPage<'_>,
    ) -> Result<(), PullFailure>;
    /// Every live id of a stream (the reconciliation pass).
    async fn live_ids(&self, stream: StreamKind) -> Result<Vec<String>, ConnectorFailure>;
    /// Deleted and merged records a CRM lists only on request (HubSpot's `archived=true`), as
    /// pages without a cursor. Salesforce's pulls already read deletions (`queryAll`).
    async fn pull_deleted(
        &self,
        _stream: StreamKind,
        _on_page: &mut OnPage<'_>,
    ) -> Result<(), PullFailure> {
        Ok(())
    }
    /// Sends intents; a failure of the whole call makes every row retryable.
    async fn push_intents(
        &self,
        intents: &[TaskIntent],
    ) -> Result<Vec<PushResult>, ConnectorFailure>;
}

impl Connector for HubspotClient {
    fn system(&self) -> CrmSystem {
        CrmSystem::Hubspot
    }

    fn push_batch(&self) -> usize {
        refbridge_hubspot::BATCH_SIZE
    }

    fn window_end(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        HubspotClient::window_end(self, now)
    }

    fn api_calls(&self) -> u64 {
        HubspotClient::api_calls(self)
    }

    async fn pull_pages(
        &self,
        stream: StreamKind,
        after: Option<&Cursor>,
        until: DateTime<Utc>,
        on_page: &mut OnPage<'_>,
    ) -> Result<(), PullFailure> {
        self.pull(stream, after, until, on_page).await?;
        Ok(())
    }

    async fn live_ids(&self, stream: StreamKind) -> Result<Vec<String>, ConnectorFailure> {
        self.reconcile_ids(stream)
            .await
            .map_err(|error| ConnectorFailure::new(error.class(), &error))
    }

    async fn pull_deleted(
        &self,
        stream: StreamKind,
        on_page: &mut OnPage<'_>,
    ) -> Result<(), PullFailure> {
        self.pull_archived(stream, on_page).await?;
        Ok(())
    }

    async fn push_intents(
        &self,
        intents: &[TaskIntent],
    ) -> Result<Vec<PushResult>, ConnectorFailure> {
        // A whole push fails only on configuration (login, mapping, key property); transport
        // and quota failures come back per row as retryable.
        self.push(intents)
            .await
            .map_err(|error| ConnectorFailure::new(FailureClass::Config, &error))
    }
}

/// A connector's failure, classified.
#[derive(Debug)]
pub struct ConnectorFailure {
    pub class: FailureClass,
    pub message: String,
}

/// Why a pull ended early: the connector, storing a page, or a stop request.
#[derive(Debug)]
pub enum PullFailure {
    Connector(ConnectorFailure),
    Store(rusqlite::Error),
    Stopped,
}

impl From<PageError> for PullFailure {
    fn from(error: PageError) -> PullFailure {
        match error {
            PageError::Sql(error) => PullFailure::Store(error),
            PageError::Stopped => PullFailure::Stopped,
        }
    }
}

impl ConnectorFailure {
    fn new(class: FailureClass, error: &dyn std::fmt::Display) -> ConnectorFailure {
        ConnectorFailure {
            class,
            message: error.to_string(),
        }
    }
}

impl From<refbridge_salesforce::PullError<PageError>> for PullFailure {
    fn from(error: refbridge_salesforce::PullError<PageError>) -> PullFailure {
        match error {
            refbridge_salesforce::PullError::Sink(error) => error.into(),
            refbridge_salesforce::PullError::Salesforce(error) => {
                PullFailure::Connector(ConnectorFailure::new(error.class(), &error))
            }
        }
    }
}

impl From<refbridge_hubspot::PullError<PageError>> for PullFailure {
    fn from(error: refbridge_hubspot::PullError<PageError>) -> PullFailure {
        match error {
            refbridge_hubspot::PullError::Sink(error) => error.into(),
            refbridge_hubspot::PullError::Hubspot(error) => {
                PullFailure::Connector(ConnectorFailure::new(error.class(), &error))
            }
        }
    }
}

impl Connector for SalesforceClient {
    fn system(&self) -> CrmSystem {
        CrmSystem::Salesforce
    }

    fn push_batch(&self) -> usize {
        refbridge_salesforce::BATCH_SIZE
    }

    fn window_end(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        SalesforceClient::window_end(self, now)
    }

    fn api_calls(&self) -> u64 {
        SalesforceClient::api_calls(self)
    }

    async fn pull_pages(
        &self,
        stream: StreamKind,
        after: Option<&Cursor>,
        until: DateTime<Utc>,
        on_page: &mut OnPage<'_>,
    ) -> Result<(), PullFailure> {
        self.pull(stream, after, until, on_page).await?;
        Ok(())
    }

    async fn live_ids(&self, stream: StreamKind) -> Result<Vec<String>, ConnectorFailure> {
        self.reconcile_ids(stream)
            .await
            .map_err(|error| ConnectorFailure::new(error.class(), &error))
    }

    async fn push_intents(
        &self,
        intents: &[TaskIntent],
    ) -> Result<Vec<PushResult>, ConnectorFailure> {
        // A whole push fails only on configuration (login, mapping, key property); transport
        // and quota failures come back per row as retryable.
        self.push(intents)
            .await
            .map_err(|error| ConnectorFailure::new(FailureClass::Config, &error))
    }
}

/// What one stream's pull did.
#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    pub system: &'static str,
    pub stream: &'static str,
    /// `ok`, `deferred` (quota), `stopped` (a stop was requested), or `failed`.
    pub outcome: &'static str,
    #[serde(flatten)]
    pub counts: PageCounts,
    pub watermark_before: Option<String>,
    pub watermark_after: Option<String>,
    pub message: Option<String>,
}

/// What pushing the outbox did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PushReport {
    pub system: &'static str,
    pub intents: u64,
    pub stored: u64,
    pub created: u64,
    pub retryable: u64,
    pub permanent: u64,
    /// True when a stop request ended the push before every pending intent was sent.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
}

/// A whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    pub streams: Vec<StreamReport>,
    /// The reconciliation pass, when it ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reconciled: Vec<StreamReport>,
    pub push: Vec<PushReport>,
    /// API calls made by the connectors, authentication included.
    pub api_calls: u64,
}

impl SyncReport {
    /// Adds another CRM's run to this one.
    pub fn absorb(&mut self, other: SyncReport) {
        self.streams.extend(other.streams);
        self.reconciled.extend(other.reconciled);
        self.push.extend(other.push);
        self.api_calls += other.api_calls;
    }

    /// True when a stream failed (not merely deferred) or intents were refused.
    pub fn has_failures(&self) -> bool {
        self.streams
            .iter()
            .chain(&self.reconciled)
            .any(|s| s.outcome == "failed")
    }

    /// True when a stop request ended a stream early.
    pub fn was_stopped(&self) -> bool {
        self.streams
            .iter()
            .chain(&self.reconciled)
            .any(|s| s.outcome == "stopped")
    }
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The connector's configuration is wrong (a refused login, a missing field…).
    #[error("{system}: {message}")]
    Config {
        system: &'static str,
        message: String,
    },
}

/// Pulls every stream of one CRM, then reconciles them when asked. Pushing is separate
/// ([`push_outbox`]): the cycle pulls every CRM, evaluates, and only then pushes. A stop request
/// ends the run after the page being committed; the streams not reached are not recorded.
pub async fn pull_crm<C: Connector>(
    ledger: &mut Ledger,
    client: &C,
    now: DateTime<Utc>,
    reconcile: bool,
    stop: &StopSignal,
) -> Result<SyncReport, SyncError> {
    let system = client.system();
    let until = client.window_end(now);
    let mut report = SyncReport::default();
    let mut deferred = false;
    for stream in StreamKind::ALL {
        if stop.is_requested() {
            break;
        }
        if deferred {
            report.streams.push(StreamReport {
                system: system.as_str(),
                stream: stream.as_str(),
                outcome: "deferred",
                counts: PageCounts::default(),
                watermark_before: None,
                watermark_after: None,
                message: Some("the API quota reserve was reached earlier in this run".to_string()),
            });
            continue;
        }
        let stream_report = pull_stream(ledger, client, stream, until, stop).await?;
        deferred = stream_report.outcome == "deferred";
        report.streams.push(stream_report);
    }
    if reconcile && !deferred && !stop.is_requested() {
        report.reconciled = reconcile_streams(ledger, client, stop).await?;
    }
    report.api_calls = client.api_calls();
    Ok(report)
}

/// A configured CRM's client.
pub enum CrmClient {
    Salesforce(SalesforceClient),
    Hubspot(HubspotClient),
}

/// A CRM's daily API allowance as its last answer reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaView {
    pub used: u64,
    pub limit: u64,
}

impl QuotaView {
    /// Calls left today.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used)
    }
}

impl CrmClient {
    /// A client for every configured CRM; a client that cannot be built is a configuration error
    /// (the message names the connector).
    pub fn all(loaded: &crate::config::LoadedConfig) -> Result<Vec<CrmClient>, String> {
        let mut clients = Vec::new();
        for system in [CrmSystem::Salesforce, CrmSystem::Hubspot] {
            if let Some(client) = CrmClient::configured(loaded, system)? {
                clients.push(client);
            }
        }
        Ok(clients)
    }

    /// The client of one CRM, when it is configured.
    pub fn configured(
        loaded: &crate::config::LoadedConfig,
        system: CrmSystem,
    ) -> Result<Option<CrmClient>, String> {
        let connectors = &loaded.config.connectors;
        match system {
            CrmSystem::Salesforce => {
                let (Some(settings), Some(secrets)) =
                    (&connectors.salesforce, &loaded.salesforce_secrets)
                else {
                    return Ok(None);
                };
                SalesforceClient::new(settings.clone(), secrets.clone())
                    .map(|client| Some(CrmClient::Salesforce(client)))
                    .map_err(|error| format!("connectors.salesforce: {error}"))
            }
            CrmSystem::Hubspot => {
                let (Some(settings), Some(secrets)) =
                    (&connectors.hubspot, &loaded.hubspot_secrets)
                else {
                    return Ok(None);
                };
                HubspotClient::new(settings.clone(), secrets.clone())
                    .map(|client| Some(CrmClient::Hubspot(client)))
                    .map_err(|error| format!("connectors.hubspot: {error}"))
            }
        }
    }

    pub fn system(&self) -> CrmSystem {
        match self {
            CrmClient::Salesforce(_) => CrmSystem::Salesforce,
            CrmClient::Hubspot(_) => CrmSystem::Hubspot,
        }
    }

    /// [`pull_crm`] for this client.
    pub async fn pull(
        &self,
        ledger: &mut Ledger,
        now: DateTime<Utc>,
        reconcile: bool,
        stop: &StopSignal,
    ) -> Result<SyncReport, SyncError> {
        match self {
            CrmClient::Salesforce(client) => pull_crm(ledger, client, now, reconcile, stop).await,
            CrmClient::Hubspot(client) => pull_crm(ledger, client, now, reconcile, stop).await,
        }
    }

    /// [`push_outbox`] for this client.
    pub async fn push(
        &self,
        ledger: &mut Ledger,
        stop: &StopSignal,
    ) -> Result<PushReport, SyncError> {
        match self {
            CrmClient::Salesforce(client) => push_outbox(ledger, client, stop).await,
            CrmClient::Hubspot(client) => push_outbox(ledger, client, stop).await,
        }
    }

    /// API calls made so far (authentication excluded).
    pub fn api_calls(&self) -> u64 {
        match self {
            CrmClient::Salesforce(client) => client.api_calls(),
            CrmClient::Hubspot(client) => client.api_calls(),
        }
    }

    /// This client's API answers so far, by HTTP status class (authentication excluded).
    pub fn status_counts(&self) -> refbridge_http::StatusCounts {
        match self {
            CrmClient::Salesforce(client) => client.status_counts(),
            CrmClient::Hubspot(client) => client.status_counts(),
        }
    }

    /// The daily API allowance as the last answer reported it (Salesforce's `Sforce-Limit-Info`,
    /// HubSpot's daily limit headers), when one did.
    pub fn quota(&self) -> Option<QuotaView> {
        match self {
            CrmClient::Salesforce(client) => client.quota_usage().map(|usage| QuotaView {
                used: usage.used,
                limit: usage.limit,
            }),
            CrmClient::Hubspot(client) => client.quota_usage().map(|usage| QuotaView {
                used: usage.used,
                limit: usage.limit,
            }),
        }
    }
}

/// Stores one page in its own transaction (`store` writes the rows, the cursor and the run's
/// figures); once it is committed, a requested stop ends the pull there: a safe point.
fn commit_page(
    connection: &rusqlite::Connection,
    stop: &StopSignal,
    store: impl FnOnce() -> rusqlite::Result<()>,
) -> Result<(), PageError> {
    connection.execute_batch("BEGIN IMMEDIATE")?;
    match store() {
        Ok(()) => connection.execute_batch("COMMIT")?,
        Err(error) => {
            let _ = connection.execute_batch("ROLLBACK");
            return Err(error.into());
        }
    }
    if stop.is_requested() {
        return Err(PageError::Stopped);
    }
    Ok(())
}

/// Pages pulled ahead of the one being stored (the bounded queue between fetching and storing).
const PAGES_QUEUED: usize = 1;

/// What the store side of one stream's pull did: its figures, the last cursor it committed, and
/// why it ended (`Ok` once the pull closed the queue).
struct StoredPages {
    counts: PageCounts,
    last: Option<Cursor>,
    ended: Result<(), PageError>,
}

/// The store side of a stream's pull (a blocking thread with its own connection): each queued
/// page with its cursor and the run's figures in one transaction, in order. It ends when the queue
/// closes, a page fails to store, or a stop is requested (checked after each commit, as when
/// pages were stored inline).
fn store_pages(
    connection: &rusqlite::Connection,
    system: CrmSystem,
    run_id: i64,
    before: Option<Cursor>,
    queued: &std::sync::mpsc::Receiver<PulledPage>,
    stop: &StopSignal,
) -> StoredPages {
    let mut stored = StoredPages {
        counts: PageCounts::default(),
        last: before,
        ended: Ok(()),
    };
    while let Ok(page) = queued.recv() {
        let counts = &mut stored.counts;
        let last = &mut stored.last;
        let committed = commit_page(connection, stop, || {
            let page_counts = crm::store_page(connection, system, &page, run_id, &now_text())?;
            *counts += page_counts;
            if page.cursor.is_some() {
                *last = page.cursor.clone();
            }
            crm::update_sync_run(
                connection,
                run_id,
                counts,
                last.as_ref(),
                "running",
                None,
                None,
            )
        });
        if let Err(error) = committed {
            stored.ended = Err(error);
            break;
        }
    }
    stored
}

async fn pull_stream<C: Connector>(
    ledger: &mut Ledger,
    client: &C,
    stream: StreamKind,
    until: DateTime<Utc>,
    stop: &StopSignal,
) -> Result<StreamReport, SyncError> {
    let system = client.system();
    let started = now_text();
    let sql = |ledger: &Ledger, source| ledger.sql_error(source);
    let before = crm::load_cursor(ledger.connection(), system, stream)
        .map_err(|source| sql(ledger, source))?;
    let store_connection = ledger.another_connection()?;
    let run_id = crm::begin_sync_run(
        ledger.connection(),
        system,
        stream.as_str(),
        "pull",
        before.as_ref(),
        &started,
    )
    .map_err(|source| sql(ledger, source))?;
    // Pages are stored on their own thread and connection while the connector fetches and
    // decodes the next one; `store` hands each page over through a bounded queue, in order.
    let (pages, queued) = std::sync::mpsc::sync_channel::<PulledPage>(PAGES_QUEUED);
    let store_side = {
        let stop = stop.clone();
        let before = before.clone();
        tokio::task::spawn_blocking(move || {
            store_pages(&store_connection, system, run_id, before, &queued, &stop)
        })
    };
    let mut store = move |page: PulledPage| -> Result<(), PageError> {
        // Blocks while the queue is full: the store side sets the pace. A closed queue means the
        // store side ended (a failure or a stop); its own result says which.
        pages.send(page).map_err(|_| PageError::Stopped)
    };
    // A stop that wins here lands while the pull waits for the CRM or decodes a page; the store
    // side commits the pages it was handed, checking for a stop after each commit, and leaves
    // the rest (their records come again).
    let pulled = tokio::select! {
        result = client.pull_pages(stream, before.as_ref(), until, &mut store) => result,
        () = stop.requested() => Err(PullFailure::Stopped),
    };
    // Closing the queue lets the store side finish the pages it was given and return.
    drop(store);
    let StoredPages {
        counts,
        last,
        ended,
    } = match store_side.await {
        Ok(stored) => stored,
        Err(error) => match error.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Cancelled: the runtime shut down before the store side started, so nothing of
            // this pull was stored.
            Err(_) => StoredPages {
                counts: PageCounts::default(),
                last: before.clone(),
                ended: Err(PageError::Stopped),
            },
        },
    };
    // Pages are stored in the order they were pulled, so a store failure or stop came before
    // anything the connector did afterwards: it wins, as it did when storing was inline.
    let result = match ended {
        Err(error) => Err(PullFailure::from(error)),
        Ok(()) => pulled,
    };
    let (outcome, message) = match result {
        Ok(()) => ("ok", None),
        Err(PullFailure::Stopped) => (
            "stopped",
            Some("a stop was requested; the next pull resumes from the stored cursor".to_string()),
        ),
        Err(PullFailure::Store(source)) => {
            let error = sql(ledger, source);
            let _ = crm::update_sync_run(
                ledger.connection(),
                run_id,
                &counts,
                last.as_ref(),
                "failed",
                Some(&error.to_string()),
                Some(&now_text()),
            );
            return Err(error.into());
        }
        Err(PullFailure::Connector(error)) => match error.class {
            FailureClass::Quota { .. } => ("deferred", Some(error.message)),
            FailureClass::Config => {
                let message = error.message;
                let _ = crm::update_sync_run(
                    ledger.connection(),
                    run_id,
                    &counts,
                    last.as_ref(),
                    "failed",
                    Some(&message),
                    Some(&now_text()),
                );
                return Err(SyncError::Config {
                    system: system.as_str(),
                    message,
                });
            }
            _ => ("failed", Some(error.message)),
        },
    };
    crm::update_sync_run(
        ledger.connection(),
        run_id,
        &counts,
        last.as_ref(),
        outcome,
        message.as_deref(),
        Some(&now_text()),
    )
    .map_err(|source| sql(ledger, source))?;
    match outcome {
        "ok" => tracing::info!(
            system = system.as_str(),
            stream = stream.as_str(),
            read = counts.read,
            new = counts.new,
            changed = counts.changed,
            deleted = counts.deleted,
            api_calls = counts.api_calls,
            "stream pulled"
        ),
        "stopped" => tracing::info!(
            system = system.as_str(),
            stream = stream.as_str(),
            read = counts.read,
            "stream pull stopped at a committed page"
        ),
        _ => tracing::warn!(
            system = system.as_str(),
            stream = stream.as_str(),
            outcome,
            reason = message.as_deref().unwrap_or(""),
            "stream not pulled to the end"
        ),
    }
    Ok(StreamReport {
        system: system.as_str(),
        stream: stream.as_str(),
        outcome,
        counts,
        watermark_before: before.map(|c| c.to_string()),
        watermark_after: last.map(|c| c.to_string()),
        message,
    })
}

/// The reconciliation pass (nightly): every stream's live ids, compared with the ledger. Records the
/// CRM no longer has are marked deleted; records the cursor missed make the stream's next pull a
/// full one. Costs ids-only reads: one call per page of ids. A stop request ends it between
/// streams (or after a committed page of archived records).
pub async fn reconcile_streams<C: Connector>(
    ledger: &mut Ledger,
    client: &C,
    stop: &StopSignal,
) -> Result<Vec<StreamReport>, SyncError> {
    let system = client.system();
    let mut reports = Vec::new();
    for stream in StreamKind::ALL {
        if stop.is_requested() {
            break;
        }
        let calls_before = client.api_calls();
        let connection = ledger.connection();
        let run_id = crm::begin_sync_run(
            connection,
            system,
            stream.as_str(),
            "reconcile",
            None,
            &now_text(),
        )
        .map_err(|source| ledger.sql_error(source))?;
        let mut counts = PageCounts::default();
        // Archived and merged records first (HubSpot), stored like any page (no cursor moves).
        let archived = {
            let ledger_ref = &mut *ledger;
            let counts_ref = &mut counts;
            let mut store = move |page: PulledPage| -> Result<(), PageError> {
                let connection = ledger_ref.connection();
                commit_page(connection, stop, || {
                    let page_counts =
                        crm::store_page(connection, system, &page, run_id, &now_text())?;
                    counts_ref.deleted += page_counts.deleted;
                    Ok(())
                })
            };
            client.pull_deleted(stream, &mut store).await
        };
        let live = match archived {
            Ok(()) => client
                .live_ids(stream)
                .await
                .map_err(PullFailure::Connector),
            Err(failure) => Err(failure),
        };
        let (outcome, message) = match live {
            Ok(ids) => {
                let live: std::collections::HashSet<String> = ids.into_iter().collect();
                counts.read = live.len() as u64;
                let connection = ledger.connection();
                let marked = (|| -> rusqlite::Result<(u64, usize)> {
                    connection.execute_batch("BEGIN IMMEDIATE")?;
                    let known = crm::known_ids(connection, system, stream)?;
                    let missed = live.iter().filter(|id| !known.contains(*id)).count();
                    let marked =
                        crm::mark_missing_deleted(connection, system, stream, &live, run_id)?;
                    if missed > 0 {
                        crm::reset_cursor(connection, system, stream)?;
                    }
                    connection.execute_batch("COMMIT")?;
                    Ok((marked, missed))
                })();
                let (marked, missed) = match marked {
                    Ok(result) => result,
                    Err(source) => {
                        let _ = connection.execute_batch("ROLLBACK");
                        return Err(ledger.sql_error(source).into());
                    }
                };
                counts.deleted += marked;
                let message = (missed > 0).then(|| {
                    format!(
                        "{missed} record(s) the cursor missed: the next pull reads the stream again"
                    )
                });
                ("ok", message)
            }
            Err(PullFailure::Store(source)) => return Err(ledger.sql_error(source).into()),
            Err(PullFailure::Stopped) => ("stopped", Some("a stop was requested".to_string())),
            Err(PullFailure::Connector(error)) => match error.class {
                FailureClass::Quota { .. } => ("deferred", Some(error.message)),
                FailureClass::Config => {
                    return Err(SyncError::Config {
                        system: system.as_str(),
                        message: error.message,
                    });
                }
                _ => ("failed", Some(error.message)),
            },
        };
        counts.api_calls = client.api_calls() - calls_before;
        crm::update_sync_run(
            ledger.connection(),
            run_id,
            &counts,
            None,
            outcome,
            message.as_deref(),
            Some(&now_text()),
        )
        .map_err(|source| ledger.sql_error(source))?;
        tracing::info!(
            system = system.as_str(),
            stream = stream.as_str(),
            outcome,
            live = counts.read,
            marked_deleted = counts.deleted,
            "stream reconciled"
        );
        let ended = outcome == "deferred" || outcome == "stopped";
        reports.push(StreamReport {
            system: system.as_str(),
            stream: stream.as_str(),
            outcome,
            counts,
            watermark_before: None,
            watermark_after: None,
            message,
        });
        if ended {
            break;
        }
    }
    Ok(reports)
}

/// Sends every intent pending at the start of the run, in batches, and records each result. The
/// run is recorded in `sync_run` (stream `tasks`, kind `push`). A stop request ends it between
/// batches; what was not sent stays pending.
pub async fn push_outbox<C: Connector>(
    ledger: &mut Ledger,
    client: &C,
    stop: &StopSignal,
) -> Result<PushReport, SyncError> {
    let system = client.system();
    let mut report = PushReport {
        system: system.as_str(),
        ..PushReport::default()
    };
    let calls_before = client.api_calls();
    let run_id = crm::begin_sync_run(
        ledger.connection(),
        system,
        "tasks",
        "push",
        None,
        &now_text(),
    )
    .map_err(|source| ledger.sql_error(source))?;
    let result = push_batches(ledger, client, stop, &mut report).await;
    let (outcome, message) = match &result {
        Ok(()) if report.stopped => ("stopped", Some("a stop was requested".to_string())),
        Ok(()) if report.retryable + report.permanent > 0 => (
            "ok",
            Some(format!(
                "{} intent(s) to retry, {} refused by the CRM",
                report.retryable, report.permanent
            )),
        ),
        Ok(()) => ("ok", None),
        Err(error) => ("failed", Some(error.to_string())),
    };
    let figures = crm::RunFigures {
        read: report.intents,
        new: report.created,
        changed: report.stored - report.created,
        rejected: report.permanent,
        api_calls: client.api_calls() - calls_before,
        ..crm::RunFigures::default()
    };
    crm::finish_run(
        ledger.connection(),
        run_id,
        &figures,
        outcome,
        message.as_deref(),
        &now_text(),
    )
    .map_err(|source| ledger.sql_error(source))?;
    result?;
    if report.intents > 0 {
        tracing::info!(
            system = system.as_str(),
            intents = report.intents,
            stored = report.stored,
            retryable = report.retryable,
            permanent = report.permanent,
            "outbox pushed"
        );
    }
    Ok(report)
}

async fn push_batches<C: Connector>(
    ledger: &mut Ledger,
    client: &C,
    stop: &StopSignal,
    report: &mut PushReport,
) -> Result<(), SyncError> {
    let system = client.system();
    let waiting = crm::pending(ledger.connection(), system, usize::MAX >> 1)
        .map_err(|source| ledger.sql_error(source))?;
    for batch in waiting.chunks(client.push_batch()) {
        if stop.is_requested() {
            report.stopped = true;
            break;
        }
        let results = match client.push_intents(batch).await {
            Ok(results) => results,
            Err(error) if error.class == FailureClass::Config => {
                return Err(SyncError::Config {
                    system: system.as_str(),
                    message: error.message,
                });
            }
            Err(error) => batch
                .iter()
                .map(|intent| PushResult::Retryable {
                    key: intent.key.clone(),
                    reason: error.message.clone(),
                })
                .collect(),
        };
        for result in &results {
            report.intents += 1;
            match result {
                PushResult::Stored { created, .. } => {
                    report.stored += 1;
                    report.created += u64::from(*created);
                }
                PushResult::Retryable { .. } => report.retryable += 1,
                PushResult::Permanent { .. } => report.permanent += 1,
            }
        }
        crm::record_results(ledger.connection(), system, &results, &now_text())
            .map_err(|source| ledger.sql_error(source))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use refbridge_model::crm::{CrmOwner, CrmRecord, CrmRecordBody};

    /// A connector that hands over fixed pages of owners, then ends as scripted; it can raise a
    /// stop right after handing over a given page.
    struct Scripted {
        pages: Vec<PulledPage>,
        ends_with: Option<(FailureClass, &'static str)>,
        stop_after_page: Option<(usize, StopSignal)>,
    }

    impl Connector for Scripted {
        fn system(&self) -> CrmSystem {
            CrmSystem::Salesforce
        }

        fn push_batch(&self) -> usize {
            200
        }

        fn window_end(&self, now: DateTime<Utc>) -> DateTime<Utc> {
            now
        }

        fn api_calls(&self) -> u64 {
            self.pages.len() as u64
        }

        async fn pull_pages(
            &self,
            _stream: StreamKind,
            _after: Option<&Cursor>,
            _until: DateTime<Utc>,
            on_page: &mut OnPage<'_>,
        ) -> Result<(), PullFailure> {
            for (index, page) in self.pages.iter().enumerate() {
                on_page(page.clone())?;
                if let Some((after, stop)) = &self.stop_after_page
                    && *after == index
                {
                    stop.request();
                }
            }
            match &self.ends_with {
                Some((class, message)) => Err(PullFailure::Connector(ConnectorFailure::new(
                    class.clone(),
                    &message.to_string(),
                ))),
                None => Ok(()),
            }
        }

        async fn live_ids(&self, _stream: StreamKind) -> Result<Vec<String>, ConnectorFailure> {
            Ok(Vec::new())
        }

        async fn push_intents(
            &self,
            _intents: &[TaskIntent],
        ) -> Result<Vec<PushResult>, ConnectorFailure> {
            Ok(Vec::new())
        }
    }

    /// `count` pages of two owners each: o1 o2 | o3 o4 | …
    fn owner_pages(count: u32) -> Vec<PulledPage> {
        (0..count)
            .map(|page| {
                let records: Vec<CrmRecord> = (1..=2)
                    .map(|n| {
                        let number = page * 2 + n;
                        let id = format!("o{number}");
                        CrmRecord {
                            id: id.clone(),
                            modified_at: Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, number).unwrap(),
                            deleted: false,
                            merged_into: None,
                            body: CrmRecordBody::Owner(CrmOwner {
                                id,
                                name: format!("Rep {number}"),
                                email: None,
                                active: true,
                            }),
                        }
                    })
                    .collect();
                let last = records.last().unwrap();
                PulledPage {
                    stream: StreamKind::Owners,
                    cursor: Some(Cursor {
                        modified_at: last.modified_at,
                        id: last.id.clone(),
                    }),
                    records,
                    api_calls: 1,
                }
            })
            .collect()
    }

    fn pull(
        ledger: &mut Ledger,
        client: &Scripted,
        stop: &StopSignal,
    ) -> Result<StreamReport, SyncError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(pull_stream(
            ledger,
            client,
            StreamKind::Owners,
            Utc::now(),
            stop,
        ))
    }

    /// Stored owner ids in order, the stored cursor's id, and the run row's outcome and count.
    fn stored(ledger: &Ledger) -> (Vec<String>, Option<String>, String, i64) {
        let connection = ledger.connection();
        let ids = connection
            .prepare(
                "SELECT external_id FROM crm_record WHERE stream = 'owners' ORDER BY modified_at",
            )
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<Vec<String>>>()
            .unwrap();
        let cursor = crm::load_cursor(connection, CrmSystem::Salesforce, StreamKind::Owners)
            .unwrap()
            .map(|cursor| cursor.id);
        let (outcome, read) = connection
            .query_row(
                "SELECT outcome, records_read FROM sync_run WHERE stream = 'owners'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        (ids, cursor, outcome, read)
    }

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn every_page_is_stored_in_order_with_its_cursor() {
        let (_directory, mut ledger) = crate::ledger::scratch();
        let client = Scripted {
            pages: owner_pages(3),
            ends_with: None,
            stop_after_page: None,
        };
        let report = pull(&mut ledger, &client, &StopSignal::new()).unwrap();
        assert_eq!(report.outcome, "ok");
        assert_eq!(
            (
                report.counts.read,
                report.counts.new,
                report.counts.api_calls
            ),
            (6, 6, 3)
        );
        assert_eq!(
            report
                .watermark_after
                .as_deref()
                .map(|w| w.ends_with("|o6")),
            Some(true)
        );
        assert_eq!(
            stored(&ledger),
            (
                ids(&["o1", "o2", "o3", "o4", "o5", "o6"]),
                Some("o6".to_string()),
                "ok".to_string(),
                6
            )
        );
    }

    #[test]
    fn a_page_the_ledger_refuses_fails_the_pull_and_keeps_the_pages_before_it() {
        let (_directory, mut ledger) = crate::ledger::scratch();
        // A trigger in the file (not TEMP), so that the store side's connection has it too.
        ledger
            .connection()
            .execute_batch(
                "CREATE TRIGGER refuse_o3 BEFORE INSERT ON crm_record
                 WHEN NEW.external_id = 'o3' BEGIN SELECT RAISE(ABORT, 'o3 refused'); END;",
            )
            .unwrap();
        let client = Scripted {
            pages: owner_pages(3),
            // What the connector would have said next never hides the ledger's failure.
            ends_with: Some((FailureClass::Retryable, "connection reset")),
            stop_after_page: None,
        };
        let error = pull(&mut ledger, &client, &StopSignal::new()).unwrap_err();
        let SyncError::Ledger(LedgerError::Sql { path, source }) = &error else {
            panic!("expected a ledger error, got {error:?}");
        };
        assert_eq!(path, ledger.path());
        assert!(source.to_string().contains("o3 refused"), "{source}");
        assert_eq!(
            stored(&ledger),
            (
                ids(&["o1", "o2"]),
                Some("o2".to_string()),
                "failed".to_string(),
                2
            )
        );
    }

    #[test]
    fn a_connector_failure_keeps_every_page_handed_over_before_it() {
        let (_directory, mut ledger) = crate::ledger::scratch();
        let client = Scripted {
            pages: owner_pages(3),
            ends_with: Some((FailureClass::Retryable, "connection reset")),
            stop_after_page: None,
        };
        let report = pull(&mut ledger, &client, &StopSignal::new()).unwrap();
        assert_eq!(report.outcome, "failed");
        assert_eq!(report.message.as_deref(), Some("connection reset"));
        assert_eq!(
            stored(&ledger),
            (
                ids(&["o1", "o2", "o3", "o4", "o5", "o6"]),
                Some("o6".to_string()),
                "failed".to_string(),
                6
            )
        );
    }

    #[test]
    fn a_configuration_failure_stops_the_run_with_the_pages_before_it_kept() {
        let (_directory, mut ledger) = crate::ledger::scratch();
        let client = Scripted {
            pages: owner_pages(3),
            ends_with: Some((FailureClass::Config, "the field Name is not readable")),
            stop_after_page: None,
        };
        let error = pull(&mut ledger, &client, &StopSignal::new()).unwrap_err();
        assert!(
            matches!(&error, SyncError::Config { system: "salesforce", message } if message == "the field Name is not readable"),
            "{error:?}"
        );
        assert_eq!(
            stored(&ledger),
            (
                ids(&["o1", "o2", "o3", "o4", "o5", "o6"]),
                Some("o6".to_string()),
                "failed".to_string(),
                6
            )
        );
    }

    #[test]
    fn a_stop_ends_the_pull_at_a_committed_page_with_its_cursor() {
        let (_directory, mut ledger) = crate::ledger::scratch();
        let stop = StopSignal::new();
        let client = Scripted {
            pages: owner_pages(10),
            ends_with: None,
            stop_after_page: Some((1, stop.clone())),
        };
        let report = pull(&mut ledger, &client, &stop).unwrap();
        assert_eq!(report.outcome, "stopped");
        let (stored_ids, cursor, outcome, read) = stored(&ledger);
        assert_eq!(outcome, "stopped");
        // The stop came after page 2 was handed over. Page 1 was taken before it, and the store
        // side sees the stop after at most one more commit (page 2, or page 3 when page 2 was
        // committed before the stop): whole pages, in order, and the cursor is the last
        // committed record's.
        let all: Vec<String> = (1..=20).map(|n| format!("o{n}")).collect();
        assert!(
            [2, 4, 6].contains(&stored_ids.len()) && stored_ids == all[..stored_ids.len()],
            "{stored_ids:?}"
        );
        assert_eq!(cursor.as_ref(), stored_ids.last());
        assert_eq!(read, stored_ids.len() as i64);
        assert_eq!(report.counts.read, stored_ids.len() as u64);
        assert_eq!(
            report
                .watermark_after
                .map(|w| w.ends_with(&format!("|{}", cursor.unwrap()))),
            Some(true)
        );
    }
}
