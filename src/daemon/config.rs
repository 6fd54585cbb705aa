//! `[schedule]`, `[http]` and `[maintenance]`: when the daemon's jobs run, its optional loopback
//! listener, and how the ledger is kept (backups, pruning).
//!
//! Only the model, its defaults and its problems live here; `crate::config` reports the problems
//! with their lines, and nothing here starts a job, binds a socket or touches a file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::Deserialize;

use super::jobs::Job;

/// Longest jitter accepted: a quarter of an hour.
pub const MAX_JITTER_SECONDS: u64 = 900;

/// `[schedule]`: one cron expression per job (6 fields with seconds, UTC: `sec min hour
/// day-of-month month day-of-week`; when both day fields are given, both must match), plus a
/// random delay before each run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Pull every Salesforce stream (only with `[connectors.salesforce]`).
    pub pull_salesforce: String,
    /// Pull every HubSpot stream (only with `[connectors.hubspot]`).
    pub pull_hubspot: String,
    /// Import what waits in the EHR inbox (only with `[connectors.ehr]`).
    pub import: String,
    /// Identity, health, rules and routing into the outbox, then push to every configured CRM.
    pub evaluate: String,
    /// The nightly pass: pull, then compare every stream's live ids with the ledger.
    pub reconcile: String,
    /// Backup, WAL checkpoint and pruning.
    pub maintenance: String,
    /// Each run waits a random 0..=jitter_seconds first, so that many installations do not call
    /// a CRM in the same second.
    pub jitter_seconds: u64,
}

impl Default for ScheduleConfig {
    fn default() -> ScheduleConfig {
        ScheduleConfig {
            pull_salesforce: "0 */15 * * * *".to_string(),
            pull_hubspot: "0 */15 * * * *".to_string(),
            import: "30 */5 * * * *".to_string(),
            evaluate: "0 5,20,35,50 * * * *".to_string(),
            reconcile: "0 30 2 * * *".to_string(),
            maintenance: "0 30 3 * * *".to_string(),
            jitter_seconds: 30,
        }
    }
}

impl ScheduleConfig {
    /// The cron expression of a job.
    pub fn expression(&self, job: Job) -> &str {
        match job {
            Job::PullSalesforce => &self.pull_salesforce,
            Job::PullHubspot => &self.pull_hubspot,
            Job::Import => &self.import,
            Job::Evaluate => &self.evaluate,
            Job::Reconcile => &self.reconcile,
            Job::Maintenance => &self.maintenance,
        }
    }

    /// Every problem, as (key path below `[schedule]`, message).
    pub fn problems(&self) -> Vec<(Vec<String>, String)> {
        let mut problems = Vec::new();
        let mut shortest: Option<(Job, i64)> = None;
        for job in Job::ALL {
            let expression = self.expression(job);
            match parse_cron(expression).and_then(|cron| shortest_gap_seconds(&cron)) {
                Ok(gap) => {
                    if shortest.is_none_or(|(_, seconds)| gap < seconds) {
                        shortest = Some((job, gap));
                    }
                }
                Err(message) => problems.push((
                    vec![job.as_str().to_string()],
                    format!("{expression:?}: {message}"),
                )),
            }
        }
        if self.jitter_seconds > MAX_JITTER_SECONDS {
            problems.push((
                vec!["jitter_seconds".to_string()],
                format!("must be at most {MAX_JITTER_SECONDS} (a quarter of an hour)"),
            ));
        } else if let Some((job, gap)) = shortest
            && self.jitter_seconds > 0
            && self.jitter_seconds as i64 >= gap
        {
            problems.push((
                vec!["jitter_seconds".to_string()],
                format!(
                    "must be shorter than the {gap} s between two runs of schedule.{}: runs would start after the next one is due",
                    job.as_str()
                ),
            ));
        }
        problems
    }
}

/// Parses a cron expression the way the scheduler does: 6 fields with seconds (an optional 7th
/// is the year), both day fields required to match when both are given.
pub fn parse_cron(expression: &str) -> Result<Cron, String> {
    let fields = expression.split_whitespace().count();
    if fields != 6 && fields != 7 {
        return Err(format!(
            "has {fields} field(s); write 6: second minute hour day-of-month month day-of-week (e.g. \"0 */15 * * * *\")"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expression)
        .map_err(|error| error.to_string())
}

/// The shortest time between two of the next runs (from a fixed day, so that validation is
/// deterministic); an error when the expression never fires.
fn shortest_gap_seconds(cron: &Cron) -> Result<i64, String> {
    let start = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("a valid date");
    let runs: Vec<DateTime<Utc>> = cron.iter_after(start).take(32).collect();
    if runs.is_empty() {
        return Err("never fires (no such date)".to_string());
    }
    Ok(runs
        .windows(2)
        .map(|pair| (pair[1] - pair[0]).num_seconds())
        .min()
        .unwrap_or(i64::MAX))
}

/// `[http]`: the optional HTTP listener (`/healthz`, `/readyz`, `/metrics`). Off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `address:port` to listen on; port 0 takes any free port (logged at start).
    pub listen: Option<SocketAddr>,
    /// Allow an address other than loopback (the endpoints have no authentication).
    #[serde(default)]
    pub allow_non_loopback: bool,
}

impl HttpConfig {
    /// Every problem, as (key path below `[http]`, message).
    pub fn problems(&self) -> Vec<(Vec<String>, String)> {
        match self.listen {
            Some(address) if !address.ip().is_loopback() && !self.allow_non_loopback => vec![(
                vec!["listen".to_string()],
                format!(
                    "{address} is not a loopback address; the endpoints have no authentication: listen on 127.0.0.1 or [::1], or set http.allow_non_loopback = true"
                ),
            )],
            _ => Vec::new(),
        }
    }
}

/// `[maintenance]`: what the nightly maintenance job keeps.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceConfig {
    /// Where online backups go. Default: `backups/` beside the ledger.
    pub backup_dir: Option<PathBuf>,
    /// Backups kept; older ones are deleted.
    pub backup_keep: usize,
    /// Run log rows (`sync_run`) and imported or rejected export files older than this are
    /// deleted.
    pub prune_after_days: u32,
}

impl Default for MaintenanceConfig {
    fn default() -> MaintenanceConfig {
        MaintenanceConfig {
            backup_dir: None,
            backup_keep: 7,
            prune_after_days: 90,
        }
    }
}

impl MaintenanceConfig {
    /// The backup directory for a ledger at `ledger`.
    pub fn backup_dir(&self, ledger: &Path) -> PathBuf {
        self.backup_dir.clone().unwrap_or_else(|| {
            ledger
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join("backups")
        })
    }

    /// Every problem, as (key path below `[maintenance]`, message). `inbox` is the EHR inbox, if
    /// configured: backups must not land where exports are scanned.
    pub fn problems(&self, ledger: &Path, inbox: Option<&Path>) -> Vec<(Vec<String>, String)> {
        let mut problems = Vec::new();
        let key = |name: &str| vec![name.to_string()];
        if self.backup_keep == 0 {
            problems.push((key("backup_keep"), "must be at least 1".to_string()));
        }
        if self.prune_after_days == 0 {
            problems.push((key("prune_after_days"), "must be at least 1".to_string()));
        }
        let directory = self.backup_dir(ledger);
        if directory.exists() && !directory.is_dir() {
            problems.push((
                key("backup_dir"),
                format!("{} exists but is not a directory", directory.display()),
            ));
        }
        if let Some(inbox) = inbox
            && directory.starts_with(inbox)
        {
            problems.push((
                key("backup_dir"),
                format!(
                    "{} is inside the EHR inbox {}: backups would be read as exports",
                    directory.display(),
                    inbox.display()
                ),
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The problems of `[schedule]` with one job's expression (or the jitter) replaced.
    fn check(job: Option<Job>, expression: &str, jitter_seconds: u64, expected: &[&str]) {
        let mut schedule = ScheduleConfig {
            jitter_seconds,
            ..ScheduleConfig::default()
        };
        if let Some(job) = job {
            let slot = match job {
                Job::PullSalesforce => &mut schedule.pull_salesforce,
                Job::PullHubspot => &mut schedule.pull_hubspot,
                Job::Import => &mut schedule.import,
                Job::Evaluate => &mut schedule.evaluate,
                Job::Reconcile => &mut schedule.reconcile,
                Job::Maintenance => &mut schedule.maintenance,
            };
            *slot = expression.to_string();
        }
        let found: Vec<String> = schedule
            .problems()
            .into_iter()
            .map(|(key, message)| format!("{}: {message}", key.join(".")))
            .collect();
        assert_eq!(
            found.len(),
            expected.len(),
            "{expression:?} jitter {jitter_seconds}: {found:?}"
        );
        for (found, expected) in found.iter().zip(expected) {
            assert!(
                found.contains(expected),
                "{expression:?}: {found:?} does not say {expected:?}"
            );
        }
    }

    #[test]
    fn the_defaults_are_valid_and_every_bad_expression_is_named_with_its_reason() {
        check(None, "", 30, &[]);
        check(Some(Job::Import), "*/2 * * * * *", 0, &[]);
        check(Some(Job::Evaluate), "0 0 12 * * MON-FRI", 30, &[]);
        check(
            Some(Job::Import),
            "*/5 * * * *",
            30,
            &["import: \"*/5 * * * *\": has 5 field(s); write 6"],
        );
        check(
            Some(Job::Reconcile),
            "0 61 2 * * *",
            30,
            &["reconcile: \"0 61 2 * * *\": "],
        );
        check(
            Some(Job::PullHubspot),
            "0 */15 * * * FUNDAY",
            30,
            &["pull_hubspot: "],
        );
        check(
            Some(Job::Maintenance),
            "0 0 0 30 2 *",
            30,
            &["maintenance: \"0 0 0 30 2 *\": never fires"],
        );
    }

    #[test]
    fn jitter_stays_below_the_shortest_interval_and_a_quarter_hour() {
        check(
            Some(Job::Import),
            "*/2 * * * * *",
            2,
            &["jitter_seconds: must be shorter than the 2 s between two runs of schedule.import"],
        );
        check(Some(Job::Import), "*/2 * * * * *", 1, &[]);
        check(None, "", 901, &["jitter_seconds: must be at most 900"]);
        check(None, "", 299, &[]);
        check(
            None,
            "",
            300,
            &["jitter_seconds: must be shorter than the 300 s between two runs of schedule.import"],
        );
    }

    #[test]
    fn the_listener_is_loopback_unless_allowed() {
        let problems = |listen: &str, allow: bool| {
            HttpConfig {
                listen: Some(listen.parse().unwrap()),
                allow_non_loopback: allow,
            }
            .problems()
        };
        assert!(problems("127.0.0.1:9464", false).is_empty());
        assert!(problems("[::1]:9464", false).is_empty());
        assert!(problems("127.0.0.1:0", false).is_empty());
        let refused = problems("0.0.0.0:9464", false);
        assert_eq!(refused.len(), 1);
        assert!(refused[0].1.contains("not a loopback address"));
        assert!(problems("0.0.0.0:9464", true).is_empty());
        assert!(HttpConfig::default().problems().is_empty());
    }

    #[test]
    fn backups_default_beside_the_ledger_and_never_inside_the_inbox() {
        let ledger = Path::new("/var/lib/refbridge/ledger.db");
        let inbox = Path::new("/var/lib/refbridge/inbox");
        let maintenance = MaintenanceConfig::default();
        assert_eq!(
            maintenance.backup_dir(ledger),
            Path::new("/var/lib/refbridge/backups")
        );
        assert!(maintenance.problems(ledger, Some(inbox)).is_empty());
        let inside = MaintenanceConfig {
            backup_dir: Some(inbox.join("backups")),
            backup_keep: 0,
            prune_after_days: 0,
        };
        let keys: Vec<String> = inside
            .problems(ledger, Some(inbox))
            .into_iter()
            .map(|(key, _)| key.join("."))
            .collect();
        assert_eq!(keys, ["backup_keep", "prune_after_days", "backup_dir"]);
    }
}
