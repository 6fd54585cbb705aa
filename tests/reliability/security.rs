//! Security properties an operator relies on: the ledger, its `-wal`/`-shm` files and its
//! backups are owner-only (0600) and the directories refbridge creates are too (0700); a CRM URL
//! that is not loopback must be https (`check-config` exit 2, saying so), while https to a real
//! host passes offline; and the systemd unit's exposure stays within its budget of 2.0.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Facility, csv, row, run_binary};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn assert_private_file(path: &Path) {
    assert_eq!(mode(path), 0o600, "{} is not 0600", path.display());
}

fn assert_private_dir(path: &Path) {
    assert_eq!(
        mode(path) & 0o077,
        0,
        "{} is open to others ({:o})",
        path.display(),
        mode(path)
    );
}

#[test]
fn the_ledger_its_wal_backups_and_the_directories_refbridge_creates_are_owner_only() {
    let facility = Facility::new("");
    // A config whose ledger and inbox lie in directories that do not exist yet.
    let text = std::fs::read_to_string(&facility.config)
        .unwrap()
        .replace("state/ledger.db", "state/private/ledger.db")
        .replace("state/inbox", "state/private/inbox");
    std::fs::write(
        &facility.config,
        format!("{text}[schedule]\nmaintenance = \"*/2 * * * * *\"\nimport = \"0 0 0 1 1 *\"\nevaluate = \"0 0 0 1 1 *\"\njitter_seconds = 0\n"),
    )
    .unwrap();
    let state = facility.path("state/private");
    let ledger = state.join("ledger.db");

    // A new ledger, created by the first import.
    let export = facility.input(
        "referrals.csv",
        csv(&[row(&[
            ("inquiry_id", "S-1"),
            ("inquiry_date", "2026-10-01"),
            ("referral_source", "Harbor Clinic"),
            ("disposition", "admitted"),
        ])]),
    );
    let import = facility.run(&["import", &export.display().to_string()]);
    assert_eq!(import.status, 0, "{}", import.stderr);
    assert_private_file(&ledger);
    assert_private_dir(&state);

    // After a whole cycle that moved an export out of the inbox, with a reader holding the WAL
    // and shared-memory files open.
    let inbox = state.join("inbox");
    let scan = facility.run(&["import"]);
    assert_eq!(scan.status, 0, "an empty inbox: {}", scan.stderr);
    assert_private_dir(&inbox);
    std::fs::write(
        inbox.join("more.csv"),
        csv(&[row(&[
            ("inquiry_id", "S-2"),
            ("inquiry_date", "2026-10-02"),
            ("referral_source", "Harbor Clinic"),
            ("disposition", "pending"),
        ])]),
    )
    .unwrap();
    let holder =
        rusqlite::Connection::open_with_flags(&ledger, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let _: i64 = holder
        .query_row("SELECT count(*) FROM referral", [], |r| r.get(0))
        .unwrap();
    let cycle = facility.run(&["sync", "--once"]);
    assert_eq!(cycle.status, 0, "{}", cycle.stderr);
    for suffix in ["", "-wal", "-shm"] {
        assert_private_file(Path::new(&format!("{}{suffix}", ledger.display())));
    }
    assert_private_dir(&inbox);
    assert_private_dir(&inbox.join("imported"));
    drop(holder);

    // The daemon's maintenance backup.
    let backups = state.join("backups");
    let mut child = Command::new(env!("CARGO_BIN_EXE_refbridge"))
        .args(["run", "--config"])
        .arg(&facility.config)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let backup = loop {
        let found = std::fs::read_dir(&backups).ok().and_then(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|e| e == "db"))
        });
        if let Some(found) = found {
            // Let the backup finish before reading its mode.
            std::thread::sleep(Duration::from_millis(500));
            break found;
        }
        assert!(Instant::now() < deadline, "no backup in 30 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "the daemon did not stop cleanly: {status}"
    );
    assert_private_file(&backup);
    assert_private_dir(&backups);
    assert_private_file(&ledger);
}

#[test]
fn crm_urls_beyond_loopback_must_be_https() {
    let facility = Facility::new("");
    let token = facility.path("secrets/token");
    std::fs::write(&token, "secret-token\n").unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let base = std::fs::read_to_string(&facility.config).unwrap();
    let config = |salesforce_instance: &str, salesforce_login: &str, hubspot: &str| {
        format!(
            "{base}[connectors.salesforce]\ninstance_url = \"{salesforce_instance}\"\nlogin_url = \"{salesforce_login}\"\n[connectors.salesforce.auth]\nmethod = \"client_credentials\"\nclient_id = \"abc\"\nclient_secret_file = \"{token}\"\n[connectors.hubspot]\nbase_url = \"{hubspot}\"\n[connectors.hubspot.auth]\nmethod = \"private_app\"\naccess_token_file = \"{token}\"\n",
            token = token.display()
        )
    };
    let path = facility.path("crm.toml");
    let cases = [
        (
            "http://crm.example.org",
            "https://login.example.org",
            "https://api.hubapi.com",
            vec!["connectors.salesforce.instance_url"],
        ),
        (
            "https://crm.example.org",
            "http://login.salesforce.com",
            "https://api.hubapi.com",
            vec!["connectors.salesforce.login_url"],
        ),
        (
            "https://crm.example.org",
            "https://login.example.org",
            "http://api.hubapi.com",
            vec!["connectors.hubspot.base_url"],
        ),
        (
            "http://10.0.0.5:8080",
            "http://192.168.1.2",
            "http://[2001:db8::1]",
            vec![
                "connectors.salesforce.instance_url",
                "connectors.salesforce.login_url",
                "connectors.hubspot.base_url",
            ],
        ),
    ];
    for (instance, login, hubspot, refused) in &cases {
        std::fs::write(&path, config(instance, login, hubspot)).unwrap();
        let output = run_binary(&["check-config"], Some(&path));
        assert_eq!(
            output.status, 2,
            "{instance} {login} {hubspot}: {}",
            output.stderr
        );
        for key in refused {
            let line = output
                .stderr
                .lines()
                .find(|line| line.contains(&format!(": {key}:")))
                .unwrap_or_else(|| panic!("{key} not refused:\n{}", output.stderr));
            assert!(line.contains("use https"), "{line}");
            assert!(line.contains(&format!("{}:", path.display())), "{line}");
        }
    }
    // https to real hosts, and plain http on loopback (the sandboxes), pass offline.
    for (instance, login, hubspot) in [
        (
            "https://crm.example.org",
            "https://login.salesforce.com",
            "https://api.hubapi.com",
        ),
        (
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "http://[::1]:9000",
        ),
    ] {
        std::fs::write(&path, config(instance, login, hubspot)).unwrap();
        let output = run_binary(&["check-config"], Some(&path));
        assert_eq!(
            output.status, 0,
            "{instance} {login} {hubspot}: {}",
            output.stderr
        );
    }
    crate::figure(&format!(
        "security: {} CRM URL configs tried",
        cases.len() + 2
    ));
}

#[test]
fn the_systemd_unit_stays_within_its_exposure_budget() {
    let available = Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !available {
        crate::figure(
            "security: SKIPPED the systemd exposure check: systemd-analyze is not installed here (.ci/systemd-unit runs it where it is)",
        );
        return;
    }
    let output = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/systemd-unit"))
        .arg(env!("CARGO_BIN_EXE_refbridge"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    let exposure: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("refbridge.service: overall exposure "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no exposure in:\n{text}"));
    assert!(exposure <= 2.0, "exposure {exposure}");
    crate::figure(&format!("security: systemd exposure {exposure}"));
}
