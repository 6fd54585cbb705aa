//! `systemd/refbridge.service` against the files it must agree with: every secret the example
//! config reads from `/run/credentials/refbridge.service/` is one the unit loads, every credential
//! the unit loads is in the README's install table, and the unit starts the daemon on the config
//! path the example says it is installed at. A mismatch is a service that does not start.
//! Text only: `.ci/systemd-unit` runs `systemd-analyze security` and `verify` on the unit.

use std::collections::BTreeSet;

const UNIT: &str = include_str!("../systemd/refbridge.service");
const EXAMPLE: &str = include_str!("../config/refbridge.example.toml");
const README: &str = include_str!("../README.md");

const CREDENTIALS: &str = "/run/credentials/refbridge.service/";

/// The unit's `LoadCredential=` lines as (credential name, source).
fn loaded_credentials() -> Vec<(&'static str, &'static str)> {
    UNIT.lines()
        .filter_map(|line| line.strip_prefix("LoadCredential="))
        .map(|value| value.split_once(':').unwrap_or((value, value)))
        .collect()
}

/// The credential names a config text reads, commented-out keys included.
fn credentials_read_by(config: &str) -> BTreeSet<&str> {
    config
        .match_indices(CREDENTIALS)
        .map(|(at, _)| {
            let rest = &config[at + CREDENTIALS.len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

fn unit_values(key: &str) -> Vec<&'static str> {
    let prefix = format!("{key}=");
    UNIT.lines()
        .filter_map(|line| line.strip_prefix(prefix.as_str()))
        .collect()
}

#[test]
fn every_secret_the_example_config_reads_is_loaded_by_the_unit() {
    let loaded: BTreeSet<&str> = loaded_credentials().iter().map(|(name, _)| *name).collect();
    let read = credentials_read_by(EXAMPLE);
    assert!(read.contains("patient_key"), "{read:?}");
    let missing: Vec<&&str> = read.difference(&loaded).collect();
    assert!(
        missing.is_empty(),
        "the example config reads {missing:?} from {CREDENTIALS}, which the unit never loads"
    );
}

#[test]
fn the_unit_loads_exactly_the_store_files_the_readme_documents() {
    let mut sources = BTreeSet::new();
    for (name, source) in loaded_credentials() {
        // The copy keeps the name the config points at; the store file carries a prefix.
        assert_eq!(
            source,
            format!("refbridge.{name}"),
            "LoadCredential={name}:{source}"
        );
        sources.insert(source.to_string());
    }
    // The README's table rows: | `refbridge.NAME` | config key |
    let documented: BTreeSet<String> = README
        .lines()
        .filter_map(|line| line.strip_prefix("| `refbridge."))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| format!("refbridge.{name}"))
        .collect();
    assert_eq!(sources, documented);
}

#[test]
fn the_unit_starts_the_daemon_on_the_installed_config() {
    assert_eq!(
        unit_values("ExecStart"),
        ["/usr/local/bin/refbridge run --config /etc/refbridge/refbridge.toml"]
    );
    assert!(EXAMPLE.contains("Installed as /etc/refbridge/refbridge.toml"));
    assert!(
        README.contains(
            "install -m 0644 config/refbridge.example.toml /etc/refbridge/refbridge.toml"
        )
    );
    // The example's ledger and inbox lie in the only directory the service may write.
    assert_eq!(unit_values("StateDirectory"), ["refbridge"]);
    assert_eq!(unit_values("ProtectSystem"), ["strict"]);
    assert!(EXAMPLE.contains("path = \"/var/lib/refbridge/ledger.db\""));
    assert!(EXAMPLE.contains("inbox = \"/var/lib/refbridge/inbox\""));
}
