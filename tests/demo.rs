//! `refbridge demo`: one command shows the product working, leaves a ledger and config behind, can
//! be run again, and refuses a directory it did not make.

mod common;

use common::run_binary;

#[test]
fn the_demo_runs_the_whole_cycle_twice_and_says_how_to_look_further() {
    let scratch = tempfile::tempdir().unwrap();
    let directory = scratch.path().join("demo");
    let dir = directory.display().to_string();
    let output = run_binary(&["demo", "--dir", &dir], None);
    assert_eq!(output.status, 0, "{}\n{}", output.stdout, output.stderr);
    for section in [
        "== Pulled (cycle 1)",
        "== Partners",
        "== Partner health, worst first",
        "== Tasks pushed, per CRM and rep",
        "== Refer-out options for leads we could not admit",
        "== Cycle 2: idempotent",
        "== Look further",
    ] {
        assert!(
            output.stdout.contains(section),
            "{section} missing:\n{}",
            output.stdout
        );
    }
    // Both CRMs were pulled, tasks went to both, and the second cycle repeated nothing.
    assert!(output.stdout.contains("salesforce referrals"));
    assert!(output.stdout.contains("hubspot    referrals"));
    assert!(
        output.stdout.contains("Nothing was repeated"),
        "{}",
        output.stdout
    );
    assert!(output.stdout.contains("0 sent"));
    // A person watching sees progress.
    assert!(output.stderr.contains("[1/6]") && output.stderr.contains("[6/6]"));

    // What stays behind works offline.
    let config = directory.join("refbridge.toml");
    assert!(
        output
            .stdout
            .contains(&format!("refbridge health --config {}", config.display()))
    );
    let health = run_binary(&["health"], Some(&config));
    assert_eq!(health.status, 0, "{}", health.stderr);
    assert!(health.stdout.starts_with("Partner health as of "));
    let status = run_binary(&["status", "--json"], Some(&config));
    assert_eq!(status.status, 0, "{}", status.stderr);
    assert!(status.json()["outbox"]["stored"].as_i64().unwrap() > 0);

    // Commands that only read the ledger need no secret (a stopped service has none at hand).
    let state = directory.join("refbridge.d");
    for secret in [
        "patient_key",
        "salesforce_client_secret",
        "hubspot_private_app_token",
    ] {
        std::fs::remove_file(state.join(secret)).unwrap();
    }
    for args in [
        &["status"][..],
        &["health"],
        &["plan"],
        &["route", "--zip3", "303"],
    ] {
        let output = run_binary(args, Some(&config));
        assert_eq!(
            output.status, 0,
            "{args:?} without secrets: {}",
            output.stderr
        );
    }
    let sync = run_binary(&["sync", "--once"], Some(&config));
    assert_eq!(sync.status, 2, "sync needs its secrets: {}", sync.stderr);
    assert!(sync.stderr.contains("patient_key"), "{}", sync.stderr);

    // Again into the same directory: it is the demo's own, so it starts afresh.
    let again = run_binary(&["demo", "--dir", &dir], None);
    assert_eq!(again.status, 0, "{}", again.stderr);

    // Someone else's directory is refused, untouched.
    let other = scratch.path().join("mine");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "keep me").unwrap();
    let refused = run_binary(&["demo", "--dir", &other.display().to_string()], None);
    assert_eq!(refused.status, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("not made by `refbridge demo`"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        std::fs::read_to_string(other.join("notes.txt")).unwrap(),
        "keep me"
    );
}
