//! The HTTP face of the client: one [`SalesforceClient`] over reqwest, the retry loop, failure
//! classification, API-call counting and the quota tracker.
//!
//! Every REST call goes through [`SalesforceClient::send`]: take the shared session, send, read
//! `Sforce-Limit-Info` into the [`QuotaTracker`], and on failure classify it ([`classify`]:
//! Salesforce's error codes refine the generic [`FailureClass::from_status`]) and let the model's
//! [`RetryPolicy`] decide — back off and retry, refresh the token once, or give up with a
//! [`SalesforceError`]. Only https is spoken, except to loopback (the sandbox); redirects are not
//! followed, so a token never travels to another host. This module knows no SOQL and no record
//! shapes, and it must never log a URL's query string, a body or a token.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use refbridge_model::crm::{FailureClass, RetryDecision, RetryPolicy};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::auth::Auth;
use crate::config::{SalesforceConfig, SalesforceSecrets, url_problem};
use crate::error::SalesforceError;
use refbridge_http::{StatusCounter, StatusCounts, retry_after, transport_summary};

/// A random number in `[0, 1)` for backoff jitter (from the standard library's random hasher
/// keys; no RNG dependency).
pub(crate) fn jitter() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// Salesforce's view of the daily API allowance, from `Sforce-Limit-Info: api-usage=N/M`.
#[derive(Debug, Default)]
pub struct QuotaTracker {
    used: AtomicU64,
    limit: AtomicU64,
}

/// What the last response said about the daily allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaUsage {
    pub used: u64,
    pub limit: u64,
}

impl QuotaUsage {
    pub fn share(&self) -> f64 {
        if self.limit == 0 {
            1.0
        } else {
            self.used as f64 / self.limit as f64
        }
    }
}

impl QuotaTracker {
    /// Reads one `Sforce-Limit-Info` value (`api-usage=18/15000`, possibly among other parts).
    pub fn observe(&self, header: &str) {
        let Some((used, limit)) = parse_limit_info(header) else {
            return;
        };
        self.used.store(used, Ordering::Relaxed);
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// The last usage seen, if any response carried one.
    pub fn usage(&self) -> Option<QuotaUsage> {
        let limit = self.limit.load(Ordering::Relaxed);
        (limit > 0).then(|| QuotaUsage {
            used: self.used.load(Ordering::Relaxed),
            limit,
        })
    }
}

/// `api-usage=N/M` → (N, M).
pub fn parse_limit_info(header: &str) -> Option<(u64, u64)> {
    header.split([',', ';']).find_map(|part| {
        let (key, value) = part.trim().split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("api-usage") {
            return None;
        }
        let (used, limit) = value.trim().split_once('/')?;
        Some((used.trim().parse().ok()?, limit.trim().parse().ok()?))
    })
}

/// One entry of Salesforce's error array.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiErrorEntry {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub error_code: String,
    #[serde(default)]
    pub fields: Option<Vec<String>>,
}

/// Reads an error body: the documented array, or the OAuth `{error, error_description}` shape.
pub fn error_entries(body: &[u8]) -> Vec<ApiErrorEntry> {
    if let Ok(entries) = serde_json::from_slice::<Vec<ApiErrorEntry>>(body) {
        return entries;
    }
    #[derive(Deserialize)]
    struct OAuthError {
        error: String,
        #[serde(default)]
        error_description: String,
    }
    match serde_json::from_slice::<OAuthError>(body) {
        Ok(error) => vec![ApiErrorEntry {
            message: error.error_description,
            error_code: error.error,
            fields: None,
        }],
        Err(_) => Vec::new(),
    }
}

/// Error codes that mean the configuration (mapping, permissions, org setup) is wrong.
const CONFIG_CODES: &[&str] = &[
    "invalid_grant",
    "invalid_client",
    "invalid_client_id",
    "INVALID_FIELD",
    "INVALID_TYPE",
    "INVALID_FIELD_FOR_INSERT_UPDATE",
    "NOT_FOUND",
    "INSUFFICIENT_ACCESS",
    "INSUFFICIENT_ACCESS_OR_READONLY",
    "API_DISABLED_FOR_ORG",
    "API_CURRENTLY_DISABLED",
    "FUNCTIONALITY_NOT_ENABLED",
    "INVALID_QUERY_FILTER_OPERATOR",
    "MALFORMED_QUERY",
];

/// Error codes that are worth another try whatever their status.
const RETRYABLE_CODES: &[&str] = &[
    "UNABLE_TO_LOCK_ROW",
    "SERVER_UNAVAILABLE",
    "REQUEST_RUNNING_TOO_LONG",
    "QUERY_TIMEOUT",
    "INVALID_QUERY_LOCATOR",
];

/// Classifies a failed Salesforce answer: 403/429 `REQUEST_LIMIT_EXCEEDED` are quota (the daily
/// one, without `Retry-After`, defers the run), 401 `INVALID_SESSION_ID` is auth, a refused grant,
/// an unknown field or object or a missing permission is config, lock and timeout codes are
/// retryable, and everything else falls back to the status.
pub fn classify(status: u16, error_codes: &[&str], retry_after: Option<Duration>) -> FailureClass {
    let has = |wanted: &[&str]| error_codes.iter().any(|code| wanted.contains(code));
    if has(&["REQUEST_LIMIT_EXCEEDED"]) || status == 429 {
        return FailureClass::Quota { retry_after };
    }
    if status == 401 || has(&["INVALID_SESSION_ID"]) {
        return FailureClass::Auth;
    }
    if has(CONFIG_CODES) {
        return FailureClass::Config;
    }
    if has(RETRYABLE_CODES) {
        return FailureClass::Retryable;
    }
    FailureClass::from_status(status, retry_after)
}

/// A request to the REST API.
#[derive(Debug, Clone)]
pub(crate) struct ApiRequest {
    pub(crate) method: reqwest::Method,
    /// Starts with `/services/`.
    pub(crate) path: String,
    pub(crate) query: Vec<(&'static str, String)>,
    pub(crate) body: Option<Json>,
    /// `Sforce-Query-Options: batchSize=N`.
    pub(crate) batch_size: Option<u32>,
    /// `GET /services/data/` needs no session.
    pub(crate) authenticated: bool,
}

impl ApiRequest {
    pub(crate) fn get(path: String) -> ApiRequest {
        ApiRequest {
            method: reqwest::Method::GET,
            path,
            query: Vec::new(),
            body: None,
            batch_size: None,
            authenticated: true,
        }
    }

    /// `METHOD /path`, for messages (never the query string).
    pub(crate) fn describe(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A successful answer.
#[derive(Debug)]
pub(crate) struct ApiResponse {
    /// The raw body, parsed on demand.
    pub(crate) body: Vec<u8>,
}

impl ApiResponse {
    pub(crate) fn json<T: serde::de::DeserializeOwned>(
        &self,
        request: &str,
    ) -> Result<T, SalesforceError> {
        serde_json::from_slice(&self.body).map_err(|error| SalesforceError::Protocol {
            request: request.to_string(),
            detail: format!(
                "the JSON body does not have the documented shape ({})",
                error.classify_name()
            ),
        })
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not JSON",
            serde_json::error::Category::Data => "unexpected fields or types",
            serde_json::error::Category::Eof => "cut short",
        }
    }
}

/// One failed attempt, before the policy decides.
struct Failure {
    class: FailureClass,
    status: Option<u16>,
    code: String,
    message: String,
}

impl Failure {
    fn into_error(self, request: &ApiRequest, attempts: u32) -> SalesforceError {
        let request = request.describe();
        match self.class {
            FailureClass::Retryable => SalesforceError::Unavailable {
                request,
                attempts,
                detail: match self.status {
                    Some(status) => format!("HTTP {status} {} {}", self.code, self.message),
                    None => self.message,
                },
            },
            FailureClass::Quota { retry_after } => SalesforceError::Quota {
                retry_after,
                detail: format!("{request}: {} {}", self.code, self.message),
            },
            FailureClass::Auth => SalesforceError::Auth(format!("{request}: {}", self.code)),
            FailureClass::Config => SalesforceError::Config(format!(
                "{request} refused with {}: {}",
                self.code, self.message
            )),
            FailureClass::PermanentRow => SalesforceError::Rejected {
                request,
                status: self.status.unwrap_or(0),
                code: self.code,
                message: self.message,
            },
        }
    }
}

/// The Salesforce REST client: one HTTP connection pool, one shared token, one quota view.
/// Cheap to clone; clones share everything.
#[derive(Clone, Debug)]
pub struct SalesforceClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: SalesforceConfig,
    instance: reqwest::Url,
    http: reqwest::Client,
    auth: Auth,
    policy: RetryPolicy,
    quota: QuotaTracker,
    api_calls: AtomicU64,
    statuses: StatusCounter,
}

impl SalesforceClient {
    /// Builds the client from a checked config and the loaded secrets. Sends nothing: the first
    /// request logs in.
    pub fn new(
        config: SalesforceConfig,
        secrets: SalesforceSecrets,
    ) -> Result<SalesforceClient, SalesforceError> {
        SalesforceClient::with_policy(config, secrets, None)
    }

    /// Like [`new`](Self::new) with a retry policy of the caller's (tests use short delays);
    /// `None` takes the default with the config's `max_retries`.
    pub fn with_policy(
        config: SalesforceConfig,
        secrets: SalesforceSecrets,
        policy: Option<RetryPolicy>,
    ) -> Result<SalesforceClient, SalesforceError> {
        if let Some((key, problem)) = config.problems().into_iter().next() {
            return Err(SalesforceError::Config(format!(
                "connectors.salesforce.{}: {problem}",
                key.join(".")
            )));
        }
        if let Some(problem) = url_problem(&config.instance_url) {
            return Err(SalesforceError::Config(format!("instance_url: {problem}")));
        }
        let instance = reqwest::Url::parse(&config.instance_url)
            .map_err(|_| SalesforceError::Config("instance_url is not a URL".to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout())
            .connect_timeout(config.request_timeout().min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("refbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| {
                SalesforceError::Config("the HTTP client could not be set up".to_string())
            })?;
        let policy = policy.unwrap_or(RetryPolicy {
            max_retries: config.max_retries,
            ..RetryPolicy::default()
        });
        let auth = Auth::new(&config, &secrets, http.clone(), policy)?;
        Ok(SalesforceClient {
            inner: Arc::new(Inner {
                config,
                instance,
                http,
                auth,
                policy,
                quota: QuotaTracker::default(),
                api_calls: AtomicU64::new(0),
                statuses: StatusCounter::default(),
            }),
        })
    }

    pub fn config(&self) -> &SalesforceConfig {
        &self.inner.config
    }

    /// REST API calls sent so far (every attempt, retries included; token requests excluded).
    pub fn api_calls(&self) -> u64 {
        self.inner.api_calls.load(Ordering::Relaxed)
    }

    /// REST API answers so far by HTTP status class (token requests excluded).
    pub fn status_counts(&self) -> StatusCounts {
        self.inner.statuses.snapshot()
    }

    /// Token requests sent so far.
    pub fn token_requests(&self) -> u64 {
        self.inner.auth.token_requests()
    }

    /// The daily allowance as the last response reported it.
    pub fn quota_usage(&self) -> Option<QuotaUsage> {
        self.inner.quota.usage()
    }

    /// The end of the pull window at `now`: `now - settle_lag_seconds`.
    pub fn window_end(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - chrono::Duration::seconds(
            i64::try_from(self.inner.config.settle_lag_seconds).unwrap_or(i64::MAX / 1000),
        )
    }

    /// `/services/data/vNN.N` + `rest`.
    pub(crate) fn data_path(&self, rest: &str) -> String {
        format!(
            "/services/data/v{}/{}",
            self.inner.config.api_version,
            rest.trim_start_matches('/')
        )
    }

    /// Fails with [`SalesforceError::QuotaReserve`] once the usage reached `quota_stop_share`.
    pub(crate) fn check_pull_reserve(&self) -> Result<(), SalesforceError> {
        match self.inner.quota.usage() {
            Some(usage) if usage.share() >= self.inner.config.quota_stop_share => {
                Err(SalesforceError::QuotaReserve {
                    used: usage.used,
                    limit: usage.limit,
                })
            }
            _ => Ok(()),
        }
    }

    /// Sends `request` under the retry policy.
    pub(crate) async fn send(&self, request: &ApiRequest) -> Result<ApiResponse, SalesforceError> {
        let mut retries = 0;
        let mut refreshed = false;
        loop {
            let session = if request.authenticated {
                Some(self.inner.auth.session().await?)
            } else {
                None
            };
            let failure = match self
                .attempt(
                    request,
                    session.as_ref().map(|session| session.token.secret()),
                )
                .await
            {
                Ok(response) => return Ok(response),
                Err(failure) => failure,
            };
            match self
                .inner
                .policy
                .decide(&failure.class, retries, refreshed, jitter())
            {
                RetryDecision::Wait(delay) => {
                    tracing::warn!(
                        request = %request.describe(),
                        status = failure.status.unwrap_or(0),
                        code = %failure.code,
                        retry = retries + 1,
                        delay_ms = delay.as_millis() as u64,
                        "salesforce request failed; retrying"
                    );
                    retries += 1;
                    tokio::time::sleep(delay).await;
                }
                RetryDecision::RefreshCredentials => match &session {
                    Some(session) => {
                        refreshed = true;
                        tracing::info!(request = %request.describe(), "salesforce session refused; refreshing the token");
                        self.inner.auth.refresh(session).await?;
                    }
                    None => return Err(failure.into_error(request, retries + 1)),
                },
                RetryDecision::GiveUp => return Err(failure.into_error(request, retries + 1)),
            }
        }
    }

    async fn attempt(
        &self,
        request: &ApiRequest,
        token: Option<&str>,
    ) -> Result<ApiResponse, Failure> {
        let mut url = self.inner.instance.clone();
        url.set_path(&request.path);
        if !request.query.is_empty() {
            url.query_pairs_mut().extend_pairs(request.query.iter());
        }
        let mut builder = self
            .inner
            .http
            .request(request.method.clone(), url)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = token {
            builder = builder.bearer_auth(token);
        }
        if let Some(size) = request.batch_size {
            builder = builder.header("Sforce-Query-Options", format!("batchSize={size}"));
        }
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        let counted = request.path.starts_with("/services/data/");
        if counted {
            self.inner.api_calls.fetch_add(1, Ordering::Relaxed);
        }
        let transport = |error: reqwest::Error| Failure {
            class: FailureClass::transport(),
            status: None,
            code: String::new(),
            message: transport_summary(&error),
        };
        let response = match builder.send().await {
            Ok(response) => response,
            Err(error) => {
                if counted {
                    self.inner.statuses.unanswered();
                }
                return Err(transport(error));
            }
        };
        let status = response.status().as_u16();
        if counted {
            self.inner.statuses.answered(status);
        }
        if let Some(info) = response
            .headers()
            .get("sforce-limit-info")
            .and_then(|value| value.to_str().ok())
        {
            self.inner.quota.observe(info);
        }
        let wait = retry_after(response.headers());
        let body = response.bytes().await.map_err(transport)?.to_vec();
        if (200..300).contains(&status) {
            return Ok(ApiResponse { body });
        }
        let entries = error_entries(&body);
        let codes: Vec<&str> = entries
            .iter()
            .map(|entry| entry.error_code.as_str())
            .collect();
        let class = classify(status, &codes, wait);
        let first = entries.first();
        Err(Failure {
            class,
            status: Some(status),
            code: first
                .map(|entry| entry.error_code.clone())
                .unwrap_or_default(),
            message: first
                .map(|entry| entry.message.clone())
                .unwrap_or_else(|| "no error body".to_string()),
        })
    }

    /// `GET` a path and parse the JSON answer.
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        request: ApiRequest,
    ) -> Result<T, SalesforceError> {
        let response = self.send(&request).await?;
        response.json(&request.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(status: u16, codes: &[&str], retry_after: Option<u64>, expected: FailureClass) {
        assert_eq!(
            classify(status, codes, retry_after.map(Duration::from_secs)),
            expected,
            "{status} {codes:?}"
        );
    }

    #[test]
    fn server_errors_timeouts_and_locks_are_retryable() {
        check(500, &["UNKNOWN_EXCEPTION"], None, FailureClass::Retryable);
        check(503, &["SERVER_UNAVAILABLE"], None, FailureClass::Retryable);
        check(502, &[], None, FailureClass::Retryable);
        check(400, &["UNABLE_TO_LOCK_ROW"], None, FailureClass::Retryable);
        assert_eq!(FailureClass::transport(), FailureClass::Retryable);
    }

    #[test]
    fn throttling_waits_and_the_spent_daily_quota_defers() {
        check(
            429,
            &["REQUEST_LIMIT_EXCEEDED"],
            Some(1),
            FailureClass::Quota {
                retry_after: Some(Duration::from_secs(1)),
            },
        );
        check(
            403,
            &["REQUEST_LIMIT_EXCEEDED"],
            None,
            FailureClass::Quota { retry_after: None },
        );
    }

    #[test]
    fn a_refused_session_is_auth() {
        check(401, &["INVALID_SESSION_ID"], None, FailureClass::Auth);
        check(401, &[], None, FailureClass::Auth);
    }

    #[test]
    fn a_bad_row_is_permanent_and_a_bad_mapping_or_login_is_config() {
        check(400, &["STRING_TOO_LONG"], None, FailureClass::PermanentRow);
        check(
            400,
            &["INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"],
            None,
            FailureClass::PermanentRow,
        );
        check(400, &["INVALID_FIELD"], None, FailureClass::Config);
        check(400, &["invalid_grant"], None, FailureClass::Config);
        check(404, &["NOT_FOUND"], None, FailureClass::Config);
        check(403, &["INSUFFICIENT_ACCESS"], None, FailureClass::Config);
    }

    #[test]
    fn error_bodies_of_both_shapes_and_garbage_are_read_without_panicking() {
        let entries = error_entries(
            br#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#,
        );
        assert_eq!(entries[0].error_code, "INVALID_SESSION_ID");
        let entries = error_entries(
            br#"{"error":"invalid_grant","error_description":"authentication failure"}"#,
        );
        assert_eq!(entries[0].error_code, "invalid_grant");
        assert!(error_entries(b"<html>bad gateway</html>").is_empty());
        assert!(
            error_entries(br#"[{"unexpected": 1}]"#)[0]
                .error_code
                .is_empty()
        );
    }

    #[test]
    fn the_limit_header_is_read_into_the_tracker() {
        assert_eq!(parse_limit_info("api-usage=18/15000"), Some((18, 15000)));
        assert_eq!(
            parse_limit_info("per-app-api-usage=1/100(appName=x), api-usage=7/10"),
            Some((7, 10))
        );
        assert_eq!(parse_limit_info("api-usage=x/10"), None);
        let tracker = QuotaTracker::default();
        assert_eq!(tracker.usage(), None);
        tracker.observe("api-usage=12000/15000");
        let usage = tracker.usage().unwrap();
        assert_eq!((usage.used, usage.limit), (12000, 15000));
        assert!((usage.share() - 0.8).abs() < 1e-9);
    }

    #[test]
    fn jitter_stays_in_the_unit_interval() {
        for _ in 0..1000 {
            let unit = jitter();
            assert!((0.0..1.0).contains(&unit));
        }
    }
}
