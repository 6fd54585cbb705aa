//! Patient values never leave the moment of parsing: not into the ledger (WAL included), not into
//! logs, not into any output. Every patient field of every input holds a unique canary string, and
//! every byte refbridge writes is searched for each of them.

mod common;

use common::{Facility, csv, row};

const CANARIES: &[(&str, &str)] = &[
    ("mrn", "MRN-CANARY-7D41"),
    ("patient_name", "Quillby Canaryson"),
    ("birth_date", "1911-11-11"),
    ("patient_phone", "(555) 013-9731"),
    ("patient_address", "77 Canaryplace Lane, Apt 9"),
    ("patient_zip", "97531-2468"),
    ("notes", "canary note: relapsed after detox"),
];

/// What must not appear anywhere: every canary, and the parts a careless parser might keep.
fn needles() -> Vec<&'static str> {
    let mut needles: Vec<&str> = CANARIES.iter().map(|(_, value)| *value).collect();
    needles.extend([
        "Canaryson",
        "Quillby",
        "Canaryplace",
        "97531",
        "013-9731",
        "relapsed",
        "7D41",
        "11/11/1911",
        "Canarymom",
        "Canaryheader",
    ]);
    needles
}

fn patient_fields(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut values: Vec<(&str, &str)> = CANARIES.to_vec();
    values.extend_from_slice(extra);
    values
}

#[test]
fn canary_patient_values_appear_in_no_byte_refbridge_writes() {
    let facility = Facility::new("");
    // A good row, a row kept with warnings (invalid NPI, unknown reason), a quarantined row.
    let export = facility.input(
        "canary.csv",
        csv(&[
            row(&patient_fields(&[
                ("inquiry_id", "C-1"),
                ("inquiry_date", "2026-02-01"),
                ("referral_source", "Mercy Hospital"),
                ("disposition", "admitted"),
            ])),
            row(&patient_fields(&[
                ("inquiry_id", "C-2"),
                ("inquiry_date", "2026-02-02"),
                ("referral_source", "Mercy Hospital"),
                ("referral_source_npi", "1111111111"),
                ("disposition", "not admitted"),
                ("disposition_reason", "mystery"),
                ("referred_out_to", "Harbor Recovery"),
            ])),
            row(&patient_fields(&[
                ("inquiry_id", "C-3"),
                ("inquiry_date", "1911-11-11x"),
                ("disposition", "admitted"),
            ])),
            // A family referral: the relative's name must not become a partner or a referrer.
            row(&patient_fields(&[
                ("inquiry_id", "C-6"),
                ("inquiry_date", "2026-02-06"),
                ("referral_source", "Mother - Canarymom Quillby"),
                ("referral_source_type", "family"),
                ("referred_by", "Canarymom Quillby"),
                ("disposition", "pending"),
            ])),
        ]),
    );
    // An export without its header row: the first row's patient values sit where names would be.
    let headerless = facility.input(
        "headerless.csv",
        "C-9,2026-02-09,Admitted,Canaryheader Quillby,Canaryheader Quillby,MRN-CANARY-7D41\n",
    );
    let patient = serde_json::json!({
        "resourceType": "Patient", "id": "p-canary",
        "identifier": [{"value": "MRN-CANARY-7D41"}],
        "name": [{"family": "Canaryson", "given": ["Quillby"]}],
        "birthDate": "1911-11-11",
        "telecom": [{"system": "phone", "value": "(555) 013-9731"}],
        "address": [{"line": ["77 Canaryplace Lane, Apt 9"], "postalCode": "97531-2468"}]
    });
    let request = serde_json::json!({
        "resourceType": "ServiceRequest", "id": "sr-canary", "identifier": [{"value": "C-4"}],
        "status": "active", "intent": "order", "authoredOn": "2026-02-04",
        "requester": {"type": "Organization", "display": "Mercy Hospital"},
        "subject": {"reference": "Patient/p-canary", "identifier": {"value": "MRN-CANARY-7D41"}, "display": "Quillby Canaryson"},
        "note": [{"text": "canary note: relapsed after detox"}],
        "patientInstruction": "77 Canaryplace Lane, Apt 9"
    });
    let broken_request = serde_json::json!({
        "resourceType": "ServiceRequest", "id": "sr-broken", "identifier": [{"value": "C-5"}],
        "status": "active", "authoredOn": "1911-11-11x",
        "subject": {"identifier": {"value": "MRN-CANARY-7D41"}, "display": "Quillby Canaryson"}
    });
    let ndjson = facility.input(
        "canary.ndjson",
        format!("{patient}\n{request}\n{broken_request}\n"),
    );

    // Create the ledger, then hold a connection open so that SQLite keeps the WAL file on disk
    // after the import exits and it can be searched too.
    assert_eq!(
        facility.run(&["import"]).status,
        0,
        "an empty inbox: creates the ledger"
    );
    let holder = facility.sql();
    let partners: i64 = holder
        .query_row("SELECT count(*) FROM partner", [], |r| r.get(0))
        .unwrap();
    assert_eq!(partners, 0);
    let mut outputs = Vec::new();
    let text_import = facility.run(&["import", &export.display().to_string()]);
    assert_eq!(text_import.status, 0, "{}", text_import.stderr);
    outputs.push(text_import);
    let headerless_import = facility.run(&["import", &headerless.display().to_string()]);
    assert_eq!(headerless_import.status, 1, "{}", headerless_import.stderr);
    outputs.push(headerless_import);
    let json_import = common::run_binary(
        &["import", "--json", &ndjson.display().to_string()],
        Some(&facility.config),
    );
    assert_eq!(json_import.status, 0, "{}", json_import.stderr);
    let report = json_import.json();
    assert_eq!(report["referrals_new"], 1);
    assert_eq!(report["quarantined"], 1);
    outputs.push(json_import);
    outputs.push(common::run_binary(
        &["--log-format", "json", "status"],
        None,
    ));
    outputs.push(facility.run(&["status"]));
    outputs.push(facility.run(&["status", "--json"]));
    outputs.push(facility.run(&["check-config"]));
    // The whole cycle and everything it derives: identity, health, plan, routing.
    let cycle = facility.run(&["sync", "--once", "--json"]);
    assert_eq!(cycle.status, 0, "{}", cycle.stderr);
    outputs.push(cycle);
    for args in [
        &["health"][..],
        &["health", "--format", "json"],
        &["health", "--format", "csv"],
        &["plan", "--json"],
        &["plan"],
        &["route", "--zip3", "975"],
        &["route", "--zip3", "975", "--json"],
    ] {
        let output = facility.run(args);
        assert_eq!(output.status, 0, "{args:?}: {}", output.stderr);
        outputs.push(output);
    }

    let wal = facility.path("state/ledger.db-wal");
    assert!(
        wal.exists(),
        "the WAL should still be on disk while a connection is open"
    );
    let mut written: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in common::files_under(&facility.path("state")) {
        written.push((entry.display().to_string(), std::fs::read(&entry).unwrap()));
    }
    for (index, output) in outputs.iter().enumerate() {
        written.push((
            format!("command {index} stdout"),
            output.stdout.clone().into_bytes(),
        ));
        written.push((
            format!("command {index} stderr"),
            output.stderr.clone().into_bytes(),
        ));
    }
    assert!(written.iter().any(|(name, _)| name.ends_with("ledger.db")));
    for (name, bytes) in &written {
        for needle in needles() {
            assert!(
                !common::contains_bytes(bytes, needle.as_bytes()),
                "patient canary {needle:?} found in {name}"
            );
        }
    }

    // What the ledger does keep: a 64-hex token per patient and the ZIP3.
    let (tokens, zip3): (i64, String) = holder
        .query_row(
            "SELECT count(DISTINCT patient_token), min(zip3) FROM referral WHERE direction = 'in' AND inquiry_id IN ('C-1', 'C-2')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((tokens, zip3.as_str()), (1, "975"));
    let token: String = holder
        .query_row(
            "SELECT patient_token FROM referral WHERE inquiry_id = 'C-4'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(token.len(), 64);
    let csv_token: String = holder
        .query_row(
            "SELECT patient_token FROM referral WHERE inquiry_id = 'C-1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        token, csv_token,
        "the same MRN gives the same token in CSV and FHIR"
    );
}
