//! `refbridge sync --once` against the Salesforce sandbox, as processes: full and incremental
//! pulls, edits and deletes, a run killed part-way, faults, and the outbox pushed exactly once.

mod common;

use common::sandbox::World;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use refbridge::ledger::Ledger;
use refbridge::ledger::crm::enqueue;
use refbridge_model::crm::{CrmSystem, TaskIntent, TaskKind, TaskPriority};
use serde_json::{Value, json};

fn stream<'a>(report: &'a Value, name: &str) -> &'a Value {
    stream_of(report, "salesforce", name)
}

fn stream_of<'a>(report: &'a Value, system: &str, name: &str) -> &'a Value {
    report["pulled"]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["system"] == system && s["stream"] == name)
        .unwrap()
}

fn ledger_count(ledger: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open(ledger)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

#[test]
fn full_then_incremental_pulls_match_the_sandbox_with_edits_and_deletes() {
    let world = World::start(&[]);
    let full = world.sync();
    assert_eq!(
        stream(&full, "partners")["read"].as_u64(),
        Some(world.count("SELECT COUNT() FROM Account"))
    );
    assert_eq!(
        stream(&full, "contacts")["read"].as_u64(),
        Some(world.count("SELECT COUNT() FROM Contact"))
    );
    assert_eq!(
        stream(&full, "referrals")["read"].as_u64(),
        Some(world.count("SELECT COUNT() FROM Opportunity"))
    );
    assert_eq!(
        stream(&full, "owners")["read"].as_u64(),
        Some(world.count("SELECT COUNT() FROM User"))
    );
    for name in ["owners", "partners", "contacts", "referrals", "tasks"] {
        assert_eq!(
            stream(&full, name)["api_calls"],
            1,
            "a small world is one page per stream: {name}"
        );
    }

    let quiet = world.sync();
    for entry in quiet["pulled"]["streams"].as_array().unwrap() {
        assert_eq!(entry["read"], 0, "{entry}");
    }
    assert_eq!(
        stream(&quiet, "partners")["api_calls"],
        1,
        "an incremental pull with no change is one call"
    );

    // Edits: a new account whose name needs escaping, a renamed one, a deleted one.
    let created = world.rest(
        "POST",
        "sobjects/Account/",
        Some(json!({"Name": "O'Brien \\ Sons Recovery", "Type": "community"})),
    );
    let new_id = created["id"].as_str().unwrap().to_string();
    let some = world.rest(
        "GET",
        "query?q=SELECT+Id+FROM+Account+ORDER+BY+Id+LIMIT+2",
        None,
    );
    let (renamed, deleted) = (
        some["records"][0]["Id"].as_str().unwrap().to_string(),
        some["records"][1]["Id"].as_str().unwrap().to_string(),
    );
    world.rest(
        "PATCH",
        &format!("sobjects/Account/{renamed}"),
        Some(json!({"Name": "Renamed Partner"})),
    );
    world.rest("DELETE", &format!("sobjects/Account/{deleted}"), None);
    std::thread::sleep(Duration::from_secs(3)); // past the sandbox config's 2-second settle lag
    let edits = world.sync();
    let partners = stream(&edits, "partners");
    assert_eq!(
        (
            partners["new"].as_u64(),
            partners["changed"].as_u64(),
            partners["deleted"].as_u64()
        ),
        (Some(1), Some(1), Some(1)),
        "{partners}"
    );
    let ledger = world.ledger();
    let name: String = rusqlite::Connection::open(&ledger)
        .unwrap()
        .query_row(
            "SELECT json_extract(body, '$.name') FROM crm_record WHERE external_id = ?1",
            [&new_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(name, "O'Brien \\ Sons Recovery");
    assert_eq!(
        ledger_count(
            &ledger,
            &format!("SELECT deleted FROM crm_record WHERE external_id = '{deleted}'")
        ),
        1
    );
    let runs = ledger_count(
        &ledger,
        "SELECT count(*) FROM sync_run WHERE system = 'salesforce' AND stream = 'partners' AND outcome = 'ok' AND watermark_after IS NOT NULL",
    );
    assert_eq!(runs, 3);

    // Reconciliation: a record the cursor missed (simulated by forgetting it) and a deletion the
    // pull did not see (simulated by un-deleting it) are both found by the ids-only pass.
    {
        let connection = rusqlite::Connection::open(&ledger).unwrap();
        connection
            .execute("DELETE FROM crm_record WHERE external_id = ?1", [&new_id])
            .unwrap();
        connection
            .execute(
                "UPDATE crm_record SET deleted = 0 WHERE external_id = ?1",
                [&deleted],
            )
            .unwrap();
    }
    let output = common::run_binary(
        &["sync", "--once", "--json", "--reconcile"],
        Some(&world.config),
    );
    assert_eq!(output.status, 0, "{}", output.stderr);
    let reconciled = output.json();
    let partners = reconciled["pulled"]["reconciled"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "partners")
        .unwrap()
        .clone();
    assert_eq!(partners["deleted"], 1, "{partners}");
    assert!(
        partners["message"]
            .as_str()
            .unwrap()
            .contains("1 record(s) the cursor missed"),
        "{partners}"
    );
    let reread = world.sync();
    assert_eq!(
        stream(&reread, "partners")["new"],
        1,
        "the next pull reads the stream again and finds it"
    );
    assert_eq!(
        ledger_count(
            &ledger,
            &format!("SELECT count(*) FROM crm_record WHERE external_id = '{new_id}'")
        ),
        1
    );
    let status = common::run_binary(&["status"], Some(&world.config));
    assert!(
        status.stdout.contains("salesforce partners"),
        "{}",
        status.stdout
    );
}

#[test]
fn the_outbox_is_pushed_exactly_once_per_key_and_read_back() {
    let world = World::start(&[]);
    world.disable_rules();
    world.sync();
    let account = world.rest(
        "GET",
        "query?q=SELECT+Id,OwnerId+FROM+Account+LIMIT+1",
        None,
    )["records"][0]
        .clone();
    let intents: Vec<TaskIntent> = (0..450)
        .map(|i| TaskIntent {
            key: format!("test:visit:{i}"),
            owner_id: account["OwnerId"].as_str().map(str::to_string),
            about_id: account["Id"].as_str().unwrap().to_string(),
            subject: format!("Schedule a visit ({i})"),
            description: "1 referral in the last 45 days vs 4.2/month baseline".to_string(),
            due: chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            priority: TaskPriority::High,
            kind: TaskKind::Call,
            completed: false,
        })
        .collect();
    let queue = |intents: &[TaskIntent]| {
        let ledger = Ledger::open(&world.ledger(), Duration::from_secs(5)).unwrap();
        enqueue(
            ledger.connection(),
            CrmSystem::Salesforce,
            intents,
            "2026-11-27T00:00:00Z",
        )
        .unwrap()
    };
    assert_eq!(queue(&intents), 450);
    let first = world.sync();
    assert_eq!(
        (
            first["push"][0]["stored"].as_u64(),
            first["push"][0]["created"].as_u64()
        ),
        (Some(450), Some(450)),
        "{}",
        first["push"]
    );
    assert_eq!(
        world.count("SELECT COUNT() FROM Task WHERE Refbridge_Key__c LIKE 'test:visit:%'"),
        450
    );

    // A crash after the CRM stored them but before the outbox learnt it: they are pushed again,
    // and the CRM still holds one task per key.
    rusqlite::Connection::open(world.ledger())
        .unwrap()
        .execute("UPDATE outbox SET status = 'pending'", [])
        .unwrap();
    let again = world.sync();
    assert_eq!(
        (
            again["push"][0]["stored"].as_u64(),
            again["push"][0]["created"].as_u64()
        ),
        (Some(450), Some(0))
    );
    assert_eq!(
        world.count("SELECT COUNT() FROM Task WHERE Refbridge_Key__c LIKE 'test:visit:%'"),
        450
    );

    // Closing: the same keys, completed.
    let closed: Vec<TaskIntent> = intents
        .iter()
        .map(|i| TaskIntent {
            completed: true,
            ..i.clone()
        })
        .collect();
    assert_eq!(queue(&closed), 450);
    world.sync();
    assert_eq!(world.count("SELECT COUNT() FROM Task WHERE Refbridge_Key__c LIKE 'test:visit:%' AND Status = 'Completed'"), 450);
    std::thread::sleep(Duration::from_secs(3));
    let read_back = world.sync();
    assert_eq!(
        stream(&read_back, "tasks")["read"],
        450,
        "refbridge's own tasks are read back"
    );
    assert_eq!(
        ledger_count(
            &world.ledger(),
            "SELECT count(*) FROM outbox WHERE status = 'stored' AND crm_task_id LIKE '00T%'"
        ),
        450
    );
    let status = common::run_binary(&["status"], Some(&world.config));
    assert!(
        status
            .stdout
            .contains("Outbox     0 pending, 450 stored, 0 refused by the CRM"),
        "{}",
        status.stdout
    );
}

#[test]
fn a_run_killed_part_way_resumes_without_loss_and_faults_change_nothing() {
    let world = World::start(&[
        "--scale",
        "medium",
        "--faults",
        "429=0.05,500=0.05,503=0.05,reset=0.03,token_ttl_seconds=4,seed=3",
    ]);
    world.disable_rules();
    world.set_config(
        "settle_lag_seconds = 2",
        "settle_lag_seconds = 2\npage_size = 200",
    );
    // Kill the first run after a moment, wherever it is.
    let mut first = Command::new(env!("CARGO_BIN_EXE_refbridge"))
        .args(["sync", "--once", "--config"])
        .arg(&world.config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let _ = first.kill();
    let _ = first.wait();
    let mut report = world.sync();
    // Faults may defer nothing here (quota is ample), so one more run at most finishes the rest.
    if report["pulled"]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["outcome"] != "ok")
    {
        report = world.sync();
    }
    assert!(
        report["pulled"]["streams"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["outcome"] == "ok"),
        "{report}"
    );
    let ledger = world.ledger();
    for (stream, soql) in [
        ("partners", "SELECT COUNT() FROM Account"),
        ("contacts", "SELECT COUNT() FROM Contact"),
        ("referrals", "SELECT COUNT() FROM Opportunity"),
    ] {
        // Both sandboxes serve the same world, so the same count holds for each CRM.
        let expected = world.count(soql);
        for system in ["salesforce", "hubspot"] {
            let stored = ledger_count(
                &ledger,
                &format!(
                    "SELECT count(*) FROM crm_record WHERE system = '{system}' AND stream = '{stream}'"
                ),
            );
            assert_eq!(
                stored as u64, expected,
                "{system} {stream}: every record once, none lost"
            );
        }
    }
    let integrity: String = rusqlite::Connection::open(&ledger)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}

#[test]
fn hubspot_pulls_match_the_sandbox_and_tasks_are_pushed_once_per_key() {
    let world = World::start(&[]);
    world.disable_rules();
    // The sandbox starts without the unique task key property, like a new portal.
    let missing = common::run_binary(&["check-config", "--connect"], Some(&world.config));
    assert_eq!(missing.status, 2);
    assert!(
        missing.stderr.contains("--create-task-key"),
        "{}",
        missing.stderr
    );
    let created = common::run_binary(
        &["check-config", "--connect", "--create-task-key"],
        Some(&world.config),
    );
    assert_eq!(created.status, 0, "{}", created.stderr);

    let full = world.sync();
    assert_eq!(
        stream_of(&full, "hubspot", "partners")["read"].as_u64(),
        Some(world.hubspot_total("companies", json!([])))
    );
    assert_eq!(
        stream_of(&full, "hubspot", "contacts")["read"].as_u64(),
        Some(world.hubspot_total("contacts", json!([])))
    );
    assert_eq!(
        stream_of(&full, "hubspot", "referrals")["read"].as_u64(),
        Some(world.hubspot_total("deals", json!([])))
    );
    std::thread::sleep(Duration::from_secs(3));
    let quiet = world.sync();
    assert_eq!(stream_of(&quiet, "hubspot", "referrals")["read"], 0);
    assert_eq!(
        stream_of(&quiet, "hubspot", "referrals")["api_calls"],
        1,
        "an incremental pull with no change is one search"
    );

    let company =
        world.hubspot("GET", "/crm/v3/objects/companies?limit=1", None)["results"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
    let intents: Vec<TaskIntent> = (0..250)
        .map(|i| TaskIntent {
            key: format!("test:hubspot:{i}"),
            owner_id: None,
            about_id: company.clone(),
            subject: format!("Call the partner ({i})"),
            description: "no touch in 60 days".to_string(),
            due: chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
            priority: TaskPriority::Normal,
            kind: TaskKind::Call,
            completed: false,
        })
        .collect();
    {
        let ledger = Ledger::open(&world.ledger(), Duration::from_secs(5)).unwrap();
        assert_eq!(
            enqueue(
                ledger.connection(),
                CrmSystem::Hubspot,
                &intents,
                "2026-11-27T00:00:00Z"
            )
            .unwrap(),
            250
        );
    }
    let first = world.sync();
    let push = first["push"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["system"] == "hubspot")
        .unwrap();
    assert_eq!(
        (push["stored"].as_u64(), push["created"].as_u64()),
        (Some(250), Some(250)),
        "{push}"
    );
    rusqlite::Connection::open(world.ledger())
        .unwrap()
        .execute(
            "UPDATE outbox SET status = 'pending' WHERE system = 'hubspot'",
            [],
        )
        .unwrap();
    let again = world.sync();
    let push = again["push"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["system"] == "hubspot")
        .unwrap();
    assert_eq!(
        (push["stored"].as_u64(), push["created"].as_u64()),
        (Some(250), Some(0)),
        "{push}"
    );
    let keyed =
        json!([{"filters": [{"propertyName": "refbridge_key", "operator": "HAS_PROPERTY"}]}]);
    assert_eq!(
        world.hubspot_total("tasks", keyed),
        250,
        "exactly one task per key"
    );
    let associated = world.hubspot(
        "GET",
        &format!("/crm/v4/objects/companies/{company}/associations/tasks?limit=500"),
        None,
    );
    assert_eq!(
        associated["results"].as_array().unwrap().len(),
        250,
        "each task is associated to its company"
    );

    // An archived company is found by the reconciliation pass (search never returns it).
    let archived =
        world.hubspot("GET", "/crm/v3/objects/companies?limit=2", None)["results"][1]["id"]
            .as_str()
            .unwrap()
            .to_string();
    world.hubspot(
        "DELETE",
        &format!("/crm/v3/objects/companies/{archived}"),
        None,
    );
    let output = common::run_binary(
        &["sync", "--once", "--json", "--reconcile"],
        Some(&world.config),
    );
    assert_eq!(output.status, 0, "{}", output.stderr);
    let report = output.json();
    let partners = report["pulled"]["reconciled"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["system"] == "hubspot" && s["stream"] == "partners")
        .unwrap();
    assert_eq!(partners["deleted"], 1, "{partners}");
    assert_eq!(
        ledger_count(
            &world.ledger(),
            &format!(
                "SELECT deleted FROM crm_record WHERE system = 'hubspot' AND external_id = '{archived}'"
            )
        ),
        1
    );
}
