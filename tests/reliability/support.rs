//! What the crash and fault tests share: a sandbox world prepared like an operator would (task
//! key property, rules on, exports in the inbox), runs of the real binary, the tasks each CRM
//! holds read back by their key, and the ledger's domain content in a form two ledgers can be
//! compared in (no row ids, run ids, run timestamps or CRM-assigned task ids).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;
use serde_json::{Value, json};

use crate::common;
use crate::common::sandbox::World;

/// Today (UTC): the sandboxes' as-of date, so that `sync --once` (which evaluates as of now)
/// sees the world the way it was generated.
pub fn today() -> String {
    chrono::Utc::now().date_naive().to_string()
}

/// A small world (seed 7) with its EHR exports in the inbox, `extra` sandbox arguments (faults),
/// prepared for pushing: HubSpot's task key property created, every rule on with a budget that
/// lets every condition open at once, and pages small enough that each stream takes several.
pub fn prepared_world(as_of: &str, extra: &[&str]) -> World {
    let mut args = vec![
        "--scale",
        "small",
        "--as-of",
        as_of,
        "--export-dir",
        "{state}/inbox",
    ];
    args.extend_from_slice(extra);
    let world = World::start(&args);
    // One facility, one patient key: the sandbox draws a fresh key per state folder, and two
    // worlds are only comparable when their patient tokens are.
    let key = world.config.with_extension("d").join("patient_key");
    std::fs::write(&key, b"reliability-suite-patient-key-32b").unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // Faults must not decide whether the key property exists: it is created fault-free, like an
    // operator running `check-config --connect --create-task-key` once at install.
    let plans: Vec<String> = ["salesforce", "hubspot"]
        .iter()
        .map(|system| {
            let plan = admin_faults(&world, system, None);
            admin_faults(&world, system, Some(""));
            plan.lines().next().unwrap_or_default().to_string()
        })
        .collect();
    let created = common::run_binary(
        &["check-config", "--connect", "--create-task-key"],
        Some(&world.config),
    );
    assert_eq!(created.status, 0, "{}{}", created.stdout, created.stderr);
    for (system, plan) in ["salesforce", "hubspot"].iter().zip(&plans) {
        admin_faults(&world, system, Some(plan));
    }
    world.set_config(
        "settle_lag_seconds = 2",
        "settle_lag_seconds = 2\npage_size = 200",
    );
    let mut text = std::fs::read_to_string(&world.config).unwrap();
    text.push_str("\n[rules]\ndaily_budget_per_rep = 100\n");
    std::fs::write(&world.config, text).unwrap();
    world
}

/// Logs HubSpot in with OAuth (refresh token, client id and secret from the sandbox's ready
/// line) instead of the private-app token, so that short-lived access tokens reach it too.
pub fn use_hubspot_oauth(world: &World) {
    let state = world.config.with_extension("d");
    let hubspot = &world.ready["hubspot"];
    let write = |name: &str, key: &str| {
        let path = state.join(name);
        std::fs::write(&path, hubspot[key].as_str().unwrap()).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        path.display().to_string()
    };
    let secret = write("hubspot_client_secret", "client_secret");
    let refresh = write("hubspot_refresh_token", "refresh_token");
    let text = std::fs::read_to_string(&world.config).unwrap();
    let start = text.find("[connectors.hubspot.auth]").unwrap();
    let end = text[start..]
        .find("\n[")
        .map_or(text.len(), |offset| start + offset + 1);
    let auth = format!(
        "[connectors.hubspot.auth]\nmethod = \"oauth\"\nclient_id = {:?}\nclient_secret_file = {secret:?}\nrefresh_token_file = {refresh:?}\n",
        hubspot["client_id"].as_str().unwrap(),
    );
    std::fs::write(
        &world.config,
        format!("{}{auth}{}", &text[..start], &text[end..]),
    )
    .unwrap();
}

/// `GET` (with `None`) or `POST` a sandbox's `/__admin/faults`; returns the answer's text.
pub fn admin_faults(world: &World, system: &str, plan: Option<&str>) -> String {
    let base = match system {
        "salesforce" => world.ready["salesforce"]["instance_url"].as_str().unwrap(),
        _ => world.ready["hubspot"]["base_url"].as_str().unwrap(),
    }
    .to_string();
    let plan = plan.map(str::to_string);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            let client = reqwest::Client::new();
            let url = format!("{base}/__admin/faults");
            let request = match plan {
                Some(plan) => client.post(url).body(plan),
                None => client.get(url),
            };
            let response = request.send().await.unwrap();
            assert!(response.status().is_success());
            response.text().await.unwrap()
        })
}

/// True when a cycle report shows every stream pulled, every file read and nothing left to push.
pub fn finished(report: &Value) -> bool {
    let streams_ok = report["pulled"]["streams"]
        .as_array()
        .is_some_and(|streams| streams.iter().all(|s| s["outcome"] == "ok"));
    let pushed = report["push"].as_array().is_some_and(|pushes| {
        pushes
            .iter()
            .all(|p| p["stored"] == p["intents"] && p["retryable"] == 0 && p["permanent"] == 0)
    });
    streams_ok && pushed && report["refused"].is_null()
}

/// Waits past the sandbox config's settle lag (2 s), so that the next pull reads every task
/// pushed before it.
pub fn settle() {
    std::thread::sleep(Duration::from_millis(2_500));
}

/// Runs `sync --once` until a run finishes everything (at most `limit` runs); returns the runs
/// it took and the last report.
pub fn sync_until_finished(world: &World, limit: usize) -> (usize, Value) {
    let mut last = String::new();
    for run in 1..=limit {
        let output = common::run_binary(&["sync", "--once", "--json"], Some(&world.config));
        let report = serde_json::from_str(&output.stdout).unwrap_or(Value::Null);
        if output.status == 0 && finished(&report) {
            return (run, report);
        }
        last = format!(
            "exit {}: {}\n{}",
            output.status, output.stdout, output.stderr
        );
    }
    panic!("sync --once did not finish within {limit} runs; the last:\n{last}");
}

/// One refbridge task as a CRM holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CrmTask {
    pub subject: String,
    pub description: String,
    pub owner: String,
    pub due: String,
    pub priority: String,
    pub status: String,
    /// The record the task is about (Salesforce `WhatId`; HubSpot: its associations).
    pub about: String,
}

/// Every Salesforce task with a refbridge key: (key, task), one entry per CRM task.
pub fn salesforce_tasks(world: &World) -> Vec<(String, CrmTask)> {
    let mut tasks = Vec::new();
    let mut next = Some(
        "query?q=SELECT+Refbridge_Key__c,Subject,Description,OwnerId,ActivityDate,Priority,Status,WhatId+FROM+Task+WHERE+Refbridge_Key__c+!=+null"
            .to_string(),
    );
    while let Some(path) = next.take() {
        let page = world.rest("GET", &path, None);
        for record in page["records"].as_array().unwrap() {
            let text = |field: &str| record[field].as_str().unwrap_or_default().to_string();
            tasks.push((
                text("Refbridge_Key__c"),
                CrmTask {
                    subject: text("Subject"),
                    description: text("Description"),
                    owner: text("OwnerId"),
                    due: text("ActivityDate"),
                    priority: text("Priority"),
                    status: text("Status"),
                    about: text("WhatId"),
                },
            ));
        }
        if page["done"] == false {
            next = page["nextRecordsUrl"]
                .as_str()
                .and_then(|url| url.split_once("/v62.0/"))
                .map(|(_, rest)| rest.to_string());
        }
    }
    tasks
}

/// Every HubSpot task with a refbridge key: (key, task), one entry per CRM task.
pub fn hubspot_tasks(world: &World) -> Vec<(String, CrmTask)> {
    let mut rows = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut body = json!({
            "filterGroups": [{"filters": [{"propertyName": "refbridge_key", "operator": "HAS_PROPERTY"}]}],
            "properties": ["refbridge_key", "hs_task_subject", "hs_task_body", "hubspot_owner_id",
                "hs_timestamp", "hs_task_priority", "hs_task_status"],
            "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
            "limit": 100,
        });
        if let Some(after) = &after {
            body["after"] = json!(after);
        }
        let page = world.hubspot("POST", "/crm/v3/objects/tasks/search", Some(body));
        for task in page["results"].as_array().unwrap() {
            rows.push((task["id"].as_str().unwrap().to_string(), task.clone()));
        }
        match page["paging"]["next"]["after"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    let mut about: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for target in ["companies", "deals", "contacts"] {
        for chunk in rows.chunks(100) {
            let inputs: Vec<Value> = chunk.iter().map(|(id, _)| json!({"id": id})).collect();
            let answer = world.hubspot(
                "POST",
                &format!("/crm/v4/associations/tasks/{target}/batch/read"),
                Some(json!({"inputs": inputs})),
            );
            for result in answer["results"].as_array().into_iter().flatten() {
                let from = result["from"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                for to in result["to"].as_array().into_iter().flatten() {
                    let id = to["toObjectId"]
                        .as_str()
                        .map(str::to_string)
                        .or_else(|| to["toObjectId"].as_u64().map(|n| n.to_string()))
                        .unwrap_or_default();
                    about
                        .entry(from.clone())
                        .or_default()
                        .push(format!("{target}/{id}"));
                }
            }
        }
    }
    rows.into_iter()
        .map(|(id, task)| {
            let text = |name: &str| {
                task["properties"][name]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            };
            let mut targets = about.remove(&id).unwrap_or_default();
            targets.sort();
            (
                text("refbridge_key"),
                CrmTask {
                    subject: text("hs_task_subject"),
                    description: text("hs_task_body"),
                    owner: text("hubspot_owner_id"),
                    due: text("hs_timestamp"),
                    priority: text("hs_task_priority"),
                    status: text("hs_task_status"),
                    about: targets.join(" "),
                },
            )
        })
        .collect()
}

/// Asserts that every key is held by one task at most, and returns the tasks by key.
pub fn once_per_key(system: &str, tasks: Vec<(String, CrmTask)>) -> BTreeMap<String, CrmTask> {
    let mut by_key = BTreeMap::new();
    for (key, task) in tasks {
        assert!(
            !key.is_empty(),
            "{system}: a refbridge task without its key"
        );
        if let Some(first) = by_key.insert(key.clone(), task) {
            panic!("{system}: a second task for key {key} (first: {first:?})");
        }
    }
    by_key
}

/// The outbox keys of one CRM.
pub fn outbox_keys(ledger: &Path, system: &str) -> Vec<String> {
    let connection = Connection::open(ledger).unwrap();
    let mut statement = connection
        .prepare("SELECT key FROM outbox WHERE system = ?1 ORDER BY key")
        .unwrap();
    statement
        .query_map([system], |row| row.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

pub fn integrity(ledger: &Path) -> String {
    Connection::open(ledger)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap()
}

pub fn count(ledger: &Path, sql: &str) -> i64 {
    Connection::open(ledger)
        .unwrap()
        .query_row(sql, [], |row| row.get(0))
        .unwrap()
}

/// What the ledger knows, table by table, as sorted lines without row ids, run ids, run
/// timestamps or CRM-assigned task ids: partners are named by their source records, referrals
/// by (source, inquiry, direction), refbridge's own tasks read back from a CRM by their key.
/// The `tasks` stream's cursor is left out (it is a CRM-assigned id and the CRM's write time), and
/// HubSpot's cursors are compared by whether they are past every record of their stream.
pub fn domain(ledger: &Path) -> BTreeMap<&'static str, Vec<String>> {
    let connection = Connection::open(ledger).unwrap();
    let lines = |sql: &str| -> Vec<Vec<Option<String>>> {
        let mut statement = connection.prepare(sql).unwrap();
        let width = statement.column_count();
        statement
            .query_map([], |row| {
                (0..width)
                    .map(|i| {
                        row.get_ref(i).map(|value| match value {
                            rusqlite::types::ValueRef::Null => None,
                            rusqlite::types::ValueRef::Integer(n) => Some(n.to_string()),
                            rusqlite::types::ValueRef::Real(x) => Some(format!("{x:.6}")),
                            rusqlite::types::ValueRef::Text(t)
                            | rusqlite::types::ValueRef::Blob(t) => {
                                Some(String::from_utf8_lossy(t).into_owned())
                            }
                        })
                    })
                    .collect()
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    };
    // Partner id → the live partner's name: its source records, sorted.
    let mut live: BTreeMap<String, String> = BTreeMap::new();
    for row in lines("SELECT id, coalesce(merged_into, id) FROM partner") {
        live.insert(row[0].clone().unwrap(), row[1].clone().unwrap());
    }
    let mut records: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in lines("SELECT partner_id, system || ':' || external_key FROM partner_source_record")
    {
        let partner = live[row[0].as_ref().unwrap()].clone();
        records
            .entry(partner)
            .or_default()
            .push(row[1].clone().unwrap());
    }
    let partner_name = |id: &Option<String>| -> String {
        match id {
            None => "-".to_string(),
            Some(id) => {
                let survivor = live.get(id).cloned().unwrap_or_else(|| id.clone());
                match records.get(&survivor) {
                    Some(keys) => {
                        let mut keys = keys.clone();
                        keys.sort();
                        format!("[{}]", keys.join(" "))
                    }
                    None => format!("[partner without records: {survivor}]"),
                }
            }
        }
    };
    let show = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".to_string());
    // (table, SQL, which columns are partner ids).
    let tables: [(&'static str, &str, &[usize]); 15] = [
        (
            "partner",
            "SELECT id, name, normalized_name, npi, source_type, origin FROM partner WHERE merged_into IS NULL",
            &[0],
        ),
        (
            "partner_source_record",
            "SELECT partner_id, system, external_key, raw_name, normalized_name, match_method, confidence FROM partner_source_record",
            &[0],
        ),
        (
            "referral",
            "SELECT r.partner_id, r.source_system, r.inquiry_id, r.direction, r.parent_inquiry_id, r.inquiry_date,
                    r.referred_by, r.rep, r.payer, r.plan_type, r.level_of_care_scheme, r.level_of_care_code,
                    r.disposition, r.disposition_reason, r.admit_date, r.patient_token, r.zip3,
                    s.system || ':' || s.external_key
             FROM referral r LEFT JOIN partner_source_record s ON s.id = r.partner_source_record_id",
            &[0],
        ),
        (
            "quarantine",
            "SELECT file_name, location, field, reason, severity FROM quarantine",
            &[],
        ),
        (
            "crm_record",
            "SELECT system, stream, external_id, modified_at, deleted, merged_into, body FROM crm_record
             WHERE stream <> 'tasks'",
            &[],
        ),
        (
            "crm_record tasks",
            "SELECT system, json_extract(body, '$.key'), json_remove(body, '$.id'), deleted FROM crm_record
             WHERE stream = 'tasks'",
            &[],
        ),
        (
            "sync_cursor",
            // HubSpot's cursor is the end of the window read (a time of the run): shown as
            // whether it is past every record of its stream.
            "SELECT c.system, c.stream,
                    CASE WHEN c.system = 'salesforce' THEN c.modified_at || ' ' || c.external_id
                         ELSE c.modified_at >= (SELECT max(r.modified_at) FROM crm_record r
                                                WHERE r.system = c.system AND r.stream = c.stream)
                    END
             FROM sync_cursor c WHERE c.stream <> 'tasks'",
            &[],
        ),
        (
            "rep",
            "SELECT system, external_id, name, email, active FROM rep",
            &[],
        ),
        (
            "partner_profile",
            "SELECT partner_id, home_system, home_crm_id, owner_id, owner_name, owner_active, city, state,
                    zip3, website_domain, phone, payers, levels_of_care, accepting_referrals, preferred
             FROM partner_profile",
            &[0],
        ),
        (
            "crm_referral",
            "SELECT c.partner_id, c.system, c.crm_id, r.source_system || ':' || r.inquiry_id || ':' || r.direction,
                    c.inquiry_id, c.direction, c.parent_inquiry_id, c.stage, c.disposition, c.disposition_reason,
                    c.payer, c.plan_type, c.level_of_care, c.inquiry_date, c.admit_date, c.owner_id, c.deleted,
                    d.system || ':' || d.crm_id
             FROM crm_referral c LEFT JOIN referral r ON r.id = c.referral_id
                  LEFT JOIN crm_referral d ON d.id = c.duplicate_of",
            &[0],
        ),
        (
            "activity",
            "SELECT a.partner_id, a.system, coalesce(json_extract(t.body, '$.key'), a.crm_id), a.kind, a.owner_id, a.at
             FROM activity a LEFT JOIN crm_record t
                  ON t.system = a.system AND t.stream = 'tasks' AND t.external_id = a.crm_id",
            &[0],
        ),
        (
            "identity_suggestion",
            "SELECT partner_id, candidate_id, method, confidence, reason FROM identity_suggestion",
            &[0, 1],
        ),
        (
            "health_snapshot",
            "SELECT partner_id, as_of, score, state, trend, components, model_version FROM health_snapshot",
            &[0],
        ),
        (
            "alert",
            "SELECT partner_id, key, rule, system, owner_id, state, reason FROM alert",
            &[0],
        ),
        (
            "outbox",
            "SELECT system, key, intent, status FROM outbox",
            &[],
        ),
    ];
    let mut domain = BTreeMap::new();
    for (table, sql, partner_columns) in tables {
        let mut rendered: Vec<String> = lines(sql)
            .iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .map(|(i, value)| {
                        if partner_columns.contains(&i) {
                            partner_name(value)
                        } else {
                            show(value)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
            .collect();
        rendered.sort();
        domain.insert(table, rendered);
    }
    domain
}

/// Asserts two ledgers' domain content is the same, naming the first lines that differ.
pub fn assert_same_domain(
    expected: &BTreeMap<&'static str, Vec<String>>,
    actual: &BTreeMap<&'static str, Vec<String>>,
    what: &str,
) {
    for (table, rows) in expected {
        let other = &actual[table];
        if rows != other {
            // Both are sorted: walk them side by side, so that a repeated line counts.
            let (mut missing, mut extra) = (Vec::new(), Vec::new());
            let (mut i, mut j) = (0, 0);
            while (i < rows.len() || j < other.len()) && missing.len() + extra.len() < 6 {
                match (rows.get(i), other.get(j)) {
                    (Some(a), Some(b)) if a == b => (i, j) = (i + 1, j + 1),
                    (Some(a), Some(b)) if a < b => (missing.push(a), i += 1).1,
                    (Some(a), None) => (missing.push(a), i += 1).1,
                    (_, Some(b)) => (extra.push(b), j += 1).1,
                    (None, None) => break,
                }
            }
            panic!(
                "{what}: table {table} differs ({} rows expected, {} found)\nmissing: {missing:#?}\nunexpected: {extra:#?}",
                rows.len(),
                other.len()
            );
        }
    }
}
