//! Crash safety: `refbridge sync --once` and the daemon (`refbridge run`) killed with SIGKILL at
//! random points of a cycle — in pulls, imports, evaluation and pushes — then run to the end, and
//! compared with an identical world that was never killed. What a user would notice is asserted:
//! one CRM task per key and the same tasks as the never-killed run, every EHR referral and CRM
//! record there, the cursors at the end, an intact ledger, and no run left `running` for ever.
//!
//! `RELIABILITY_KILLS` raises the number of landed kills of `sync --once` (default
//! [`KILLS_IN_CI`]); `RELIABILITY_SEED` repeats a printed seed.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use refbridge_synthetic::Random;

use crate::common::sandbox::World;
use crate::support::{self, CrmTask};

/// Landed kills of `sync --once` in CI; `RELIABILITY_KILLS` overrides it for longer runs.
const KILLS_IN_CI: usize = 25;
/// Landed kills per fresh world, so that kills keep landing in a first full cycle's work.
const KILLS_PER_WORLD: usize = 7;
/// Landed kills of the daemon.
const DAEMON_KILLS: usize = 4;

/// What the never-killed run ends with.
struct Expected {
    as_of: String,
    #[allow(dead_code)]
    clean_run: Duration,
    /// When each step of the clean run began and ended, from its start: pulls, imports,
    /// evaluation, pushes.
    phases: Vec<(&'static str, Duration, Duration)>,
    domain: BTreeMap<&'static str, Vec<String>>,
    salesforce: BTreeMap<String, CrmTask>,
    hubspot: BTreeMap<String, CrmTask>,
    records: BTreeMap<(String, String), i64>,
}

/// The reference: a world like the others, one clean `sync --once` timed, then a second run past
/// the settle lag that reads the pushed tasks back. Built once for all tests of this module.
fn expected() -> &'static Expected {
    static EXPECTED: OnceLock<Expected> = OnceLock::new();
    EXPECTED.get_or_init(|| {
        let as_of = support::today();
        let world = support::prepared_world(&as_of, &[]);
        let (clean_run, phases) = timed_clean_run(&world);
        support::settle();
        support::sync_until_finished(&world, 1);
        let expected = Expected {
            as_of,
            clean_run,
            phases,
            domain: support::domain(&world.ledger()),
            salesforce: support::once_per_key("salesforce", support::salesforce_tasks(&world)),
            hubspot: support::once_per_key("hubspot", support::hubspot_tasks(&world)),
            records: record_counts(&world),
        };
        assert!(
            expected.salesforce.len() >= 10 && expected.hubspot.len() >= 5,
            "the world has tasks to push to both CRMs"
        );
        println!(
            "reference: clean sync --once {:?}, steps {:?}; {} Salesforce and {} HubSpot tasks",
            clean_run,
            expected.phases,
            expected.salesforce.len(),
            expected.hubspot.len()
        );
        expected
    })
}

/// Runs `sync --once` with JSON logs and reads from them when each step began and ended.
fn timed_clean_run(world: &World) -> (Duration, Vec<(&'static str, Duration, Duration)>) {
    let spawned = chrono::Utc::now();
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_refbridge"))
        .args(["--log-format", "json", "sync", "--once", "--config"])
        .arg(&world.config)
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let clean_run = started.elapsed();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let events: Vec<(String, Duration)> = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|event| {
            let at: chrono::DateTime<chrono::Utc> =
                event["timestamp"].as_str().unwrap().parse().unwrap();
            let offset = (at - spawned).to_std().unwrap_or_default();
            (
                event["message"].as_str().unwrap_or_default().to_string(),
                offset,
            )
        })
        .collect();
    let first = |message: &str| events.iter().find(|e| e.0 == message).unwrap().1;
    let last = |message: &str| events.iter().rev().find(|e| e.0 == message).unwrap().1;
    let phases = vec![
        ("pull", Duration::ZERO, first("import started")),
        ("import", first("import started"), last("import finished")),
        (
            "evaluation",
            last("import finished"),
            first("outbox planned"),
        ),
        ("push", first("outbox planned"), last("outbox pushed")),
    ];
    (clean_run, phases)
}

fn record_counts(world: &World) -> BTreeMap<(String, String), i64> {
    let connection = rusqlite::Connection::open(world.ledger()).unwrap();
    let mut statement = connection
        .prepare(
            "SELECT system, stream, count(*) FROM crm_record WHERE stream <> 'tasks' GROUP BY 1, 2",
        )
        .unwrap();
    statement
        .query_map([], |row| Ok(((row.get(0)?, row.get(1)?), row.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn seed() -> u64 {
    let seed = std::env::var("RELIABILITY_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    println!("crash seed {seed} (RELIABILITY_SEED={seed} repeats it)");
    seed
}

fn spawn(args: &[&str], world: &World) -> Child {
    Command::new(env!("CARGO_BIN_EXE_refbridge"))
        .args(args)
        .arg("--config")
        .arg(&world.config)
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// `sync --once` with its JSON log on a pipe, read line by line into a channel.
fn spawn_logging(world: &World) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_refbridge"))
        .args(["--log-format", "json", "sync", "--once", "--config"])
        .arg(&world.config)
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (send, receive) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let message = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|event| event["message"].as_str().map(str::to_string))
                .unwrap_or_default();
            // Read to the end even when nobody listens, so the run never writes into a closed pipe.
            let _ = send.send(message);
        }
    });
    (child, receive)
}

/// Waits until the run's log shows `phase` has begun (for pulls: after `skip` streams were
/// pulled); false when the run ended first.
fn wait_for_step(
    (child, log): (Child, std::sync::mpsc::Receiver<String>),
    phase: &str,
    skip: usize,
) -> (Child, bool) {
    let mut pulled = 0;
    for message in log.iter() {
        let begun = match phase {
            "pull" => {
                pulled += usize::from(message == "stream pulled");
                pulled > skip || message == "import started"
            }
            "import" => message == "import started",
            "evaluation" => message == "identity resolved",
            _ => message == "outbox planned",
        };
        if begun {
            return (child, true);
        }
    }
    (child, false)
}

/// SIGKILLs `child` if it is still running; true when the kill landed.
fn kill(mut child: Child) -> bool {
    match child.try_wait().unwrap() {
        None => {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            true
        }
        Some(status) => {
            assert!(
                status.success(),
                "a run that was not killed failed: {status}"
            );
            false
        }
    }
}

/// Where a landed kill stopped the cycle, read from the runs it left open.
fn phase_of_kill(world: &World) -> &'static str {
    let ledger = world.ledger();
    if !ledger.exists() {
        return "start";
    }
    let open = |sql: &str| support::count(&ledger, sql) > 0;
    if open("SELECT count(*) FROM import_run WHERE outcome = 'running'") {
        "import"
    } else if open("SELECT count(*) FROM sync_run WHERE outcome = 'running' AND kind = 'push'") {
        "push"
    } else if open("SELECT count(*) FROM sync_run WHERE outcome = 'running' AND kind = 'pull'") {
        "pull"
    } else {
        "evaluation or between steps"
    }
}

/// After the kills: one clean run finishes the work, and a second one past the settle lag (like
/// the reference's) reads every pushed task back and finds nothing else left behind its cursors.
fn finish(world: &World) {
    let (runs, _) = support::sync_until_finished(world, 3);
    assert_eq!(runs, 1, "one clean run after the kills finishes the work");
    support::settle();
    let (_, report) = support::sync_until_finished(world, 1);
    for stream in report["pulled"]["streams"].as_array().unwrap() {
        if stream["stream"] != "tasks" {
            assert_eq!(
                stream["read"], 0,
                "a record left behind its cursor: {stream}"
            );
        }
    }
}

/// What a user would notice, against the never-killed run.
fn assert_like_never_killed(world: &World, expected: &Expected, what: &str) {
    let ledger = world.ledger();
    assert_eq!(support::integrity(&ledger), "ok", "{what}");
    assert_eq!(
        support::count(
            &ledger,
            "SELECT (SELECT count(*) FROM sync_run WHERE outcome = 'running')
                  + (SELECT count(*) FROM import_run WHERE outcome = 'running')"
        ),
        0,
        "{what}: runs of killed processes are marked interrupted, not left running"
    );
    // One CRM task per key, the outbox's keys, and the same tasks the never-killed run pushed.
    for (system, tasks, reference) in [
        (
            "salesforce",
            support::salesforce_tasks(world),
            &expected.salesforce,
        ),
        ("hubspot", support::hubspot_tasks(world), &expected.hubspot),
    ] {
        let tasks = support::once_per_key(system, tasks);
        let keys: Vec<String> = tasks.keys().cloned().collect();
        assert_eq!(
            keys,
            support::outbox_keys(&ledger, system),
            "{what}: {system} holds the outbox's tasks"
        );
        if &tasks != reference {
            let differing: Vec<_> = reference
                .iter()
                .filter(|(key, task)| tasks.get(*key) != Some(*task))
                .take(3)
                .map(|(key, task)| (key, task, tasks.get(key)))
                .collect();
            panic!(
                "{what}: {system} tasks differ from the never-killed run ({} vs {}): {differing:#?}",
                tasks.len(),
                reference.len()
            );
        }
    }
    // No referral lost: every row of the export, inbound and referred out.
    let csv_path = world.config.with_extension("d").join("inbox/imported");
    let export = std::fs::read_dir(&csv_path)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|e| e == "csv"))
        .expect("the CSV export was imported and moved");
    let mut reader = csv::Reader::from_path(&export).unwrap();
    let out_column = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "referred_out_to")
        .unwrap();
    let (mut inbound, mut outbound) = (0, 0);
    for record in reader.records() {
        inbound += 1;
        if !record.unwrap()[out_column].is_empty() {
            outbound += 1;
        }
    }
    assert_eq!(
        (
            support::count(
                &ledger,
                "SELECT count(*) FROM referral WHERE direction = 'in'"
            ),
            support::count(
                &ledger,
                "SELECT count(*) FROM referral WHERE direction = 'out'"
            )
        ),
        (inbound, outbound),
        "{what}: every export row is a referral in the ledger"
    );
    // Every CRM record, per stream, as many as the sandbox holds.
    assert_eq!(record_counts(world), expected.records, "{what}");
    for (stream, soql) in [
        ("partners", "SELECT COUNT() FROM Account"),
        ("contacts", "SELECT COUNT() FROM Contact"),
        ("referrals", "SELECT COUNT() FROM Opportunity"),
    ] {
        assert_eq!(
            expected.records[&("salesforce".to_string(), stream.to_string())] as u64,
            world.count(soql),
            "{what}: {stream}"
        );
    }
    // Each cursor at the end: past every record its stream stored.
    let behind = support::count(
        &ledger,
        "SELECT count(*) FROM crm_record r JOIN sync_cursor c ON c.system = r.system AND c.stream = r.stream
         WHERE r.modified_at > c.modified_at
            OR (r.system = 'salesforce' AND r.modified_at = c.modified_at AND r.external_id > c.external_id)",
    );
    assert_eq!(behind, 0, "{what}: a record beyond its stream's cursor");
    assert_eq!(
        support::count(
            &ledger,
            "SELECT count(DISTINCT system || stream) FROM sync_cursor"
        ),
        12,
        "{what}: every stream has its cursor"
    );
    // And the rest of what the ledger knows, the same as the never-killed run's.
    support::assert_same_domain(&expected.domain, &support::domain(&ledger), what);
}

#[test]
fn sync_killed_at_random_points_ends_like_a_run_never_killed() {
    let expected = expected();
    let wanted = std::env::var("RELIABILITY_KILLS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(KILLS_IN_CI);
    let mut random = Random::new(seed());
    let (mut landed, mut tries, mut worlds) = (0usize, 0usize, 0usize);
    let mut phases: BTreeMap<&str, usize> = BTreeMap::new();
    while landed < wanted {
        let world = support::prepared_world(&expected.as_of, &[]);
        worlds += 1;
        let mut landed_here = 0;
        // Kills aimed in turn at each step of a cycle: the run's own log says when a step has
        // begun (pulls take most of a run, a push a few milliseconds, so a timer alone would
        // nearly always land in a pull), then a random part of that step's length in the clean
        // run passes. Each kill goes into the next attempt; a world whose first cycle is done
        // gives little to kill, so a fresh one takes over.
        while landed_here < KILLS_PER_WORLD && landed < wanted && tries < wanted * 4 {
            let (phase, from, to) = expected.phases[tries % expected.phases.len()];
            let window = match phase {
                "pull" => Duration::from_millis(60), // within the stream being pulled
                "import" => Duration::from_millis(20), // within the file being imported
                _ => to.saturating_sub(from),
            };
            let delay = window.mul_f64(random.unit());
            let skip = random.below(10) as usize;
            let child = spawn_logging(&world);
            let (child, started) = wait_for_step(child, phase, skip);
            if started {
                std::thread::sleep(delay);
            }
            tries += 1;
            if kill(child) {
                landed += 1;
                landed_here += 1;
                *phases.entry(phase_of_kill(&world)).or_default() += 1;
            }
        }
        finish(&world);
        assert_like_never_killed(&world, expected, &format!("world {worlds}"));
        assert!(
            tries < wanted * 4,
            "kills stopped landing: {landed} of {tries}"
        );
    }
    crate::figure(&format!(
        "sync --once: kills survived {landed} (of {tries} tries, {worlds} worlds); landed in {phases:?}"
    ));
}

#[test]
fn the_daemon_killed_part_way_ends_like_a_run_never_killed() {
    let expected = expected();
    let world = support::prepared_world(&expected.as_of, &[]);
    let mut text = std::fs::read_to_string(&world.config).unwrap();
    text.push_str(
        "\n[schedule]\npull_salesforce = \"*/2 * * * * *\"\npull_hubspot = \"*/2 * * * * *\"\n\
         import = \"*/2 * * * * *\"\nevaluate = \"*/3 * * * * *\"\njitter_seconds = 0\n",
    );
    std::fs::write(&world.config, text).unwrap();
    let mut random = Random::new(seed() ^ 0xdae);
    let mut landed = 0;
    let mut phases: BTreeMap<&str, usize> = BTreeMap::new();
    while landed < DAEMON_KILLS {
        let child = spawn(&["run"], &world);
        // A tick every 2-3 s: kills between 1 and 5 s land inside and between jobs.
        std::thread::sleep(Duration::from_millis(1_000 + random.below(4_000)));
        assert!(kill(child), "the daemon exited by itself");
        landed += 1;
        *phases.entry(phase_of_kill(&world)).or_default() += 1;
    }
    finish(&world);
    assert_like_never_killed(&world, expected, "daemon world");
    crate::figure(&format!(
        "refbridge run: kills survived {landed}; landed in {phases:?}"
    ));
}
