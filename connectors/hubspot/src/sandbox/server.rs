//! The HTTP side: the router, and the layer every API request passes through — injected faults
//! (latency, 429, 500, 503, connection reset), bearer authentication, and HubSpot's rate limits
//! (a ten-secondly rolling window and a daily budget with `X-HubSpot-RateLimit-*` headers, and a
//! separate per-second search throttle whose responses carry no rate headers).
//!
//! The `/__admin/*` endpoints (fault plan, token expiry, bulk "touch") bypass that layer and take
//! no credentials: they exist only in the sandbox. Handlers themselves live in `objects`, `search`
//! and `batch`; this module must not grow CRM logic.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures_util::StreamExt;
use refbridge_synthetic::faults::{Fault, FaultInjector, FaultPlan};
use refbridge_synthetic::journal::RequestJournal;
use serde_json::{Value, json};

use super::error::{ApiError, correlation_id, json_response};
use super::oauth::{self, TokenBook};
use super::schema::ObjectType;
use super::store::{Store, now_ms, parse_time_ms};
use super::{batch, objects, search};

/// The largest request body accepted (100 batch inputs of long task bodies fit).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct Shared {
    store: RwLock<Store>,
    tokens: Mutex<TokenBook>,
    limits: Mutex<RateLimiter>,
    pub faults: FaultInjector,
    /// API requests received, while `/__admin/journal` asked for them.
    journal: RequestJournal,
    /// `http://127.0.0.1:PORT`, for `paging.next.link`.
    pub base_url: String,
    pub token_ttl_seconds: u64,
}

impl Shared {
    pub(crate) fn new(
        store: Store,
        tokens: TokenBook,
        limits: RateLimiter,
        faults: FaultPlan,
        base_url: String,
        token_ttl_seconds: u64,
    ) -> Shared {
        Shared {
            store: RwLock::new(store),
            tokens: Mutex::new(tokens),
            limits: Mutex::new(limits),
            faults: FaultInjector::new(faults),
            journal: RequestJournal::default(),
            base_url,
            token_ttl_seconds,
        }
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, Store> {
        self.store
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, Store> {
        self.store
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn tokens(&self) -> MutexGuard<'_, TokenBook> {
        self.tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn limits(&self) -> MutexGuard<'_, RateLimiter> {
        self.limits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The TTL of tokens issued now: the fault plan's, else the sandbox option.
    pub(crate) fn current_token_ttl(&self) -> u64 {
        self.faults
            .plan()
            .token_ttl_seconds
            .unwrap_or(self.token_ttl_seconds)
    }
}

pub(crate) type AppState = State<Arc<Shared>>;

/// The whole application.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/oauth/v1/token", post(token))
        .route("/oauth/2026-03/token", post(token))
        .route("/crm/v3/owners", get(objects::list_owners))
        .route("/crm/v3/owners/", get(objects::list_owners))
        .route("/crm/v3/owners/{owner_id}", get(objects::get_owner))
        .route(
            "/crm/v3/pipelines/{object_type}",
            get(objects::list_pipelines),
        )
        .route(
            "/crm/v3/pipelines/{object_type}/{pipeline_id}",
            get(objects::get_pipeline),
        )
        .route(
            "/crm/v3/pipelines/{object_type}/{pipeline_id}/stages",
            get(objects::list_stages),
        )
        .route(
            "/crm/v3/properties/{object_type}",
            get(objects::list_properties).post(objects::create_property),
        )
        .route(
            "/crm/v3/properties/{object_type}/{property_name}",
            get(objects::get_property),
        )
        .route(
            "/crm/v3/objects/{object_type}",
            get(objects::list).post(objects::create),
        )
        .route("/crm/v3/objects/{object_type}/search", post(search::search))
        .route(
            "/crm/v3/objects/{object_type}/batch/{action}",
            post(batch::batch),
        )
        .route(
            "/crm/v3/objects/{object_type}/{object_id}",
            get(objects::get_one)
                .patch(objects::update)
                .delete(objects::archive),
        )
        .route(
            "/crm/v4/associations/{object_type}/{to_type}/batch/read",
            post(objects::batch_read_associations),
        )
        .route(
            "/crm/v4/associations/{object_type}/{to_type}/batch/associate/default",
            post(objects::batch_associate_default),
        )
        .route(
            "/crm/v4/objects/{object_type}/{object_id}/associations/{to_type}",
            get(objects::list_associations),
        )
        .route(
            "/crm/v4/objects/{object_type}/{object_id}/associations/default/{to_type}/{to_id}",
            put(objects::associate_default),
        )
        .route(
            "/crm/v4/objects/{object_type}/{object_id}/associations/{to_type}/{to_id}",
            put(objects::associate_labeled).delete(objects::remove_association),
        )
        .fallback(|| async { ApiError::resource_not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "VALIDATION_ERROR",
                "HTTP method not allowed for this path",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(shared.clone(), api_layer));
    let admin = Router::new()
        .route("/__admin/faults", get(get_faults).post(set_faults))
        .route("/__admin/expire-tokens", post(expire_tokens))
        .route(
            "/__admin/journal",
            get(get_journal).post(start_journal).delete(stop_journal),
        )
        .route("/__admin/touch/{object_type}", post(touch));
    admin.merge(api).with_state(shared)
}

/// How the layer treats a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    OAuth,
    Search,
    Standard,
}

fn classify(method: &Method, path: &str) -> Class {
    if path.starts_with("/oauth/") {
        Class::OAuth
    } else if method == Method::POST
        && path.starts_with("/crm/v3/objects/")
        && path.ends_with("/search")
    {
        Class::Search
    } else {
        Class::Standard
    }
}

async fn api_layer(State(shared): AppState, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/oauth/") {
        let length = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let target = request
            .uri()
            .path_and_query()
            .map_or_else(|| request.uri().path(), |target| target.as_str());
        shared
            .journal
            .record(request.method().as_str(), target, None, length);
    }
    let plan = shared.faults.plan();
    if plan.latency_ms > 0 {
        shared.faults.count_delayed();
        tokio::time::sleep(Duration::from_millis(plan.latency_ms)).await;
    }
    let fault = shared.faults.draw();
    match fault {
        Some(Fault::RateLimited) => {
            let mut response = ten_secondly_limited(plan.retry_after_seconds.max(1));
            let headers = shared.limits().peek_headers(Instant::now(), now_ms());
            headers.apply(response.headers_mut(), Some(0));
            return response;
        }
        Some(Fault::ServerError) => {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"status": "error", "message": "internal error", "correlationId": correlation_id(), "category": "INTERNAL_ERROR"}),
            );
        }
        Some(Fault::Unavailable) => {
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "error", "message": "Service Unavailable", "correlationId": correlation_id(), "category": "SERVICE_UNAVAILABLE"}),
            );
        }
        Some(Fault::Reset) | None => {}
    }
    let class = classify(request.method(), request.uri().path());
    let response = if class == Class::OAuth {
        next.run(request).await
    } else {
        let now = now_ms();
        let authorization = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Err(failure) = shared.tokens().check(authorization, now) {
            if matches!(failure, oauth::AuthFailure::Expired { .. }) {
                shared.faults.count_expired_token();
            }
            return failure.into_api_error().into_response();
        }
        let admitted = if class == Class::Search {
            shared
                .limits()
                .admit_search(Instant::now(), now)
                .map(|()| None)
        } else {
            shared
                .limits()
                .admit_standard(Instant::now(), now)
                .map(Some)
        };
        match admitted {
            Err(refusal) => refusal.into_response(),
            Ok(headers) => {
                let mut response = next.run(request).await;
                if let Some(headers) = headers {
                    headers.apply(response.headers_mut(), None);
                }
                response
            }
        }
    };
    if fault == Some(Fault::Reset) {
        cut_off(response).await
    } else {
        response
    }
}

/// Sends the status, the headers and half of the body, then fails the connection.
async fn cut_off(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    parts.headers.remove(CONTENT_LENGTH);
    let head = bytes.slice(..bytes.len() / 2);
    let sent = futures_util::stream::once(async move { Ok::<Bytes, io::Error>(head) });
    // Pausing before the failure lets the server flush the status, headers and first half.
    let reset = futures_util::stream::once(async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "sandbox fault: connection reset",
        ))
    });
    Response::from_parts(parts, Body::from_stream(sent.chain(reset)))
}

fn rate_limited(policy: &str, message: &str, retry_after_seconds: Option<u64>) -> Response {
    let body = json!({
        "status": "error",
        "message": message,
        "errorType": "RATE_LIMIT",
        "correlationId": correlation_id(),
        "policyName": policy,
    });
    let mut response = json_response(StatusCode::TOO_MANY_REQUESTS, &body);
    if let Some(seconds) = retry_after_seconds {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn ten_secondly_limited(retry_after_seconds: u64) -> Response {
    rate_limited(
        "TEN_SECONDLY_ROLLING",
        "You have reached your ten_secondly_rolling limit.",
        Some(retry_after_seconds),
    )
}

/// The rate-limit headers of one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateHeaders {
    daily: u64,
    daily_remaining: u64,
    max: u64,
    remaining: u64,
    secondly: u64,
    secondly_remaining: u64,
}

impl RateHeaders {
    fn apply(&self, headers: &mut HeaderMap, remaining_override: Option<u64>) {
        let remaining = remaining_override.unwrap_or(self.remaining);
        let pairs = [
            ("x-hubspot-ratelimit-daily", self.daily),
            ("x-hubspot-ratelimit-daily-remaining", self.daily_remaining),
            ("x-hubspot-ratelimit-interval-milliseconds", 10_000),
            ("x-hubspot-ratelimit-max", self.max),
            ("x-hubspot-ratelimit-remaining", remaining),
            ("x-hubspot-ratelimit-secondly", self.secondly),
            (
                "x-hubspot-ratelimit-secondly-remaining",
                remaining_override.unwrap_or(self.secondly_remaining),
            ),
        ];
        for (name, value) in pairs {
            headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
        }
    }
}

/// Which limit refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The daily budget is spent; `retry_after` runs to midnight UTC.
    Daily {
        retry_after: u64,
        headers: Option<RateHeaders>,
    },
    TenSecondly {
        retry_after: u64,
        headers: RateHeaders,
    },
    /// The search throttle: HubSpot's body, and neither rate headers nor `Retry-After`.
    SearchSecondly,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Daily {
                retry_after,
                headers,
            } => {
                let mut response = rate_limited(
                    "DAILY",
                    "You have reached your daily limit.",
                    Some(retry_after),
                );
                if let Some(headers) = headers {
                    headers.apply(response.headers_mut(), None);
                }
                response
            }
            Refusal::TenSecondly {
                retry_after,
                headers,
            } => {
                let mut response = ten_secondly_limited(retry_after);
                headers.apply(response.headers_mut(), Some(0));
                response
            }
            Refusal::SearchSecondly => {
                let body = json!({
                    "status": "error",
                    "message": "You have reached your secondly limit.",
                    "errorType": "RATE_LIMIT",
                    "correlationId": correlation_id(),
                    "category": "RATE_LIMITS",
                    "policyName": "SECONDLY",
                });
                json_response(StatusCode::TOO_MANY_REQUESTS, &body)
            }
        }
    }
}

/// HubSpot's limits: a ten-second rolling window and a daily budget for ordinary calls, and a
/// one-second window for search.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    daily_limit: u64,
    ten_secondly_limit: u64,
    search_per_second: u64,
    window: VecDeque<Instant>,
    search_window: VecDeque<Instant>,
    day: i64,
    used_today: u64,
}

const TEN_SECONDS: Duration = Duration::from_secs(10);
const ONE_SECOND: Duration = Duration::from_secs(1);
const DAY_MS: i64 = 86_400_000;

impl RateLimiter {
    pub(crate) fn new(
        daily_limit: u64,
        ten_secondly_limit: u64,
        search_per_second: u64,
    ) -> RateLimiter {
        RateLimiter {
            daily_limit,
            ten_secondly_limit,
            search_per_second,
            window: VecDeque::new(),
            search_window: VecDeque::new(),
            day: 0,
            used_today: 0,
        }
    }

    fn roll(&mut self, now: Instant, now_ms: i64) {
        while self
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= TEN_SECONDS)
        {
            self.window.pop_front();
        }
        while self
            .search_window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= ONE_SECOND)
        {
            self.search_window.pop_front();
        }
        let day = now_ms.div_euclid(DAY_MS);
        if day != self.day {
            self.day = day;
            self.used_today = 0;
        }
    }

    fn daily_exhausted(&self, now_ms: i64) -> Option<u64> {
        (self.used_today >= self.daily_limit)
            .then(|| ((DAY_MS - now_ms.rem_euclid(DAY_MS)) / 1000 + 1).max(1) as u64)
    }

    fn peek_headers(&mut self, now: Instant, now_ms: i64) -> RateHeaders {
        self.roll(now, now_ms);
        let secondly = self.ten_secondly_limit.div_ceil(10);
        let last_second = self
            .window
            .iter()
            .rev()
            .take_while(|t| now.duration_since(**t) < ONE_SECOND)
            .count() as u64;
        RateHeaders {
            daily: self.daily_limit,
            daily_remaining: self.daily_limit.saturating_sub(self.used_today),
            max: self.ten_secondly_limit,
            remaining: self
                .ten_secondly_limit
                .saturating_sub(self.window.len() as u64),
            secondly,
            secondly_remaining: secondly.saturating_sub(last_second),
        }
    }

    /// Counts an ordinary API call, or says which limit refuses it.
    pub(crate) fn admit_standard(
        &mut self,
        now: Instant,
        now_ms: i64,
    ) -> Result<RateHeaders, Refusal> {
        self.roll(now, now_ms);
        if let Some(retry_after) = self.daily_exhausted(now_ms) {
            let headers = Some(self.peek_headers(now, now_ms));
            return Err(Refusal::Daily {
                retry_after,
                headers,
            });
        }
        if self.window.len() as u64 >= self.ten_secondly_limit {
            let oldest = self.window.front().copied().unwrap_or(now);
            let wait = TEN_SECONDS.saturating_sub(now.duration_since(oldest));
            let retry_after = wait.as_secs_f64().ceil().max(1.0) as u64;
            let headers = self.peek_headers(now, now_ms);
            return Err(Refusal::TenSecondly {
                retry_after,
                headers,
            });
        }
        self.window.push_back(now);
        self.used_today += 1;
        Ok(self.peek_headers(now, now_ms))
    }

    /// Counts a search call (daily budget and the per-second search window; no headers).
    pub(crate) fn admit_search(&mut self, now: Instant, now_ms: i64) -> Result<(), Refusal> {
        self.roll(now, now_ms);
        if let Some(retry_after) = self.daily_exhausted(now_ms) {
            return Err(Refusal::Daily {
                retry_after,
                headers: None,
            });
        }
        if self.search_window.len() as u64 >= self.search_per_second {
            return Err(Refusal::SearchSecondly);
        }
        self.search_window.push_back(now);
        self.used_today += 1;
        Ok(())
    }
}

async fn token(State(shared): AppState, body: Bytes) -> Response {
    let ttl = shared.current_token_ttl();
    oauth::token_response(&mut shared.tokens(), &body, now_ms(), ttl)
}

fn plain(status: StatusCode, text: String) -> Response {
    (status, [(CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

async fn get_faults(State(shared): AppState) -> Response {
    plain(
        StatusCode::OK,
        format!("{}\n{}\n", shared.faults.plan(), shared.faults.counts()),
    )
}

async fn set_faults(State(shared): AppState, body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body);
    match text.trim().parse::<FaultPlan>() {
        Ok(plan) => {
            let printed = plan.to_string();
            shared.faults.set(plan);
            plain(StatusCode::OK, format!("{printed}\n"))
        }
        Err(error) => plain(StatusCode::BAD_REQUEST, format!("{error}\n")),
    }
}

async fn start_journal(State(shared): AppState) -> Response {
    shared.journal.start();
    json_response(StatusCode::OK, &shared.journal.to_json())
}

async fn get_journal(State(shared): AppState) -> Response {
    json_response(StatusCode::OK, &shared.journal.to_json())
}

async fn stop_journal(State(shared): AppState) -> Response {
    shared.journal.stop();
    json_response(StatusCode::OK, &shared.journal.to_json())
}

async fn expire_tokens(State(shared): AppState) -> Response {
    let expired = shared.tokens().expire_all(now_ms());
    json_response(StatusCode::OK, &json!({ "expired": expired }))
}

/// `POST /__admin/touch/{type}?count=N&at=<ms or ISO>`: gives the first N live records (by id) one
/// modification time, as a bulk import does.
async fn touch(
    State(shared): AppState,
    Path(object_type): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(object_type) = ObjectType::parse(&object_type) else {
        return ApiError::unknown_object_type(&object_type).into_response();
    };
    let query = objects::Query::parse(query.as_deref());
    let count = match query.first("count").map(|c| c.parse::<usize>()) {
        None => usize::MAX,
        Some(Ok(count)) => count,
        Some(Err(_)) => {
            return ApiError::validation("count must be a whole number").into_response();
        }
    };
    let at = match query.first("at") {
        None => now_ms(),
        Some(text) => match parse_time_ms(text) {
            Some(at) => at,
            None => {
                return ApiError::validation("at must be epoch milliseconds or ISO 8601")
                    .into_response();
            }
        },
    };
    let touched = shared.write().of_mut(object_type).touch(count, at);
    json_response(
        StatusCode::OK,
        &json!({ "touched": touched, "at": at, "objectType": object_type.plural() }),
    )
}

/// Reads a JSON request body into a value, or HubSpot's 400.
pub(crate) fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::validation(
            "Invalid input JSON: the request body is empty",
        ));
    }
    serde_json::from_slice(body).map_err(|error| ApiError::bad_json(&error))
}

/// Parses a `{object_type}` path segment.
pub(crate) fn object_type(text: &str) -> Result<ObjectType, ApiError> {
    ObjectType::parse(text).ok_or_else(|| ApiError::unknown_object_type(text))
}

/// Batch and delete responses that carry no body.
pub(crate) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ten_secondly_window_rolls_and_the_daily_budget_does_not() {
        let mut limiter = RateLimiter::new(5, 3, 2);
        let start = Instant::now();
        let ms = 1_700_000_000_000;
        for remaining in [2, 1, 0] {
            assert_eq!(
                limiter.admit_standard(start, ms).unwrap().remaining,
                remaining
            );
        }
        let refused = limiter
            .admit_standard(start + Duration::from_secs(1), ms)
            .unwrap_err()
            .into_response();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[RETRY_AFTER], "9");
        let later = start + Duration::from_secs(11);
        assert_eq!(
            limiter.admit_standard(later, ms).unwrap().daily_remaining,
            1
        );
        assert!(limiter.admit_search(later, ms).is_ok());
        let daily = limiter.admit_search(later, ms).unwrap_err();
        assert!(matches!(daily, Refusal::Daily { headers: None, .. }));
        assert!(limiter.admit_standard(later, ms + DAY_MS).is_ok());
    }

    #[test]
    fn search_has_its_own_window() {
        let mut limiter = RateLimiter::new(1000, 1000, 2);
        let start = Instant::now();
        assert!(limiter.admit_search(start, 0).is_ok());
        assert!(limiter.admit_search(start, 0).is_ok());
        let refused = limiter.admit_search(start, 0).unwrap_err().into_response();
        assert!(
            refused
                .headers()
                .get("x-hubspot-ratelimit-remaining")
                .is_none()
        );
        assert!(limiter.admit_search(start + ONE_SECOND, 0).is_ok());
        assert!(limiter.admit_standard(start, 0).is_ok());
    }
}
