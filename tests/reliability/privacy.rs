//! Privacy across the whole product, beyond `tests/privacy.rs` (which covers one import and the
//! reading commands): canary patient values in every patient field of both export formats and in
//! the CRM data refbridge reads (a deal's name and description, a HubSpot note), fed through
//! `sync --once` and through the daemon (`run` with `[http]` metrics, JSON logs, a maintenance
//! backup). Then every byte is searched: the ledger, its WAL and backups, the output of every
//! command, `/metrics`, and every task refbridge created in either CRM. Secrets (each secret
//! file's content) must not appear either, also when a wrong secret makes the CRM answer 401.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::sandbox::World;
use crate::common::{GENERIC_HEADER, Output, csv, row, run_binary};

/// One canary per patient field; none is a substring of anything refbridge writes by itself.
const CANARIES: &[(&str, &str)] = &[
    ("mrn", "MRN-KESTREL-5521"),
    ("patient_name", "Wrenna Kestrelova"),
    ("birth_date", "1913-03-13"),
    ("patient_phone", "(555) 014-2287"),
    ("patient_address", "41 Kestrelgate Road"),
    ("patient_zip", "59912-0413"),
    ("notes", "kestrel note: qxvw seizures"),
];

/// Values planted in CRM records a patient's name might reach in real life.
const CRM_CANARIES: &[&str] = &[
    "Ospreyanne Falconer",
    "osprey deal note: zqkv in March",
    "Harrier Pikeworth",
];

fn needles() -> Vec<&'static str> {
    let mut needles: Vec<&str> = CANARIES.iter().map(|(_, v)| *v).collect();
    needles.extend(CRM_CANARIES);
    // Parts a careless parser might keep. Only fragments that cannot occur by chance (hex tokens,
    // generated ids and phone numbers hold digits; partner names hold ordinary words).
    needles.extend([
        "Kestrelova",
        "Kestrelgate",
        "KESTREL-5521",
        "014-2287",
        "59912-0413",
        "qxvw",
        "Ospreyanne",
        "Pikeworth",
        "zqkv",
    ]);
    needles
}

fn canary_exports(inbox: &Path) {
    let rows: Vec<String> = (1..=3)
        .map(|n| {
            let mut values: Vec<(&str, &str)> = CANARIES.to_vec();
            let id = format!("K-{n}");
            let disposition = if n == 2 { "not admitted" } else { "admitted" };
            values.extend([
                ("inquiry_id", id.as_str()),
                ("inquiry_date", "2026-10-20"),
                ("referral_source", "Kestrel Valley Hospital"),
                ("disposition", disposition),
                ("disposition_reason", "out of network"),
                ("payer", "Aetna"),
            ]);
            row(&values)
        })
        .collect();
    assert!(GENERIC_HEADER.contains("patient_zip"));
    std::fs::write(inbox.join("kestrel.csv"), csv(&rows)).unwrap();
    let patient = json!({
        "resourceType": "Patient", "id": "pk",
        "identifier": [{"value": "MRN-KESTREL-5521"}],
        "name": [{"family": "Kestrelova", "given": ["Wrenna"], "text": "Wrenna Kestrelova"}],
        "birthDate": "1913-03-13",
        "telecom": [{"system": "phone", "value": "(555) 014-2287"}],
        "address": [{"line": ["41 Kestrelgate Road"], "postalCode": "59912-0413"}]
    });
    let request = json!({
        "resourceType": "ServiceRequest", "id": "sr-k", "identifier": [{"value": "K-9"}],
        "status": "active", "intent": "order", "authoredOn": "2026-10-21",
        "requester": {"display": "Kestrel Valley Hospital"},
        "subject": {"reference": "Patient/pk", "identifier": {"value": "MRN-KESTREL-5521"}, "display": "Wrenna Kestrelova"},
        "note": [{"text": "kestrel note: qxvw seizures"}],
        "reasonCode": [{"text": "kestrel note: qxvw seizures"}],
        "patientInstruction": "41 Kestrelgate Road",
        "supportingInfo": [{"display": "Wrenna Kestrelova 1913-03-13"}]
    });
    std::fs::write(
        inbox.join("kestrel.ndjson"),
        format!("{patient}\n{request}\n"),
    )
    .unwrap();
}

/// Puts patient-looking values where CRM users type them: a Salesforce opportunity's name and
/// description, a HubSpot deal's name and description, and a HubSpot note's body.
fn plant_crm_canaries(world: &World) {
    let opportunities = world.rest(
        "GET",
        "query?q=SELECT+Id+FROM+Opportunity+ORDER+BY+Id+LIMIT+2",
        None,
    );
    for record in opportunities["records"].as_array().unwrap() {
        let id = record["Id"].as_str().unwrap();
        world.rest(
            "PATCH",
            &format!("sobjects/Opportunity/{id}"),
            Some(json!({"Name": CRM_CANARIES[0], "Description": CRM_CANARIES[1]})),
        );
    }
    let deals = world.hubspot("GET", "/crm/v3/objects/deals?limit=2", None);
    for deal in deals["results"].as_array().unwrap() {
        let id = deal["id"].as_str().unwrap();
        world.hubspot(
            "PATCH",
            &format!("/crm/v3/objects/deals/{id}"),
            Some(json!({"properties": {"dealname": format!("{} - {}", CRM_CANARIES[0], CRM_CANARIES[1])}})),
        );
    }
    world.hubspot(
        "POST",
        "/crm/v3/objects/notes",
        Some(json!({"properties": {"hs_note_body": format!("{} called about {}", CRM_CANARIES[2], CRM_CANARIES[1]), "hs_timestamp": chrono::Utc::now().to_rfc3339()}})),
    );
}

/// Every task refbridge created, as the CRMs return them.
fn tasks_sent(world: &World) -> Vec<(String, String)> {
    let mut sent = Vec::new();
    let salesforce = world.rest(
        "GET",
        "query?q=SELECT+Id,Subject,Description,Status,Refbridge_Key__c+FROM+Task+WHERE+Refbridge_Key__c+!=+null",
        None,
    );
    for task in salesforce["records"].as_array().unwrap() {
        sent.push(("salesforce task".to_string(), task.to_string()));
    }
    let mut after: Option<String> = None;
    loop {
        let path = format!(
            "/crm/v3/objects/tasks?limit=100&properties=hs_task_subject,hs_task_body,refbridge_key,hs_task_status{}",
            after
                .as_ref()
                .map(|a| format!("&after={a}"))
                .unwrap_or_default()
        );
        let page = world.hubspot("GET", &path, None);
        for task in page["results"].as_array().unwrap() {
            if task["properties"]["refbridge_key"]
                .as_str()
                .is_some_and(|k| !k.is_empty())
            {
                sent.push(("hubspot task".to_string(), task.to_string()));
            }
        }
        match page["paging"]["next"]["after"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    sent
}

fn http_get(address: &str, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

/// Runs `refbridge run` until `done` says so (or 60 s), with JSON logs; returns its output and
/// the `/metrics` text read while it ran.
fn run_daemon(config: &Path, done: impl Fn() -> bool) -> (String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_refbridge"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(config)
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("NOTIFY_SOCKET")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let stderr_thread = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut logs = String::new();
    let mut address = None;
    let mut metrics = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        while let Ok(line) = lines_rx.try_recv() {
            if address.is_none()
                && let Ok(value) = serde_json::from_str::<Value>(&line)
                && value["message"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("http listening")
            {
                address = value["address"].as_str().map(str::to_string);
            }
            logs.push_str(&line);
            logs.push('\n');
        }
        if let Some(address) = &address {
            metrics = http_get(address, "/metrics");
        }
        if done() && !metrics.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    while let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(200)) {
        logs.push_str(&line);
        logs.push('\n');
    }
    logs.push_str(&stderr_thread.join().unwrap());
    assert!(
        !metrics.is_empty(),
        "the daemon never served /metrics:\n{logs}"
    );
    (logs, metrics)
}

#[test]
fn canaries_in_exports_and_crm_records_reach_no_ledger_log_output_metric_or_task() {
    let today = chrono::Utc::now().date_naive().to_string();
    let world = World::start(&["--as-of", &today, "--export-dir", "{state}/inbox"]);
    let state = world.config.with_extension("d");
    let inbox = state.join("inbox");
    canary_exports(&inbox);
    plant_crm_canaries(&world);
    let secrets: Vec<(String, String)> = [
        "salesforce_client_secret",
        "hubspot_private_app_token",
        "patient_key",
    ]
    .iter()
    .map(|name| {
        let bytes = std::fs::read(state.join(name)).unwrap();
        (
            name.to_string(),
            String::from_utf8_lossy(&bytes).trim().to_string(),
        )
    })
    .collect();
    let mut outputs: Vec<(String, Output)> = Vec::new();
    let connect = run_binary(
        &["check-config", "--connect", "--create-task-key"],
        Some(&world.config),
    );
    assert_eq!(connect.status, 0, "{}{}", connect.stdout, connect.stderr);
    outputs.push(("check-config --connect".to_string(), connect));
    let sync = run_binary(&["sync", "--once", "--json"], Some(&world.config));
    assert_eq!(sync.status, 0, "{}", sync.stderr);
    outputs.push(("sync --once --json".to_string(), sync));

    // The daemon on a fast schedule, with metrics and a maintenance backup, until a backup exists.
    let mut text = std::fs::read_to_string(&world.config).unwrap();
    text.push_str(
        "\n[schedule]\npull_salesforce = \"*/2 * * * * *\"\npull_hubspot = \"*/2 * * * * *\"\nimport = \"*/2 * * * * *\"\nevaluate = \"*/2 * * * * *\"\nmaintenance = \"*/3 * * * * *\"\njitter_seconds = 0\n[http]\nlisten = \"127.0.0.1:0\"\n",
    );
    std::fs::write(&world.config, text).unwrap();
    canary_exports(&inbox);
    let backups = state.join("backups");
    let (daemon_logs, metrics) = run_daemon(&world.config, || {
        std::fs::read_dir(&backups).is_ok_and(|mut d| d.next().is_some())
    });
    assert!(metrics.contains("refbridge_"), "{metrics}");

    for args in [
        &["status"][..],
        &["status", "--json"],
        &["health"],
        &["health", "--format", "json"],
        &["plan", "--json"],
        &["route", "--zip3", "599", "--json"],
        &["import", "--json"],
        &["--log-format", "json", "sync", "--once", "--json"],
    ] {
        let output = if args[0] == "--log-format" {
            let mut command = Command::new(env!("CARGO_BIN_EXE_refbridge"));
            let out = command
                .args(args)
                .arg("--config")
                .arg(&world.config)
                .env("RUST_LOG", "debug")
                .output()
                .unwrap();
            Output {
                status: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        } else {
            run_binary(args, Some(&world.config))
        };
        assert_eq!(output.status, 0, "{args:?}: {}", output.stderr);
        outputs.push((format!("{args:?}"), output));
    }

    let mut searched: Vec<(String, Vec<u8>)> = Vec::new();
    for path in crate::common::files_under(&state) {
        let name = path.display().to_string();
        // The exports themselves hold the canaries: they are the input, kept where ops put them.
        if name.contains("/inbox/")
            || name.ends_with("patient_key")
            || name.contains("_token")
            || name.contains("_secret")
        {
            continue;
        }
        searched.push((name, std::fs::read(&path).unwrap()));
    }
    assert!(
        searched.iter().any(|(n, _)| n.contains("/backups/")),
        "no backup was written"
    );
    assert!(searched.iter().any(|(n, _)| n.ends_with("ledger.db")));
    for (name, output) in &outputs {
        searched.push((format!("{name} stdout"), output.stdout.clone().into_bytes()));
        searched.push((format!("{name} stderr"), output.stderr.clone().into_bytes()));
    }
    searched.push(("daemon logs".to_string(), daemon_logs.into_bytes()));
    searched.push(("/metrics".to_string(), metrics.into_bytes()));
    let tasks = tasks_sent(&world);
    assert!(
        tasks.iter().any(|(n, _)| n == "salesforce task"),
        "no Salesforce task to search"
    );
    assert!(
        tasks.iter().any(|(n, _)| n == "hubspot task"),
        "no HubSpot task to search"
    );
    for (name, task) in &tasks {
        searched.push((name.clone(), task.clone().into_bytes()));
    }
    let mut checks = 0u64;
    for (name, bytes) in &searched {
        for needle in needles() {
            assert!(
                !crate::common::contains_bytes(bytes, needle.as_bytes()),
                "patient canary {needle:?} found in {name}"
            );
            checks += 1;
        }
        for (secret_name, secret) in &secrets {
            assert!(
                !crate::common::contains_bytes(bytes, secret.as_bytes()),
                "secret {secret_name} found in {name}"
            );
            checks += 1;
        }
    }
    crate::figure(&format!(
        "privacy: {} canaries and {} secrets searched in {} places ({} tasks), {checks} checks",
        needles().len(),
        secrets.len(),
        searched.len(),
        tasks.len()
    ));
}

#[test]
fn a_wrong_secret_is_refused_by_the_crm_and_never_echoed() {
    let world = World::start(&[]);
    let state = world.config.with_extension("d");
    // One wrong secret at a time, so that each CRM gets to refuse it.
    for (name, system, wrong) in [
        (
            "salesforce_client_secret",
            "salesforce",
            "WRONG-SF-SECRET-7713-canary",
        ),
        (
            "hubspot_private_app_token",
            "hubspot",
            "pat-na1-WRONG-HS-TOKEN-9924-canary",
        ),
    ] {
        let path = state.join(name);
        let right = std::fs::read_to_string(&path).unwrap().trim().to_string();
        std::fs::write(&path, format!("{wrong}\n")).unwrap();
        let connect = run_binary(&["check-config", "--connect"], Some(&world.config));
        let sync = run_binary(&["sync", "--once", "--json"], Some(&world.config));
        let json_sync = Command::new(env!("CARGO_BIN_EXE_refbridge"))
            .args(["--log-format", "json", "sync", "--once", "--config"])
            .arg(&world.config)
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        std::fs::write(&path, format!("{right}\n")).unwrap();
        assert_ne!(connect.status, 0, "{name}: {}", connect.stdout);
        assert_ne!(sync.status, 0, "{name}: {}", sync.stderr);
        assert!(
            sync.status == 1 || sync.status == 2,
            "{name}: {}",
            sync.stderr
        );
        let everything = format!(
            "{}{}{}{}{}{}",
            connect.stdout,
            connect.stderr,
            sync.stdout,
            sync.stderr,
            String::from_utf8_lossy(&json_sync.stdout),
            String::from_utf8_lossy(&json_sync.stderr)
        );
        // The refusal is reported, naming the CRM …
        let lower = everything.to_lowercase();
        assert!(lower.contains(system), "{name}: {everything}");
        assert!(
            lower.contains("401")
                || lower.contains("refused")
                || lower.contains("unauthorized")
                || lower.contains("invalid"),
            "{name}: {everything}"
        );
        // … and neither the wrong secret nor the right one is in it, whole or in part.
        for secret in [wrong.to_string(), right] {
            let start = &secret[..secret.len().min(12)];
            assert!(
                !everything.contains(start),
                "{name}: a secret was echoed: {start}…\n{everything}"
            );
        }
    }
}
