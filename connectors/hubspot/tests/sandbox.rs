//! The HubSpot sandbox over real TCP, as a client sees it: paging, search and its 10,000 cap,
//! batch upsert idempotency, 207s, auth and token expiry, rate limits, injected faults, and that
//! no patient field of the world ever reaches the CRM.
#![cfg(feature = "sandbox")]

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use refbridge_hubspot::sandbox::{RunningSandbox, SandboxOptions, start};
use refbridge_synthetic::faults::FaultPlan;
use refbridge_synthetic::{
    Activity, ActivityKind, Contact, Direction, Facility, Partner, Patient, Pattern, Referral, Rep,
    Scale, SourceType, Stage, World, WorldSpec,
};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const PATIENT_CANARY: &str = "Zebulonia";

#[derive(Clone, Copy, Default)]
struct Sizes {
    partners: usize,
    contacts: usize,
    referrals: usize,
    notes: usize,
}

fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap() + Duration::minutes(minutes)
}

/// A small hand-made world: partner 3 (and every fourth) is unowned, rep 2 is inactive.
fn world(sizes: Sizes) -> Arc<World> {
    let reps = (0..3)
        .map(|i| Rep {
            key: format!("R{:03}", i + 1),
            first_name: format!("Rep{i}"),
            last_name: "Smith".into(),
            email: format!("rep{i}@facility.example"),
            active: i != 2,
            created_at: at(0),
        })
        .collect();
    let partners = (0..sizes.partners)
        .map(|i| Partner {
            key: format!("P{i:05}"),
            name: format!("Mercy's Hospital {i}"),
            npi: (i % 3 != 0).then(|| "1234567893".to_string()),
            source_type: SourceType::ALL[i % SourceType::ALL.len()],
            website: Some(format!("https://www.partner{i}.example/ed")),
            phone: "555-0100".into(),
            street: format!("{i} Main St"),
            city: "Springfield".into(),
            state: "IL".into(),
            zip: "62701".into(),
            payers_accepted: vec!["Aetna".into(), "Medicaid".into()],
            levels_of_care: vec!["3.5".into(), "3.7".into()],
            accepting_referrals: i % 2 == 0,
            preferred: i % 5 == 0,
            owner: (i % 4 != 3).then_some(i % 3),
            pattern: Pattern::Steady,
            duplicate_of: None,
            created_at: at(i as i64),
            modified_at: at(10_000 + i as i64),
        })
        .collect();
    let contacts = (0..sizes.contacts)
        .map(|i| Contact {
            key: format!("C{i:06}"),
            partner: i % sizes.partners.max(1),
            first_name: format!("Casey{i}"),
            last_name: "Jones".into(),
            title: "Case Manager".into(),
            email: format!("casey{i}@partner.example"),
            phone: "555-0101".into(),
            owner: Some(i % 2),
            created_at: at(i as i64),
            modified_at: at(20_000 + (i % 50) as i64),
        })
        .collect();
    let referrals = (0..sizes.referrals)
        .map(|i| Referral {
            inquiry_id: format!("INQ-2025-{i:06}"),
            direction: Direction::In,
            partner: i % sizes.partners.max(1),
            referred_out_as: None,
            parent: None,
            contact: (sizes.contacts > 0).then_some(i % sizes.contacts.max(1)),
            rep: Some(0),
            inquiry_at: at(i as i64 * 60),
            stage: [Stage::Admitted, Stage::NotAdmitted, Stage::Pending][i % 3],
            reason: (i % 3 == 1).then_some("out_of_network"),
            payer: "Aetna".into(),
            plan_type: "PPO".into(),
            level_of_care: "3.5".into(),
            admit_date: (i % 3 == 0).then(|| NaiveDate::from_ymd_opt(2025, 2, 1).unwrap()),
            patient: Patient {
                mrn: format!("MRN{i}"),
                first_name: PATIENT_CANARY.into(),
                last_name: PATIENT_CANARY.into(),
                birth_date: NaiveDate::from_ymd_opt(1980, 1, 1).unwrap(),
                phone: "555-9999".into(),
                address: format!("{PATIENT_CANARY} Road"),
                zip: "62702".into(),
            },
            modified_at: at(30_000 + i as i64),
        })
        .collect();
    let activities = (0..sizes.notes)
        .map(|i| Activity {
            key: format!("A{i:06}"),
            kind: ActivityKind::Note,
            rep: 0,
            partner: i % sizes.partners.max(1),
            contact: None,
            at: at(i as i64),
            subject: format!("Lunch and learn {i}"),
            modified_at: at(40_000),
        })
        .collect();
    Arc::new(World {
        spec: WorldSpec {
            seed: 7,
            scale: Scale::Small,
            as_of: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        },
        facility: Facility {
            name: "Riverbend Recovery".into(),
            npi: "1234567893".into(),
            city: "Springfield".into(),
            state: "IL".into(),
            zip: "62701".into(),
            payers_in_network: vec!["Aetna".into(), "Cigna".into()],
            levels_of_care: vec!["3.5".into()],
        },
        reps,
        partners,
        contacts,
        referrals,
        activities,
    })
}

struct Api {
    sandbox: RunningSandbox,
    token: String,
    http: reqwest::Client,
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Api {
    async fn start(world: Arc<World>, options: SandboxOptions) -> Api {
        let sandbox = start(world, options).await.expect("sandbox starts");
        let token = sandbox.credentials()["private_app_token"]
            .as_str()
            .unwrap()
            .to_string();
        Api {
            sandbox,
            token,
            http: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sandbox.base_url())
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> Answer {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body read");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None, Some(&self.token)).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(body), Some(&self.token))
            .await
    }

    async fn admin(&self, path: &str, body: &str) -> (u16, String) {
        let response = self
            .http
            .post(self.url(path))
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }
}

fn assert_error(answer: &Answer, status: u16, category: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.body["status"], "error", "{}", answer.body);
    assert_eq!(answer.body["category"], category, "{}", answer.body);
    assert_eq!(
        answer.body["correlationId"].as_str().map(str::len),
        Some(36),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn list_pages_every_contact_exactly_once_with_the_requested_properties() {
    let api = Api::start(
        world(Sizes {
            partners: 10,
            contacts: 3000,
            ..Sizes::default()
        }),
        SandboxOptions::default(),
    )
    .await;
    let mut seen = HashSet::new();
    let mut path =
        "/crm/v3/objects/contacts?limit=100&properties=email&properties=firstname,jobtitle"
            .to_string();
    let mut pages = 0;
    loop {
        let page = api.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert_eq!(page.headers["x-hubspot-ratelimit-max"], "190");
        pages += 1;
        for contact in page.body["results"].as_array().unwrap() {
            assert!(
                seen.insert(contact["id"].as_str().unwrap().to_string()),
                "contact {} seen twice",
                contact["id"]
            );
            let properties = contact["properties"].as_object().unwrap();
            let mut names: Vec<&str> = properties.keys().map(String::as_str).collect();
            names.sort_unstable();
            assert_eq!(
                names,
                [
                    "createdate",
                    "email",
                    "firstname",
                    "hs_object_id",
                    "jobtitle",
                    "lastmodifieddate"
                ]
            );
            assert_eq!(properties["hs_object_id"], contact["id"]);
            assert!(contact["createdAt"].as_str().unwrap().ends_with('Z'));
            assert_eq!(contact["archived"], false);
        }
        match page.body.get("paging") {
            Some(paging) => {
                let after = paging["next"]["after"].as_str().unwrap();
                assert!(
                    paging["next"]["link"]
                        .as_str()
                        .unwrap()
                        .starts_with(api.sandbox.base_url())
                );
                path = format!(
                    "/crm/v3/objects/contacts?limit=100&properties=email&properties=firstname,jobtitle&after={after}"
                );
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 3000);
    assert_eq!(pages, 30);
    let defaults = api.get("/crm/v3/objects/contacts?limit=1000").await;
    assert_eq!(
        defaults.body["results"].as_array().unwrap().len(),
        100,
        "limit is capped at 100"
    );
    let first = &defaults.body["results"][0]["properties"];
    assert!(
        first.get("lastname").is_some() && first.get("jobtitle").is_none(),
        "{first}"
    );
}

#[tokio::test]
async fn the_seeded_crm_mirrors_the_world_without_patient_data() {
    let api = Api::start(
        world(Sizes {
            partners: 8,
            contacts: 16,
            referrals: 12,
            notes: 5,
        }),
        SandboxOptions::default(),
    )
    .await;
    let companies = api
        .get("/crm/v3/objects/companies?limit=100&properties=name,domain,hubspot_owner_id,npi,payers_accepted,accepting_referrals,referral_source_type")
        .await;
    let companies = companies.body["results"].as_array().unwrap().clone();
    assert_eq!(companies.len(), 8);
    assert_eq!(companies[0]["properties"]["domain"], "partner0.example");
    assert_eq!(
        companies[0]["properties"]["payers_accepted"],
        "Aetna;Medicaid"
    );
    assert_eq!(companies[0]["properties"]["accepting_referrals"], "true");
    assert_eq!(
        companies[0]["properties"]["npi"],
        Value::Null,
        "partner 0 has no NPI"
    );
    assert_eq!(
        companies[3]["properties"]["hubspot_owner_id"],
        Value::Null,
        "partner 3 is unowned"
    );
    let owners = api.get("/crm/v3/owners/").await;
    let owner_ids: Vec<&str> = owners.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        owner_ids.len(),
        2,
        "the inactive rep is only listed with archived=true"
    );
    assert_eq!(companies[0]["properties"]["hubspot_owner_id"], owner_ids[0]);
    assert_eq!(owners.body["results"][0]["type"], "PERSON");
    let archived_owners = api.get("/crm/v3/owners?archived=true").await;
    assert_eq!(archived_owners.body["results"].as_array().unwrap().len(), 1);

    let company_id = companies[1]["id"].as_str().unwrap();
    let contacts_of_company = api
        .get(&format!(
            "/crm/v4/objects/companies/{company_id}/associations/contacts"
        ))
        .await;
    assert_eq!(
        contacts_of_company.body["results"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let types = &contacts_of_company.body["results"][0]["associationTypes"];
    assert!(
        types
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["typeId"] == 2 && t["label"] == "Primary"),
        "{types}"
    );
    let notes_of_company = api
        .get(&format!(
            "/crm/v4/objects/companies/{company_id}/associations/notes"
        ))
        .await;
    assert_eq!(
        notes_of_company.body["results"][0]["associationTypes"][0]["typeId"],
        189
    );

    let deals = api
        .get("/crm/v3/objects/deals?limit=100&properties=dealname,dealstage,pipeline,inquiry_id,closedate,admit_date&associations=companies")
        .await;
    let deal = &deals.body["results"][0];
    assert_eq!(deal["properties"]["dealname"], "Inquiry INQ-2025-000000");
    assert_eq!(deal["properties"]["dealstage"], "admitted");
    assert_eq!(deal["properties"]["pipeline"], "admissions");
    assert_eq!(deal["properties"]["admit_date"], "2025-02-01");
    assert_eq!(
        deal["associations"]["companies"]["results"][0]["type"],
        "deal_to_company"
    );
    let by_inquiry = api
        .get("/crm/v3/objects/deals/INQ-2025-000004?idProperty=inquiry_id")
        .await;
    assert_eq!(by_inquiry.status, 200);
    assert_eq!(
        by_inquiry.body["properties"]["dealname"],
        "Inquiry INQ-2025-000004"
    );
    let pipelines = api.get("/crm/v3/pipelines/deals").await;
    let stages: Vec<&str> = pipelines.body["results"][0]["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        ["pending", "admitted", "not_admitted", "referred_out"]
    );

    let task_properties = api.get("/crm/v3/properties/tasks").await;
    let names: Vec<&str> = task_properties.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"hs_task_status") && !names.contains(&"refbridge_key"),
        "{names:?}"
    );
    assert_eq!(
        api.get("/crm/v3/properties/deals/inquiry_id").await.body["hasUniqueValue"],
        true
    );

    for object_type in ["companies", "contacts", "deals", "notes"] {
        let all = api
            .get(&format!("/crm/v3/objects/{object_type}?limit=100"))
            .await;
        let ids: Vec<String> = all.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        let properties: Vec<String> = api
            .get(&format!("/crm/v3/properties/{object_type}"))
            .await
            .body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        let read = api
            .post(
                &format!("/crm/v3/objects/{object_type}/batch/read"),
                json!({"inputs": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(), "properties": properties}),
            )
            .await;
        assert_eq!(read.status, 200);
        let text = read.body.to_string();
        assert!(
            !text.contains(PATIENT_CANARY) && !text.contains("MRN") && !text.contains("1980-01-01"),
            "{object_type} leaks patient data"
        );
    }
}

#[tokio::test]
async fn errors_have_hubspots_shape() {
    let api = Api::start(
        world(Sizes {
            partners: 2,
            ..Sizes::default()
        }),
        SandboxOptions::default(),
    )
    .await;
    assert_error(
        &api.get("/crm/v3/objects/companies/999").await,
        404,
        "OBJECT_NOT_FOUND",
    );
    let unknown = api.get("/crm/v3/objects/widgets").await;
    assert_error(&unknown, 400, "VALIDATION_ERROR");
    assert_eq!(
        unknown.body["message"],
        "Unable to infer object type from: widgets"
    );
    let response = api
        .http
        .post(api.url("/crm/v3/objects/tasks"))
        .bearer_auth(&api.token)
        .header("content-type", "application/json")
        .body("{\"properties\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid input JSON"),
        "{body}"
    );
    let invalid = api
        .post(
            "/crm/v3/objects/tasks",
            json!({"properties": {"hs_task_status": "DONE", "hs_timestamp": "1700000000000"}}),
        )
        .await;
    assert_error(&invalid, 400, "VALIDATION_ERROR");
    assert!(
        invalid.body["message"]
            .as_str()
            .unwrap()
            .starts_with("Property values were not valid: [{"),
        "{}",
        invalid.body
    );
    let wrong_association = api
        .post(
            "/crm/v3/objects/tasks",
            json!({"properties": {"hs_timestamp": "2025-01-01T00:00:00Z"}, "associations": [{"to": {"id": "1"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 192}]}]}),
        )
        .await;
    assert_error(&wrong_association, 400, "VALIDATION_ERROR");
    let created = api
        .post(
            "/crm/v3/objects/contacts",
            json!({"properties": {"email": "new@partner.example", "firstname": "New"}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let duplicate = api
        .post(
            "/crm/v3/objects/contacts",
            json!({"properties": {"email": "new@partner.example"}}),
        )
        .await;
    assert_error(&duplicate, 409, "CONFLICT");
    assert_eq!(
        duplicate.body["message"],
        format!(
            "Contact already exists. Existing ID: {}",
            created.body["id"].as_str().unwrap()
        )
    );
}

#[tokio::test]
async fn tokens_refresh_expire_and_answer_hubspots_401s() {
    let api = Api::start(
        world(Sizes {
            partners: 2,
            ..Sizes::default()
        }),
        SandboxOptions::default(),
    )
    .await;
    let credentials = api.sandbox.credentials();
    let missing = api
        .send(Method::GET, "/crm/v3/objects/companies", None, None)
        .await;
    assert_error(&missing, 401, "INVALID_AUTHENTICATION");
    assert!(
        missing.body["message"]
            .as_str()
            .unwrap()
            .starts_with("Authentication credentials not found.")
    );
    let initial = credentials["access_token"].as_str().unwrap();
    assert_eq!(
        api.send(
            Method::GET,
            "/crm/v3/objects/companies",
            None,
            Some(initial)
        )
        .await
        .status,
        200
    );

    let form = |refresh: &str, client: &str| {
        format!(
            "grant_type=refresh_token&client_id={client}&client_secret={}&refresh_token={refresh}",
            credentials["client_secret"].as_str().unwrap()
        )
    };
    let token_request = |body: String| {
        api.http
            .post(api.url("/oauth/v1/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let client_id = credentials["client_id"].as_str().unwrap();
    let refresh = credentials["refresh_token"].as_str().unwrap();
    let bad = token_request(form("nope", client_id)).await.unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let bad: Value = bad.json().await.unwrap();
    assert_eq!(bad["status"], "BAD_REFRESH_TOKEN");
    assert_eq!(bad["message"], "missing or unknown refresh token");
    let bad_client: Value = token_request(form(refresh, "someone-else"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bad_client["status"], "BAD_CLIENT_ID");
    let issued: Value = token_request(form(refresh, client_id))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(issued["token_type"], "bearer");
    assert_eq!(issued["expires_in"], 1800);
    assert_eq!(issued["refresh_token"], refresh);
    let fresh = issued["access_token"].as_str().unwrap();
    assert_eq!(
        api.send(Method::GET, "/crm/v3/owners", None, Some(fresh))
            .await
            .status,
        200
    );

    assert_eq!(api.admin("/__admin/expire-tokens", "").await.0, 200);
    let expired = api
        .send(Method::GET, "/crm/v3/owners", None, Some(fresh))
        .await;
    assert_error(&expired, 401, "EXPIRED_AUTHENTICATION");
    assert!(
        expired.body["message"]
            .as_str()
            .unwrap()
            .starts_with("The OAuth token used to make this call expired")
    );
    assert_eq!(
        api.get("/crm/v3/owners").await.status,
        200,
        "the private-app token never expires"
    );

    let (status, _) = api.admin("/__admin/faults", "token_ttl_seconds=0").await;
    assert_eq!(status, 200);
    let short: Value = token_request(form(refresh, client_id))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(short["expires_in"], 0);
    let short_lived = short["access_token"].as_str().unwrap();
    assert_error(
        &api.send(Method::GET, "/crm/v3/owners", None, Some(short_lived))
            .await,
        401,
        "EXPIRED_AUTHENTICATION",
    );
}

#[tokio::test]
async fn search_filters_sorts_pages_and_stops_at_ten_thousand() {
    let api = Api::start(
        world(Sizes {
            partners: 3,
            contacts: 200,
            notes: 10_050,
            ..Sizes::default()
        }),
        SandboxOptions {
            search_per_second: 1000,
            ..SandboxOptions::default()
        },
    )
    .await;
    let since = at(20_040).timestamp_millis();
    let recent = api
        .post(
            "/crm/v3/objects/contacts/search",
            json!({
                "filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": since.to_string()}]}],
                "sorts": [{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}],
                "properties": ["email", "lastmodifieddate"],
                "limit": 15,
            }),
        )
        .await;
    assert_eq!(recent.status, 200, "{}", recent.body);
    assert!(
        recent
            .headers
            .get("x-hubspot-ratelimit-remaining")
            .is_none(),
        "search answers carry no rate headers"
    );
    assert_eq!(
        recent.body["total"], 40,
        "10 modification minutes × 4 contacts each"
    );
    assert_eq!(recent.body["results"].as_array().unwrap().len(), 15);
    assert_eq!(recent.body["paging"]["next"]["after"], "15");
    let first = recent.body["results"][0]["properties"]["lastmodifieddate"]
        .as_str()
        .unwrap();
    assert_eq!(
        first,
        at(20_049).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    );
    let or_groups = api
        .post(
            "/crm/v3/objects/contacts/search",
            json!({"filterGroups": [
                {"filters": [{"propertyName": "email", "operator": "EQ", "value": "CASEY7@partner.example"}]},
                {"filters": [{"propertyName": "hs_object_id", "operator": "IN", "values": ["1", "2"]}]},
                {"filters": [{"propertyName": "firstname", "operator": "CONTAINS_TOKEN", "value": "casey19*"}, {"propertyName": "createdate", "operator": "BETWEEN", "value": "2025-01-01T03:10:00Z", "highValue": at(199).timestamp_millis()}]}
            ]}),
        )
        .await;
    assert_eq!(
        or_groups.body["total"], 11,
        "casey7, and casey190..199 (casey19 was created before the window)"
    );

    let archived_id = recent.body["results"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let deleted = api
        .send(
            Method::DELETE,
            &format!("/crm/v3/objects/contacts/{archived_id}"),
            None,
            Some(&api.token),
        )
        .await;
    assert_eq!(deleted.status, 204);
    let again = api
        .post(
            "/crm/v3/objects/contacts/search",
            json!({"filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "EQ", "value": archived_id}]}]}),
        )
        .await;
    assert_eq!(
        again.body["total"], 0,
        "archived records never appear in search"
    );
    let listed = api.get("/crm/v3/objects/contacts?archived=true").await;
    assert_eq!(listed.body["results"][0]["id"], archived_id.as_str());
    assert_eq!(listed.body["results"][0]["archived"], true);

    let everything = json!({"filterGroups": [{"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "EQ", "value": at(40_000).timestamp_millis().to_string()}]}], "limit": 200, "after": "9900"});
    let near_cap = api
        .post("/crm/v3/objects/notes/search", everything.clone())
        .await;
    assert_eq!(near_cap.body["total"], 10_050);
    assert_eq!(
        near_cap.body["results"].as_array().unwrap().len(),
        100,
        "the 10,000th result is the last one"
    );
    assert_eq!(near_cap.body["paging"]["next"]["after"], "10000");
    let mut past_cap = everything;
    past_cap["after"] = json!("10000");
    assert_error(
        &api.post("/crm/v3/objects/notes/search", past_cap).await,
        400,
        "VALIDATION_ERROR",
    );

    let too_many = json!({"filterGroups": (0..6).map(|_| json!({"filters": [{"propertyName": "hs_object_id", "operator": "HAS_PROPERTY"}]})).collect::<Vec<_>>()});
    assert_error(
        &api.post("/crm/v3/objects/notes/search", too_many).await,
        400,
        "VALIDATION_ERROR",
    );
    let unknown = json!({"filterGroups": [{"filters": [{"propertyName": "nope", "operator": "EQ", "value": "x"}]}]});
    assert_error(
        &api.post("/crm/v3/objects/notes/search", unknown).await,
        400,
        "VALIDATION_ERROR",
    );
}

#[tokio::test]
async fn search_is_throttled_per_second_without_rate_headers() {
    let api = Api::start(
        world(Sizes {
            partners: 2,
            ..Sizes::default()
        }),
        SandboxOptions {
            search_per_second: 2,
            ..SandboxOptions::default()
        },
    )
    .await;
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let answer = api
            .post("/crm/v3/objects/companies/search", json!({}))
            .await;
        statuses.push(answer.status);
        last = Some(answer);
    }
    assert_eq!(statuses, [200, 200, 429]);
    let limited = last.unwrap();
    assert_eq!(limited.body["errorType"], "RATE_LIMIT");
    assert_eq!(limited.body["policyName"], "SECONDLY");
    assert!(
        limited
            .headers
            .keys()
            .all(|name| !name.as_str().starts_with("x-hubspot-ratelimit"))
    );
    assert_eq!(
        api.get("/crm/v3/objects/companies").await.status,
        200,
        "ordinary calls are not affected"
    );
}

#[tokio::test]
async fn the_ten_secondly_window_answers_429_with_retry_after() {
    let api = Api::start(
        world(Sizes {
            partners: 2,
            ..Sizes::default()
        }),
        SandboxOptions {
            ten_secondly_limit: 4,
            ..SandboxOptions::default()
        },
    )
    .await;
    let mut remaining = Vec::new();
    for _ in 0..4 {
        let answer = api.get("/crm/v3/objects/companies").await;
        remaining.push(
            answer.headers["x-hubspot-ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_string(),
        );
        assert_eq!(answer.headers["x-hubspot-ratelimit-daily"], "250000");
        assert_eq!(
            answer.headers["x-hubspot-ratelimit-interval-milliseconds"],
            "10000"
        );
    }
    assert_eq!(remaining, ["3", "2", "1", "0"]);
    let limited = api.get("/crm/v3/objects/companies").await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(
        limited.body["message"],
        "You have reached your ten_secondly_rolling limit."
    );
    assert_eq!(limited.body["errorType"], "RATE_LIMIT");
    let retry_after: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry_after));
    assert_eq!(
        api.post("/crm/v3/objects/companies/search", json!({}))
            .await
            .status,
        200,
        "search has its own limit"
    );
}

#[tokio::test]
async fn batch_upsert_on_a_declared_unique_property_is_idempotent() {
    let api = Api::start(
        world(Sizes {
            partners: 3,
            contacts: 3,
            ..Sizes::default()
        }),
        SandboxOptions::default(),
    )
    .await;
    let inputs = |subject: &str| {
        json!({"inputs": [
            {"id": "rule:P1:2025-01", "idProperty": "refbridge_key", "properties": {"hs_timestamp": "1735689600000", "hs_task_subject": subject, "hs_task_status": "NOT_STARTED"}},
            {"id": "rule:P2:2025-01", "idProperty": "refbridge_key", "properties": {"hs_timestamp": "1735689600000", "hs_task_subject": "Visit", "hs_task_priority": "HIGH"}},
        ]})
    };
    let undeclared = api
        .post("/crm/v3/objects/tasks/batch/upsert", inputs("Call"))
        .await;
    assert_error(&undeclared, 400, "VALIDATION_ERROR");

    let declared = api
        .post(
            "/crm/v3/properties/tasks",
            json!({"name": "refbridge_key", "label": "refbridge key", "type": "string", "fieldType": "text", "groupName": "taskinformation", "hasUniqueValue": true}),
        )
        .await;
    assert_eq!(declared.status, 201, "{}", declared.body);
    assert_eq!(declared.body["hasUniqueValue"], true);
    let again = api
        .post(
            "/crm/v3/properties/tasks",
            json!({"name": "refbridge_key", "label": "x", "type": "string", "fieldType": "text", "groupName": "taskinformation"}),
        )
        .await;
    assert_eq!(again.status, 409);

    let first = api
        .post("/crm/v3/objects/tasks/batch/upsert", inputs("Call"))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["status"], "COMPLETE");
    assert!(first.body["startedAt"].is_string() && first.body["completedAt"].is_string());
    let news: Vec<&Value> = first.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["new"])
        .collect();
    assert_eq!(news, [&json!(true), &json!(true)]);
    let second = api
        .post("/crm/v3/objects/tasks/batch/upsert", inputs("Call again"))
        .await;
    let results = second.body["results"].as_array().unwrap();
    assert!(results.iter().all(|r| r["new"] == false), "{}", second.body);
    assert_eq!(results[0]["id"], first.body["results"][0]["id"]);
    assert_eq!(results[0]["properties"]["hs_task_subject"], "Call again");
    assert_eq!(
        results[1]["updatedAt"], first.body["results"][1]["updatedAt"],
        "an unchanged record keeps its modified time"
    );
    let all = api
        .get("/crm/v3/objects/tasks?properties=refbridge_key")
        .await;
    assert_eq!(
        all.body["results"].as_array().unwrap().len(),
        2,
        "no duplicates"
    );

    let task_id = first.body["results"][0]["id"].as_str().unwrap();
    let company = api.get("/crm/v3/objects/companies?limit=1").await.body["results"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let linked = api
        .send(
            Method::PUT,
            &format!("/crm/v4/objects/tasks/{task_id}/associations/default/companies/{company}"),
            None,
            Some(&api.token),
        )
        .await;
    assert_eq!(linked.status, 200, "{}", linked.body);
    assert_eq!(
        linked.body["results"][0]["associationSpec"]["associationTypeId"],
        192
    );
    let of_company = api
        .get(&format!(
            "/crm/v4/objects/companies/{company}/associations/tasks"
        ))
        .await;
    assert_eq!(
        of_company.body["results"][0]["toObjectId"]
            .as_u64()
            .unwrap()
            .to_string(),
        task_id
    );
    assert_eq!(
        of_company.body["results"][0]["associationTypes"][0]["typeId"],
        191
    );

    let inline = api
        .post(
            "/crm/v3/objects/tasks",
            json!({"properties": {"hs_timestamp": "2025-01-01T00:00:00Z", "refbridge_key": "rule:P1:2025-01"},
                   "associations": [{"to": {"id": company}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 192}]}]}),
        )
        .await;
    assert_error(&inline, 400, "VALIDATION_ERROR");
    let by_key = api.get("/crm/v3/objects/tasks/rule:P2:2025-01?idProperty=refbridge_key&properties=hs_task_priority").await;
    assert_eq!(by_key.body["properties"]["hs_task_priority"], "HIGH");
}

#[tokio::test]
async fn batches_report_partial_failure_with_207_and_refuse_more_than_100_inputs() {
    let api = Api::start(
        world(Sizes {
            partners: 3,
            contacts: 3,
            ..Sizes::default()
        }),
        SandboxOptions::default(),
    )
    .await;
    let created = api
        .post(
            "/crm/v3/objects/tasks/batch/create",
            json!({"inputs": [
                {"properties": {"hs_timestamp": "2025-01-01T00:00:00Z", "hs_task_subject": "ok"}},
                {"properties": {"hs_task_subject": "no due date"}},
            ]}),
        )
        .await;
    assert_eq!(created.status, 207, "{}", created.body);
    assert_eq!(created.body["numErrors"], 1);
    assert_eq!(created.body["results"].as_array().unwrap().len(), 1);
    let error = &created.body["errors"][0];
    assert_eq!(error["status"], "error");
    assert_eq!(error["category"], "VALIDATION_ERROR");
    assert!(
        error["context"].is_object() && error["links"].is_object() && error["errors"].is_array()
    );
    let task_id = created.body["results"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let read = api
        .post(
            "/crm/v3/objects/tasks/batch/read",
            json!({"inputs": [{"id": task_id}, {"id": "42"}], "properties": ["hs_task_subject"]}),
        )
        .await;
    assert_eq!(read.status, 207);
    assert_eq!(read.body["errors"][0]["category"], "OBJECT_NOT_FOUND");
    assert_eq!(read.body["errors"][0]["context"]["ids"], json!(["42"]));
    assert_eq!(
        read.body["results"][0]["properties"]["hs_task_subject"],
        "ok"
    );

    let updated = api
        .post(
            "/crm/v3/objects/tasks/batch/update",
            json!({"inputs": [{"id": task_id, "properties": {"hs_task_status": "COMPLETED"}}, {"id": "42", "properties": {}}]}),
        )
        .await;
    assert_eq!(updated.status, 207);
    assert_eq!(
        updated.body["results"][0]["properties"]["hs_task_status"],
        "COMPLETED"
    );
    assert!(updated.body["results"][0]["properties"]["hs_task_completion_date"].is_string());
    let all_fail = api
        .post(
            "/crm/v3/objects/tasks/batch/update",
            json!({"inputs": [{"id": task_id, "properties": {"hs_task_status": "DONE"}}]}),
        )
        .await;
    assert_error(&all_fail, 400, "VALIDATION_ERROR");

    let too_many: Vec<Value> = (0..101)
        .map(|_| json!({"properties": {"hs_timestamp": "2025-01-01T00:00:00Z"}}))
        .collect();
    let refused = api
        .post(
            "/crm/v3/objects/tasks/batch/create",
            json!({ "inputs": too_many }),
        )
        .await;
    assert_error(&refused, 400, "VALIDATION_ERROR");
    let archived = api
        .post(
            "/crm/v3/objects/tasks/batch/archive",
            json!({"inputs": [{"id": task_id}]}),
        )
        .await;
    assert_eq!(archived.status, 204);
    assert_eq!(
        api.get("/crm/v3/objects/tasks").await.body["results"],
        json!([])
    );
}

#[tokio::test]
async fn injected_faults_look_like_hubspots_and_a_reset_cuts_the_body() {
    let api = Api::start(
        world(Sizes {
            partners: 30,
            ..Sizes::default()
        }),
        SandboxOptions::default(),
    )
    .await;
    let (status, text) = api.admin("/__admin/faults", "teapot=1").await;
    assert_eq!(status, 400);
    assert!(text.contains("unknown key"), "{text}");

    api.admin("/__admin/faults", "500=1").await;
    assert_error(
        &api.get("/crm/v3/objects/companies").await,
        500,
        "INTERNAL_ERROR",
    );
    api.admin("/__admin/faults", "503=1").await;
    assert_eq!(api.get("/crm/v3/objects/companies").await.status, 503);
    api.admin("/__admin/faults", "429=1,retry_after_seconds=3")
        .await;
    let limited = api.get("/crm/v3/objects/companies").await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.headers["retry-after"], "3");
    assert_eq!(limited.body["policyName"], "TEN_SECONDLY_ROLLING");

    api.admin("/__admin/faults", "reset=1").await;
    let response = api
        .http
        .get(api.url("/crm/v3/objects/companies?limit=100"))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("status and headers arrive");
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response.bytes().await.is_err(),
        "the body must fail part-way"
    );

    let (_, plan) = api.admin("/__admin/faults", "").await;
    assert!(plan.starts_with("429=0,"), "{plan}");
    let faults = api
        .http
        .get(api.url("/__admin/faults"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (plan_line, injected) = faults.split_once('\n').unwrap();
    assert_eq!(format!("{plan_line}\n"), plan);
    let injected: refbridge_synthetic::faults::FaultCounts = injected.parse().unwrap();
    assert_eq!(
        (
            injected.server_error,
            injected.unavailable,
            injected.rate_limited,
            injected.reset
        ),
        (1, 1, 1, 1),
        "each fault drawn above is counted once"
    );
    assert_eq!(api.get("/crm/v3/objects/companies").await.status, 200);

    let with_faults = Api::start(
        world(Sizes {
            partners: 2,
            ..Sizes::default()
        }),
        SandboxOptions {
            faults: "500=1".parse::<FaultPlan>().unwrap(),
            ..SandboxOptions::default()
        },
    )
    .await;
    assert_eq!(with_faults.get("/crm/v3/owners").await.status, 500);
    with_faults.sandbox.shutdown().await;
}

#[tokio::test]
async fn touch_gives_many_records_one_modification_time() {
    let api = Api::start(
        world(Sizes {
            partners: 2,
            contacts: 120,
            ..Sizes::default()
        }),
        SandboxOptions::default(),
    )
    .await;
    let moment = 1_767_225_600_000i64;
    let (status, body) = api
        .admin(
            &format!("/__admin/touch/contacts?count=100&at={moment}"),
            "",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let shared = api
        .post(
            "/crm/v3/objects/contacts/search",
            json!({"filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "EQ", "value": moment.to_string()}]}],
                   "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}], "limit": 200}),
        )
        .await;
    assert_eq!(shared.body["total"], 100);
    let ids: Vec<u64> = shared.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    api.sandbox.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_get_clean_error_bodies() {
    let api = Api::start(
        world(Sizes {
            partners: 2,
            contacts: 2,
            ..Sizes::default()
        }),
        SandboxOptions {
            search_per_second: 1000,
            ..SandboxOptions::default()
        },
    )
    .await;
    let check = |path: &'static str, body: Value, status: u16| (path, body, status);
    let cases = [
        check("/crm/v3/objects/tasks", json!([1, 2]), 400),
        check("/crm/v3/objects/tasks", json!({"properties": "x"}), 400),
        check(
            "/crm/v3/objects/tasks",
            json!({"properties": {"hs_timestamp": {"a": 1}}}),
            400,
        ),
        check(
            "/crm/v3/objects/tasks",
            json!({"properties": {"hs_timestamp": "99999999999999999999"}}),
            400,
        ),
        check(
            "/crm/v3/objects/tasks",
            json!({"properties": {"hs_timestamp": "1"}, "associations": [{"to": 5}]}),
            400,
        ),
        check(
            "/crm/v3/objects/tasks",
            json!({"properties": {"hs_timestamp": "1"}, "associations": "all"}),
            400,
        ),
        check(
            "/crm/v3/objects/tasks/batch/create",
            json!({"inputs": [1, "x", null]}),
            400,
        ),
        check(
            "/crm/v3/objects/tasks/batch/upsert",
            json!({"inputs": [{"id": "k"}]}),
            400,
        ),
        check(
            "/crm/v3/objects/tasks/batch/read",
            json!({"inputs": "x"}),
            400,
        ),
        check(
            "/crm/v3/objects/tasks/batch/explode",
            json!({"inputs": []}),
            404,
        ),
        check(
            "/crm/v3/objects/contacts/search",
            json!({"filterGroups": "x"}),
            400,
        ),
        check(
            "/crm/v3/objects/contacts/search",
            json!({"filterGroups": [{"filters": [{"propertyName": "createdate", "operator": "GT", "value": "soon"}]}]}),
            400,
        ),
        check(
            "/crm/v3/objects/contacts/search",
            json!({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "LIKE", "value": "x"}]}]}),
            400,
        ),
        check(
            "/crm/v3/objects/contacts/search",
            json!({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "IN"}]}]}),
            400,
        ),
        check(
            "/crm/v3/objects/contacts/search",
            json!({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "BETWEEN", "value": "a"}]}]}),
            400,
        ),
        check(
            "/crm/v3/objects/contacts/search",
            json!({"sorts": [{"propertyName": "email", "direction": "UP"}]}),
            400,
        ),
        check(
            "/crm/v3/objects/contacts/search",
            json!({"after": "-1"}),
            400,
        ),
        check(
            "/crm/v3/objects/contacts/search",
            json!({"limit": "many"}),
            400,
        ),
        check("/crm/v3/objects/contacts/search", json!("search"), 400),
        check(
            "/crm/v3/properties/tasks",
            json!({"name": "Bad Name", "label": "x", "type": "string", "fieldType": "text", "groupName": "g"}),
            400,
        ),
        check(
            "/crm/v3/properties/tasks",
            json!({"name": "flag", "label": "x", "type": "bool", "fieldType": "booleancheckbox", "groupName": "g", "hasUniqueValue": true}),
            400,
        ),
        check("/crm/v3/properties/tasks", json!({"label": "x"}), 400),
    ];
    for (path, body, status) in cases {
        let answer = api.post(path, body.clone()).await;
        assert_eq!(answer.status, status, "{path} {body}: {}", answer.body);
        assert_eq!(
            answer.body["status"], "error",
            "{path} {body}: {}",
            answer.body
        );
        assert!(
            answer.body["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{path} {body}"
        );
    }
    let not_allowed = api
        .send(
            Method::GET,
            "/crm/v3/objects/contacts/search",
            None,
            Some(&api.token),
        )
        .await;
    assert_eq!(not_allowed.status, 405);
    assert_eq!(not_allowed.body["status"], "error");
    let empty = api
        .http
        .post(api.url("/crm/v3/objects/tasks"))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status().as_u16(), 400);
}
