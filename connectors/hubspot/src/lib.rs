//! refbridge's HubSpot connector: the CRM v3 client that pulls partners (companies), contacts,
//! referrals (deals of the admissions pipeline), activities (calls, meetings, emails, notes,
//! completed tasks), owners and refbridge's own tasks, pushes task intents by batch upsert on a
//! unique property, and checks the portal's setup; and, behind the `sandbox` feature, a faithful
//! local HubSpot CRM v3 API loaded from a synthetic world.
//!
//! The client never touches SQLite: it hands normalized records (`refbridge_model::crm`) to the
//! caller page by page, and takes task intents back. Its public shape mirrors the Salesforce
//! client's (`pull`, `reconcile_ids`, `push`, `healthcheck`, `api_calls`, `window_end`).
//!
//! # Layout
//! - [`config`] — the `[connectors.hubspot]` table, its defaults and offline checks.
//! - [`auth`] — private-app token or OAuth refresh grant; the shared, singly-refreshed token.
//! - [`http`] — [`HubspotClient`]: requests, retries, failure classes, the ten-secondly, daily
//!   and search limits honoured before they are hit, API-call counting.
//! - [`pull`] — list full loads (resumable), search pulls split past the 10,000-result cap,
//!   associations, archived records, reconciliation ids.
//! - [`push`] — task intents upserted on the key property, then associated.
//! - [`health`] — the connect-time check, and creating the task key property.
//! - [`error`] — [`HubspotError`] and its failure class.
//! - `sandbox/` (feature `sandbox`) — the local HubSpot API: `mod.rs` ([`sandbox::SandboxOptions`],
//!   [`sandbox::start`], [`sandbox::RunningSandbox`]), `server.rs` (router, auth, limits, faults,
//!   admin), `oauth.rs`, `schema.rs`, `store.rs`, `seed.rs`, and the endpoints in `objects.rs`,
//!   `search.rs`, `batch.rs`.

pub mod auth;
pub mod config;
pub mod error;
pub mod health;
pub mod http;
pub mod pull;
pub mod push;

#[cfg(feature = "sandbox")]
pub mod sandbox;

pub use config::{
    AuthConfig, AuthMethod, HubspotConfig, HubspotSecrets, MappingConfig, ObjectMapping,
    PartnerProperties, ReferralProperties, SecretKind, TaskProperties,
};
pub use error::HubspotError;
pub use http::{HubspotClient, QuotaUsage, RateHeaders, classify};
pub use pull::PullError;
pub use push::{BATCH_SIZE, PushCalls, PushError};
pub use refbridge_model::crm::PullSummary;
