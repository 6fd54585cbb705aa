//! refbridge's HubSpot connector crate.
//!
//! It will also hold the HubSpot client — pulling companies, contacts, deals, engagements and
//! owners page by page, and pushing follow-up tasks by batch upsert on a unique property — which
//! arrives with issue 5. Today it holds, behind the `sandbox` cargo feature, [`sandbox`]: a
//! faithful local HubSpot CRM v3 API seeded from a synthetic world, used by tests, by
//! `refbridge sandbox` and by `refbridge demo`.
//!
//! # Layout
//! - `sandbox/mod.rs` — the public face: [`sandbox::SandboxOptions`], [`sandbox::start`],
//!   [`sandbox::RunningSandbox`].
//! - `sandbox/server.rs` — router, authentication, rate limits, injected faults, admin endpoints.
//! - `sandbox/oauth.rs` — tokens and `POST /oauth/v1/token`.
//! - `sandbox/schema.rs` — object types, initial properties, association type ids.
//! - `sandbox/store.rs` — records, property validation, unique indexes, associations, rendering.
//! - `sandbox/seed.rs` — the synthetic world into the store.
//! - `sandbox/objects.rs`, `search.rs`, `batch.rs` — the endpoints.

#[cfg(feature = "sandbox")]
pub mod sandbox;
