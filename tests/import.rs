//! End-to-end: EHR exports through the real binary into a real SQLite ledger.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Facility, csv, row};
use refbridge_model::Npi;

fn mercy_npi() -> String {
    Npi::from_first_nine(123_456_789).to_string()
}

#[test]
fn importing_twice_changes_nothing_and_an_overlapping_export_updates_only_what_changed() {
    let facility = Facility::new("");
    let npi = mercy_npi();
    let first = facility.input(
        "admissions-march.csv",
        csv(&[
            row(&[
                ("inquiry_id", "Q-1"),
                ("inquiry_date", "2026-03-01"),
                ("referral_source", "Mercy Hospital"),
                ("referral_source_npi", &npi),
                ("disposition", "pending"),
                ("mrn", "A1"),
            ]),
            row(&[
                ("inquiry_id", "Q-2"),
                ("inquiry_date", "2026-03-02"),
                ("referral_source", "Dr. Alice Lee"),
                ("disposition", "admitted"),
                ("admit_date", "2026-03-04"),
                ("mrn", "A2"),
            ]),
            row(&[
                ("inquiry_id", "Q-3"),
                ("inquiry_date", "03/03/2026"),
                ("referral_source", "MERCY HOSP."),
                ("disposition", "not admitted"),
                ("disposition_reason", "out of network"),
                ("referred_out_to", "Harbor Recovery"),
                ("mrn", "A3"),
            ]),
        ]),
    );
    let report = facility.import(&[&first]);
    assert_eq!(report["files"], 1);
    assert_eq!(report["rows"], 3);
    // Three inquiries plus the refer-out that Q-3 records.
    assert_eq!(report["referrals_new"], 4);
    assert_eq!(report["quarantined"], 0);

    let again = facility.import(&[&first]);
    assert_eq!(again["referrals_new"], 0);
    assert_eq!(again["referrals_updated"], 0);
    assert_eq!(again["file_reports"][0]["outcome"], "duplicate");
    let status = facility.status();
    assert_eq!(status["referrals"]["total"], 4);
    assert_eq!(status["referrals"]["outbound"], 1);

    // A later export overlaps: Q-1 was admitted, Q-2 unchanged, Q-4 is new.
    let second = facility.input(
        "admissions-march-april.csv",
        csv(&[
            row(&[
                ("inquiry_id", "Q-1"),
                ("inquiry_date", "2026-03-01"),
                ("referral_source", "Mercy Hospital"),
                ("referral_source_npi", &npi),
                ("disposition", "admitted"),
                ("admit_date", "2026-03-06"),
                ("mrn", "A1"),
            ]),
            row(&[
                ("inquiry_id", "Q-2"),
                ("inquiry_date", "2026-03-02"),
                ("referral_source", "Dr. Alice Lee"),
                ("disposition", "admitted"),
                ("admit_date", "2026-03-04"),
                ("mrn", "A2"),
            ]),
            row(&[
                ("inquiry_id", "Q-4"),
                ("inquiry_date", "2026-04-01"),
                ("referral_source", "Mercy Hospital"),
                ("disposition", "pending"),
                ("mrn", "A4"),
            ]),
        ]),
    );
    let overlap = facility.import(&[&second]);
    assert_eq!(overlap["rows"], 3);
    assert_eq!(overlap["referrals_new"], 1);
    assert_eq!(overlap["referrals_updated"], 1);
    assert_eq!(overlap["referrals_unchanged"], 1);

    let sql = facility.sql();
    let (disposition, admit): (String, String) = sql
        .query_row(
            "SELECT disposition, admit_date FROM referral WHERE inquiry_id = 'Q-1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (disposition.as_str(), admit.as_str()),
        ("admitted", "2026-03-06")
    );
    // "Mercy Hospital" with NPI, "MERCY HOSP." and "Mercy Hospital" without NPI are one partner.
    let mercy_referrals: i64 = sql
        .query_row(
            "SELECT count(*) FROM referral r JOIN partner p ON p.id = r.partner_id WHERE p.npi = ?1",
            [&npi],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(mercy_referrals, 3);
    let status = facility.status();
    assert_eq!(
        status["partners"]["total"], 3,
        "Mercy, Dr. Lee, Harbor Recovery"
    );
    assert_eq!(status["referrals"]["total"], 5);
}

#[test]
fn bad_rows_a_garbage_file_and_an_invalid_npi_are_quarantined_beside_the_good_rows() {
    let facility = Facility::new("");
    let export = facility.input(
        "mixed.csv",
        csv(&[
            row(&[
                ("inquiry_id", "G-1"),
                ("inquiry_date", "2026-05-01"),
                ("referral_source", "County Drug Court"),
                ("disposition", "admitted"),
                ("mrn", "B1"),
            ]),
            row(&[
                ("inquiry_id", ""),
                ("inquiry_date", "2026-05-02"),
                ("referral_source", "County Drug Court"),
                ("disposition", "admitted"),
            ]),
            row(&[
                ("inquiry_id", "G-3"),
                ("inquiry_date", "2026-13-45"),
                ("disposition", "admitted"),
            ]),
            row(&[
                ("inquiry_id", "G-4"),
                ("inquiry_date", "2026-05-04"),
                ("disposition", "thinking about it"),
            ]),
            row(&[
                ("inquiry_id", "G-5"),
                ("inquiry_date", "2026-05-05"),
                ("referral_source", "Lakeside Clinic"),
                ("referral_source_npi", "1234567890"),
                ("disposition", "pending"),
            ]),
            row(&[
                ("inquiry_id", "G-6"),
                ("inquiry_date", "2026-05-06"),
                ("referral_source", "Lakeside Clinic"),
                ("disposition", "pending"),
            ]),
        ]),
    );
    let garbage = facility.input(
        "scan.csv",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01",
    );
    let report = facility.import_expecting(&[&export, &garbage], 1);
    assert_eq!(report["files"], 2);
    assert_eq!(report["referrals_new"], 3, "G-1, G-5 and G-6 are kept");
    assert_eq!(
        report["quarantined"], 4,
        "three bad rows and the garbage file"
    );
    assert_eq!(report["warnings"], 1, "the invalid NPI");
    assert_eq!(report["file_reports"][1]["outcome"], "rejected");

    let status = facility.status();
    let entries: Vec<String> = status["quarantine"]["recent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {} {}",
                e["severity"].as_str().unwrap(),
                e["file_name"].as_str().unwrap(),
                e["location"].as_str().unwrap(),
                e["field"].as_str().unwrap_or("-"),
                e["reason"].as_str().unwrap()
            )
        })
        .collect();
    let expect = [
        "rejected scan.csv whole file - the file is binary (it contains NUL bytes), not CSV, JSON or NDJSON",
        "warning mixed.csv line 6 referral_source_npi invalid NPI dropped, the row is kept: the NPI check digit does not match (Luhn over 80840 + first nine digits)",
        "rejected mixed.csv line 5 disposition unknown disposition; map it under [connectors.ehr.csv.values.disposition]",
        "rejected mixed.csv line 4 inquiry_date the inquiry date is not a date in a known format",
        "rejected mixed.csv line 3 inquiry_id the inquiry id is missing",
    ];
    assert_eq!(entries, expect);
    // The invalid NPI was dropped, not attached: Lakeside has no NPI and both rows point to it.
    let (partners, npis): (i64, i64) = facility
        .sql()
        .query_row(
            "SELECT count(DISTINCT partner_id), count(p.npi) FROM referral r JOIN partner p ON p.id = r.partner_id WHERE r.inquiry_id IN ('G-5', 'G-6')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((partners, npis), (1, 0));
    let text = facility.run(&["status"]).stdout;
    assert!(text.contains("rejected scan.csv whole file"), "{text}");
    assert!(
        text.contains("mixed.csv line 3, field inquiry_id: the inquiry id is missing"),
        "{text}"
    );
}

#[test]
fn fhir_bundle_service_requests_become_referrals_in_and_out() {
    let facility = Facility::new("[connectors.ehr.fhir]\nfacility_npi = \"9876543213\"\n");
    let partner_npi = mercy_npi();
    let bundle = serde_json::json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:sr-1", "resource": {
                "resourceType": "ServiceRequest", "id": "sr-1",
                "identifier": [{"system": "urn:facility:inquiry", "value": "F-1"}],
                "status": "completed", "intent": "order", "authoredOn": "2026-06-01T10:00:00Z",
                "requester": {"reference": "Organization/mercy"},
                "subject": {"identifier": {"value": "MRN-F1"}},
                "code": {"coding": [{"system": "https://asam.org/levels", "code": "3.7"}]},
                "occurrenceDateTime": "2026-06-03",
                "insurance": [{"display": "Aetna"}]
            }},
            {"resource": {
                "resourceType": "ServiceRequest", "id": "sr-2",
                "identifier": [{"value": "F-2"}],
                "status": "active", "intent": "order", "authoredOn": "2026-06-02",
                "requester": {"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "9876543213"}},
                "performer": [{"type": "Organization", "display": "Harbor Recovery"}],
                "basedOn": [{"identifier": {"value": "F-1"}}],
                "subject": {"reference": "Patient/p1"}
            }},
            {"resource": {"resourceType": "Patient", "id": "p1", "name": [{"family": "Canary"}]}},
            {"resource": {"resourceType": "ServiceRequest", "id": "sr-3", "status": "active", "intent": "order"}},
            {"fullUrl": "Organization/mercy", "resource": {
                "resourceType": "Organization", "id": "mercy", "name": "Mercy Hospital",
                "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": partner_npi}]
            }}
        ]
    });
    let file = facility.input("referrals.json", bundle.to_string());
    let report = facility.import(&[&file]);
    assert_eq!(report["file_reports"][0]["format"], "fhir-bundle");
    assert_eq!(report["referrals_new"], 2);
    assert_eq!(report["quarantined"], 1, "sr-3 has no authoredOn");
    let sql = facility.sql();
    let inbound: (String, String, Option<String>, String, String) = sql
        .query_row(
            "SELECT r.disposition, p.name, p.npi, r.level_of_care_code, r.admit_date
             FROM referral r JOIN partner p ON p.id = r.partner_id WHERE r.inquiry_id = 'F-1' AND r.direction = 'in'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(
        inbound,
        (
            "admitted".into(),
            "Mercy Hospital".into(),
            Some(partner_npi),
            "3.7".into(),
            "2026-06-03".into()
        )
    );
    let outbound: (String, String, String, String) = sql
        .query_row(
            "SELECT r.direction, r.disposition, p.name, r.parent_inquiry_id
             FROM referral r JOIN partner p ON p.id = r.partner_id WHERE r.parent_inquiry_id = 'F-1' AND r.direction = 'out'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        outbound,
        (
            "out".into(),
            "pending".into(),
            "Harbor Recovery".into(),
            "F-1".into()
        )
    );
    let quarantine = &facility.status()["quarantine"]["recent"][0];
    assert_eq!(quarantine["location"], "entry 4");
    assert_eq!(quarantine["field"], "authoredOn");
}

#[test]
fn fhir_ndjson_lines_are_read_one_by_one_and_bad_lines_quarantined() {
    let facility = Facility::new("");
    let request = |id: &str, status: &str, date: &str| {
        serde_json::json!({
            "resourceType": "ServiceRequest", "id": id, "identifier": [{"value": id}],
            "status": status, "intent": "order", "authoredOn": date,
            "requester": {"type": "Organization", "display": "Lakeside Family Practice"},
            "subject": {"identifier": {"value": format!("MRN-{id}")}}
        })
        .to_string()
    };
    let lines = [
        request("N-1", "active", "2026-07-01"),
        String::from("{\"resourceType\": \"Patient\", \"id\": \"p\"}"),
        String::new(),
        String::from("{not json"),
        request("N-2", "revoked", "2026-07-02"),
        request("N-3", "entered-in-error", "2026-07-03"),
    ];
    let file = facility.input("ServiceRequest.ndjson", lines.join("\n") + "\n");
    let report = facility.import(&[&file]);
    let file_report = &report["file_reports"][0];
    assert_eq!(file_report["format"], "fhir-ndjson");
    assert_eq!(file_report["outcome"], "imported");
    assert_eq!(report["referrals_new"], 2);
    assert_eq!(report["quarantined"], 1);
    assert_eq!(
        report["skipped"], 2,
        "the Patient line and the entered-in-error request"
    );
    let quarantine = &facility.status()["quarantine"]["recent"][0];
    assert_eq!(quarantine["location"], "line 4");
    let dispositions: Vec<String> = facility
        .sql()
        .prepare("SELECT disposition FROM referral ORDER BY inquiry_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(dispositions, ["pending", "not_admitted"]);
}

#[test]
fn the_inbox_is_imported_and_emptied_into_imported_and_rejected() {
    let facility = Facility::new("");
    let inbox = facility.path("state/inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(
        inbox.join("2026-08-01.csv"),
        csv(&[row(&[
            ("inquiry_id", "I-1"),
            ("inquiry_date", "2026-08-01"),
            ("disposition", "pending"),
        ])]),
    )
    .unwrap();
    std::fs::write(inbox.join("garbage.json"), b"\x00\x01\x02").unwrap();
    std::fs::write(inbox.join("still-copying.csv.part"), b"inquiry_id").unwrap();
    let output = facility.run(&["import", "--json"]);
    assert_eq!(
        output.status, 1,
        "the garbage file makes the exit status 1: {}",
        output.stderr
    );
    assert!(
        output
            .stderr
            .contains("1 file(s) could not be read to the end"),
        "{}",
        output.stderr
    );
    let report = output.json();
    assert_eq!(report["files"], 2);
    assert_eq!(report["referrals_new"], 1);
    let names = |dir: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(inbox.join(dir))
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    };
    assert_eq!(names("imported"), ["1-2026-08-01.csv"]);
    assert_eq!(names("rejected"), ["2-garbage.json"]);
    assert!(
        inbox.join("still-copying.csv.part").exists(),
        "files still being written are left alone"
    );
    let again = facility.run(&["import", "--json"]).json();
    assert_eq!(again["files"], 0);
}

#[test]
fn the_ledger_is_private_and_its_audit_log_append_only() {
    let facility = Facility::new("");
    let export = facility.input(
        "a.csv",
        csv(&[row(&[
            ("inquiry_id", "P-1"),
            ("inquiry_date", "2026-01-01"),
            ("disposition", "pending"),
        ])]),
    );
    facility.import(&[&export]);
    let mode = std::fs::metadata(facility.ledger())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let writable = rusqlite::Connection::open(facility.ledger()).unwrap();
    let entries: i64 = writable
        .query_row(
            "SELECT count(*) FROM audit_log WHERE action = 'import'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(entries, 1);
    let error = writable.execute("DELETE FROM audit_log", []).unwrap_err();
    assert!(error.to_string().contains("append-only"), "{error}");
    let error = writable
        .execute("UPDATE audit_log SET detail = ''", [])
        .unwrap_err();
    assert!(error.to_string().contains("append-only"), "{error}");
}

#[test]
fn import_refuses_missing_files_with_a_usage_error() {
    let facility = Facility::new("");
    let output = facility.run(&["import", "/nonexistent/export.csv"]);
    assert_eq!(output.status, 2);
    assert!(
        output
            .stderr
            .contains("/nonexistent/export.csv: no such file"),
        "{}",
        output.stderr
    );
}

#[test]
fn the_sample_exports_in_the_readme_import_as_it_says() {
    let facility = Facility::new("");
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let output = facility.run(&[
        "import",
        &data.join("generic-sample.csv").display().to_string(),
        &data.join("service-requests.ndjson").display().to_string(),
    ]);
    assert_eq!(output.status, 0, "{}", output.stderr);
    assert!(
        output.stdout.contains("2 file(s): 8 rows, 7 referrals new, 0 updated, 0 unchanged, 1 quarantined, 0 warnings; 6 new partner(s)"),
        "{}",
        output.stdout
    );
    let status = facility.run(&["status"]).stdout;
    assert!(
        status.contains("generic-sample.csv line 6, field inquiry_date: the inquiry date is not a date in a known format"),
        "{status}"
    );
    assert!(
        status.contains("Partners   6 (6 known only from EHR names, 1 with NPI; 6 source records)"),
        "{status}"
    );
}

#[test]
fn a_synthetic_worlds_exports_import_cleanly_and_agree_with_each_other() {
    use refbridge_synthetic::{Direction, Scale, WorldSpec, exports::write_exports, generate};
    let facility = Facility::new(&format!(
        "[connectors.ehr.fhir]\nfacility_npi = \"{}\"\n",
        generate(WorldSpec {
            seed: 7,
            scale: Scale::Small,
            as_of: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()
        })
        .facility
        .npi
    ));
    let world = generate(WorldSpec {
        seed: 7,
        scale: Scale::Small,
        as_of: chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
    });
    let files = write_exports(&world, &facility.path("input/world")).unwrap();
    let inbound = world
        .referrals
        .iter()
        .filter(|r| r.direction == Direction::In)
        .count() as u64;
    let outbound = world.referrals.len() as u64 - inbound;

    let csv = facility.import(&[&files.generic_csv]);
    assert_eq!(csv["rows"], inbound);
    assert_eq!(
        csv["referrals_new"],
        inbound + outbound,
        "every inquiry and every refer-out"
    );
    let rejected = facility
        .sql()
        .query_row(
            "SELECT count(*) FROM quarantine WHERE severity = 'rejected'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap();
    assert_eq!(rejected, 0);

    // The FHIR export describes the same referrals: nothing new, outbound ones included.
    let filled = |column: &str| -> i64 {
        facility
            .sql()
            .query_row(&format!("SELECT count({column}) FROM referral"), [], |r| {
                r.get(0)
            })
            .unwrap()
    };
    let before: Vec<i64> = ["rep", "referred_by", "plan_type", "zip3", "patient_token"]
        .iter()
        .map(|c| filled(c))
        .collect();
    let fhir = facility.import(&[&files.service_requests_ndjson, &files.patients_ndjson]);
    let after: Vec<i64> = ["rep", "referred_by", "plan_type", "zip3", "patient_token"]
        .iter()
        .map(|c| filled(c))
        .collect();
    assert_eq!(before, after, "a source without a field never erases it");
    assert_eq!(fhir["referrals_new"], 0, "{fhir}");
    assert_eq!(
        fhir["rows"],
        world.referrals.len() as u64 + fhir["file_reports"][1]["skipped"].as_u64().unwrap()
    );
    assert_eq!(facility.status()["referrals"]["total"], inbound + outbound);
}

#[test]
fn two_partners_tried_for_one_inquiry_are_two_outbound_referrals() {
    let facility = Facility::new("[connectors.ehr.fhir]\nfacility_npi = \"9876543213\"\n");
    let outbound = |id: &str, partner: &str| {
        serde_json::json!({
            "resourceType": "ServiceRequest", "id": id, "identifier": [{"value": id}],
            "status": "active", "intent": "order", "authoredOn": "2026-03-02",
            "requester": {"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "9876543213"}},
            "performer": [{"type": "Organization", "display": partner}],
            "basedOn": [{"identifier": {"value": "INQ-77"}}]
        })
        .to_string()
    };
    let file = facility.input(
        "out.ndjson",
        format!(
            "{}\n{}\n{}\n",
            outbound("O-1", "Harbor Recovery"),
            outbound("O-2", "Summit Detox"),
            outbound("O-3", "HARBOR RECOVERY")
        ),
    );
    let report = facility.import(&[&file]);
    assert_eq!(
        (
            report["referrals_new"].as_u64(),
            report["referrals_unchanged"].as_u64()
        ),
        (Some(2), Some(1)),
        "{report}"
    );
    let partners: i64 = facility
        .sql()
        .query_row(
            "SELECT count(DISTINCT partner_id) FROM referral WHERE parent_inquiry_id = 'INQ-77'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(partners, 2);
}

#[test]
fn a_deep_bundle_entry_does_not_end_the_file_and_a_partial_file_can_be_imported_again() {
    let facility = Facility::new("");
    let request = |id: &str| {
        serde_json::json!({"resource": {"resourceType": "ServiceRequest", "id": id, "identifier": [{"value": id}],
            "status": "active", "intent": "order", "authoredOn": "2026-04-01"}})
        .to_string()
    };
    let deep = format!(
        "{{\"resource\": {{\"resourceType\": \"Basic\", \"extension\": {}1{}}}}}",
        "[".repeat(130),
        "]".repeat(130)
    );
    let bundle = format!(
        "{{\"resourceType\": \"Bundle\", \"entry\": [{}, {deep}, {}]}}",
        request("D-1"),
        request("D-2")
    );
    let file = facility.input("deep.json", bundle);
    let report = facility.import(&[&file]);
    assert_eq!(report["referrals_new"], 2, "{report}");

    // A Bundle cut off mid-entry: the entries before the cut are stored, and the file is not
    // treated as imported, so the complete file (or the same bytes) can be imported again.
    let cut = format!(
        "{{\"resourceType\": \"Bundle\", \"entry\": [{}, {}",
        request("T-1"),
        &request("T-2")[..40]
    );
    let truncated = facility.input("truncated.json", &cut);
    let first = facility.import_expecting(&[&truncated], 1);
    assert_eq!(
        (
            first["referrals_new"].as_u64(),
            first["file_reports"][0]["outcome"].as_str()
        ),
        (Some(1), Some("partial"))
    );
    let again = facility.import_expecting(&[&truncated], 1);
    assert_eq!(
        again["file_reports"][0]["outcome"], "partial",
        "not a duplicate: {again}"
    );
    assert_eq!(again["referrals_unchanged"], 1);
}

#[test]
fn status_does_not_create_a_ledger_at_a_mistyped_path() {
    let facility = Facility::new("");
    let output = facility.run(&["status"]);
    assert_eq!(output.status, 1);
    assert!(
        output.stderr.contains("there is no ledger at"),
        "{}",
        output.stderr
    );
    assert!(!facility.ledger().exists());
}
