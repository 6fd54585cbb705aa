//! Benchmark: CRM full pull, incremental pull and push against both sandboxes on a `large` world.
//!
//! Run: `cargo bench --bench crm_pull` (options after `--`: `--scale small|medium|large`, default
//! large; `--intents N`, default 10,000; `--latency-ms N`, default 50, 0 to skip the full pulls at
//! that latency). Prints `name value unit` lines.
//!
//! The sandboxes run in their own process: the release `refbridge` binary that cargo builds for
//! this bench (`CARGO_BIN_EXE_refbridge`, `target/release/refbridge`) is started as `refbridge
//! sandbox --seed 7 --scale large --as-of 2026-11-01 --unthrottled --write-config …`, and its
//! ready line gives the URLs and tokens. `--unthrottled` lifts HubSpot's ten-secondly and search
//! limits: with them, a 2,000-call full load takes ≥ 105 s on either side and the ratio would
//! measure the pacing, not refbridge.
//!
//! refbridge's side runs in a child process (this binary re-executed) so that its peak resident
//! memory (VmHWM) is its own: `refbridge::cycle::pull_all` over `CrmClient`s into a fresh ledger
//! (every stream, every page stored with its cursor, as `sync --once` and the pull jobs do), and
//! `CrmClient::push` (`sync::push_outbox`) for the push of intents queued in the ledger's outbox.
//!
//! The bare pager is plain reqwest on the same loopback sandbox: it takes the calls refbridge made
//! from the sandbox's request journal (`/__admin/journal`), sends each first page (same SOQL,
//! same `batchSize`, same list parameters) and follows the next links itself
//! (`nextRecordsUrl`, `paging.next.after`), throwing the bodies away. The two journals are
//! compared call by call (Salesforce's server-side locators normalized) and the difference is
//! printed; then the minimum number of calls the APIs allow, per stream, from the record counts
//! (Salesforce `totalSize` of each query at 2,000 a page; HubSpot list pages of 100, counts from a
//! search's `total`).
//!
//! The full pulls are then repeated with the sandboxes delaying every call by `--latency-ms`
//! (their `latency_ms` fault, set at `/__admin/faults`), on both sides: with zero latency the
//! ratio shows refbridge's own CPU (the worst case), with latency it shows the network-bound case
//! a real CRM gives, where fetching the next page while the last one is stored hides the store.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use refbridge::config::Config;
use refbridge::ledger::{Ledger, crm};
use refbridge::stop::StopSignal;
use refbridge::sync::CrmClient;
use refbridge_model::crm::{CrmSystem, TaskIntent, TaskKind, TaskPriority};
use serde_json::{Value, json};

const CHILD_ENV: &str = "REFBRIDGE_BENCH_CRM_CHILD";
/// Salesforce's largest query page; HubSpot's largest list page.
const SALESFORCE_PAGE: u64 = 2_000;
const HUBSPOT_LIST_PAGE: u64 = 100;
const HUBSPOT_OWNERS_PAGE: u64 = 500;

fn main() {
    if let Ok(mode) = std::env::var(CHILD_ENV) {
        child(&mode);
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let scale = value("--scale").unwrap_or_else(|| "large".to_string());
    let intents: usize = value("--intents").map_or(10_000, |n| n.parse().expect("--intents N"));
    let latency_ms: u64 = value("--latency-ms").map_or(50, |n| n.parse().expect("--latency-ms N"));
    let directory = tempfile::tempdir().expect("temporary directory");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut sandbox = Sandbox::start(directory.path(), &scale);
    runtime.block_on(run(&sandbox, directory.path(), intents, latency_ms));
    sandbox.stop();
}

/// The `refbridge sandbox` process and what its ready line says.
struct Sandbox {
    process: Child,
    config: PathBuf,
    salesforce: Endpoint,
    hubspot: Endpoint,
}

#[derive(Clone)]
struct Endpoint {
    system: CrmSystem,
    base: String,
    token: String,
}

impl Sandbox {
    fn start(directory: &Path, scale: &str) -> Sandbox {
        let config = directory.join("rb.toml");
        let started = Instant::now();
        let mut process = Command::new(env!("CARGO_BIN_EXE_refbridge"))
            .args([
                "sandbox",
                "--seed",
                "7",
                "--scale",
                scale,
                "--as-of",
                "2026-11-01",
            ])
            .arg("--unthrottled")
            .arg("--write-config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start refbridge sandbox");
        let mut line = String::new();
        BufReader::new(process.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ready line");
        let ready: Value = serde_json::from_str(&line).expect("the ready line is JSON");
        println!(
            "sandbox_start_seconds {:.3} s",
            started.elapsed().as_secs_f64()
        );
        let text = |value: &Value| value.as_str().expect("ready line field").to_string();
        Sandbox {
            process,
            config,
            salesforce: Endpoint {
                system: CrmSystem::Salesforce,
                base: text(&ready["salesforce"]["instance_url"]),
                token: text(&ready["salesforce"]["access_token"]),
            },
            hubspot: Endpoint {
                system: CrmSystem::Hubspot,
                base: text(&ready["hubspot"]["base_url"]),
                token: text(&ready["hubspot"]["private_app_token"]),
            },
        }
    }

    fn stop(&mut self) {
        // SIGTERM through kill(1): the sandbox stops its servers and exits.
        let _ = Command::new("kill")
            .arg(self.process.id().to_string())
            .status();
        let _ = self.process.wait();
    }
}

/// One journaled call.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Call {
    method: String,
    target: String,
    query_options: Option<String>,
}

async fn journal(
    http: &reqwest::Client,
    endpoint: &Endpoint,
    method: reqwest::Method,
) -> Vec<Call> {
    let answer: Value = http
        .request(method, format!("{}/__admin/journal", endpoint.base))
        .send()
        .await
        .expect("journal")
        .json()
        .await
        .expect("journal JSON");
    assert_eq!(answer["dropped"], 0, "the journal dropped calls");
    answer["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|entry| Call {
            method: entry["method"].as_str().unwrap_or_default().to_string(),
            target: entry["target"].as_str().unwrap_or_default().to_string(),
            query_options: entry["query_options"].as_str().map(str::to_string),
        })
        .collect()
}

async fn start_journal(http: &reqwest::Client, endpoint: &Endpoint) {
    journal(http, endpoint, reqwest::Method::POST).await;
}

async fn take_journal(http: &reqwest::Client, endpoint: &Endpoint) -> Vec<Call> {
    let calls = journal(http, endpoint, reqwest::Method::GET).await;
    journal(http, endpoint, reqwest::Method::DELETE).await;
    calls
}

/// What a child reported.
#[derive(Debug)]
struct ChildReport {
    seconds: f64,
    cpu_seconds: f64,
    peak_kib: u64,
    api_calls: u64,
    /// (system, stream) → (api calls, records read, outcome).
    streams: BTreeMap<(String, String), (u64, u64, String)>,
    push: Vec<Value>,
}

fn run_child(mode: &str, config: &Path, ledger: &Path, systems: &str) -> ChildReport {
    let output = Command::new(std::env::current_exe().expect("own path"))
        .arg(config)
        .arg(ledger)
        .arg(systems)
        .env(CHILD_ENV, mode)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::inherit())
        .output()
        .expect("run the child");
    assert!(output.status.success(), "the {mode} child failed");
    let line = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(line.trim()).expect("child JSON");
    let mut streams = BTreeMap::new();
    for stream in report["streams"].as_array().into_iter().flatten() {
        streams.insert(
            (
                stream["system"].as_str().unwrap_or_default().to_string(),
                stream["stream"].as_str().unwrap_or_default().to_string(),
            ),
            (
                stream["api_calls"].as_u64().unwrap_or(0),
                stream["read"].as_u64().unwrap_or(0),
                stream["outcome"].as_str().unwrap_or_default().to_string(),
            ),
        );
    }
    ChildReport {
        seconds: report["seconds"].as_f64().expect("seconds"),
        cpu_seconds: report["cpu_seconds"].as_f64().expect("cpu_seconds"),
        peak_kib: report["peak_kib"].as_u64().expect("peak"),
        api_calls: report["api_calls"].as_u64().expect("api_calls"),
        streams,
        push: report["push"].as_array().cloned().unwrap_or_default(),
    }
}

/// The child: a pull (`pull_all`) or a push (`CrmClient::push`) of the named CRMs into/from the
/// given ledger; prints one JSON line.
fn child(mode: &str) {
    let args: Vec<String> = std::env::args().collect();
    let mut loaded = Config::load(Path::new(&args[1])).expect("config");
    loaded.config.ledger.path = PathBuf::from(&args[2]);
    let systems: Vec<&str> = args[3].split(',').collect();
    let clients: Vec<CrmClient> = CrmClient::all(&loaded)
        .expect("clients")
        .into_iter()
        .filter(|client| systems.contains(&client.system().as_str()))
        .collect();
    let mut ledger =
        Ledger::open(&loaded.config.ledger.path, Duration::from_secs(10)).expect("ledger");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stop = StopSignal::new();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let (streams, push) = runtime.block_on(async {
        if mode == "pull" {
            let report =
                refbridge::cycle::pull_all(&mut ledger, &clients, chrono::Utc::now(), false, &stop)
                    .await
                    .expect("pull");
            let streams: Vec<Value> = report
                .streams
                .iter()
                .map(|s| {
                    json!({"system": s.system, "stream": s.stream, "outcome": s.outcome,
                        "api_calls": s.counts.api_calls, "read": s.counts.read})
                })
                .collect();
            (streams, Vec::new())
        } else {
            let reports = refbridge::cycle::push_all(&mut ledger, &clients, &stop)
                .await
                .expect("push");
            let push = reports
                .iter()
                .map(|r| serde_json::to_value(r).expect("push report"))
                .collect();
            (Vec::new(), push)
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    let api_calls: u64 = clients.iter().map(CrmClient::api_calls).sum();
    println!(
        "{}",
        json!({"seconds": seconds, "cpu_seconds": cpu_seconds() - cpu_before,
            "peak_kib": peak_kib(), "api_calls": api_calls,
            "streams": streams, "push": push})
    );
}

/// User + system CPU seconds of this process so far (`/proc/self/stat`, in USER_HZ = 100 ticks).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn peak_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// Whether a journaled call continues a paged answer (the bare pager follows those itself).
fn is_continuation(system: CrmSystem, call: &Call) -> bool {
    let path = call.target.split('?').next().unwrap_or_default();
    match system {
        CrmSystem::Salesforce => {
            let mut segments = path.split('/').filter(|s| !s.is_empty()).skip(3);
            matches!(segments.next(), Some("query" | "queryAll")) && segments.next().is_some()
        }
        CrmSystem::Hubspot => url(&format!("http://x{}", call.target))
            .query_pairs()
            .any(|(name, _)| name == "after"),
    }
}

fn url(text: &str) -> reqwest::Url {
    reqwest::Url::parse(text).expect("URL")
}

/// The JSON string value after `key` (`"key":"value"`) searched from `from`, without parsing.
fn string_after(body: &[u8], key: &str, from: usize) -> Option<String> {
    let needle = format!("\"{key}\":\"");
    let start = find(&body[from..], needle.as_bytes())? + from + needle.len();
    let end = start + body[start..].iter().position(|&b| b == b'"')?;
    Some(String::from_utf8_lossy(&body[start..end]).into_owned())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .rposition(|window| window == needle)
}

/// What the bare pager did.
struct Bare {
    seconds: f64,
    calls: u64,
    /// Salesforce: each query's decoded SOQL and `totalSize`.
    totals: Vec<(String, u64)>,
}

/// Replays the first page of every paged read refbridge made and follows the next links.
async fn bare_pull(http: &reqwest::Client, endpoint: &Endpoint, recorded: &[Call]) -> Bare {
    let started = Instant::now();
    let mut bare = Bare {
        seconds: 0.0,
        calls: 0,
        totals: Vec::new(),
    };
    for call in recorded {
        if is_continuation(endpoint.system, call) {
            continue;
        }
        assert_eq!(
            call.method, "GET",
            "the full pull made a {} call the bare pager does not replay",
            call.method
        );
        let first = format!("{}{}", endpoint.base, call.target);
        let mut next = Some(first.clone());
        let mut page = 0;
        while let Some(target) = next.take() {
            let mut request = http.get(&target).bearer_auth(&endpoint.token);
            if let Some(options) = &call.query_options {
                request = request.header("Sforce-Query-Options", options);
            }
            let response = request.send().await.expect("bare request");
            assert!(
                response.status().is_success(),
                "bare pager: HTTP {}",
                response.status()
            );
            let body = response.bytes().await.expect("bare body");
            bare.calls += 1;
            match endpoint.system {
                CrmSystem::Salesforce => {
                    if page == 0 {
                        let soql = url(&first)
                            .query_pairs()
                            .find(|(name, _)| name == "q")
                            .map(|(_, q)| q.into_owned())
                            .unwrap_or_default();
                        let at = find(&body, b"\"totalSize\":").expect("totalSize") + 12;
                        let digits: String = body[at..]
                            .iter()
                            .take_while(|b| b.is_ascii_digit())
                            .map(|&b| b as char)
                            .collect();
                        bare.totals.push((soql, digits.parse().expect("totalSize")));
                    }
                    next = string_after(&body, "nextRecordsUrl", 0)
                        .map(|path| format!("{}{path}", endpoint.base));
                }
                CrmSystem::Hubspot => {
                    next = rfind(&body, b"\"paging\":")
                        .and_then(|at| string_after(&body, "after", at))
                        .map(|after| {
                            let mut next = url(&first);
                            next.query_pairs_mut().append_pair("after", &after);
                            next.to_string()
                        });
                }
            }
            page += 1;
        }
    }
    bare.seconds = started.elapsed().as_secs_f64();
    bare
}

/// Calls one journal has and the other has not (Salesforce locators normalized).
fn unmatched(left: &[Call], right: &[Call]) -> usize {
    let normalize = |calls: &[Call]| -> Vec<Call> {
        let mut calls: Vec<Call> = calls
            .iter()
            .map(|call| {
                let mut call = call.clone();
                if !call.target.contains('?')
                    && let Some((path, offset)) = call.target.rsplit_once('-')
                    && let Some((prefix, _locator)) = path.rsplit_once('/')
                    && (prefix.ends_with("/query") || prefix.ends_with("/queryAll"))
                {
                    call.target = format!("{prefix}/{{locator}}-{offset}");
                }
                call
            })
            .collect();
        calls.sort();
        calls
    };
    let (left, right) = (normalize(left), normalize(right));
    let (mut i, mut j, mut differing) = (0, 0, 0);
    while i < left.len() || j < right.len() {
        match (left.get(i), right.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                differing += 1;
                i += 1;
            }
            (Some(_), None) => {
                differing += 1;
                i += 1;
            }
            _ => {
                differing += 1;
                j += 1;
            }
        }
    }
    differing
}

fn pages(records: u64, page: u64) -> u64 {
    records.div_ceil(page).max(1)
}

/// The stream a Salesforce pull query reads for (by object and the key condition).
fn salesforce_stream(soql: &str) -> &'static str {
    let object = soql
        .split(" FROM ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default();
    match object {
        "Account" => "partners",
        "Contact" => "contacts",
        "Opportunity" => "referrals",
        "User" => "owners",
        "Event" => "activities",
        "Task" if soql.contains("IsClosed = true") => "activities",
        "Task" => "tasks",
        _ => "other",
    }
}

/// Live objects of a HubSpot type, from a search's `total`.
async fn hubspot_total(http: &reqwest::Client, endpoint: &Endpoint, object_type: &str) -> u64 {
    let answer: Value = http
        .post(format!(
            "{}/crm/v3/objects/{object_type}/search",
            endpoint.base
        ))
        .bearer_auth(&endpoint.token)
        .json(&json!({"limit": 1, "filterGroups": []}))
        .send()
        .await
        .expect("search")
        .json()
        .await
        .expect("search JSON");
    answer["total"].as_u64().expect("total")
}

/// Owners a HubSpot list returns (active or deactivated).
async fn hubspot_owners(http: &reqwest::Client, endpoint: &Endpoint, archived: bool) -> u64 {
    let mut count = 0;
    let mut after: Option<String> = None;
    loop {
        let mut request = http
            .get(format!("{}/crm/v3/owners", endpoint.base))
            .bearer_auth(&endpoint.token)
            .query(&[
                ("limit", "500"),
                ("archived", if archived { "true" } else { "false" }),
            ]);
        if let Some(after) = &after {
            request = request.query(&[("after", after)]);
        }
        let page: Value = request
            .send()
            .await
            .expect("owners")
            .json()
            .await
            .expect("JSON");
        count += page["results"].as_array().map_or(0, Vec::len) as u64;
        match page["paging"]["next"]["after"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => return count,
        }
    }
}

fn ratio(refbridge: f64, bare: f64) -> f64 {
    refbridge / bare.max(1e-9)
}

/// One CRM's full pull by refbridge (a child, into a fresh `ledger`) and then by the bare pager
/// with the same calls; returns both and the two journals.
async fn full_pull_side_by_side(
    http: &reqwest::Client,
    sandbox: &Sandbox,
    endpoint: &Endpoint,
    ledger: &Path,
) -> (ChildReport, Bare, Vec<Call>, Vec<Call>) {
    start_journal(http, endpoint).await;
    let report = run_child("pull", &sandbox.config, ledger, endpoint.system.as_str());
    let recorded = take_journal(http, endpoint).await;
    start_journal(http, endpoint).await;
    let bare = bare_pull(http, endpoint, &recorded).await;
    let replayed = take_journal(http, endpoint).await;
    (report, bare, recorded, replayed)
}

/// Replaces the sandbox's fault plan (`/__admin/faults`).
async fn set_faults(http: &reqwest::Client, endpoint: &Endpoint, plan: &str) {
    let response = http
        .post(format!("{}/__admin/faults", endpoint.base))
        .body(plan.to_string())
        .send()
        .await
        .expect("fault plan");
    assert!(
        response.status().is_success(),
        "the sandbox refused the fault plan {plan}"
    );
}

async fn run(sandbox: &Sandbox, directory: &Path, intents: usize, latency_ms: u64) {
    let http = reqwest::Client::new();
    // The task key property, as `check-config --connect --create-task-key` makes it at install.
    {
        let loaded = Config::load(&sandbox.config).expect("config");
        if let Some(CrmClient::Hubspot(client)) =
            CrmClient::configured(&loaded, CrmSystem::Hubspot).expect("client")
        {
            client
                .create_task_key_property()
                .await
                .expect("create the task key property");
        }
    }

    // 1. Full pull per CRM: refbridge in a child, then the bare pager with the same calls.
    let mut minimum_inputs: BTreeMap<&str, Vec<(String, u64)>> = BTreeMap::new();
    let mut full_reports = BTreeMap::new();
    let mut bare_seconds = 0.0;
    for endpoint in [&sandbox.salesforce, &sandbox.hubspot] {
        let name = endpoint.system.as_str();
        let (report, bare, recorded, replayed) = full_pull_side_by_side(
            &http,
            sandbox,
            endpoint,
            &directory.join(format!("full-{name}.db")),
        )
        .await;
        println!("{name}_full_pull_seconds {:.3} s", report.seconds);
        println!("{name}_full_pull_cpu_seconds {:.3} s", report.cpu_seconds);
        println!("{name}_bare_pager_seconds {:.3} s", bare.seconds);
        println!(
            "{name}_full_pull_ratio_vs_bare {:.2} x",
            ratio(report.seconds, bare.seconds)
        );
        println!("{name}_full_pull_api_calls {} calls", report.api_calls);
        println!(
            "{name}_full_pull_calls_sandbox_saw {} calls",
            recorded.len()
        );
        println!("{name}_bare_pager_calls {} calls", bare.calls);
        println!(
            "{name}_bare_pager_calls_sandbox_saw {} calls",
            replayed.len()
        );
        println!(
            "{name}_calls_not_in_both {} calls",
            unmatched(&recorded, &replayed)
        );
        println!(
            "{name}_full_pull_peak_rss {:.1} MiB",
            report.peak_kib as f64 / 1024.0
        );
        for ((_, stream), (_, read, outcome)) in &report.streams {
            println!("{name}_{stream}_records {read} records");
            assert_eq!(outcome, "ok", "{name} {stream} was not pulled to the end");
        }
        bare_seconds += bare.seconds;
        minimum_inputs.insert(name, bare.totals);
        full_reports.insert(name, report);
    }

    // 1b. The same full pulls with every call delayed by `latency_ms` in the sandbox (both sides
    // hit the same sandbox, so both wait): the network-bound case next to the CPU-bound one.
    if latency_ms > 0 {
        for endpoint in [&sandbox.salesforce, &sandbox.hubspot] {
            set_faults(&http, endpoint, &format!("latency_ms={latency_ms}")).await;
        }
        for endpoint in [&sandbox.salesforce, &sandbox.hubspot] {
            let name = endpoint.system.as_str();
            let (report, bare, recorded, replayed) = full_pull_side_by_side(
                &http,
                sandbox,
                endpoint,
                &directory.join(format!("latency-{name}.db")),
            )
            .await;
            println!("{name}_full_pull_latency_per_call {latency_ms} ms");
            println!(
                "{name}_full_pull_seconds_at_latency {:.3} s",
                report.seconds
            );
            println!(
                "{name}_full_pull_cpu_seconds_at_latency {:.3} s",
                report.cpu_seconds
            );
            println!("{name}_bare_pager_seconds_at_latency {:.3} s", bare.seconds);
            println!(
                "{name}_full_pull_ratio_vs_bare_at_latency {:.2} x",
                ratio(report.seconds, bare.seconds)
            );
            println!(
                "{name}_full_pull_api_calls_at_latency {} calls",
                report.api_calls
            );
            println!(
                "{name}_calls_not_in_both_at_latency {} calls",
                unmatched(&recorded, &replayed)
            );
            for ((_, stream), (_, _, outcome)) in &report.streams {
                assert_eq!(outcome, "ok", "{name} {stream} was not pulled to the end");
            }
        }
        for endpoint in [&sandbox.salesforce, &sandbox.hubspot] {
            set_faults(&http, endpoint, "latency_ms=0").await;
        }
    }

    // 2. API calls per stream vs the minimum the API allows.
    let mut minimum: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (soql, total) in &minimum_inputs["salesforce"] {
        *minimum
            .entry(("salesforce".into(), salesforce_stream(soql).into()))
            .or_default() += pages(*total, SALESFORCE_PAGE);
        let object = soql
            .split(" FROM ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next());
        if salesforce_stream(soql) != "activities" && salesforce_stream(soql) != "tasks" {
            println!(
                "salesforce_{}_in_crm {total} records",
                object.unwrap_or("?").to_ascii_lowercase()
            );
        }
    }
    let hubspot = &sandbox.hubspot;
    let mut hubspot_counts = BTreeMap::new();
    for object_type in [
        "companies",
        "contacts",
        "deals",
        "calls",
        "meetings",
        "emails",
        "notes",
        "tasks",
    ] {
        let total = hubspot_total(&http, hubspot, object_type).await;
        println!("hubspot_{object_type}_in_crm {total} records");
        hubspot_counts.insert(object_type, total);
    }
    let list = |types: &[&str]| -> u64 {
        types
            .iter()
            .map(|t| pages(hubspot_counts[t], HUBSPOT_LIST_PAGE))
            .sum()
    };
    let owners = pages(
        hubspot_owners(&http, hubspot, false).await,
        HUBSPOT_OWNERS_PAGE,
    ) + pages(
        hubspot_owners(&http, hubspot, true).await,
        HUBSPOT_OWNERS_PAGE,
    );
    for (stream, calls) in [
        ("owners", owners),
        ("partners", list(&["companies"])),
        ("contacts", list(&["contacts"])),
        ("referrals", list(&["deals"])),
        (
            "activities",
            list(&["calls", "meetings", "emails", "notes", "tasks"]),
        ),
        ("tasks", list(&["tasks"])),
    ] {
        minimum.insert(("hubspot".into(), stream.into()), calls);
    }
    let salesforce_counts: BTreeMap<String, u64> = minimum_inputs["salesforce"]
        .iter()
        .map(|(soql, total)| (salesforce_stream(soql).to_string(), *total))
        .collect();
    let large_enough = salesforce_counts.get("contacts").copied().unwrap_or(0) >= 100_000
        && salesforce_counts.get("partners").copied().unwrap_or(0) >= 20_000
        && salesforce_counts.get("referrals").copied().unwrap_or(0) >= 50_000
        && hubspot_counts["contacts"] >= 100_000
        && hubspot_counts["companies"] >= 20_000
        && hubspot_counts["deals"] >= 50_000;
    println!(
        "world_meets_large_minimums {} bool",
        if large_enough { "yes" } else { "no" }
    );
    for (name, report) in &full_reports {
        let (mut actual_sum, mut minimum_sum) = (0, 0);
        for ((system, stream), (calls, _, _)) in &report.streams {
            let least = minimum
                .get(&(system.clone(), stream.clone()))
                .copied()
                .unwrap_or(0);
            println!("{name}_{stream}_full_pull_calls {calls} calls");
            println!("{name}_{stream}_full_pull_calls_minimum {least} calls");
            actual_sum += calls;
            minimum_sum += least;
        }
        println!("{name}_full_pull_calls_all_streams {actual_sum} calls");
        println!("{name}_full_pull_calls_minimum_all_streams {minimum_sum} calls");
    }

    // Both CRMs in one pull, as `sync --once` does; this ledger is the base for 3 and 4.
    let all = directory.join("all.db");
    let together = run_child("pull", &sandbox.config, &all, "salesforce,hubspot");
    println!("all_full_pull_seconds {:.3} s", together.seconds);
    println!(
        "all_full_pull_ratio_vs_bare_sum {:.2} x",
        ratio(together.seconds, bare_seconds)
    );
    println!("all_full_pull_api_calls {} calls", together.api_calls);
    println!(
        "all_full_pull_peak_rss {:.1} MiB",
        together.peak_kib as f64 / 1024.0
    );

    // 3. Incremental pull with no changes.
    let again = run_child("pull", &sandbox.config, &all, "salesforce,hubspot");
    println!("incremental_pull_seconds {:.3} s", again.seconds);
    println!("incremental_pull_api_calls {} calls", again.api_calls);
    for ((system, stream), (calls, read, _)) in &again.streams {
        println!("{system}_{stream}_incremental_calls {calls} calls");
        println!("{system}_{stream}_incremental_records {read} records");
    }

    // 4. Push of `intents` task intents per CRM through the outbox.
    let expected = queue_intents(&all, intents);
    for endpoint in [&sandbox.salesforce, &sandbox.hubspot] {
        let name = endpoint.system.as_str();
        start_journal(&http, endpoint).await;
        let pushed = run_child("push", &sandbox.config, &all, name);
        let calls = take_journal(&http, endpoint).await;
        let report = &pushed.push[0];
        println!("{name}_push_intents {} intents", report["intents"]);
        println!("{name}_push_stored {} intents", report["stored"]);
        println!("{name}_push_created {} tasks", report["created"]);
        println!("{name}_push_seconds {:.3} s", pushed.seconds);
        println!("{name}_push_api_calls {} calls", pushed.api_calls);
        let (writes, associations) = match endpoint.system {
            CrmSystem::Salesforce => (
                calls
                    .iter()
                    .filter(|c| c.method == "PATCH" && c.target.contains("/composite/sobjects/"))
                    .count(),
                0,
            ),
            CrmSystem::Hubspot => (
                calls
                    .iter()
                    .filter(|c| c.target.ends_with("/batch/upsert"))
                    .count(),
                calls
                    .iter()
                    .filter(|c| c.target.starts_with("/crm/v4/associations/"))
                    .count(),
            ),
        };
        let goal = match endpoint.system {
            CrmSystem::Salesforce => intents.div_ceil(200),
            CrmSystem::Hubspot => intents.div_ceil(100),
        };
        println!("{name}_push_write_calls {writes} calls");
        println!("{name}_push_write_calls_goal {goal} calls");
        if endpoint.system == CrmSystem::Hubspot {
            println!("{name}_push_association_calls {associations} calls");
        }
        println!(
            "{name}_push_other_calls {} calls",
            calls.len() - writes - associations
        );
        let held = tasks_with_keys(&http, endpoint).await;
        let wanted = &expected[name];
        let matching = held.iter().filter(|key| wanted.contains(*key)).count();
        println!("{name}_tasks_with_pushed_keys {matching} tasks");
        assert_eq!(
            (matching, held.len()),
            (wanted.len(), wanted.len()),
            "{name} must hold exactly one task per pushed key"
        );
    }
}

/// Queues `count` intents per CRM about that CRM's partner records (owner kept when active), and
/// returns their keys.
fn queue_intents(
    ledger_path: &Path,
    count: usize,
) -> BTreeMap<&'static str, std::collections::HashSet<String>> {
    let ledger = Ledger::open(ledger_path, Duration::from_secs(10)).expect("ledger");
    let connection = ledger.connection();
    let mut keys = BTreeMap::new();
    for system in [CrmSystem::Salesforce, CrmSystem::Hubspot] {
        let mut statement = connection
            .prepare(
                "SELECT p.external_id, json_extract(p.body, '$.name'),
                        CASE WHEN json_extract(o.body, '$.active') THEN o.external_id END
                 FROM crm_record p
                 LEFT JOIN crm_record o ON o.system = p.system AND o.stream = 'owners'
                      AND o.external_id = json_extract(p.body, '$.owner_id')
                 WHERE p.system = ?1 AND p.stream = 'partners' AND p.deleted = 0
                 ORDER BY p.external_id LIMIT ?2",
            )
            .expect("partners query");
        let due = NaiveDate::from_ymd_opt(2026, 11, 15).expect("date");
        let intents: Vec<TaskIntent> = statement
            .query_map(rusqlite::params![system.as_str(), count as i64], |row| {
                let partner: String = row.get(0)?;
                let name: String = row.get::<_, Option<String>>(1)?.unwrap_or_default();
                Ok(TaskIntent {
                    key: format!("bench_no_touch:{partner}:2026-11"),
                    owner_id: row.get(2)?,
                    about_id: partner,
                    subject: format!("{name}: no touch in 62 days — schedule a visit"),
                    description: "Last touch 62 days ago; the partner sent 3 referrals a month \
                                  over the last year."
                        .to_string(),
                    due,
                    priority: TaskPriority::Normal,
                    kind: TaskKind::Meeting,
                    completed: false,
                })
            })
            .expect("partners")
            .collect::<rusqlite::Result<_>>()
            .expect("partner rows");
        assert_eq!(
            intents.len(),
            count,
            "{} has too few partners",
            system.as_str()
        );
        connection.execute_batch("BEGIN").expect("begin");
        crm::enqueue(connection, system, &intents, "2026-11-01T00:00:00Z").expect("enqueue");
        connection.execute_batch("COMMIT").expect("commit");
        keys.insert(
            system.as_str(),
            intents.into_iter().map(|intent| intent.key).collect(),
        );
    }
    keys
}

/// Every task key the CRM holds (read without refbridge).
async fn tasks_with_keys(http: &reqwest::Client, endpoint: &Endpoint) -> Vec<String> {
    let mut keys = Vec::new();
    match endpoint.system {
        CrmSystem::Salesforce => {
            let mut query =
                Some("SELECT Id, Refbridge_Key__c FROM Task WHERE Refbridge_Key__c != null");
            let mut next = Some(format!("{}/services/data/v62.0/query", endpoint.base));
            while let Some(target) = next.take() {
                let mut request = http.get(&target).bearer_auth(&endpoint.token);
                if let Some(q) = query.take() {
                    request = request.query(&[("q", q)]);
                }
                let page: Value = request
                    .send()
                    .await
                    .expect("query")
                    .json()
                    .await
                    .expect("JSON");
                for record in page["records"].as_array().expect("records") {
                    keys.push(
                        record["Refbridge_Key__c"]
                            .as_str()
                            .expect("key")
                            .to_string(),
                    );
                }
                next = page["nextRecordsUrl"]
                    .as_str()
                    .map(|path| format!("{}{path}", endpoint.base));
            }
        }
        CrmSystem::Hubspot => {
            let mut after: Option<String> = None;
            loop {
                let mut request = http
                    .get(format!("{}/crm/v3/objects/tasks", endpoint.base))
                    .bearer_auth(&endpoint.token)
                    .query(&[("limit", "100"), ("properties", "refbridge_key")]);
                if let Some(after) = &after {
                    request = request.query(&[("after", after)]);
                }
                let page: Value = request
                    .send()
                    .await
                    .expect("list")
                    .json()
                    .await
                    .expect("JSON");
                for task in page["results"].as_array().expect("results") {
                    if let Some(key) = task["properties"]["refbridge_key"].as_str()
                        && !key.is_empty()
                    {
                        keys.push(key.to_string());
                    }
                }
                match page["paging"]["next"]["after"].as_str() {
                    Some(next) => after = Some(next.to_string()),
                    None => break,
                }
            }
        }
    }
    keys
}
