//! Faults: two identical worlds (same seed, as-of date and exports), one served fault-free, one
//! with 429s, 500s, 503s, connection resets cut mid-body, latency and access tokens that expire
//! after a few seconds (Salesforce and HubSpot both log in with OAuth; HubSpot's tokens are also
//! revoked early, since its client renews before the stated lifetime ends). Each
//! is synced with `sync --once` until a run finishes everything, as an operator's schedule would;
//! then the ledgers' domain content and the tasks each CRM holds must be identical.

use refbridge_synthetic::faults::FaultCounts;

use crate::support;

/// Shares of responses that fail, the latency of every response, and a token lifetime short
/// enough to expire within a run.
const FAULTS: &str = "429=0.08,500=0.06,503=0.06,reset=0.08,latency_ms=5,token_ttl_seconds=2,retry_after_seconds=1,seed=11";
/// Runs the faulty world may take, like a day of an operator's 15-minute schedule would give.
const RUNS_ALLOWED: usize = 8;

#[test]
fn with_faults_injected_the_ledger_and_the_tasks_end_identical_to_a_fault_free_run() {
    let as_of = support::today();
    let clean = support::prepared_world(&as_of, &[]);
    let faulty = support::prepared_world(&as_of, &["--faults", FAULTS]);
    for world in [&clean, &faulty] {
        support::use_hubspot_oauth(world);
    }

    let (clean_runs, _) = support::sync_until_finished(&clean, RUNS_ALLOWED);
    // HubSpot's client renews a token before its stated lifetime ends, so the short TTL alone
    // never reaches it: here its tokens are also revoked early, every 500 ms, as a portal's admin
    // (or HubSpot itself) may do; the client meets a 401 and must log in again.
    let revoking = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let revoker = {
        let revoking = revoking.clone();
        let base = faulty.ready["hubspot"]["base_url"]
            .as_str()
            .unwrap()
            .to_string();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let client = reqwest::Client::new();
            let mut revoked = 0u32;
            while revoking.load(std::sync::atomic::Ordering::Relaxed) {
                let sent =
                    runtime.block_on(client.post(format!("{base}/__admin/expire-tokens")).send());
                revoked += u32::from(sent.is_ok_and(|r| r.status().is_success()));
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
            revoked
        })
    };
    let (faulty_runs, report) = support::sync_until_finished(&faulty, RUNS_ALLOWED);
    revoking.store(false, std::sync::atomic::Ordering::Relaxed);
    let revocations = revoker.join().unwrap();
    // Both once more past the settle lag: every pushed task is read back in both.
    support::settle();
    support::sync_until_finished(&clean, 1);
    support::sync_until_finished(&faulty, RUNS_ALLOWED);
    assert!(report["api_calls"].as_u64().unwrap() > 0);

    let mut injected = FaultCounts::default();
    for system in ["salesforce", "hubspot"] {
        let text = support::admin_faults(&faulty, system, None);
        let counts: FaultCounts = text.lines().nth(1).unwrap().parse().unwrap();
        println!("{system}: {counts}");
        assert!(
            counts.expired_token > 0,
            "{system} met an expired token ({revocations} HubSpot revocations): {counts}"
        );
        injected.rate_limited += counts.rate_limited;
        injected.server_error += counts.server_error;
        injected.unavailable += counts.unavailable;
        injected.reset += counts.reset;
        injected.expired_token += counts.expired_token;
        injected.delayed += counts.delayed;
        // The checks below read the CRMs without faults.
        support::admin_faults(&faulty, system, Some(""));
    }
    crate::figure(&format!(
        "faults injected: {} failed responses ({injected}); fault-free world {clean_runs} run(s), faulty world {faulty_runs} run(s) to finish",
        injected.failures()
    ));
    assert!(
        injected.rate_limited > 0
            && injected.server_error + injected.unavailable > 0
            && injected.reset > 0
            && injected.expired_token > 0,
        "every kind of fault was met: {injected}"
    );

    for world in [&clean, &faulty] {
        assert_eq!(support::integrity(&world.ledger()), "ok");
    }
    let salesforce = support::once_per_key("salesforce", support::salesforce_tasks(&clean));
    let hubspot = support::once_per_key("hubspot", support::hubspot_tasks(&clean));
    assert!(!salesforce.is_empty() && !hubspot.is_empty());
    assert_eq!(
        support::once_per_key("salesforce", support::salesforce_tasks(&faulty)),
        salesforce,
        "Salesforce tasks: subject, description, owner, due date, priority, status, record"
    );
    assert_eq!(
        support::once_per_key("hubspot", support::hubspot_tasks(&faulty)),
        hubspot,
        "HubSpot tasks: subject, body, owner, due time, priority, status, associations"
    );
    support::assert_same_domain(
        &support::domain(&clean.ledger()),
        &support::domain(&faulty.ledger()),
        "faulty world vs fault-free world",
    );
}
