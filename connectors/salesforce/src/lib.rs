//! refbridge's Salesforce connector: the REST client that pulls partners, contacts, referrals,
//! activities, owners and refbridge's own tasks, pushes task intents by external-id upsert, and
//! checks the org's setup; and, behind the `sandbox` feature, a faithful local Salesforce REST API
//! loaded from a synthetic world.
//!
//! The client never touches SQLite: it hands normalized records (`refbridge_model::crm`) to the
//! caller page by page, and takes task intents back.
//!
//! # Layout
//! - [`config`] — the `[connectors.salesforce]` table, its defaults and offline checks.
//! - [`auth`] — OAuth 2.0 grants (JWT bearer, refresh token, client credentials) and the shared,
//!   singly-refreshed token.
//! - [`http`] — [`SalesforceClient`]: requests, retries, failure classes, API-call and quota
//!   accounting.
//! - [`soql`] — safe SOQL text: identifiers, literals, the pull's window query.
//! - [`pull`] — streams page by page with compound cursors; reconciliation.
//! - [`push`] — task intents upserted through sObject Collections.
//! - [`health`] — the connect-time check.
//! - [`error`] — [`SalesforceError`] and its failure class.
//! - `sandbox` (feature `sandbox`) — the local Salesforce REST API.

pub mod auth;
pub mod config;
pub mod error;
pub mod health;
pub mod http;
pub mod pull;
pub mod push;
pub mod soql;

#[cfg(feature = "sandbox")]
pub mod sandbox;

pub use config::{
    AuthConfig, AuthMethod, FilterCondition, FilterOp, FilterValue, MappingConfig,
    SalesforceConfig, SalesforceSecrets, SecretKind,
};
pub use error::SalesforceError;
pub use http::{QuotaUsage, SalesforceClient, classify};
pub use pull::{DeletedRecord, PullError};
pub use push::{BATCH_SIZE, PushError};
pub use refbridge_model::crm::PullSummary;
