//! A faithful local Salesforce REST API, loaded from a synthetic [`World`], for tests and
//! `refbridge sandbox`.
//!
//! It speaks what refbridge's connector and the official clients (simple-salesforce) use: the
//! versions list, OAuth 2.0 token grants (JWT bearer, refresh token, client credentials), SOQL
//! `query`/`queryAll` with server-side cursors, sObject CRUD, upsert by external id, describe,
//! `updated/` and `deleted/`, sObject Collections, `limits` — with Salesforce's error bodies, ids,
//! datetime format, daily API limit and `Sforce-Limit-Info` header. Faults (`FaultPlan`) are
//! injected as the real service would answer them. Sandbox-only admin endpoints need no
//! authentication: `GET`/`POST /__admin/faults` (read or replace the plan, body e.g.
//! `429=0.1,503=0.05`; `GET` adds a line counting what was injected so far), `POST
//! /__admin/expire-tokens` (every issued access token expires now) and `POST`/`GET`/`DELETE
//! /__admin/journal` (start, read, stop a journal of the API requests).
//!
//! Deliberately absent: Bulk API, Composite (graph/batch/tree), SOSL search, Apex REST, Streaming,
//! sharing and field-level security, SOQL sub-queries/aggregates beyond `COUNT`, date literals
//! (`LAST_N_DAYS:7`), record types, triggers and cascade deletes, and User writes (Users are
//! seeded and read-only).
//!
//! # Layout
//! - [`server`] — router, authentication, API limits, faults, every endpoint handler.
//! - [`oauth`] — the token endpoint and the token registry.
//! - [`soql`] — SOQL tokenizer, parser and syntax tree.
//! - [`query`] — binding a query to the schema, evaluation, cursors, page rendering.
//! - [`schema`] — objects, fields, describe metadata.
//! - [`store`] — records, ids, value formatting.
//! - [`seed`] — the world → records mapping.
//! - [`collections`] — every write, single-record and Collections.
//! - [`error`] — the `[{message, errorCode, fields}]` error body.

pub mod collections;
pub mod error;
pub mod oauth;
pub mod query;
pub mod schema;
pub mod seed;
pub mod server;
pub mod soql;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use refbridge_synthetic::World;
use refbridge_synthetic::faults::FaultPlan;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use server::{API_VERSION, SandboxState, router};

/// How to run a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Where to listen; port 0 picks a free one.
    pub bind: SocketAddr,
    /// Faults to inject from the start (replaceable at `/__admin/faults`).
    pub faults: FaultPlan,
    /// The connected app's certificate key for the JWT bearer grant (SPKI `PUBLIC KEY` or PKCS#1
    /// `RSA PUBLIC KEY` PEM); without it, JWT logins are refused.
    pub jwt_public_key_pem: Option<String>,
    /// API requests allowed before `REQUEST_LIMIT_EXCEEDED`.
    pub daily_api_limit: u64,
    /// Lifetime of access tokens (unless the fault plan sets `token_ttl_seconds`).
    pub token_ttl_seconds: u64,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            faults: FaultPlan::default(),
            jwt_public_key_pem: None,
            daily_api_limit: 15_000,
            token_ttl_seconds: 7_200,
        }
    }
}

/// A sandbox serving on a socket. Dropping it stops the server too.
#[derive(Debug)]
pub struct RunningSandbox {
    addr: SocketAddr,
    base_url: String,
    credentials: serde_json::Value,
    state: Arc<SandboxState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningSandbox {
    /// `http://127.0.0.1:PORT` — the `instance_url`, and the login URL for the token endpoint.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `{instance_url, access_token, refresh_token, client_id, client_secret, username,
    /// api_version, token_url}`; the access token is ready to use.
    pub fn credentials(&self) -> serde_json::Value {
        self.credentials.clone()
    }

    /// The shared state, for tests that look behind the API.
    pub fn state(&self) -> &Arc<SandboxState> {
        &self.state
    }

    /// Stops accepting, lets in-flight requests finish (at most five seconds), and returns.
    pub async fn shutdown(mut self) {
        if let Some(sender) = self.shutdown.take() {
            let _ = sender.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for RunningSandbox {
    fn drop(&mut self) {
        if let Some(sender) = self.shutdown.take() {
            let _ = sender.send(());
        }
    }
}

/// Loads `world` and serves it on `options.bind`.
pub async fn start(world: Arc<World>, options: SandboxOptions) -> std::io::Result<RunningSandbox> {
    let listener = TcpListener::bind(options.bind).await?;
    let addr = listener.local_addr()?;
    let host = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let base_url = format!("http://{host}");
    let url = base_url.clone();
    let state = tokio::task::spawn_blocking(move || SandboxState::new(&world, &options, &url))
        .await
        .map_err(std::io::Error::other)?
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
    let state = Arc::new(state);
    let credentials = state.credentials();
    let (sender, receiver) = oneshot::channel::<()>();
    let app = router(Arc::clone(&state));
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = receiver.await;
            })
            .await
    });
    tracing::info!(%addr, "salesforce sandbox listening");
    Ok(RunningSandbox {
        addr,
        base_url,
        credentials,
        state,
        shutdown: Some(sender),
        task: Some(task),
    })
}
