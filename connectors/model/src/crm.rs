//! What CRM connectors pull and push, normalized, whichever CRM it came from.
//!
//! A connector turns Salesforce objects or HubSpot objects into these records page by page, each
//! page with the compound cursor that follows it; the ledger stores a page and its cursor in one
//! transaction. Push goes the other way: task intents with a deterministic key, and one result per
//! intent. Nothing here carries a patient value: CRM records describe partners, their
//! professionals, reps, deals and activities.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::{Direction, Disposition, DispositionReason, Npi};

/// Which CRM a record or intent belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrmSystem {
    Salesforce,
    Hubspot,
}

impl CrmSystem {
    pub fn as_str(self) -> &'static str {
        match self {
            CrmSystem::Salesforce => "salesforce",
            CrmSystem::Hubspot => "hubspot",
        }
    }

    /// The system an [`as_str`](CrmSystem::as_str) spelling names.
    pub fn parse(text: &str) -> Option<CrmSystem> {
        match text {
            "salesforce" => Some(CrmSystem::Salesforce),
            "hubspot" => Some(CrmSystem::Hubspot),
            _ => None,
        }
    }
}

/// The streams a CRM connector pulls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// Partner organizations (Account / company).
    Partners,
    /// Professionals at partners (Contact / contact).
    Contacts,
    /// Referrals and leads (Opportunity / deal).
    Referrals,
    /// Touches: completed tasks, events, calls, meetings, emails, notes.
    Activities,
    /// Reps (User / owner).
    Owners,
    /// refbridge's own tasks, read back for status and completion.
    Tasks,
}

impl StreamKind {
    pub const ALL: [StreamKind; 6] = [
        StreamKind::Owners,
        StreamKind::Partners,
        StreamKind::Contacts,
        StreamKind::Referrals,
        StreamKind::Activities,
        StreamKind::Tasks,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Partners => "partners",
            StreamKind::Contacts => "contacts",
            StreamKind::Referrals => "referrals",
            StreamKind::Activities => "activities",
            StreamKind::Owners => "owners",
            StreamKind::Tasks => "tasks",
        }
    }
}

/// A compound, lagged watermark: the last (modified-at, id) stored. The next pull reads records
/// with `modified_at > at`, or `modified_at = at` and `id > id`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cursor {
    pub modified_at: DateTime<Utc>,
    pub id: String,
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}|{}",
            self.modified_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            self.id
        )
    }
}

/// A partner organization as a CRM holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrmPartner {
    pub id: String,
    pub name: String,
    pub source_type: Option<String>,
    pub npi: Option<Npi>,
    pub website: Option<String>,
    pub phone: Option<String>,
    pub street: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub zip: Option<String>,
    pub owner_id: Option<String>,
    pub payers_accepted: Vec<String>,
    pub levels_of_care: Vec<String>,
    pub accepting_referrals: Option<bool>,
    pub preferred: Option<bool>,
}

/// A professional at a partner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrmContact {
    pub id: String,
    pub partner_id: Option<String>,
    pub first_name: Option<String>,
    pub last_name: String,
    pub title: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub owner_id: Option<String>,
}

/// A referral or lead (opportunity / deal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrmReferral {
    pub id: String,
    /// Shared with the EHR export.
    pub inquiry_id: Option<String>,
    pub direction: Direction,
    /// The partner that sent it (inbound) or received it (outbound).
    pub partner_id: Option<String>,
    pub parent_inquiry_id: Option<String>,
    /// The CRM's stage label, as written.
    pub stage: String,
    pub disposition: Option<Disposition>,
    pub disposition_reason: Option<DispositionReason>,
    pub payer: Option<String>,
    pub plan_type: Option<String>,
    pub level_of_care: Option<String>,
    pub inquiry_date: Option<NaiveDate>,
    pub admit_date: Option<NaiveDate>,
    pub owner_id: Option<String>,
}

/// A completed touch by a rep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrmActivity {
    pub id: String,
    /// `call`, `email`, `meeting`, `visit`, `note`, `task`.
    pub kind: String,
    pub owner_id: Option<String>,
    pub partner_id: Option<String>,
    pub contact_id: Option<String>,
    pub at: DateTime<Utc>,
}

/// A rep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrmOwner {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
    pub active: bool,
}

/// One of refbridge's own tasks, read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrmTask {
    pub id: String,
    /// The intent key it was pushed under.
    pub key: String,
    pub status: String,
    pub completed: bool,
    pub owner_id: Option<String>,
}

/// A record of any stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CrmRecordBody {
    Partner(CrmPartner),
    Contact(CrmContact),
    Referral(CrmReferral),
    Activity(CrmActivity),
    Owner(CrmOwner),
    Task(CrmTask),
}

/// A pulled record: its body, when it was last modified, and whether the CRM has deleted it (or
/// merged it into `merged_into`).
#[derive(Debug, Clone, PartialEq)]
pub struct CrmRecord {
    pub id: String,
    pub modified_at: DateTime<Utc>,
    pub deleted: bool,
    pub merged_into: Option<String>,
    pub body: CrmRecordBody,
}

/// One page of a stream and the cursor after it.
#[derive(Debug, Clone, PartialEq)]
pub struct PulledPage {
    pub stream: StreamKind,
    pub records: Vec<CrmRecord>,
    /// The watermark after this page (its last record's), `None` for an empty page.
    pub cursor: Option<Cursor>,
    /// API calls this page cost.
    pub api_calls: u32,
}

/// What one pull of a stream did (each connector reports the same figures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSummary {
    pub stream: StreamKind,
    /// Records handed over (deleted ones included).
    pub records: u64,
    /// Of those, deleted (or merged away).
    pub deleted: u64,
    /// Pages handed over.
    pub pages: u32,
    /// API calls made (retries included).
    pub api_calls: u32,
    pub cursor_before: Option<Cursor>,
    /// The last page's cursor, or `cursor_before` when nothing changed.
    pub cursor_after: Option<Cursor>,
}

/// Task priority, as both CRMs know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskPriority {
    High,
    Normal,
    Low,
}

/// What a rep is asked to do: both CRMs type their tasks (Salesforce `Type`, HubSpot
/// `hs_task_type`; HubSpot has no meeting task, so a meeting is a to-do there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Call,
    Email,
    Meeting,
    #[default]
    Todo,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Call => "call",
            TaskKind::Email => "email",
            TaskKind::Meeting => "meeting",
            TaskKind::Todo => "todo",
        }
    }
}

/// What a task intent asks the CRM to hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskIntent {
    /// Deterministic key (rule + partner + period, or routing + lead): the CRM's external id.
    pub key: String,
    pub owner_id: Option<String>,
    /// What the task is about: the partner's CRM id, or the lead's for refer-out tasks.
    pub about_id: String,
    pub subject: String,
    pub description: String,
    pub due: NaiveDate,
    pub priority: TaskPriority,
    /// Absent in intents queued before task kinds existed: a to-do.
    #[serde(default)]
    pub kind: TaskKind,
    /// True closes the task (the condition cleared).
    pub completed: bool,
}

/// What became of one intent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PushResult {
    /// The CRM holds it; `task_id` is its id there.
    Stored {
        key: String,
        task_id: String,
        created: bool,
    },
    /// Not stored this time; try again next run.
    Retryable { key: String, reason: String },
    /// The CRM refused this row; retrying will not help.
    Permanent {
        key: String,
        code: String,
        message: String,
    },
}

/// How a failure should be handled: one classification for every connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureClass {
    /// Try again after a backoff (5xx, resets, timeouts).
    Retryable,
    /// The quota is spent or throttled: wait (`retry_after`) or defer the run.
    Quota { retry_after: Option<Duration> },
    /// The token was refused: refresh once, then retry.
    Auth,
    /// This row is wrong; the others go on.
    PermanentRow,
    /// The configuration is wrong: stop and say so.
    Config,
}

impl FailureClass {
    /// The class an HTTP status implies when nothing more specific is known (the connectors refine
    /// it with the error codes of their bodies): 408 and 5xx retryable, 429 quota (wait
    /// `retry_after` when the server said so), 401 auth, 403 config (the integration user lacks a
    /// permission), any other 4xx permanent for the row.
    pub fn from_status(status: u16, retry_after: Option<Duration>) -> FailureClass {
        match status {
            408 | 500..=599 => FailureClass::Retryable,
            429 => FailureClass::Quota { retry_after },
            401 => FailureClass::Auth,
            403 => FailureClass::Config,
            _ => FailureClass::PermanentRow,
        }
    }

    /// A connection refused or reset, a timeout, a body cut short: always worth another try.
    pub fn transport() -> FailureClass {
        FailureClass::Retryable
    }
}

/// `Retry-After` in delta-seconds (an HTTP-date is ignored: `None`).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// What to do after a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Sleep this long, then send the request again.
    Wait(Duration),
    /// Get a new access token (once per request), then send it again at once.
    RefreshCredentials,
    /// Stop: hand the failure to the caller.
    GiveUp,
}

/// The one retry policy of every CRM client: bounded retries with exponential backoff and full
/// jitter for retryable failures, waiting out a short `Retry-After`, one credential refresh for an
/// auth failure, and no retry at all for quota exhaustion (defer the run), bad rows and bad
/// configuration. Pure: the caller supplies the random draw and does the sleeping.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (waits for `Retry-After` count too).
    pub max_retries: u32,
    /// The backoff ceiling of the first retry; it doubles with each retry.
    pub base_delay: Duration,
    /// The largest backoff ceiling.
    pub max_delay: Duration,
    /// The longest `Retry-After` waited out in place; a longer one defers the run.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// `min(max_delay, base_delay · 2^retry)`, where `retry` counts from 0.
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// Full jitter: a uniform draw in `[0, ceiling]`; `unit` is a random number in `[0, 1)`.
    pub fn backoff(&self, retry: u32, unit: f64) -> Duration {
        self.backoff_ceiling(retry).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// What to do after the `retries_done`-th retry failed with `class` (0 after the first
    /// attempt); `refreshed` says whether the credentials were already refreshed for this request.
    pub fn decide(
        &self,
        class: &FailureClass,
        retries_done: u32,
        refreshed: bool,
        unit: f64,
    ) -> RetryDecision {
        let budget_left = retries_done < self.max_retries;
        match class {
            FailureClass::Retryable if budget_left => {
                RetryDecision::Wait(self.backoff(retries_done, unit))
            }
            FailureClass::Quota {
                retry_after: Some(wait),
            } if budget_left && *wait <= self.max_retry_after => RetryDecision::Wait(*wait),
            FailureClass::Auth if !refreshed => RetryDecision::RefreshCredentials,
            _ => RetryDecision::GiveUp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(30),
        }
    }

    #[test]
    fn statuses_fall_into_their_classes() {
        let wait = Some(Duration::from_secs(2));
        for (status, expected) in [
            (500, FailureClass::Retryable),
            (502, FailureClass::Retryable),
            (503, FailureClass::Retryable),
            (408, FailureClass::Retryable),
            (429, FailureClass::Quota { retry_after: wait }),
            (401, FailureClass::Auth),
            (403, FailureClass::Config),
            (400, FailureClass::PermanentRow),
            (404, FailureClass::PermanentRow),
        ] {
            assert_eq!(
                FailureClass::from_status(status, wait),
                expected,
                "{status}"
            );
        }
        assert_eq!(FailureClass::transport(), FailureClass::Retryable);
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn retryable_failures_back_off_exponentially_with_full_jitter_and_stop() {
        let policy = policy();
        assert_eq!(policy.backoff_ceiling(0), Duration::from_millis(100));
        assert_eq!(policy.backoff_ceiling(2), Duration::from_millis(400));
        assert_eq!(policy.backoff_ceiling(10), Duration::from_secs(1));
        assert_eq!(policy.backoff_ceiling(u32::MAX), Duration::from_secs(1));
        assert_eq!(policy.backoff(2, 0.0), Duration::ZERO);
        assert_eq!(policy.backoff(2, 0.5), Duration::from_millis(200));
        assert_eq!(policy.backoff(2, 7.0), Duration::from_millis(400));
        let class = FailureClass::Retryable;
        assert_eq!(
            policy.decide(&class, 1, false, 0.5),
            RetryDecision::Wait(Duration::from_millis(100))
        );
        assert_eq!(policy.decide(&class, 3, false, 0.5), RetryDecision::GiveUp);
    }

    #[test]
    fn quota_waits_out_a_short_retry_after_and_defers_otherwise() {
        let policy = policy();
        let short = FailureClass::Quota {
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(
            policy.decide(&short, 0, false, 0.9),
            RetryDecision::Wait(Duration::from_secs(2))
        );
        assert_eq!(policy.decide(&short, 3, false, 0.9), RetryDecision::GiveUp);
        let long = FailureClass::Quota {
            retry_after: Some(Duration::from_secs(3600)),
        };
        assert_eq!(policy.decide(&long, 0, false, 0.9), RetryDecision::GiveUp);
        let spent = FailureClass::Quota { retry_after: None };
        assert_eq!(policy.decide(&spent, 0, false, 0.9), RetryDecision::GiveUp);
    }

    #[test]
    fn auth_refreshes_once_and_rows_and_config_never_retry() {
        let policy = policy();
        assert_eq!(
            policy.decide(&FailureClass::Auth, 0, false, 0.1),
            RetryDecision::RefreshCredentials
        );
        assert_eq!(
            policy.decide(&FailureClass::Auth, 0, true, 0.1),
            RetryDecision::GiveUp
        );
        for class in [FailureClass::PermanentRow, FailureClass::Config] {
            assert_eq!(policy.decide(&class, 0, false, 0.1), RetryDecision::GiveUp);
        }
    }
}
