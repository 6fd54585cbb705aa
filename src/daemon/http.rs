//! The optional HTTP listener (off by default; loopback unless `http.allow_non_loopback`):
//! `/healthz` (200 while the process runs), `/readyz` (200 when the ledger is writable and no
//! configured CRM's last pull failed, else 503 with a one-line reason) and `/metrics`
//! (Prometheus text format).
//!
//! Every handler only reads: readiness takes a write lock and rolls it back at once. Answers carry
//! job names, systems, streams and counts, never a record, a partner's name or a patient value.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use refbridge_model::crm::CrmSystem;
use rusqlite::{Connection, OpenFlags};

use super::Shared;
use super::jobs::{Job, Outcome};
use super::metrics::{LedgerGauges, render};
use crate::config::LoadedConfig;

/// Serves until `shutdown` resolves.
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let loaded = shared.config();
    let failed_jobs: Vec<Job> = [Job::PullSalesforce, Job::PullHubspot]
        .into_iter()
        .filter(|job| shared.last_outcome(*job) == Some(Outcome::Failed))
        .collect();
    let verdict = tokio::task::spawn_blocking(move || readiness(&loaded, &failed_jobs))
        .await
        .unwrap_or_else(|_| Err("the readiness check did not finish".to_string()));
    match verdict {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

/// Ready: the ledger takes a write lock, and no configured CRM's last pull job, nor the last
/// pull of any of its streams, failed.
fn readiness(loaded: &LoadedConfig, failed_jobs: &[Job]) -> Result<(), String> {
    if let Some(job) = failed_jobs.first() {
        return Err(format!("the last {} run failed", job.as_str()));
    }
    let settings = &loaded.config.ledger;
    let connection = open(loaded, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|error| format!("cannot open the ledger: {error}"))?;
    connection
        .busy_timeout(Duration::from_secs(settings.busy_timeout_seconds))
        .and_then(|()| connection.execute_batch("BEGIN IMMEDIATE; ROLLBACK;"))
        .map_err(|error| format!("the ledger is not writable: {error}"))?;
    let connectors = &loaded.config.connectors;
    for (system, configured) in [
        (CrmSystem::Salesforce, connectors.salesforce.is_some()),
        (CrmSystem::Hubspot, connectors.hubspot.is_some()),
    ] {
        if !configured {
            continue;
        }
        let failed: Option<String> = connection
            .query_row(
                "SELECT s.stream FROM sync_run s
                 WHERE s.system = ?1 AND s.kind = 'pull' AND s.outcome = 'failed'
                   AND s.id = (SELECT max(t.id) FROM sync_run t
                               WHERE t.system = s.system AND t.stream = s.stream AND t.kind = 'pull')
                 ORDER BY s.stream LIMIT 1",
                [system.as_str()],
                |row| row.get(0),
            )
            .map(Some)
            .or_else(|error| match error {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                other => Err(format!("cannot read the ledger: {other}")),
            })?;
        if let Some(stream) = failed {
            return Err(format!(
                "the last {} {stream} pull failed (see `refbridge status`)",
                system.as_str()
            ));
        }
    }
    Ok(())
}

fn open(loaded: &LoadedConfig, flags: OpenFlags) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(
        &loaded.config.ledger.path,
        flags | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let loaded = shared.config();
    let gauges = tokio::task::spawn_blocking(move || {
        let connection = open(&loaded, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        connection.busy_timeout(Duration::from_secs(
            loaded.config.ledger.busy_timeout_seconds,
        ))?;
        LedgerGauges::read(&connection)
    })
    .await;
    let gauges = match gauges {
        Ok(Ok(gauges)) => Some(gauges),
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "metrics: cannot read the ledger");
            None
        }
        Err(_) => None,
    };
    let jobs = shared.scheduled_jobs();
    let body = render(&shared.metrics.families(&jobs, gauges.as_ref()));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
