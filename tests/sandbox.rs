//! `refbridge sandbox` as a process: ready line, written config, exports, and determinism.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A running `refbridge sandbox` and its ready line.
struct Sandbox {
    child: Child,
    ready: Value,
}

impl Sandbox {
    fn start(args: &[&str]) -> Sandbox {
        let mut child = Command::new(env!("CARGO_BIN_EXE_refbridge"))
            .arg("sandbox")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start refbridge sandbox");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ready line");
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("ready line is not JSON ({e}): {line:?}"));
        Sandbox { child, ready }
    }

    /// Stops it the way systemd or Ctrl-C would, and returns its exit status.
    fn stop(mut self) -> i32 {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        self.child.wait().expect("wait").code().unwrap_or(-1)
    }

    fn get(&self, crm: &str, path: &str) -> Value {
        let credentials = &self.ready[crm];
        let (base, token) = match crm {
            "salesforce" => (
                credentials["instance_url"].as_str().unwrap(),
                credentials["access_token"].as_str().unwrap(),
            ),
            _ => (
                credentials["base_url"].as_str().unwrap(),
                credentials["private_app_token"].as_str().unwrap(),
            ),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let response = reqwest::Client::new()
                .get(format!("{base}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .expect("request");
            assert!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            response.json::<Value>().await.expect("JSON body")
        })
    }
}

fn files_in(directory: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_sandbox_prints_credentials_writes_a_working_config_and_exports_its_world() {
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("rb.toml");
    let exports = scratch.path().join("exports");
    let sandbox = Sandbox::start(&[
        "--seed",
        "7",
        "--as-of",
        "2026-11-01",
        "--write-config",
        config.to_str().unwrap(),
        "--export-dir",
        exports.to_str().unwrap(),
    ]);
    assert_eq!(sandbox.ready["seed"], 7);
    let accounts = sandbox.get(
        "salesforce",
        "/services/data/v62.0/query?q=SELECT+COUNT()+FROM+Account",
    );
    assert!(accounts["totalSize"].as_u64().unwrap() > 30, "{accounts}");
    let companies = sandbox.get(
        "hubspot",
        "/crm/v3/objects/companies?limit=5&properties=name",
    );
    assert_eq!(
        companies["results"].as_array().unwrap().len(),
        5,
        "{companies}"
    );

    // The written config works at once: valid, and its inbox imports the world's exports.
    let check = common::run_binary(&["check-config"], Some(&config));
    assert_eq!(check.status, 0, "{}", check.stderr);
    let text = std::fs::read_to_string(&config).unwrap();
    let inbox = text
        .lines()
        .find_map(|l| l.strip_prefix("inbox = "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    for (name, bytes) in files_in(&exports) {
        std::fs::write(Path::new(&inbox).join(name), bytes).unwrap();
    }
    let import = common::run_binary(&["import", "--json"], Some(&config));
    assert_eq!(import.status, 0, "{}", import.stderr);
    let report: Value = serde_json::from_str(&import.stdout).unwrap();
    assert_eq!(report["files"], 3);
    assert!(report["referrals_new"].as_u64().unwrap() > 300, "{report}");
    assert_eq!(sandbox.stop(), 0, "SIGTERM stops the sandbox cleanly");
}

#[test]
fn the_same_seed_gives_byte_identical_exports_and_data() {
    let scratch = tempfile::tempdir().unwrap();
    let (a, b) = (scratch.path().join("a"), scratch.path().join("b"));
    let first = Sandbox::start(&[
        "--seed",
        "42",
        "--as-of",
        "2026-10-01",
        "--export-dir",
        a.to_str().unwrap(),
    ]);
    let second = Sandbox::start(&[
        "--seed",
        "42",
        "--as-of",
        "2026-10-01",
        "--export-dir",
        b.to_str().unwrap(),
    ]);
    assert_eq!(files_in(&a), files_in(&b));
    let query =
        "/services/data/v62.0/query?q=SELECT+Id,+Name,+SystemModstamp+FROM+Opportunity+ORDER+BY+Id";
    assert_eq!(
        first.get("salesforce", query)["records"],
        second.get("salesforce", query)["records"]
    );
    let deals = "/crm/v3/objects/deals?limit=100&properties=dealname,dealstage,inquiry_id";
    assert_eq!(
        first.get("hubspot", deals)["results"],
        second.get("hubspot", deals)["results"]
    );
    let other = Sandbox::start(&["--seed", "43", "--as-of", "2026-10-01"]);
    assert_ne!(
        first.get("hubspot", deals)["results"],
        other.get("hubspot", deals)["results"]
    );
    for sandbox in [first, second, other] {
        sandbox.stop();
    }
}
