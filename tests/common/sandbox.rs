//! A `refbridge sandbox` process with a written config, and clients that check what it holds.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

/// A `refbridge sandbox` with a written config, and a REST client for checking what it holds.
pub struct World {
    pub child: Child,
    pub ready: Value,
    pub config: PathBuf,
    _scratch: tempfile::TempDir,
}

impl World {
    /// Seed 7, as of 2026-11-01 unless `extra` names another `--as-of`; `extra` may ask for
    /// faults, a scale, exports (`--export-dir` with `{state}` standing for the config's state
    /// folder, e.g. `{state}/inbox`).
    pub fn start(extra: &[&str]) -> World {
        let scratch = tempfile::tempdir().unwrap();
        let config = scratch.path().join("rb.toml");
        let state = config.with_extension("d").display().to_string();
        let mut args: Vec<String> = ["sandbox", "--seed", "7", "--write-config"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(config.display().to_string());
        if !extra.contains(&"--as-of") {
            args.extend(["--as-of".to_string(), "2026-11-01".to_string()]);
        }
        args.extend(extra.iter().map(|arg| arg.replace("{state}", &state)));
        let mut child = Command::new(env!("CARGO_BIN_EXE_refbridge"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        World {
            child,
            ready: serde_json::from_str(&line).unwrap(),
            config,
            _scratch: scratch,
        }
    }

    /// Turns every rule off, for tests that push intents of their own.
    pub fn disable_rules(&self) {
        let mut text = std::fs::read_to_string(&self.config).unwrap();
        for rule in refbridge::rules::config::RULE_NAMES {
            text.push_str(&format!("\n[rules.{rule}]\nenabled = false\n"));
        }
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn set_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config)
            .unwrap()
            .replacen(from, to, 1);
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn sync(&self) -> Value {
        let output = super::run_binary(&["sync", "--once", "--json"], Some(&self.config));
        assert_eq!(
            output.status, 0,
            "sync failed: {}\n{}",
            output.stdout, output.stderr
        );
        output.json()
    }

    pub fn ledger(&self) -> PathBuf {
        self.config.with_extension("d").join("ledger.db")
    }

    /// A Salesforce REST call with the sandbox's ready-made token.
    pub fn rest(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let base = self.ready["salesforce"]["instance_url"]
            .as_str()
            .unwrap()
            .to_string();
        let mut token = self.ready["salesforce"]["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        let (client_id, client_secret) = (
            self.ready["salesforce"]["client_id"]
                .as_str()
                .unwrap()
                .to_string(),
            self.ready["salesforce"]["client_secret"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client = reqwest::Client::new();
            let url = format!("{base}/services/data/v62.0/{path}");
            // The sandbox may be injecting faults: a checking call retries them (only reads and
            // idempotent writes are retried here: POST is sent once).
            let mut last = String::new();
            for _ in 0..20 {
                let request = match method {
                    "GET" => client.get(&url),
                    "POST" => client.post(&url),
                    "PATCH" => client.patch(&url),
                    _ => client.delete(&url),
                };
                let request = match &body {
                    Some(body) => request.json(body),
                    None => request,
                };
                let (status, text) = match request.bearer_auth(&token).send().await {
                    Ok(response) => {
                        let status = response.status();
                        match response.text().await {
                            Ok(text) => (status, text),
                            Err(error) => (status, format!("body cut: {error}")),
                        }
                    }
                    Err(error) => (reqwest::StatusCode::SERVICE_UNAVAILABLE, error.to_string()),
                };
                if status.is_success() && !text.starts_with("body cut") {
                    return serde_json::from_str(&text).unwrap_or(Value::Null);
                }
                last = format!("{status} {text}");
                if status.as_u16() == 401 {
                    // Tokens expire quickly when the sandbox is told to: log in again.
                    let form = [
                        ("grant_type", "client_credentials"),
                        ("client_id", client_id.as_str()),
                        ("client_secret", client_secret.as_str()),
                    ];
                    if let Ok(response) = client
                        .post(format!("{base}/services/oauth2/token"))
                        .form(&form)
                        .send()
                        .await
                        && let Ok(body) = response.json::<Value>().await
                        && let Some(fresh) = body["access_token"].as_str()
                    {
                        token = fresh.to_string();
                    }
                    continue;
                }
                if method == "POST"
                    || !(status.is_server_error()
                        || status.as_u16() == 429
                        || text.starts_with("body cut"))
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("{method} {path}: {last}");
        })
    }

    /// A HubSpot call with the sandbox's private-app token (faults are off in the tests using it).
    pub fn hubspot(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let base = self.ready["hubspot"]["base_url"]
            .as_str()
            .unwrap()
            .to_string();
        let token = self.ready["hubspot"]["private_app_token"]
            .as_str()
            .unwrap()
            .to_string();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client = reqwest::Client::new();
            let url = format!("{base}{path}");
            let request = if method == "DELETE" {
                client.delete(url)
            } else if method == "GET" {
                client.get(url)
            } else if method == "PATCH" {
                client.patch(url)
            } else {
                client.post(url)
            };
            let request = match body {
                Some(body) => request.json(&body),
                None => request,
            };
            let response = request.bearer_auth(token).send().await.unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            assert!(status.is_success(), "{method} {path}: {status} {text}");
            serde_json::from_str(&text).unwrap_or(Value::Null)
        })
    }

    pub fn hubspot_total(&self, object: &str, filters: Value) -> u64 {
        let body = json!({"filterGroups": filters, "limit": 1});
        self.hubspot(
            "POST",
            &format!("/crm/v3/objects/{object}/search"),
            Some(body),
        )["total"]
            .as_u64()
            .unwrap()
    }

    pub fn count(&self, soql: &str) -> u64 {
        self.rest("GET", &format!("query?q={}", soql.replace(' ', "+")), None)["totalSize"]
            .as_u64()
            .unwrap()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
