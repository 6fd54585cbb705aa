//! Benchmark: the daemon (`refbridge run`, the release binary) as systemd sees it — how long from
//! spawn to `READY=1`, and how much memory it holds when idle after its first jobs ran.
//!
//! Run: `cargo bench --bench daemon` (options after `--`: `--starts N` starts per ledger, median
//! reported, default 5; `--idle-seconds N` of idleness before memory is read, default 30). Prints
//! `name value unit` lines, twice: `daemon_fresh_*` against a `small` sandbox with no ledger yet
//! (each start creates and migrates it; the first jobs pull and import the small world), and
//! `daemon_medium_*` against a `medium` sandbox whose world one `refbridge sync --once` has
//! already put in the ledger (the first jobs are incremental pulls and an evaluation).
//!
//! Both CRM sandboxes are real loopback HTTP servers (`refbridge sandbox --write-config`, with the
//! world's EHR exports in the inbox). Start-to-ready runs with every job scheduled on 1 January,
//! SIGTERM between starts. The idle run schedules the pulls and the import a few seconds after
//! the start and the evaluation ten seconds later, each once an hour, reconciliation and
//! maintenance on 1 January: once the four jobs have finished nothing is due for an hour, and
//! VmRSS, VmHWM and the thread count are read from `/proc/<pid>/status` after `--idle-seconds`.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
use serde_json::Value;

const BINARY: &str = env!("CARGO_BIN_EXE_refbridge");
/// Never due while the benchmark runs (midnight, 1 January).
const NEVER_SOON: &str = "0 0 0 1 1 *";
/// The jobs of the idle run's first round.
const FIRST_JOBS: [&str; 4] = ["pull_salesforce", "pull_hubspot", "import", "evaluate"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let starts: usize = option("--starts").map_or(5, |n| n.parse().expect("--starts N"));
    let idle_seconds: u64 =
        option("--idle-seconds").map_or(30, |n| n.parse().expect("--idle-seconds N"));
    for (name, scale) in [("fresh", "small"), ("medium", "medium")] {
        scenario(name, scale, starts.max(1), idle_seconds);
    }
}

/// One ledger's figures: start-to-ready, then idle memory.
fn scenario(name: &str, scale: &str, starts: usize, idle_seconds: u64) {
    let scratch = tempfile::tempdir().expect("scratch directory");
    let sandbox = Sandbox::start(scratch.path(), scale);
    let ledger = sandbox.state.join("ledger.db");
    let fresh = name == "fresh";
    if !fresh {
        let started = Instant::now();
        let output = Command::new(BINARY)
            .args(["sync", "--once", "--config"])
            .arg(&sandbox.config)
            .env_remove("CREDENTIALS_DIRECTORY")
            .output()
            .expect("run refbridge sync");
        assert!(
            output.status.success(),
            "sync --once failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        println!(
            "daemon_{name}_seed_sync_seconds {:.2} s (sync --once of the {scale} world)",
            started.elapsed().as_secs_f64()
        );
        let connection = rusqlite::Connection::open(&ledger).expect("ledger");
        let count = |sql: &str| -> i64 { connection.query_row(sql, [], |row| row.get(0)).unwrap() };
        println!(
            "daemon_{name}_ledger {} partners, {} referrals, {} CRM records, {} bytes",
            count("SELECT count(*) FROM partner"),
            count("SELECT count(*) FROM unified_referral"),
            count("SELECT count(*) FROM crm_record"),
            std::fs::metadata(&ledger).map_or(0, |m| m.len())
        );
    }
    let forget_ledger = || {
        for file in ["ledger.db", "ledger.db-wal", "ledger.db-shm"] {
            let _ = std::fs::remove_file(sandbox.state.join(file));
        }
    };

    // Start-to-ready: nothing is due, so the start is all there is.
    let quiet = sandbox.config_with_schedule(
        "quiet",
        &[
            ("pull_salesforce", NEVER_SOON.to_string()),
            ("pull_hubspot", NEVER_SOON.to_string()),
            ("import", NEVER_SOON.to_string()),
            ("evaluate", NEVER_SOON.to_string()),
        ],
    );
    let mut times = Vec::new();
    for _ in 0..starts {
        if fresh {
            forget_ledger();
        }
        let mut daemon = Daemon::start(&quiet);
        times.push(daemon.ready_after);
        daemon.stop();
    }
    times.sort();
    println!(
        "daemon_{name}_start_to_ready_seconds {:.3} s (median of {starts}; min {:.3}, max {:.3})",
        times[times.len() / 2].as_secs_f64(),
        times[0].as_secs_f64(),
        times[times.len() - 1].as_secs_f64()
    );

    // Idle memory: the first jobs a few seconds after the start, then an hour of nothing.
    if fresh {
        forget_ledger();
    }
    let first = Utc::now() + chrono::Duration::seconds(6);
    let then = first + chrono::Duration::seconds(10);
    let hourly = |at: chrono::DateTime<Utc>| format!("{} {} * * * *", at.second(), at.minute());
    let idle = sandbox.config_with_schedule(
        "idle",
        &[
            ("pull_salesforce", hourly(first)),
            ("pull_hubspot", hourly(first)),
            ("import", hourly(first)),
            ("evaluate", hourly(then)),
        ],
    );
    let mut daemon = Daemon::start(&idle);
    std::thread::sleep(Duration::from_secs(2));
    let at_ready = daemon.status();
    let ran = daemon.wait_for_first_jobs(Duration::from_secs(900));
    std::thread::sleep(Duration::from_secs(idle_seconds));
    let idle_status = daemon.status();
    assert!(
        daemon.finished_jobs().len() == ran.len(),
        "a job ran while the daemon should have been idle: {:?}",
        daemon.finished_jobs()
    );
    daemon.stop();
    drop(sandbox);

    println!(
        "daemon_{name}_rss_at_ready {:.1} MiB (2 s after READY=1, before any job)",
        mib(at_ready.rss_kib)
    );
    println!(
        "daemon_{name}_first_jobs {} jobs ({})",
        ran.len(),
        ran.iter()
            .map(|(job, outcome, ms)| format!("{job} {outcome} {ms} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "daemon_{name}_idle_rss {:.1} MiB (VmRSS after {idle_seconds} s with no job due)",
        mib(idle_status.rss_kib)
    );
    println!(
        "daemon_{name}_idle_hwm {:.1} MiB (VmHWM: the peak, during the first jobs)",
        mib(idle_status.hwm_kib)
    );
    println!("daemon_{name}_idle_threads {} threads", idle_status.threads);
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A `refbridge sandbox` process and the config it wrote.
struct Sandbox {
    child: Child,
    config: PathBuf,
    /// The config's state folder: ledger, patient key, inbox.
    state: PathBuf,
}

impl Sandbox {
    fn start(directory: &Path, scale: &str) -> Sandbox {
        let config = directory.join("rb.toml");
        let state = config.with_extension("d");
        let mut child = Command::new(BINARY)
            .args(["sandbox", "--seed", "7", "--as-of", "2026-11-01", "--scale"])
            .arg(scale)
            .arg("--export-dir")
            .arg(state.join("inbox"))
            .arg("--write-config")
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start refbridge sandbox");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("sandbox stdout"))
            .read_line(&mut line)
            .expect("the sandbox's ready line");
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("the sandbox did not start ({error}): {line:?}"));
        assert!(ready.get("salesforce").is_some(), "{ready}");
        // As an install does once: create HubSpot's unique task-key property.
        let output = Command::new(BINARY)
            .args(["check-config", "--connect", "--create-task-key", "--config"])
            .arg(&config)
            .env_remove("CREDENTIALS_DIRECTORY")
            .output()
            .expect("run refbridge check-config");
        assert!(
            output.status.success(),
            "check-config --connect --create-task-key failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Sandbox {
            child,
            config,
            state,
        }
    }

    /// A copy of the sandbox's config with a `[schedule]` (no jitter; reconciliation and
    /// maintenance never soon) and nothing else changed.
    fn config_with_schedule(&self, name: &str, jobs: &[(&str, String)]) -> PathBuf {
        let mut text = std::fs::read_to_string(&self.config).expect("sandbox config");
        text.push_str("\n[schedule]\njitter_seconds = 0\n");
        text.push_str(&format!(
            "reconcile = \"{NEVER_SOON}\"\nmaintenance = \"{NEVER_SOON}\"\n"
        ));
        for (job, expression) in jobs {
            text.push_str(&format!("{job} = \"{expression}\"\n"));
        }
        let path = self.config.with_file_name(format!("{name}.toml"));
        std::fs::write(&path, text).expect("write config");
        path
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `/proc/<pid>/status` says.
struct Status {
    rss_kib: u64,
    hwm_kib: u64,
    threads: u64,
}

/// A running `refbridge --log-format json run`, its JSON log lines, started with a
/// `NOTIFY_SOCKET` of the benchmark's own.
struct Daemon {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    ready_after: Duration,
    /// Cleared to end the thread that keeps reading the notify socket after `READY=1` (a full
    /// socket would block the daemon's next notification).
    listening: Arc<AtomicBool>,
    _socket_dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.listening.store(false, Ordering::Relaxed);
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Daemon {
    /// Spawns the daemon and waits for `READY=1`.
    fn start(config: &Path) -> Daemon {
        let socket_dir = tempfile::tempdir().expect("socket directory");
        let socket_path = socket_dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("socket timeout");
        let started = Instant::now();
        let mut child = Command::new(BINARY)
            .args(["--log-format", "json", "run", "--config"])
            .arg(config)
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env("RUST_LOG", "info")
            .env("NOTIFY_SOCKET", &socket_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start refbridge run");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("daemon stdout");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("daemon stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            sink.lock().unwrap().push_str(&text);
        });
        let mut buffer = [0u8; 4096];
        let ready_after = loop {
            if let Ok(length) = socket.recv(&mut buffer)
                && String::from_utf8_lossy(&buffer[..length])
                    .lines()
                    .any(|line| line == "READY=1")
            {
                break started.elapsed();
            }
            if let Some(status) = child.try_wait().expect("daemon status") {
                panic!(
                    "refbridge run exited ({status}) before READY=1:\n{}",
                    stderr.lock().unwrap()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no READY=1 within 60 s"
            );
        };
        let listening = Arc::new(AtomicBool::new(true));
        let open = listening.clone();
        std::thread::spawn(move || {
            while open.load(Ordering::Relaxed) {
                let _ = socket.recv(&mut buffer);
            }
        });
        Daemon {
            child,
            logs,
            stderr,
            ready_after,
            listening,
            _socket_dir: socket_dir,
        }
    }

    fn status(&self) -> Status {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/<pid>/status");
        let field = |name: &str| -> u64 {
            text.lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/<pid>/status"))
        };
        Status {
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
            threads: field("Threads:"),
        }
    }

    /// Every job run that ended so far: (job, outcome, milliseconds).
    fn finished_jobs(&self) -> Vec<(String, String, u64)> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| {
                matches!(
                    line["message"].as_str(),
                    Some("job finished" | "job failed" | "job ended early")
                )
            })
            .map(|line| {
                (
                    line["job"].as_str().unwrap_or("?").to_string(),
                    line["outcome"].as_str().unwrap_or("?").to_string(),
                    line["elapsed_ms"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    /// Waits until each of [`FIRST_JOBS`] has ended once; they must all have succeeded.
    fn wait_for_first_jobs(&self, limit: Duration) -> Vec<(String, String, u64)> {
        let deadline = Instant::now() + limit;
        loop {
            let finished = self.finished_jobs();
            if FIRST_JOBS
                .iter()
                .all(|job| finished.iter().any(|(name, _, _)| name == job))
            {
                for (job, outcome, _) in &finished {
                    assert_eq!(
                        outcome,
                        "ok",
                        "{job} did not succeed:\n{}",
                        self.logs.lock().unwrap().join("\n")
                    );
                }
                return finished;
            }
            assert!(
                Instant::now() < deadline,
                "the first jobs did not all end within {limit:?}:\n{}\nstderr: {}",
                self.logs.lock().unwrap().join("\n"),
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(&mut self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("daemon status") {
                assert!(
                    status.success(),
                    "refbridge run exited with {status} after SIGTERM:\n{}",
                    self.stderr.lock().unwrap()
                );
                return;
            }
            assert!(Instant::now() < deadline, "no exit 60 s after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
