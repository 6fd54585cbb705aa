//! `refbridge sync --once`: every stream of every configured CRM into the ledger, then the outbox.
//!
//! Each pulled page and the cursor after it are stored in one ledger transaction (see
//! [`crate::ledger::crm`]), so a run stopped at any point resumes from the last committed page
//! without losing or repeating a record. A spent API quota defers the rest of the run (it is not a
//! failure); a configuration error stops it with the connector's message. Push sends every pending
//! intent once per run; what the CRM answers goes back to the outbox row by row.
//!
//! A [`StopSignal`] lands between transactions: a pull stops after the page it is committing (or
//! while it waits for the CRM, when no transaction is open), reconciliation between streams, a push
//! between batches; the run is recorded as `stopped`, never `failed`.

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
    let run_id = crm::begin_sync_run(
        ledger.connection(),
        system,
        stream.as_str(),
        "pull",
        before.as_ref(),
        &started,
    )
    .map_err(|source| sql(ledger, source))?;
    let mut counts = PageCounts::default();
    let mut last: Option<Cursor> = before.clone();
    let result = {
        let ledger_ref = &mut *ledger;
        let counts_ref = &mut counts;
        let last_ref = &mut last;
        let mut store = move |page: PulledPage| -> Result<(), PageError> {
            let connection = ledger_ref.connection();
            commit_page(connection, stop, || {
                let page_counts = crm::store_page(connection, system, &page, run_id, &now_text())?;
                *counts_ref += page_counts;
                if page.cursor.is_some() {
                    *last_ref = page.cursor.clone();
                }
                crm::update_sync_run(
                    connection,
                    run_id,
                    counts_ref,
                    last_ref.as_ref(),
                    "running",
                    None,
                    None,
                )
            })
        };
        // Transactions open and close inside `store`, which runs to its end within one poll of
        // the pull; a stop that wins here lands while the pull waits for the CRM, between them.
        tokio::select! {
            result = client.pull_pages(stream, before.as_ref(), until, &mut store) => result,
            () = stop.requested() => Err(PullFailure::Stopped),
        }
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
