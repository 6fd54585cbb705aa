//! The optional HTTP listener (off by default; loopback unless `http.allow_non_loopback`):
//! `/healthz` (200 while the process runs), `/readyz` (200 when the ledger is writable and no
//! configured CRM's last pull failed, else 503 with a one-line reason) and `/metrics`
//! (Prometheus text format).
//!
//! Every handler only reads: readiness takes a write lock and rolls it back at once. Answers carry
//! job names, systems, streams and counts, never a record, a partner's name or a patient value.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use refbridge_model::crm::CrmSystem;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::Shared;
use super::jobs::{Job, Outcome};
use super::metrics::{LedgerGauges, render};

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
    let connectors = &loaded.config.connectors;
    let systems: Vec<CrmSystem> = [
        (CrmSystem::Salesforce, connectors.salesforce.is_some()),
        (CrmSystem::Hubspot, connectors.hubspot.is_some()),
    ]
    .into_iter()
    .filter_map(|(system, configured)| configured.then_some(system))
    .collect();
    let verdict = tokio::task::spawn_blocking(move || {
        let settings = &loaded.config.ledger;
        readiness(
            &settings.path,
            Duration::from_secs(settings.busy_timeout_seconds),
            &systems,
            &failed_jobs,
        )
    })
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

/// Ready: no configured CRM's last pull job failed, the ledger takes a write lock, and no
/// configured CRM's stream's last pull failed. The reason is one line.
fn readiness(
    ledger: &Path,
    busy_timeout: Duration,
    systems: &[CrmSystem],
    failed_jobs: &[Job],
) -> Result<(), String> {
    if let Some(job) = failed_jobs.first() {
        return Err(format!("the last {} run failed", job.as_str()));
    }
    let connection = open(ledger, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|error| format!("cannot open the ledger: {error}"))?;
    connection
        .busy_timeout(busy_timeout)
        .and_then(|()| connection.execute_batch("BEGIN IMMEDIATE; ROLLBACK;"))
        .map_err(|error| format!("the ledger is not writable: {error}"))?;
    for system in systems {
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
            .optional()
            .map_err(|error| format!("cannot read the ledger: {error}"))?;
        if let Some(stream) = failed {
            return Err(format!(
                "the last {} {stream} pull failed (see `refbridge status`)",
                system.as_str()
            ));
        }
    }
    Ok(())
}

fn open(ledger: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(ledger, flags | OpenFlags::SQLITE_OPEN_NO_MUTEX)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let loaded = shared.config();
    let gauges = tokio::task::spawn_blocking(move || {
        let connection = open(&loaded.config.ledger.path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_the_failed_pull_or_job_in_one_line() {
        let (_directory, ledger) = crate::ledger::scratch();
        let path = ledger.path().to_path_buf();
        let second = Duration::from_secs(1);
        let both = [CrmSystem::Salesforce, CrmSystem::Hubspot];
        assert_eq!(readiness(&path, second, &both, &[]), Ok(()));
        let run = |outcome: &str| {
            ledger
                .connection()
                .execute(
                    "INSERT INTO sync_run (system, stream, kind, started_at, outcome)
                     VALUES ('hubspot', 'contacts', 'pull', 'x', ?1)",
                    [outcome],
                )
                .unwrap();
        };
        run("failed");
        assert_eq!(
            readiness(&path, second, &both, &[]),
            Err("the last hubspot contacts pull failed (see `refbridge status`)".to_string())
        );
        // A CRM that is not configured any more does not count.
        assert_eq!(
            readiness(&path, second, &[CrmSystem::Salesforce], &[]),
            Ok(())
        );
        // A later successful pull of the stream clears it.
        run("ok");
        assert_eq!(readiness(&path, second, &both, &[]), Ok(()));
        assert_eq!(
            readiness(&path, second, &both, &[Job::PullSalesforce]),
            Err("the last pull_salesforce run failed".to_string())
        );
        // A ledger another connection holds for writing is not ready.
        ledger
            .connection()
            .execute_batch("BEGIN IMMEDIATE")
            .unwrap();
        let busy = readiness(&path, Duration::from_millis(50), &both, &[]).unwrap_err();
        assert!(busy.starts_with("the ledger is not writable"), "{busy}");
        ledger.connection().execute_batch("ROLLBACK").unwrap();
    }
}
