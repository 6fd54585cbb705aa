//! The whole cycle through the binary (`sync --once`): both CRM sandboxes and the EHR inbox in,
//! identity, health, rules and routing, tasks out — then a second cycle that changes nothing,
//! `plan` agreeing, and no patient value in anything sent to a CRM.

mod common;

use std::collections::{BTreeMap, HashSet};

use common::sandbox::World;
use serde_json::Value;

fn today() -> String {
    chrono::Utc::now().date_naive().to_string()
}

/// Every patient value in the generic CSV export (the columns refbridge must never keep).
fn patient_values(csv_path: &std::path::Path) -> HashSet<String> {
    let mut reader = csv::Reader::from_path(csv_path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let patient_columns: Vec<usize> = headers
        .iter()
        .enumerate()
        .filter(|(_, name)| {
            matches!(
                *name,
                "mrn" | "patient_name" | "birth_date" | "patient_phone" | "patient_address"
            )
        })
        .map(|(index, _)| index)
        .collect();
    assert_eq!(patient_columns.len(), 5);
    let mut values = HashSet::new();
    for record in reader.records() {
        let record = record.unwrap();
        for &column in &patient_columns {
            let value = record[column].trim();
            if value.len() >= 6 {
                values.insert(value.to_string());
            }
        }
    }
    values
}

fn outbox(world: &World) -> Vec<(String, String, Option<String>, Value)> {
    let connection = rusqlite::Connection::open(world.ledger()).unwrap();
    let mut statement = connection
        .prepare("SELECT system, key, crm_task_id, intent FROM outbox ORDER BY system, key")
        .unwrap();
    statement
        .query_map([], |row| {
            let intent: String = row.get(3)?;
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                serde_json::from_str(&intent).unwrap(),
            ))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

#[test]
fn a_cycle_pushes_the_right_few_tasks_once_and_a_second_cycle_changes_nothing() {
    let today = today();
    let world = World::start(&["--as-of", &today, "--export-dir", "{state}/inbox"]);
    let csv_path = world.config.with_extension("d").join("inbox/referrals.csv");
    let canaries = patient_values(&csv_path);
    assert!(canaries.len() > 100, "the export carries patient values");

    let ready = common::run_binary(
        &["check-config", "--connect", "--create-task-key"],
        Some(&world.config),
    );
    assert_eq!(ready.status, 0, "{}", ready.stdout);
    // Every condition opens at once here (the budget has its own test below).
    let mut text = std::fs::read_to_string(&world.config).unwrap();
    text.push_str("\n[rules]\ndaily_budget_per_rep = 100\n");
    std::fs::write(&world.config, &text).unwrap();
    let first = world.sync();
    let evaluation = &first["evaluation"];
    assert_eq!(evaluation["plan"]["waiting"].as_array().unwrap().len(), 0);
    assert!(
        evaluation["identity"]["partners_live"].as_u64().unwrap() > 10,
        "{evaluation}"
    );
    assert!(evaluation["health"]["partners"].as_u64().unwrap() > 10);
    let created = evaluation["plan"]["create"].as_array().unwrap();
    assert!(
        !created.is_empty(),
        "a synthetic world has stories to act on"
    );
    let rules: HashSet<&str> = created
        .iter()
        .map(|t| t["rule"].as_str().unwrap())
        .collect();
    for rule in ["silent", "unowned", "refer_out", "placement_follow_up"] {
        assert!(rules.contains(rule), "no {rule} task in {rules:?}");
    }
    // Refer-out tasks sit on the lead and list partners by fit, in words without patient values.
    let refer_out = created.iter().find(|t| t["rule"] == "refer_out").unwrap();
    assert!(
        refer_out["title"]
            .as_str()
            .unwrap()
            .starts_with("Refer out: ")
    );
    // Every intent reached its CRM, once.
    for push in first["push"].as_array().unwrap() {
        assert_eq!(push["retryable"], 0, "{push}");
        assert_eq!(push["permanent"], 0, "{push}");
        assert_eq!(push["stored"], push["intents"], "{push}");
    }
    let rows = outbox(&world);
    assert_eq!(rows.len(), created.len());
    assert!(rows.iter().all(|(_, _, task_id, _)| task_id.is_some()));
    let salesforce_rows = rows.iter().filter(|r| r.0 == "salesforce").count() as u64;
    let hubspot_rows = rows.iter().filter(|r| r.0 == "hubspot").count() as u64;
    assert!(
        salesforce_rows > 0 && hubspot_rows > 0,
        "both CRMs get tasks"
    );
    assert_eq!(
        world.count("SELECT COUNT() FROM Task WHERE Refbridge_Key__c != null"),
        salesforce_rows
    );
    assert_eq!(
        world.hubspot_total(
            "tasks",
            serde_json::json!([{"filters": [{"propertyName": "refbridge_key", "operator": "HAS_PROPERTY"}]}])
        ),
        hubspot_rows
    );
    let status = common::run_binary(&["status", "--json"], Some(&world.config)).json();
    let open: u64 = status["outbox"]["alerts"]
        .as_object()
        .unwrap()
        .values()
        .map(|states| states["open"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(open, created.len() as u64, "status counts the open alerts");

    // Task words: partner-level facts only; never a patient value, never reciprocity advice.
    let sent: Vec<String> = rows
        .iter()
        .map(|(_, _, _, intent)| {
            format!(
                "{}\n{}",
                intent["subject"].as_str().unwrap(),
                intent["description"].as_str().unwrap()
            )
        })
        .collect();
    let lead_task = rows
        .iter()
        .find(|(_, key, _, _)| key.starts_with("refer_out:"))
        .unwrap();
    let options = lead_task.3["description"].as_str().unwrap();
    assert!(
        options.contains("1. ") && options.contains("by fit only"),
        "{options}"
    );
    for patient_fact in [
        "Aetna", "Cigna", "Humana", "Medicaid", "Medicare", "ASAM", "3.7",
    ] {
        assert!(
            !options.contains(patient_fact),
            "{patient_fact} in {options}"
        );
    }
    // One refer-out task per inquiry, although both CRMs hold the lead; and never back to the
    // partner that referred the patient.
    let ledger = rusqlite::Connection::open(world.ledger()).unwrap();
    let mut statement = ledger
        .prepare(
            "SELECT c.inquiry_id, p.name, json_extract(o.intent, '$.description')
             FROM outbox o JOIN crm_referral c
               ON o.key = 'refer_out:lead-' || c.system || '-' || c.crm_id
             JOIN partner p ON p.id = c.partner_id",
        )
        .unwrap();
    let leads: Vec<(String, String, String)> = statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert!(!leads.is_empty());
    let inquiries: HashSet<&str> = leads
        .iter()
        .map(|(inquiry, _, _)| inquiry.as_str())
        .collect();
    assert_eq!(inquiries.len(), leads.len(), "one task per inquiry");
    for (_, referrer, description) in &leads {
        assert!(
            !description.contains(&format!(". {referrer} —")),
            "{description}"
        );
    }
    // Tasks about one referral or lead carry no date in their key (it would date the patient's
    // referral); partner-level ones name the day their episode began.
    for (_, key, _, _) in &rows {
        let dated = key
            .rsplit(':')
            .next()
            .unwrap()
            .parse::<chrono::NaiveDate>()
            .is_ok();
        let per_referral = key.starts_with("refer_out:") || key.starts_with("placement_follow_up:");
        assert_eq!(dated, !per_referral, "{key}");
    }
    for text in &sent {
        let lower = text.to_lowercase();
        assert!(
            !lower.contains("reciproc") && !lower.contains("even things"),
            "{text}"
        );
        for canary in &canaries {
            assert!(
                !text.contains(canary.as_str()),
                "a patient value reached a task: {text}"
            );
        }
    }
    let tasks = world.rest(
        "GET",
        "query?q=SELECT+Subject,Description+FROM+Task+WHERE+Refbridge_Key__c+!=+null",
        None,
    );
    for task in tasks["records"].as_array().unwrap() {
        let text = format!("{} {}", task["Subject"], task["Description"]);
        assert!(
            canaries
                .iter()
                .all(|canary| !text.contains(canary.as_str()))
        );
    }

    // Again: nothing new to say, nothing sent, nothing duplicated.
    let second = world.sync();
    let plan = &second["evaluation"]["plan"];
    for change in ["create", "update", "close"] {
        assert_eq!(
            plan[change].as_array().unwrap().len(),
            0,
            "{change}: {plan}"
        );
    }
    for push in second["push"].as_array().unwrap() {
        assert_eq!(push["intents"], 0, "{push}");
    }
    assert_eq!(outbox(&world).len(), rows.len());
    assert_eq!(
        world.count("SELECT COUNT() FROM Task WHERE Refbridge_Key__c != null"),
        salesforce_rows
    );

    // The loop closes: a rep assigns an owner (the unowned alert clears, refbridge completes its
    // task) and a rep completes a task whose condition still holds (it stays completed).
    let unowned = rows
        .iter()
        .find(|(system, key, _, _)| system == "salesforce" && key.starts_with("unowned:"))
        .expect("an unowned partner in Salesforce");
    let account = unowned.3["about_id"].as_str().unwrap();
    let rep = world.rest(
        "GET",
        "query?q=SELECT+Id+FROM+User+WHERE+IsActive+=+true+AND+Username+!=+'refbridge@sandbox.example'+LIMIT+1",
        None,
    )["records"][0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    world.rest(
        "PATCH",
        &format!("sobjects/Account/{account}"),
        Some(serde_json::json!({"OwnerId": rep})),
    );
    // A silent partner stays silent when the rep calls (unlike no_touch, which a completed task
    // answers by being a touch).
    let answered = rows
        .iter()
        .find(|(system, key, _, _)| system == "salesforce" && key.starts_with("silent:"))
        .expect("a silent partner in Salesforce");
    let answered_id = answered.2.as_deref().unwrap();
    world.rest(
        "PATCH",
        &format!("sobjects/Task/{answered_id}"),
        Some(serde_json::json!({"Status": "Completed"})),
    );
    std::thread::sleep(std::time::Duration::from_secs(3)); // the settle lag
    let third = world.sync();
    let plan = &third["evaluation"]["plan"];
    let closed: Vec<&str> = plan["close"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(closed, vec![unowned.1.as_str()], "{plan}");
    assert_eq!(plan["answered"], 1, "{plan}");
    let status_of = |id: &str| {
        world.rest("GET", &format!("sobjects/Task/{id}"), None)["Status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(status_of(unowned.2.as_deref().unwrap()), "Completed");
    let fourth = world.sync();
    let plan = &fourth["evaluation"]["plan"];
    assert_eq!(plan["create"].as_array().unwrap().len(), 0, "{plan}");
    assert_eq!(plan["close"].as_array().unwrap().len(), 0, "{plan}");
    assert_eq!(status_of(answered_id), "Completed", "not reopened");

    // `plan` agrees and sends nothing.
    let output = common::run_binary(&["plan", "--json"], Some(&world.config));
    assert_eq!(output.status, 0, "{}", output.stderr);
    let planned = output.json();
    assert_eq!(planned["create"].as_array().unwrap().len(), 0);
    assert_eq!(planned["breaker"]["tripped"], false);
    let text = common::run_binary(&["plan"], Some(&world.config));
    assert!(text.stdout.starts_with("Plan as of "), "{}", text.stdout);
}

#[test]
fn the_circuit_breaker_refuses_a_mass_change_until_it_is_accepted() {
    let today = today();
    let world = World::start(&["--as-of", &today]);
    let ready = common::run_binary(
        &["check-config", "--connect", "--create-task-key"],
        Some(&world.config),
    );
    assert_eq!(ready.status, 0, "{}", ready.stdout);
    let mut text = std::fs::read_to_string(&world.config).unwrap();
    text.push_str("\n[outbox]\nmax_change_share = 0.1\nbreaker_min_open_tasks = 5\n");
    std::fs::write(&world.config, &text).unwrap();
    let first = world.sync();
    let opened = first["evaluation"]["plan"]["create"].as_array().unwrap();
    assert!(opened.len() >= 5, "{}", opened.len());
    // The daily budget: at most five new tasks per rep (or queue) and CRM; the rest wait.
    let mut per_owner: BTreeMap<(String, String), u32> = BTreeMap::new();
    for task in opened {
        let owner = task["owner_id"].as_str().unwrap_or("(queue)").to_string();
        *per_owner
            .entry((task["system"].as_str().unwrap().to_string(), owner))
            .or_default() += 1;
    }
    assert!(per_owner.values().all(|&n| n <= 5), "{per_owner:?}");
    assert!(
        !first["evaluation"]["plan"]["waiting"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Ops turn the biggest rule off: most open tasks would close at once.
    let open_by_rule = |report: &Value| {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for task in report["evaluation"]["plan"]["create"].as_array().unwrap() {
            *counts
                .entry(task["rule"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        counts
    };
    let (biggest, _) = open_by_rule(&first)
        .into_iter()
        .max_by_key(|(_, count)| *count)
        .unwrap();
    text.push_str(&format!("\n[rules.{biggest}]\nenabled = false\n"));
    std::fs::write(&world.config, &text).unwrap();

    let plan = common::run_binary(&["plan"], Some(&world.config));
    assert_eq!(plan.status, 0, "{}", plan.stderr);
    assert!(plan.stdout.contains("CIRCUIT BREAKER"), "{}", plan.stdout);
    let refused = common::run_binary(&["sync", "--once"], Some(&world.config));
    assert_eq!(refused.status, 1, "{}", refused.stdout);
    assert!(
        refused.stderr.contains("circuit breaker refused the plan"),
        "{}",
        refused.stderr
    );
    let tasks_closed = || {
        world.count(
            "SELECT COUNT() FROM Task WHERE Refbridge_Key__c != null AND Status = 'Completed'",
        ) + world.hubspot_total(
            "tasks",
            serde_json::json!([{"filters": [
                {"propertyName": "refbridge_key", "operator": "HAS_PROPERTY"},
                {"propertyName": "hs_task_status", "operator": "EQ", "value": "COMPLETED"}
            ]}]),
        )
    };
    assert_eq!(tasks_closed(), 0, "nothing was closed");

    let accepted = common::run_binary(
        &["sync", "--once", "--json", "--allow-mass-change"],
        Some(&world.config),
    );
    assert_eq!(accepted.status, 0, "{}", accepted.stderr);
    let closed = accepted.json()["evaluation"]["plan"]["close"]
        .as_array()
        .unwrap()
        .len();
    assert!(closed > 0);
    assert!(tasks_closed() > 0, "the accepted plan reached the CRM");
}
