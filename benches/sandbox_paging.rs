//! Benchmark: how fast the sandboxes serve pages, so that they never limit a sync.
//!
//! Run: `cargo bench --bench sandbox_paging` (options after `--`: `--scale small|medium|large`,
//! default large). Starts both sandboxes in-process on a `large` world and pages through every
//! contact: HubSpot's list endpoint (limit 100) and a Salesforce SOQL query (batchSize 2000).
//! Prints `name value unit` lines; the goal is ≥ 20,000 records/s each.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use refbridge_synthetic::{Scale, WorldSpec, generate};
use serde_json::Value;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scale = args
        .iter()
        .position(|a| a == "--scale")
        .and_then(|i| args.get(i + 1))
        .map_or(Scale::Large, |s| {
            Scale::parse(s).expect("--scale small|medium|large")
        });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(scale));
}

async fn run(scale: Scale) {
    let started = Instant::now();
    let world = Arc::new(generate(WorldSpec {
        seed: 7,
        scale,
        as_of: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).expect("date"),
    }));
    println!(
        "world_generate_seconds {:.3} s",
        started.elapsed().as_secs_f64()
    );
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("address");

    let started = Instant::now();
    let hubspot = refbridge_hubspot::sandbox::start(
        world.clone(),
        refbridge_hubspot::sandbox::SandboxOptions {
            bind: loopback,
            // The benchmark measures serving, not the rate limiter.
            ten_secondly_limit: u64::MAX / 4,
            daily_limit: u64::MAX / 4,
            ..Default::default()
        },
    )
    .await
    .expect("hubspot sandbox");
    let salesforce = refbridge_salesforce::sandbox::start(
        world.clone(),
        refbridge_salesforce::sandbox::SandboxOptions {
            bind: loopback,
            daily_api_limit: u64::MAX / 4,
            ..Default::default()
        },
    )
    .await
    .expect("salesforce sandbox");
    println!(
        "sandboxes_start_seconds {:.3} s",
        started.elapsed().as_secs_f64()
    );
    let client = reqwest::Client::new();

    // HubSpot: list contacts, 100 a page.
    let credentials = hubspot.credentials();
    let base = credentials["base_url"]
        .as_str()
        .expect("base_url")
        .to_string();
    let token = credentials["private_app_token"]
        .as_str()
        .expect("token")
        .to_string();
    let started = Instant::now();
    let (mut records, mut calls, mut after) = (0u64, 0u64, None::<String>);
    loop {
        let mut request = client
            .get(format!("{base}/crm/v3/objects/contacts"))
            .bearer_auth(&token)
            .query(&[
                ("limit", "100"),
                ("properties", "email,firstname,lastname,lastmodifieddate"),
            ]);
        if let Some(after) = &after {
            request = request.query(&[("after", after)]);
        }
        let page: Value = request
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        calls += 1;
        records += page["results"].as_array().map_or(0, Vec::len) as u64;
        after = page["paging"]["next"]["after"].as_str().map(str::to_string);
        if after.is_none() {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("hubspot_list_records {records} records");
    println!("hubspot_list_calls {calls} calls");
    println!(
        "hubspot_list_records_per_second {:.0} records/s",
        records as f64 / seconds
    );

    // Salesforce: SOQL over every contact, 2,000 a page.
    let credentials = salesforce.credentials();
    let base = credentials["instance_url"]
        .as_str()
        .expect("instance_url")
        .to_string();
    let token = credentials["access_token"]
        .as_str()
        .expect("token")
        .to_string();
    let started = Instant::now();
    let (mut records, mut calls) = (0u64, 0u64);
    let mut url = format!("{base}/services/data/v62.0/query");
    let mut query = Some(
        "SELECT Id, FirstName, LastName, Email, AccountId, SystemModstamp FROM Contact ORDER BY SystemModstamp, Id",
    );
    loop {
        let mut request = client
            .get(&url)
            .bearer_auth(&token)
            .header("Sforce-Query-Options", "batchSize=2000");
        if let Some(q) = query.take() {
            request = request.query(&[("q", q)]);
        }
        let page: Value = request
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        calls += 1;
        records += page["records"].as_array().map_or(0, Vec::len) as u64;
        match page["nextRecordsUrl"].as_str() {
            Some(next) if page["done"] == false => url = format!("{base}{next}"),
            _ => break,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("salesforce_query_records {records} records");
    println!("salesforce_query_calls {calls} calls");
    println!(
        "salesforce_query_records_per_second {:.0} records/s",
        records as f64 / seconds
    );

    hubspot.shutdown().await;
    salesforce.shutdown().await;
}
