//! `refbridge run`: the daemon. It schedules the cycle's steps as separate jobs (one cron
//! expression each, `[schedule]`), answers SIGTERM/SIGINT by stopping at a safe point and SIGHUP
//! by reloading the config, speaks systemd's notification protocol, serves the optional loopback
//! HTTP listener, and keeps the ledger (backups, checkpoints, pruning).
//!
//! It starts only with a valid config and a migrated ledger. Each job run gets its own thread,
//! ledger connection and CRM clients; a job never overlaps itself (a tick that finds the previous
//! run still running is skipped and logged), and a stop lands between transactions: the first
//! SIGTERM or SIGINT is enough, a second one is logged and changes nothing. The daemon itself
//! keeps no ledger connection open and writes no row: the jobs do (the HTTP handlers only read).
//!
//! # Layout
//! - [`config`]: `[schedule]`, `[http]`, `[maintenance]`.
//! - [`jobs`]: what one run of each job does, and its `sync_run` record.
//! - [`maintenance`]: backup, WAL checkpoint, pruning.
//! - [`metrics`]: counters and the Prometheus text format.
//! - [`notify`]: `sd_notify` over `$NOTIFY_SOCKET`.
//! - `http`: `/healthz`, `/readyz`, `/metrics`.

pub mod config;
mod http;
pub mod jobs;
pub mod maintenance;
pub mod metrics;
pub mod notify;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_cron_scheduler::JobScheduler;

use crate::config::{Config, LoadedConfig};
use crate::ledger::{Ledger, LedgerError};
use crate::stop::StopSignal;
use crate::sync::CrmClient;
use jobs::{Job, JobContext, Locks, Outcome};
use metrics::Metrics;
use notify::{Notice, Notifier};

/// Why the daemon could not start (or had to give up).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(
        "nothing to run: {0} configures no connector ([connectors.salesforce], [connectors.hubspot] or [connectors.ehr])"
    )]
    NothingToRun(PathBuf),
    /// A configured CRM's client cannot be built (the message names the connector).
    #[error("{0}")]
    Connector(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("cannot listen on {address}")]
    Listen {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen for signals")]
    Signals(#[source] std::io::Error),
    #[error("the scheduler failed: {0}")]
    Scheduler(String),
}

impl DaemonError {
    /// True for problems with the config (exit status 2), false for runtime failures.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            DaemonError::NothingToRun(_) | DaemonError::Connector(_)
        )
    }
}

/// One job's state, for `STATUS=`, readiness and overlap.
#[derive(Debug, Default, Clone, Copy)]
struct JobState {
    running: bool,
    last: Option<(Outcome, DateTime<Utc>)>,
}

/// What the scheduler's ticks, the job threads, the signal loop and the HTTP handlers share.
pub(crate) struct Shared {
    config: RwLock<Arc<LoadedConfig>>,
    stop: StopSignal,
    notifier: Notifier,
    metrics: Metrics,
    locks: Locks,
    states: Mutex<BTreeMap<Job, JobState>>,
    /// Job runs in progress.
    active: watch::Sender<usize>,
    /// Unix milliseconds of the scheduler's last heartbeat tick.
    heartbeat: AtomicI64,
}

/// Releases a job's running mark when its run ends, however it ends.
struct Running {
    shared: Arc<Shared>,
    job: Job,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shared.state(self.job, |state| state.running = false);
        self.shared.metrics.set_running(self.job, false);
        self.shared.active.send_modify(|active| *active -= 1);
    }
}

impl Shared {
    /// The config jobs start with now (a reload swaps it; running jobs keep theirs).
    pub(crate) fn config(&self) -> Arc<LoadedConfig> {
        self.config
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn state<T>(&self, job: Job, change: impl FnOnce(&mut JobState) -> T) -> T {
        let mut states = self
            .states
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        change(states.entry(job).or_default())
    }

    pub(crate) fn last_outcome(&self, job: Job) -> Option<Outcome> {
        self.state(job, |state| state.last.map(|(outcome, _)| outcome))
    }

    /// The jobs the current config schedules.
    pub(crate) fn scheduled_jobs(&self) -> Vec<Job> {
        let config = self.config();
        Job::ALL
            .into_iter()
            .filter(|job| job.is_configured(&config.config))
            .collect()
    }

    /// One line: each scheduled job's last run and its outcome.
    fn status_line(&self) -> String {
        let jobs = self.scheduled_jobs();
        let states = self
            .states
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        status_line(&jobs, &states)
    }

    fn tell_status(&self) {
        self.notifier.send(&[Notice::Status(self.status_line())]);
    }

    /// A scheduler tick for `job`: starts a run on its own thread unless the previous run still
    /// runs or a stop was requested.
    fn trigger(self: &Arc<Self>, job: Job) {
        if self.stop.is_requested() {
            return;
        }
        let started = self.state(job, |state| !std::mem::replace(&mut state.running, true));
        if !started {
            tracing::warn!(
                job = job.as_str(),
                "the previous run is still running; this run is skipped"
            );
            self.metrics.record_skip(job);
            return;
        }
        self.active.send_modify(|active| *active += 1);
        self.metrics.set_running(job, true);
        let running = Running {
            shared: self.clone(),
            job,
        };
        tokio::task::spawn_blocking(move || {
            let shared = running.shared.clone();
            shared.run_job(job);
            drop(running);
            shared.tell_status();
        });
    }

    /// One run of `job`, after its jitter. Blocking.
    fn run_job(&self, job: Job) {
        let loaded = self.config();
        let jitter = loaded.config.schedule.jitter_seconds;
        if jitter > 0 {
            let delay = Duration::from_millis((random_unit() * (jitter * 1000) as f64) as u64);
            if self.sleep_unless_stopped(delay) {
                return;
            }
        }
        if self.stop.is_requested() {
            return;
        }
        tracing::info!(job = job.as_str(), "job started");
        let started = Instant::now();
        let context = JobContext {
            loaded: &loaded,
            stop: &self.stop,
            locks: &self.locks,
        };
        let result = jobs::run(job, &context);
        let finished = Utc::now();
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let outcome = result.outcome.as_str();
        match result.outcome {
            Outcome::Failed => tracing::error!(
                job = job.as_str(),
                outcome,
                elapsed_ms,
                summary = %result.summary,
                "job failed"
            ),
            Outcome::Ok => tracing::info!(
                job = job.as_str(),
                outcome,
                elapsed_ms,
                summary = %result.summary,
                "job finished"
            ),
            _ => tracing::warn!(
                job = job.as_str(),
                outcome,
                elapsed_ms,
                summary = %result.summary,
                "job ended early"
            ),
        }
        self.metrics.record_run(job, &result, finished);
        self.state(job, |state| state.last = Some((result.outcome, finished)));
    }

    /// Sleeps `delay` unless a stop comes first; true when it did.
    fn sleep_unless_stopped(&self, delay: Duration) -> bool {
        let until = Instant::now() + delay;
        loop {
            if self.stop.is_requested() {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(100)));
        }
    }
}

/// `pull_salesforce ok 14:02:03Z; import running; evaluate not run yet; …`
fn status_line(jobs: &[Job], states: &BTreeMap<Job, JobState>) -> String {
    let parts: Vec<String> = jobs
        .iter()
        .map(|job| {
            let state = states.get(job).copied().unwrap_or_default();
            match (state.running, state.last) {
                (true, _) => format!("{} running", job.as_str()),
                (false, Some((outcome, at))) => {
                    format!(
                        "{} {} {}",
                        job.as_str(),
                        outcome.as_str(),
                        at.format("%H:%M:%SZ")
                    )
                }
                (false, None) => format!("{} not run yet", job.as_str()),
            }
        })
        .collect();
    parts.join("; ")
}

/// A number in `[0, 1)` for jitter, from the standard library's random hasher keys.
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

fn unix_millis() -> i64 {
    Utc::now().timestamp_millis()
}

/// The scheduler's ids of the jobs added for one config, to remove on reload.
type JobIds = Vec<uuid::Uuid>;

/// Adds a scheduler job per configured job of `loaded`.
async fn schedule(
    shared: &Arc<Shared>,
    scheduler: &JobScheduler,
    loaded: &LoadedConfig,
) -> Result<JobIds, DaemonError> {
    let mut ids = Vec::new();
    for job in Job::ALL
        .into_iter()
        .filter(|job| job.is_configured(&loaded.config))
    {
        let expression = loaded.config.schedule.expression(job).to_string();
        let tick_shared = shared.clone();
        let task = tokio_cron_scheduler::Job::new_async(expression.as_str(), move |_, _| {
            let shared = tick_shared.clone();
            Box::pin(async move { shared.trigger(job) })
        })
        .map_err(|error| {
            DaemonError::Scheduler(format!("schedule.{} {expression:?}: {error}", job.as_str()))
        })?;
        ids.push(
            scheduler
                .add(task)
                .await
                .map_err(|error| DaemonError::Scheduler(error.to_string()))?,
        );
        tracing::info!(job = job.as_str(), schedule = %expression, "job scheduled");
    }
    Ok(ids)
}

/// Runs the daemon until SIGTERM or SIGINT. `loaded` must have been loaded (validated) already.
pub async fn run(loaded: LoadedConfig) -> Result<(), DaemonError> {
    let config = &loaded.config;
    let connectors = &config.connectors;
    if connectors.salesforce.is_none() && connectors.hubspot.is_none() && connectors.ehr.is_none() {
        return Err(DaemonError::NothingToRun(loaded.source.clone()));
    }
    CrmClient::all(&loaded).map_err(DaemonError::Connector)?;
    // Created and migrated before anything is scheduled; each job opens its own connection.
    drop(Ledger::open(
        &config.ledger.path,
        Duration::from_secs(config.ledger.busy_timeout_seconds),
    )?);

    let mut terminate = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;

    let listen = config.http.listen;
    let listener = match listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .map_err(|source| DaemonError::Listen { address, source })?,
        ),
        None => None,
    };

    let shared = Arc::new(Shared {
        config: RwLock::new(Arc::new(loaded)),
        stop: StopSignal::new(),
        notifier: Notifier::from_env(),
        metrics: Metrics::default(),
        locks: Locks::default(),
        states: Mutex::new(BTreeMap::new()),
        active: watch::Sender::new(0),
        heartbeat: AtomicI64::new(unix_millis()),
    });

    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = match listener {
        Some(listener) => {
            let address = listener
                .local_addr()
                .map_err(|source| DaemonError::Listen {
                    address: listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
                    source,
                })?;
            tracing::info!(address = %address, "http listening: /healthz, /readyz, /metrics");
            let shutdown = async move {
                let _ = http_stopped.await;
            };
            Some(tokio::spawn(http::serve(
                listener,
                shared.clone(),
                shutdown,
            )))
        }
        None => None,
    };

    let mut scheduler = JobScheduler::new()
        .await
        .map_err(|error| DaemonError::Scheduler(error.to_string()))?;
    let heartbeat_shared = shared.clone();
    let heartbeat = tokio_cron_scheduler::Job::new_repeated(Duration::from_secs(1), move |_, _| {
        heartbeat_shared
            .heartbeat
            .store(unix_millis(), Ordering::Relaxed);
    })
    .map_err(|error| DaemonError::Scheduler(error.to_string()))?;
    scheduler
        .add(heartbeat)
        .await
        .map_err(|error| DaemonError::Scheduler(error.to_string()))?;
    let mut job_ids = schedule(&shared, &scheduler, &shared.config()).await?;
    scheduler
        .start()
        .await
        .map_err(|error| DaemonError::Scheduler(error.to_string()))?;

    if let Some(interval) = notify::watchdog_interval() {
        tokio::spawn(watchdog(shared.clone(), interval));
    }
    let source = shared.config().source.clone();
    tracing::info!(config = %source.display(), ledger = %shared.config().config.ledger.path.display(), "refbridge running");
    shared
        .notifier
        .send(&[Notice::Ready, Notice::Status(shared.status_line())]);

    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => reload(&shared, &scheduler, &mut job_ids).await,
        }
    }

    let running = *shared.active.borrow();
    shared.notifier.send(&[
        Notice::Stopping,
        Notice::Status(format!(
            "stopping: {running} running job(s) finishing at a safe point"
        )),
    ]);
    tracing::info!(
        running,
        "stopping: running jobs end at their next safe point"
    );
    shared.stop.request();
    if let Err(error) = scheduler.shutdown().await {
        tracing::warn!(error = %error, "the scheduler did not shut down cleanly");
    }
    let mut active = shared.active.subscribe();
    loop {
        tokio::select! {
            _ = active.wait_for(|active| *active == 0) => break,
            _ = terminate.recv() => tracing::info!("already stopping; waiting for running jobs to reach a safe point"),
            _ = interrupt.recv() => tracing::info!("already stopping; waiting for running jobs to reach a safe point"),
        }
    }
    let _ = http_stop.send(());
    if let Some(server) = server
        && let Ok(Err(error)) = server.await
    {
        tracing::warn!(error = %error, "the http listener ended with an error");
    }
    tracing::info!("refbridge stopped");
    Ok(())
}

/// SIGHUP: loads the config again. A valid one replaces the running one (jobs take it from their
/// next run; the schedule is rebuilt); an invalid one is logged problem by problem and the running
/// config stays. `ledger.path` and `[http]` take effect only at a restart.
async fn reload(shared: &Arc<Shared>, scheduler: &JobScheduler, job_ids: &mut JobIds) {
    shared.notifier.send(&[
        Notice::Reloading,
        Notice::Status("reloading the config".to_string()),
    ]);
    let current = shared.config();
    let path = current.source.clone();
    tracing::info!(config = %path.display(), "reloading the config");
    let refusal = match tokio::task::spawn_blocking(move || Config::load(&path)).await {
        Err(_) => Some(vec!["the config could not be read".to_string()]),
        Ok(Err(error)) => Some(
            error
                .problems
                .iter()
                .map(|problem| {
                    let key = if problem.key.is_empty() {
                        String::new()
                    } else {
                        format!("{}: ", problem.key)
                    };
                    format!(
                        "{}:{}:{}: {key}{}",
                        error.file.display(),
                        problem.line,
                        problem.column,
                        problem.message
                    )
                })
                .collect(),
        ),
        Ok(Ok(loaded)) => match restart_only_change(&current.config, &loaded.config) {
            Some(reason) => Some(vec![reason]),
            None => match CrmClient::all(&loaded) {
                Err(message) => Some(vec![message]),
                Ok(_) => {
                    apply(shared, scheduler, job_ids, loaded).await;
                    None
                }
            },
        },
    };
    if let Some(problems) = refusal {
        for problem in &problems {
            tracing::error!(problem = %problem, "the new config has a problem; the running config stays");
        }
    }
    shared
        .notifier
        .send(&[Notice::Ready, Notice::Status(shared.status_line())]);
}

/// Why a valid new config cannot be taken while running, if it cannot.
fn restart_only_change(current: &Config, new: &Config) -> Option<String> {
    if current.ledger.path != new.ledger.path {
        return Some(
            "ledger.path cannot change while refbridge runs: restart it to use another ledger"
                .to_string(),
        );
    }
    if current.http != new.http {
        return Some("[http] cannot change while refbridge runs: restart it".to_string());
    }
    None
}

/// Swaps in a valid config and rebuilds the schedule.
async fn apply(
    shared: &Arc<Shared>,
    scheduler: &JobScheduler,
    job_ids: &mut JobIds,
    loaded: LoadedConfig,
) {
    let loaded = Arc::new(loaded);
    *shared
        .config
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = loaded.clone();
    for id in job_ids.drain(..) {
        if let Err(error) = scheduler.remove(&id).await {
            tracing::warn!(error = %error, "cannot remove a job of the old schedule");
        }
    }
    match schedule(shared, scheduler, &loaded).await {
        Ok(ids) => {
            *job_ids = ids;
            tracing::info!(
                jobs = job_ids.len(),
                jitter_seconds = loaded.config.schedule.jitter_seconds,
                "config reloaded"
            );
        }
        Err(error) => tracing::error!(error = %error, "the new schedule could not be built"),
    }
}

/// Pings systemd's watchdog every `interval`, but only while the scheduler's heartbeat is fresh:
/// a stuck scheduler stops the pings and systemd restarts the service.
async fn watchdog(shared: Arc<Shared>, interval: Duration) {
    let stale_after = interval.max(Duration::from_secs(3)).as_millis() as i64;
    let mut ticker = tokio::time::interval(interval);
    let mut warned = false;
    loop {
        ticker.tick().await;
        let age = unix_millis() - shared.heartbeat.load(Ordering::Relaxed);
        if age <= stale_after {
            shared.notifier.send(&[Notice::Watchdog]);
            warned = false;
        } else if !warned {
            tracing::error!(
                heartbeat_age_ms = age,
                "the scheduler has stopped ticking; the watchdog is no longer fed"
            );
            warned = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_names_each_job_with_its_last_outcome() {
        let at = DateTime::parse_from_rfc3339("2026-11-01T14:02:03Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut states = BTreeMap::new();
        states.insert(
            Job::PullSalesforce,
            JobState {
                running: false,
                last: Some((Outcome::Ok, at)),
            },
        );
        states.insert(
            Job::Import,
            JobState {
                running: true,
                last: Some((Outcome::Failed, at)),
            },
        );
        assert_eq!(
            status_line(&[Job::PullSalesforce, Job::Import, Job::Evaluate], &states),
            "pull_salesforce ok 14:02:03Z; import running; evaluate not run yet"
        );
    }

    #[test]
    fn jitter_fractions_stay_in_the_unit_interval() {
        for _ in 0..1000 {
            assert!((0.0..1.0).contains(&random_unit()));
        }
    }
}
