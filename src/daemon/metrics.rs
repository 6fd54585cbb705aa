//! The daemon's metrics in Prometheus text exposition format 0.0.4: in-process counters (job runs,
//! records pulled, API calls by status class, quota) and gauges read from the ledger at scrape
//! time (open alerts by rule, quarantine, outbox).
//!
//! Label values come from small fixed sets only — job, outcome, system, stream, status class,
//! rule, severity, outbox status — and values read from the ledger are kept only when they belong
//! to those sets. A record id, a partner's name or anything about a patient is never a label.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use refbridge_http::StatusCounts;
use refbridge_model::crm::CrmSystem;
use rusqlite::Connection;

use super::jobs::{Job, Outcome, RunResult};
use crate::sync::QuotaView;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// One sample: its labels (name, value) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// One metric family: `# HELP`, `# TYPE` and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

impl Family {
    fn new(name: &'static str, kind: Kind, help: &'static str) -> Family {
        Family {
            name,
            help,
            kind,
            samples: Vec::new(),
        }
    }

    fn sample(&mut self, labels: &[(&'static str, &str)], value: f64) {
        self.samples.push(Sample {
            labels: labels
                .iter()
                .map(|(name, value)| (*name, value.to_string()))
                .collect(),
            value,
        });
    }
}

/// Renders families in the text exposition format (version 0.0.4).
pub fn render(families: &[Family]) -> String {
    let mut out = String::new();
    for family in families {
        let kind = match family.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(family.help));
        let _ = writeln!(out, "# TYPE {} {kind}", family.name);
        for sample in &family.samples {
            out.push_str(family.name);
            if !sample.labels.is_empty() {
                out.push('{');
                for (index, (name, value)) in sample.labels.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{name}=\"{}\"", escape_label(value));
                }
                out.push('}');
            }
            let _ = writeln!(out, " {}", format_value(sample.value));
        }
    }
    out
}

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{value}")
    }
}

/// The in-process counters.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    runs: BTreeMap<(Job, &'static str), u64>,
    running: BTreeMap<Job, bool>,
    last_success: BTreeMap<Job, DateTime<Utc>>,
    pulled: BTreeMap<(&'static str, &'static str), u64>,
    api_calls: BTreeMap<&'static str, StatusCounts>,
    quota: BTreeMap<&'static str, QuotaView>,
}

impl Metrics {
    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A job started or ended.
    pub fn set_running(&self, job: Job, running: bool) {
        self.counters().running.insert(job, running);
    }

    /// A run that did not start because the previous one was still running.
    pub fn record_skip(&self, job: Job) {
        *self
            .counters()
            .runs
            .entry((job, Outcome::Skipped.as_str()))
            .or_default() += 1;
    }

    /// A finished run: its outcome, what it pulled and what its CRM clients saw.
    pub fn record_run(&self, job: Job, result: &RunResult, finished: DateTime<Utc>) {
        let mut counters = self.counters();
        *counters
            .runs
            .entry((job, result.outcome.as_str()))
            .or_default() += 1;
        if result.outcome == Outcome::Ok {
            counters.last_success.insert(job, finished);
        }
        for (system, stream, read) in &result.pulled {
            *counters.pulled.entry((system, stream)).or_default() += read;
        }
        for used in &result.clients {
            let system = used.system.as_str();
            *counters.api_calls.entry(system).or_default() += used.statuses;
            if let Some(quota) = used.quota {
                counters.quota.insert(system, quota);
            }
        }
    }

    /// Every family: the in-process ones for `jobs` (the scheduled jobs), then the ledger's (or
    /// only `refbridge_ledger_readable 0` when the ledger could not be read).
    pub fn families(&self, jobs: &[Job], ledger: Option<&LedgerGauges>) -> Vec<Family> {
        let counters = self.counters();
        let mut families = Vec::new();

        let mut info = Family::new(
            "refbridge_build_info",
            Kind::Gauge,
            "The running refbridge's version.",
        );
        info.sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0);
        families.push(info);

        let mut runs = Family::new(
            "refbridge_job_runs_total",
            Kind::Counter,
            "Scheduled job runs since start, by job and outcome (skipped: the previous run was still running).",
        );
        let mut running = Family::new(
            "refbridge_job_running",
            Kind::Gauge,
            "1 while a run of the job is in progress.",
        );
        let mut success = Family::new(
            "refbridge_job_last_success_timestamp_seconds",
            Kind::Gauge,
            "When the job last finished with outcome ok (Unix time).",
        );
        for &job in jobs {
            for outcome in Outcome::ALL {
                let count = counters
                    .runs
                    .get(&(job, outcome.as_str()))
                    .copied()
                    .unwrap_or(0);
                runs.sample(
                    &[("job", job.as_str()), ("outcome", outcome.as_str())],
                    count as f64,
                );
            }
            let is_running = counters.running.get(&job).copied().unwrap_or(false);
            running.sample(&[("job", job.as_str())], f64::from(u8::from(is_running)));
            if let Some(at) = counters.last_success.get(&job) {
                success.sample(&[("job", job.as_str())], at.timestamp() as f64);
            }
        }
        families.extend([runs, running, success]);

        let mut pulled = Family::new(
            "refbridge_records_pulled_total",
            Kind::Counter,
            "CRM records read by pulls since start, by system and stream.",
        );
        for ((system, stream), read) in &counters.pulled {
            pulled.sample(&[("system", system), ("stream", stream)], *read as f64);
        }
        families.push(pulled);

        let mut calls = Family::new(
            "refbridge_api_calls_total",
            Kind::Counter,
            "CRM API requests since start, by system and HTTP status class (none: no answer).",
        );
        let mut remaining = Family::new(
            "refbridge_api_quota_remaining",
            Kind::Gauge,
            "API calls left in the CRM's daily allowance, as its last answer reported.",
        );
        let mut limit = Family::new(
            "refbridge_api_quota_limit",
            Kind::Gauge,
            "The CRM's daily API allowance, as its last answer reported.",
        );
        for (system, statuses) in &counters.api_calls {
            for (class, count) in statuses.by_class() {
                calls.sample(&[("system", system), ("status_class", class)], count as f64);
            }
        }
        for (system, quota) in &counters.quota {
            remaining.sample(&[("system", system)], quota.remaining() as f64);
            limit.sample(&[("system", system)], quota.limit as f64);
        }
        families.extend([calls, remaining, limit]);
        drop(counters);

        let mut readable = Family::new(
            "refbridge_ledger_readable",
            Kind::Gauge,
            "1 when this scrape could read the ledger.",
        );
        readable.sample(&[], f64::from(u8::from(ledger.is_some())));
        families.push(readable);
        if let Some(ledger) = ledger {
            families.extend(ledger.families());
        }
        families
    }
}

/// What the ledger says at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LedgerGauges {
    /// Open alerts (tasks) by rule, every known rule present.
    pub alerts_open: Vec<(&'static str, u64)>,
    /// Quarantine entries by severity (`rejected`, `warning`).
    pub quarantine: Vec<(&'static str, u64)>,
    /// Outbox rows by CRM and status (`pending`, `stored`, `refused`).
    pub outbox: Vec<(&'static str, &'static str, u64)>,
}

impl LedgerGauges {
    /// Reads the gauges in one read transaction.
    pub fn read(connection: &Connection) -> rusqlite::Result<LedgerGauges> {
        let counts = |sql: &str| -> rusqlite::Result<Vec<(String, String, u64)>> {
            let mut statement = connection.prepare(sql)?;
            let rows = statement.query_map([], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get::<_, i64>(2)?.max(0) as u64,
                ))
            })?;
            rows.collect()
        };
        connection.execute_batch("BEGIN")?;
        let alerts =
            counts("SELECT rule, '', count(*) FROM alert WHERE state = 'open' GROUP BY rule");
        let quarantine = counts("SELECT severity, '', count(*) FROM quarantine GROUP BY severity");
        let outbox = counts("SELECT system, status, count(*) FROM outbox GROUP BY system, status");
        connection.execute_batch("COMMIT")?;
        let (alerts, quarantine, outbox) = (alerts?, quarantine?, outbox?);

        let alerts_open = crate::rules::config::RULE_NAMES
            .iter()
            .map(|rule| {
                let count = alerts
                    .iter()
                    .filter(|(name, _, _)| name == rule)
                    .map(|(_, _, count)| count)
                    .sum();
                (*rule, count)
            })
            .collect();
        let quarantine = ["rejected", "warning"]
            .into_iter()
            .map(|severity| {
                let count = quarantine
                    .iter()
                    .filter(|(name, _, _)| name == severity)
                    .map(|(_, _, count)| count)
                    .sum();
                (severity, count)
            })
            .collect();
        let mut by_status = Vec::new();
        for system in [CrmSystem::Salesforce, CrmSystem::Hubspot] {
            for (status, stored_as) in [
                ("pending", "pending"),
                ("stored", "stored"),
                ("refused", "permanent"),
            ] {
                let count = outbox
                    .iter()
                    .filter(|(name, state, _)| name == system.as_str() && state == stored_as)
                    .map(|(_, _, count)| count)
                    .sum();
                by_status.push((system.as_str(), status, count));
            }
        }
        Ok(LedgerGauges {
            alerts_open,
            quarantine,
            outbox: by_status,
        })
    }

    fn families(&self) -> Vec<Family> {
        let mut alerts = Family::new(
            "refbridge_alerts_open",
            Kind::Gauge,
            "Open alerts (CRM tasks refbridge keeps open), by rule.",
        );
        for (rule, count) in &self.alerts_open {
            alerts.sample(&[("rule", rule)], *count as f64);
        }
        let mut quarantine = Family::new(
            "refbridge_quarantine_entries",
            Kind::Gauge,
            "Quarantined export rows and files (rejected) and dropped values (warning).",
        );
        for (severity, count) in &self.quarantine {
            quarantine.sample(&[("severity", severity)], *count as f64);
        }
        let mut outbox = Family::new(
            "refbridge_outbox_intents",
            Kind::Gauge,
            "Task intents by CRM and status: pending (to push), stored (the CRM has it), refused (the CRM refused it for good).",
        );
        for (system, status, count) in &self.outbox {
            outbox.sample(&[("system", system), ("status", status)], *count as f64);
        }
        vec![alerts, quarantine, outbox]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::jobs::ClientUse;

    #[test]
    fn families_render_as_help_type_and_escaped_samples() {
        let mut family = Family::new(
            "refbridge_example_total",
            Kind::Counter,
            "An example.\nTwo lines.",
        );
        family.sample(&[("job", "import"), ("outcome", "ok")], 3.0);
        family.sample(&[("odd", "a \"quoted\" \\ value\n")], 0.5);
        let mut gauge = Family::new("refbridge_example", Kind::Gauge, "A gauge.");
        gauge.sample(&[], f64::NAN);
        gauge.sample(&[("x", "y")], 1_762_000_000.0);
        assert_eq!(
            render(&[family, gauge]),
            "# HELP refbridge_example_total An example.\\nTwo lines.\n\
             # TYPE refbridge_example_total counter\n\
             refbridge_example_total{job=\"import\",outcome=\"ok\"} 3\n\
             refbridge_example_total{odd=\"a \\\"quoted\\\" \\\\ value\\n\"} 0.5\n\
             # HELP refbridge_example A gauge.\n\
             # TYPE refbridge_example gauge\n\
             refbridge_example NaN\n\
             refbridge_example{x=\"y\"} 1762000000\n"
        );
    }

    #[test]
    fn runs_pulls_calls_and_quota_add_up_under_fixed_labels() {
        let metrics = Metrics::default();
        let result = RunResult {
            outcome: Outcome::Ok,
            summary: String::new(),
            pulled: vec![
                ("salesforce", "partners", 40),
                ("salesforce", "contacts", 2),
            ],
            clients: vec![ClientUse {
                system: CrmSystem::Salesforce,
                statuses: StatusCounts {
                    success: 5,
                    server_error: 1,
                    ..StatusCounts::default()
                },
                quota: Some(QuotaView {
                    used: 100,
                    limit: 15_000,
                }),
            }],
        };
        let at = DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        metrics.record_run(Job::PullSalesforce, &result, at);
        metrics.record_run(Job::PullSalesforce, &result, at);
        metrics.record_skip(Job::PullSalesforce);
        metrics.set_running(Job::Import, true);
        let text = render(&metrics.families(&[Job::PullSalesforce, Job::Import], None));
        let last_success = format!(
            "refbridge_job_last_success_timestamp_seconds{{job=\"pull_salesforce\"}} {}",
            at.timestamp()
        );
        for line in [
            last_success.as_str(),
            "refbridge_job_runs_total{job=\"pull_salesforce\",outcome=\"ok\"} 2",
            "refbridge_job_runs_total{job=\"pull_salesforce\",outcome=\"skipped\"} 1",
            "refbridge_job_runs_total{job=\"import\",outcome=\"failed\"} 0",
            "refbridge_job_running{job=\"import\"} 1",
            "refbridge_records_pulled_total{system=\"salesforce\",stream=\"partners\"} 80",
            "refbridge_api_calls_total{system=\"salesforce\",status_class=\"2xx\"} 10",
            "refbridge_api_calls_total{system=\"salesforce\",status_class=\"5xx\"} 2",
            "refbridge_api_quota_remaining{system=\"salesforce\"} 14900",
            "refbridge_ledger_readable 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
        assert!(!text.contains("refbridge_job_last_success_timestamp_seconds{job=\"import\"}"));
    }

    #[test]
    fn ledger_gauges_keep_only_known_rules_and_states() {
        let (_directory, ledger) = crate::ledger::scratch();
        let connection = ledger.connection();
        connection
            .execute_batch(
                "INSERT INTO partner (id, name, normalized_name, origin, created_at, updated_at)
                     VALUES (1, 'Mercy Hospital', 'mercy hospital', 'ehr', 'x', 'x');
                 INSERT INTO alert (key, rule, partner_id, system, state, reason, opened_at, updated_at)
                     VALUES ('silent:p1:2026-10-01', 'silent', 1, 'salesforce', 'open', 'r', 'x', 'x'),
                            ('declining:p1:2026-10-01', 'declining', 1, 'salesforce', 'closed', 'r', 'x', 'x'),
                            ('Mercy Hospital', 'Mercy Hospital', 1, 'salesforce', 'open', 'r', 'x', 'x');
                 INSERT INTO outbox (system, key, intent, status, created_at, updated_at)
                     VALUES ('salesforce', 'a', '{}', 'pending', 'x', 'x'),
                            ('hubspot', 'b', '{}', 'permanent', 'x', 'x');",
            )
            .unwrap();
        let gauges = LedgerGauges::read(connection).unwrap();
        assert!(gauges.alerts_open.contains(&("silent", 1)));
        assert!(gauges.alerts_open.contains(&("declining", 0)));
        assert!(gauges.outbox.contains(&("salesforce", "pending", 1)));
        assert!(gauges.outbox.contains(&("hubspot", "refused", 1)));
        let text = render(&gauges.families());
        assert!(!text.contains("Mercy"), "{text}");
    }
}
