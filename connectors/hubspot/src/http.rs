//! The HTTP face of the client: one [`HubspotClient`] over reqwest, the retry loop, failure
//! classification, API-call counting, and HubSpot's limits honoured before they are hit.
//!
//! Every API call goes through [`HubspotClient::send`]: wait for the limits (the ten-secondly
//! window and the per-second share read from `X-HubSpot-RateLimit-*`, or search's own per-second
//! throttle, which has no headers), take the shared token, send, read the rate headers, and on
//! failure classify it ([`classify`]: HubSpot's 429 policy names and error categories refine the
//! generic [`FailureClass::from_status`]) and let the model's [`RetryPolicy`] decide — wait
//! (`Retry-After`, else the window's interval), back off, refresh the token once, or give up with a
//! [`HubspotError`]. Only https is spoken, except to loopback (the sandbox); redirects are not
//! followed, so a token never travels to another host. This module knows no record shapes, and it
//! must never log a query string, a body or a token.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use refbridge_model::crm::{FailureClass, RetryDecision, RetryPolicy};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::auth::Auth;
use crate::config::{HubspotConfig, HubspotSecrets, url_problem};
use crate::error::HubspotError;
use refbridge_http::{StatusCounter, StatusCounts, retry_after, transport_summary};

/// Calls kept in hand in the ten-secondly window (pause when fewer remain).
const WINDOW_RESERVE: u64 = 1;
/// Slack added to self-imposed waits: the server's clock of a call starts a little after ours.
const PACING_SLACK: Duration = Duration::from_millis(50);

/// A random number in `[0, 1)` for backoff jitter (no RNG dependency).
pub(crate) fn jitter() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The daily budget as the last response reported it (search calls counted locally since).
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

/// The rate-limit headers of one response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub daily: Option<u64>,
    pub daily_remaining: Option<u64>,
    pub max: Option<u64>,
    pub remaining: Option<u64>,
    pub interval_ms: Option<u64>,
    pub secondly_remaining: Option<u64>,
}

impl RateHeaders {
    pub fn read(headers: &reqwest::header::HeaderMap) -> RateHeaders {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .and_then(|text| text.trim().parse::<u64>().ok())
        };
        RateHeaders {
            daily: number("x-hubspot-ratelimit-daily"),
            daily_remaining: number("x-hubspot-ratelimit-daily-remaining"),
            max: number("x-hubspot-ratelimit-max"),
            remaining: number("x-hubspot-ratelimit-remaining"),
            interval_ms: number("x-hubspot-ratelimit-interval-milliseconds"),
            secondly_remaining: number("x-hubspot-ratelimit-secondly-remaining"),
        }
    }
}

/// What is known of the limits, and our own recent calls.
#[derive(Debug, Default)]
struct Limits {
    daily: Option<(u64, u64)>,
    /// (remaining in the window, interval, when observed).
    window: Option<(u64, Duration, Instant)>,
    /// When the per-second share was seen spent.
    secondly_spent_at: Option<Instant>,
    /// Our standard calls in the current interval.
    recent: VecDeque<Instant>,
}

impl Limits {
    fn observe(&mut self, headers: &RateHeaders, now: Instant) {
        if let (Some(limit), Some(remaining)) = (headers.daily, headers.daily_remaining) {
            self.daily = Some((limit, remaining));
        }
        if let Some(remaining) = headers.remaining {
            let interval = Duration::from_millis(headers.interval_ms.unwrap_or(10_000).max(1));
            self.window = Some((remaining, interval, now));
        }
        if headers.secondly_remaining == Some(0) {
            self.secondly_spent_at = Some(now);
        }
    }

    /// How long to wait before the next standard call, or zero (and then the call is counted).
    fn standard_wait(&mut self, now: Instant) -> Duration {
        let mut wait = Duration::ZERO;
        if let Some((remaining, interval, at)) = self.window {
            while self
                .recent
                .front()
                .is_some_and(|sent| now.duration_since(*sent) >= interval)
            {
                self.recent.pop_front();
            }
            if now.duration_since(at) >= interval {
                self.window = None;
            } else if remaining <= WINDOW_RESERVE {
                let frees_at = self.recent.front().copied().unwrap_or(at) + interval;
                wait = frees_at.saturating_duration_since(now) + PACING_SLACK;
            }
        }
        if let Some(at) = self.secondly_spent_at {
            let second = Duration::from_secs(1);
            if now.duration_since(at) >= second {
                self.secondly_spent_at = None;
            } else {
                wait = wait.max(second - now.duration_since(at) + PACING_SLACK);
            }
        }
        if wait.is_zero() {
            self.recent.push_back(now);
            if let Some((remaining, _, _)) = &mut self.window {
                *remaining = remaining.saturating_sub(1);
            }
        } else {
            // After the pause the window is unknown until the next answer says.
            self.window = None;
            self.secondly_spent_at = None;
        }
        wait
    }

    fn count_search(&mut self) {
        if let Some((_, remaining)) = &mut self.daily {
            *remaining = remaining.saturating_sub(1);
        }
    }

    fn usage(&self) -> Option<QuotaUsage> {
        self.daily
            .filter(|(limit, _)| *limit > 0)
            .map(|(limit, remaining)| QuotaUsage {
                used: limit.saturating_sub(remaining),
                limit,
            })
    }
}

/// HubSpot's error body (`{status:"error", message, category, errorType?, policyName?}`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiErrorBody {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub category: String,
    #[serde(default)]
    pub policy_name: Option<String>,
}

/// Reads an error body; garbage gives an empty one.
pub fn error_body(body: &[u8]) -> ApiErrorBody {
    serde_json::from_slice(body).unwrap_or_default()
}

/// Classifies a failed HubSpot answer: 429 waits (`Retry-After`, else the window's interval,
/// else a second for the search throttle) unless the DAILY policy refused it (defer the run);
/// 401 is auth; 403 (missing scopes) and a request naming a property or object type that does not
/// exist are config; everything else falls back to the status.
pub fn classify(
    status: u16,
    error: &ApiErrorBody,
    retry_after: Option<Duration>,
    interval: Option<Duration>,
) -> FailureClass {
    if status == 429 {
        if error.policy_name.as_deref() == Some("DAILY") {
            return FailureClass::Quota { retry_after: None };
        }
        return FailureClass::Quota {
            retry_after: Some(retry_after.or(interval).unwrap_or(Duration::from_secs(1))),
        };
    }
    if status == 401 {
        return FailureClass::Auth;
    }
    let config_message = [
        "does not exist",
        "is not a unique property",
        "Unable to infer object type",
    ]
    .iter()
    .any(|needle| error.message.contains(needle));
    if status == 400 && config_message {
        return FailureClass::Config;
    }
    FailureClass::from_status(status, retry_after)
}

/// A request to the API.
#[derive(Debug, Clone)]
pub(crate) struct ApiRequest {
    pub(crate) method: reqwest::Method,
    /// Starts with `/crm/`.
    pub(crate) path: String,
    pub(crate) query: Vec<(&'static str, String)>,
    pub(crate) body: Option<Json>,
}

impl ApiRequest {
    pub(crate) fn get(path: String) -> ApiRequest {
        ApiRequest {
            method: reqwest::Method::GET,
            path,
            query: Vec::new(),
            body: None,
        }
    }

    pub(crate) fn post(path: String, body: Json) -> ApiRequest {
        ApiRequest {
            method: reqwest::Method::POST,
            path,
            query: Vec::new(),
            body: Some(body),
        }
    }

    /// Search is throttled on its own and carries no rate headers.
    fn is_search(&self) -> bool {
        self.method == reqwest::Method::POST && self.path.ends_with("/search")
    }

    /// `METHOD /path`, for messages (never the query string).
    pub(crate) fn describe(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A successful (2xx) answer.
#[derive(Debug)]
pub(crate) struct ApiResponse {
    pub(crate) body: Vec<u8>,
}

impl ApiResponse {
    pub(crate) fn json<T: serde::de::DeserializeOwned>(
        &self,
        request: &str,
    ) -> Result<T, HubspotError> {
        serde_json::from_slice(&self.body).map_err(|error| HubspotError::Protocol {
            request: request.to_string(),
            detail: format!(
                "the JSON body does not have the documented shape ({})",
                match error.classify() {
                    serde_json::error::Category::Io => "unreadable",
                    serde_json::error::Category::Syntax => "not JSON",
                    serde_json::error::Category::Data => "unexpected fields or types",
                    serde_json::error::Category::Eof => "cut short",
                }
            ),
        })
    }
}

/// One failed attempt, before the policy decides.
struct Failure {
    class: FailureClass,
    status: Option<u16>,
    category: String,
    message: String,
}

impl Failure {
    fn into_error(self, request: &ApiRequest, attempts: u32) -> HubspotError {
        let request = request.describe();
        match self.class {
            FailureClass::Retryable => HubspotError::Unavailable {
                request,
                attempts,
                detail: match self.status {
                    Some(status) => format!("HTTP {status} {} {}", self.category, self.message),
                    None => self.message,
                },
            },
            FailureClass::Quota { retry_after } => HubspotError::Quota {
                retry_after,
                detail: format!("{request}: {}", self.message),
            },
            FailureClass::Auth => HubspotError::Auth(format!("{request}: {}", self.category)),
            FailureClass::Config => HubspotError::Config(format!(
                "{request} refused with HTTP {} {}: {}",
                self.status.unwrap_or(0),
                self.category,
                self.message
            )),
            FailureClass::PermanentRow => HubspotError::Rejected {
                request,
                status: self.status.unwrap_or(0),
                category: self.category,
                message: self.message,
            },
        }
    }
}

/// The HubSpot CRM client: one HTTP connection pool, one shared token, one view of the limits.
/// Cheap to clone; clones share everything.
#[derive(Clone, Debug)]
pub struct HubspotClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: HubspotConfig,
    base: reqwest::Url,
    http: reqwest::Client,
    auth: Auth,
    policy: RetryPolicy,
    limits: Mutex<Limits>,
    /// Send times of recent searches (the per-second throttle), held while waiting.
    search_gate: tokio::sync::Mutex<VecDeque<Instant>>,
    api_calls: AtomicU64,
    statuses: StatusCounter,
    /// Whether the task key property exists (learned once; `None` until asked).
    pub(crate) task_key_exists: Mutex<Option<bool>>,
}

impl HubspotClient {
    /// Builds the client from a checked config and the loaded secrets. Sends nothing.
    pub fn new(
        config: HubspotConfig,
        secrets: HubspotSecrets,
    ) -> Result<HubspotClient, HubspotError> {
        HubspotClient::with_policy(config, secrets, None)
    }

    /// Like [`new`](Self::new) with a retry policy of the caller's (tests use short delays);
    /// `None` takes the default with the config's `max_retries`.
    pub fn with_policy(
        config: HubspotConfig,
        secrets: HubspotSecrets,
        policy: Option<RetryPolicy>,
    ) -> Result<HubspotClient, HubspotError> {
        if let Some((key, problem)) = config.problems().into_iter().next() {
            return Err(HubspotError::Config(format!(
                "connectors.hubspot.{}: {problem}",
                key.join(".")
            )));
        }
        if let Some(problem) = url_problem(&config.base_url) {
            return Err(HubspotError::Config(format!("base_url: {problem}")));
        }
        let base = reqwest::Url::parse(&config.base_url)
            .map_err(|_| HubspotError::Config("base_url is not a URL".to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout())
            .connect_timeout(config.request_timeout().min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("refbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| HubspotError::Config("the HTTP client could not be set up".to_string()))?;
        let policy = policy.unwrap_or(RetryPolicy {
            max_retries: config.max_retries,
            ..RetryPolicy::default()
        });
        let auth = Auth::new(&config, &secrets, http.clone(), policy)?;
        Ok(HubspotClient {
            inner: Arc::new(Inner {
                config,
                base,
                http,
                auth,
                policy,
                limits: Mutex::new(Limits::default()),
                search_gate: tokio::sync::Mutex::new(VecDeque::new()),
                api_calls: AtomicU64::new(0),
                statuses: StatusCounter::default(),
                task_key_exists: Mutex::new(None),
            }),
        })
    }

    pub fn config(&self) -> &HubspotConfig {
        &self.inner.config
    }

    /// API calls sent so far (every attempt, retries included; token requests excluded).
    pub fn api_calls(&self) -> u64 {
        self.inner.api_calls.load(Ordering::Relaxed)
    }

    /// API answers so far by HTTP status class (token requests excluded).
    pub fn status_counts(&self) -> StatusCounts {
        self.inner.statuses.snapshot()
    }

    /// Token requests sent so far (OAuth refreshes).
    pub fn token_requests(&self) -> u64 {
        self.inner.auth.token_requests()
    }

    /// The daily budget as the last response reported it.
    pub fn quota_usage(&self) -> Option<QuotaUsage> {
        self.limits().usage()
    }

    /// The end of the pull window at `now`: `now - settle_lag_seconds`.
    pub fn window_end(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - chrono::Duration::seconds(
            i64::try_from(self.inner.config.settle_lag_seconds).unwrap_or(i64::MAX / 1000),
        )
    }

    fn limits(&self) -> std::sync::MutexGuard<'_, Limits> {
        self.inner
            .limits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn cached_task_key(&self) -> Option<bool> {
        *self
            .inner
            .task_key_exists
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn remember_task_key(&self, exists: bool) {
        *self
            .inner
            .task_key_exists
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(exists);
    }

    /// Fails with [`HubspotError::QuotaReserve`] once the daily usage reached
    /// `daily_reserve_share`.
    pub(crate) fn check_pull_reserve(&self) -> Result<(), HubspotError> {
        match self.limits().usage() {
            Some(usage) if usage.share() >= self.inner.config.daily_reserve_share => {
                Err(HubspotError::QuotaReserve {
                    used: usage.used,
                    limit: usage.limit,
                })
            }
            _ => Ok(()),
        }
    }

    /// Waits until the limits allow one more call of this kind.
    async fn pace(&self, search: bool) {
        if search {
            let per_second = self.inner.config.search_per_second.max(1) as usize;
            let mut sent = self.inner.search_gate.lock().await;
            loop {
                let now = Instant::now();
                while sent
                    .front()
                    .is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(1))
                {
                    sent.pop_front();
                }
                if sent.len() < per_second {
                    sent.push_back(now);
                    break;
                }
                let oldest = sent.front().copied().unwrap_or(now);
                tokio::time::sleep(
                    (oldest + Duration::from_secs(1)).saturating_duration_since(now) + PACING_SLACK,
                )
                .await;
            }
            self.limits().count_search();
            return;
        }
        loop {
            let wait = self.limits().standard_wait(Instant::now());
            if wait.is_zero() {
                return;
            }
            tracing::debug!(
                wait_ms = wait.as_millis() as u64,
                "hubspot rate window nearly spent; pausing"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends `request` under the retry policy; any 2xx is a success (207 included: the caller
    /// reads its per-row errors).
    pub(crate) async fn send(&self, request: &ApiRequest) -> Result<ApiResponse, HubspotError> {
        let mut retries = 0;
        // The token a refresh for this request produced: refused again, it is not the clock's
        // fault (a token that merely expired during a long wait is refreshed again).
        let mut refreshed_to: Option<u64> = None;
        let mut refreshes = 0;
        loop {
            // Pace first: a token taken before a long pause could expire on the way.
            self.pace(request.is_search()).await;
            let session = self.inner.auth.session().await?;
            let refreshed = refreshed_to == Some(session.generation)
                || refreshes > self.inner.policy.max_retries;
            let failure = match self.attempt(request, session.token.secret()).await {
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
                        category = %failure.category,
                        retry = retries + 1,
                        delay_ms = delay.as_millis() as u64,
                        "hubspot request failed; retrying"
                    );
                    retries += 1;
                    tokio::time::sleep(delay).await;
                }
                RetryDecision::RefreshCredentials => {
                    refreshes += 1;
                    tracing::info!(request = %request.describe(), "hubspot token refused; refreshing it");
                    refreshed_to = Some(self.inner.auth.refresh(&session).await?.generation);
                }
                RetryDecision::GiveUp => return Err(failure.into_error(request, retries + 1)),
            }
        }
    }

    async fn attempt(&self, request: &ApiRequest, token: &str) -> Result<ApiResponse, Failure> {
        let mut url = self.inner.base.clone();
        url.set_path(&request.path);
        if !request.query.is_empty() {
            url.query_pairs_mut().extend_pairs(request.query.iter());
        }
        let mut builder = self
            .inner
            .http
            .request(request.method.clone(), url)
            .header(reqwest::header::ACCEPT, "application/json")
            .bearer_auth(token);
        if let Some(body) = &request.body {
            builder = builder.json(body);
        }
        self.inner.api_calls.fetch_add(1, Ordering::Relaxed);
        let transport = |error: reqwest::Error| Failure {
            class: FailureClass::transport(),
            status: None,
            category: String::new(),
            message: transport_summary(&error),
        };
        let response = match builder.send().await {
            Ok(response) => response,
            Err(error) => {
                self.inner.statuses.unanswered();
                return Err(transport(error));
            }
        };
        let status = response.status().as_u16();
        self.inner.statuses.answered(status);
        let headers = RateHeaders::read(response.headers());
        // A 429's own wait (`Retry-After`, else the interval) governs the retry; its headers
        // would only make the client wait twice.
        if status != 429 {
            self.limits().observe(&headers, Instant::now());
        }
        let wait = retry_after(response.headers());
        let interval = headers.interval_ms.map(Duration::from_millis);
        let body = response.bytes().await.map_err(transport)?.to_vec();
        if (200..300).contains(&status) {
            return Ok(ApiResponse { body });
        }
        let error = error_body(&body);
        let class = classify(status, &error, wait, interval);
        Err(Failure {
            class,
            status: Some(status),
            category: error.category,
            message: if error.message.is_empty() {
                "no error body".to_string()
            } else {
                error.message
            },
        })
    }

    /// Sends and parses the JSON answer.
    pub(crate) async fn json<T: serde::de::DeserializeOwned>(
        &self,
        request: ApiRequest,
    ) -> Result<T, HubspotError> {
        let response = self.send(&request).await?;
        response.json(&request.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str) -> ApiErrorBody {
        error_body(text.as_bytes())
    }

    fn check(status: u16, text: &str, retry: Option<u64>, expected: FailureClass) {
        assert_eq!(
            classify(
                status,
                &body(text),
                retry.map(Duration::from_secs),
                Some(Duration::from_secs(10))
            ),
            expected,
            "{status} {text}"
        );
    }

    #[test]
    fn every_class_is_reached() {
        check(500, "", None, FailureClass::Retryable);
        check(503, "<html>", None, FailureClass::Retryable);
        check(
            429,
            r#"{"errorType":"RATE_LIMIT","policyName":"TEN_SECONDLY_ROLLING"}"#,
            Some(3),
            FailureClass::Quota {
                retry_after: Some(Duration::from_secs(3)),
            },
        );
        check(
            429,
            r#"{"errorType":"RATE_LIMIT","policyName":"TEN_SECONDLY_ROLLING"}"#,
            None,
            FailureClass::Quota {
                retry_after: Some(Duration::from_secs(10)),
            },
        );
        check(
            429,
            r#"{"errorType":"RATE_LIMIT","policyName":"DAILY"}"#,
            Some(3600),
            FailureClass::Quota { retry_after: None },
        );
        check(
            401,
            r#"{"category":"EXPIRED_AUTHENTICATION"}"#,
            None,
            FailureClass::Auth,
        );
        check(
            403,
            r#"{"category":"MISSING_SCOPES"}"#,
            None,
            FailureClass::Config,
        );
        check(
            400,
            r#"{"category":"VALIDATION_ERROR","message":"property \"npi\" does not exist on companies"}"#,
            None,
            FailureClass::Config,
        );
        check(
            400,
            r#"{"category":"VALIDATION_ERROR","message":"x was not one of the allowed options"}"#,
            None,
            FailureClass::PermanentRow,
        );
        assert_eq!(
            classify(429, &body(""), None, None),
            FailureClass::Quota {
                retry_after: Some(Duration::from_secs(1))
            },
            "the search throttle's 429 has no headers"
        );
    }

    #[test]
    fn the_window_pauses_before_it_is_spent_and_the_daily_share_is_tracked() {
        let mut limits = Limits::default();
        let start = Instant::now();
        assert_eq!(limits.standard_wait(start), Duration::ZERO);
        limits.observe(
            &RateHeaders {
                daily: Some(100),
                daily_remaining: Some(20),
                max: Some(10),
                remaining: Some(2),
                interval_ms: Some(10_000),
                secondly_remaining: Some(1),
            },
            start,
        );
        assert_eq!(
            limits.usage(),
            Some(QuotaUsage {
                used: 80,
                limit: 100
            })
        );
        assert_eq!(
            limits.standard_wait(start),
            Duration::ZERO,
            "one left in hand"
        );
        let wait = limits.standard_wait(start + Duration::from_secs(1));
        assert!(
            wait > Duration::from_secs(8) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        limits.count_search();
        assert_eq!(limits.usage().unwrap().used, 81);
        let mut limits = Limits::default();
        limits.observe(
            &RateHeaders {
                secondly_remaining: Some(0),
                ..RateHeaders::default()
            },
            start,
        );
        assert!(limits.standard_wait(start) > Duration::from_millis(900));
    }

    #[test]
    fn jitter_stays_in_the_unit_interval() {
        for _ in 0..1000 {
            assert!((0.0..1.0).contains(&jitter()));
        }
    }
}
