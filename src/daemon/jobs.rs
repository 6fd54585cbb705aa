//! The daemon's jobs: what one scheduled run of each does, and how it is recorded.
//!
//! A run is blocking work on a thread of its own: it opens its own ledger connection (SQLite WAL;
//! writers wait on the busy timeout) and, for CRM calls, builds its own clients and a
//! current-thread runtime, so a slow Salesforce pull never holds up a HubSpot pull or the inbox.
//! Every step is one of the cycle's (`crate::cycle`); nothing here pulls, imports or evaluates
//! by itself. Pulls, reconciliations and pushes record their runs in `sync_run` per stream; the
//! inbox scan, the evaluation and maintenance record theirs under the system `refbridge`. A run
//! never panics on bad data and never logs a record's or a patient's values.

use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use chrono::Utc;
use refbridge_http::StatusCounts;
use refbridge_model::crm::CrmSystem;

use crate::config::{Config, LoadedConfig};
use crate::cycle;
use crate::import::{ImportReport, Outcome as FileOutcome};
use crate::ledger::crm::{self, RunFigures};
use crate::ledger::{Ledger, LedgerError};
use crate::stop::StopSignal;
use crate::sync::{CrmClient, QuotaView, SyncReport};

use super::maintenance;

/// A scheduled job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Job {
    PullSalesforce,
    PullHubspot,
    Import,
    Evaluate,
    Reconcile,
    Maintenance,
}

impl Job {
    pub const ALL: [Job; 6] = [
        Job::PullSalesforce,
        Job::PullHubspot,
        Job::Import,
        Job::Evaluate,
        Job::Reconcile,
        Job::Maintenance,
    ];

    /// The job's name: its `[schedule]` key, its metrics label, its word in logs and `STATUS=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Job::PullSalesforce => "pull_salesforce",
            Job::PullHubspot => "pull_hubspot",
            Job::Import => "import",
            Job::Evaluate => "evaluate",
            Job::Reconcile => "reconcile",
            Job::Maintenance => "maintenance",
        }
    }

    /// Whether a config asks for this job: pulls only for a configured CRM, the inbox scan only
    /// with `[connectors.ehr]`, reconciliation only with a CRM.
    pub fn is_configured(self, config: &Config) -> bool {
        let connectors = &config.connectors;
        match self {
            Job::PullSalesforce => connectors.salesforce.is_some(),
            Job::PullHubspot => connectors.hubspot.is_some(),
            Job::Import => connectors.ehr.is_some(),
            Job::Reconcile => connectors.salesforce.is_some() || connectors.hubspot.is_some(),
            Job::Evaluate | Job::Maintenance => true,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// A CRM's API quota reserve was reached; the rest waits for the next run.
    Deferred,
    /// A stop was requested; the run ended at a safe point.
    Stopped,
    Failed,
    /// Not run: the previous run of the job was still running.
    Skipped,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Deferred,
        Outcome::Stopped,
        Outcome::Failed,
        Outcome::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Deferred => "deferred",
            Outcome::Stopped => "stopped",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// What a CRM client did during a run: its answers by status class and its last quota view.
#[derive(Debug, Clone, Copy)]
pub struct ClientUse {
    pub system: CrmSystem,
    pub statuses: StatusCounts,
    pub quota: Option<QuotaView>,
}

/// What one run did, for the log, `STATUS=` and the metrics.
#[derive(Debug)]
pub struct RunResult {
    pub outcome: Outcome,
    /// One sentence: figures and, for a failure, why.
    pub summary: String,
    /// Records read per (system, stream) by pulls.
    pub pulled: Vec<(&'static str, &'static str, u64)>,
    pub clients: Vec<ClientUse>,
}

impl RunResult {
    fn new(outcome: Outcome, summary: String) -> RunResult {
        RunResult {
            outcome,
            summary,
            pulled: Vec::new(),
            clients: Vec::new(),
        }
    }

    fn failed(error: &dyn std::error::Error) -> RunResult {
        RunResult::new(Outcome::Failed, chain(error))
    }
}

/// An error and its sources in one line (`a: b: c`).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let _ = write!(text, ": {inner}");
        source = inner.source();
    }
    text
}

/// The locks that keep jobs from seeing each other's work half done.
///
/// One lock per CRM: a pull and the nightly reconciliation of the same CRM never run at once (a
/// reconciliation may reset a stream's cursor, which a pull in flight would overwrite). And one
/// for the inputs: pulls, reconciliations and inbox scans hold it shared, an evaluation holds it
/// alone, so an evaluation never reads a CRM pulled half-way or an export imported half-way.
#[derive(Debug, Default)]
pub struct Locks {
    salesforce: Mutex<()>,
    hubspot: Mutex<()>,
    inputs: RwLock<()>,
}

impl Locks {
    fn crm(&self, system: CrmSystem) -> MutexGuard<'_, ()> {
        let lock = match system {
            CrmSystem::Salesforce => &self.salesforce,
            CrmSystem::Hubspot => &self.hubspot,
        };
        lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Held while a job writes inputs (pull, reconcile, import).
    fn writing_inputs(&self) -> RwLockReadGuard<'_, ()> {
        self.inputs
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Held while an evaluation reads the inputs.
    fn reading_all_inputs(&self) -> RwLockWriteGuard<'_, ()> {
        self.inputs
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a run needs from the daemon.
pub struct JobContext<'a> {
    pub loaded: &'a LoadedConfig,
    pub stop: &'a StopSignal,
    pub locks: &'a Locks,
}

/// Runs one job to its end (or to the safe point after a stop request). Blocking.
pub fn run(job: Job, context: &JobContext<'_>) -> RunResult {
    match job {
        Job::PullSalesforce => pull(context, CrmSystem::Salesforce),
        Job::PullHubspot => pull(context, CrmSystem::Hubspot),
        Job::Import => import(context),
        Job::Evaluate => evaluate(context),
        Job::Reconcile => reconcile(context),
        Job::Maintenance => maintain(context),
    }
}

fn open_ledger(loaded: &LoadedConfig) -> Result<Ledger, LedgerError> {
    let settings = &loaded.config.ledger;
    Ledger::open(
        &settings.path,
        Duration::from_secs(settings.busy_timeout_seconds),
    )
}

/// A runtime for one run's CRM calls, on the run's own thread.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn client_use(client: &CrmClient) -> ClientUse {
    ClientUse {
        system: client.system(),
        statuses: client.status_counts(),
        quota: client.quota(),
    }
}

/// A pull's (or reconciliation's) outcome from its streams.
fn pull_outcome(report: &SyncReport) -> Outcome {
    let streams = || report.streams.iter().chain(&report.reconciled);
    if report.has_failures() {
        Outcome::Failed
    } else if report.was_stopped() {
        Outcome::Stopped
    } else if streams().any(|stream| stream.outcome == "deferred") {
        Outcome::Deferred
    } else {
        Outcome::Ok
    }
}

fn pull_summary(report: &SyncReport) -> String {
    let streams = || report.streams.iter().chain(&report.reconciled);
    let read: u64 = report.streams.iter().map(|s| s.counts.read).sum();
    let changed: u64 = report
        .streams
        .iter()
        .map(|s| s.counts.new + s.counts.changed)
        .sum();
    let mut summary = format!(
        "{} stream(s), {read} record(s) read, {changed} new or changed",
        report.streams.len()
    );
    if !report.reconciled.is_empty() {
        let deleted: u64 = report.reconciled.iter().map(|s| s.counts.deleted).sum();
        let _ = write!(
            summary,
            "; {} stream(s) reconciled, {deleted} marked deleted",
            report.reconciled.len()
        );
    }
    for stream in streams().filter(|s| s.outcome != "ok") {
        let _ = write!(
            summary,
            "; {} {} {}: {}",
            stream.system,
            stream.stream,
            stream.outcome,
            stream.message.as_deref().unwrap_or("")
        );
    }
    summary
}

/// Pulls (and with `reconcile`, reconciles) one CRM under its lock.
fn pull_one(
    context: &JobContext<'_>,
    system: CrmSystem,
    reconcile: bool,
) -> Result<(SyncReport, ClientUse), RunResult> {
    let client = match CrmClient::configured(context.loaded, system) {
        Ok(Some(client)) => client,
        Ok(None) => {
            return Err(RunResult::new(
                Outcome::Failed,
                format!("{} is not configured", system.as_str()),
            ));
        }
        Err(message) => return Err(RunResult::new(Outcome::Failed, message)),
    };
    let _crm = context.locks.crm(system);
    let _inputs = context.locks.writing_inputs();
    if context.stop.is_requested() {
        return Err(RunResult::new(
            Outcome::Stopped,
            "a stop was requested".to_string(),
        ));
    }
    let mut ledger = open_ledger(context.loaded).map_err(|error| RunResult::failed(&error))?;
    let runtime = runtime().map_err(|error| RunResult::failed(&error))?;
    let result = runtime.block_on(client.pull(&mut ledger, Utc::now(), reconcile, context.stop));
    let used = client_use(&client);
    match result {
        Ok(report) => Ok((report, used)),
        Err(error) => {
            let mut result = RunResult::failed(&error);
            result.clients.push(used);
            Err(result)
        }
    }
}

fn pulled_figures(report: &SyncReport) -> Vec<(&'static str, &'static str, u64)> {
    report
        .streams
        .iter()
        .map(|stream| (stream.system, stream.stream, stream.counts.read))
        .collect()
}

fn pull(context: &JobContext<'_>, system: CrmSystem) -> RunResult {
    match pull_one(context, system, false) {
        Ok((report, used)) => RunResult {
            outcome: pull_outcome(&report),
            summary: pull_summary(&report),
            pulled: pulled_figures(&report),
            clients: vec![used],
        },
        Err(result) => result,
    }
}

/// The nightly pass: each configured CRM in turn, pulled and then reconciled.
fn reconcile(context: &JobContext<'_>) -> RunResult {
    let mut total = SyncReport::default();
    let mut clients = Vec::new();
    for system in [CrmSystem::Salesforce, CrmSystem::Hubspot] {
        let configured = match system {
            CrmSystem::Salesforce => context.loaded.config.connectors.salesforce.is_some(),
            CrmSystem::Hubspot => context.loaded.config.connectors.hubspot.is_some(),
        };
        if !configured || context.stop.is_requested() {
            continue;
        }
        match pull_one(context, system, true) {
            Ok((report, used)) => {
                total.absorb(report);
                clients.push(used);
            }
            Err(mut result) => {
                result.pulled = pulled_figures(&total);
                result.clients.extend(clients);
                return result;
            }
        }
    }
    let stopped_early = context.stop.is_requested() && !total.was_stopped();
    RunResult {
        outcome: if stopped_early {
            Outcome::Stopped
        } else {
            pull_outcome(&total)
        },
        summary: pull_summary(&total),
        pulled: pulled_figures(&total),
        clients,
    }
}

/// Runs `work` inside a `sync_run` row of system `refbridge` (`running` until it ends).
fn recorded(
    loaded: &LoadedConfig,
    stream: &str,
    kind: &str,
    work: impl FnOnce(&mut Ledger) -> (RunResult, RunFigures),
) -> RunResult {
    let mut ledger = match open_ledger(loaded) {
        Ok(ledger) => ledger,
        Err(error) => return RunResult::failed(&error),
    };
    let run_id = match crm::begin_job_run(ledger.connection(), stream, kind, &crate::import::now())
    {
        Ok(run_id) => run_id,
        Err(source) => return RunResult::failed(&ledger.sql_error(source)),
    };
    // A bug must not leave the run `running` for ever: a panic is recorded as a failure.
    let (result, figures) =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&mut ledger)))
            .unwrap_or_else(|_| {
                // Whatever it had open is abandoned (an error when nothing was).
                let _ = ledger.connection().execute_batch("ROLLBACK");
                (
                    RunResult::new(Outcome::Failed, "the job panicked (a bug)".to_string()),
                    RunFigures::default(),
                )
            });
    if let Err(source) = crm::finish_run(
        ledger.connection(),
        run_id,
        &figures,
        result.outcome.as_str(),
        Some(&result.summary),
        &crate::import::now(),
    ) {
        return RunResult::failed(&ledger.sql_error(source));
    }
    result
}

fn import(context: &JobContext<'_>) -> RunResult {
    recorded(context.loaded, "inbox", "import", |ledger| {
        let _inputs = context.locks.writing_inputs();
        match cycle::import_inbox(context.loaded, ledger, context.stop) {
            Ok(Some(report)) => import_result(&report),
            Ok(None) => (
                RunResult::new(Outcome::Ok, "no EHR inbox is configured".to_string()),
                RunFigures::default(),
            ),
            Err(error) => (RunResult::failed(&error), RunFigures::default()),
        }
    })
}

fn import_result(report: &ImportReport) -> (RunResult, RunFigures) {
    let t = &report.totals;
    let unread = report
        .file_reports
        .iter()
        .filter(|file| matches!(file.outcome, FileOutcome::Rejected | FileOutcome::Partial))
        .count();
    let mut summary = format!(
        "{} file(s), {} row(s): {} referral(s) new, {} updated, {} quarantined",
        report.files, t.rows, t.referrals_new, t.referrals_updated, t.quarantined
    );
    let outcome = if unread > 0 {
        let _ = write!(
            summary,
            "; {unread} file(s) could not be read to the end (see `refbridge status`)"
        );
        Outcome::Failed
    } else if report.stopped {
        summary.push_str("; stopped before the remaining files (they stay in the inbox)");
        Outcome::Stopped
    } else {
        Outcome::Ok
    };
    let figures = RunFigures {
        read: t.rows,
        new: t.referrals_new,
        changed: t.referrals_updated,
        unchanged: t.referrals_unchanged,
        rejected: t.quarantined,
        ..RunFigures::default()
    };
    (RunResult::new(outcome, summary), figures)
}

/// Identity, health, rules and routing into the outbox (one committed evaluation), then a push
/// to every configured CRM. A stop request after the evaluation leaves the push to the next run.
fn evaluate(context: &JobContext<'_>) -> RunResult {
    let loaded = context.loaded;
    recorded(loaded, "outbox", "evaluate", |ledger| {
        let clients = match CrmClient::all(loaded) {
            Ok(clients) => clients,
            Err(message) => {
                return (
                    RunResult::new(Outcome::Failed, message),
                    RunFigures::default(),
                );
            }
        };
        let configured: Vec<CrmSystem> = clients.iter().map(CrmClient::system).collect();
        match cycle::inputs_missing(ledger, &configured, loaded.config.connectors.ehr.is_some()) {
            Ok(missing) if missing.is_empty() => {}
            Ok(missing) => {
                let summary = format!(
                    "waiting for the first complete read of every input: {}",
                    missing.join(", ")
                );
                return (
                    RunResult::new(Outcome::Deferred, summary),
                    RunFigures::default(),
                );
            }
            Err(source) => {
                return (
                    RunResult::failed(&ledger.sql_error(source)),
                    RunFigures::default(),
                );
            }
        }
        let as_of = Utc::now().date_naive();
        let evaluated = {
            let _inputs = context.locks.reading_all_inputs();
            cycle::evaluate_and_queue(loaded, ledger, &configured, as_of, false)
        };
        let (evaluation, refused) = match evaluated {
            Ok(result) => result,
            Err(error) => return (RunResult::failed(&error), RunFigures::default()),
        };
        let mut figures = RunFigures::default();
        let mut summary = String::new();
        if let Some(evaluation) = &evaluation {
            let plan = &evaluation.plan;
            let health = &evaluation.health;
            figures.read = health.partners;
            figures.new = plan.create.len() as u64;
            figures.changed = plan.update.len() as u64;
            figures.deleted = plan.close.len() as u64;
            figures.unchanged = plan.unchanged;
            figures.rejected = plan.invalid.len() as u64;
            let _ = write!(
                summary,
                "{} partner(s): {} at risk, {} to watch; tasks: {} to create, {} to update, {} to close, {} waiting for budget, {} invalid",
                health.partners,
                health.at_risk,
                health.watch,
                plan.create.len(),
                plan.update.len(),
                plan.close.len(),
                plan.waiting.len(),
                plan.invalid.len()
            );
        }
        if let Some(refused) = &refused {
            let _ = write!(summary, "plan refused: {refused}");
        }
        if context.stop.is_requested() {
            summary.push_str("; not pushed: a stop was requested (the next run pushes)");
            return (RunResult::new(Outcome::Stopped, summary), figures);
        }
        let pushed = match runtime() {
            Ok(runtime) => runtime
                .block_on(cycle::push_all(ledger, &clients, context.stop))
                .map_err(|error| chain(&error)),
            Err(error) => Err(chain(&error)),
        };
        figures.api_calls = clients.iter().map(CrmClient::api_calls).sum();
        let used: Vec<ClientUse> = clients.iter().map(client_use).collect();
        let mut result = match pushed {
            Ok(pushes) => {
                for push in &pushes {
                    let _ = write!(
                        summary,
                        "; {} push: {} intent(s), {} stored, {} to retry, {} refused",
                        push.system, push.intents, push.stored, push.retryable, push.permanent
                    );
                }
                let outcome = if refused.is_some() {
                    Outcome::Failed
                } else if pushes.iter().any(|push| push.stopped) {
                    Outcome::Stopped
                } else {
                    Outcome::Ok
                };
                RunResult::new(outcome, summary)
            }
            Err(error) => {
                let _ = write!(summary, "; push failed: {error}");
                RunResult::new(Outcome::Failed, summary)
            }
        };
        result.clients = used;
        (result, figures)
    })
}

fn maintain(context: &JobContext<'_>) -> RunResult {
    let loaded = context.loaded;
    recorded(
        loaded,
        "ledger",
        "maintenance",
        |ledger| match maintenance::run(loaded, ledger, context.stop, Utc::now()) {
            Ok(report) => {
                let figures = RunFigures {
                    deleted: report.rows_pruned(),
                    ..RunFigures::default()
                };
                let outcome = if report.stopped {
                    Outcome::Stopped
                } else {
                    Outcome::Ok
                };
                (RunResult::new(outcome, report.summary()), figures)
            }
            Err(error) => (RunResult::failed(&error), RunFigures::default()),
        },
    )
}
