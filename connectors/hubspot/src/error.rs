//! The one error type of the HubSpot client, and the failure class of each variant.
//!
//! Messages name the request (method and path, never a query string), the HTTP status and
//! HubSpot's error category, and say what to do where a person must act. They must never carry a
//! token, a secret or a record's values.

use std::time::Duration;

use refbridge_model::crm::FailureClass;

/// Why a HubSpot call failed, after the retry policy had its say.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HubspotError {
    /// The configuration or the portal's setup is wrong (a refused login, a missing scope, a
    /// missing property): stop and tell the operator; retrying will not help.
    #[error("HubSpot configuration problem: {0}")]
    Config(String),
    /// The access token was refused again right after a refresh.
    #[error("HubSpot refused the access token again after a refresh ({0})")]
    Auth(String),
    /// The daily limit is spent, or HubSpot asked to wait longer than the policy waits: defer the
    /// run, it is not a failure.
    #[error("HubSpot API limit: {detail}; deferring")]
    Quota {
        retry_after: Option<Duration>,
        detail: String,
    },
    /// Pulling stopped at the configured share of the daily budget, keeping the rest for push.
    #[error(
        "pulling stopped at {used} of {limit} daily API calls (daily_reserve_share), keeping the rest for push; deferring"
    )]
    QuotaReserve { used: u64, limit: u64 },
    /// A retryable failure (5xx, timeout, reset) outlasted the retries.
    #[error("{request} still failing after {attempts} attempts: {detail}")]
    Unavailable {
        request: String,
        attempts: u32,
        detail: String,
    },
    /// HubSpot refused this request for its content (a 4xx that is not about configuration).
    #[error("{request} refused: HTTP {status} {category}: {message}")]
    Rejected {
        request: String,
        status: u16,
        category: String,
        message: String,
    },
    /// The answer did not have the shape HubSpot documents.
    #[error("{request}: unexpected answer: {detail}")]
    Protocol { request: String, detail: String },
}

impl HubspotError {
    /// How the caller should treat it.
    pub fn class(&self) -> FailureClass {
        match self {
            HubspotError::Config(_) => FailureClass::Config,
            HubspotError::Auth(_) => FailureClass::Auth,
            HubspotError::Quota { retry_after, .. } => FailureClass::Quota {
                retry_after: *retry_after,
            },
            HubspotError::QuotaReserve { .. } => FailureClass::Quota { retry_after: None },
            HubspotError::Unavailable { .. } | HubspotError::Protocol { .. } => {
                FailureClass::Retryable
            }
            HubspotError::Rejected { .. } => FailureClass::PermanentRow,
        }
    }

    /// A quota outcome: defer the run rather than report a failure.
    pub fn is_quota(&self) -> bool {
        matches!(self.class(), FailureClass::Quota { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_variant_has_its_class() {
        let quota = HubspotError::Quota {
            retry_after: None,
            detail: "DAILY".into(),
        };
        assert!(quota.is_quota());
        assert!(HubspotError::QuotaReserve { used: 8, limit: 10 }.is_quota());
        assert_eq!(
            HubspotError::Config("x".into()).class(),
            FailureClass::Config
        );
        assert_eq!(
            HubspotError::Protocol {
                request: "GET /".into(),
                detail: "cut".into()
            }
            .class(),
            FailureClass::Retryable
        );
    }
}
