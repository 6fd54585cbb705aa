//! The HTTP face of the sandbox: routing, authentication, API usage limits, fault injection.
//!
//! Every request goes through [`handle`]: classify the path; for API and OAuth requests add the
//! planned latency and draw a fault (429, 500 and 503 answer before any work is done; a reset lets
//! the work happen, then cuts the body — so a client learns that a write may have landed although
//! it saw an error); authenticate; count the call against the daily limit; dispatch; and stamp
//! `Sforce-Limit-Info: api-usage=N/MAX` on the answer. `GET /services/data/` and the sandbox-only
//! `/__admin/*` endpoints skip faults and authentication (`faults` — `GET` prints the plan and, on
//! a second line, what was injected so far —, `expire-tokens`, and `journal`: the API requests
//! received, recorded only while asked — see `refbridge_synthetic::journal`). Injected 429s are answered with
//! `REQUEST_LIMIT_EXCEEDED` and the message Salesforce gives for its concurrent-request limit
//! ("ConcurrentPerOrgLongTxn Limit exceeded."); Salesforce documents no 429 for REST, but HTTP
//! clients meet 429s from proxies in front of it, and a 429 is told apart from the daily-quota 403.
//!
//! Handlers never hold a lock across an `.await`; the org is read-locked for queries and
//! write-locked for the span of one write request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use refbridge_synthetic::World;
use refbridge_synthetic::faults::{Fault, FaultInjector, FaultPlan};
use refbridge_synthetic::journal::RequestJournal;
use serde_json::{Value as Json, json};

use super::SandboxOptions;
use super::collections::{self, Operation, WriteContext};
use super::error::ApiError;
use super::oauth::{self, LoginUser, OAuthConfig, PublicKeyError, TokenRegistry};
use super::query::{self, Cursors};
use super::schema::{self, ObjectType, system};
use super::seed;
use super::store::{Org, Value, format_datetime, normalize_id, parse_datetime_text};

/// The API version the sandbox calls current.
pub const API_VERSION: &str = "62.0";
/// The versions `GET /services/data/` lists (any `vNN.N` is accepted in paths).
const LISTED_VERSIONS: std::ops::RangeInclusive<u32> = 31..=66;
/// The largest request body read.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// How far back `updated/` and `deleted/` reach.
const UPDATED_WINDOW_DAYS: i64 = 30;
const DELETED_WINDOW_DAYS: i64 = 15;

/// Everything the handlers share.
#[derive(Debug)]
pub struct SandboxState {
    org: RwLock<Org>,
    cursors: Mutex<Cursors>,
    tokens: Mutex<TokenRegistry>,
    oauth: OAuthConfig,
    faults: FaultInjector,
    /// API requests received, while `/__admin/journal` asked for them.
    journal: RequestJournal,
    api_usage: AtomicU64,
    error_ids: AtomicU64,
    daily_api_limit: u64,
    token_ttl_seconds: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SandboxState {
    /// Seeds the org from `world` and sets up the connected app. `base_url` is where clients reach
    /// the sandbox (the JWT audience and `instance_url`).
    pub fn new(
        world: &World,
        options: &SandboxOptions,
        base_url: &str,
    ) -> Result<SandboxState, PublicKeyError> {
        let verifying_key = options
            .jwt_public_key_pem
            .as_deref()
            .map(oauth::parse_public_key)
            .transpose()?;
        let org = seed::seed(world);
        let users = org
            .store(ObjectType::User)
            .records
            .iter()
            .filter_map(|record| {
                let username = record.values[ObjectType::User.field_index("Username")?]
                    .as_text()?
                    .to_lowercase();
                let active =
                    record.values[ObjectType::User.field_index("IsActive")?] == Value::Bool(true);
                Some((
                    username,
                    LoginUser {
                        user_id: record.id().to_string(),
                        active,
                    },
                ))
            })
            .collect();
        let seed_text = format!("{}", world.spec.seed);
        let oauth = OAuthConfig {
            client_id: format!("3MVG9sandbox.refbridge.{seed_text}"),
            client_secret: format!(
                "SANDBOX{:016X}",
                world.spec.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ),
            org_id: org.org_id.clone(),
            base_url: base_url.trim_end_matches('/').to_string(),
            verifying_key,
            users,
        };
        Ok(SandboxState {
            org: RwLock::new(org),
            cursors: Mutex::new(Cursors::default()),
            tokens: Mutex::new(TokenRegistry::default()),
            oauth,
            faults: FaultInjector::new(options.faults.clone()),
            journal: RequestJournal::default(),
            api_usage: AtomicU64::new(0),
            error_ids: AtomicU64::new(0),
            daily_api_limit: options.daily_api_limit,
            token_ttl_seconds: options.token_ttl_seconds,
        })
    }

    fn read_org(&self) -> RwLockReadGuard<'_, Org> {
        self.org.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_org(&self) -> RwLockWriteGuard<'_, Org> {
        self.org.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lifetime of access tokens issued now.
    fn token_ttl(&self) -> Duration {
        Duration::from_secs(
            self.faults
                .plan()
                .token_ttl_seconds
                .unwrap_or(self.token_ttl_seconds),
        )
    }

    /// What a client needs to connect: a ready access token, a refresh token, the connected app.
    pub fn credentials(&self) -> Json {
        let user_id = self.read_org().running_user_id.clone();
        let ttl = self.token_ttl();
        let mut tokens = lock(&self.tokens);
        let access_token = tokens.issue_access(&self.oauth, &user_id, ttl);
        let refresh_token = tokens.issue_refresh(&self.oauth, &user_id);
        json!({
            "instance_url": self.oauth.base_url,
            "access_token": access_token,
            "refresh_token": refresh_token,
            "client_id": self.oauth.client_id,
            "client_secret": self.oauth.client_secret,
            "username": seed::INTEGRATION_USERNAME,
            // The running user, who also holds the accounts no rep has claimed.
            "user_id": user_id,
            "api_version": API_VERSION,
            "token_url": format!("{}/services/oauth2/token", self.oauth.base_url),
        })
    }

    /// API requests counted so far.
    pub fn api_usage(&self) -> u64 {
        self.api_usage.load(AtomicOrdering::Relaxed)
    }

    fn limit_info(&self) -> String {
        format!("api-usage={}/{}", self.api_usage(), self.daily_api_limit)
    }
}

/// The sandbox's router; every path is dispatched by [`handle`].
pub fn router(state: Arc<SandboxState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

/// An answer before it becomes an HTTP response.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    body: Option<String>,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: StatusCode, body: String) -> Reply {
        Reply {
            status,
            body: Some(body),
            content_type: "application/json;charset=UTF-8",
            headers: Vec::new(),
        }
    }

    fn ok(body: Json) -> Reply {
        Reply::json(StatusCode::OK, body.to_string())
    }

    fn no_content() -> Reply {
        Reply {
            status: StatusCode::NO_CONTENT,
            body: None,
            content_type: "application/json;charset=UTF-8",
            headers: Vec::new(),
        }
    }

    fn text(status: StatusCode, body: String) -> Reply {
        Reply {
            status,
            body: Some(body),
            content_type: "text/plain;charset=UTF-8",
            headers: Vec::new(),
        }
    }
}

impl From<ApiError> for Reply {
    fn from(error: ApiError) -> Reply {
        Reply::json(error.status, error.body())
    }
}

/// Where a path leads.
enum Route<'a> {
    Versions,
    Admin(&'a str),
    Token,
    Api { version: &'a str, rest: Vec<String> },
    Unknown,
}

fn classify(path: &str) -> Route<'_> {
    let trimmed = path.trim_end_matches('/');
    if trimmed == "/services/data" {
        return Route::Versions;
    }
    if let Some(admin) = trimmed.strip_prefix("/__admin/") {
        return Route::Admin(admin);
    }
    if trimmed == "/services/oauth2/token" {
        return Route::Token;
    }
    if let Some(rest) = path.strip_prefix("/services/data/") {
        let mut segments = rest.split('/');
        let version = segments.next().unwrap_or("");
        let valid = version
            .strip_prefix('v')
            .and_then(|number| number.split_once('.'))
            .is_some_and(|(major, minor)| {
                !major.is_empty()
                    && !minor.is_empty()
                    && (major.bytes().chain(minor.bytes())).all(|byte| byte.is_ascii_digit())
            });
        if valid {
            let rest = segments
                .filter(|segment| !segment.is_empty())
                .map(percent_decode)
                .collect();
            return Route::Api {
                version: &version[1..],
                rest,
            };
        }
    }
    Route::Unknown
}

/// Decodes `%XX` escapes in a path segment (invalid escapes are kept as they are).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && let Some(hex) = segment.get(index + 1..index + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            index += 3;
            continue;
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every request enters here.
pub async fn handle(State(state): State<Arc<SandboxState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let route = classify(&path);
    let counts_faults = matches!(route, Route::Token | Route::Api { .. } | Route::Unknown);
    if matches!(route, Route::Api { .. }) {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
        state.journal.record(
            parts.method.as_str(),
            parts
                .uri
                .path_and_query()
                .map_or(&path, |target| target.as_str()),
            header("sforce-query-options"),
            header("content-length")
                .and_then(|length| length.parse().ok())
                .unwrap_or(0),
        );
    }
    let mut reset = false;
    if counts_faults {
        let plan = state.faults.plan();
        if plan.latency_ms > 0 {
            state.faults.count_delayed();
            tokio::time::sleep(Duration::from_millis(plan.latency_ms)).await;
        }
        match state.faults.draw() {
            Some(Fault::Reset) => reset = true,
            Some(fault) => return finish(&state, fault_reply(&state, fault, &plan), false),
            None => {}
        }
    }
    let body = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let error = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "REQUEST_ENTITY_TOO_LARGE",
                format!("The request body exceeds {MAX_BODY_BYTES} bytes"),
            );
            return finish(&state, error.into(), reset);
        }
    };
    let reply = match route {
        Route::Versions => versions(&parts.method),
        Route::Admin(name) => admin(&state, name, &parts.method, &body),
        Route::Token => token(&state, &parts.method, &parts.headers, &body),
        Route::Api { version, rest } => api(
            &state,
            version,
            &rest,
            &parts.method,
            &parts.uri,
            &parts.headers,
            &body,
        )
        .unwrap_or_else(Reply::from),
        Route::Unknown => ApiError::not_found().into(),
    };
    finish(&state, reply, reset)
}

fn fault_reply(state: &SandboxState, fault: Fault, plan: &FaultPlan) -> Reply {
    match fault {
        Fault::RateLimited => {
            let mut reply: Reply = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "REQUEST_LIMIT_EXCEEDED",
                "ConcurrentPerOrgLongTxn Limit exceeded.",
            )
            .into();
            reply
                .headers
                .push(("retry-after", plan.retry_after_seconds.to_string()));
            reply
        }
        Fault::ServerError => {
            let number = state.error_ids.fetch_add(1, AtomicOrdering::Relaxed) + 1;
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN_EXCEPTION",
                format!(
                    "An unexpected error occurred. Please include this ErrorId if you contact support: {}-{number} ({})",
                    1_700_000_000 + number * 7919,
                    -(number as i64) * 104_729
                ),
            )
            .into()
        }
        Fault::Unavailable | Fault::Reset => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVER_UNAVAILABLE",
            "Server temporarily unavailable, please try again later.",
        )
        .into(),
    }
}

/// Turns a reply into a response with `Sforce-Limit-Info`; with `reset`, the body stops half-way
/// and the connection is cut.
fn finish(state: &SandboxState, reply: Reply, reset: bool) -> Response {
    let mut status = reply.status;
    let mut body = reply.body;
    if reset && body.as_deref().is_none_or(str::is_empty) {
        // A body-less answer cannot be cut part-way: send a 200 with a body that breaks off.
        status = StatusCode::OK;
        body = Some("{\"id\":null}".to_string());
    }
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&state.limit_info()) {
        headers.insert("sforce-limit-info", value);
    }
    for (name, value) in reply.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    let Some(body) = body else {
        return (status, headers).into_response();
    };
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    if !reset {
        return (status, headers, body).into_response();
    }
    let bytes = Bytes::from(body);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    let head = bytes.slice(..bytes.len() / 2);
    let stream = futures_util::stream::unfold(0u8, move |step| {
        let head = head.clone();
        async move {
            match step {
                0 => Some((Ok(head), 1)),
                1 => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Some((
                        Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "sandbox fault: connection reset part-way through the body",
                        )),
                        2,
                    ))
                }
                _ => None,
            }
        }
    });
    (status, headers, Body::from_stream(stream)).into_response()
}

/// `GET /services/data/`: the versions, newest last.
fn versions(method: &Method) -> Reply {
    if method != Method::GET && method != Method::HEAD {
        return ApiError::method_not_allowed(method.as_str(), "GET, HEAD").into();
    }
    let list: Vec<Json> = LISTED_VERSIONS
        .map(|version| {
            let release = version - 20;
            let season = ["Winter", "Spring", "Summer"][(release % 3) as usize];
            json!({
                "label": format!("{season} '{:02}", 11 + release / 3),
                "url": format!("/services/data/v{version}.0"),
                "version": format!("{version}.0"),
            })
        })
        .collect();
    Reply::ok(Json::Array(list))
}

/// The sandbox-only admin endpoints (no authentication, no faults).
fn admin(state: &SandboxState, name: &str, method: &Method, body: &Bytes) -> Reply {
    match (name, method.as_str()) {
        ("faults", "GET") => Reply::text(
            StatusCode::OK,
            format!("{}\n{}", state.faults.plan(), state.faults.counts()),
        ),
        ("faults", "POST" | "PUT") => {
            let text = String::from_utf8_lossy(body);
            match text.trim().parse::<FaultPlan>() {
                Ok(plan) => {
                    let shown = plan.to_string();
                    state.faults.set(plan);
                    Reply::text(StatusCode::OK, shown)
                }
                Err(error) => Reply::text(StatusCode::BAD_REQUEST, error.to_string()),
            }
        }
        ("journal", "POST") => {
            state.journal.start();
            Reply::ok(state.journal.to_json())
        }
        ("journal", "GET") => Reply::ok(state.journal.to_json()),
        ("journal", "DELETE") => {
            state.journal.stop();
            Reply::ok(state.journal.to_json())
        }
        ("expire-tokens", "POST") => {
            let expired = lock(&state.tokens).expire_all();
            Reply::ok(json!({"expired": expired}))
        }
        ("faults", _) => ApiError::method_not_allowed(method.as_str(), "GET, POST").into(),
        ("expire-tokens", _) => ApiError::method_not_allowed(method.as_str(), "POST").into(),
        ("journal", _) => ApiError::method_not_allowed(method.as_str(), "GET, POST, DELETE").into(),
        _ => ApiError::not_found().into(),
    }
}

/// `POST /services/oauth2/token`.
fn token(state: &SandboxState, method: &Method, headers: &HeaderMap, body: &Bytes) -> Reply {
    if method != Method::POST {
        return ApiError::method_not_allowed(method.as_str(), "POST").into();
    }
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let form: HashMap<String, String> = pairs.into_iter().collect();
    let basic = oauth::basic_credentials(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok()),
    );
    let ttl = state.token_ttl();
    let result = oauth::token(&state.oauth, &mut lock(&state.tokens), &form, basic, ttl);
    match result {
        Ok(answer) => {
            let mut reply = Reply::ok(answer);
            reply.headers.push((
                "cache-control",
                "no-cache,must-revalidate,max-age=0,no-store,private".to_string(),
            ));
            reply
        }
        Err(error) => Reply::json(error.status, error.body()),
    }
}

/// The access token's user; `Authorization: Bearer T` or `OAuth T`.
fn authenticate(state: &SandboxState, headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(ApiError::invalid_session)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("OAuth "))
        .map(str::trim)
        .ok_or_else(ApiError::invalid_session)?;
    let tokens = lock(&state.tokens);
    match tokens.user_of(token) {
        Some(user) => Ok(user.to_string()),
        None => {
            if tokens.is_expired(token) {
                state.faults.count_expired_token();
            }
            Err(ApiError::invalid_session())
        }
    }
}

/// Counts one API call, refusing it when the daily allowance is spent.
fn count_call(state: &SandboxState) -> Result<(), ApiError> {
    let limit = state.daily_api_limit;
    state
        .api_usage
        .fetch_update(AtomicOrdering::Relaxed, AtomicOrdering::Relaxed, |used| {
            (used < limit).then_some(used + 1)
        })
        .map(|_| ())
        .map_err(|_| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "REQUEST_LIMIT_EXCEEDED",
                "TotalRequests Limit exceeded.",
            )
        })
}

fn params(uri: &Uri) -> HashMap<String, String> {
    Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|query| query.0)
        .unwrap_or_default()
}

fn parse_json(body: &Bytes) -> Result<Json, ApiError> {
    serde_json::from_slice(body).map_err(|error| {
        ApiError::json_parser(format!(
            "Unexpected character or end of input: {error} at [line:{}, column:{}]",
            error.line(),
            error.column()
        ))
    })
}

fn object_from(name: &str) -> Result<ObjectType, ApiError> {
    ObjectType::from_name(name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!(
                "The requested resource does not exist: sObject type '{name}' is not supported."
            ),
        )
    })
}

/// Every `/services/data/vNN.N/...` request.
fn api(
    state: &SandboxState,
    version: &str,
    rest: &[String],
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Reply, ApiError> {
    let user_id = authenticate(state, headers)?;
    count_call(state)?;
    let segments: Vec<&str> = rest.iter().map(String::as_str).collect();
    let method_name = method.as_str();
    let get_only = |reply: fn(&SandboxState, &str) -> Result<Reply, ApiError>| {
        if method == Method::GET || method == Method::HEAD {
            reply(state, version)
        } else {
            Err(ApiError::method_not_allowed(method_name, "GET, HEAD"))
        }
    };
    match segments.as_slice() {
        [] => get_only(resources),
        ["limits"] => get_only(limits),
        ["sobjects"] => get_only(describe_global),
        [endpoint @ ("query" | "queryAll"), locator @ ..] if locator.len() <= 1 => {
            if method != Method::GET && method != Method::HEAD {
                return Err(ApiError::method_not_allowed(method_name, "GET, HEAD"));
            }
            run_query(
                state,
                version,
                *endpoint == "queryAll",
                locator.first().copied(),
                uri,
                headers,
            )
        }
        ["sobjects", object] => {
            let object = object_from(object)?;
            match *method {
                Method::GET | Method::HEAD => Ok(Reply::ok(json!({
                    "objectDescribe": schema::describe_global_entry(object, version),
                    "recentItems": [],
                }))),
                Method::POST => create_one(state, object, &user_id, body),
                _ => Err(ApiError::method_not_allowed(method_name, "GET, HEAD, POST")),
            }
        }
        ["sobjects", object, "describe"] => {
            let object = object_from(object)?;
            if method != Method::GET && method != Method::HEAD {
                return Err(ApiError::method_not_allowed(method_name, "GET, HEAD"));
            }
            Ok(describe(state, object, version))
        }
        ["sobjects", object, kind @ ("updated" | "deleted")] => {
            let object = object_from(object)?;
            if method != Method::GET && method != Method::HEAD {
                return Err(ApiError::method_not_allowed(method_name, "GET, HEAD"));
            }
            replication(state, object, *kind == "deleted", &params(uri))
        }
        ["sobjects", object, id] => {
            let object = object_from(object)?;
            match *method {
                Method::GET | Method::HEAD => get_one(state, object, id, version, &params(uri)),
                Method::PATCH => update_one(state, object, id, &user_id, body),
                Method::DELETE => delete_one(state, object, id, &user_id),
                _ => Err(ApiError::method_not_allowed(
                    method_name,
                    "GET, HEAD, PATCH, DELETE",
                )),
            }
        }
        ["sobjects", object, field, value] => {
            let object = object_from(object)?;
            let field = collections::upsert_field(object, field)?;
            match *method {
                Method::PATCH => upsert_one(state, object, field, value, &user_id, body),
                Method::GET | Method::HEAD | Method::DELETE => {
                    let row = {
                        let org = state.read_org();
                        let store = org.store(object);
                        let row = if field == system::ID {
                            normalize_id(value).and_then(|id| store.row_of(&id))
                        } else {
                            store.row_by_unique(field, value)
                        };
                        row.and_then(|row| store.get(row))
                            .filter(|record| !record.is_deleted())
                            .map(|record| record.id().to_string())
                    };
                    let id = row.ok_or_else(|| {
                        ApiError::new(
                            StatusCode::NOT_FOUND,
                            "NOT_FOUND",
                            format!("Provided external ID field does not exist or is not accessible: {value}"),
                        )
                    })?;
                    if *method == Method::DELETE {
                        delete_one(state, object, &id, &user_id)
                    } else {
                        get_one(state, object, &id, version, &params(uri))
                    }
                }
                _ => Err(ApiError::method_not_allowed(
                    method_name,
                    "GET, HEAD, PATCH, DELETE",
                )),
            }
        }
        ["composite", "sobjects"] => match *method {
            Method::POST => collection_write(state, None, Operation::Create, &user_id, body),
            Method::PATCH => collection_write(state, None, Operation::Update, &user_id, body),
            Method::DELETE => collection_delete(state, &user_id, &params(uri)),
            _ => Err(ApiError::method_not_allowed(
                method_name,
                "POST, PATCH, DELETE",
            )),
        },
        ["composite", "sobjects", object, field] => {
            let object = object_from(object)?;
            let field = collections::upsert_field(object, field)?;
            if *method != Method::PATCH {
                return Err(ApiError::method_not_allowed(method_name, "PATCH"));
            }
            collection_write(
                state,
                Some(object),
                Operation::Upsert(field),
                &user_id,
                body,
            )
        }
        _ => Err(ApiError::not_found()),
    }
}

fn resources(_: &SandboxState, version: &str) -> Result<Reply, ApiError> {
    let base = format!("/services/data/v{version}");
    Ok(Reply::ok(json!({
        "sobjects": format!("{base}/sobjects"),
        "query": format!("{base}/query"),
        "queryAll": format!("{base}/queryAll"),
        "limits": format!("{base}/limits"),
        "composite": format!("{base}/composite"),
    })))
}

fn limits(state: &SandboxState, _: &str) -> Result<Reply, ApiError> {
    let max = state.daily_api_limit;
    let remaining = max.saturating_sub(state.api_usage());
    let fixed = |max: u64| json!({"Max": max, "Remaining": max});
    Ok(Reply::ok(json!({
        "DailyApiRequests": {"Max": max, "Remaining": remaining},
        "DailyAsyncApexExecutions": fixed(250_000),
        "DailyBulkApiBatches": fixed(15_000),
        "DailyBulkV2QueryJobs": fixed(10_000),
        "DailyGenericStreamingApiEvents": fixed(10_000),
        "DataStorageMB": fixed(1_024),
        "FileStorageMB": fixed(1_024),
        "HourlyODataCallout": fixed(20_000),
        "SingleEmail": fixed(5_000),
    })))
}

fn describe_global(_: &SandboxState, version: &str) -> Result<Reply, ApiError> {
    Ok(Reply::ok(json!({
        "encoding": "UTF-8",
        "maxBatchSize": collections::MAX_COLLECTION_RECORDS,
        "sobjects": ObjectType::ALL.iter().map(|object| schema::describe_global_entry(*object, version)).collect::<Vec<_>>(),
    })))
}

fn describe(state: &SandboxState, object: ObjectType, version: &str) -> Reply {
    let org = state.read_org();
    let fields = object
        .fields()
        .iter()
        .enumerate()
        .map(|(index, field)| {
            field.describe(
                org.observed_picklist_values
                    .get(&(object, index))
                    .map(Vec::as_slice),
            )
        })
        .collect();
    Reply::ok(schema::describe_object(object, version, fields))
}

fn run_query(
    state: &SandboxState,
    version: &str,
    include_deleted: bool,
    locator: Option<&str>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Reply, ApiError> {
    let requested = query::batch_size_from_header(
        headers
            .get("sforce-query-options")
            .and_then(|value| value.to_str().ok()),
    );
    if let Some(locator) = locator {
        let invalid = || ApiError::bad_request("INVALID_QUERY_LOCATOR", "invalid query locator");
        let (name, offset) = query::parse_locator(locator).ok_or_else(invalid)?;
        let cursor = lock(&state.cursors).get(name).ok_or_else(invalid)?;
        let batch_size = requested.unwrap_or(cursor.batch_size);
        let org = state.read_org();
        return Ok(Reply::json(
            StatusCode::OK,
            cursor.render_page(&org, offset, batch_size, Some(name)),
        ));
    }
    let params = params(uri);
    let text = params.get("q").map(String::as_str).unwrap_or("");
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "MALFORMED_QUERY",
            "A query string has to be specified",
        ));
    }
    let batch_size = requested.unwrap_or(query::DEFAULT_BATCH_SIZE);
    let org = state.read_org();
    let cursor = query::run(&org, text, include_deleted, version, batch_size)
        .map_err(|error| ApiError::bad_request(error.kind.error_code(), error.message(text)))?;
    if cursor.single_page() {
        return Ok(Reply::json(
            StatusCode::OK,
            cursor.render_page(&org, 0, batch_size, None),
        ));
    }
    let (locator, cursor) = lock(&state.cursors).open(cursor);
    Ok(Reply::json(
        StatusCode::OK,
        cursor.render_page(&org, 0, batch_size, Some(&locator)),
    ))
}

fn get_one(
    state: &SandboxState,
    object: ObjectType,
    id: &str,
    version: &str,
    params: &HashMap<String, String>,
) -> Result<Reply, ApiError> {
    let fields = match params.get("fields") {
        Some(list) => Some(
            list.split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(|name| {
                    object.field_index(name).ok_or_else(|| {
                        ApiError::bad_request(
                            "INVALID_FIELD",
                            format!("No such column '{name}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.", object.name()),
                        )
                    })
                })
                .collect::<Result<Vec<usize>, ApiError>>()?,
        ),
        None => None,
    };
    let org = state.read_org();
    let (found, _, record) = org.find(id).ok_or_else(ApiError::not_found)?;
    if found != object || record.is_deleted() {
        return Err(ApiError::not_found());
    }
    Ok(Reply::json(
        StatusCode::OK,
        query::render_full_record(object, record, fields.as_deref(), version),
    ))
}

fn write_context(user_id: &str) -> WriteContext<'_> {
    WriteContext {
        user_id,
        now: super::store::to_millis(Utc::now()),
    }
}

fn single_object(body: &Bytes) -> Result<Json, ApiError> {
    let json = parse_json(body)?;
    if !json.is_object() {
        return Err(ApiError::json_parser(
            "Cannot deserialize instance of SObject from a non-object body",
        ));
    }
    Ok(json)
}

fn create_one(
    state: &SandboxState,
    object: ObjectType,
    user_id: &str,
    body: &Bytes,
) -> Result<Reply, ApiError> {
    let record = single_object(body)?;
    let mut org = state.write_org();
    let mut results = collections::write(
        &mut org,
        Some(object),
        Operation::Create,
        &[record],
        false,
        &write_context(user_id),
    );
    let result = results.pop().ok_or_else(ApiError::not_found)?;
    match result.errors.into_iter().next() {
        Some(error) => Err(error.into_api_error()),
        None => Ok(Reply::json(
            StatusCode::CREATED,
            json!({"id": result.id, "success": true, "errors": []}).to_string(),
        )),
    }
}

/// The live row `id` names, or the 404 Salesforce answers.
fn require_live(org: &Org, object: ObjectType, id: &str) -> Result<String, ApiError> {
    match org.find(id) {
        Some((found, _, record)) if found == object => {
            if record.is_deleted() {
                Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "ENTITY_IS_DELETED",
                    "entity is deleted",
                ))
            } else {
                Ok(record.id().to_string())
            }
        }
        _ => Err(ApiError::not_found()),
    }
}

fn update_one(
    state: &SandboxState,
    object: ObjectType,
    id: &str,
    user_id: &str,
    body: &Bytes,
) -> Result<Reply, ApiError> {
    let mut record = single_object(body)?;
    let mut org = state.write_org();
    let id = require_live(&org, object, id)?;
    if let Some(map) = record.as_object_mut() {
        map.retain(|key, _| !key.eq_ignore_ascii_case("id"));
        map.insert("Id".to_string(), Json::String(id));
    }
    let mut results = collections::write(
        &mut org,
        Some(object),
        Operation::Update,
        &[record],
        false,
        &write_context(user_id),
    );
    match results
        .pop()
        .and_then(|result| result.errors.into_iter().next())
    {
        Some(error) => Err(error.into_api_error()),
        None => Ok(Reply::no_content()),
    }
}

fn upsert_one(
    state: &SandboxState,
    object: ObjectType,
    field: usize,
    value: &str,
    user_id: &str,
    body: &Bytes,
) -> Result<Reply, ApiError> {
    let mut record = single_object(body)?;
    let name = object.field(field).name;
    if let Some(map) = record.as_object_mut() {
        map.retain(|key, _| !key.eq_ignore_ascii_case(name));
        map.insert(name.to_string(), Json::String(value.to_string()));
    }
    let mut org = state.write_org();
    if field == system::ID {
        require_live(&org, object, value)?;
    }
    let mut results = collections::write(
        &mut org,
        Some(object),
        Operation::Upsert(field),
        &[record],
        false,
        &write_context(user_id),
    );
    let result = results.pop().ok_or_else(ApiError::not_found)?;
    if let Some(error) = result.errors.into_iter().next() {
        return Err(error.into_api_error());
    }
    let created = result.created == Some(true);
    Ok(Reply::json(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        json!({"id": result.id, "success": true, "errors": [], "created": created}).to_string(),
    ))
}

fn delete_one(
    state: &SandboxState,
    object: ObjectType,
    id: &str,
    user_id: &str,
) -> Result<Reply, ApiError> {
    let mut org = state.write_org();
    let id = require_live(&org, object, id)?;
    let mut results = collections::delete(&mut org, &[id], false, &write_context(user_id));
    match results
        .pop()
        .and_then(|result| result.errors.into_iter().next())
    {
        Some(error) => Err(error.into_api_error()),
        None => Ok(Reply::no_content()),
    }
}

fn collection_write(
    state: &SandboxState,
    object: Option<ObjectType>,
    operation: Operation,
    user_id: &str,
    body: &Bytes,
) -> Result<Reply, ApiError> {
    let json = parse_json(body)?;
    let (all_or_none, records) = collections::read_collection(&json)?;
    let mut org = state.write_org();
    let results = collections::write(
        &mut org,
        object,
        operation,
        records,
        all_or_none,
        &write_context(user_id),
    );
    Ok(Reply::ok(Json::Array(
        results
            .iter()
            .map(collections::RecordResult::to_json)
            .collect(),
    )))
}

fn collection_delete(
    state: &SandboxState,
    user_id: &str,
    params: &HashMap<String, String>,
) -> Result<Reply, ApiError> {
    let ids: Vec<String> = params
        .get("ids")
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() {
        return Err(ApiError::bad_request(
            "MISSING_ARGUMENT",
            "The ids parameter is required",
        ));
    }
    if ids.len() > collections::MAX_COLLECTION_RECORDS {
        return Err(ApiError::bad_request(
            "EXCEEDED_ID_LIMIT",
            format!(
                "record limit reached. cannot submit more than {} records into this call",
                collections::MAX_COLLECTION_RECORDS
            ),
        ));
    }
    let all_or_none = params
        .get("allOrNone")
        .is_some_and(|flag| flag.eq_ignore_ascii_case("true"));
    let mut org = state.write_org();
    let results = collections::delete(&mut org, &ids, all_or_none, &write_context(user_id));
    Ok(Reply::ok(Json::Array(
        results
            .iter()
            .map(collections::RecordResult::to_json)
            .collect(),
    )))
}

fn floor_to_minute(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at)
}

/// `GET /sobjects/{Type}/updated/` and `/deleted/`: `start` and `end` are read to the minute
/// (seconds ignored, as Salesforce does); the window ends no later than now — to the millisecond,
/// where Salesforce would stop at a whole minute, so that a change is listed at once.
fn replication(
    state: &SandboxState,
    object: ObjectType,
    deleted: bool,
    params: &HashMap<String, String>,
) -> Result<Reply, ApiError> {
    let read = |name: &str| -> Result<DateTime<Utc>, ApiError> {
        let text = params.get(name).ok_or_else(|| {
            ApiError::bad_request(
                "MISSING_ARGUMENT",
                format!("The {name} parameter is required"),
            )
        })?;
        parse_datetime_text(text).map(floor_to_minute).ok_or_else(|| {
            ApiError::bad_request(
                "INVALID_PARAMETER_VALUE",
                format!("{name}: '{text}' is not a valid date and time (use e.g. 2026-05-20T00:00:00+00:00)"),
            )
        })
    };
    let (start, end) = (read("start")?, read("end")?);
    let now = Utc::now();
    if end < start {
        return Err(ApiError::bad_request(
            "INVALID_REPLICATION_DATE",
            "EndDate can not be earlier than StartDate",
        ));
    }
    let window = if deleted {
        DELETED_WINDOW_DAYS
    } else {
        UPDATED_WINDOW_DAYS
    };
    let earliest = floor_to_minute(now - TimeDelta::days(window));
    if start < earliest {
        return Err(ApiError::bad_request(
            "INVALID_REPLICATION_DATE",
            format!("startDate must be within the last {window} days"),
        ));
    }
    let covered = end.min(super::store::to_millis(now));
    let org = state.read_org();
    let records = &org.store(object).records;
    if deleted {
        let deleted_records: Vec<Json> = records
            .iter()
            .filter_map(|record| {
                record
                    .deleted_at
                    .filter(|at| *at >= start && *at <= covered)
                    .map(|at| (record, at))
            })
            .map(|(record, at)| json!({"id": record.id(), "deletedDate": format_datetime(&at)}))
            .collect();
        Ok(Reply::ok(json!({
            "deletedRecords": deleted_records,
            "earliestDateAvailable": format_datetime(&earliest),
            "latestDateCovered": format_datetime(&covered),
        })))
    } else {
        let ids: Vec<&str> = records
            .iter()
            .filter(|record| !record.is_deleted())
            .filter(|record| {
                record
                    .system_modstamp()
                    .is_some_and(|at| at >= start && at <= covered)
            })
            .map(|record| record.id())
            .collect();
        Ok(Reply::ok(
            json!({"ids": ids, "latestDateCovered": format_datetime(&covered)}),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_classified_with_any_version_and_decoded_segments() {
        assert!(matches!(classify("/services/data/"), Route::Versions));
        assert!(matches!(classify("/services/data"), Route::Versions));
        assert!(matches!(classify("/services/oauth2/token"), Route::Token));
        assert!(matches!(
            classify("/__admin/faults"),
            Route::Admin("faults")
        ));
        let Route::Api { version, rest } =
            classify("/services/data/v59.0/sobjects/Task/Refbridge_Key__c/a%2Fb%20c/")
        else {
            panic!()
        };
        assert_eq!(version, "59.0");
        assert_eq!(rest, ["sobjects", "Task", "Refbridge_Key__c", "a/b c"]);
        assert!(matches!(
            classify("/services/data/latest/query"),
            Route::Unknown
        ));
        assert!(matches!(
            classify("/services/data/v62/query"),
            Route::Unknown
        ));
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn versions_list_the_current_ones_with_release_labels() {
        let reply = versions(&Method::GET);
        let list: Json = serde_json::from_str(reply.body.as_deref().unwrap()).unwrap();
        let entries = list.as_array().unwrap();
        let find = |version: &str| {
            entries
                .iter()
                .find(|entry| entry["version"] == version)
                .cloned()
                .unwrap()
        };
        assert_eq!(find("62.0")["label"], "Winter '25");
        assert_eq!(find("60.0")["label"], "Spring '24");
        assert_eq!(find("58.0")["url"], "/services/data/v58.0");
    }
}
