//! The HubSpot client against the sandbox over loopback HTTP: full pulls equal the world, an
//! incremental pull sees exactly the edits, a crash between pages resumes without loss (full load
//! and search), 25,000 records sharing one millisecond, archived records, faults and expiring
//! OAuth tokens, push idempotency with associations, a missing key property, a revoked refresh
//! token, and the quota reserve.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use refbridge_hubspot::sandbox::{RunningSandbox, SandboxOptions, start};
use refbridge_hubspot::{
    AuthConfig, AuthMethod, HubspotClient, HubspotConfig, HubspotError, HubspotSecrets, PullError,
    PushError,
};
use refbridge_model::crm::{
    CrmRecord, CrmRecordBody, Cursor, PulledPage, PushResult, RetryPolicy, StreamKind, TaskIntent,
    TaskKind, TaskPriority,
};
use refbridge_synthetic::{Activity, ActivityKind, Scale, World, WorldSpec};
use serde_json::{Value, json};

fn world() -> World {
    refbridge_synthetic::generate(WorldSpec {
        seed: 11,
        scale: Scale::Small,
        as_of: NaiveDate::from_ymd_opt(2026, 5, 20).unwrap(),
    })
}

/// Limits raised so that tests are quick; the limit tests set their own.
fn fast_options() -> SandboxOptions {
    SandboxOptions {
        ten_secondly_limit: 100_000,
        search_per_second: 200,
        ..SandboxOptions::default()
    }
}

async fn sandbox_of(world: World, options: SandboxOptions) -> RunningSandbox {
    start(Arc::new(world), options)
        .await
        .expect("sandbox starts")
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_retries: 12,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    }
}

fn private_app(sandbox: &RunningSandbox) -> (HubspotConfig, HubspotSecrets) {
    let mut config = HubspotConfig::new(AuthConfig {
        method: AuthMethod::PrivateApp,
        access_token_file: Some("/run/credentials/refbridge/hubspot_token".into()),
        client_id: None,
        client_secret_file: None,
        refresh_token_file: None,
    });
    config.base_url = sandbox.base_url().to_string();
    config.settle_lag_seconds = 0;
    config.search_per_second = 100;
    let token = sandbox.credentials()["private_app_token"]
        .as_str()
        .unwrap()
        .to_string();
    let secrets = HubspotSecrets {
        access_token: Some(format!("{token}\n").into_bytes()),
        ..HubspotSecrets::default()
    };
    (config, secrets)
}

fn oauth(sandbox: &RunningSandbox) -> (HubspotConfig, HubspotSecrets) {
    let credentials = sandbox.credentials();
    let (mut config, _) = private_app(sandbox);
    config.auth = AuthConfig {
        method: AuthMethod::Oauth,
        access_token_file: None,
        client_id: Some(credentials["client_id"].as_str().unwrap().to_string()),
        client_secret_file: Some("/run/credentials/refbridge/hubspot_secret".into()),
        refresh_token_file: Some("/run/credentials/refbridge/hubspot_refresh".into()),
    };
    let text = |key: &str| Some(credentials[key].as_str().unwrap().as_bytes().to_vec());
    let secrets = HubspotSecrets {
        access_token: None,
        client_secret: text("client_secret"),
        refresh_token: text("refresh_token"),
    };
    (config, secrets)
}

fn client(config: HubspotConfig, secrets: HubspotSecrets) -> HubspotClient {
    HubspotClient::with_policy(config, secrets, Some(fast_policy())).expect("client builds")
}

struct Pulled {
    records: Vec<CrmRecord>,
    pages: usize,
    cursor: Option<Cursor>,
    api_calls: u32,
}

async fn pull(
    client: &HubspotClient,
    stream: StreamKind,
    after: Option<&Cursor>,
    until: DateTime<Utc>,
) -> Pulled {
    let mut records = Vec::new();
    let mut pages = 0;
    let mut calls = 0;
    let summary = client
        .pull(stream, after, until, &mut |page: PulledPage| {
            pages += 1;
            calls += page.api_calls;
            records.extend(page.records);
            Ok::<(), Infallible>(())
        })
        .await
        .unwrap_or_else(|error| panic!("{stream:?}: {error}"));
    assert_eq!(calls, summary.api_calls, "pages account for every call");
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
            token: sandbox.credentials()["private_app_token"]
                .as_str()
                .unwrap()
                .to_string(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
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

    /// Every id of a type (list, 100 a page).
    async fn ids(&self, object_type: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut after = String::new();
        loop {
            let page = self
                .call(
                    reqwest::Method::GET,
                    &format!("/crm/v3/objects/{object_type}?limit=100&after={after}"),
                    None,
                )
                .await;
            for result in page["results"].as_array().unwrap() {
                ids.push(result["id"].as_str().unwrap().to_string());
            }
            match page["paging"]["next"]["after"].as_str() {
                Some(next) => after = next.to_string(),
                None => return ids,
            }
        }
    }

    async fn search_total(&self, object_type: &str, filters: Value) -> u64 {
        self.call(
            reqwest::Method::POST,
            &format!("/crm/v3/objects/{object_type}/search"),
            Some(json!({"filterGroups": [{"filters": filters}], "limit": 1})),
        )
        .await["total"]
            .as_u64()
            .unwrap()
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

fn ids_of(records: &[CrmRecord]) -> HashSet<String> {
    records.iter().map(|record| record.id.clone()).collect()
}

fn later() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::seconds(1)
}

#[tokio::test]
async fn a_full_pull_of_every_stream_equals_the_world() {
    let world = world();
    let sandbox = sandbox_of(world.clone(), fast_options()).await;
    let (config, secrets) = private_app(&sandbox);
    let client = client(config, secrets);
    let activity_types = ["calls", "meetings", "emails", "notes"];
    let pages_of = |count: usize| count.div_ceil(100).max(1) as u32;
    let expected = [
        (StreamKind::Owners, world.reps.len(), 2),
        (
            StreamKind::Partners,
            world.partners.len(),
            pages_of(world.partners.len()),
        ),
        (
            StreamKind::Contacts,
            world.contacts.len(),
            pages_of(world.contacts.len()),
        ),
        (
            StreamKind::Referrals,
            world.referrals.len(),
            pages_of(world.referrals.len()),
        ),
        (StreamKind::Tasks, 0, 1),
    ];
    for (stream, count, calls) in expected {
        let pulled = pull(&client, stream, None, Utc::now()).await;
        assert_eq!(pulled.records.len(), count, "{stream:?}");
        assert_eq!(
            ids_of(&pulled.records).len(),
            count,
            "{stream:?}: no duplicates"
        );
        assert_eq!(
            pulled.api_calls, calls,
            "{stream:?}: one call per list page"
        );
        assert!(pulled.records.iter().all(|record| !record.deleted));
        match stream {
            StreamKind::Partners => {
                let by_name: HashMap<String, &refbridge_model::crm::CrmPartner> = pulled
                    .records
                    .iter()
                    .filter_map(|record| match &record.body {
                        CrmRecordBody::Partner(partner) => Some((partner.name.clone(), partner)),
                        _ => None,
                    })
                    .collect();
                for partner in &world.partners {
                    let pulled = by_name[&partner.name];
                    assert_eq!(
                        pulled.npi.is_some(),
                        partner.npi.is_some(),
                        "{}",
                        partner.name
                    );
                    assert_eq!(pulled.payers_accepted, partner.payers_accepted);
                    assert_eq!(
                        pulled.accepting_referrals,
                        Some(partner.accepting_referrals)
                    );
                    assert_eq!(pulled.owner_id.is_some(), partner.owner.is_some());
                }
            }
            StreamKind::Owners => {
                let inactive = pulled
                    .records
                    .iter()
                    .filter(|record| matches!(&record.body, CrmRecordBody::Owner(o) if !o.active))
                    .count();
                assert_eq!(
                    inactive,
                    world.reps.iter().filter(|rep| !rep.active).count()
                );
            }
            StreamKind::Referrals => {
                // Deal → company through the associations, and stage → disposition.
                let by_inquiry: HashMap<(String, bool), &refbridge_model::crm::CrmReferral> =
                    pulled
                        .records
                        .iter()
                        .filter_map(|record| match &record.body {
                            CrmRecordBody::Referral(referral) => Some((
                                (
                                    referral.inquiry_id.clone().unwrap_or_default(),
                                    referral.direction == refbridge_model::Direction::Out,
                                ),
                                referral,
                            )),
                            _ => None,
                        })
                        .collect();
                let partners_by_name = partner_ids(&client).await;
                for referral in &world.referrals {
                    let out = referral.direction == refbridge_synthetic::Direction::Out;
                    let pulled = by_inquiry[&(referral.inquiry_id.clone(), out)];
                    let partner = &world.partners[referral.partner].name;
                    assert_eq!(
                        pulled.partner_id.as_ref(),
                        Some(&partners_by_name[partner]),
                        "{}",
                        referral.inquiry_id
                    );
                    assert_eq!(
                        pulled.disposition.map(|d| d.as_str()),
                        Some(referral.stage.as_str())
                    );
                    assert_eq!(pulled.payer.as_deref(), Some(referral.payer.as_str()));
                }
            }
            _ => {}
        }
    }
    let activities = pull(&client, StreamKind::Activities, None, Utc::now()).await;
    assert_eq!(activities.records.len(), world.activities.len());
    let rest = Rest::new(&sandbox);
    let mut list_pages = 1; // tasks: one empty page
    for object_type in activity_types {
        list_pages += rest.ids(object_type).await.len().div_ceil(100).max(1) as u32;
    }
    assert_eq!(activities.api_calls, list_pages);
    let visits = activities
        .records
        .iter()
        .filter(|record| matches!(&record.body, CrmRecordBody::Activity(a) if a.kind == "visit" && a.partner_id.is_some()))
        .count();
    assert_eq!(
        visits,
        world
            .activities
            .iter()
            .filter(|activity| activity.kind == ActivityKind::Visit)
            .count()
    );
    assert!(
        activities.records.iter().all(
            |record| matches!(&record.body, CrmRecordBody::Activity(a) if a.partner_id.is_some())
        ),
        "every touch has its company"
    );
    // After a full load, a pull finds nothing new, for one search per object type.
    let quiet = pull(
        &client,
        StreamKind::Activities,
        activities.cursor.as_ref(),
        Utc::now(),
    )
    .await;
    assert_eq!((quiet.records.len(), quiet.pages), (0, 1));
    assert_eq!(
        quiet.api_calls,
        5 + 1,
        "five searches and the key-property check"
    );
    sandbox.shutdown().await;
}

/// Company name → id, through the client.
async fn partner_ids(client: &HubspotClient) -> HashMap<String, String> {
    pull(client, StreamKind::Partners, None, Utc::now())
        .await
        .records
        .iter()
        .filter_map(|record| match &record.body {
            CrmRecordBody::Partner(partner) => Some((partner.name.clone(), partner.id.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn an_incremental_pull_sees_exactly_the_edits_and_a_crash_between_pages_loses_nothing() {
    let sandbox = sandbox_of(world(), fast_options()).await;
    let rest = Rest::new(&sandbox);
    let (mut config, secrets) = private_app(&sandbox);
    config.search_page_size = 50;
    config.list_page_size = 40;
    let client = client(config, secrets);

    // A full load that dies after its second page resumes from the stored list cursor.
    let all = rest.ids("deals").await;
    assert!(
        all.len() > 150,
        "the world has enough deals ({})",
        all.len()
    );
    let mut committed: Vec<CrmRecord> = Vec::new();
    let mut stored_cursor: Option<Cursor> = None;
    let mut seen = 0;
    let result = client
        .pull(
            StreamKind::Referrals,
            None,
            Utc::now(),
            &mut |page: PulledPage| {
                seen += 1;
                if seen == 3 {
                    return Err(std::io::Error::other("killed between pages"));
                }
                committed.extend(page.records);
                stored_cursor = page.cursor;
                Ok(())
            },
        )
        .await;
    assert!(matches!(result, Err(PullError::Sink(_))));
    assert_eq!(committed.len(), 80);
    let resume = stored_cursor.clone().unwrap();
    assert!(resume.id.starts_with("list:0:"), "{resume}");
    let rest_of_load = pull(&client, StreamKind::Referrals, Some(&resume), Utc::now()).await;
    let first = ids_of(&committed);
    let second = ids_of(&rest_of_load.records);
    assert!(first.is_disjoint(&second), "nothing read twice");
    let loaded: HashSet<String> = first.union(&second).cloned().collect();
    assert_eq!(loaded, all.iter().cloned().collect::<HashSet<_>>());
    let after_load = rest_of_load.cursor.unwrap();
    assert_eq!(after_load.id, "", "the load ends on a plain watermark");
    assert_eq!(after_load.modified_at, resume.modified_at);

    // Edits: 120 deals get a new payer (in two batches: 100 and 20 share a millisecond each),
    // one deal is created, and a company (another stream) is created.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let edited: Vec<String> = all[..120].to_vec();
    for chunk in edited.chunks(100) {
        rest.call(
            reqwest::Method::POST,
            "/crm/v3/objects/deals/batch/update",
            Some(json!({"inputs": chunk.iter().map(|id| json!({"id": id, "properties": {"payer": "Refbridge Test Payer"}})).collect::<Vec<_>>()})),
        )
        .await;
    }
    let created = rest
        .call(
            reqwest::Method::POST,
            "/crm/v3/objects/deals",
            Some(
                json!({"properties": {"dealname": "Inquiry NEW-1", "pipeline": "admissions",
                "dealstage": "pending", "inquiry_id": "NEW-1", "referral_direction": "in"}}),
            ),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let elsewhere = rest
        .call(
            reqwest::Method::POST,
            "/crm/v3/objects/companies",
            Some(json!({"properties": {"name": "Not a deal"}})),
        )
        .await;
    assert!(elsewhere["id"].is_string());
    let mut expected: HashSet<String> = edited.iter().cloned().collect();
    expected.insert(created.clone());

    // An incremental run dies after two pages; the next one resumes from the stored cursor.
    let mut committed: Vec<CrmRecord> = Vec::new();
    let mut stored_cursor = Some(after_load.clone());
    let mut seen = 0;
    let result = client
        .pull(
            StreamKind::Referrals,
            Some(&after_load),
            later(),
            &mut |page: PulledPage| {
                seen += 1;
                if seen == 3 {
                    return Err(std::io::Error::other("killed between pages"));
                }
                committed.extend(page.records);
                stored_cursor = page.cursor;
                Ok(())
            },
        )
        .await;
    assert!(matches!(result, Err(PullError::Sink(_))));
    assert!(!committed.is_empty());
    let resumed = pull(
        &client,
        StreamKind::Referrals,
        stored_cursor.as_ref(),
        later(),
    )
    .await;
    let first = ids_of(&committed);
    let second = ids_of(&resumed.records);
    assert!(first.is_disjoint(&second), "nothing read twice");
    let all_read: HashSet<String> = first.union(&second).cloned().collect();
    assert_eq!(all_read, expected, "exactly the edits");
    assert!(
        resumed
            .records
            .iter()
            .chain(&committed)
            .all(|record| match &record.body {
                CrmRecordBody::Referral(referral) =>
                    referral.id == created
                        || referral.payer.as_deref() == Some("Refbridge Test Payer"),
                _ => false,
            })
    );

    // Nothing new: one search, and the cursor stays.
    let quiet = pull(
        &client,
        StreamKind::Referrals,
        resumed.cursor.as_ref(),
        later(),
    )
    .await;
    assert_eq!((quiet.records.len(), quiet.api_calls), (0, 1));
    assert_eq!(quiet.cursor, resumed.cursor);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn twenty_five_thousand_records_sharing_one_millisecond_are_pulled_completely() {
    let mut world = world();
    let shared = Utc.with_ymd_and_hms(2026, 5, 21, 12, 0, 0).unwrap();
    let template = world.activities[0].clone();
    world.activities.extend((0..25_000).map(|index| Activity {
        key: format!("BULK{index:06}"),
        kind: ActivityKind::Note,
        at: shared - chrono::Duration::hours(1),
        subject: "Imported note".to_string(),
        modified_at: shared,
        ..template.clone()
    }));
    let sandbox = sandbox_of(world, fast_options()).await;
    let (config, secrets) = private_app(&sandbox);
    let client = client(config, secrets);
    let before = Cursor {
        modified_at: shared - chrono::Duration::milliseconds(1),
        id: String::new(),
    };
    let started = Instant::now();
    let pulled = pull(&client, StreamKind::Activities, Some(&before), shared).await;
    let notes: Vec<&CrmRecord> = pulled
        .records
        .iter()
        .filter(|record| record.modified_at == shared)
        .collect();
    assert_eq!(notes.len(), 25_000, "every record of the bulk import");
    assert_eq!(
        ids_of(&pulled.records).len(),
        pulled.records.len(),
        "no duplicates"
    );
    assert!(notes.iter().all(|record| matches!(&record.body, CrmRecordBody::Activity(a) if a.kind == "note" && a.partner_id.is_some())));
    assert_eq!(pulled.cursor.as_ref().unwrap().modified_at, shared);
    // Notes: one search whose full page shares one time, 125 full split pages, the empty split
    // query and the main query that ends it (128); one search each for calls, meetings, emails
    // and tasks, the key-property check, and one association read per split page (125).
    assert_eq!(pulled.api_calls, 128 + 4 + 1 + 125);
    eprintln!(
        "25,000 records at one millisecond: {} calls, {:?}",
        pulled.api_calls,
        started.elapsed()
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn archived_records_come_back_as_deleted_and_leave_the_reconciliation_ids() {
    let sandbox = sandbox_of(world(), fast_options()).await;
    let rest = Rest::new(&sandbox);
    let (config, secrets) = private_app(&sandbox);
    let client = client(config, secrets);
    let companies = rest.ids("companies").await;
    for id in &companies[..3] {
        rest.call(
            reqwest::Method::DELETE,
            &format!("/crm/v3/objects/companies/{id}"),
            None,
        )
        .await;
    }
    let live: HashSet<String> = client
        .reconcile_ids(StreamKind::Partners)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(live.len(), companies.len() - 3);
    let mut archived = Vec::new();
    let summary = client
        .pull_archived(StreamKind::Partners, &mut |page: PulledPage| {
            assert!(
                page.cursor.is_none(),
                "archived pages never move the watermark"
            );
            archived.extend(page.records);
            Ok::<(), Infallible>(())
        })
        .await
        .unwrap();
    assert_eq!(summary.deleted, 3);
    assert_eq!(
        ids_of(&archived),
        companies[..3].iter().cloned().collect::<HashSet<_>>()
    );
    assert!(
        archived
            .iter()
            .all(|record| record.deleted && !live.contains(&record.id))
    );
    assert!(
        archived
            .iter()
            .all(|record| matches!(&record.body, CrmRecordBody::Partner(p) if !p.name.is_empty()))
    );
    let deals: HashSet<String> = client
        .reconcile_ids(StreamKind::Referrals)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(deals.len(), rest.ids("deals").await.len());
    sandbox.shutdown().await;
}

/// Every stream as (id, modified, body) — by list from nothing, and by search from long ago.
async fn snapshot(client: &HubspotClient) -> BTreeMap<String, Vec<(String, String, String)>> {
    let long_ago = Cursor {
        modified_at: Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap(),
        id: String::new(),
    };
    let until = Utc::now();
    let mut all = BTreeMap::new();
    for stream in StreamKind::ALL {
        for (how, after) in [("list", None), ("search", Some(&long_ago))] {
            let pulled = pull(client, stream, after, until).await;
            let mut rows: Vec<(String, String, String)> = pulled
                .records
                .iter()
                .map(|r| {
                    (
                        r.id.clone(),
                        r.modified_at.to_rfc3339(),
                        serde_json::to_string(&r.body).unwrap(),
                    )
                })
                .collect();
            rows.sort();
            all.insert(format!("{}:{how}", stream.as_str()), rows);
        }
    }
    all
}

#[tokio::test]
async fn with_faults_and_expiring_oauth_tokens_a_pull_gives_the_fault_free_records() {
    let sandbox = sandbox_of(world(), fast_options()).await;
    let rest = Rest::new(&sandbox);
    let (mut config, secrets) = oauth(&sandbox);
    config.search_page_size = 100;
    let clean = client(config.clone(), secrets.clone());
    let expected = snapshot(&clean).await;
    assert_eq!(
        expected["referrals:list"], expected["referrals:search"],
        "list and search give the same records"
    );
    assert_eq!(expected["activities:list"], expected["activities:search"]);

    rest.admin(
        "/__admin/faults",
        "429=0.05,500=0.05,503=0.05,reset=0.05,token_ttl_seconds=2,retry_after_seconds=1,seed=7",
    )
    .await;
    // Tokens issued from now on live two seconds; expire the one the clean client held too.
    rest.admin("/__admin/expire-tokens", "").await;
    let faulty = client(config, secrets);
    let got = snapshot(&faulty).await;
    rest.admin("/__admin/faults", "").await;
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

fn intents(about: &[String], owner: &str, count: usize) -> Vec<TaskIntent> {
    (0..count)
        .map(|index| TaskIntent {
            key: format!("decline:{index}:2026-05"),
            owner_id: Some(owner.to_string()),
            about_id: about[index % about.len()].clone(),
            subject: format!(
                "Partner {index}: 1 referral in 45 days vs 4.2/month — schedule a visit"
            ),
            description: "Declining referrals.".to_string(),
            due: NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
            priority: [TaskPriority::High, TaskPriority::Normal, TaskPriority::Low][index % 3],
            kind: [TaskKind::Call, TaskKind::Email, TaskKind::Todo][index % 3],
            completed: false,
        })
        .collect()
}

#[tokio::test]
async fn a_push_without_the_key_property_says_how_to_create_it() {
    let sandbox = sandbox_of(world(), fast_options()).await;
    let rest = Rest::new(&sandbox);
    let (config, secrets) = private_app(&sandbox);
    let client = client(config, secrets);
    let problems = client.healthcheck().await;
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].contains("refbridge_key") && problems[0].contains("--create-task-key"));
    let companies = rest.ids("companies").await;
    let owner = first_owner(&rest).await;
    let error = client
        .push(&intents(&companies, &owner, 3))
        .await
        .unwrap_err();
    let PushError::Config(HubspotError::Config(message)) = &error else {
        panic!("{error:?}")
    };
    assert!(
        message.contains("refbridge_key") && message.contains("Require unique values"),
        "{message}"
    );
    client.create_task_key_property().await.unwrap();
    client.create_task_key_property().await.unwrap();
    assert_eq!(client.healthcheck().await, Vec::<String>::new());
    sandbox.shutdown().await;
}

async fn first_owner(rest: &Rest) -> String {
    rest.call(reqwest::Method::GET, "/crm/v3/owners?limit=1", None)
        .await["results"][0]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_push_repeated_after_a_crash_leaves_exactly_one_task_per_key_on_the_right_record() {
    let sandbox = sandbox_of(world(), fast_options()).await;
    let rest = Rest::new(&sandbox);
    let (config, secrets) = private_app(&sandbox);
    let client = client(config, secrets);
    client.create_task_key_property().await.unwrap();
    let companies = rest.ids("companies").await;
    let deals = rest.ids("deals").await;
    let owner = first_owner(&rest).await;
    let mut wanted = intents(&companies, &owner, 250);
    // Two refer-out tasks sit on deals.
    wanted[10].about_id = deals[0].clone();
    wanted[11].about_id = deals[1].clone();

    let (results, calls) = client.push_counted(&wanted).await.unwrap();
    assert_eq!(calls.upserts, 3, "ceil(250 / 100) upserts");
    assert_eq!(
        calls.associations,
        3 + 1,
        "three company batches, one deal batch"
    );
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

    // The same intents again, through resets that cut answers after the write: updates only.
    rest.admin("/__admin/faults", "reset=0.4,seed=3").await;
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
        rest.search_total(
            "tasks",
            json!([{"propertyName": "refbridge_key", "operator": "HAS_PROPERTY"}])
        )
        .await,
        250
    );
    assert_eq!(
        rest.search_total(
            "tasks",
            json!([{"propertyName": "hs_task_type", "operator": "EQ", "value": "EMAIL"}])
        )
        .await,
        83,
        "each task carries its kind"
    );
    for (index, target) in [(0, "companies"), (10, "deals"), (249, "companies")] {
        let linked = rest
            .call(
                reqwest::Method::GET,
                &format!(
                    "/crm/v4/objects/tasks/{}/associations/{target}",
                    task_ids[index]
                ),
                None,
            )
            .await;
        let ids: Vec<String> = linked["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["toObjectId"].to_string())
            .collect();
        assert_eq!(ids, vec![wanted[index].about_id.clone()], "task {index}");
    }
    let own = pull(&client, StreamKind::Tasks, None, Utc::now()).await;
    assert_eq!(own.records.len(), 250);
    let completed: Vec<String> = own
        .records
        .iter()
        .filter_map(|record| match &record.body {
            CrmRecordBody::Task(task) if task.completed => Some(task.key.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(completed, vec![wanted[3].key.clone()]);
    // refbridge's own tasks are not touches, by list or by search.
    let long_ago = Cursor {
        modified_at: Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap(),
        id: String::new(),
    };
    for after in [None, Some(&long_ago)] {
        let touches = pull(&client, StreamKind::Activities, after, Utc::now()).await;
        assert!(
            touches
                .records
                .iter()
                .all(|record| !task_ids.contains(&record.id))
        );
    }
    let searched = pull(&client, StreamKind::Tasks, Some(&long_ago), Utc::now()).await;
    assert_eq!(searched.records.len(), 250);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_revoked_refresh_token_is_a_config_error_that_says_what_to_fix() {
    let sandbox = sandbox_of(world(), fast_options()).await;
    let (config, mut secrets) = oauth(&sandbox);
    secrets.refresh_token = Some(b"na1-revoked-token".to_vec());
    let client = client(config, secrets);
    let error = client
        .pull(StreamKind::Owners, None, Utc::now(), &mut |_| {
            Ok::<(), Infallible>(())
        })
        .await
        .unwrap_err();
    let PullError::Hubspot(HubspotError::Config(message)) = &error else {
        panic!("{error:?}")
    };
    assert!(message.contains("BAD_REFRESH_TOKEN"), "{message}");
    assert!(message.contains("auth.refresh_token_file"), "{message}");
    assert!(!message.contains("na1-revoked"), "the token never shows");
    assert_eq!(client.token_requests(), 1, "no retry loop");
    assert_eq!(client.api_calls(), 0);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn the_ten_secondly_window_is_honoured_and_pulling_stops_at_the_daily_share() {
    let sandbox = sandbox_of(
        world(),
        SandboxOptions {
            ten_secondly_limit: 6,
            daily_limit: 40,
            ..SandboxOptions::default()
        },
    )
    .await;
    let (mut config, secrets) = private_app(&sandbox);
    config.daily_reserve_share = 0.25;
    config.list_page_size = 100;
    let client = HubspotClient::with_policy(
        config,
        secrets,
        Some(RetryPolicy {
            max_retries: 0,
            ..fast_policy()
        }),
    )
    .unwrap();
    // Eight list calls through a window of six: no 429 (there are no retries to hide one), and
    // the pause shows.
    let started = Instant::now();
    for _ in 0..4 {
        pull(&client, StreamKind::Owners, None, Utc::now()).await;
    }
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(client.api_calls(), 8);
    let mut stopped = None;
    for _ in 0..10 {
        if let Err(error) = client
            .pull(StreamKind::Owners, None, Utc::now(), &mut |_| {
                Ok::<(), Infallible>(())
            })
            .await
        {
            stopped = Some(error);
            break;
        }
    }
    match stopped {
        Some(PullError::Hubspot(error @ HubspotError::QuotaReserve { .. })) => {
            assert!(error.is_quota())
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(client.api_calls(), 10, "stopped at a quarter of 40");
    sandbox.shutdown().await;
}
