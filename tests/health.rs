//! `refbridge health` through the real binary, on a synthetic facility's EHR export: worst
//! partners first, a reason on every line, JSON and CSV that parse, one partner in detail, an
//! earlier as-of day, and exit 2 for a partner id that does not exist.

mod common;

use chrono::NaiveDate;
use common::Facility;
use refbridge_synthetic::{Direction, Pattern, Scale, World, WorldSpec, exports::write_exports};
use serde_json::Value;

const AS_OF: &str = "2026-11-01";

fn as_of() -> NaiveDate {
    AS_OF.parse().unwrap()
}

/// A facility whose ledger holds the synthetic world's generic CSV export.
fn imported_world() -> (Facility, World) {
    imported_world_of(Scale::Small)
}

fn imported_world_of(scale: Scale) -> (Facility, World) {
    let world = refbridge_synthetic::generate(WorldSpec {
        seed: 7,
        scale,
        as_of: as_of(),
    });
    let facility = Facility::new("");
    let files = write_exports(&world, &facility.path("input/world")).unwrap();
    facility.import(&[&files.generic_csv]);
    (facility, world)
}

fn health_json(facility: &Facility, extra: &[&str]) -> Value {
    let mut args = vec!["health", "--format", "json"];
    args.extend_from_slice(extra);
    let output = facility.run(&args);
    assert_eq!(output.status, 0, "{}", output.stderr);
    output.json()
}

#[test]
fn the_table_lists_the_worst_partners_first_each_with_a_reason() {
    let (facility, _) = imported_world();
    let output = facility.run(&["health", "--as-of", AS_OF]);
    assert_eq!(output.status, 0, "{}", output.stderr);
    let lines: Vec<&str> = output.stdout.lines().collect();
    assert!(
        lines[0].starts_with("Partner health as of 2026-11-01: "),
        "{}",
        output.stdout
    );
    assert!(
        lines[1].contains("PARTNER") && lines[1].contains("WHY"),
        "{}",
        lines[1]
    );
    // A partner's row, then its reason's continuation lines (indented under WHY).
    let rows: Vec<&str> = lines[2..]
        .iter()
        .copied()
        .filter(|line| !line.starts_with("Every component") && !line.starts_with(&" ".repeat(10)))
        .collect();
    assert!(
        !output.stdout.contains('…')
            || lines[2..].iter().all(|line| {
                let why = lines[1].find("WHY").unwrap();
                !line.chars().skip(why).any(|c| c == '…')
            }),
        "a reason was cut: {}",
        output.stdout
    );
    assert!(rows.len() > 5, "{}", output.stdout);
    for line in lines.iter() {
        assert!(
            line.chars().count() <= 100,
            "wider than 100 columns: {line:?}"
        );
    }
    let why = lines[1].find("WHY").unwrap();
    for row in &rows {
        let reason: String = row.chars().skip(why).collect();
        assert!(reason.contains(": "), "no reason on {row:?}");
    }
    assert!(
        rows[0].contains("at_risk"),
        "worst first: {}",
        output.stdout
    );

    // A second run with nothing new reuses the stored snapshots and says so.
    let again = facility.run(&["health", "--as-of", AS_OF]);
    assert_eq!(again.status, 0, "{}", again.stderr);
    assert!(
        again.stdout.contains(
            "Nothing new since the last run for this day: these are its stored snapshots."
        ),
        "{}",
        again.stdout
    );
    let rows_again: Vec<&str> = again
        .stdout
        .lines()
        .filter(|line| !line.starts_with("Nothing new"))
        .collect();
    assert_eq!(rows_again, lines, "the same table");
}

#[test]
fn json_is_sorted_worst_first_and_finds_the_silent_partners() {
    // Medium: the small world's few silent partners all referred less than monthly.
    let (facility, world) = imported_world_of(Scale::Medium);
    let health = health_json(&facility, &["--as-of", AS_OF]);
    let partners = health.as_array().unwrap();
    assert!(!partners.is_empty());

    // At risk first, then by score ascending, no score last.
    let key = |p: &Value| {
        (
            p["state"] != "at_risk",
            p["score"].is_null(),
            p["score"].as_f64().unwrap_or(0.0),
        )
    };
    for pair in partners.windows(2) {
        let (a, b) = (key(&pair[0]), key(&pair[1]));
        assert!(
            (a.0, a.1) < (b.0, b.1) || ((a.0, a.1) == (b.0, b.1) && a.2 <= b.2),
            "out of order: {} then {}",
            pair[0],
            pair[1]
        );
    }
    for partner in partners {
        let components = partner["components"].as_array().unwrap();
        assert_eq!(components.len(), 6, "{partner}");
        for component in components {
            assert!(
                !component["reason"].as_str().unwrap().is_empty(),
                "{partner}"
            );
        }
    }

    // Every silent partner of the world that referred more than monthly before going quiet (at
    // least 4 months ago) is at risk, and flagged silent. Matched to the ledger by the name its
    // referrals carry (a few carry a variant, which makes a partner of its own until identity
    // resolution merges them: hence the margin above one a month).
    let baseline = (
        as_of() - chrono::Days::new(484),
        as_of() - chrono::Days::new(120),
    );
    let sql = facility.sql();
    let mut checked = 0;
    for (index, partner) in world.partners.iter().enumerate() {
        // A partner with a duplicate CRM record (whose referrals may land on the same ledger
        // partner) or a namesake is left out: its ledger history is not its own.
        let shared = world.partners.iter().enumerate().any(|(other, p)| {
            other != index && (p.duplicate_of == Some(index) || p.name == partner.name)
        });
        if partner.pattern != Pattern::Silent || partner.duplicate_of.is_some() || shared {
            continue;
        }
        let in_baseline = world
            .referrals
            .iter()
            .filter(|r| r.partner == index && r.direction == Direction::In)
            .filter(|r| {
                let day = r.inquiry_at.date_naive();
                day >= baseline.0 && day <= baseline.1
            })
            .count();
        if in_baseline < 16 {
            continue;
        }
        let id: i64 = sql
            .query_row(
                "SELECT partner_id FROM partner_source_record WHERE raw_name = ?1",
                [&partner.name],
                |r| r.get(0),
            )
            .unwrap();
        let found = partners
            .iter()
            .find(|p| p["partner_id"] == id)
            .unwrap_or_else(|| panic!("{} ({id}) not in the report", partner.name));
        assert_eq!(found["state"], "at_risk", "{found}");
        assert_eq!(found["facts"]["silent"], true, "{found}");
        checked += 1;
    }
    assert!(
        checked > 0,
        "the world has no silent partner with a baseline to check"
    );
}

#[test]
fn csv_has_a_row_per_partner_with_every_components_score_and_reason() {
    let (facility, _) = imported_world();
    let json = health_json(&facility, &["--as-of", AS_OF]);
    let output = facility.run(&["health", "--as-of", AS_OF, "--format", "csv"]);
    assert_eq!(output.status, 0, "{}", output.stderr);
    let mut reader = csv::Reader::from_reader(output.stdout.as_bytes());
    let headers = reader.headers().unwrap().clone();
    for column in [
        "as_of",
        "partner_id",
        "name",
        "score",
        "state",
        "trend",
        "volume_score",
        "volume_reason",
        "decline_reason",
        "conversion_reason",
        "recency_reason",
        "ownership_reason",
        "reciprocity_score",
        "reciprocity_reason",
    ] {
        assert!(
            headers.iter().any(|h| h == column),
            "no {column} in {headers:?}"
        );
    }
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), json.as_array().unwrap().len());
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    for (row, partner) in rows.iter().zip(json.as_array().unwrap()) {
        assert_eq!(&row[column("as_of")], AS_OF);
        assert_eq!(row[column("partner_id")], partner["partner_id"].to_string());
        assert!(!row[column("volume_reason")].is_empty());
    }
}

#[test]
fn one_partner_in_detail_and_an_unknown_one_is_a_usage_error() {
    let (facility, _) = imported_world();
    let health = health_json(&facility, &["--as-of", AS_OF]);
    let worst = health[0]["partner_id"].as_i64().unwrap();
    let id = worst.to_string();

    let output = facility.run(&["health", "--as-of", AS_OF, "--partner", &id]);
    assert_eq!(output.status, 0, "{}", output.stderr);
    let name = health[0]["name"].as_str().unwrap();
    assert!(
        output
            .stdout
            .starts_with(&format!("{name} (partner {worst}), as of {AS_OF}")),
        "{}",
        output.stdout
    );
    for word in [
        "volume",
        "decline",
        "conversion",
        "recency",
        "ownership",
        "reciprocity",
        "FACTS",
        "last referral",
    ] {
        assert!(
            output.stdout.contains(word),
            "no {word} in {}",
            output.stdout
        );
    }

    let one = health_json(&facility, &["--as-of", AS_OF, "--partner", &id]);
    assert_eq!(one["partner_id"], worst);
    for key in ["name", "state", "trend", "components"] {
        // (Scores are compared through the reasons: a stored float may differ in its last bit.)
        let strip = |value: &Value| match value {
            Value::Array(components) => components
                .iter()
                .map(|c| c["reason"].clone())
                .collect::<Vec<_>>()
                .into(),
            other => other.clone(),
        };
        assert_eq!(strip(&one[key]), strip(&health[0][key]), "{key}");
    }

    let unknown = facility.run(&["health", "--partner", "999999"]);
    assert_eq!(unknown.status, 2, "{}", unknown.stderr);
    assert!(
        unknown
            .stderr
            .contains("there is no partner 999999 in the ledger"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn an_earlier_as_of_day_sees_only_what_was_known_then() {
    let (facility, world) = imported_world();
    let early = "2026-05-01";
    let output = facility.run(&["health", "--as-of", early]);
    assert_eq!(output.status, 0, "{}", output.stderr);
    assert!(
        output
            .stdout
            .starts_with("Partner health as of 2026-05-01: "),
        "{}",
        output.stdout
    );
    let health = health_json(&facility, &["--as-of", early]);
    let cutoff: NaiveDate = early.parse().unwrap();
    for partner in health.as_array().unwrap() {
        if let Some(last) = partner["facts"]["last_referral"].as_str() {
            assert!(last <= early, "{partner}");
        }
    }
    // Silent partners went quiet in the last four months: on May 1 none of them was silent.
    let silent_names: Vec<&str> = world
        .partners
        .iter()
        .filter(|p| p.pattern == Pattern::Silent)
        .map(|p| p.name.as_str())
        .collect();
    for partner in health.as_array().unwrap() {
        if silent_names.contains(&partner["name"].as_str().unwrap()) {
            assert_eq!(partner["facts"]["silent"], false, "{partner} on {cutoff}");
        }
    }
}

#[test]
fn health_needs_an_existing_ledger() {
    let facility = Facility::new("");
    let output = facility.run(&["health"]);
    assert_eq!(output.status, 1, "{}", output.stderr);
    assert!(
        output.stderr.contains("there is no ledger at"),
        "{}",
        output.stderr
    );
}

#[test]
fn bad_health_settings_are_each_reported_with_their_line() {
    let facility = Facility::new(
        "[health]\nalpha = 1.5\nwatch_below = 30.0\n[health.weights]\nvolume = -0.3\n",
    );
    let output = facility.run(&["check-config"]);
    assert_eq!(output.status, 2, "{}", output.stderr);
    let file = facility.config.display().to_string();
    for line in [
        format!("{file}:8:1: health.alpha: must be between 0 and 1 (exclusive)"),
        format!("{file}:9:1: health.watch_below: must be at least at_risk_below (40)"),
        format!("{file}:11:1: health.weights.volume: must be a number ≥ 0"),
    ] {
        assert!(
            output.stderr.contains(&line),
            "no {line:?} in:\n{}",
            output.stderr
        );
    }
}
