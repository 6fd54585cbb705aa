//! The `[connectors.hubspot]` table: where the portal is, how to log in, what to read and how.
//!
//! Deserialized straight from refbridge's TOML (`deny_unknown_fields` everywhere), with defaults
//! for everything but the login. Secrets appear only as `*_file` paths: the caller reads them
//! (refbridge's secret-file rules) and hands the bytes in as [`HubspotSecrets`].
//! [`HubspotConfig::problems`] checks what can be checked offline — URLs, shares, page sizes,
//! property names — and reports each problem with its key path; whether the object types and
//! properties exist on the portal is `health.rs`'s job. This module performs no I/O and must never
//! hold or print a secret.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use refbridge_model::Disposition;
use serde::{Deserialize, Serialize};

/// `[connectors.hubspot]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubspotConfig {
    /// `https://api.hubapi.com` (http only on loopback: the sandbox).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    pub auth: AuthConfig,
    /// Records modified within this many seconds before now are left to the next run (HubSpot's
    /// search index also lags a few seconds behind writes).
    #[serde(default = "default_settle_lag_seconds")]
    pub settle_lag_seconds: u64,
    /// Records per list page (full loads, reconciliation), 1 to 100.
    #[serde(default = "default_list_page_size")]
    pub list_page_size: u32,
    /// Records per search page (incremental pulls), 1 to 200.
    #[serde(default = "default_search_page_size")]
    pub search_page_size: u32,
    #[serde(default = "default_request_timeout_seconds")]
    pub request_timeout_seconds: u64,
    /// Retries of a failed request (5xx, timeouts, resets, 429 with a short wait).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Pulling stops once this share of the daily API budget is used, keeping the rest for push.
    #[serde(default = "default_daily_reserve_share")]
    pub daily_reserve_share: f64,
    /// Search requests per second (HubSpot allows about 5 and sends no rate headers for search).
    #[serde(default = "default_search_per_second")]
    pub search_per_second: u32,
    /// The deal pipeline whose deals are referrals.
    #[serde(default = "default_admissions_pipeline")]
    pub admissions_pipeline: String,
    /// Owner of tasks whose intended owner is unknown: a HubSpot owner id.
    #[serde(default)]
    pub queue_owner_id: Option<String>,
    #[serde(default)]
    pub mapping: MappingConfig,
}

/// How refbridge logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// A private app's access token: `access_token_file`.
    PrivateApp,
    /// A public app's OAuth refresh token: `client_id`, `client_secret_file`, `refresh_token_file`.
    Oauth,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::PrivateApp => "private_app",
            AuthMethod::Oauth => "oauth",
        }
    }
}

/// `[connectors.hubspot.auth]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub method: AuthMethod,
    #[serde(default)]
    pub access_token_file: Option<PathBuf>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub refresh_token_file: Option<PathBuf>,
}

/// `[connectors.hubspot.mapping]`: which object types and properties hold what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MappingConfig {
    pub objects: ObjectMapping,
    pub partner: PartnerProperties,
    pub referral: ReferralProperties,
    pub task: TaskProperties,
    /// Deal stage id (of the admissions pipeline) → disposition.
    pub stages: BTreeMap<String, Disposition>,
}

/// `[connectors.hubspot.mapping.objects]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectMapping {
    pub partners: String,
    pub contacts: String,
    pub referrals: String,
    /// Engagement types read as touches (completed tasks without the key are touches too).
    pub activities: Vec<String>,
    /// Tasks: completed ones without the key are touches, those with the key are refbridge's own.
    pub tasks: String,
}

/// `[connectors.hubspot.mapping.partner]`: custom properties on companies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartnerProperties {
    pub npi: String,
    pub source_type: String,
    pub payers_accepted: String,
    pub levels_of_care: String,
    pub accepting_referrals: String,
    pub preferred: String,
}

/// `[connectors.hubspot.mapping.referral]`: custom properties on deals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReferralProperties {
    pub inquiry_id: String,
    pub direction: String,
    pub disposition_reason: String,
    pub payer: String,
    pub plan_type: String,
    pub level_of_care: String,
    pub admit_date: String,
    pub parent_inquiry_id: String,
}

/// `[connectors.hubspot.mapping.task]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskProperties {
    /// The task property with unique values that holds an intent's key (batch upsert's
    /// `idProperty`).
    pub key: String,
}

/// The secrets the chosen login needs, read by the caller from the `*_file` paths. `Debug` prints
/// `[redacted]`.
#[derive(Clone, Default)]
pub struct HubspotSecrets {
    pub access_token: Option<Vec<u8>>,
    pub client_secret: Option<Vec<u8>>,
    pub refresh_token: Option<Vec<u8>>,
}

impl fmt::Debug for HubspotSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |secret: &Option<Vec<u8>>| secret.as_ref().map(|_| "[redacted]");
        f.debug_struct("HubspotSecrets")
            .field("access_token", &shown(&self.access_token))
            .field("client_secret", &shown(&self.client_secret))
            .field("refresh_token", &shown(&self.refresh_token))
            .finish()
    }
}

/// Which secret a `*_file` key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    AccessToken,
    ClientSecret,
    RefreshToken,
}

fn default_base_url() -> String {
    "https://api.hubapi.com".to_string()
}
fn default_settle_lag_seconds() -> u64 {
    300
}
fn default_list_page_size() -> u32 {
    100
}
fn default_search_page_size() -> u32 {
    200
}
fn default_request_timeout_seconds() -> u64 {
    30
}
fn default_max_retries() -> u32 {
    5
}
fn default_daily_reserve_share() -> f64 {
    0.8
}
fn default_search_per_second() -> u32 {
    4
}
fn default_admissions_pipeline() -> String {
    "admissions".to_string()
}

impl Default for ObjectMapping {
    fn default() -> Self {
        ObjectMapping {
            partners: "companies".to_string(),
            contacts: "contacts".to_string(),
            referrals: "deals".to_string(),
            activities: ["calls", "meetings", "emails", "notes"]
                .map(str::to_string)
                .to_vec(),
            tasks: "tasks".to_string(),
        }
    }
}

impl Default for PartnerProperties {
    fn default() -> Self {
        PartnerProperties {
            npi: "npi".to_string(),
            source_type: "referral_source_type".to_string(),
            payers_accepted: "payers_accepted".to_string(),
            levels_of_care: "levels_of_care".to_string(),
            accepting_referrals: "accepting_referrals".to_string(),
            preferred: "preferred".to_string(),
        }
    }
}

impl Default for ReferralProperties {
    fn default() -> Self {
        ReferralProperties {
            inquiry_id: "inquiry_id".to_string(),
            direction: "referral_direction".to_string(),
            disposition_reason: "disposition_reason".to_string(),
            payer: "payer".to_string(),
            plan_type: "plan_type".to_string(),
            level_of_care: "level_of_care".to_string(),
            admit_date: "admit_date".to_string(),
            parent_inquiry_id: "parent_inquiry_id".to_string(),
        }
    }
}

impl Default for TaskProperties {
    fn default() -> Self {
        TaskProperties {
            key: "refbridge_key".to_string(),
        }
    }
}

impl Default for MappingConfig {
    fn default() -> Self {
        MappingConfig {
            objects: ObjectMapping::default(),
            partner: PartnerProperties::default(),
            referral: ReferralProperties::default(),
            task: TaskProperties::default(),
            stages: default_stages(),
        }
    }
}

/// The stage ids of the sandbox's admissions pipeline (and of a portal set up like it).
pub fn default_stages() -> BTreeMap<String, Disposition> {
    Disposition::ALL
        .into_iter()
        .map(|disposition| (disposition.as_str().to_string(), disposition))
        .collect()
}

impl PartnerProperties {
    pub fn all(&self) -> [(&'static str, &str); 6] {
        [
            ("npi", &self.npi),
            ("source_type", &self.source_type),
            ("payers_accepted", &self.payers_accepted),
            ("levels_of_care", &self.levels_of_care),
            ("accepting_referrals", &self.accepting_referrals),
            ("preferred", &self.preferred),
        ]
    }
}

impl ReferralProperties {
    pub fn all(&self) -> [(&'static str, &str); 8] {
        [
            ("inquiry_id", &self.inquiry_id),
            ("direction", &self.direction),
            ("disposition_reason", &self.disposition_reason),
            ("payer", &self.payer),
            ("plan_type", &self.plan_type),
            ("level_of_care", &self.level_of_care),
            ("admit_date", &self.admit_date),
            ("parent_inquiry_id", &self.parent_inquiry_id),
        ]
    }
}

fn path(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|key| key.to_string()).collect()
}

/// HubSpot's internal names: a lowercase letter, then lowercase letters, digits and underscores
/// (object types may also be ids like `0-1` or `2-12345`).
pub(crate) fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 100
}

fn is_valid_object_type(name: &str) -> bool {
    is_valid_name(name)
        || name.split_once('-').is_some_and(|(a, b)| {
            !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
        })
}

/// Whether `host` names this machine (where plain http is acceptable).
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// Why a base URL is unusable, or `None`: https (or http on loopback), no path, query or
/// credentials.
pub(crate) fn url_problem(text: &str) -> Option<String> {
    let Ok(url) = reqwest::Url::parse(text) else {
        return Some(format!("{text:?} is not a URL"));
    };
    let Some(host) = url.host_str() else {
        return Some("the URL has no host".to_string());
    };
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(host) => {}
        "http" => {
            return Some(
                "plain http is allowed only on loopback (127.0.0.1, ::1, localhost); use https"
                    .to_string(),
            );
        }
        other => return Some(format!("the scheme must be https, not {other:?}")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Some("the URL must not carry credentials".to_string());
    }
    if !url.path().trim_end_matches('/').is_empty()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Some("give the bare origin, e.g. https://api.hubapi.com".to_string());
    }
    None
}

impl HubspotConfig {
    /// A config with every default for a login.
    pub fn new(auth: AuthConfig) -> HubspotConfig {
        HubspotConfig {
            base_url: default_base_url(),
            auth,
            settle_lag_seconds: default_settle_lag_seconds(),
            list_page_size: default_list_page_size(),
            search_page_size: default_search_page_size(),
            request_timeout_seconds: default_request_timeout_seconds(),
            max_retries: default_max_retries(),
            daily_reserve_share: default_daily_reserve_share(),
            search_per_second: default_search_per_second(),
            admissions_pipeline: default_admissions_pipeline(),
            queue_owner_id: None,
            mapping: MappingConfig::default(),
        }
    }

    pub fn settle_lag(&self) -> Duration {
        Duration::from_secs(self.settle_lag_seconds)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_seconds)
    }

    /// The secret files the chosen login reads: (key path below `[connectors.hubspot]`, what it
    /// holds, path). Keys the method does not use are not listed (and are reported by
    /// [`problems`](Self::problems)).
    pub fn secret_files(&self) -> Vec<(Vec<String>, SecretKind, PathBuf)> {
        let auth = &self.auth;
        let mut files = Vec::new();
        let mut add = |key: &str, kind: SecretKind, file: &Option<PathBuf>| {
            if let Some(file) = file {
                files.push((path(&["auth", key]), kind, file.clone()));
            }
        };
        match auth.method {
            AuthMethod::PrivateApp => {
                add(
                    "access_token_file",
                    SecretKind::AccessToken,
                    &auth.access_token_file,
                );
            }
            AuthMethod::Oauth => {
                add(
                    "client_secret_file",
                    SecretKind::ClientSecret,
                    &auth.client_secret_file,
                );
                add(
                    "refresh_token_file",
                    SecretKind::RefreshToken,
                    &auth.refresh_token_file,
                );
            }
        }
        files
    }

    /// Every problem, as (key path below `[connectors.hubspot]`, message), for `check-config`.
    /// Empty means the client can be built.
    pub fn problems(&self) -> Vec<(Vec<String>, String)> {
        let mut problems = Vec::new();
        if let Some(problem) = url_problem(&self.base_url) {
            problems.push((path(&["base_url"]), problem));
        }
        self.auth_problems(&mut problems);
        if !(1..=100).contains(&self.list_page_size) {
            problems.push((
                path(&["list_page_size"]),
                "must be between 1 and 100 (HubSpot's list limit)".to_string(),
            ));
        }
        if !(1..=200).contains(&self.search_page_size) {
            problems.push((
                path(&["search_page_size"]),
                "must be between 1 and 200 (HubSpot's search limit)".to_string(),
            ));
        }
        if !(self.daily_reserve_share > 0.0 && self.daily_reserve_share <= 1.0) {
            problems.push((
                path(&["daily_reserve_share"]),
                "must be a share above 0 and at most 1, e.g. 0.8".to_string(),
            ));
        }
        if self.search_per_second == 0 {
            problems.push((
                path(&["search_per_second"]),
                "must be at least 1 (HubSpot allows about 5)".to_string(),
            ));
        }
        if self.request_timeout_seconds == 0 {
            problems.push((
                path(&["request_timeout_seconds"]),
                "must be at least 1".to_string(),
            ));
        }
        if self.max_retries > 20 {
            problems.push((
                path(&["max_retries"]),
                "at most 20 retries; more only delays the report of a real outage".to_string(),
            ));
        }
        if self.admissions_pipeline.trim().is_empty() {
            problems.push((
                path(&["admissions_pipeline"]),
                "name the deal pipeline whose deals are referrals (its id)".to_string(),
            ));
        }
        if let Some(owner) = &self.queue_owner_id
            && (owner.is_empty() || !owner.bytes().all(|b| b.is_ascii_digit()))
        {
            problems.push((
                path(&["queue_owner_id"]),
                "not a HubSpot owner id (digits only)".to_string(),
            ));
        }
        self.mapping_problems(&mut problems);
        problems
    }

    fn auth_problems(&self, problems: &mut Vec<(Vec<String>, String)>) {
        let auth = &self.auth;
        let method = auth.method.as_str();
        let mut require = |key: &str, present: bool| {
            if !present {
                problems.push((
                    path(&["auth", key]),
                    format!("required with method = \"{method}\""),
                ));
            }
        };
        let unused: Vec<(&str, bool)> = match auth.method {
            AuthMethod::PrivateApp => {
                require("access_token_file", auth.access_token_file.is_some());
                vec![
                    ("client_id", auth.client_id.is_some()),
                    ("client_secret_file", auth.client_secret_file.is_some()),
                    ("refresh_token_file", auth.refresh_token_file.is_some()),
                ]
            }
            AuthMethod::Oauth => {
                require(
                    "client_id",
                    auth.client_id
                        .as_deref()
                        .is_some_and(|id| !id.trim().is_empty()),
                );
                require("client_secret_file", auth.client_secret_file.is_some());
                require("refresh_token_file", auth.refresh_token_file.is_some());
                vec![("access_token_file", auth.access_token_file.is_some())]
            }
        };
        for (key, present) in unused {
            if present {
                problems.push((
                    path(&["auth", key]),
                    format!("not used with method = \"{method}\"; remove it"),
                ));
            }
        }
    }

    fn mapping_problems(&self, problems: &mut Vec<(Vec<String>, String)>) {
        let mapping = &self.mapping;
        let mut check = |keys: &[&str], name: &str, object: bool| {
            let ok = if object {
                is_valid_object_type(name)
            } else {
                is_valid_name(name)
            };
            if !ok {
                problems.push((
                    path(keys),
                    format!(
                        "{name:?} is not a HubSpot internal name (lowercase letters, digits and underscores, e.g. npi)"
                    ),
                ));
            }
        };
        let objects = &mapping.objects;
        for (key, name) in [
            ("partners", &objects.partners),
            ("contacts", &objects.contacts),
            ("referrals", &objects.referrals),
            ("tasks", &objects.tasks),
        ] {
            check(&["mapping", "objects", key], name, true);
        }
        for (index, name) in objects.activities.iter().enumerate() {
            check(
                &["mapping", "objects", "activities", &index.to_string()],
                name,
                true,
            );
        }
        for (key, name) in mapping.partner.all() {
            check(&["mapping", "partner", key], name, false);
        }
        for (key, name) in mapping.referral.all() {
            check(&["mapping", "referral", key], name, false);
        }
        check(&["mapping", "task", "key"], &mapping.task.key, false);
        if mapping.stages.is_empty() {
            problems.push((
                path(&["mapping", "stages"]),
                "map at least one deal stage id to a disposition".to_string(),
            ));
        }
        for stage in mapping.stages.keys() {
            if stage.trim().is_empty() {
                problems.push((
                    path(&["mapping", "stages", stage]),
                    "a stage id cannot be empty".to_string(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HubspotConfig, toml::de::Error> {
        toml::from_str(text)
    }

    const MINIMAL: &str = r#"
        [auth]
        method = "private_app"
        access_token_file = "/etc/refbridge/hubspot_token"
    "#;

    #[test]
    fn a_minimal_table_gets_every_default_and_no_problem() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.base_url, "https://api.hubapi.com");
        assert_eq!(config.settle_lag_seconds, 300);
        assert_eq!((config.list_page_size, config.search_page_size), (100, 200));
        assert_eq!(config.daily_reserve_share, 0.8);
        assert_eq!(config.search_per_second, 4);
        assert_eq!(config.admissions_pipeline, "admissions");
        assert_eq!(config.mapping.task.key, "refbridge_key");
        assert_eq!(
            config.mapping.objects.activities,
            ["calls", "meetings", "emails", "notes"]
        );
        assert_eq!(
            config.mapping.stages.get("referred_out"),
            Some(&Disposition::ReferredOut)
        );
        assert_eq!(config.problems(), vec![]);
        assert_eq!(
            config.secret_files(),
            vec![(
                path(&["auth", "access_token_file"]),
                SecretKind::AccessToken,
                PathBuf::from("/etc/refbridge/hubspot_token")
            )]
        );
    }

    #[test]
    fn unknown_keys_and_inline_secrets_are_refused() {
        let error = parse(&format!("{MINIMAL}\naccess_token = \"pat\"")).unwrap_err();
        assert!(error.to_string().contains("access_token"), "{error}");
        let error = parse(&MINIMAL.replace("private_app", "api_key")).unwrap_err();
        assert!(error.to_string().contains("api_key"), "{error}");
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let text = r#"
            base_url = "http://api.hubapi.com"
            list_page_size = 500
            search_page_size = 0
            daily_reserve_share = 0
            search_per_second = 0
            queue_owner_id = "abc"
            [auth]
            method = "oauth"
            access_token_file = "/x"
            [mapping.objects]
            activities = ["calls", "Bad Type"]
            [mapping.partner]
            npi = "NPI"
        "#;
        let problems = parse(text).unwrap().problems();
        let keys: Vec<String> = problems.iter().map(|(key, _)| key.join(".")).collect();
        for expected in [
            "base_url",
            "list_page_size",
            "search_page_size",
            "daily_reserve_share",
            "search_per_second",
            "queue_owner_id",
            "auth.client_id",
            "auth.client_secret_file",
            "auth.refresh_token_file",
            "auth.access_token_file",
            "mapping.objects.activities.1",
            "mapping.partner.npi",
        ] {
            assert!(
                keys.contains(&expected.to_string()),
                "{expected}: {problems:?}"
            );
        }
        assert_eq!(keys.len(), 12, "{problems:?}");
    }

    #[test]
    fn loopback_may_use_http_and_object_type_ids_are_names() {
        let config = parse(&format!("base_url = \"http://127.0.0.1:9\"\n{MINIMAL}")).unwrap();
        assert_eq!(config.problems(), vec![]);
        assert!(is_valid_object_type("2-12345") && is_valid_object_type("0-1"));
        assert!(!is_valid_object_type("-1") && !is_valid_object_type("Deals"));
    }

    #[test]
    fn secrets_never_print() {
        let secrets = HubspotSecrets {
            access_token: Some(b"pat-na1-secret".to_vec()),
            client_secret: None,
            refresh_token: Some(b"na1-refresh".to_vec()),
        };
        let shown = format!("{secrets:?}");
        assert!(!shown.contains("pat-na1") && !shown.contains("na1-refresh"));
        assert!(shown.contains("[redacted]"));
    }
}
