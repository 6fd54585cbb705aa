//! Shared helpers for the end-to-end tests: a scratch facility (key, config, inbox) and a way to
//! run the real `refbridge` binary against it.

#![allow(dead_code)]

pub mod sandbox;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The generic header, as documented.
pub const GENERIC_HEADER: &str = "inquiry_id,inquiry_date,referral_source,referral_source_npi,referral_source_type,referred_by,rep,payer,plan_type,level_of_care,disposition,disposition_reason,referred_out_to,admit_date,mrn,patient_name,birth_date,patient_phone,patient_address,patient_zip,notes";

/// A scratch installation: `state/` holds what refbridge writes (ledger, inbox), `input/` what
/// the test feeds it.
pub struct Facility {
    pub root: tempfile::TempDir,
    pub config: PathBuf,
}

/// What one run of the binary printed.
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

impl Facility {
    /// A facility with the minimal config of the foundation issue plus `extra` TOML.
    pub fn new(extra: &str) -> Facility {
        let root = tempfile::tempdir().expect("tempdir");
        for dir in ["state", "input", "secrets"] {
            std::fs::create_dir(root.path().join(dir)).unwrap();
        }
        let key = root.path().join("secrets/patient_key");
        std::fs::write(&key, b"0123456789abcdef0123456789abcdef\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = root.path().join("refbridge.toml");
        std::fs::write(
            &config,
            format!(
                "[ledger]\npath = \"{}\"\n[privacy]\npatient_key_file = \"{}\"\n[connectors.ehr]\ninbox = \"{}\"\n{extra}",
                root.path().join("state/ledger.db").display(),
                key.display(),
                root.path().join("state/inbox").display(),
            ),
        )
        .unwrap();
        Facility { root, config }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.path().join(relative)
    }

    pub fn ledger(&self) -> PathBuf {
        self.path("state/ledger.db")
    }

    /// Writes an input file under `input/` and returns its path.
    pub fn input(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path("input").join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// Runs `refbridge ARGS` with this facility's config appended where the subcommand takes it.
    pub fn run(&self, args: &[&str]) -> Output {
        run_binary(args, Some(&self.config))
    }

    /// `refbridge import --json PATHS…`, asserting success, as JSON.
    pub fn import(&self, paths: &[&Path]) -> Value {
        self.import_expecting(paths, 0)
    }

    /// `refbridge import --json PATHS…`, asserting the exit status (1: a file was unreadable), as JSON.
    pub fn import_expecting(&self, paths: &[&Path], status: i32) -> Value {
        let mut args = vec!["import", "--json"];
        let texts: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        args.extend(texts.iter().map(String::as_str));
        let output = self.run(&args);
        assert_eq!(
            output.status, status,
            "import exit status: {}",
            output.stderr
        );
        output.json()
    }

    pub fn status(&self) -> Value {
        let output = self.run(&["status", "--json"]);
        assert_eq!(output.status, 0, "status failed: {}", output.stderr);
        output.json()
    }

    /// A read-only connection to the ledger, for assertions the CLI does not print.
    pub fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.ledger(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap()
    }
}

/// Runs the binary; `config` is passed as `--config` after the subcommand.
pub fn run_binary(args: &[&str], config: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_refbridge"));
    command.args(&args[..1]);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command.args(&args[1..]);
    command
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("RUST_LOG", "info");
    let output = command.output().expect("run refbridge");
    Output {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// One generic CSV row from (column, value) pairs; other columns empty.
pub fn row(values: &[(&str, &str)]) -> String {
    GENERIC_HEADER
        .split(',')
        .map(|column| {
            let value = values
                .iter()
                .find(|(c, _)| *c == column)
                .map_or("", |(_, v)| *v);
            if value.contains([',', '"', '\n']) {
                format!("\"{}\"", value.replace('"', "\"\""))
            } else {
                value.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A generic CSV file from rows.
pub fn csv(rows: &[String]) -> String {
    let mut text = String::from(GENERIC_HEADER);
    for row in rows {
        text.push('\n');
        text.push_str(row);
    }
    text.push('\n');
    text
}

/// Every file under `dir`, recursively (for sweeping a state folder for canaries).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// True when `haystack` holds `needle`, ASCII case ignored (a canary in any case is a leak).
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}
