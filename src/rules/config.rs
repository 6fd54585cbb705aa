//! `[rules]` and `[outbox]`: which alerts exist, their thresholds, the task each one asks for, the
//! per-rep daily budget, snoozes, and the circuit breaker that refuses a mass change.
//!
//! Every rule has the same four task settings (`enabled`, `due_in_days`, `priority`,
//! `task_type`) plus its own thresholds; each rule's table is spelled out (no flattening) so that
//! serde points at the right line when a key is wrong.

use chrono::NaiveDate;
use refbridge_model::crm::{TaskKind, TaskPriority};
use serde::Deserialize;

/// `[rules]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    /// New tasks one rep (or one queue) may receive per day; the most important first, the rest
    /// wait for the next day.
    pub daily_budget_per_rep: u32,
    /// Who gets identity-review tasks, per CRM (a user/owner id). Absent: the connector's
    /// `queue_owner_id`.
    pub ops_owner: OpsOwner,
    pub declining: DecliningRule,
    pub silent: SilentRule,
    pub no_touch: NoTouchRule,
    pub unowned: UnownedRule,
    pub new_partner: NewPartnerRule,
    pub placement_follow_up: PlacementRule,
    pub identity_review: IdentityReviewRule,
    pub refer_out: ReferOutRule,
    /// `[[rules.snooze]]`: no task for a partner (and rule) until a date.
    pub snooze: Vec<Snooze>,
}

impl Default for RulesConfig {
    fn default() -> RulesConfig {
        RulesConfig {
            daily_budget_per_rep: 5,
            ops_owner: OpsOwner::default(),
            declining: DecliningRule::default(),
            silent: SilentRule::default(),
            no_touch: NoTouchRule::default(),
            unowned: UnownedRule::default(),
            new_partner: NewPartnerRule::default(),
            placement_follow_up: PlacementRule::default(),
            identity_review: IdentityReviewRule::default(),
            refer_out: ReferOutRule::default(),
            snooze: Vec::new(),
        }
    }
}

/// `[rules.ops_owner]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsOwner {
    pub salesforce: Option<String>,
    pub hubspot: Option<String>,
}

/// A rule with only the four task settings, and its defaults. Each rule is its own type so that
/// an empty table (`[rules.declining]`) takes that rule's defaults.
macro_rules! task_rule {
    ($(#[$doc:meta])* $name:ident, $due:expr, $priority:ident, $kind:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            pub enabled: bool,
            /// The task is due this many days after it is opened.
            pub due_in_days: u32,
            pub priority: TaskPriority,
            /// `call`, `email`, `meeting` or `todo`.
            pub task_type: TaskKind,
        }

        impl Default for $name {
            fn default() -> $name {
                $name {
                    enabled: true,
                    due_in_days: $due,
                    priority: TaskPriority::$priority,
                    task_type: TaskKind::$kind,
                }
            }
        }
    };
}

task_rule!(
    /// `[rules.declining]`: referrals well below the partner's own baseline.
    DecliningRule, 7, High, Meeting
);
task_rule!(
    /// `[rules.silent]`: no referral for longer than chance explains.
    SilentRule, 3, High, Call
);
task_rule!(
    /// `[rules.identity_review]`: an uncertain partner match, to ops.
    IdentityReviewRule, 14, Low, Todo
);
task_rule!(
    /// `[rules.refer_out]`: a lead that did not convert, with partners that fit.
    ReferOutRule, 1, High, Call
);

/// `[rules.no_touch]`: a top partner nobody has touched for a while.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoTouchRule {
    pub enabled: bool,
    pub due_in_days: u32,
    pub priority: TaskPriority,
    pub task_type: TaskKind,
    /// Days without a touch (call, meeting, visit, email, completed task) that fire the alert.
    pub days: u32,
    /// The share of partners, by referrals in the last 365 days, that count as top partners.
    pub top_share: f64,
}

impl Default for NoTouchRule {
    fn default() -> NoTouchRule {
        NoTouchRule {
            enabled: true,
            due_in_days: 14,
            priority: TaskPriority::Normal,
            task_type: TaskKind::Meeting,
            days: 45,
            top_share: 0.2,
        }
    }
}

/// `[rules.unowned]`: an active partner without a rep (the task goes to the team queue).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnownedRule {
    pub enabled: bool,
    pub due_in_days: u32,
    pub priority: TaskPriority,
    pub task_type: TaskKind,
    /// Referrals in the last 365 days that make a partner worth an owner.
    pub min_referrals: u64,
}

impl Default for UnownedRule {
    fn default() -> UnownedRule {
        UnownedRule {
            enabled: true,
            due_in_days: 7,
            priority: TaskPriority::Normal,
            task_type: TaskKind::Todo,
            min_referrals: 1,
        }
    }
}

/// `[rules.new_partner]`: a first referral (thank them and meet).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NewPartnerRule {
    pub enabled: bool,
    pub due_in_days: u32,
    pub priority: TaskPriority,
    pub task_type: TaskKind,
    /// A partner whose first referral is at most this many days old is new.
    pub days: u32,
}

impl Default for NewPartnerRule {
    fn default() -> NewPartnerRule {
        NewPartnerRule {
            enabled: true,
            due_in_days: 7,
            priority: TaskPriority::Normal,
            task_type: TaskKind::Meeting,
            days: 30,
        }
    }
}

/// `[rules.placement_follow_up]`: a referral we sent out with no outcome after some days.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlacementRule {
    pub enabled: bool,
    pub due_in_days: u32,
    pub priority: TaskPriority,
    pub task_type: TaskKind,
    /// Days after the referral out before refbridge asks whether the partner accepted.
    pub after_days: u32,
    /// Referrals out older than this are no longer followed up.
    pub max_age_days: u32,
}

impl Default for PlacementRule {
    fn default() -> PlacementRule {
        PlacementRule {
            enabled: true,
            due_in_days: 2,
            priority: TaskPriority::High,
            task_type: TaskKind::Call,
            after_days: 7,
            max_age_days: 60,
        }
    }
}

/// One `[[rules.snooze]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snooze {
    /// The partner's ledger id (as `refbridge health` shows it).
    pub partner: i64,
    /// One rule (`declining`, `silent`, …); absent: every rule about that partner.
    pub rule: Option<String>,
    /// The last day of the snooze.
    pub until: NaiveDate,
}

/// `[outbox]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// The circuit breaker: a plan that would update or close more than this share of the open
    /// tasks is refused (a rules change or bad data, not a normal day).
    pub max_change_share: f64,
    /// The breaker only judges when at least this many tasks are open.
    pub breaker_min_open_tasks: u64,
}

impl Default for OutboxConfig {
    fn default() -> OutboxConfig {
        OutboxConfig {
            max_change_share: 0.5,
            breaker_min_open_tasks: 20,
        }
    }
}

/// Rule names, as keys, configs and snoozes spell them.
pub const RULE_NAMES: [&str; 8] = [
    "declining",
    "silent",
    "no_touch",
    "unowned",
    "new_partner",
    "placement_follow_up",
    "identity_review",
    "refer_out",
];

impl RulesConfig {
    /// Problems as (key path below `rules`, message).
    pub fn problems(&self) -> Vec<(Vec<String>, String)> {
        let mut found = Vec::new();
        let mut add = |path: &[&str], message: &str| {
            found.push((
                path.iter().map(|s| s.to_string()).collect(),
                message.to_string(),
            ))
        };
        if self.daily_budget_per_rep == 0 {
            add(
                &["daily_budget_per_rep"],
                "must be at least 1 (turn rules off with `enabled = false` instead)",
            );
        }
        if !(self.no_touch.top_share > 0.0 && self.no_touch.top_share <= 1.0) {
            add(&["no_touch", "top_share"], "must be in (0, 1]");
        }
        if self.no_touch.days == 0 {
            add(&["no_touch", "days"], "must be at least 1");
        }
        if self.new_partner.days == 0 {
            add(&["new_partner", "days"], "must be at least 1");
        }
        if self.placement_follow_up.after_days >= self.placement_follow_up.max_age_days {
            add(
                &["placement_follow_up", "max_age_days"],
                "must be greater than after_days",
            );
        }
        for (index, snooze) in self.snooze.iter().enumerate() {
            let at = index.to_string();
            if let Some(rule) = &snooze.rule
                && !RULE_NAMES.contains(&rule.as_str())
            {
                add(
                    &["snooze", &at, "rule"],
                    &format!("unknown rule {rule:?}; rules are {}", RULE_NAMES.join(", ")),
                );
            }
            if snooze.partner < 1 {
                add(
                    &["snooze", &at, "partner"],
                    "must be a partner id as `refbridge health` shows it",
                );
            }
        }
        found
    }
}

impl OutboxConfig {
    /// Problems as (key path below `outbox`, message).
    pub fn problems(&self) -> Vec<(Vec<String>, String)> {
        let mut found = Vec::new();
        if !(self.max_change_share > 0.0 && self.max_change_share <= 1.0) {
            found.push((
                vec!["max_change_share".to_string()],
                "must be in (0, 1]".to_string(),
            ));
        }
        found
    }
}
