//! The Salesforce sandbox over real TCP, as a client sees it: OAuth, queries and paging, writes,
//! collections, limits, faults.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use refbridge_salesforce::sandbox::{RunningSandbox, SandboxOptions, start};
use refbridge_synthetic::faults::FaultPlan;
use refbridge_synthetic::{
    Activity, ActivityKind, Contact, Direction, Facility, Partner, Patient, Pattern, Referral, Rep,
    Scale, SourceType, Stage, World, WorldSpec,
};
use serde_json::{Value, json};

const PRIVATE_KEY: &str = include_str!("data/jwt_test_key.pem");
const PUBLIC_KEY: &str = include_str!("data/jwt_test_key.pub.pem");

fn at(days_ago: i64) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 20, 20, 49, 32).unwrap() - Duration::days(days_ago)
}

/// A small world: two reps, three partners (one unowned, one with an apostrophe), `contacts`
/// contacts, an inquiry referred out, and two activities.
fn small_world(contacts: usize) -> World {
    let rep = |key: &str, first: &str, last: &str, active: bool| Rep {
        key: key.to_string(),
        first_name: first.to_string(),
        last_name: last.to_string(),
        email: format!("{}@facility.example", first.to_lowercase()),
        active,
        created_at: at(900),
    };
    let partner = |key: &str, name: &str, owner: Option<usize>| Partner {
        key: key.to_string(),
        name: name.to_string(),
        npi: Some("1234567893".to_string()),
        source_type: SourceType::Hospital,
        website: None,
        phone: "555-0100".to_string(),
        street: "1 Main St".to_string(),
        city: "Springfield".to_string(),
        state: "IL".to_string(),
        zip: "62701".to_string(),
        payers_accepted: vec!["Aetna".to_string(), "Medicaid".to_string()],
        levels_of_care: vec!["3.5".to_string()],
        accepting_referrals: true,
        preferred: false,
        owner,
        pattern: Pattern::Steady,
        duplicate_of: None,
        created_at: at(800),
        modified_at: at(10),
    };
    let patient = Patient {
        mrn: "MRN-1".to_string(),
        first_name: "Canary".to_string(),
        last_name: "Patientname".to_string(),
        birth_date: NaiveDate::from_ymd_opt(1990, 1, 1).unwrap(),
        phone: "555-0199".to_string(),
        address: "9 Secret Rd".to_string(),
        zip: "62702".to_string(),
    };
    let referral = |inquiry: &str, direction, partner, parent, stage| Referral {
        inquiry_id: inquiry.to_string(),
        direction,
        partner,
        referred_out_as: None,
        parent,
        contact: Some(0),
        rep: Some(0),
        inquiry_at: at(40),
        stage,
        reason: None,
        payer: "Aetna".to_string(),
        plan_type: "PPO".to_string(),
        level_of_care: "3.5".to_string(),
        admit_date: None,
        patient: patient.clone(),
        modified_at: at(39),
    };
    World {
        spec: WorldSpec {
            seed: 1,
            scale: Scale::Small,
            as_of: NaiveDate::from_ymd_opt(2026, 5, 20).unwrap(),
        },
        facility: Facility {
            name: "Lakeside Recovery".to_string(),
            npi: "1234567893".to_string(),
            city: "Springfield".to_string(),
            state: "IL".to_string(),
            zip: "62701".to_string(),
            payers_in_network: vec!["Aetna".to_string()],
            levels_of_care: vec!["3.5".to_string()],
        },
        reps: vec![
            rep("R001", "Dana", "Reyes", true),
            rep("R002", "Old", "Timer", false),
        ],
        partners: vec![
            partner("P00001", "Mercy Hospital ED", Some(0)),
            partner("P00002", "St. Mary's Behavioral", None),
            partner("P00003", "Harbor Detox", Some(0)),
        ],
        contacts: (0..contacts)
            .map(|index| Contact {
                key: format!("C{index:06}"),
                partner: index % 3,
                first_name: format!("First{index}"),
                last_name: format!("Last{index}"),
                title: "Social Worker".to_string(),
                email: format!("c{index}@partner.example"),
                phone: "555-0111".to_string(),
                owner: if index % 2 == 0 { Some(0) } else { None },
                created_at: at(700),
                // Many share one modstamp, as bulk updates do.
                modified_at: at((index % 7) as i64),
            })
            .collect(),
        referrals: vec![
            referral("INQ-000001", Direction::In, 0, None, Stage::ReferredOut),
            referral("INQ-000001-OUT", Direction::Out, 2, Some(0), Stage::Pending),
        ],
        activities: vec![
            Activity {
                key: "A000001".to_string(),
                kind: ActivityKind::Call,
                rep: 0,
                partner: 0,
                contact: Some(0),
                at: at(5),
                subject: "Check-in call".to_string(),
                modified_at: at(5),
            },
            Activity {
                key: "A000002".to_string(),
                kind: ActivityKind::Visit,
                rep: 0,
                partner: 1,
                contact: None,
                at: at(3),
                subject: "Lunch and learn".to_string(),
                modified_at: at(3),
            },
        ],
    }
}

/// A running sandbox and what a client needs to call it.
struct Client {
    sandbox: RunningSandbox,
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn start(world: World, options: SandboxOptions) -> Client {
        let sandbox = start(Arc::new(world), options)
            .await
            .expect("sandbox starts");
        let credentials = sandbox.credentials();
        Client {
            base: sandbox.base_url().to_string(),
            token: credentials["access_token"].as_str().unwrap().to_string(),
            http: reqwest::Client::new(),
            sandbox,
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with('/') {
            format!("{}{path}", self.base)
        } else {
            format!("{}/services/data/v62.0/{path}", self.base)
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("response");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, headers, json)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let (status, _, json) = self.send(reqwest::Method::GET, path, None).await;
        (status, json)
    }

    async fn query(&self, soql: &str) -> (u16, Value) {
        self.get(&format!(
            "query?{}",
            serde_urlencoded::to_string([("q", soql)]).unwrap()
        ))
        .await
    }

    async fn post_form(&self, pairs: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .http
            .post(self.url("/services/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(pairs).unwrap())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
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

fn error_code(json: &Value) -> &str {
    json[0]["errorCode"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error array: {json}"))
}

fn sign_jwt(claims: &Value) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use rsa::pkcs1::DecodeRsaPrivateKey as _;
    use rsa::signature::{SignatureEncoding as _, Signer as _};
    let key = rsa::RsaPrivateKey::from_pkcs1_pem(PRIVATE_KEY).unwrap();
    let signing = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key);
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = signing.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
}

#[tokio::test]
async fn versions_need_no_login_and_every_grant_yields_a_working_token() {
    let options = SandboxOptions {
        jwt_public_key_pem: Some(PUBLIC_KEY.to_string()),
        ..Default::default()
    };
    let client = Client::start(small_world(3), options).await;
    let credentials = client.sandbox.credentials();
    let response = client
        .http
        .get(client.url("/services/data/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["sforce-limit-info"]
            .to_str()
            .unwrap()
            .starts_with("api-usage=")
    );
    let versions: Value = response.json().await.unwrap();
    let listed: Vec<&str> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    for wanted in ["58.0", "59.0", "60.0", "61.0", "62.0"] {
        assert!(listed.contains(&wanted), "{wanted}");
    }

    // JWT bearer, as simple-salesforce signs it (exp as a string).
    let claims = json!({
        "iss": credentials["client_id"], "sub": "refbridge@sandbox.example",
        "aud": "https://login.salesforce.com", "exp": (Utc::now().timestamp() + 180).to_string(),
    });
    let assertion = sign_jwt(&claims);
    let (status, answer) = client
        .post_form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &assertion),
        ])
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["instance_url"], client.base.as_str());
    let jwt_token = answer["access_token"].as_str().unwrap().to_string();

    let (status, answer) = client
        .post_form(&[
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                credentials["refresh_token"].as_str().unwrap(),
            ),
            ("client_id", credentials["client_id"].as_str().unwrap()),
            (
                "client_secret",
                credentials["client_secret"].as_str().unwrap(),
            ),
        ])
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["issued_at"].as_str().unwrap().parse::<u64>().is_ok());
    let refreshed = answer["access_token"].as_str().unwrap().to_string();

    let (status, answer) = client
        .post_form(&[
            ("grant_type", "client_credentials"),
            ("client_id", credentials["client_id"].as_str().unwrap()),
            (
                "client_secret",
                credentials["client_secret"].as_str().unwrap(),
            ),
        ])
        .await;
    assert_eq!(status, 200, "{answer}");
    let client_token = answer["access_token"].as_str().unwrap().to_string();

    for token in [jwt_token, refreshed, client_token] {
        let response = client
            .http
            .get(client.url("limits"))
            .header("Authorization", format!("OAuth {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    // Errors keep the OAuth shape.
    let (status, answer) = client
        .post_form(&[("grant_type", "password"), ("username", "x")])
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (status, answer) = client
        .post_form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", "a.b.c"),
        ])
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        answer,
        json!({"error": "invalid_grant", "error_description": "invalid assertion"})
    );
    client.sandbox.shutdown().await;
}

#[tokio::test]
async fn sessions_expire_and_come_back_through_the_refresh_token() {
    let client = Client::start(small_world(3), SandboxOptions::default()).await;
    let response = client.http.get(client.url("limits")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    );
    assert_eq!(client.get("limits").await.0, 200);
    let (status, text) = client.admin("/__admin/expire-tokens", "").await;
    assert_eq!(status, 200, "{text}");
    let (status, body) = client.get("limits").await;
    assert_eq!((status, error_code(&body)), (401, "INVALID_SESSION_ID"));
    let credentials = client.sandbox.credentials();
    let (status, answer) = client
        .post_form(&[
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                credentials["refresh_token"].as_str().unwrap(),
            ),
            ("client_id", credentials["client_id"].as_str().unwrap()),
        ])
        .await;
    assert_eq!(status, 200);
    let fresh = Client {
        token: answer["access_token"].as_str().unwrap().to_string(),
        base: client.base.clone(),
        http: client.http.clone(),
        sandbox: client.sandbox,
    };
    assert_eq!(fresh.get("limits").await.0, 200);

    // A short token lifetime from the fault plan applies to tokens issued afterwards.
    let (status, _) = fresh.admin("/__admin/faults", "token_ttl_seconds=0").await;
    assert_eq!(status, 200);
    let short = fresh.sandbox.credentials()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let response = fresh
        .http
        .get(fresh.url("limits"))
        .bearer_auth(short)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn queries_render_records_like_salesforce() {
    let client = Client::start(small_world(6), SandboxOptions::default()).await;
    let (status, page) = client
        .query("SELECT Id, Name, Owner.Name, Owner.Email, Accepting_Referrals__c, Payers_Accepted__c, SystemModstamp FROM Account WHERE Name = 'St. Mary\\'s Behavioral'")
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["totalSize"], 1);
    assert_eq!(page["done"], true);
    assert!(page.get("nextRecordsUrl").is_none());
    let record = &page["records"][0];
    let id = record["Id"].as_str().unwrap();
    assert!(id.starts_with("001") && id.len() == 18);
    assert_eq!(record["attributes"]["type"], "Account");
    assert_eq!(
        record["attributes"]["url"],
        format!("/services/data/v62.0/sobjects/Account/{id}")
    );
    // The unowned partner is owned by the integration user.
    assert_eq!(record["Owner"]["Name"], "Integration User");
    assert_eq!(record["Owner"]["Email"], "refbridge@sandbox.example");
    assert_eq!(record["Owner"]["attributes"]["type"], "User");
    assert_eq!(record["Accepting_Referrals__c"], true);
    assert_eq!(record["Payers_Accepted__c"], "Aetna;Medicaid");
    assert_eq!(record["SystemModstamp"], "2026-05-10T20:49:32.000+0000");

    // Opportunities: the referral mapping, a null relationship, no patient anywhere.
    let (_, page) = client
        .query("SELECT Name, StageName, IsClosed, Direction__c, Inquiry_Id__c, Parent_Inquiry_Id__c, Referral_Source__r.Name, Referred_Out_To__r.Name, CloseDate FROM Opportunity ORDER BY Name")
        .await;
    assert_eq!(page["totalSize"], 2);
    let inbound = &page["records"][0];
    assert_eq!(inbound["Name"], "Inquiry INQ-000001");
    assert_eq!(inbound["StageName"], "Referred Out");
    assert_eq!(inbound["Referral_Source__r"]["Name"], "Mercy Hospital ED");
    assert_eq!(inbound["Referred_Out_To__r"], Value::Null);
    assert_eq!(inbound["CloseDate"], "2026-04-10");
    let outbound = &page["records"][1];
    assert_eq!(outbound["Direction__c"], "Outbound");
    assert_eq!(outbound["Parent_Inquiry_Id__c"], "INQ-000001");
    assert_eq!(outbound["Referred_Out_To__r"]["Name"], "Harbor Detox");
    assert_eq!(outbound["IsClosed"], false);
    let (_, everything) = client
        .get(&format!(
            "sobjects/Opportunity/{}",
            outbound["attributes"]["url"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
        ))
        .await;
    let text = everything.to_string();
    assert!(
        !text.contains("Canary") && !text.contains("MRN-1") && !text.contains("Secret"),
        "{text}"
    );

    // Data-driven: (query, expected totalSize).
    let cases = [
        ("SELECT COUNT() FROM Contact", 6),
        (
            "SELECT Id FROM Contact WHERE SystemModstamp >= 2026-05-18T20:49:32Z",
            3,
        ),
        (
            "SELECT Id FROM Contact WHERE SystemModstamp >= 2026-05-18T22:49:32.000+02:00",
            3,
        ),
        (
            "SELECT Id FROM Contact WHERE SystemModstamp > 2026-05-18T20:49:32.000000Z",
            2,
        ),
        ("SELECT Id FROM Contact WHERE Account.Name LIKE 'mercy%'", 2),
        (
            "SELECT Id FROM Contact WHERE Account.Name IN ('Harbor Detox', 'Mercy Hospital ED')",
            4,
        ),
        (
            "SELECT Id FROM Contact WHERE NOT (Account.Name = 'Harbor Detox' OR Account.Name = 'Mercy Hospital ED')",
            2,
        ),
        (
            "SELECT Id FROM Contact WHERE Account.Name NOT IN ('Harbor Detox')",
            4,
        ),
        ("SELECT Id FROM Contact WHERE Owner.Name != 'Dana Reyes'", 3),
        ("SELECT Id FROM Contact WHERE Email = null", 0),
        ("SELECT Id FROM Contact WHERE LastName = 'LAST1'", 1),
        (
            "SELECT Id FROM Contact ORDER BY SystemModstamp DESC, Id LIMIT 4 OFFSET 1",
            4,
        ),
        (
            "SELECT Id FROM Account WHERE Payers_Accepted__c INCLUDES ('Medicaid')",
            3,
        ),
        (
            "SELECT Id FROM Task WHERE What.Name = 'Mercy Hospital ED' AND IsClosed = true",
            1,
        ),
        (
            "SELECT Id FROM Event WHERE Type = 'Visit' AND ActivityDate = 2026-05-17",
            1,
        ),
        (
            "SELECT Id FROM Opportunity WHERE Admit_Date__c = null AND CloseDate < 2026-05-01",
            2,
        ),
    ];
    for (soql, expected) in cases {
        let (status, page) = client.query(soql).await;
        assert_eq!(
            (status, page["totalSize"].as_u64()),
            (200, Some(expected)),
            "{soql}: {page}"
        );
    }

    // Sorting: ascending modstamp with the id tie-break, as an incremental pull asks.
    let (_, page) = client
        .query("SELECT Id, SystemModstamp FROM Contact ORDER BY SystemModstamp, Id")
        .await;
    let keys: Vec<(String, String)> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["SystemModstamp"].as_str().unwrap().to_string(),
                r["Id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);

    // Errors: (query, errorCode, text in the message).
    let errors = [
        (
            "SELECT Id FROMM Contact",
            "MALFORMED_QUERY",
            "unexpected token: 'FROMM'",
        ),
        (
            "SELECT Id FROM Contact WHERE A = 1 AND B = 2 OR C = 3",
            "MALFORMED_QUERY",
            "unexpected token",
        ),
        (
            "SELECT Id, Colour__c FROM Contact",
            "INVALID_FIELD",
            "No such column 'Colour__c' on entity 'Contact'",
        ),
        (
            "SELECT Id FROM Contact WHERE CreatedDate > '2026-01-01'",
            "INVALID_FIELD",
            "must be of type dateTime",
        ),
        (
            "SELECT Id FROM Contact WHERE Name = 5",
            "INVALID_FIELD",
            "must be of type string",
        ),
        (
            "SELECT Foo.Name FROM Contact",
            "INVALID_FIELD",
            "Didn't understand relationship 'Foo'",
        ),
        (
            "SELECT Id FROM Widget__c",
            "INVALID_TYPE",
            "sObject type 'Widget__c' is not supported",
        ),
        (
            "SELECT Id FROM Contact WHERE Id = 'bogus'",
            "INVALID_QUERY_FILTER_OPERATOR",
            "invalid ID field: bogus",
        ),
        (
            "SELECT Id FROM Contact OFFSET 2001",
            "NUMBER_OUTSIDE_VALID_RANGE",
            "Maximum SOQL offset allowed is 2000",
        ),
    ];
    for (soql, code, needle) in errors {
        let (status, body) = client.query(soql).await;
        assert_eq!(status, 400, "{soql}");
        assert_eq!(error_code(&body), code, "{soql}");
        assert!(
            body[0]["message"].as_str().unwrap().contains(needle),
            "{soql}: {body}"
        );
    }
    let (status, body) = client.get("query").await;
    assert_eq!((status, error_code(&body)), (400, "MALFORMED_QUERY"));
}

#[tokio::test]
async fn paging_visits_every_record_once_through_the_server_side_cursor() {
    let client = Client::start(small_world(5_000), SandboxOptions::default()).await;
    let soql = "SELECT Id, Name, Email, Account.Name, SystemModstamp FROM Contact ORDER BY SystemModstamp, Id";
    let mut url = client.url(&format!(
        "query/?{}",
        serde_urlencoded::to_string([("q", soql)]).unwrap()
    ));
    let mut seen = HashSet::new();
    let mut pages = 0;
    let mut locator_paths = Vec::new();
    loop {
        let response = client
            .http
            .get(&url)
            .bearer_auth(&client.token)
            .header("Sforce-Query-Options", "batchSize=200")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let page: Value = response.json().await.unwrap();
        pages += 1;
        assert_eq!(page["totalSize"], 5_000);
        for record in page["records"].as_array().unwrap() {
            assert!(
                seen.insert(record["Id"].as_str().unwrap().to_string()),
                "repeated {record}"
            );
            assert!(record["Account"]["Name"].is_string());
        }
        if page["done"] == true {
            assert!(page.get("nextRecordsUrl").is_none());
            break;
        }
        let next = page["nextRecordsUrl"].as_str().unwrap();
        let (prefix, offset) = next.rsplit_once('-').unwrap();
        assert!(
            prefix.starts_with("/services/data/v62.0/query/01g"),
            "{next}"
        );
        assert_eq!(offset.parse::<usize>().unwrap(), seen.len());
        locator_paths.push(next.to_string());
        url = client.url(next);
    }
    assert_eq!((seen.len(), pages), (5_000, 25));
    // The same cursor answers under /queryAll/ and with a re-sent ?q= too.
    let again = locator_paths[3].replace("/query/", "/queryAll/");
    let (status, page) = client.get(&format!("{again}?q=ignored")).await;
    assert_eq!(status, 200);
    // The cursor keeps the page size it was opened with.
    assert_eq!(page["records"].as_array().unwrap().len(), 200);
    let (status, body) = client.get("query/01gDn00000000ZZZZZ-200").await;
    assert_eq!((status, error_code(&body)), (400, "INVALID_QUERY_LOCATOR"));
    // Without the header: pages of 2000.
    let (_, page) = client.query(soql).await;
    assert_eq!(page["records"].as_array().unwrap().len(), 2_000);
    assert!(page["nextRecordsUrl"].as_str().unwrap().ends_with("-2000"));
}

#[tokio::test]
async fn records_are_created_read_updated_upserted_and_deleted() {
    let client = Client::start(small_world(3), SandboxOptions::default()).await;
    let (_, page) = client
        .query("SELECT Id FROM Account WHERE Name = 'Mercy Hospital ED'")
        .await;
    let account = page["records"][0]["Id"].as_str().unwrap().to_string();
    let before = Utc::now() - Duration::minutes(1);

    let (status, _, created) = client
        .send(
            reqwest::Method::POST,
            "sobjects/Task/",
            Some(json!({"Subject": "Schedule a visit", "WhatId": account, "ActivityDate": "2026-06-01"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["success"], true);
    let task = created["id"].as_str().unwrap().to_string();
    assert!(task.starts_with("00T"));
    let (status, record) = client.get(&format!("sobjects/Task/{task}")).await;
    assert_eq!(status, 200);
    assert_eq!(record["Status"], "Not Started");
    assert_eq!(record["Priority"], "Normal");
    assert_eq!(record["IsClosed"], false);
    assert_eq!(record["OwnerId"], record["CreatedById"]);
    assert_eq!(record["CreatedDate"], record["SystemModstamp"]);
    let (_, short) = client
        .get(&format!(
            "sobjects/Task/{}?fields=Subject,ActivityDate",
            &task[..15]
        ))
        .await;
    assert_eq!(short.as_object().unwrap().len(), 3, "{short}");

    let (status, _, _) = client
        .send(
            reqwest::Method::PATCH,
            &format!("sobjects/Task/{task}"),
            Some(json!({"Status": "Completed"})),
        )
        .await;
    assert_eq!(status, 204);
    let (_, record) = client.get(&format!("sobjects/Task/{task}")).await;
    assert_eq!(record["IsClosed"], true);
    assert!(record["CompletedDateTime"].is_string());

    // Upsert by the unique external id: created once, then updated.
    let path = "sobjects/Task/Refbridge_Key__c/decline:P00001:2026-05";
    let (status, _, first) = client
        .send(
            reqwest::Method::PATCH,
            path,
            Some(json!({"Subject": "First"})),
        )
        .await;
    assert_eq!(
        (status, first["created"].as_bool()),
        (201, Some(true)),
        "{first}"
    );
    let (status, _, second) = client
        .send(
            reqwest::Method::PATCH,
            path,
            Some(json!({"Subject": "Second"})),
        )
        .await;
    assert_eq!(
        (status, second["created"].as_bool()),
        (200, Some(false)),
        "{second}"
    );
    assert_eq!(first["id"], second["id"]);
    let (_, page) = client
        .query("SELECT Subject FROM Task WHERE Refbridge_Key__c = 'decline:P00001:2026-05'")
        .await;
    assert_eq!(page["totalSize"], 1);
    assert_eq!(page["records"][0]["Subject"], "Second");
    let (status, body) = client.get("sobjects/Task/Subject/x").await;
    assert_eq!((status, error_code(&body)), (400, "INVALID_FIELD"));

    // Write errors are arrays naming the field.
    let (status, _, body) = client
        .send(
            reqwest::Method::POST,
            "sobjects/Task/",
            Some(json!({"Subject": "x".repeat(300)})),
        )
        .await;
    assert_eq!((status, error_code(&body)), (400, "STRING_TOO_LONG"));
    assert_eq!(body[0]["fields"], json!(["Subject"]));
    let response = client
        .http
        .post(client.url("sobjects/Task/"))
        .bearer_auth(&client.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "JSON_PARSER_ERROR");
    let (status, _, body) = client
        .send(reqwest::Method::PUT, &format!("sobjects/Task/{task}"), None)
        .await;
    assert_eq!((status, error_code(&body)), (405, "METHOD_NOT_ALLOWED"));
    let (status, body) = client.get("sobjects/Task/00TDn0000000zzzAAA").await;
    assert_eq!((status, error_code(&body)), (404, "NOT_FOUND"));
    let (status, body) = client.get("nothing/here").await;
    assert_eq!((status, error_code(&body)), (404, "NOT_FOUND"));

    // Delete: gone from query and GET, kept for queryAll and deleted/.
    let (status, _, _) = client
        .send(
            reqwest::Method::DELETE,
            &format!("sobjects/Task/{task}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = client.get(&format!("sobjects/Task/{task}")).await;
    assert_eq!(status, 404);
    let (status, _, body) = client
        .send(
            reqwest::Method::DELETE,
            &format!("sobjects/Task/{task}"),
            None,
        )
        .await;
    assert_eq!((status, error_code(&body)), (404, "ENTITY_IS_DELETED"));
    let soql = format!("SELECT Id, IsDeleted FROM Task WHERE Id = '{task}'");
    assert_eq!(client.query(&soql).await.1["totalSize"], 0);
    let (_, page) = client
        .get(&format!(
            "queryAll/?{}",
            serde_urlencoded::to_string([("q", soql.as_str())]).unwrap()
        ))
        .await;
    assert_eq!(page["records"][0]["IsDeleted"], true);

    let window = |kind: &str| {
        let start = before.format("%Y-%m-%dT%H:%M:%S+00:00").to_string();
        let end = (Utc::now() + Duration::minutes(2))
            .format("%Y-%m-%dT%H:%M:%S+00:00")
            .to_string();
        format!(
            "sobjects/Task/{kind}/?{}",
            serde_urlencoded::to_string([("start", start), ("end", end)]).unwrap()
        )
    };
    let (status, deleted) = client.get(&window("deleted")).await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["deletedRecords"][0]["id"], task.as_str());
    assert!(
        deleted["earliestDateAvailable"]
            .as_str()
            .unwrap()
            .ends_with(":00.000+0000")
    );
    let (_, updated) = client.get(&window("updated")).await;
    assert_eq!(updated["ids"], json!([first["id"]]));
    let (status, body) = client
        .get("sobjects/Task/updated/?start=2020-01-01T00:00:00%2B00:00&end=2020-01-02T00:00:00%2B00:00")
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (400, "INVALID_REPLICATION_DATE")
    );

    let (status, described) = client.get("sobjects/Task/describe").await;
    assert_eq!(status, 200);
    let key = described["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Refbridge_Key__c")
        .unwrap();
    assert_eq!(
        (key["externalId"].as_bool(), key["unique"].as_bool()),
        (Some(true), Some(true))
    );
    let (_, described) = client.get("sobjects/Account/describe/").await;
    let payers = described["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "Payers_Accepted__c")
        .unwrap();
    assert_eq!(payers["type"], "multipicklist");
    assert_eq!(payers["picklistValues"][0]["value"], "Aetna");
}

#[tokio::test]
async fn collections_answer_per_record_in_order() {
    let client = Client::start(small_world(3), SandboxOptions::default()).await;
    let (_, page) = client.query("SELECT Id FROM Contact LIMIT 1").await;
    let contact = page["records"][0]["Id"].as_str().unwrap().to_string();
    let body = json!({"allOrNone": false, "records": [
        {"attributes": {"type": "Task"}, "Subject": "one", "WhoId": contact},
        {"attributes": {"type": "Task"}, "Subject": "two", "Priority": "Urgent"},
        {"attributes": {"type": "Contact"}, "LastName": "Added"},
    ]});
    let (status, _, results) = client
        .send(reqwest::Method::POST, "composite/sobjects", Some(body))
        .await;
    assert_eq!(status, 200, "{results}");
    assert_eq!(results[0]["success"], true);
    assert!(results[0]["id"].as_str().unwrap().starts_with("00T"));
    assert!(results[0].get("created").is_none());
    assert_eq!(results[1]["success"], false);
    assert_eq!(
        results[1]["errors"][0]["statusCode"],
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    );
    assert_eq!(results[1]["errors"][0]["fields"], json!(["Priority"]));
    assert!(results[2]["id"].as_str().unwrap().starts_with("003"));

    let all_or_none = json!({"allOrNone": true, "records": [
        {"attributes": {"type": "Task"}, "Subject": "kept?"},
        {"attributes": {"type": "Task"}, "Colour__c": "red"},
    ]});
    let (_, _, results) = client
        .send(
            reqwest::Method::POST,
            "composite/sobjects",
            Some(all_or_none),
        )
        .await;
    assert_eq!(
        results[0]["errors"][0]["statusCode"],
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    );
    assert_eq!(results[1]["errors"][0]["statusCode"], "INVALID_FIELD");
    assert_eq!(
        client
            .query("SELECT COUNT() FROM Task WHERE Subject = 'kept?'")
            .await
            .1["totalSize"],
        0
    );

    // Update by id.
    let update = json!({"records": [{"attributes": {"type": "Task"}, "id": results_id(&client).await, "Status": "Completed"}]});
    let (_, _, results) = client
        .send(reqwest::Method::PATCH, "composite/sobjects", Some(update))
        .await;
    assert_eq!(results[0]["success"], true, "{results}");

    // Upsert: created, then updated, never duplicated; repeated keys fail those rows.
    let upsert = |subject: &str| {
        json!({"allOrNone": false, "records": [
            {"attributes": {"type": "Task"}, "Refbridge_Key__c": "k-1", "Subject": subject},
            {"attributes": {"type": "Task"}, "Refbridge_Key__c": "k-2", "Subject": subject},
        ]})
    };
    let path = "composite/sobjects/Task/Refbridge_Key__c";
    let (_, _, first) = client
        .send(reqwest::Method::PATCH, path, Some(upsert("a")))
        .await;
    assert_eq!(
        (first[0]["created"].as_bool(), first[1]["created"].as_bool()),
        (Some(true), Some(true)),
        "{first}"
    );
    let (_, _, second) = client
        .send(reqwest::Method::PATCH, path, Some(upsert("b")))
        .await;
    assert_eq!(
        (second[0]["created"].as_bool(), second[0]["id"].clone()),
        (Some(false), first[0]["id"].clone())
    );
    assert_eq!(
        client
            .query("SELECT COUNT() FROM Task WHERE Refbridge_Key__c LIKE 'k-%'")
            .await
            .1["totalSize"],
        2
    );
    let repeated = json!({"records": [
        {"attributes": {"type": "Task"}, "Refbridge_Key__c": "k-3"},
        {"attributes": {"type": "Task"}, "Refbridge_Key__c": "k-4"},
        {"attributes": {"type": "Task"}, "Refbridge_Key__c": "K-3"},
    ]});
    let (_, _, results) = client
        .send(reqwest::Method::PATCH, path, Some(repeated))
        .await;
    assert_eq!(
        results[0]["errors"][0]["statusCode"],
        "DUPLICATE_EXTERNAL_ID"
    );
    assert_eq!(results[1]["success"], true);
    assert_eq!(
        results[2]["errors"][0]["statusCode"],
        "DUPLICATE_EXTERNAL_ID"
    );

    let too_many: Vec<Value> = (0..201)
        .map(|n| json!({"attributes": {"type": "Task"}, "Subject": n.to_string()}))
        .collect();
    let (status, _, body) = client
        .send(
            reqwest::Method::POST,
            "composite/sobjects",
            Some(json!({"records": too_many})),
        )
        .await;
    assert_eq!((status, error_code(&body)), (400, "EXCEEDED_ID_LIMIT"));
    let (status, _, body) = client
        .send(
            reqwest::Method::POST,
            "composite/sobjects",
            Some(json!([1, 2])),
        )
        .await;
    assert_eq!((status, error_code(&body)), (400, "JSON_PARSER_ERROR"));

    let ids = format!(
        "{},{}",
        first[0]["id"].as_str().unwrap(),
        first[1]["id"].as_str().unwrap()
    );
    let (status, _, results) = client
        .send(
            reqwest::Method::DELETE,
            &format!("composite/sobjects?ids={ids}"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            results[0]["success"].as_bool(),
            results[1]["success"].as_bool()
        ),
        (Some(true), Some(true))
    );
}

async fn results_id(client: &Client) -> String {
    let (_, page) = client
        .query("SELECT Id FROM Task WHERE Subject = 'one'")
        .await;
    page["records"][0]["Id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_daily_limit_is_counted_on_every_response_and_enforced() {
    let options = SandboxOptions {
        daily_api_limit: 3,
        ..Default::default()
    };
    let client = Client::start(small_world(3), options).await;
    for used in 1..=3 {
        let (status, headers, body) = client.send(reqwest::Method::GET, "limits", None).await;
        assert_eq!(status, 200);
        assert_eq!(
            headers["sforce-limit-info"],
            format!("api-usage={used}/3").as_str()
        );
        assert_eq!(
            body["DailyApiRequests"],
            json!({"Max": 3, "Remaining": 3 - used})
        );
    }
    let (status, headers, body) = client
        .send(reqwest::Method::GET, "query?q=SELECT+Id+FROM+Task", None)
        .await;
    assert_eq!(status, 403);
    assert_eq!(headers["sforce-limit-info"], "api-usage=3/3");
    assert_eq!(
        body,
        json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    );
}

#[tokio::test]
async fn faults_are_answered_as_salesforce_would_and_a_reset_cuts_the_body() {
    let client = Client::start(small_world(3), SandboxOptions::default()).await;
    let (status, text) = client
        .admin("/__admin/faults", "429=1,retry_after_seconds=7")
        .await;
    assert_eq!(status, 200, "{text}");
    let (status, headers, body) = client.send(reqwest::Method::GET, "limits", None).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "7");
    assert_eq!(error_code(&body), "REQUEST_LIMIT_EXCEEDED");
    assert!(headers.contains_key("sforce-limit-info"));
    // The versions list and the admin endpoints are never faulted.
    assert_eq!(
        client
            .http
            .get(client.url("/services/data/"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    client.admin("/__admin/faults", "500=1").await;
    let (status, _, body) = client.send(reqwest::Method::GET, "limits", None).await;
    assert_eq!((status, error_code(&body)), (500, "UNKNOWN_EXCEPTION"));
    assert!(
        body[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("An unexpected error occurred. Please include this ErrorId")
    );
    client.admin("/__admin/faults", "503=1").await;
    let (status, _, body) = client.send(reqwest::Method::GET, "limits", None).await;
    assert_eq!((status, error_code(&body)), (503, "SERVER_UNAVAILABLE"));

    // A reset: status and headers arrive, the body breaks off — and the write happened.
    client.admin("/__admin/faults", "reset=1").await;
    let response = client
        .http
        .patch(client.url("sobjects/Task/Refbridge_Key__c/reset-1"))
        .bearer_auth(&client.token)
        .json(&json!({"Subject": "maybe written"}))
        .send()
        .await
        .expect("headers arrive");
    assert_eq!(response.status(), 201);
    assert!(response.bytes().await.is_err(), "the body must break off");
    client.admin("/__admin/faults", "").await;
    assert_eq!(
        client
            .query("SELECT COUNT() FROM Task WHERE Refbridge_Key__c = 'reset-1'")
            .await
            .1["totalSize"],
        1
    );

    let (status, text) = client.admin("/__admin/faults", "429=2").await;
    assert_eq!(status, 400);
    assert!(text.contains("between 0 and 1"), "{text}");
    let plan: FaultPlan = client
        .http
        .get(client.url("/__admin/faults"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(plan, FaultPlan::default());

    // Latency is added to every API answer.
    client.admin("/__admin/faults", "latency_ms=150").await;
    let started = std::time::Instant::now();
    assert_eq!(client.get("limits").await.0, 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(150));
}

#[tokio::test]
async fn a_generated_world_loads_whole() {
    let world = refbridge_synthetic::generate(WorldSpec {
        seed: 11,
        scale: Scale::Small,
        as_of: NaiveDate::from_ymd_opt(2026, 5, 20).unwrap(),
    });
    let expected = [
        ("User", world.reps.len() + 1),
        ("Account", world.partners.len()),
        ("Contact", world.contacts.len()),
        ("Opportunity", world.referrals.len()),
        (
            "Task",
            world
                .activities
                .iter()
                .filter(|a| {
                    matches!(
                        a.kind,
                        ActivityKind::Call | ActivityKind::Email | ActivityKind::Note
                    )
                })
                .count(),
        ),
        (
            "Event",
            world
                .activities
                .iter()
                .filter(|a| matches!(a.kind, ActivityKind::Meeting | ActivityKind::Visit))
                .count(),
        ),
    ];
    let client = Client::start(world, SandboxOptions::default()).await;
    for (object, count) in expected {
        let (status, page) = client.query(&format!("SELECT COUNT() FROM {object}")).await;
        assert_eq!(
            (status, page["totalSize"].as_u64()),
            (200, Some(count as u64)),
            "{object}"
        );
    }
    // Ids are deterministic: a second sandbox of the same world hands out the same ones.
    let again = Client::start(
        refbridge_synthetic::generate(WorldSpec {
            seed: 11,
            scale: Scale::Small,
            as_of: NaiveDate::from_ymd_opt(2026, 5, 20).unwrap(),
        }),
        SandboxOptions::default(),
    )
    .await;
    let soql = "SELECT Id, Name FROM Account ORDER BY Id";
    assert_eq!(
        client.query(soql).await.1["records"],
        again.query(soql).await.1["records"]
    );
}
