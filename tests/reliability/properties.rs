//! Property-based mutation tests: seeded mutators (bit flips, byte deletions and insertions,
//! truncation, doubled or removed delimiters and quotes, swapped fields, JSON values of another
//! type, removed and renamed keys) applied to valid exports.
//!
//! Exports (generic CSV, FHIR NDJSON, FHIR Bundle) go through the library's importer into a real
//! SQLite ledger: nothing panics, rows read = stored + quarantined + skipped, every rejection names
//! its location, and rows the mutation did not touch are stored exactly as in the clean run.
//!
//! Cases per format: `RELIABILITY_CASES` (default 150); `RELIABILITY_SEED` replays one case. A
//! failing case prints its format, seed and mutation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use refbridge::import::Importer;
use refbridge::ledger::Ledger;
use refbridge_ehr::{CsvLayout, ExportReader, FhirOptions};
use refbridge_model::PatientKey;
use serde_json::Value;

use super::mutate::{Rng, SeedGuard, mutate_bytes, mutate_json, seeds};

// ------------------------------------------------------------------------------------------------
// Exports

const CSV_HEADER: &str = "inquiry_id,inquiry_date,referral_source,referral_source_type,rep,payer,plan_type,level_of_care,disposition,disposition_reason,admit_date,mrn,patient_zip,notes";
const ROWS: usize = 24;

fn clean_csv() -> Vec<u8> {
    let mut text = String::from(CSV_HEADER);
    for i in 0..ROWS {
        let disposition = ["admitted", "not admitted", "pending"][i % 3];
        let reason = if i % 3 == 1 { "out of network" } else { "" };
        let admit = if i % 3 == 0 { "2026-04-09" } else { "" };
        text.push_str(&format!(
            "\nP-{i:03},2026-04-{:02},\"Partner {}, Inc\",hospital,Rep {},Aetna,commercial,3.5,{disposition},{reason},{admit},M{i:04},975{i:02},\"a note, with \"\"quotes\"\"\"",
            1 + i % 28,
            i % 5,
            i % 3
        ));
    }
    text.push('\n');
    text.into_bytes()
}

fn service_request(i: usize) -> Value {
    let status = ["completed", "revoked", "active"][i % 3];
    serde_json::json!({
        "resourceType": "ServiceRequest", "id": format!("sr{i}"),
        "identifier": [{"value": format!("S-{i:03}")}],
        "status": status, "intent": "order", "authoredOn": format!("2026-05-{:02}", 1 + i % 28),
        "requester": {"display": format!("Partner {}", i % 5)},
        "subject": {"identifier": {"value": format!("M{i:04}")}},
        "code": {"text": "ASAM 3.5"},
        "insurance": [{"display": "Aetna"}],
        "occurrenceDateTime": "2026-05-20"
    })
}

fn clean_ndjson() -> Vec<u8> {
    let mut text = String::new();
    for i in 0..ROWS {
        text.push_str(&service_request(i).to_string());
        text.push('\n');
    }
    text.into_bytes()
}

fn clean_bundle() -> Value {
    let entries: Vec<Value> = (0..ROWS)
        .map(|i| serde_json::json!({"fullUrl": format!("urn:uuid:sr{i}"), "resource": service_request(i)}))
        .collect();
    serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
}

fn reader() -> ExportReader {
    ExportReader {
        csv: CsvLayout::default(),
        fhir: FhirOptions::default(),
        patient_key: PatientKey::new(b"0123456789abcdef0123456789abcdef"),
        level_of_care_scheme: "asam3".to_string(),
    }
}

/// What one import stored and said.
struct Imported {
    rows: u64,
    stored: u64,
    skipped: u64,
    stopped: bool,
    /// Quarantine rows: (severity, location, field, reason).
    quarantine: Vec<(String, String, Option<String>, String)>,
    /// Inbound referrals by inquiry id: every stored column but the run ids.
    referrals: BTreeMap<String, String>,
}

fn import(dir: &Path, name: &str, bytes: &[u8]) -> Imported {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    let ledger_path = dir.join(format!("{name}.db"));
    let _ = std::fs::remove_file(&ledger_path);
    let mut ledger = Ledger::open(&ledger_path, Duration::from_secs(5)).unwrap();
    let report = Importer::new(&mut ledger, reader(), &[], 500)
        .import_files(std::slice::from_ref(&path))
        .expect("an import of a file that exists never fails as a whole");
    let file = &report.file_reports[0];
    let connection = ledger.connection();
    let quarantine = connection
        .prepare("SELECT severity, location, field, reason FROM quarantine ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let referrals = connection
        .prepare(
            "SELECT r.inquiry_id, json_array(r.inquiry_date, r.disposition, r.disposition_reason, r.payer, r.plan_type, r.level_of_care_scheme, r.level_of_care_code, r.admit_date, r.patient_token, r.zip3, r.rep, p.name)
             FROM referral r LEFT JOIN partner p ON p.id = r.partner_id WHERE r.direction = 'in'",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    Imported {
        rows: file.counts.rows,
        stored: file.counts.referrals_new
            + file.counts.referrals_updated
            + file.counts.referrals_unchanged,
        skipped: file.counts.skipped,
        stopped: file.message.is_some() && file.outcome.as_str() != "duplicate",
        quarantine,
        referrals,
    }
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Checks the properties that hold for every import of a mutated file.
fn check_accounting(imported: &Imported) {
    let rejected = imported
        .quarantine
        .iter()
        .filter(|(severity, ..)| severity == "rejected")
        .count() as u64;
    let stop_rows = u64::from(imported.stopped);
    assert_eq!(
        imported.rows,
        imported.stored + (rejected - stop_rows) + imported.skipped,
        "rows read = stored + quarantined + skipped"
    );
    for (severity, location, field, reason) in &imported.quarantine {
        let named = location == "whole file"
            || ["line ", "entry "].iter().any(|prefix| {
                location
                    .strip_prefix(prefix)
                    .is_some_and(|n| n.parse::<u64>().is_ok_and(|n| n > 0))
            });
        assert!(named, "a {severity} without a location: {location:?}");
        assert!(
            !reason.is_empty(),
            "{severity} at {location} {field:?} gives no reason"
        );
    }
}

/// The clean rows whose bytes lie wholly before `changed_at` and whose inquiry id the changed
/// part does not mention: these must be stored exactly as in the clean run.
fn untouched_before(
    clean_rows: &[(usize, String)],
    changed_at: usize,
    mutated: &[u8],
) -> Vec<String> {
    let tail = String::from_utf8_lossy(&mutated[changed_at.min(mutated.len())..]).into_owned();
    clean_rows
        .iter()
        .filter(|(end, id)| *end <= changed_at && !tail.contains(id.as_str()))
        .map(|(_, id)| id.clone())
        .collect()
}

/// (end offset, inquiry id) of each line after the first `skip` lines.
fn line_ends(bytes: &[u8], skip: usize, id_of: impl Fn(&str) -> String) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (index, line) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        let end = start + line.len();
        if index >= skip {
            out.push((end, id_of(&String::from_utf8_lossy(line))));
        }
        start = end;
    }
    out
}

fn check_untouched(clean: &Imported, mutated: &Imported, ids: &[String]) {
    // A file refused whole (a NUL byte: binary; a UTF-16 byte order mark) keeps none of its rows,
    // by design: it is not an export.
    if let Some(whole) = mutated.quarantine.iter().find(|q| q.1 == "whole file") {
        assert!(mutated.referrals.is_empty(), "{whole:?}");
        return;
    }
    for id in ids {
        assert_eq!(
            mutated.referrals.get(id),
            clean.referrals.get(id),
            "row {id} was not touched by the mutation but is stored differently"
        );
    }
}

#[test]
fn mutated_exports_never_panic_account_for_every_row_and_keep_untouched_rows() {
    let dir = tempfile::tempdir().unwrap();
    let csv = clean_csv();
    let ndjson = clean_ndjson();
    let bundle_value = clean_bundle();
    let bundle = bundle_value.to_string().into_bytes();
    let clean_csv_import = import(dir.path(), "clean.csv", &csv);
    let clean_ndjson_import = import(dir.path(), "clean.ndjson", &ndjson);
    let clean_bundle_import = import(dir.path(), "clean.json", &bundle);
    for clean in [
        &clean_csv_import,
        &clean_ndjson_import,
        &clean_bundle_import,
    ] {
        assert_eq!(clean.referrals.len(), ROWS);
        assert!(clean.quarantine.iter().all(|(s, ..)| s == "warning"));
        check_accounting(clean);
    }
    let csv_rows = line_ends(&csv, 1, |line| line[..5].to_string());
    let ndjson_rows = line_ends(&ndjson, 0, |line| {
        line[line.find("S-").unwrap()..][..5].to_string()
    });
    // A Bundle entry ends where the next begins; the ids are in order.
    let bundle_text = String::from_utf8(bundle.clone()).unwrap();
    let bundle_rows: Vec<(usize, String)> = (0..ROWS)
        .map(|i| {
            let id = format!("S-{i:03}");
            let at = bundle_text.find(&format!("\"{id}\"")).unwrap();
            let end = bundle_text[at..]
                .find("\"fullUrl\"")
                .map_or(bundle_text.len(), |next| at + next);
            (end, id)
        })
        .collect();

    let mut tried = BTreeMap::<&str, u64>::new();
    let mut outcomes = BTreeMap::<String, u64>::new();
    for seed in seeds(1_000, "RELIABILITY_CASES", 150) {
        let mut rng = Rng::new(seed);
        // CSV: byte mutations, or two fields of one row swapped.
        let mut bytes = csv.clone();
        let what = if rng.below(5) == 0 {
            let (end, _) = &csv_rows[rng.below(csv_rows.len())];
            let text = String::from_utf8(bytes.clone()).unwrap();
            let start = text[..end - 1].rfind('\n').unwrap() + 1;
            let mut fields: Vec<&str> = text[start..end - 1].split(',').collect();
            let (a, b) = (rng.below(fields.len()), rng.below(fields.len()));
            fields.swap(a, b);
            bytes =
                format!("{}{}{}", &text[..start], fields.join(","), &text[end - 1..]).into_bytes();
            "swapped fields".to_string()
        } else {
            mutate_bytes(&mut rng, &mut bytes, b",\"\n")
        };
        let _guard = SeedGuard("csv", seed, what.clone());
        let imported = import(dir.path(), "case.csv", &bytes);
        check_accounting(&imported);
        let changed_at = common_prefix(&csv, &bytes);
        if changed_at > CSV_HEADER.len() {
            check_untouched(
                &clean_csv_import,
                &imported,
                &untouched_before(&csv_rows, changed_at, &bytes),
            );
        }
        *tried.entry("csv").or_default() += 1;
        *outcomes
            .entry(format!(
                "csv {what}: {} quarantined",
                if imported.quarantine.iter().any(|q| q.0 == "rejected") {
                    "some"
                } else {
                    "none"
                }
            ))
            .or_default() += 1;
        drop(_guard);

        // NDJSON: byte mutations, or a JSON mutation of one line.
        let mut bytes = ndjson.clone();
        let what = if rng.below(2) == 0 {
            let line = rng.below(ROWS);
            let mut value = service_request(line);
            let what = mutate_json(&mut rng, &mut value);
            let text = String::from_utf8(ndjson.clone()).unwrap();
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            lines[line] = value.to_string();
            bytes = format!("{}\n", lines.join("\n")).into_bytes();
            what
        } else {
            mutate_bytes(&mut rng, &mut bytes, b",\":{}[]\n")
        };
        let _guard = SeedGuard("ndjson", seed, what.clone());
        let imported = import(dir.path(), "case.ndjson", &bytes);
        check_accounting(&imported);
        // Lines are independent: every line left byte-identical is stored as in the clean run,
        // unless a changed line names its inquiry id.
        let clean_lines: BTreeSet<&[u8]> = ndjson.split(|b| *b == b'\n').collect();
        let changed: Vec<String> = bytes
            .split(|b| *b == b'\n')
            .filter(|line| !clean_lines.contains(line))
            .map(|line| String::from_utf8_lossy(line).into_owned())
            .collect();
        let untouched: Vec<String> = bytes
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty() && clean_lines.contains(line))
            .map(|line| {
                ndjson_rows
                    .iter()
                    .find(|(_, id)| String::from_utf8_lossy(line).contains(&format!("\"{id}\"")))
                    .unwrap()
                    .1
                    .clone()
            })
            .filter(|id| !changed.iter().any(|line| line.contains(id.as_str())))
            .collect();
        check_untouched(&clean_ndjson_import, &imported, &untouched);
        *tried.entry("ndjson").or_default() += 1;
        drop(_guard);

        // Bundle: byte mutations, or a JSON mutation anywhere in the document.
        let mut bytes = bundle.clone();
        let what = if rng.below(2) == 0 {
            let mut value = bundle_value.clone();
            let what = mutate_json(&mut rng, &mut value);
            bytes = value.to_string().into_bytes();
            what
        } else {
            mutate_bytes(&mut rng, &mut bytes, b",\":{}[]")
        };
        let _guard = SeedGuard("bundle", seed, what.clone());
        let imported = import(dir.path(), "case.json", &bytes);
        check_accounting(&imported);
        let changed_at = common_prefix(&bundle, &bytes);
        let entries_at = bundle_text.find("[{").unwrap();
        // Entries are read in order; those before the first changed byte are stored as before.
        if changed_at > entries_at {
            check_untouched(
                &clean_bundle_import,
                &imported,
                &untouched_before(&bundle_rows, changed_at, &bytes),
            );
        }
        *tried.entry("fhir bundle").or_default() += 1;
    }
    crate::figure(&format!("properties: mutated exports tried {tried:?}"));
}
