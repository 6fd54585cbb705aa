//! A corpus of broken EHR exports and broken configs, generated here, each through the real
//! binary (`import`, `sync --once` with an inbox, `check-config`). For each: the documented exit
//! status, no panic and no signal, a message naming the file and where, quarantine rows with their
//! location, and the good rows of the same file imported (counted in the ledger).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::{Facility, Output, run_binary};

/// The columns every CSV case uses: the three required ones, a partner, its NPI and free text.
const HEADER: &str =
    "inquiry_id,inquiry_date,referral_source,referral_source_npi,disposition,notes";

/// A good row: its inquiry id is `id`.
fn good(id: &str) -> String {
    format!("{id},2026-03-01,Mercy Hospital,,admitted,fine")
}

/// One broken export and what refbridge must make of it.
struct Case {
    name: &'static str,
    file: &'static str,
    bytes: Vec<u8>,
    /// 0: read to the end (bad rows quarantined); 1: a file could not be read to its end.
    status: i32,
    /// Inquiry ids that must be in the ledger afterwards (the good rows beside the bad ones).
    kept: Vec<String>,
    /// Quarantine rows as `severity location field` (field `-` when none), in file order.
    quarantine: Vec<&'static str>,
    /// A fragment of the reason of the first quarantine row.
    reason: &'static str,
}

fn csv_text(rows: &[String]) -> Vec<u8> {
    let mut text = String::from(HEADER);
    for row in rows {
        text.push('\n');
        text.push_str(row);
    }
    text.into_bytes()
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|id| id.to_string()).collect()
}

fn csv_cases() -> Vec<Case> {
    let huge = "x".repeat(10 * 1024 * 1024);
    let mut latin1 = csv_text(&[good("L-1")]);
    latin1.extend_from_slice(b"\nL-2,2026-03-02,Caf\xe9 Clinic,,admitted,ok\n");
    let mut utf16 = vec![0xFF, 0xFE];
    for unit in String::from_utf8(csv_text(&[good("U-1")]))
        .unwrap()
        .encode_utf16()
    {
        utf16.extend_from_slice(&unit.to_le_bytes());
    }
    let mut garbage = Vec::new();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..4096 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        garbage.push((state >> 24) as u8);
    }
    garbage[100] = 0;
    vec![
        Case {
            name: "truncated mid-row",
            file: "cut-row.csv",
            bytes: [csv_text(&[good("T-1"), good("T-2")]), b"\nT-3,2026-03-0".to_vec()].concat(),
            status: 0,
            kept: ids(&["T-1", "T-2"]),
            quarantine: vec!["rejected line 4 -"],
            reason: "fields but the header has",
        },
        Case {
            name: "truncated mid-quote in the last column",
            file: "cut-quote.csv",
            bytes: [
                csv_text(&[good("Q-1")]),
                b"\nQ-2,2026-03-02,Mercy Hospital,,admitted,\"a note that was cu".to_vec(),
            ]
            .concat(),
            status: 0,
            kept: ids(&["Q-1"]),
            quarantine: vec!["rejected line 3 -"],
            reason: "cut off",
        },
        Case {
            name: "truncated mid-quote in a middle column",
            file: "cut-quote-middle.csv",
            bytes: [csv_text(&[good("M-1")]), b"\nM-2,2026-03-02,\"Mercy Hos".to_vec()].concat(),
            status: 0,
            kept: ids(&["M-1"]),
            quarantine: vec!["rejected line 3 -"],
            reason: "cut off",
        },
        Case {
            name: "Latin-1 bytes",
            file: "latin1.csv",
            bytes: latin1,
            status: 0,
            kept: ids(&["L-1", "L-2"]),
            quarantine: vec![],
            reason: "",
        },
        Case {
            name: "UTF-16 with BOM",
            file: "utf16.csv",
            bytes: utf16,
            status: 1,
            kept: vec![],
            quarantine: vec!["rejected whole file -"],
            reason: "UTF-16",
        },
        Case {
            name: "binary garbage",
            file: "garbage.csv",
            bytes: garbage,
            status: 1,
            kept: vec![],
            quarantine: vec!["rejected whole file -"],
            reason: "binary",
        },
        Case {
            name: "a 10 MB field in a column refbridge reads, and one in free text",
            file: "huge-field.csv",
            bytes: csv_text(&[
                good("H-1"),
                format!("H-2,2026-03-02,\"{huge}\",,admitted,"),
                format!("H-3,2026-03-03,Mercy Hospital,,admitted,\"{huge}\""),
                good("H-4"),
            ]),
            status: 0,
            kept: ids(&["H-1", "H-3", "H-4"]),
            quarantine: vec!["rejected line 3 referral_source"],
            reason: "longer than 1024 bytes",
        },
        Case {
            name: "wrong types: letters in a date and an NPI, the future, year 0",
            file: "wrong-types.csv",
            bytes: csv_text(&[
                good("W-1"),
                "W-2,2026-0a-01,Mercy Hospital,,admitted,".to_string(),
                "W-3,2026-03-03,Mercy Hospital,12345abcde,admitted,".to_string(),
                "W-4,2999-03-04,Mercy Hospital,,admitted,".to_string(),
                "W-5,0000-03-05,Mercy Hospital,,admitted,".to_string(),
                "W-6,2026-03-06,Mercy Hospital,,5,".to_string(),
            ]),
            status: 0,
            kept: ids(&["W-1", "W-3"]),
            quarantine: vec![
                "rejected line 3 inquiry_date",
                "warning line 4 referral_source_npi",
                "rejected line 5 inquiry_date",
                "rejected line 6 inquiry_date",
                "rejected line 7 disposition",
            ],
            reason: "not a date",
        },
        Case {
            name: "duplicated header",
            file: "dup-header.csv",
            bytes: format!("inquiry_id,inquiry_date,disposition,inquiry_date\n{}\n", "D-1,2026-03-01,admitted,2026-03-01")
                .into_bytes(),
            status: 1,
            kept: vec![],
            quarantine: vec!["rejected line 1 inquiry_date"],
            reason: "names this column twice",
        },
        Case {
            name: "missing required column",
            file: "no-disposition.csv",
            bytes: b"inquiry_id,inquiry_date,referral_source\nN-1,2026-03-01,Mercy Hospital\n".to_vec(),
            status: 1,
            kept: vec![],
            quarantine: vec!["rejected line 1 -"],
            reason: "lacks the required column(s) disposition",
        },
        Case {
            name: "empty file",
            file: "empty.csv",
            bytes: Vec::new(),
            status: 1,
            kept: vec![],
            quarantine: vec!["rejected whole file -"],
            reason: "empty",
        },
        Case {
            name: "headers only",
            file: "header-only.csv",
            bytes: format!("{HEADER}\n").into_bytes(),
            status: 0,
            kept: vec![],
            quarantine: vec![],
            reason: "",
        },
        Case {
            name: "CRLF and LF mixed, bad rows after both",
            file: "crlf-mix.csv",
            bytes: format!(
                "{HEADER}\r\n{}\r\nX-2,2026-13-01,Mercy Hospital,,admitted,\n{}\r\nX-4,,Mercy Hospital,,admitted,\r\n{}\n",
                good("X-1"),
                good("X-3"),
                good("X-5")
            )
            .into_bytes(),
            status: 0,
            kept: ids(&["X-1", "X-3", "X-5"]),
            quarantine: vec!["rejected line 3 inquiry_date", "rejected line 5 inquiry_date"],
            reason: "not a date",
        },
    ]
}

fn service_request(id: &str) -> serde_json::Value {
    serde_json::json!({
        "resourceType": "ServiceRequest", "id": id, "identifier": [{"value": id}],
        "status": "active", "intent": "order", "authoredOn": "2026-03-01",
        "requester": {"display": "Mercy Hospital"}
    })
}

fn bundle(resources: &[serde_json::Value]) -> String {
    let entries: Vec<serde_json::Value> = resources
        .iter()
        .map(|resource| serde_json::json!({"resource": resource}))
        .collect();
    serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
        .to_string()
}

fn fhir_cases() -> Vec<Case> {
    let whole = bundle(&[service_request("FT-1"), service_request("FT-2")]);
    // Cut inside the second entry.
    let cut = whole.find("FT-2").unwrap() + 10;
    let mut deep = String::from("{\"resourceType\": \"Bundle\", \"entry\": [");
    deep.push_str(&"[".repeat(100_000));
    let mut wrong_types = service_request("FW-2");
    wrong_types["authoredOn"] = serde_json::json!(20260301);
    let mut wrong_identifier = service_request("FW-3");
    wrong_identifier["identifier"] = serde_json::json!("FW-3");
    wrong_identifier["id"] = serde_json::json!(["not", "an", "id"]);
    let mut huge_array = service_request("FA-1");
    huge_array["note"] = serde_json::Value::Array(
        (0..200_000)
            .map(|i| serde_json::json!({"text": i}))
            .collect(),
    );
    let mut skipped: Vec<serde_json::Value> = (0..20_000)
        .map(|i| serde_json::json!({"resourceType": "Patient", "id": format!("p{i}")}))
        .collect();
    skipped.push(huge_array);
    skipped.push(service_request("FA-2"));
    vec![
        Case {
            name: "truncated Bundle JSON",
            file: "cut.json",
            bytes: whole.as_bytes()[..cut].to_vec(),
            status: 1,
            kept: ids(&["FT-1"]),
            quarantine: vec!["rejected line 1 -"],
            reason: "not valid JSON",
        },
        Case {
            name: "100,000 nested arrays",
            file: "deep.json",
            bytes: deep.into_bytes(),
            status: 1,
            kept: vec![],
            quarantine: vec!["rejected line 1 -"],
            reason: "deeper than",
        },
        Case {
            name: "wrong resourceType",
            file: "patient.json",
            bytes: serde_json::json!({"resourceType": "Patient", "entry": [{"resource": service_request("FR-1")}]})
                .to_string()
                .into_bytes(),
            status: 1,
            kept: vec![],
            quarantine: vec!["rejected whole file resourceType"],
            reason: "not Bundle",
        },
        Case {
            name: "wrong types in entries",
            file: "wrong-types.json",
            bytes: bundle(&[
                service_request("FW-1"),
                wrong_types,
                wrong_identifier,
                serde_json::json!("a string entry"),
                service_request("FW-5"),
            ])
            .into_bytes(),
            status: 0,
            kept: ids(&["FW-1", "FW-5"]),
            quarantine: vec![
                "rejected entry 2 authoredOn",
                "rejected entry 3 identifier",
                "rejected entry 4 -",
            ],
            reason: "not a FHIR date",
        },
        Case {
            name: "huge arrays: 20,000 entries and a 200,000-item note",
            file: "huge-arrays.json",
            bytes: bundle(&skipped).into_bytes(),
            status: 0,
            kept: ids(&["FA-1", "FA-2"]),
            quarantine: vec![],
            reason: "",
        },
        Case {
            name: "NDJSON with bad lines among good ones",
            file: "mixed.ndjson",
            bytes: format!(
                "{}\n{{\"resourceType\": \"ServiceRequest\", \"id\": \n{}\n[1, 2]\n{}\n",
                service_request("FN-1"),
                service_request("FN-3"),
                service_request("FN-5")
            )
            .into_bytes(),
            status: 0,
            kept: ids(&["FN-1", "FN-3", "FN-5"]),
            quarantine: vec!["rejected line 2 -", "rejected line 4 -"],
            reason: "not valid JSON",
        },
    ]
}

/// No panic and no signal: a crash is never an answer to bad input.
pub fn assert_no_crash(what: &str, output: &Output) {
    assert!(
        output.status >= 0,
        "{what}: killed by a signal\n{}",
        output.stderr
    );
    assert!(
        !output.stderr.contains("panicked") && !output.stdout.contains("panicked"),
        "{what}: panicked\n{}",
        output.stderr
    );
}

/// The ledger's quarantine rows for one file as `severity location field`, in file order.
fn quarantine_of(facility: &Facility, file: &str) -> Vec<(String, String)> {
    let sql = facility.sql();
    let mut statement = sql
        .prepare("SELECT severity, location, coalesce(field, '-'), reason FROM quarantine WHERE file_name = ?1 ORDER BY id")
        .unwrap();
    statement
        .query_map([file], |r| {
            Ok((
                format!(
                    "{} {} {}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?
                ),
                r.get::<_, String>(3)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn inquiry_ids(facility: &Facility) -> Vec<String> {
    let sql = facility.sql();
    let mut statement = sql
        .prepare(
            "SELECT DISTINCT inquiry_id FROM referral WHERE direction = 'in' ORDER BY inquiry_id",
        )
        .unwrap();
    statement
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn check(case: &Case) {
    let facility = Facility::new("");
    let path = facility.input(case.file, &case.bytes);
    let output = facility.run(&["import", "--json", &path.display().to_string()]);
    assert_no_crash(case.name, &output);
    assert_eq!(
        output.status, case.status,
        "{}: exit status\n{}",
        case.name, output.stderr
    );
    let report = output.json();
    let file_report = &report["file_reports"][0];
    let mut kept = case.kept.clone();
    kept.sort();
    assert_eq!(inquiry_ids(&facility), kept, "{}: the good rows", case.name);
    let quarantine = quarantine_of(&facility, case.file);
    let found: Vec<&str> = quarantine.iter().map(|(row, _)| row.as_str()).collect();
    assert_eq!(found, case.quarantine, "{}: quarantine", case.name);
    if let Some((_, reason)) = quarantine.first() {
        assert!(
            reason.contains(case.reason),
            "{}: reason {reason:?}",
            case.name
        );
    }
    // Every row read is accounted for.
    let rows = file_report["rows"].as_u64().unwrap();
    let rejected_rows = quarantine
        .iter()
        .filter(|(row, _)| row.starts_with("rejected"))
        .count() as u64;
    // A file read only part-way has one more quarantine row: where and why reading stopped.
    let stop_rows = u64::from(case.status == 1);
    assert_eq!(
        rows,
        case.kept.len() as u64 + rejected_rows - stop_rows
            + file_report["skipped"].as_u64().unwrap(),
        "{}: rows read = kept + quarantined + skipped\n{report}",
        case.name
    );
    // The operator finds it: `status` names the file and the location of each problem, and the
    // error output of a file read only part-way names the file.
    let status = facility.run(&["status"]);
    assert_eq!(status.status, 0, "{}", status.stderr);
    for row in &case.quarantine {
        let location = row.split(' ').skip(1).collect::<Vec<_>>();
        let location = if location[0] == "whole" {
            "whole file".to_string()
        } else {
            format!("{} {}", location[0], location[1])
        };
        assert!(
            status.stdout.contains(&format!("{} {location}", case.file)),
            "{}: status lacks {location}\n{}",
            case.name,
            status.stdout
        );
    }
    if case.status == 1 {
        assert!(
            output.stderr.contains("could not be read to the end")
                && file_report["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
            "{}: {}",
            case.name,
            output.stderr
        );
    }
}

#[test]
fn broken_exports_are_quarantined_with_their_location_beside_the_good_rows() {
    let cases: Vec<Case> = csv_cases().into_iter().chain(fhir_cases()).collect();
    for case in &cases {
        check(case);
    }
    crate::figure(&format!(
        "bad input: {} broken exports tried through `import`",
        cases.len()
    ));
}

#[test]
fn an_inbox_of_broken_exports_leaves_a_cycle_running_and_keeps_the_good_rows() {
    let facility = Facility::new("");
    let inbox = facility.path("state/inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let cases: Vec<Case> = csv_cases().into_iter().chain(fhir_cases()).collect();
    for case in &cases {
        std::fs::write(inbox.join(case.file), &case.bytes).unwrap();
    }
    let output = facility.run(&["sync", "--once", "--json"]);
    assert_no_crash("sync --once", &output);
    // Some files could not be read to their end: the cycle runs through and exits 1 (runtime
    // failure), naming where to look.
    assert_eq!(output.status, 1, "{}", output.stderr);
    assert!(
        output.stderr.contains("a file could not be read"),
        "{}",
        output.stderr
    );
    let mut kept: Vec<String> = cases.iter().flat_map(|c| c.kept.clone()).collect();
    kept.sort();
    assert_eq!(inquiry_ids(&facility), kept);
    // Each file left the inbox: wholly unreadable ones to rejected/, the rest to imported/.
    for case in &cases {
        let rejected = case.status == 1 && case.kept.is_empty();
        let folder = inbox.join(if rejected { "rejected" } else { "imported" });
        let moved = std::fs::read_dir(&folder).unwrap().any(|entry| {
            entry
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(case.file)
        });
        assert!(moved, "{} not in {}", case.file, folder.display());
        assert_eq!(
            quarantine_of(&facility, case.file)
                .iter()
                .map(|(row, _)| row.as_str())
                .collect::<Vec<_>>(),
            case.quarantine,
            "{}",
            case.name
        );
    }
    crate::figure(&format!(
        "bad input: {} broken exports tried through a `sync --once` inbox",
        cases.len()
    ));
}

/// One broken config and what `check-config` must say about it.
struct ConfigCase {
    name: &'static str,
    text: Vec<u8>,
    /// Fragments of the `file:line:column: message` lines expected, `{file}` for the config path.
    expect: Vec<String>,
}

#[test]
fn broken_configs_are_refused_with_file_line_and_column() {
    let facility = Facility::new("");
    let secrets = facility.path("secrets");
    let token = secrets.join("hubspot_token");
    std::fs::write(&token, "pat-token\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let open_token = secrets.join("open_token");
    std::fs::write(&open_token, "pat-token\n").unwrap();
    std::fs::set_permissions(&open_token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let base = std::fs::read_to_string(&facility.config).unwrap();
    let hubspot = |url: &str, token: &Path| {
        format!(
            "[connectors.hubspot]\nbase_url = \"{url}\"\n[connectors.hubspot.auth]\nmethod = \"private_app\"\naccess_token_file = \"{}\"\n",
            token.display()
        )
    };
    let base_lines = base.lines().count() + 1;
    let line = |offset: usize| base_lines + offset;
    let cases = vec![
        ConfigCase {
            name: "not TOML",
            text: b"this is [not toml\n".to_vec(),
            expect: vec!["{file}:1:".to_string()],
        },
        ConfigCase {
            name: "empty file",
            text: Vec::new(),
            expect: vec!["{file}:1:1: missing field `ledger`".to_string()],
        },
        ConfigCase {
            name: "binary file",
            text: b"\x7fELF\x02\x01\x01\x00\x00\x00\xff\xfe".to_vec(),
            expect: vec!["{file}:1:".to_string()],
        },
        ConfigCase {
            name: "unknown key",
            text: format!("{base}[schedule]\npull_everything = \"0 * * * * *\"\n").into_bytes(),
            expect: vec![format!(
                "{{file}}:{}:1: unknown field `pull_everything`",
                line(1)
            )],
        },
        ConfigCase {
            name: "wrong type",
            text: format!("{base}[maintenance]\nbackup_keep = \"seven\"\n").into_bytes(),
            expect: vec![format!(
                "{{file}}:{}:15: invalid type: string \"seven\"",
                line(1)
            )],
        },
        ConfigCase {
            name: "bad cron",
            text: format!("{base}[schedule]\nimport = \"61 * * * * *\"\n").into_bytes(),
            expect: vec![format!("{{file}}:{}:1: schedule.import", line(1))],
        },
        ConfigCase {
            name: "missing secret",
            text: format!(
                "{base}{}",
                hubspot("https://api.hubapi.com", &secrets.join("nothing"))
            )
            .into_bytes(),
            expect: vec![format!(
                "{{file}}:{}:1: connectors.hubspot.auth.access_token_file: cannot read secret file",
                line(4)
            )],
        },
        ConfigCase {
            name: "world-readable secret",
            text: format!("{base}{}", hubspot("https://api.hubapi.com", &open_token)).into_bytes(),
            expect: vec![
                format!(
                    "{{file}}:{}:1: connectors.hubspot.auth.access_token_file: secret file",
                    line(4)
                ),
                "is readable by every user".to_string(),
            ],
        },
        ConfigCase {
            name: "not a URL",
            text: format!("{base}{}", hubspot("api dot hubapi dot com", &token)).into_bytes(),
            expect: vec![format!(
                "{{file}}:{}:1: connectors.hubspot.base_url: \"api dot hubapi dot com\" is not a URL",
                line(1)
            )],
        },
        ConfigCase {
            name: "wrong URL scheme",
            text: format!("{base}{}", hubspot("ftp://api.hubapi.com", &token)).into_bytes(),
            expect: vec![format!(
                "{{file}}:{}:1: connectors.hubspot.base_url: the scheme must be https",
                line(1)
            )],
        },
    ];
    for case in &cases {
        let path = facility.path("broken.toml");
        std::fs::write(&path, &case.text).unwrap();
        let output = run_binary(&["check-config"], Some(&path));
        assert_no_crash(case.name, &output);
        assert_eq!(output.status, 2, "{}: {}", case.name, output.stderr);
        for fragment in &case.expect {
            let fragment = fragment.replace("{file}", &path.display().to_string());
            assert!(
                output.stderr.contains(&fragment),
                "{}: missing {fragment:?} in\n{}",
                case.name,
                output.stderr
            );
        }
        // The commands that need the config refuse it the same way.
        let sync = run_binary(&["sync", "--once"], Some(&path));
        assert_no_crash(case.name, &sync);
        assert_eq!(sync.status, 2, "{}: sync: {}", case.name, sync.stderr);
    }
    crate::figure(&format!("bad input: {} broken configs tried", cases.len()));
}
