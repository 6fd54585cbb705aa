//! A faithful local HubSpot CRM v3 API, seeded from a synthetic [`World`], for tests and
//! `refbridge sandbox`.
//!
//! What it speaks: private-app and OAuth bearer tokens (`POST /oauth/v1/token`, refresh grant);
//! objects (companies, contacts, deals, tasks, calls, meetings, emails, notes) — list with cursor
//! paging, get, create with inline associations, update, archive; search with filter groups, one
//! sort and the 10,000-result cap; batch create/read/update/upsert/archive (≤ 100 inputs, 207 on
//! partial failure); v4 associations (per record, and the batch `read` and `associate/default`
//! endpoints, ≤ 1,000 inputs, 207 naming what failed); the properties API (so a client can declare the unique
//! `refbridge_key` on tasks, which the sandbox starts without); owners; the deal pipeline. Rate
//! limits (ten-secondly rolling, daily, search per second) answer HubSpot's 429 bodies and
//! headers, and a [`FaultPlan`] injects latency, 429, 500, 503 and connection resets. The official
//! Python client `hubspot-api-client` works against it unchanged.
//!
//! Sandbox-only admin endpoints, without authentication and never on a real portal:
//! `GET|POST /__admin/faults` (the plan text, e.g. `429=0.1,503=0.05`; `GET` adds a line with what
//! was injected so far, e.g. `injected 429=3,500=1,503=0,reset=2,expired_token=1,delayed=0`),
//! `POST /__admin/expire-tokens`, `POST /__admin/touch/{type}?count=N&at=<ms>` (give N records one
//! modification time, as a bulk import does, so that more than 10,000 records can share one
//! `hs_lastmodifieddate`), and `POST`/`GET`/`DELETE /__admin/journal` (start, read, stop a journal
//! of the API requests).
//!
//! Deliberately absent: patient data of any kind (the world's patients stay in its EHR exports),
//! webhooks, property history, merges, GDPR deletes, custom objects, lists, and any persistence —
//! the CRM lives in memory for the life of the process.

mod batch;
mod error;
mod oauth;
mod objects;
mod schema;
mod search;
mod seed;
mod server;
mod store;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use refbridge_synthetic::World;
use refbridge_synthetic::faults::FaultPlan;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use self::oauth::TokenBook;
use self::server::{RateLimiter, Shared};

/// How to run a sandbox.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxOptions {
    /// Where to listen; port 0 picks a free one. Default `127.0.0.1:0`.
    pub bind: SocketAddr,
    /// Faults to inject from the start (changeable later at `/__admin/faults`).
    pub faults: FaultPlan,
    /// API calls a day (HubSpot: 250,000 for a private app on Professional). Default 250,000.
    pub daily_limit: u64,
    /// API calls per rolling ten seconds (HubSpot: 190). Search calls do not count here.
    pub ten_secondly_limit: u64,
    /// Search calls per second (HubSpot: 5).
    pub search_per_second: u64,
    /// Lifetime of issued OAuth access tokens (HubSpot: 1800); the fault plan's
    /// `token_ttl_seconds` overrides it.
    pub token_ttl_seconds: u64,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            faults: FaultPlan::default(),
            daily_limit: 250_000,
            ten_secondly_limit: 190,
            search_per_second: 5,
            token_ttl_seconds: 1800,
        }
    }
}

/// A sandbox serving on a local port. Dropping it stops the server too; [`RunningSandbox::shutdown`]
/// also waits until it has stopped.
#[derive(Debug)]
pub struct RunningSandbox {
    addr: SocketAddr,
    base_url: String,
    credentials: Value,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl RunningSandbox {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` — the `host` a client uses instead of `https://api.hubapi.com`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `{base_url, private_app_token, access_token, refresh_token, client_id, client_secret}`;
    /// `access_token` is ready to use (it expires like any OAuth token), the private-app token
    /// never expires.
    pub fn credentials(&self) -> Value {
        self.credentials.clone()
    }

    /// Stops accepting, lets requests in flight finish (at most five seconds), and returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
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
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Loads `world` into a fresh CRM and serves it on `options.bind`.
pub async fn start(world: Arc<World>, options: SandboxOptions) -> io::Result<RunningSandbox> {
    let listener = TcpListener::bind(options.bind).await?;
    let addr = listener.local_addr()?;
    let host = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let base_url = format!("http://{}", SocketAddr::new(host, addr.port()));
    let seed_world = Arc::clone(&world);
    let store = tokio::task::spawn_blocking(move || seed::seed(&seed_world))
        .await
        .map_err(io::Error::other)?;
    let mut tokens = TokenBook::new(world.spec.seed);
    let ttl = options
        .faults
        .token_ttl_seconds
        .unwrap_or(options.token_ttl_seconds);
    let access_token = tokens.issue(store::now_ms(), ttl);
    let credentials = json!({
        "base_url": base_url,
        "private_app_token": tokens.private_app_token,
        "access_token": access_token,
        "refresh_token": tokens.refresh_token,
        "client_id": tokens.client_id,
        "client_secret": tokens.client_secret,
    });
    let limits = RateLimiter::new(
        options.daily_limit,
        options.ten_secondly_limit,
        options.search_per_second,
    );
    let shared = Arc::new(Shared::new(
        store,
        tokens,
        limits,
        options.faults,
        base_url.clone(),
        options.token_ttl_seconds,
    ));
    let app = server::router(shared);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!(address = %addr, "hubspot sandbox listening");
    Ok(RunningSandbox {
        addr,
        base_url,
        credentials,
        stop: Some(stop),
        task: Some(task),
    })
}
