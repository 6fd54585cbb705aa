//! One whole cycle, as `refbridge sync --once` runs it: pull every CRM, import the EHR inbox,
//! resolve identities, compute health, evaluate rules and refer-out routing into the outbox, push.
//!
//! Each step is a function of its own ([`pull_all`], [`import_inbox`], [`evaluate_and_queue`],
//! [`push_all`]) that commits its own work before the next begins, so a cycle stopped anywhere
//! leaves a ledger that the next cycle simply continues; the daemon (`crate::daemon`) schedules the
//! same steps as separate jobs. The evaluation ([`evaluate`]) is shared with `refbridge plan`, which
//! runs it and rolls the outbox part back. Nothing here schedules, retries or sleeps.

use chrono::{DateTime, NaiveDate, Utc};
use refbridge_model::crm::{CrmSystem, StreamKind};
use serde::Serialize;

use crate::config::{Config, LoadedConfig};
use crate::health::{self, HealthState};
use crate::identity::{self, IdentityReport};
use crate::import::{ImportReport, Importer, now as now_text};
use crate::ledger::{Ledger, LedgerError, crm};
use crate::outbox::{self, OutboxError, Plan, ReconcileOptions};
use crate::routing;
use crate::rules::{self, RuleInputs};
use crate::stop::StopSignal;
use crate::sync::{CrmClient, PushReport, SyncError, SyncReport};

/// How a cycle runs.
#[derive(Debug, Clone)]
pub struct CycleOptions {
    pub now: DateTime<Utc>,
    /// Run the reconciliation pass after pulling (nightly).
    pub reconcile: bool,
    /// Apply a plan even when the circuit breaker trips.
    pub allow_mass_change: bool,
    /// Raised to stop at the next safe point (between pages, files and batches).
    pub stop: StopSignal,
}

/// Health, in counts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HealthSummary {
    pub partners: u64,
    pub at_risk: u64,
    pub watch: u64,
    pub healthy: u64,
    /// False when nothing changed since the last computation (stored snapshots reused).
    pub recomputed: bool,
}

/// What evaluation found: identities, health and the plan.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub identity: IdentityReport,
    pub health: HealthSummary,
    /// Leads that did not convert and got refer-out options.
    pub refer_out_leads: u64,
    pub plan: Plan,
}

/// A whole cycle.
#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    pub pulled: SyncReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub imported: Option<ImportReport>,
    /// `None` when the circuit breaker refused the plan (see `refused`) or an input has not been
    /// read to its end once yet (see `waiting_for`).
    pub evaluation: Option<Evaluation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// Streams never pulled to their end (`salesforce referrals`): evaluation waits for them, as
    /// the daemon's does, since tasks planned from half a first load would move later.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waiting_for: Vec<String>,
    pub push: Vec<PushReport>,
    /// API calls made by the connectors in this cycle.
    pub api_calls: u64,
}

impl CycleReport {
    /// True when a stream failed, a file could not be read, or the breaker refused the plan.
    pub fn has_failures(&self) -> bool {
        self.pulled.has_failures()
            || self.refused.is_some()
            || self.imported.as_ref().is_some_and(|report| {
                report.file_reports.iter().any(|file| {
                    matches!(
                        file.outcome,
                        crate::import::Outcome::Rejected | crate::import::Outcome::Partial
                    )
                })
            })
    }
}

/// Why a cycle stopped.
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("cannot import the EHR inbox")]
    Import(#[from] crate::import::ImportError),
    #[error("refer-out routing: {0}")]
    Routing(String),
}

/// Runs one cycle: [`pull_all`], [`import_inbox`], [`evaluate_and_queue`], [`push_all`].
pub async fn run_cycle(
    loaded: &LoadedConfig,
    ledger: &mut Ledger,
    clients: &[CrmClient],
    options: CycleOptions,
) -> Result<CycleReport, CycleError> {
    let pulled = pull_all(
        ledger,
        clients,
        options.now,
        options.reconcile,
        &options.stop,
    )
    .await?;
    let imported = import_inbox(loaded, ledger, &options.stop)?;
    let configured: Vec<CrmSystem> = clients.iter().map(CrmClient::system).collect();
    // The inbox was just scanned: only the CRMs' first complete reads can still be missing.
    let waiting_for =
        inputs_missing(ledger, &configured, false).map_err(|source| ledger.sql_error(source))?;
    let (evaluation, refused) = if waiting_for.is_empty() {
        evaluate_and_queue(
            loaded,
            ledger,
            &configured,
            options.now.date_naive(),
            options.allow_mass_change,
        )?
    } else {
        (None, None)
    };
    let push = push_all(ledger, clients, &options.stop).await?;
    let api_calls = clients.iter().map(CrmClient::api_calls).sum();
    Ok(CycleReport {
        pulled,
        imported,
        evaluation,
        refused,
        waiting_for,
        push,
        api_calls,
    })
}

/// The inputs an evaluation still waits for: every stream of every configured CRM pulled to the
/// end once (`salesforce referrals`), and the inbox scanned once (`the EHR inbox`). Tasks planned
/// from half the data would be moved or closed once the rest arrives, and the circuit breaker
/// would then refuse the whole plan.
pub fn inputs_missing(
    ledger: &Ledger,
    configured: &[CrmSystem],
    inbox: bool,
) -> rusqlite::Result<Vec<String>> {
    let connection = ledger.connection();
    let mut missing = Vec::new();
    let mut pulled = connection.prepare(
        "SELECT EXISTS (SELECT 1 FROM sync_run
                        WHERE system = ?1 AND stream = ?2 AND kind = 'pull' AND outcome = 'ok')",
    )?;
    for system in configured {
        for stream in StreamKind::ALL {
            let done: bool =
                pulled.query_row([system.as_str(), stream.as_str()], |row| row.get(0))?;
            if !done {
                missing.push(format!("{} {}", system.as_str(), stream.as_str()));
            }
        }
    }
    if inbox {
        let scanned: bool = connection.query_row(
            "SELECT EXISTS (SELECT 1 FROM sync_run
                            WHERE system = ?1 AND kind = 'import' AND outcome <> 'running')
                 OR EXISTS (SELECT 1 FROM import_run)",
            [crm::REFBRIDGE_SYSTEM],
            |row| row.get(0),
        )?;
        if !scanned {
            missing.push("the EHR inbox".to_string());
        }
    }
    Ok(missing)
}

/// Pulls every stream of each client in turn (and reconciles, when asked).
pub async fn pull_all(
    ledger: &mut Ledger,
    clients: &[CrmClient],
    now: DateTime<Utc>,
    reconcile: bool,
    stop: &StopSignal,
) -> Result<SyncReport, CycleError> {
    let mut pulled = SyncReport::default();
    for client in clients {
        if stop.is_requested() {
            break;
        }
        pulled.absorb(client.pull(ledger, now, reconcile, stop).await?);
    }
    pulled.api_calls = 0;
    Ok(pulled)
}

/// Imports what waits in the EHR inbox, when `[connectors.ehr]` is configured; a stop request
/// ends the scan after the file being imported.
pub fn import_inbox(
    loaded: &LoadedConfig,
    ledger: &mut Ledger,
    stop: &StopSignal,
) -> Result<Option<ImportReport>, CycleError> {
    let Some(ehr) = &loaded.config.connectors.ehr else {
        return Ok(None);
    };
    let reader = Importer::reader_for(ehr, loaded.patient_key.expose());
    let mut importer = Importer::new(
        ledger,
        reader,
        &loaded.config.identity.alias,
        loaded.config.ledger.import_batch_rows,
    )
    .stop_on(stop.clone());
    Ok(Some(importer.import_inbox(&ehr.inbox)?))
}

/// [`evaluate`] with the plan applied: alerts and outbox intents are committed, to be pushed. A
/// plan the circuit breaker refuses is logged and returned as the refusal's message (pending
/// retries are still pushed); anything else that fails is an error.
pub fn evaluate_and_queue(
    loaded: &LoadedConfig,
    ledger: &mut Ledger,
    configured: &[CrmSystem],
    as_of: NaiveDate,
    allow_mass_change: bool,
) -> Result<(Option<Evaluation>, Option<String>), CycleError> {
    match evaluate(
        &loaded.config,
        ledger,
        configured,
        as_of,
        allow_mass_change,
        true,
    ) {
        Ok(evaluation) => Ok((Some(evaluation), None)),
        Err(EvaluateError::Outbox(OutboxError::Breaker { .. }, message)) => {
            tracing::error!(reason = %message, "plan refused; pending retries are still pushed");
            Ok((None, Some(message)))
        }
        Err(EvaluateError::Outbox(OutboxError::Sql(source), _) | EvaluateError::Sql(source)) => {
            Err(CycleError::Ledger(ledger.sql_error(source)))
        }
        Err(EvaluateError::Routing(message)) => Err(CycleError::Routing(message)),
    }
}

/// Pushes every pending intent to its CRM, one client after the other.
pub async fn push_all(
    ledger: &mut Ledger,
    clients: &[CrmClient],
    stop: &StopSignal,
) -> Result<Vec<PushReport>, CycleError> {
    let mut push = Vec::new();
    for client in clients {
        if stop.is_requested() {
            break;
        }
        push.push(client.push(ledger, stop).await?);
    }
    Ok(push)
}

/// Why an evaluation stopped.
#[derive(Debug)]
pub enum EvaluateError {
    /// The outbox refused (the breaker), with the message to show.
    Outbox(OutboxError, String),
    Sql(rusqlite::Error),
    Routing(String),
}

impl From<rusqlite::Error> for EvaluateError {
    fn from(error: rusqlite::Error) -> EvaluateError {
        EvaluateError::Sql(error)
    }
}

/// Identity, health, routing and rules, then the outbox plan. With `apply` the plan is committed
/// (alerts and outbox rows written, to be pushed); without, it is rolled back: nothing is queued
/// and nothing sent. Identity and health are derived data and are stored either way.
pub fn evaluate(
    config: &Config,
    ledger: &mut Ledger,
    configured: &[CrmSystem],
    as_of: NaiveDate,
    allow_mass_change: bool,
    apply: bool,
) -> Result<Evaluation, EvaluateError> {
    let now = now_text();
    let connection = ledger.connection();
    let identity = identity::resolve(connection, &config.identity, &now)?;
    let refreshed = health::refresh(connection, &config.health, as_of, &now)?;
    let mut summary = HealthSummary {
        partners: refreshed.health.len() as u64,
        recomputed: refreshed.recomputed,
        ..HealthSummary::default()
    };
    for partner in &refreshed.health {
        match partner.state {
            HealthState::AtRisk => summary.at_risk += 1,
            HealthState::Watch => summary.watch += 1,
            HealthState::Healthy => summary.healthy += 1,
        }
    }
    let leads = if config.routing.enabled {
        routing::lead_suggestions(connection, &config.routing, as_of)
            .map_err(|error| EvaluateError::Routing(error.to_string()))?
    } else {
        Vec::new()
    };
    let conditions = rules::evaluate(
        connection,
        &config.rules,
        &RuleInputs {
            as_of,
            health: &refreshed.health,
            leads: &leads,
            configured,
        },
    )?;
    connection.execute_batch("BEGIN IMMEDIATE")?;
    let result = outbox::reconcile(
        connection,
        &conditions,
        &config.rules,
        &config.outbox,
        &ReconcileOptions {
            as_of,
            today: as_of,
            now: &now,
            allow_mass_change,
        },
    );
    let finish = if apply && result.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    connection.execute_batch(finish)?;
    let plan = match result {
        Ok(plan) => plan,
        Err(OutboxError::Breaker { plan, .. }) if !apply => *plan,
        Err(error) => {
            let message = error.to_string();
            return Err(EvaluateError::Outbox(error, message));
        }
    };
    if apply {
        tracing::info!(
            create = plan.create.len(),
            update = plan.update.len(),
            close = plan.close.len(),
            waiting = plan.waiting.len(),
            invalid = plan.invalid.len(),
            "outbox planned"
        );
    }
    Ok(Evaluation {
        identity,
        health: summary,
        refer_out_leads: leads.len() as u64,
        plan,
    })
}
