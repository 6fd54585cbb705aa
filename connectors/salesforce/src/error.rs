//! The one error type of the Salesforce client, and the failure class of each variant.
//!
//! Messages name the request (method and path, never a query string), the HTTP status and the
//! Salesforce error code, and say what to do where a person must act. They must never carry a
//! token, a secret or a record's values.

use std::time::Duration;

use refbridge_model::crm::FailureClass;

/// Why a Salesforce call failed, after the retry policy had its say.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SalesforceError {
    /// The configuration or the org's setup is wrong (a refused login, a missing field, a missing
    /// permission): stop and tell the operator; retrying will not help.
    #[error("Salesforce configuration problem: {0}")]
    Config(String),
    /// The access token was refused again right after a refresh.
    #[error("Salesforce refused the session again after a token refresh ({0})")]
    Auth(String),
    /// The org's API quota is spent (`REQUEST_LIMIT_EXCEEDED`) or the server asked to wait longer
    /// than the policy waits: defer the run, it is not a failure.
    #[error("Salesforce API quota: {detail}; deferring")]
    Quota {
        retry_after: Option<Duration>,
        detail: String,
    },
    /// Pulling stopped at the configured share of the daily limit, keeping the rest for push.
    #[error(
        "pulling stopped at {used} of {limit} daily API calls (quota_stop_share), keeping the rest for push; deferring"
    )]
    QuotaReserve { used: u64, limit: u64 },
    /// A retryable failure (5xx, timeout, reset) outlasted the retries.
    #[error("{request} still failing after {attempts} attempts: {detail}")]
    Unavailable {
        request: String,
        attempts: u32,
        detail: String,
    },
    /// Salesforce refused this request for its content (a 4xx that is not about configuration).
    #[error("{request} refused: HTTP {status} {code}: {message}")]
    Rejected {
        request: String,
        status: u16,
        code: String,
        message: String,
    },
    /// The answer did not have the shape Salesforce documents.
    #[error("{request}: unexpected answer: {detail}")]
    Protocol { request: String, detail: String },
}

impl SalesforceError {
    /// How the caller should treat it.
    pub fn class(&self) -> FailureClass {
        match self {
            SalesforceError::Config(_) => FailureClass::Config,
            SalesforceError::Auth(_) => FailureClass::Auth,
            SalesforceError::Quota { retry_after, .. } => FailureClass::Quota {
                retry_after: *retry_after,
            },
            SalesforceError::QuotaReserve { .. } => FailureClass::Quota { retry_after: None },
            SalesforceError::Unavailable { .. } | SalesforceError::Protocol { .. } => {
                FailureClass::Retryable
            }
            SalesforceError::Rejected { .. } => FailureClass::PermanentRow,
        }
    }

    /// A quota outcome: defer the run rather than report a failure.
    pub fn is_quota(&self) -> bool {
        matches!(self.class(), FailureClass::Quota { .. })
    }
}
