//! refbridge's Salesforce connector crate.
//!
//! It will also hold the Salesforce client — pulling accounts, contacts, opportunities and
//! activities, and pushing follow-up tasks by upsert (issue 4). Today it holds the other side of
//! the wire: behind the `sandbox` feature, [`sandbox`] is a faithful local Salesforce REST API
//! loaded from a synthetic world, used by tests, `refbridge sandbox` and `refbridge demo`.

#[cfg(feature = "sandbox")]
pub mod sandbox;
