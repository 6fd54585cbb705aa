//! The Salesforce client against the sandbox over loopback HTTP: full and incremental pulls with
//! their call counts, the shared-SystemModstamp page boundary, a resumed pull, deletes, SOQL
//! escaping, faults and token expiry, push idempotency, the quota reserve, logins and the
//! healthcheck.

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use refbridge_model::crm::RetryPolicy;
use refbridge_model::crm::{
    CrmRecord, CrmRecordBody, Cursor, PulledPage, PushResult, StreamKind, TaskIntent, TaskKind,
    TaskPriority,
};
use refbridge_salesforce::sandbox::{RunningSandbox, SandboxOptions, start};
use refbridge_salesforce::{
    AuthConfig, AuthMethod, FilterCondition, FilterOp, FilterValue, PullError, SalesforceClient,
    SalesforceConfig, SalesforceError, SalesforceSecrets,
};
use refbridge_synthetic::{Scale, World, WorldSpec};
use serde_json::{Value, json};

const PRIVATE_KEY: &str = include_str!("data/jwt_test_key.pem");
const PUBLIC_KEY: &str = include_str!("data/jwt_test_key.pub.pem");

fn world() -> World {
    refbridge_synthetic::generate(WorldSpec {
        seed: 11,
        scale: Scale::Small,
        as_of: NaiveDate::from_ymd_opt(2026, 5, 20).unwrap(),
    })
}

async fn sandbox(options: SandboxOptions) -> RunningSandbox {
    start(Arc::new(world()), options)
        .await
        .expect("sandbox starts")
}

/// Short delays so that fault tests stay fast; generous retries so that they stay green.
fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_retries: 12,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    }
}

/// A refresh-token config for the sandbox, with the secrets it needs.
fn refresh_config(sandbox: &RunningSandbox) -> (SalesforceConfig, SalesforceSecrets) {
    let credentials = sandbox.credentials();
    let mut config = SalesforceConfig::new(
        sandbox.base_url(),
        AuthConfig {
            method: AuthMethod::RefreshToken,
            client_id: credentials["client_id"].as_str().unwrap().to_string(),
            username: None,
            private_key_file: None,
            client_secret_file: Some("/run/credentials/refbridge/sf_secret".into()),
            refresh_token_file: Some("/run/credentials/refbridge/sf_refresh".into()),
        },
    );
    config.login_url = sandbox.base_url().to_string();
    config.settle_lag_seconds = 0;
    let secrets = SalesforceSecrets {
        private_key_pem: None,
        client_secret: Some(
            credentials["client_secret"]
                .as_str()
                .unwrap()
                .as_bytes()
                .to_vec(),
        ),
        refresh_token: Some(
            format!("{}\n", credentials["refresh_token"].as_str().unwrap()).into_bytes(),
        ),
    };
    (config, secrets)
}

fn client(config: SalesforceConfig, secrets: SalesforceSecrets) -> SalesforceClient {
    SalesforceClient::with_policy(config, secrets, Some(fast_policy())).expect("client builds")
}

/// A pull's pages, flattened.
struct Pulled {
    records: Vec<CrmRecord>,
    pages: Vec<(usize, Option<Cursor>, u32)>,
    cursor: Option<Cursor>,
    api_calls: u32,
}

async fn pull(client: &SalesforceClient, stream: StreamKind, after: Option<&Cursor>) -> Pulled {
    let mut records = Vec::new();
    let mut pages = Vec::new();
    let summary = client
        .pull(stream, after, Utc::now(), &mut |page: PulledPage| {
            pages.push((page.records.len(), page.cursor.clone(), page.api_calls));
            records.extend(page.records);
            Ok::<(), Infallible>(())
        })
        .await
        .unwrap_or_else(|error| panic!("{stream:?}: {error}"));
    assert_eq!(
        pages.iter().map(|page| page.2).sum::<u32>(),
        summary.api_calls,
        "pages account for every call"
    );
    Pulled {
        records,
        pages,
        cursor: summary.cursor_after,
        api_calls: summary.api_calls,
    }
}

/// Raw REST calls for the test's own edits and counts.
struct Rest {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Rest {
    fn new(sandbox: &RunningSandbox) -> Rest {
        Rest {
            http: reqwest::Client::new(),
            base: sandbox.base_url().to_string(),
            token: sandbox.credentials()["access_token"]
                .as_str()
                .unwrap()
                .to_string(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method, format!("{}/services/data/v62.0/{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{status}: {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    async fn query(&self, soql: &str) -> Value {
        let path = format!("query?q={}", urlencode(soql));
        self.call(reqwest::Method::GET, &path, None).await
    }

    async fn count(&self, soql: &str) -> u64 {
        self.query(soql).await["totalSize"].as_u64().unwrap()
    }

    async fn admin(&self, path: &str, body: &str) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn ids(records: &[CrmRecord]) -> Vec<String> {
    records.iter().map(|record| record.id.clone()).collect()
}

#[tokio::test]
async fn a_full_pull_of_every_stream_matches_the_sandbox_with_the_fewest_calls() {
    let world = world();
    let sandbox = sandbox(SandboxOptions::default()).await;
    let rest = Rest::new(&sandbox);
    let (config, secrets) = refresh_config(&sandbox);
    let client = client(config, secrets);
    let tasks = rest.count("SELECT COUNT() FROM Task").await as usize;
    let events = rest.count("SELECT COUNT() FROM Event").await as usize;
    let expected = [
        (StreamKind::Owners, world.reps.len() + 1, 1),
        (StreamKind::Partners, world.partners.len(), 1),
        (StreamKind::Contacts, world.contacts.len(), 1),
        (
            StreamKind::Referrals,
            world.referrals.len(),
            world.referrals.len().div_ceil(2000) as u32,
        ),
        (
            StreamKind::Activities,
            tasks + events,
            (tasks.div_ceil(2000) + events.div_ceil(2000)) as u32,
        ),
        (StreamKind::Tasks, 0, 1),
    ];
    assert_eq!(tasks + events, world.activities.len());
    let mut cursors = BTreeMap::new();
    for (stream, count, calls) in expected {
        let pulled = pull(&client, stream, None).await;
        assert_eq!(pulled.records.len(), count, "{stream:?}");
        assert_eq!(pulled.api_calls, calls, "{stream:?}");
        let unique: HashSet<String> = ids(&pulled.records).into_iter().collect();
        assert_eq!(unique.len(), count, "{stream:?} has no duplicates");
        assert!(pulled.records.iter().all(|record| !record.deleted));
        cursors.insert(stream.as_str(), pulled.cursor);
        match stream {
            StreamKind::Partners => {
                let names: HashSet<String> = pulled
                    .records
                    .iter()
                    .filter_map(|record| match &record.body {
                        CrmRecordBody::Partner(partner) => Some(partner.name.clone()),
                        _ => None,
                    })
                    .collect();
                for partner in &world.partners {
                    assert!(names.contains(&partner.name), "{}", partner.name);
                }
                let with_npi = pulled
                    .records
                    .iter()
                    .filter(|record| {
                        matches!(&record.body, CrmRecordBody::Partner(partner) if partner.npi.is_some())
                    })
                    .count();
                assert_eq!(
                    with_npi,
                    world.partners.iter().filter(|p| p.npi.is_some()).count()
                );
            }
            StreamKind::Owners => {
                let inactive = pulled
                    .records
                    .iter()
                    .filter(|record| {
                        matches!(&record.body, CrmRecordBody::Owner(owner) if !owner.active)
                    })
                    .count();
                assert_eq!(
                    inactive,
                    world.reps.iter().filter(|rep| !rep.active).count()
                );
            }
            StreamKind::Referrals => {
                let outbound = pulled
                    .records
                    .iter()
                    .filter(|record| {
                        matches!(&record.body, CrmRecordBody::Referral(referral)
                            if referral.direction == refbridge_model::Direction::Out
                                && referral.partner_id.is_some()
                                && referral.disposition.is_some())
                    })
                    .count();
                assert_eq!(
                    outbound,
                    world
                        .referrals
                        .iter()
                        .filter(|referral| referral.direction == refbridge_synthetic::Direction::Out)
                        .count()
                );
            }
            _ => {}
        }
    }
    // Nothing changed: one query per object.
    for stream in StreamKind::ALL {
        let after = cursors[stream.as_str()].clone();
        let pulled = pull(&client, stream, after.as_ref()).await;
        assert!(pulled.records.is_empty(), "{stream:?}");
        let objects = if stream == StreamKind::Activities {
            2
        } else {
            1
        };
        assert_eq!(pulled.api_calls, objects, "{stream:?}");
        assert_eq!(pulled.pages, vec![(0, None, objects)]);
    }
    assert!(
        client
            .quota_usage()
            .is_some_and(|usage| usage.limit == 15_000)
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn an_incremental_pull_sees_exactly_the_edits_across_a_shared_modstamp_and_resumes() {
    let sandbox = sandbox(SandboxOptions::default()).await;
    let rest = Rest::new(&sandbox);
    let (mut config, secrets) = refresh_config(&sandbox);
    config.page_size = 200;
    let client = client(config, secrets);
    let full = pull(&client, StreamKind::Referrals, None).await;
    assert!(full.records.len() >= 260, "the world has enough referrals");
    let ids = ids(&full.records);

    // Two Collections updates: 150 rows share one SystemModstamp, 100 rows share another, so the
    // 200-row page boundary cuts through the second group.
    let update = |chunk: &[String], payer: &str| {
        json!({"allOrNone": true, "records": chunk.iter().map(|id| json!({
            "attributes": {"type": "Opportunity"}, "Id": id, "Payer__c": payer,
        })).collect::<Vec<_>>()})
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    rest.call(
        reqwest::Method::PATCH,
        "composite/sobjects",
        Some(update(&ids[..150], "Cigna")),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    rest.call(
        reqwest::Method::PATCH,
        "composite/sobjects",
        Some(update(&ids[150..250], "Aetna")),
    )
    .await;
    // A delete and a new record.
    rest.call(
        reqwest::Method::DELETE,
        &format!("sobjects/Opportunity/{}", ids[255]),
        None,
    )
    .await;
    let created = rest
        .call(
            reqwest::Method::POST,
            "sobjects/Opportunity",
            Some(
                json!({"Name": "Inquiry NEW-1", "StageName": "Pending", "CloseDate": "2026-06-01",
                "Inquiry_Id__c": "NEW-1", "Direction__c": "Inbound"}),
            ),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut expected: HashSet<String> = ids[..250].iter().cloned().collect();
    expected.insert(ids[255].clone());
    expected.insert(created.clone());

    // A run that dies after its first page commits only that page and its cursor.
    let mut committed: Vec<CrmRecord> = Vec::new();
    let mut committed_cursor = full.cursor.clone();
    let mut pages_seen = 0;
    let result = client
        .pull(
            StreamKind::Referrals,
            full.cursor.as_ref(),
            Utc::now(),
            &mut |page: PulledPage| {
                pages_seen += 1;
                if pages_seen == 2 {
                    return Err(std::io::Error::other("killed between pages"));
                }
                committed.extend(page.records);
                committed_cursor = page.cursor;
                Ok(())
            },
        )
        .await;
    assert!(matches!(result, Err(PullError::Sink(_))));
    assert_eq!(committed.len(), 200);
    let first_page: HashSet<String> = committed.iter().map(|r| r.id.clone()).collect();
    let boundary = committed_cursor.clone().unwrap();
    let shared = committed
        .iter()
        .filter(|record| record.modified_at == boundary.modified_at)
        .count();
    assert_eq!(shared, 50, "the page ends inside the second group");

    // The next run resumes from the committed cursor and reads exactly the rest.
    let rest_of_it = pull(&client, StreamKind::Referrals, committed_cursor.as_ref()).await;
    let second: HashSet<String> = rest_of_it.records.iter().map(|r| r.id.clone()).collect();
    assert!(first_page.is_disjoint(&second), "no record is read twice");
    assert_eq!(rest_of_it.records.len(), 52);
    let all: HashSet<String> = first_page.union(&second).cloned().collect();
    assert_eq!(all, expected);
    let deleted: Vec<&CrmRecord> = rest_of_it.records.iter().filter(|r| r.deleted).collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].id, ids[255]);
    let later = rest_of_it
        .records
        .iter()
        .filter(|record| record.modified_at == boundary.modified_at)
        .count();
    assert_eq!(
        later, 50,
        "the other half of the shared SystemModstamp is on the next run"
    );

    // And a pull after that finds nothing, for one call.
    let quiet = pull(&client, StreamKind::Referrals, rest_of_it.cursor.as_ref()).await;
    assert_eq!((quiet.records.len(), quiet.api_calls), (0, 1));

    // The reconciliation pass sees every live id and the deletion.
    let live: HashSet<String> = client
        .reconcile_ids(StreamKind::Referrals)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(live.len(), full.records.len());
    assert!(!live.contains(&ids[255]) && live.contains(&created));
    let gone = client
        .recently_deleted(
            StreamKind::Referrals,
            Utc::now() - chrono::Duration::days(1),
            Utc::now() + chrono::Duration::minutes(1),
        )
        .await
        .unwrap();
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].id, ids[255]);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn an_apostrophe_and_a_backslash_round_trip_through_a_soql_filter() {
    let sandbox = sandbox(SandboxOptions::default()).await;
    let rest = Rest::new(&sandbox);
    let name = "O'Brien \\ Sons \"Recovery\"\nAnnex";
    rest.call(
        reqwest::Method::POST,
        "sobjects/Account",
        Some(json!({"Name": name})),
    )
    .await;
    rest.call(
        reqwest::Method::POST,
        "sobjects/Account",
        Some(json!({"Name": "O'Brien \\ Sons"})),
    )
    .await;
    let (mut config, secrets) = refresh_config(&sandbox);
    config.mapping.filters.partners = vec![FilterCondition {
        field: "Name".to_string(),
        op: FilterOp::Eq,
        value: FilterValue::Text(name.to_string()),
    }];
    let client = client(config, secrets);
    let pulled = pull(&client, StreamKind::Partners, None).await;
    assert_eq!(pulled.records.len(), 1);
    let CrmRecordBody::Partner(partner) = &pulled.records[0].body else {
        panic!()
    };
    assert_eq!(partner.name, name);
    sandbox.shutdown().await;
}

/// Every stream, as (id, modstamp, deleted) per stream.
async fn snapshot(
    client: &SalesforceClient,
    pause: Duration,
) -> BTreeMap<&'static str, Vec<(String, String, bool)>> {
    let mut all = BTreeMap::new();
    for stream in StreamKind::ALL {
        let pulled = pull(client, stream, None).await;
        let mut rows: Vec<(String, String, bool)> = pulled
            .records
            .iter()
            .map(|r| (r.id.clone(), r.modified_at.to_rfc3339(), r.deleted))
            .collect();
        rows.sort();
        all.insert(stream.as_str(), rows);
        tokio::time::sleep(pause).await;
    }
    all
}

#[tokio::test]
async fn with_faults_and_expiring_tokens_a_pull_gives_the_fault_free_records() {
    let sandbox = sandbox(SandboxOptions::default()).await;
    let rest = Rest::new(&sandbox);
    let (mut config, secrets) = refresh_config(&sandbox);
    config.page_size = 200;
    let clean = client(config.clone(), secrets.clone());
    let expected = snapshot(&clean, Duration::ZERO).await;

    rest.admin(
        "/__admin/faults",
        "429=0.1,500=0.1,503=0.1,reset=0.1,token_ttl_seconds=2,retry_after_seconds=1,seed=7",
    )
    .await;
    let faulty = client(config, secrets);
    let got = snapshot(&faulty, Duration::from_millis(700)).await;
    assert_eq!(got, expected);
    assert!(
        faulty.token_requests() >= 2,
        "tokens expired and were refreshed ({})",
        faulty.token_requests()
    );
    assert!(
        faulty.api_calls() > clean.api_calls(),
        "faults cost retries"
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_refused_session_is_refreshed_once_and_the_request_retried() {
    let sandbox = sandbox(SandboxOptions::default()).await;
    let rest = Rest::new(&sandbox);
    let (config, secrets) = refresh_config(&sandbox);
    let client = client(config, secrets);
    let first = pull(&client, StreamKind::Owners, None).await;
    assert_eq!(client.token_requests(), 1);
    rest.admin("/__admin/expire-tokens", "").await;
    let again = pull(&client, StreamKind::Owners, None).await;
    assert_eq!(ids(&again.records), ids(&first.records));
    assert_eq!(client.token_requests(), 2);
    sandbox.shutdown().await;
}

fn intents(accounts: &[String], owner: &str, count: usize) -> Vec<TaskIntent> {
    (0..count)
        .map(|index| TaskIntent {
            key: format!("decline:{}:2026-05", index),
            owner_id: Some(owner.to_string()),
            about_id: accounts[index % accounts.len()].clone(),
            subject: format!(
                "Partner {index}: 1 referral in 45 days vs 4.2/month — schedule a visit"
            ),
            description: "Declining referrals.".to_string(),
            due: NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
            priority: [TaskPriority::High, TaskPriority::Normal, TaskPriority::Low][index % 3],
            kind: [TaskKind::Call, TaskKind::Meeting, TaskKind::Todo][index % 3],
            completed: false,
        })
        .collect()
}

#[tokio::test]
async fn a_push_repeated_after_a_crash_leaves_exactly_one_task_per_key() {
    let sandbox = sandbox(SandboxOptions::default()).await;
    let rest = Rest::new(&sandbox);
    let accounts: Vec<String> = rest.query("SELECT Id FROM Account").await["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["Id"].as_str().unwrap().to_string())
        .collect();
    let active = rest
        .query("SELECT Id FROM User WHERE IsActive = true")
        .await["records"][0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let inactive = rest
        .query("SELECT Id FROM User WHERE IsActive = false")
        .await["records"][0]["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let (mut config, secrets) = refresh_config(&sandbox);
    config.queue_owner_id = Some(active.clone());
    let client = client(config, secrets);

    let mut wanted = intents(&accounts, &active, 450);
    wanted[7].owner_id = Some(inactive.clone());
    let before = client.api_calls();
    let results = client.push(&wanted).await.unwrap();
    assert_eq!(
        client.api_calls() - before,
        3 + 1,
        "three batches and one owner fallback"
    );
    assert_eq!(results.len(), 450);
    let mut task_ids = Vec::new();
    for (result, intent) in results.iter().zip(&wanted) {
        match result {
            PushResult::Stored {
                key,
                task_id,
                created: true,
            } if *key == intent.key => task_ids.push(task_id.clone()),
            other => panic!("{other:?}"),
        }
    }
    let fallback = rest
        .query(&format!(
            "SELECT OwnerId FROM Task WHERE Id = '{}'",
            task_ids[7]
        ))
        .await;
    assert_eq!(fallback["records"][0]["OwnerId"], active.as_str());

    // The same intents again, through resets that cut answers after the write: updates only.
    rest.admin("/__admin/faults", "reset=0.5,seed=3").await;
    wanted[3].completed = true;
    let results = client.push(&wanted).await.unwrap();
    rest.admin("/__admin/faults", "").await;
    for (result, task_id) in results.iter().zip(&task_ids) {
        match result {
            PushResult::Stored {
                task_id: again,
                created: false,
                ..
            } => assert_eq!(again, task_id),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        rest.count("SELECT COUNT() FROM Task WHERE Refbridge_Key__c != null")
            .await,
        450
    );
    assert_eq!(
        rest.count("SELECT COUNT() FROM Task WHERE Refbridge_Key__c != null AND Type = 'Meeting'")
            .await,
        150,
        "each task carries its kind"
    );
    let closed = pull(&client, StreamKind::Tasks, None).await;
    assert_eq!(closed.records.len(), 450);
    let completed: Vec<String> = closed
        .records
        .iter()
        .filter_map(|record| match &record.body {
            CrmRecordBody::Task(task) if task.completed => Some(task.key.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(completed, vec![wanted[3].key.clone()]);
    // refbridge's own tasks are not touches.
    let before = pull(&client, StreamKind::Activities, None)
        .await
        .records
        .len();
    assert_eq!(
        before,
        rest.count("SELECT COUNT() FROM Task WHERE Refbridge_Key__c = null")
            .await as usize
            + rest.count("SELECT COUNT() FROM Event").await as usize
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn pulling_stops_at_the_quota_share_and_leaves_the_rest_for_push() {
    let sandbox = sandbox(SandboxOptions {
        daily_api_limit: 10,
        ..SandboxOptions::default()
    })
    .await;
    let (mut config, secrets) = refresh_config(&sandbox);
    config.quota_stop_share = 0.5;
    let client = client(config, secrets);
    let mut stopped = None;
    for _ in 0..10 {
        let result = client
            .pull(StreamKind::Owners, None, Utc::now(), &mut |_| {
                Ok::<(), Infallible>(())
            })
            .await;
        if let Err(error) = result {
            stopped = Some(error);
            break;
        }
    }
    match stopped {
        Some(PullError::Salesforce(error @ SalesforceError::QuotaReserve { .. })) => {
            assert!(error.is_quota());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(client.api_calls(), 5);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_refused_refresh_token_is_a_config_error_that_says_what_to_fix() {
    let sandbox = sandbox(SandboxOptions::default()).await;
    let (config, mut secrets) = refresh_config(&sandbox);
    secrets.refresh_token = Some(b"5Aep-revoked".to_vec());
    let client = client(config, secrets);
    let error = client
        .pull(StreamKind::Owners, None, Utc::now(), &mut |_| {
            Ok::<(), Infallible>(())
        })
        .await
        .unwrap_err();
    let PullError::Salesforce(SalesforceError::Config(message)) = &error else {
        panic!("{error:?}")
    };
    assert!(message.contains("invalid_grant"), "{message}");
    assert!(message.contains("auth.refresh_token_file"), "{message}");
    assert!(!message.contains("5Aep"), "the token never shows");
    assert_eq!(client.token_requests(), 1, "no retry loop");
    assert_eq!(client.api_calls(), 0);
    let problems = client.healthcheck().await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("login failed"), "{problems:?}");
    sandbox.shutdown().await;
}

#[tokio::test]
async fn jwt_bearer_and_client_credentials_log_in_and_the_healthcheck_passes() {
    let sandbox = sandbox(SandboxOptions {
        jwt_public_key_pem: Some(PUBLIC_KEY.to_string()),
        ..SandboxOptions::default()
    })
    .await;
    let credentials = sandbox.credentials();
    let (base, _) = refresh_config(&sandbox);
    let mut jwt = base.clone();
    jwt.auth = AuthConfig {
        method: AuthMethod::JwtBearer,
        client_id: credentials["client_id"].as_str().unwrap().to_string(),
        username: Some(credentials["username"].as_str().unwrap().to_string()),
        private_key_file: Some("/run/credentials/refbridge/sf.pem".into()),
        client_secret_file: None,
        refresh_token_file: None,
    };
    let client_jwt = client(
        jwt,
        SalesforceSecrets {
            private_key_pem: Some(PRIVATE_KEY.as_bytes().to_vec()),
            ..SalesforceSecrets::default()
        },
    );
    assert_eq!(client_jwt.healthcheck().await, Vec::<String>::new());
    assert!(
        !pull(&client_jwt, StreamKind::Owners, None)
            .await
            .records
            .is_empty()
    );

    let mut client_credentials = base.clone();
    client_credentials.auth.method = AuthMethod::ClientCredentials;
    client_credentials.auth.refresh_token_file = None;
    let client_cc = client(
        client_credentials,
        SalesforceSecrets {
            client_secret: Some(
                credentials["client_secret"]
                    .as_str()
                    .unwrap()
                    .as_bytes()
                    .to_vec(),
            ),
            ..SalesforceSecrets::default()
        },
    );
    assert_eq!(client_cc.healthcheck().await, Vec::<String>::new());
    sandbox.shutdown().await;
}

#[tokio::test]
async fn the_healthcheck_names_each_missing_field_and_a_non_unique_external_id() {
    let sandbox = sandbox(SandboxOptions::default()).await;
    let (mut config, secrets) = refresh_config(&sandbox);
    config.mapping.partner.npi = "NPI_Number__c".to_string();
    config.mapping.task.external_id = "Subject".to_string();
    config.api_version = "12.0".to_string();
    let client = client(config, secrets);
    let problems = client.healthcheck().await;
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].contains("api_version 12.0"));
    assert!(
        problems
            .iter()
            .any(|line| line.contains("Account.NPI_Number__c"))
    );
    assert!(
        problems
            .iter()
            .any(|line| line.contains("Task.Subject") && line.contains("Unique"))
    );
    sandbox.shutdown().await;
}
