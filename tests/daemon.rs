//! `refbridge run` as a process: it becomes ready, runs its jobs on a fast schedule, pushes tasks,
//! speaks systemd's notify protocol, serves metrics in the exposition format without a partner
//! name or a patient value, reloads its config on SIGHUP (refusing an invalid one), backs the
//! ledger up, and stops cleanly on SIGTERM.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::sandbox::World;
use common::{Facility, csv, row};
use serde_json::Value;

/// A running `refbridge run`, its log lines (JSON), its stderr and what it told systemd.
struct Daemon {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    notices: Arc<Mutex<Vec<String>>>,
    listening: Arc<AtomicBool>,
    _socket_dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `refbridge --log-format json run --config CONFIG` with a NOTIFY_SOCKET of its own
    /// (and WATCHDOG_USEC when asked).
    fn start(config: &Path, watchdog_usec: Option<u64>) -> Daemon {
        let socket_dir = tempfile::tempdir().unwrap();
        let socket_path = socket_dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&socket_path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_refbridge"));
        command
            .args(["--log-format", "json", "run", "--config"])
            .arg(config)
            .env_remove("CREDENTIALS_DIRECTORY")
            .env("RUST_LOG", "info")
            .env("NOTIFY_SOCKET", &socket_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match watchdog_usec {
            Some(usec) => command.env("WATCHDOG_USEC", usec.to_string()),
            None => command.env_remove("WATCHDOG_USEC"),
        };
        command.env_remove("WATCHDOG_PID");
        let mut child = command.spawn().unwrap();

        let logs = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            sink.lock().unwrap().push_str(&text);
        });
        let notices = Arc::new(Mutex::new(Vec::new()));
        let listening = Arc::new(AtomicBool::new(true));
        let (sink, open) = (notices.clone(), listening.clone());
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 4096];
            while open.load(Ordering::Relaxed) {
                if let Ok(length) = socket.recv(&mut buffer) {
                    let text = String::from_utf8_lossy(&buffer[..length]).into_owned();
                    sink.lock().unwrap().push(text);
                }
            }
        });
        Daemon {
            child,
            logs,
            stderr,
            notices,
            listening,
            _socket_dir: socket_dir,
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn log_lines(&self) -> Vec<Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"))
            })
            .collect()
    }

    /// Waits for a log line that `wanted` accepts, counting only lines after the first `skip`.
    fn wait_for_log(&self, skip: usize, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(line) = self.log_lines().into_iter().skip(skip).find(&wanted) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line {what} in 30 s:\n{}\nstderr: {}",
                self.logs.lock().unwrap().join("\n"),
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_count(&self) -> usize {
        self.logs.lock().unwrap().len()
    }

    /// Waits for a notification datagram holding `field` (e.g. `READY=1`), after the first `skip`.
    fn wait_for_notice(&self, skip: usize, field: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = self
                .notices
                .lock()
                .unwrap()
                .iter()
                .skip(skip)
                .find(|notice| notice.lines().any(|line| line.starts_with(field)))
                .cloned();
            if let Some(notice) = found {
                return notice;
            }
            assert!(
                Instant::now() < deadline,
                "no {field} notification in 30 s: {:?}\nlog:\n{}",
                self.notices.lock().unwrap(),
                self.logs.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn notice_count(&self) -> usize {
        self.notices.lock().unwrap().len()
    }

    /// The listener's address, from its log line.
    fn http_address(&self) -> String {
        self.wait_for_log(0, "about the http listener", |line| {
            line["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("http listening")
        })["address"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Waits for the process to exit, at most `seconds`.
    fn wait_exit(&mut self, seconds: u64) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "refbridge run did not exit within {seconds} s:\n{}",
                self.logs.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the process wrote: stdout and stderr.
    fn output(&self) -> String {
        format!(
            "{}\n{}",
            self.logs.lock().unwrap().join("\n"),
            self.stderr.lock().unwrap()
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.listening.store(false, Ordering::Relaxed);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET: (status, body).
fn http_get(address: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// One sample of the exposition format.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict reader of the Prometheus text format 0.0.4: every line is `# HELP name text`,
/// `# TYPE name counter|gauge`, or `name{label="value",…} value`; a family's HELP and TYPE come
/// once, before its samples; counters end in `_total`. Panics on anything else.
fn parse_exposition(text: &str) -> Vec<Sample> {
    fn is_name(text: &str, colons: bool) -> bool {
        let mut chars = text.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeSet<String> = BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(is_name(name, true), "bad name in {line:?}");
            assert!(!help.is_empty(), "empty HELP: {line:?}");
            assert!(helps.insert(name.to_string()), "second HELP: {line:?}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(matches!(kind, "counter" | "gauge"), "bad type: {line:?}");
            assert!(
                kind != "counter" || name.ends_with("_total"),
                "a counter not named _total: {line:?}"
            );
            assert!(
                types.insert(name.to_string(), kind.to_string()).is_none(),
                "second TYPE: {line:?}"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "an unknown comment: {line:?}");
        assert!(!line.is_empty(), "an empty line");
        let name_end = line.find(['{', ' ']).expect("a sample");
        let name = &line[..name_end];
        assert!(is_name(name, true), "bad metric name in {line:?}");
        assert!(
            types.contains_key(name),
            "a sample before its TYPE: {line:?}"
        );
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let mut chars = inner.char_indices().peekable();
            let end;
            loop {
                // label name
                let start = chars.peek().map(|(i, _)| *i).expect("a label");
                let mut equals = None;
                for (i, c) in chars.by_ref() {
                    if c == '=' {
                        equals = Some(i);
                        break;
                    }
                }
                let equals = equals.expect("label=value");
                let label = &inner[start..equals];
                assert!(
                    is_name(label, false),
                    "bad label name {label:?} in {line:?}"
                );
                assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line:?}");
                let mut value = String::new();
                loop {
                    match chars.next().expect("a closed label value") {
                        (_, '\\') => match chars.next().expect("an escape").1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            other => panic!("bad escape \\{other} in {line:?}"),
                        },
                        (_, '"') => break,
                        (_, c) => value.push(c),
                    }
                }
                assert!(
                    labels.insert(label.to_string(), value).is_none(),
                    "a label twice: {line:?}"
                );
                match chars.next().expect("`,` or `}`") {
                    (_, ',') => continue,
                    (i, '}') => {
                        end = i;
                        break;
                    }
                    (_, other) => panic!("unexpected {other:?} in {line:?}"),
                }
            }
            rest = &inner[end + 1..];
        }
        let value_text = rest.strip_prefix(' ').expect("a space before the value");
        assert!(
            !value_text.contains(' '),
            "timestamps are not written: {line:?}"
        );
        let value = match value_text {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            number => number
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    for name in types.keys() {
        assert!(helps.contains(name), "{name} has a TYPE but no HELP");
    }
    samples
}

/// The label names metrics may carry, and the only values they may take.
fn allowed_label(label: &str, value: &str) -> bool {
    let jobs = [
        "pull_salesforce",
        "pull_hubspot",
        "import",
        "evaluate",
        "reconcile",
        "maintenance",
    ];
    match label {
        "job" => jobs.contains(&value),
        "outcome" => ["ok", "deferred", "stopped", "failed", "skipped"].contains(&value),
        "system" => ["salesforce", "hubspot"].contains(&value),
        "stream" => [
            "owners",
            "partners",
            "contacts",
            "referrals",
            "activities",
            "tasks",
        ]
        .contains(&value),
        "status_class" => ["2xx", "3xx", "4xx", "5xx", "none"].contains(&value),
        "rule" => refbridge::rules::config::RULE_NAMES.contains(&value),
        "severity" => ["rejected", "warning"].contains(&value),
        "status" => ["pending", "stored", "refused"].contains(&value),
        "version" => value == env!("CARGO_PKG_VERSION"),
        _ => false,
    }
}

/// Patient values of a canary export, and the parts a careless logger might keep.
const CANARIES: &[&str] = &[
    "MRN-CANARY-7D41",
    "Quillby",
    "Canaryson",
    "1911-11-11",
    "013-9731",
    "Canaryplace",
    "97531-2468",
    "relapsed after detox",
];

fn canary_export() -> String {
    let patient = [
        ("mrn", "MRN-CANARY-7D41"),
        ("patient_name", "Quillby Canaryson"),
        ("birth_date", "1911-11-11"),
        ("patient_phone", "(555) 013-9731"),
        ("patient_address", "77 Canaryplace Lane, Apt 9"),
        ("patient_zip", "97531-2468"),
        ("notes", "canary note: relapsed after detox"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut values = patient.to_vec();
        values.extend_from_slice(extra);
        row(&values)
    };
    csv(&[
        with(&[
            ("inquiry_id", "CANARY-1"),
            ("inquiry_date", "2026-10-01"),
            ("referral_source", "Canary Test Clinic"),
            ("disposition", "admitted"),
        ]),
        // A quarantined row: its problem is logged and stored by field, never by value.
        with(&[
            ("inquiry_id", "CANARY-2"),
            ("inquiry_date", "1911-11-11x"),
            ("disposition", "admitted"),
        ]),
    ])
}

fn integrity_and_runs(ledger: &Path) -> (String, i64) {
    let connection = rusqlite::Connection::open(ledger).unwrap();
    let integrity: String = connection
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    let running: i64 = connection
        .query_row(
            "SELECT count(*) FROM sync_run WHERE outcome = 'running'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    (integrity, running)
}

fn append(config: &Path, text: &str) {
    let mut current = std::fs::read_to_string(config).unwrap();
    current.push_str(text);
    std::fs::write(config, current).unwrap();
}

fn salesforce_tasks(world: &World) -> u64 {
    world.count("SELECT COUNT() FROM Task WHERE Refbridge_Key__c != null")
}

#[test]
fn a_daemon_becomes_ready_runs_its_jobs_pushes_tasks_serves_metrics_and_stops_on_sigterm() {
    let today = chrono::Utc::now().date_naive().to_string();
    let world = World::start(&["--as-of", &today, "--export-dir", "{state}/inbox"]);
    let connect = common::run_binary(
        &["check-config", "--connect", "--create-task-key"],
        Some(&world.config),
    );
    assert_eq!(connect.status, 0, "{}", connect.stdout);
    let inbox = world.config.with_extension("d").join("inbox");
    std::fs::write(inbox.join("canary.csv"), canary_export()).unwrap();
    append(
        &world.config,
        "\n[schedule]\n\
         pull_salesforce = \"*/2 * * * * *\"\n\
         pull_hubspot = \"*/2 * * * * *\"\n\
         import = \"*/2 * * * * *\"\n\
         evaluate = \"*/2 * * * * *\"\n\
         jitter_seconds = 0\n\
         [http]\nlisten = \"127.0.0.1:0\"\n",
    );
    assert_eq!(salesforce_tasks(&world), 0);

    let mut daemon = Daemon::start(&world.config, Some(1_000_000));
    let ready = daemon.wait_for_notice(0, "READY=1");
    assert!(ready.contains("STATUS="), "{ready}");
    let address = daemon.http_address();
    assert_eq!(http_get(&address, "/healthz").0, 200);

    // The jobs run on their schedule: tasks reach the Salesforce sandbox.
    let deadline = Instant::now() + Duration::from_secs(30);
    while salesforce_tasks(&world) == 0 {
        assert!(
            Instant::now() < deadline,
            "no task pushed in 30 s:\n{}",
            daemon.output()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    for job in ["evaluate", "import"] {
        daemon.wait_for_log(0, "about a finished run", |line| {
            line["job"] == job && line["outcome"] == "ok"
        });
    }
    let status = daemon.wait_for_notice(0, "STATUS=pull_salesforce ok");
    for job in [
        "pull_hubspot",
        "import",
        "evaluate",
        "reconcile",
        "maintenance",
    ] {
        assert!(status.contains(job), "{job} not in {status}");
    }
    daemon.wait_for_notice(0, "WATCHDOG=1");
    let (ready_status, ready_body) = http_get(&address, "/readyz");
    assert_eq!((ready_status, ready_body.as_str()), (200, "ready\n"));

    // Metrics: valid exposition, the families a dashboard needs, fixed label sets only.
    let (metrics_status, metrics) = http_get(&address, "/metrics");
    assert_eq!(metrics_status, 200);
    let samples = parse_exposition(&metrics);
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .sum()
    };
    for family in [
        "refbridge_job_runs_total",
        "refbridge_job_last_success_timestamp_seconds",
        "refbridge_records_pulled_total",
        "refbridge_api_calls_total",
        "refbridge_api_quota_remaining",
        "refbridge_alerts_open",
        "refbridge_quarantine_entries",
        "refbridge_outbox_intents",
    ] {
        assert!(
            samples.iter().any(|s| s.name == family),
            "no {family} in\n{metrics}"
        );
    }
    assert!(
        value(
            "refbridge_job_runs_total",
            &[("job", "evaluate"), ("outcome", "ok")]
        ) >= 1.0
    );
    assert!(
        value(
            "refbridge_records_pulled_total",
            &[("system", "salesforce"), ("stream", "partners")]
        ) > 0.0
    );
    assert!(
        value(
            "refbridge_api_calls_total",
            &[("system", "hubspot"), ("status_class", "2xx")]
        ) > 0.0
    );
    assert!(value("refbridge_api_quota_remaining", &[("system", "salesforce")]) > 0.0);
    assert!(value("refbridge_alerts_open", &[]) >= 1.0);
    assert_eq!(
        value("refbridge_quarantine_entries", &[("severity", "rejected")]),
        1.0,
        "the canary export's bad row"
    );
    let partners: Vec<String> = {
        let connection = rusqlite::Connection::open(world.ledger()).unwrap();
        let mut statement = connection.prepare("SELECT name FROM partner").unwrap();
        statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    };
    assert!(partners.len() > 10);
    for sample in &samples {
        for (label, value) in &sample.labels {
            assert!(
                allowed_label(label, value),
                "{}: label {label}={value:?} is not from a fixed set",
                sample.name
            );
        }
    }
    for partner in &partners {
        assert!(
            !metrics.contains(partner.as_str()),
            "partner {partner:?} in the metrics"
        );
    }

    // SIGTERM: STOPPING=1, exit 0, nothing half-written.
    let before = daemon.notice_count();
    daemon.signal("TERM");
    daemon.wait_for_notice(before, "STOPPING=1");
    let exit = daemon.wait_exit(15);
    assert_eq!(exit.code(), Some(0), "{}", daemon.output());
    daemon.wait_for_log(0, "saying it stopped", |line| {
        line["message"] == "refbridge stopped"
    });
    let (integrity, running) = integrity_and_runs(&world.ledger());
    assert_eq!(integrity, "ok");
    assert_eq!(running, 0, "a sync_run was left running");
    let connection = rusqlite::Connection::open(world.ledger()).unwrap();
    let kinds: BTreeSet<String> = connection
        .prepare("SELECT DISTINCT system || ':' || kind FROM sync_run")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    for kind in [
        "salesforce:pull",
        "hubspot:pull",
        "salesforce:push",
        "refbridge:import",
        "refbridge:evaluate",
    ] {
        assert!(kinds.contains(kind), "no {kind} run in {kinds:?}");
    }
    // Every task once: the outbox and the sandbox agree.
    let stored: i64 = connection
        .query_row(
            "SELECT count(*) FROM outbox WHERE system = 'salesforce' AND status = 'stored'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(salesforce_tasks(&world), stored as u64);

    // No patient value and no secret in anything the daemon wrote or served.
    let mut secrets: Vec<String> = Vec::new();
    for (system, field) in [
        ("salesforce", "client_secret"),
        ("salesforce", "access_token"),
        ("salesforce", "refresh_token"),
        ("hubspot", "private_app_token"),
        ("hubspot", "client_secret"),
        ("hubspot", "refresh_token"),
    ] {
        secrets.push(world.ready[system][field].as_str().unwrap().to_string());
    }
    let written = format!("{}\n{metrics}", daemon.output());
    for needle in CANARIES
        .iter()
        .map(|canary| canary.to_string())
        .chain(secrets)
    {
        assert!(
            !written.to_lowercase().contains(&needle.to_lowercase()),
            "{needle:?} appears in the daemon's output or metrics"
        );
    }
}

/// An EHR-only facility whose import job runs only when the config says so.
fn ehr_facility(schedule: &str) -> Facility {
    Facility::new(&format!(
        "[schedule]\n{schedule}\njitter_seconds = 0\n[http]\nlisten = \"127.0.0.1:0\"\n"
    ))
}

const NEVER_SOON: &str =
    "import = \"0 0 0 1 1 *\"\nevaluate = \"0 0 0 1 1 *\"\nmaintenance = \"0 0 0 1 1 *\"";

#[test]
fn sighup_applies_a_valid_config_and_keeps_the_running_one_when_the_new_one_is_invalid() {
    let facility = ehr_facility(NEVER_SOON);
    let mut daemon = Daemon::start(&facility.config, None);
    daemon.wait_for_notice(0, "READY=1");
    let address = daemon.http_address();

    // A valid change: the inbox is now scanned every second.
    let text = std::fs::read_to_string(&facility.config).unwrap();
    std::fs::write(
        &facility.config,
        text.replacen("import = \"0 0 0 1 1 *\"", "import = \"* * * * * *\"", 1),
    )
    .unwrap();
    let before = (daemon.log_count(), daemon.notice_count());
    daemon.signal("HUP");
    daemon.wait_for_notice(before.1, "RELOADING=1");
    daemon.wait_for_log(before.0, "saying the config was reloaded", |line| {
        line["message"] == "config reloaded"
    });
    daemon.wait_for_notice(before.1, "READY=1");
    daemon.wait_for_log(before.0, "about an import run", |line| {
        line["job"] == "import" && line["outcome"] == "ok"
    });

    // An invalid change: every problem logged with its line; the running config stays.
    let valid = std::fs::read_to_string(&facility.config).unwrap();
    let broken = format!("{valid}[maintenance]\nbackup_keep = 0\n");
    let broken_line = broken.lines().count();
    std::fs::write(&facility.config, &broken).unwrap();
    let before = (daemon.log_count(), daemon.notice_count());
    daemon.signal("HUP");
    let problem = daemon.wait_for_log(before.0, "naming the problem", |line| {
        line["problem"].is_string()
    });
    let problem = problem["problem"].as_str().unwrap();
    assert!(
        problem.contains(&format!(
            "{}:{broken_line}:1: maintenance.backup_keep: must be at least 1",
            facility.config.display()
        )),
        "{problem}"
    );
    daemon.wait_for_notice(before.1, "READY=1");
    // Still alive, still on the old schedule.
    assert_eq!(http_get(&address, "/healthz").0, 200);
    let after = daemon.log_count();
    daemon.wait_for_log(after, "about a later import run", |line| {
        line["job"] == "import" && line["outcome"] == "ok"
    });
    assert!(
        !daemon
            .log_lines()
            .iter()
            .skip(before.0)
            .any(|line| line["message"] == "config reloaded")
    );

    daemon.signal("INT");
    assert_eq!(daemon.wait_exit(15).code(), Some(0));
    let (integrity, running) = integrity_and_runs(&facility.ledger());
    assert_eq!((integrity.as_str(), running), ("ok", 0));
}

#[test]
fn maintenance_backs_the_ledger_up_privately_and_keeps_the_newest_few() {
    let facility = ehr_facility(
        "maintenance = \"*/2 * * * * *\"\nimport = \"0 0 0 1 1 *\"\nevaluate = \"0 0 0 1 1 *\"",
    );
    append(&facility.config, "[maintenance]\nbackup_keep = 2\n");
    let rows: Vec<String> = (1..=5)
        .map(|n| {
            row(&[
                ("inquiry_id", &format!("M-{n}")),
                ("inquiry_date", "2026-10-01"),
                ("referral_source", "Harbor Clinic"),
                ("disposition", "admitted"),
            ])
        })
        .collect();
    let export = facility.input("referrals.csv", csv(&rows));
    assert_eq!(facility.import(&[&export])["referrals_new"], 5);
    // Older backups (and a file that only looks like one) already sit in the backup folder.
    let backups = facility.path("state/backups");
    std::fs::create_dir_all(&backups).unwrap();
    for name in [
        "ledger-20250101T000000Z.db",
        "ledger-20250102T000000Z.db",
        "notes.txt",
    ] {
        std::fs::write(backups.join(name), "old").unwrap();
    }

    let mut daemon = Daemon::start(&facility.config, None);
    for _ in 0..2 {
        let skip = daemon.log_count();
        daemon.wait_for_log(skip, "about a maintenance run", |line| {
            line["job"] == "maintenance" && line["outcome"] == "ok"
        });
    }
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(15).code(), Some(0));

    let mut names: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let made: Vec<&String> = names
        .iter()
        .filter(|n| n.starts_with("ledger-2026"))
        .collect();
    assert_eq!(
        names.len(),
        3,
        "two backups and the unrelated file: {names:?}"
    );
    assert!(names.contains(&"notes.txt".to_string()));
    assert_eq!(made.len(), 2, "{names:?}");
    for name in made {
        let path: PathBuf = backups.join(name);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
        let backup = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let integrity: String = backup
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(integrity, "ok");
        let referrals: i64 = backup
            .query_row("SELECT count(*) FROM referral", [], |row| row.get(0))
            .unwrap();
        assert_eq!(referrals, 5, "{name} holds the ledger's referrals");
    }
    let (integrity, running) = integrity_and_runs(&facility.ledger());
    assert_eq!((integrity.as_str(), running), ("ok", 0));
    let maintenance_runs: i64 = facility
        .sql()
        .query_row(
            "SELECT count(*) FROM sync_run WHERE system = 'refbridge' AND kind = 'maintenance' AND outcome = 'ok'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(maintenance_runs >= 2);
}

#[test]
fn a_listener_beyond_loopback_is_a_config_error_unless_allowed() {
    let facility = Facility::new("[http]\nlisten = \"0.0.0.0:9464\"\n");
    for command in ["run", "check-config"] {
        let output = facility.run(&[command]);
        assert_eq!(output.status, 2, "{command}: {}", output.stderr);
        assert!(
            output
                .stderr
                .contains("http.listen: 0.0.0.0:9464 is not a loopback address"),
            "{command}: {}",
            output.stderr
        );
    }
    let allowed = Facility::new("[http]\nlisten = \"0.0.0.0:9464\"\nallow_non_loopback = true\n");
    assert_eq!(allowed.run(&["check-config"]).status, 0);
    // A bad schedule is a config error too, named with its key and reason.
    let bad = Facility::new("[schedule]\nimport = \"*/5 * * * *\"\n");
    let output = bad.run(&["run"]);
    assert_eq!(output.status, 2);
    assert!(
        output
            .stderr
            .contains("schedule.import: \"*/5 * * * *\": has 5 field(s)"),
        "{}",
        output.stderr
    );
}

#[test]
fn sigterm_during_a_slow_pull_stops_it_at_a_committed_page() {
    // Every CRM answer takes 250 ms: a first pull takes seconds, so the stop lands inside one.
    let world = World::start(&["--faults", "latency_ms=250"]);
    append(
        &world.config,
        "\n[schedule]\npull_salesforce = \"*/2 * * * * *\"\npull_hubspot = \"*/2 * * * * *\"\n\
         evaluate = \"0 0 0 1 1 *\"\nimport = \"0 0 0 1 1 *\"\njitter_seconds = 0\n",
    );
    let mut daemon = Daemon::start(&world.config, None);
    daemon.wait_for_log(0, "about a started pull", |line| {
        line["message"] == "job started" && line["job"] == "pull_hubspot"
    });
    daemon.wait_for_log(0, "about a stored page", |line| {
        line["message"] == "stream pulled"
    });
    let asked = Instant::now();
    daemon.signal("TERM");
    let exit = daemon.wait_exit(15);
    assert_eq!(exit.code(), Some(0), "{}", daemon.output());
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "the stop took {:?}",
        asked.elapsed()
    );
    let connection = rusqlite::Connection::open(world.ledger()).unwrap();
    let outcomes: BTreeMap<String, i64> = connection
        .prepare("SELECT outcome, count(*) FROM sync_run WHERE kind = 'pull' GROUP BY outcome")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert!(outcomes.contains_key("stopped"), "{outcomes:?}");
    assert!(!outcomes.contains_key("running"), "{outcomes:?}");
    assert!(!outcomes.contains_key("failed"), "{outcomes:?}");
    // What was committed before the stop is there, with the cursor after it: the next pull resumes.
    let (records, cursors): (i64, i64) = connection
        .query_row(
            "SELECT (SELECT count(*) FROM crm_record), (SELECT count(*) FROM sync_cursor)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert!(
        records > 0 && cursors > 0,
        "{records} records, {cursors} cursors"
    );
    let (integrity, running) = integrity_and_runs(&world.ledger());
    assert_eq!((integrity.as_str(), running), ("ok", 0));
}
