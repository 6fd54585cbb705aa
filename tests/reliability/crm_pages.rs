//! Property-based mutation of CRM pages on the wire: a small proxy on loopback, started here, sits
//! between the real `refbridge sync --once` and a `refbridge sandbox`. It passes every request
//! through (logins and token calls included) but mutates the body of one chosen answer — the Nth
//! Salesforce query page (`query`, `queryAll`, `nextRecordsUrl` locators) or the Nth HubSpot list,
//! search or owners page — with the shared mutators: bytes (flips, deletions, insertions,
//! truncation), JSON values of another type, removed or renamed members anywhere or at the members
//! paging and cursors depend on (`Id`, `SystemModstamp`, `done`, `nextRecordsUrl`, `results`,
//! `paging.next.after`, `hs_lastmodifieddate`…), and still-valid times moved to another moment.
//!
//! Each case starts from an empty ledger (a full pull) or from a ledger whose cursors were moved
//! back to the middle of each stream (an incremental pull: Salesforce window queries after a
//! cursor, HubSpot searches). Properties: the process never crashes (exit 0 or 1, no panic); a
//! stream that failed is the mutated CRM's and its message names the request and what was wrong;
//! then, with the proxy clean, one more sync ends with every record of the clean reference run
//! stored exactly as the reference has it — nothing lost, nothing invented, the cursor never past a
//! record that was not stored. A mutation the connector could not tell from a real answer (a
//! changed name, a dropped `paging`) is accepted like a real edit; for those the product's own
//! repair, the reconciliation pass (`--reconcile`) and the pull after it, must restore every record,
//! and only the records of the mutated page may keep a changed value.
//!
//! Cases per CRM: `RELIABILITY_CRM_CASES` (default 8); `RELIABILITY_SEED` replays one case. A
//! failing case prints its CRM, seed and mutation.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::common::sandbox::World;
use super::common::{Output, run_binary};
use super::mutate::{
    Rng, SeedGuard, mutate_bytes, mutate_json, mutate_json_key, seeds, shift_time,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum System {
    Salesforce,
    Hubspot,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Salesforce => "salesforce",
            System::Hubspot => "hubspot",
        }
    }

    /// Whether an answer to this request is a page of records.
    fn is_page(self, method: &str, path: &str) -> bool {
        match self {
            System::Salesforce => path.contains("/query"),
            System::Hubspot => {
                let segments = path.trim_matches('/').split('/').count();
                path == "/crm/v3/owners"
                    || (path.starts_with("/crm/v3/objects/")
                        && (path.ends_with("/search") || (method == "GET" && segments == 4)))
            }
        }
    }

    /// The members that paging, cursors and identity depend on.
    fn keys(self) -> &'static [&'static str] {
        match self {
            System::Salesforce => &[
                "Id",
                "SystemModstamp",
                "IsDeleted",
                "MasterRecordId",
                "done",
                "nextRecordsUrl",
                "records",
                "totalSize",
            ],
            System::Hubspot => &[
                "id",
                "results",
                "paging",
                "next",
                "after",
                "properties",
                "hs_lastmodifieddate",
                "lastmodifieddate",
                "hs_object_id",
                "updatedAt",
                "archived",
            ],
        }
    }

    fn time_keys(self) -> &'static [&'static str] {
        match self {
            System::Salesforce => &["SystemModstamp"],
            System::Hubspot => &["hs_lastmodifieddate", "lastmodifieddate", "updatedAt"],
        }
    }

    /// The record ids a page holds.
    fn page_ids(self, page: &Value) -> BTreeSet<String> {
        let (list, id) = match self {
            System::Salesforce => ("records", "Id"),
            System::Hubspot => ("results", "id"),
        };
        page[list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|record| record[id].as_str().map(str::to_string))
            .collect()
    }
}

/// Which answer to mutate.
#[derive(Debug, Clone, Copy)]
struct Plan {
    system: System,
    nth: u64,
    seed: u64,
}

/// What the proxy did to the chosen answer.
#[derive(Debug, Clone)]
struct Mutated {
    request: String,
    what: String,
    /// The ids of the records of the page as the CRM sent it.
    ids: BTreeSet<String>,
}

#[derive(Default)]
struct Shared {
    plan: Option<Plan>,
    /// Pages seen per CRM since the last reset.
    pages: BTreeMap<System, u64>,
    mutated: Option<Mutated>,
}

struct Upstream {
    base: String,
    system: System,
    shared: Arc<Mutex<Shared>>,
    client: reqwest::Client,
}

/// The mutating proxy: one loopback listener per CRM sandbox, on a runtime of its own.
struct Proxy {
    shared: Arc<Mutex<Shared>>,
    urls: BTreeMap<System, String>,
    _runtime: tokio::runtime::Runtime,
}

impl Proxy {
    fn start(world: &World) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mut urls = BTreeMap::new();
        for (system, base) in [
            (
                System::Salesforce,
                &world.ready["salesforce"]["instance_url"],
            ),
            (System::Hubspot, &world.ready["hubspot"]["base_url"]),
        ] {
            let upstream = Arc::new(Upstream {
                base: base.as_str().unwrap().trim_end_matches('/').to_string(),
                system,
                shared: shared.clone(),
                client: reqwest::Client::new(),
            });
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .unwrap();
            urls.insert(system, format!("http://{}", listener.local_addr().unwrap()));
            let app = axum::Router::new().fallback(forward).with_state(upstream);
            runtime.spawn(async move { axum::serve(listener, app).await });
        }
        Proxy {
            shared,
            urls,
            _runtime: runtime,
        }
    }

    /// Mutates the `plan`'s answer from now on (or nothing, with `None`); page counts restart.
    fn arm(&self, plan: Option<Plan>) {
        let mut shared = self.shared.lock().unwrap();
        shared.plan = plan;
        shared.pages.clear();
        shared.mutated = None;
    }

    /// Stops mutating; returns what was mutated and the pages seen per CRM.
    fn disarm(&self) -> (Option<Mutated>, BTreeMap<System, u64>) {
        let mut shared = self.shared.lock().unwrap();
        shared.plan = None;
        (shared.mutated.take(), std::mem::take(&mut shared.pages))
    }
}

async fn forward(State(upstream): State<Arc<Upstream>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return status_only(StatusCode::BAD_REQUEST);
    };
    let path = parts.uri.path().to_string();
    let target = parts
        .uri
        .path_and_query()
        .map_or(path.clone(), |p| p.as_str().to_string());
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap();
    let mut outgoing = upstream
        .client
        .request(method, format!("{}{target}", upstream.base))
        .body(body.to_vec());
    for (name, value) in &parts.headers {
        if !["host", "content-length", "connection"].contains(&name.as_str()) {
            outgoing = outgoing.header(name.as_str(), value.as_bytes());
        }
    }
    let Ok(answer) = outgoing.send().await else {
        return status_only(StatusCode::BAD_GATEWAY);
    };
    let status = answer.status().as_u16();
    let headers: Vec<(String, Vec<u8>)> = answer
        .headers()
        .iter()
        .filter(|(name, _)| {
            !["content-length", "transfer-encoding", "connection"].contains(&name.as_str())
        })
        .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
        .collect();
    let Ok(mut bytes) = answer.bytes().await.map(|b| b.to_vec()) else {
        return status_only(StatusCode::BAD_GATEWAY);
    };
    if status == 200 && upstream.system.is_page(parts.method.as_str(), &path) {
        let mut shared = upstream.shared.lock().unwrap();
        let seen = {
            let count = shared.pages.entry(upstream.system).or_default();
            *count += 1;
            *count
        };
        if let Some(plan) = shared.plan
            && plan.system == upstream.system
            && plan.nth == seen
        {
            let original: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let what = mutate_page(&mut Rng::new(plan.seed), plan.system, &mut bytes);
            shared.mutated = Some(Mutated {
                request: format!("{} {path}", parts.method),
                what,
                ids: plan.system.page_ids(&original),
            });
        }
    }
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(name, value);
    }
    response.body(Body::from(bytes)).unwrap()
}

fn status_only(status: StatusCode) -> Response {
    Response::builder()
        .status(status)
        .body(Body::empty())
        .unwrap()
}

/// One seeded mutation of a page body; returns its name.
fn mutate_page(rng: &mut Rng, system: System, bytes: &mut Vec<u8>) -> String {
    let Ok(mut value) = serde_json::from_slice::<Value>(bytes) else {
        return mutate_bytes(rng, bytes, b",\":{}[]");
    };
    let what = match rng.below(4) {
        0 => return mutate_bytes(rng, bytes, b",\":{}[]"),
        1 => mutate_json(rng, &mut value),
        2 => mutate_json_key(rng, &mut value, system.keys())
            .unwrap_or_else(|| mutate_json(rng, &mut value)),
        _ => shift_time(rng, &mut value, system.time_keys())
            .or_else(|| mutate_json_key(rng, &mut value, system.keys()))
            .unwrap_or_else(|| mutate_json(rng, &mut value)),
    };
    *bytes = value.to_string().into_bytes();
    what
}

/// Every CRM record of a ledger: (system, stream, id) → (deleted, merged into, body).
type Snapshot = BTreeMap<(String, String, String), (bool, Option<String>, String)>;

fn snapshot(ledger: &Path) -> Snapshot {
    let connection =
        rusqlite::Connection::open_with_flags(ledger, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut statement = connection
        .prepare("SELECT system, stream, external_id, deleted, merged_into, body FROM crm_record")
        .unwrap();
    statement
        .query_map([], |r| {
            Ok((
                (r.get(0)?, r.get(1)?, r.get(2)?),
                (r.get::<_, i64>(3)? != 0, r.get(4)?, r.get(5)?),
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Each stream's stored cursor time.
fn cursors(ledger: &Path) -> Vec<(String, String, String)> {
    let connection =
        rusqlite::Connection::open_with_flags(ledger, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut statement = connection
        .prepare("SELECT system, stream, modified_at FROM sync_cursor")
        .unwrap();
    statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A copy of `from` whose record cursors are moved back to the middle record of each stream: the
/// next pull is incremental and reads the later half again.
fn rewound_copy(from: &Path, to: &Path) {
    let _ = std::fs::remove_file(to);
    let source = rusqlite::Connection::open(from).unwrap();
    source
        .execute("VACUUM INTO ?1", [to.display().to_string()])
        .unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).unwrap();
    let copy = rusqlite::Connection::open(to).unwrap();
    let streams: Vec<(String, String)> = copy
        .prepare("SELECT system, stream FROM sync_cursor WHERE stream <> 'owners'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (system, stream) in streams {
        let middle: Option<(String, String)> = copy
            .query_row(
                "SELECT modified_at, external_id FROM crm_record WHERE system = ?1 AND stream = ?2
                 ORDER BY modified_at, length(external_id), external_id
                 LIMIT 1 OFFSET (SELECT count(*) / 2 FROM crm_record WHERE system = ?1 AND stream = ?2)",
                [&system, &stream],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok();
        if let Some((at, id)) = middle {
            copy.execute(
                "UPDATE sync_cursor SET modified_at = ?3, external_id = ?4 WHERE system = ?1 AND stream = ?2",
                [&system, &stream, &at, &id],
            )
            .unwrap();
        }
    }
}

/// The config of one CRM alone, pointed at the proxy, with small pages so that streams span
/// several; `{ledger}` stands for the ledger path.
fn crm_config(world: &World, proxy: &Proxy, system: System) -> String {
    let text = std::fs::read_to_string(&world.config).unwrap();
    let salesforce_at = text.find("[connectors.salesforce]").unwrap();
    let hubspot_at = text.find("[connectors.hubspot]").unwrap();
    let rules_at = text.find("\n[rules.").unwrap();
    assert!(salesforce_at < hubspot_at && hubspot_at < rules_at);
    let (crm, url_key, base) = match system {
        System::Salesforce => (
            text[salesforce_at..hubspot_at].replacen(
                "settle_lag_seconds = 2",
                "settle_lag_seconds = 2\npage_size = 200",
                1,
            ),
            "salesforce",
            world.ready["salesforce"]["instance_url"].as_str().unwrap(),
        ),
        System::Hubspot => (
            text[hubspot_at..rules_at].replacen(
                "settle_lag_seconds = 2",
                "settle_lag_seconds = 2\nsearch_page_size = 40",
                1,
            ),
            "hubspot",
            world.ready["hubspot"]["base_url"].as_str().unwrap(),
        ),
    };
    assert!(!url_key.is_empty());
    let crm = crm.replace(base.trim_end_matches('/'), &proxy.urls[&system]);
    let ledger = world.ledger().display().to_string();
    format!("{}{crm}{}", &text[..salesforce_at], &text[rules_at..]).replace(&ledger, "{ledger}")
}

/// Runs `refbridge sync --once --json ARGS` on `config` with the ledger at `ledger`.
fn sync(dir: &Path, config: &str, ledger: &Path, extra: &[&str]) -> Output {
    let path = dir.join("case.toml");
    std::fs::write(
        &path,
        config.replace("{ledger}", &ledger.display().to_string()),
    )
    .unwrap();
    let mut args = vec!["sync", "--once", "--json"];
    args.extend(extra);
    run_binary(&args, Some(&path))
}

/// The run did not crash: exit 0 or 1, no panic, a JSON report; returns the failed streams as
/// (system, stream, message).
fn failed_streams(output: &Output) -> Vec<(String, String, String)> {
    assert!(
        output.status == 0 || output.status == 1,
        "sync crashed (status {}): {}",
        output.status,
        output.stderr
    );
    assert!(
        !output.stderr.contains("panicked"),
        "sync panicked: {}",
        output.stderr
    );
    output.json()["pulled"]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["outcome"] == "failed")
        .map(|s| {
            (
                s["system"].as_str().unwrap_or_default().to_string(),
                s["stream"].as_str().unwrap_or_default().to_string(),
                s["message"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn assert_clean(output: &Output, what: &str) {
    assert_eq!(
        output.status, 0,
        "{what} failed: {}\n{}",
        output.stdout, output.stderr
    );
    assert!(
        failed_streams(output).is_empty(),
        "{what}: {}",
        output.stdout
    );
}

/// Differences between a ledger and the reference: missing and extra live records, and records
/// stored differently (except those in `may_differ`).
fn differences(reference: &Snapshot, got: &Snapshot, may_differ: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, value) in reference {
        match got.get(key) {
            None => problems.push(format!("lost {key:?}")),
            Some(stored) if stored != value && !may_differ.contains(&key.2) => {
                problems.push(format!("{key:?} stored as {stored:?}, reference {value:?}"))
            }
            Some(_) => {}
        }
    }
    for (key, (deleted, ..)) in got {
        if !reference.contains_key(key) && !deleted {
            problems.push(format!("invented {key:?}"));
        }
    }
    problems
}

#[derive(Default, Debug)]
struct Tally {
    cases: u64,
    mutated: u64,
    failed_named: u64,
    accepted: u64,
    repaired_by_reconcile: u64,
}

#[test]
fn mutated_crm_pages_never_crash_name_the_failure_and_lose_nothing_after_a_clean_pull() {
    let world = World::start(&["--scale", "small"]);
    world.disable_rules();
    let proxy = Proxy::start(&world);
    let dir = tempfile::tempdir().unwrap();
    let systems = [System::Salesforce, System::Hubspot];
    let configs: BTreeMap<System, String> = systems
        .iter()
        .map(|system| (*system, crm_config(&world, &proxy, *system)))
        .collect();

    // Clean references through the proxy: a full pull and an incremental pull per CRM, with the
    // number of pages each makes.
    let mut references = BTreeMap::new();
    let mut rewound = BTreeMap::new();
    let mut page_counts = BTreeMap::new();
    for system in systems {
        let full = dir.path().join(format!("{}-reference.db", system.name()));
        proxy.arm(None);
        assert_clean(
            &sync(dir.path(), &configs[&system], &full, &[]),
            "reference pull",
        );
        let (_, pages) = proxy.disarm();
        page_counts.insert((system, false), pages[&system]);
        let reference = snapshot(&full);
        assert!(reference.len() > 500, "{} records", reference.len());
        let base = dir.path().join(format!("{}-rewound.db", system.name()));
        rewound_copy(&full, &base);
        let probe = dir.path().join("probe.db");
        rewound_copy(&full, &probe);
        proxy.arm(None);
        assert_clean(
            &sync(dir.path(), &configs[&system], &probe, &[]),
            "incremental reference",
        );
        let (_, pages) = proxy.disarm();
        page_counts.insert((system, true), pages[&system]);
        assert_eq!(
            differences(&reference, &snapshot(&probe), &BTreeSet::new()),
            Vec::<String>::new()
        );
        references.insert(system, reference);
        rewound.insert(system, base);
    }

    let mut tallies: BTreeMap<System, Tally> = BTreeMap::new();
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for seed in seeds(5_000, "RELIABILITY_CRM_CASES", 8) {
        for system in systems {
            let mut rng = Rng::new(seed ^ ((system as u64 + 1) << 32));
            let incremental = rng.below(2) == 0;
            let nth = 1 + rng.below(page_counts[&(system, incremental)] as usize) as u64;
            let ledger = dir.path().join("case.db");
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", ledger.display()));
            }
            if incremental {
                rewound_copy(&rewound[&system], &ledger);
            }
            let mut guard = SeedGuard(
                system.name(),
                seed,
                format!(
                    "{} pull, page {nth}",
                    if incremental { "incremental" } else { "full" }
                ),
            );
            proxy.arm(Some(Plan {
                system,
                nth,
                seed: rng.next(),
            }));
            let first = sync(dir.path(), &configs[&system], &ledger, &[]);
            let (mutated, _) = proxy.disarm();
            let mutated = mutated.expect("the chosen page was served");
            guard.2 = format!("{}: {} of {}", guard.2, mutated.what, mutated.request);
            let tally = tallies.entry(system).or_default();
            tally.cases += 1;
            tally.mutated += 1;
            *kinds
                .entry(mutated.what.split(" by ").next().unwrap().to_string())
                .or_default() += 1;

            let failed = failed_streams(&first);
            assert_eq!(
                first.status,
                i32::from(!failed.is_empty()),
                "exit status and failed streams disagree: {}",
                first.stdout
            );
            for (failed_system, stream, message) in &failed {
                assert_eq!(failed_system, system.name(), "{message}");
                assert!(
                    [
                        "owners",
                        "partners",
                        "contacts",
                        "referrals",
                        "activities",
                        "tasks"
                    ]
                    .contains(&stream.as_str()),
                    "{stream}"
                );
                let named = ["GET /", "POST /"].iter().any(|m| message.contains(m));
                let (_, detail) = message.split_once(": ").unwrap_or_default();
                assert!(
                    named && detail.len() > 5,
                    "the failure does not name the request and what was wrong: {message}"
                );
                assert!(
                    first
                        .stderr
                        .lines()
                        .any(|line| line.contains("not pulled to the end")
                            && line.contains(&format!("system=\"{failed_system}\""))
                            && line.contains(&format!("stream=\"{stream}\""))),
                    "the log does not name the system and stream: {}",
                    first.stderr
                );
            }

            // The proxy is clean again: the next pull completes what the mutated one left.
            assert_clean(
                &sync(dir.path(), &configs[&system], &ledger, &[]),
                "clean pull",
            );
            let reference = &references[&system];
            let mut problems = differences(reference, &snapshot(&ledger), &BTreeSet::new());
            if failed.is_empty() {
                tally.accepted += 1;
                if !problems.is_empty() {
                    // Accepted as a real answer: the reconciliation pass and the pull after it
                    // restore every record; only the mutated page's records may keep new values.
                    assert_clean(
                        &sync(dir.path(), &configs[&system], &ledger, &["--reconcile"]),
                        "reconciliation",
                    );
                    assert_clean(
                        &sync(dir.path(), &configs[&system], &ledger, &[]),
                        "pull after reconciliation",
                    );
                    problems = differences(reference, &snapshot(&ledger), &mutated.ids);
                    tally.repaired_by_reconcile += 1;
                }
            } else {
                tally.failed_named += 1;
            }
            assert!(
                problems.is_empty(),
                "after a clean pull the ledger differs from the reference:\n{}",
                problems.join("\n")
            );
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            for (cursor_system, stream, at) in cursors(&ledger) {
                assert!(
                    at <= now,
                    "{cursor_system} {stream}: the cursor {at} is in the future"
                );
            }
            drop(guard);
        }
    }
    for (system, tally) in &tallies {
        crate::figure(&format!("crm_pages: {} {tally:?}", system.name()));
    }
    crate::figure(&format!("crm_pages: mutations {kinds:?}"));
}
