//! The `[connectors.salesforce]` table: where the org is, how to log in, what to read and how.
//!
//! Deserialized straight from refbridge's TOML (`deny_unknown_fields` everywhere), with defaults
//! for everything but the instance URL and the login. Secrets appear only as `*_file` paths: the
//! caller reads them (refbridge's secret-file rules) and hands the bytes in as
//! [`SalesforceSecrets`]. [`SalesforceConfig::problems`] checks what can be checked offline —
//! every identifier's syntax, URLs, shares, filters — and reports each problem with its key path;
//! whether the objects and fields exist in the org is `health.rs`'s job. This module performs no
//! I/O and must never hold or print a secret.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use refbridge_model::Disposition;
use refbridge_model::crm::StreamKind;
use serde::{Deserialize, Serialize};

use crate::soql::{is_valid_identifier, is_valid_record_id};

/// `[connectors.salesforce]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesforceConfig {
    /// The org's own URL, e.g. `https://acme.my.salesforce.com` (http only on loopback).
    pub instance_url: String,
    /// Where tokens come from (`https://login.salesforce.com`, `https://test.salesforce.com`, or
    /// the My Domain URL for client credentials).
    #[serde(default = "default_login_url")]
    pub login_url: String,
    /// `62.0`, without the `v`.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    pub auth: AuthConfig,
    /// Records modified within this many seconds before now are left to the next run.
    #[serde(default = "default_settle_lag_seconds")]
    pub settle_lag_seconds: u64,
    /// Records per query page (`Sforce-Query-Options: batchSize`), 200 to 2000.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Pulling stops once this share of the daily API limit is used, keeping the rest for push.
    #[serde(default = "default_quota_stop_share")]
    pub quota_stop_share: f64,
    #[serde(default = "default_request_timeout_seconds")]
    pub request_timeout_seconds: u64,
    /// Retries of a failed request (5xx, timeouts, resets, a short `Retry-After`).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Owner of tasks whose intended owner is inactive (or unknown): a user or queue id.
    #[serde(default)]
    pub queue_owner_id: Option<String>,
    #[serde(default)]
    pub mapping: MappingConfig,
}

/// How refbridge logs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    /// OAuth 2.0 JWT bearer: `client_id`, `username`, `private_key_file`.
    JwtBearer,
    /// A refresh token: `client_id`, `refresh_token_file`, optionally `client_secret_file`.
    RefreshToken,
    /// Client credentials: `client_id`, `client_secret_file` (My Domain login URL only).
    ClientCredentials,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::JwtBearer => "jwt_bearer",
            AuthMethod::RefreshToken => "refresh_token",
            AuthMethod::ClientCredentials => "client_credentials",
        }
    }
}

/// `[connectors.salesforce.auth]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub method: AuthMethod,
    /// The connected app's consumer key.
    pub client_id: String,
    /// The integration user (JWT bearer).
    #[serde(default)]
    pub username: Option<String>,
    /// The connected app's certificate key, PEM (PKCS#8 or PKCS#1), for JWT bearer.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    #[serde(default)]
    pub refresh_token_file: Option<PathBuf>,
}

/// `[connectors.salesforce.mapping]`: which objects and fields hold what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MappingConfig {
    pub objects: ObjectMapping,
    pub partner: PartnerFields,
    pub referral: ReferralFields,
    pub task: TaskFields,
    /// CRM stage label → disposition (`admitted`, `not_admitted`, `pending`, `referred_out`).
    pub stages: BTreeMap<String, Disposition>,
    /// Extra conditions per stream, ANDed to the pull's window (see [`FilterCondition`]).
    pub filters: StreamFilters,
}

/// `[connectors.salesforce.mapping.objects]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectMapping {
    pub partners: String,
    pub contacts: String,
    pub referrals: String,
    /// Tasks: completed ones are activities, those with the external id are refbridge's own.
    pub tasks: String,
    pub events: String,
    pub owners: String,
}

/// `[connectors.salesforce.mapping.partner]`: custom fields on the partner object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PartnerFields {
    pub npi: String,
    pub source_type: String,
    pub payers_accepted: String,
    pub levels_of_care: String,
    pub accepting_referrals: String,
    pub preferred: String,
}

/// `[connectors.salesforce.mapping.referral]`: custom fields on the referral object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReferralFields {
    pub inquiry_id: String,
    pub direction: String,
    pub disposition_reason: String,
    pub payer: String,
    pub plan_type: String,
    pub level_of_care: String,
    pub admit_date: String,
    pub parent_inquiry_id: String,
    /// The partner that sent an inbound referral.
    pub referral_source: String,
    /// The partner an outbound referral went to.
    pub referred_out_to: String,
}

/// `[connectors.salesforce.mapping.task]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskFields {
    /// The unique external-id field that holds an intent's key.
    pub external_id: String,
}

/// `[connectors.salesforce.mapping.filters]`: per stream, a list of `{field, op, value}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamFilters {
    pub partners: Vec<FilterCondition>,
    pub contacts: Vec<FilterCondition>,
    pub referrals: Vec<FilterCondition>,
    pub activities: Vec<FilterCondition>,
    pub owners: Vec<FilterCondition>,
    pub tasks: Vec<FilterCondition>,
}

impl StreamFilters {
    pub fn for_stream(&self, stream: StreamKind) -> &[FilterCondition] {
        match stream {
            StreamKind::Partners => &self.partners,
            StreamKind::Contacts => &self.contacts,
            StreamKind::Referrals => &self.referrals,
            StreamKind::Activities => &self.activities,
            StreamKind::Owners => &self.owners,
            StreamKind::Tasks => &self.tasks,
        }
    }
}

/// One extra condition, `field op value`, e.g. `{ field = "Type", op = "!=", value = "school" }`.
/// Never raw SOQL: the field is a checked identifier and the value a literal that the query
/// builder quotes, so a filter cannot change the shape of the query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterCondition {
    pub field: String,
    pub op: FilterOp,
    pub value: FilterValue,
}

/// The comparison of a [`FilterCondition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilterOp {
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

impl FilterOp {
    pub fn as_soql(self) -> &'static str {
        match self {
            FilterOp::Eq => "=",
            FilterOp::Ne => "!=",
            FilterOp::Lt => "<",
            FilterOp::Le => "<=",
            FilterOp::Gt => ">",
            FilterOp::Ge => ">=",
        }
    }
}

/// A filter's literal: a string (quoted and escaped), a boolean or a number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FilterValue {
    Bool(bool),
    Integer(i64),
    Float(f64),
    Text(String),
}

/// The secrets the chosen login needs, read by the caller from the `*_file` paths. `Debug` prints
/// `[redacted]`.
#[derive(Clone, Default)]
pub struct SalesforceSecrets {
    /// PEM of the JWT signing key.
    pub private_key_pem: Option<Vec<u8>>,
    pub client_secret: Option<Vec<u8>>,
    pub refresh_token: Option<Vec<u8>>,
}

impl fmt::Debug for SalesforceSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |secret: &Option<Vec<u8>>| secret.as_ref().map(|_| "[redacted]");
        f.debug_struct("SalesforceSecrets")
            .field("private_key_pem", &shown(&self.private_key_pem))
            .field("client_secret", &shown(&self.client_secret))
            .field("refresh_token", &shown(&self.refresh_token))
            .finish()
    }
}

/// Which secret a `*_file` key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    PrivateKey,
    ClientSecret,
    RefreshToken,
}

fn default_login_url() -> String {
    "https://login.salesforce.com".to_string()
}
fn default_api_version() -> String {
    "62.0".to_string()
}
fn default_settle_lag_seconds() -> u64 {
    300
}
fn default_page_size() -> u32 {
    2000
}
fn default_quota_stop_share() -> f64 {
    0.8
}
fn default_request_timeout_seconds() -> u64 {
    30
}
fn default_max_retries() -> u32 {
    5
}

impl Default for ObjectMapping {
    fn default() -> Self {
        ObjectMapping {
            partners: "Account".to_string(),
            contacts: "Contact".to_string(),
            referrals: "Opportunity".to_string(),
            tasks: "Task".to_string(),
            events: "Event".to_string(),
            owners: "User".to_string(),
        }
    }
}

impl Default for PartnerFields {
    fn default() -> Self {
        PartnerFields {
            npi: "NPI__c".to_string(),
            source_type: "Referral_Source_Type__c".to_string(),
            payers_accepted: "Payers_Accepted__c".to_string(),
            levels_of_care: "Levels_Of_Care__c".to_string(),
            accepting_referrals: "Accepting_Referrals__c".to_string(),
            preferred: "Preferred__c".to_string(),
        }
    }
}

impl Default for ReferralFields {
    fn default() -> Self {
        ReferralFields {
            inquiry_id: "Inquiry_Id__c".to_string(),
            direction: "Direction__c".to_string(),
            disposition_reason: "Disposition_Reason__c".to_string(),
            payer: "Payer__c".to_string(),
            plan_type: "Plan_Type__c".to_string(),
            level_of_care: "Level_Of_Care__c".to_string(),
            admit_date: "Admit_Date__c".to_string(),
            parent_inquiry_id: "Parent_Inquiry_Id__c".to_string(),
            referral_source: "Referral_Source__c".to_string(),
            referred_out_to: "Referred_Out_To__c".to_string(),
        }
    }
}

impl Default for TaskFields {
    fn default() -> Self {
        TaskFields {
            external_id: "Refbridge_Key__c".to_string(),
        }
    }
}

impl Default for MappingConfig {
    fn default() -> Self {
        MappingConfig {
            objects: ObjectMapping::default(),
            partner: PartnerFields::default(),
            referral: ReferralFields::default(),
            task: TaskFields::default(),
            stages: default_stages(),
            filters: StreamFilters::default(),
        }
    }
}

/// The sandbox's (and a typical org's) stage labels.
pub fn default_stages() -> BTreeMap<String, Disposition> {
    [
        ("Admitted", Disposition::Admitted),
        ("Not Admitted", Disposition::NotAdmitted),
        ("Pending", Disposition::Pending),
        ("Referred Out", Disposition::ReferredOut),
    ]
    .into_iter()
    .map(|(label, disposition)| (label.to_string(), disposition))
    .collect()
}

impl ObjectMapping {
    /// Every mapped object with its key.
    pub fn all(&self) -> [(&'static str, &str); 6] {
        [
            ("partners", &self.partners),
            ("contacts", &self.contacts),
            ("referrals", &self.referrals),
            ("tasks", &self.tasks),
            ("events", &self.events),
            ("owners", &self.owners),
        ]
    }
}

impl PartnerFields {
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

impl ReferralFields {
    pub fn all(&self) -> [(&'static str, &str); 10] {
        [
            ("inquiry_id", &self.inquiry_id),
            ("direction", &self.direction),
            ("disposition_reason", &self.disposition_reason),
            ("payer", &self.payer),
            ("plan_type", &self.plan_type),
            ("level_of_care", &self.level_of_care),
            ("admit_date", &self.admit_date),
            ("parent_inquiry_id", &self.parent_inquiry_id),
            ("referral_source", &self.referral_source),
            ("referred_out_to", &self.referred_out_to),
        ]
    }
}

fn path(keys: &[&str]) -> Vec<String> {
    keys.iter().map(|key| key.to_string()).collect()
}

/// Whether `host` names this machine (where plain http is acceptable).
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// Why a base URL is unusable, or `None`: https (or http on loopback), no path beyond `/`, no
/// query, no credentials.
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
        return Some(
            "give the bare origin (scheme and host, e.g. https://acme.my.salesforce.com)"
                .to_string(),
        );
    }
    None
}

impl SalesforceConfig {
    /// A config with every default, for an instance and a login.
    pub fn new(instance_url: impl Into<String>, auth: AuthConfig) -> SalesforceConfig {
        SalesforceConfig {
            instance_url: instance_url.into(),
            login_url: default_login_url(),
            api_version: default_api_version(),
            auth,
            settle_lag_seconds: default_settle_lag_seconds(),
            page_size: default_page_size(),
            quota_stop_share: default_quota_stop_share(),
            request_timeout_seconds: default_request_timeout_seconds(),
            max_retries: default_max_retries(),
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

    /// The secret files the chosen login reads: (key path below `[connectors.salesforce]`, what
    /// it holds, path). Keys the method does not use are not listed (and are reported by
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
            AuthMethod::JwtBearer => {
                add(
                    "private_key_file",
                    SecretKind::PrivateKey,
                    &auth.private_key_file,
                );
            }
            AuthMethod::RefreshToken => {
                add(
                    "refresh_token_file",
                    SecretKind::RefreshToken,
                    &auth.refresh_token_file,
                );
                add(
                    "client_secret_file",
                    SecretKind::ClientSecret,
                    &auth.client_secret_file,
                );
            }
            AuthMethod::ClientCredentials => {
                add(
                    "client_secret_file",
                    SecretKind::ClientSecret,
                    &auth.client_secret_file,
                );
            }
        }
        files
    }

    /// Every problem, as (key path below `[connectors.salesforce]`, message), for
    /// `check-config`. Empty means the client can be built.
    pub fn problems(&self) -> Vec<(Vec<String>, String)> {
        let mut problems = Vec::new();
        for (key, url) in [
            ("instance_url", &self.instance_url),
            ("login_url", &self.login_url),
        ] {
            if let Some(problem) = url_problem(url) {
                problems.push((path(&[key]), problem));
            }
        }
        let version_ok = self
            .api_version
            .split_once('.')
            .is_some_and(|(major, minor)| {
                !major.is_empty()
                    && !minor.is_empty()
                    && major
                        .bytes()
                        .chain(minor.bytes())
                        .all(|b| b.is_ascii_digit())
            });
        if !version_ok {
            problems.push((
                path(&["api_version"]),
                format!(
                    "{:?} is not an API version; write it like \"62.0\" (no leading v)",
                    self.api_version
                ),
            ));
        }
        self.auth_problems(&mut problems);
        if !(200..=2000).contains(&self.page_size) {
            problems.push((
                path(&["page_size"]),
                "must be between 200 and 2000 (Salesforce's batch sizes)".to_string(),
            ));
        }
        if !(self.quota_stop_share > 0.0 && self.quota_stop_share <= 1.0) {
            problems.push((
                path(&["quota_stop_share"]),
                "must be a share above 0 and at most 1, e.g. 0.8".to_string(),
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
        if let Some(owner) = &self.queue_owner_id
            && !is_valid_record_id(owner)
        {
            problems.push((
                path(&["queue_owner_id"]),
                "not a Salesforce id (15 or 18 letters and digits, e.g. 00G…)".to_string(),
            ));
        }
        self.mapping_problems(&mut problems);
        problems
    }

    fn auth_problems(&self, problems: &mut Vec<(Vec<String>, String)>) {
        let auth = &self.auth;
        if auth.client_id.trim().is_empty() {
            problems.push((
                path(&["auth", "client_id"]),
                "the connected app's consumer key is required".to_string(),
            ));
        }
        let method = auth.method.as_str();
        let mut require = |key: &str, present: bool| {
            if !present {
                problems.push((
                    path(&["auth", key]),
                    format!("required with method = \"{method}\""),
                ));
            }
        };
        match auth.method {
            AuthMethod::JwtBearer => {
                require(
                    "username",
                    auth.username
                        .as_deref()
                        .is_some_and(|u| !u.trim().is_empty()),
                );
                require("private_key_file", auth.private_key_file.is_some());
            }
            AuthMethod::RefreshToken => {
                require("refresh_token_file", auth.refresh_token_file.is_some());
            }
            AuthMethod::ClientCredentials => {
                require("client_secret_file", auth.client_secret_file.is_some());
            }
        }
        let unused = |present: bool, key: &str| present.then(|| key.to_string());
        let extra = match auth.method {
            AuthMethod::JwtBearer => vec![
                unused(auth.client_secret_file.is_some(), "client_secret_file"),
                unused(auth.refresh_token_file.is_some(), "refresh_token_file"),
            ],
            AuthMethod::RefreshToken => vec![
                unused(auth.private_key_file.is_some(), "private_key_file"),
                unused(auth.username.is_some(), "username"),
            ],
            AuthMethod::ClientCredentials => vec![
                unused(auth.private_key_file.is_some(), "private_key_file"),
                unused(auth.refresh_token_file.is_some(), "refresh_token_file"),
                unused(auth.username.is_some(), "username"),
            ],
        };
        for key in extra.into_iter().flatten() {
            problems.push((
                path(&["auth", &key]),
                format!("not used with method = \"{method}\"; remove it"),
            ));
        }
    }

    fn mapping_problems(&self, problems: &mut Vec<(Vec<String>, String)>) {
        let mapping = &self.mapping;
        let identifier = |problems: &mut Vec<(Vec<String>, String)>, keys: &[&str], name: &str| {
            if !is_valid_identifier(name) {
                problems.push((
                    path(keys),
                    format!(
                        "{name:?} is not a Salesforce API name (a letter, then letters, digits and underscores, e.g. NPI__c)"
                    ),
                ));
            }
        };
        for (key, name) in mapping.objects.all() {
            identifier(problems, &["mapping", "objects", key], name);
        }
        for (key, name) in mapping.partner.all() {
            identifier(problems, &["mapping", "partner", key], name);
        }
        for (key, name) in mapping.referral.all() {
            identifier(problems, &["mapping", "referral", key], name);
        }
        identifier(
            problems,
            &["mapping", "task", "external_id"],
            &mapping.task.external_id,
        );
        for stream in StreamKind::ALL {
            for (index, condition) in mapping.filters.for_stream(stream).iter().enumerate() {
                let index = index.to_string();
                identifier(
                    problems,
                    &["mapping", "filters", stream.as_str(), &index, "field"],
                    &condition.field,
                );
                if let FilterValue::Float(value) = condition.value
                    && !value.is_finite()
                {
                    problems.push((
                        path(&["mapping", "filters", stream.as_str(), &index, "value"]),
                        "must be a finite number".to_string(),
                    ));
                }
            }
        }
        if mapping.stages.is_empty() {
            problems.push((
                path(&["mapping", "stages"]),
                "map at least one stage label to a disposition".to_string(),
            ));
        }
        for label in mapping.stages.keys() {
            if label.trim().is_empty() {
                problems.push((
                    path(&["mapping", "stages", label]),
                    "a stage label cannot be empty".to_string(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SalesforceConfig, toml::de::Error> {
        toml::from_str(text)
    }

    const MINIMAL: &str = r#"
        instance_url = "https://acme.my.salesforce.com"
        [auth]
        method = "jwt_bearer"
        client_id = "3MVG9"
        username = "refbridge@acme.example"
        private_key_file = "/etc/refbridge/sf.pem"
    "#;

    #[test]
    fn a_minimal_table_gets_every_default_and_no_problem() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.login_url, "https://login.salesforce.com");
        assert_eq!(config.api_version, "62.0");
        assert_eq!(config.settle_lag_seconds, 300);
        assert_eq!(config.page_size, 2000);
        assert_eq!(config.quota_stop_share, 0.8);
        assert_eq!(config.mapping.objects.referrals, "Opportunity");
        assert_eq!(config.mapping.task.external_id, "Refbridge_Key__c");
        assert_eq!(
            config.mapping.stages.get("Referred Out"),
            Some(&Disposition::ReferredOut)
        );
        assert_eq!(config.problems(), vec![]);
        assert_eq!(
            config.secret_files(),
            vec![(
                path(&["auth", "private_key_file"]),
                SecretKind::PrivateKey,
                PathBuf::from("/etc/refbridge/sf.pem")
            )]
        );
    }

    #[test]
    fn unknown_keys_and_inline_secrets_are_refused() {
        let error = parse(&format!("{MINIMAL}\nclient_secret = \"x\"")).unwrap_err();
        assert!(error.to_string().contains("client_secret"), "{error}");
        let error = parse(&MINIMAL.replace("method = \"jwt_bearer\"", "method = \"password\""))
            .unwrap_err();
        assert!(error.to_string().contains("password"), "{error}");
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let text = r#"
            instance_url = "http://acme.my.salesforce.com"
            login_url = "https://login.salesforce.com/services"
            api_version = "v62"
            page_size = 5000
            quota_stop_share = 1.5
            queue_owner_id = "robert'); DROP"
            [auth]
            method = "refresh_token"
            client_id = ""
            username = "x"
            [mapping.objects]
            partners = "Account WHERE"
            [mapping.partner]
            npi = "NPI__c'"
            [[mapping.filters.partners]]
            field = "Type) OR (Id"
            op = "!="
            value = "school"
        "#;
        let problems = parse(text).unwrap().problems();
        let keys: Vec<String> = problems.iter().map(|(key, _)| key.join(".")).collect();
        for expected in [
            "instance_url",
            "login_url",
            "api_version",
            "page_size",
            "quota_stop_share",
            "queue_owner_id",
            "auth.client_id",
            "auth.refresh_token_file",
            "auth.username",
            "mapping.objects.partners",
            "mapping.partner.npi",
            "mapping.filters.partners.0.field",
        ] {
            assert!(
                keys.contains(&expected.to_string()),
                "{expected}: {problems:?}"
            );
        }
        assert_eq!(keys.len(), 12, "{problems:?}");
    }

    #[test]
    fn loopback_may_use_http_and_filters_parse_with_typed_values() {
        let text = format!(
            "{}\n[[mapping.filters.referrals]]\nfield = \"Amount\"\nop = \">=\"\nvalue = 10\n[[mapping.filters.referrals]]\nfield = \"IsClosed\"\nop = \"=\"\nvalue = false\n",
            MINIMAL.replace("https://acme.my.salesforce.com", "http://127.0.0.1:8080")
        );
        let config = parse(&text).unwrap();
        assert_eq!(config.problems(), vec![]);
        assert_eq!(
            config.mapping.filters.referrals[0].value,
            FilterValue::Integer(10)
        );
        assert_eq!(
            config.mapping.filters.referrals[1].value,
            FilterValue::Bool(false)
        );
        assert!(url_problem("http://[::1]:9").is_none());
        assert!(url_problem("http://localhost:9").is_none());
        assert!(url_problem("http://10.0.0.1").is_some());
        assert!(url_problem("ftp://127.0.0.1").is_some());
    }

    #[test]
    fn secrets_never_print() {
        let secrets = SalesforceSecrets {
            private_key_pem: Some(b"-----BEGIN".to_vec()),
            client_secret: None,
            refresh_token: Some(b"5Aep-token".to_vec()),
        };
        let shown = format!("{secrets:?}");
        assert!(
            !shown.contains("BEGIN") && !shown.contains("5Aep"),
            "{shown}"
        );
        assert!(shown.contains("[redacted]"));
    }
}
