//! `refbridge route`: the partners a director is offered for a patient we cannot admit, through
//! the real binary on a ledger written with SQL.

mod common;

use std::time::Duration;

use common::Facility;
use refbridge::ledger::Ledger;
use rusqlite::params;

/// (name, ZIP3, payers, levels of care, accepting referrals, preferred); partner ids follow the
/// order, and each partner's home record is `salesforce:001<id>`.
type PartnerRow = (
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    Option<bool>,
    Option<bool>,
);

const PARTNERS: &[PartnerRow] = &[
    (
        "Peachtree Detox",
        "303",
        &["Aetna", "Cigna"],
        &["3.5", "3.7", "3.7-WM"],
        Some(true),
        Some(true),
    ),
    (
        "Riverside Recovery",
        "305",
        &["Aetna"],
        &["3.5"],
        None,
        None,
    ),
    (
        "Savannah Residential",
        "314",
        &["Aetna", "Self-pay"],
        &["3.5"],
        None,
        None,
    ),
    (
        "Macon House",
        "312",
        &["Aetna"],
        &["3.5"],
        Some(false),
        None,
    ),
    ("Athens Outpatient", "306", &["Aetna"], &["2.1"], None, None),
];

/// A facility whose ledger holds `PARTNERS`, with `extra` TOML in its config.
fn facility(extra: &str) -> Facility {
    let facility = Facility::new(extra);
    let ledger = Ledger::open(&facility.ledger(), Duration::from_secs(5)).unwrap();
    let c = ledger.connection();
    for (index, (name, zip3, payers, levels, accepting, preferred)) in PARTNERS.iter().enumerate() {
        let id = index as i64 + 1;
        let key = format!("001{id}");
        c.execute(
            "INSERT INTO partner (id, name, normalized_name, origin, created_at, updated_at)
             VALUES (?1, ?2, lower(?2), 'crm', '2026-03-01T00:00:00Z', '2026-03-01T00:00:00Z')",
            params![id, name],
        )
        .unwrap();
        c.execute(
            "INSERT INTO partner_source_record (partner_id, system, external_key, raw_name,
                 normalized_name, match_method, confidence, first_seen_at)
             VALUES (?1, 'salesforce', ?2, ?3, lower(?3), 'crm_id', 1.0, '2026-03-01T00:00:00Z')",
            params![id, key, name],
        )
        .unwrap();
        c.execute(
            "INSERT INTO partner_profile (partner_id, home_system, home_crm_id, zip3, payers,
                 levels_of_care, accepting_referrals, preferred)
             VALUES (?1, 'salesforce', ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                id,
                key,
                zip3,
                serde_json::to_string(payers).unwrap(),
                serde_json::to_string(levels).unwrap(),
                accepting,
                preferred
            ],
        )
        .unwrap();
    }
    facility
}

#[test]
fn route_prints_numbered_options_with_their_reasons() {
    let facility = facility("");
    let output = facility.run(&[
        "route",
        "--payer",
        "aetna",
        "--level-of-care",
        "ASAM 3.5",
        "--zip3",
        "303",
    ]);
    assert_eq!(output.status, 0, "{}", output.stderr);
    assert_eq!(
        output.stdout,
        "1. Peachtree Detox (partner 1, salesforce 0011)\n\
         \x20  in network with Aetna; offers ASAM 3.5; same ZIP3 303; preferred partner; accepting referrals\n\
         2. Riverside Recovery (partner 2, salesforce 0012)\n\
         \x20  in network with Aetna; offers ASAM 3.5; same region (ZIP3 305)\n\
         3. Savannah Residential (partner 3, salesforce 0013)\n\
         \x20  in network with Aetna; offers ASAM 3.5\n\
         Ranked by fit to the patient only: payer, level of care, area, preference, acceptance.\n"
    );
}

#[test]
fn route_json_is_the_answer_a_script_reads() {
    let facility = facility("");
    let output = facility.run(&["route", "--payer", "Self pay", "--zip3", "303", "--json"]);
    assert_eq!(output.status, 0, "{}", output.stderr);
    let answer = output.json();
    let options = answer["options"].as_array().unwrap();
    assert_eq!(options.len(), 1, "only Savannah takes self-pay: {answer}");
    assert_eq!(options[0]["name"], "Savannah Residential");
    assert_eq!(options[0]["partner_id"], 3);
    assert_eq!(options[0]["home_system"], "salesforce");
    assert_eq!(options[0]["home_crm_id"], "0013");
    assert_eq!(options[0]["fit"]["payer_in_network"], "Self-pay");
    assert_eq!(options[0]["fit"]["geography"], "elsewhere");
    assert_eq!(options[0]["fit"]["accepting"], "unknown");
    assert!(answer["none_reason"].is_null());
}

#[test]
fn when_nothing_fits_route_says_why() {
    let facility = facility("");
    let output = facility.run(&["route", "--payer", "Cigna", "--level-of-care", "2.1"]);
    assert_eq!(output.status, 0, "{}", output.stderr);
    assert_eq!(
        output.stdout,
        "No partner fits: no partner offers ASAM 2.1 in network with Cigna.\n"
    );
    let json = facility
        .run(&["route", "--level-of-care", "4", "--json"])
        .json();
    assert_eq!(json["options"], serde_json::json!([]));
    assert_eq!(json["none_reason"], "no partner offers ASAM 4");
    assert_eq!(
        json["task_none_reason"],
        "no partner offers the requested level of care"
    );
}

#[test]
fn config_overrides_mark_preferred_partners_and_unknown_records_are_warnings() {
    let facility = facility(
        "[[routing.partner]]\nrecord = \"salesforce:0013\"\npreferred = true\nzip3 = \"303\"\n\
         [[routing.partner]]\nrecord = \"hubspot:404\"\npreferred = true\n",
    );
    let output = facility.run(&[
        "route",
        "--payer",
        "Aetna",
        "--level-of-care",
        "3.5",
        "--zip3",
        "303",
        "--json",
    ]);
    assert_eq!(output.status, 0, "{}", output.stderr);
    let names: Vec<String> = output.json()["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect();
    // Savannah is now as close and as preferred as Peachtree; Peachtree's acceptance is known.
    assert_eq!(
        names,
        [
            "Peachtree Detox",
            "Savannah Residential",
            "Riverside Recovery"
        ]
    );
    assert!(
        output
            .stderr
            .contains("routing.partner names a record the ledger does not hold")
            && output.stderr.contains("hubspot:404"),
        "{}",
        output.stderr
    );
}

/// Runs `refbridge ARGS` and checks the exit status and a piece of the error.
fn check(facility: &Facility, args: &[&str], status: i32, message: &str) {
    let output = facility.run(args);
    assert_eq!(output.status, status, "{args:?}: {}", output.stderr);
    assert!(
        output.stderr.contains(message),
        "{args:?}: {message:?} not in {}",
        output.stderr
    );
    assert!(output.stdout.is_empty(), "{args:?}: {}", output.stdout);
}

#[test]
fn bad_requests_and_a_missing_ledger_are_clear_errors() {
    let facility = facility("");
    check(
        &facility,
        &["route"],
        2,
        "--payer <P>|--level-of-care <L>|--zip3 <Z>",
    );
    check(
        &facility,
        &["route", "--json"],
        2,
        "the following required arguments were not provided",
    );
    check(
        &facility,
        &["route", "--zip3", "30"],
        2,
        "--zip3: the ZIP3 must be exactly three digits",
    );
    check(
        &facility,
        &["route", "--payer", "Aetna", "--zip3", "3o3"],
        2,
        "--zip3:",
    );
    check(
        &facility,
        &["route", "--level-of-care", "3.9"],
        2,
        "--level-of-care: the level of care is not an ASAM level",
    );
    check(
        &facility,
        &["route", "--payer", "  "],
        2,
        "nothing to route on",
    );

    let empty = Facility::new("");
    check(
        &empty,
        &["route", "--payer", "Aetna"],
        1,
        "there is no ledger at",
    );
    // A bad request is named before the missing ledger.
    check(&empty, &["route", "--zip3", "1"], 2, "--zip3:");

    let misconfigured = Facility::new("[routing]\nlookback_days = 0\nreasons = [\"weather\"]\n");
    check(
        &misconfigured,
        &["route", "--payer", "Aetna"],
        2,
        "routing.lookback_days: must be at least 1",
    );
    check(
        &misconfigured,
        &["check-config"],
        2,
        "routing.reasons[0]: \"weather\" is not a disposition reason",
    );
}
