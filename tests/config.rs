//! `refbridge check-config`: valid configs pass, every problem is listed with its line, secrets are
//! files that other users cannot read.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Facility, run_binary};

/// The example config with its absolute paths pointed into a scratch directory.
fn example_in(facility: &Facility) -> std::path::PathBuf {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/refbridge.example.toml"
    ))
    .unwrap();
    let text = example
        .replace(
            "/var/lib/refbridge",
            &facility.path("state").display().to_string(),
        )
        .replace(
            "/run/credentials/refbridge.service",
            &facility.path("secrets").display().to_string(),
        );
    // The secrets the example names, beside the patient key.
    let jwt_key = facility.path("secrets/salesforce_jwt_key");
    std::fs::write(
        &jwt_key,
        "-----BEGIN PRIVATE KEY-----\nplaceholder\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    std::fs::set_permissions(&jwt_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let hubspot_token = facility.path("secrets/hubspot_token");
    std::fs::write(&hubspot_token, "pat-na1-placeholder\n").unwrap();
    std::fs::set_permissions(&hubspot_token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let path = facility.path("example.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_example_config_is_valid_with_every_commented_key_enabled() {
    let facility = Facility::new("");
    let path = example_in(&facility);
    let output = run_binary(&["check-config"], Some(&path));
    assert_eq!(output.status, 0, "{}", output.stderr);
    assert!(output.stdout.contains("valid"));
    // Uncomment every example key (lines like `# key = value` and `# [[table]]`): still valid.
    let text = std::fs::read_to_string(&path).unwrap();
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if is_setting(rest) => rest.split("  #").next().unwrap().to_string(),
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&path, uncommented).unwrap();
    let output = run_binary(&["check-config"], Some(&path));
    assert_eq!(output.status, 0, "{}", output.stderr);
}

/// `key = value`, `"quoted key" = value` or `[[table]]`: a commented-out setting, not prose.
fn is_setting(text: &str) -> bool {
    if text.starts_with("[[") {
        return true;
    }
    let Some((key, _)) = text.split_once(" = ") else {
        return false;
    };
    (key.starts_with('"') && key.ends_with('"'))
        || key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

#[test]
fn every_problem_is_listed_with_its_key_and_line() {
    let facility = Facility::new("");
    let path = facility.path("bad.toml");
    std::fs::write(
        &path,
        "[ledger]\n\
         path = \"ledger.db\"\n\
         busy_timeout_seconds = 0\n\
         [privacy]\n\
         patient_key_file = \"missing-key\"\n\
         [connectors.ehr]\n\
         inbox = \"inbox\"\n\
         level_of_care_scheme = \"asam9\"\n\
         [connectors.ehr.csv]\n\
         date_formats = [\"%Y-%m-%d\", \"%H:%M\"]\n\
         [connectors.ehr.csv.values.disposition]\n\
         \"Admit\" = \"maybe\"\n\
         [[identity.alias]]\n\
         partner = \"Mercy\"\n\
         npi = \"1234567890\"\n\
         names = [\"Mercy ED\"]\n",
    )
    .unwrap();
    let output = run_binary(&["check-config"], Some(&path));
    assert_eq!(output.status, 2);
    let file = path.display().to_string();
    let expected = [
        format!("{file}:3:1: ledger.busy_timeout_seconds: must be at least 1"),
        format!("{file}:5:1: privacy.patient_key_file: cannot read secret file"),
        format!("{file}:8:1: connectors.ehr.level_of_care_scheme: must be one of asam3, asam4"),
        format!(
            "{file}:10:29: connectors.ehr.csv.date_formats[1]: \"%H:%M\" must contain a year and a day"
        ),
        format!(
            "{file}:12:1: connectors.ehr.csv.values.disposition.Admit: \"maybe\" is not a disposition"
        ),
        format!("{file}:15:1: identity.alias[0].npi: not a valid NPI"),
    ];
    for line in &expected {
        assert!(
            output.stderr.contains(line.as_str()),
            "missing {line:?} in:\n{}",
            output.stderr
        );
    }
    assert!(
        output.stderr.contains("has 6 problems"),
        "{}",
        output.stderr
    );
}

#[test]
fn unknown_keys_and_syntax_errors_point_at_their_line() {
    let facility = Facility::new("");
    let path = facility.path("typo.toml");
    std::fs::write(
        &path,
        "[ledger]\npath = \"x.db\"\nbusy_timeout = 5\n[privacy]\n",
    )
    .unwrap();
    let output = run_binary(&["check-config"], Some(&path));
    assert_eq!(output.status, 2);
    assert!(
        output.stderr.contains(":3:1: unknown field `busy_timeout`"),
        "{}",
        output.stderr
    );
    std::fs::write(&path, "[ledger\npath = 1\n").unwrap();
    let output = run_binary(&["check-config"], Some(&path));
    assert_eq!(output.status, 2);
    assert!(output.stderr.contains(":1:"), "{}", output.stderr);
}

#[test]
fn a_world_readable_key_is_refused_and_never_printed() {
    let facility = Facility::new("");
    let key = facility.path("secrets/patient_key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = facility.run(&["check-config"]);
    assert_eq!(output.status, 2);
    assert!(
        output
            .stderr
            .contains("is readable by every user (mode 644)"),
        "{}",
        output.stderr
    );
    assert!(
        !output.stderr.contains("0123456789abcdef"),
        "the secret must never be printed"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(facility.run(&["check-config"]).status, 0);
}

#[test]
fn the_patient_key_can_come_from_the_systemd_credentials_directory() {
    let facility = Facility::new("");
    let path = facility.path("credentials.toml");
    std::fs::write(
        &path,
        format!(
            "[ledger]\npath = \"{}\"\n[privacy]\n",
            facility.ledger().display()
        ),
    )
    .unwrap();
    let without = run_binary(&["check-config"], Some(&path));
    assert_eq!(without.status, 2);
    assert!(
        without.stderr.contains("LoadCredential=patient_key"),
        "{}",
        without.stderr
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_refbridge"))
        .args(["check-config", "--config"])
        .arg(&path)
        .env("CREDENTIALS_DIRECTORY", facility.path("secrets"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn identity_merges_and_splits_are_checked_reference_by_reference() {
    let facility = Facility::new(
        "[[identity.merge]]\n\
         records = [\"salesforce:001A\", \"hubspot:12\", \"ehr:Mercy Hosp ED\"]\n\
         [[identity.merge]]\n\
         records = [\"hubspot:12\", \"epic:9\", \"Mercy\"]\n\
         [[identity.merge]]\n\
         records = [\"ehr:Lone\"]\n\
         [[identity.split]]\n\
         record = \"ehr:Mercy Hosp ED\"\n\
         [[identity.split]]\n\
         record = \"hubspot:\"\n",
    );
    let output = facility.run(&["check-config"]);
    assert_eq!(output.status, 2, "{}", output.stderr);
    for expected in [
        "identity.merge[1].records: \"hubspot:12\" is also in identity.merge[0]",
        "identity.merge[1].records: \"epic:9\": unknown system \"epic\": use ehr, salesforce, hubspot",
        "identity.merge[1].records: \"Mercy\": write a record as system:key",
        "identity.merge[2].records: list at least two records",
        "identity.split[0].record: \"ehr:Mercy Hosp ED\" is also in identity.merge[0]; a record cannot be both merged and split",
        "identity.split[1].record: \"hubspot:\": the key after the system is empty",
    ] {
        assert!(
            output.stderr.contains(expected),
            "missing {expected:?} in:\n{}",
            output.stderr
        );
    }
    assert!(
        output.stderr.contains("has 6 problems"),
        "{}",
        output.stderr
    );
    // References to records the ledger does not hold are not config errors: they wait.
    let waiting = Facility::new(
        "[[identity.merge]]\nrecords = [\"hubspot:1\", \"salesforce:001Z\"]\n\
         [[identity.split]]\nrecord = \"ehr:Dr. A. Lee - Mercy\"\n",
    );
    assert_eq!(waiting.run(&["check-config"]).status, 0);
}
