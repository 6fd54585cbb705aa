//! Counts → components, reasons, the combined score and the state. Pure: no ledger, no clock.
//!
//! Every component either scores 0–100 or does not apply (and its sentence says why). A sentence
//! names partner-level counts and dates only, and reciprocity's sentence states the balance
//! without suggesting anything be done about it.

use chrono::{Days, Months, NaiveDate};

use super::read::PartnerCounts;
use super::stats::{self, DAYS_PER_MONTH};
use super::{
    Component, ComponentKind, HealthConfig, HealthFacts, HealthState, PartnerHealth, Trend,
};

/// Conversion and reciprocity look at this many days ending on the as-of day.
pub(super) const YEAR_DAYS: u64 = 365;
/// A partner is in scope with a referral in this many months before the as-of day.
pub(super) const SCOPE_MONTHS: u32 = 18;

/// The day windows of one computation (all bounds inclusive, except `scope_after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Windows {
    pub as_of: NaiveDate,
    pub current_first: NaiveDate,
    pub baseline_first: NaiveDate,
    pub baseline_end: NaiveDate,
    pub year_first: NaiveDate,
    pub scope_after: NaiveDate,
}

impl Windows {
    pub fn new(as_of: NaiveDate, config: &HealthConfig) -> Windows {
        let back = |days: u64| {
            as_of
                .checked_sub_days(Days::new(days))
                .unwrap_or(NaiveDate::MIN)
        };
        let current = u64::from(config.current_window_days);
        let baseline_end = back(current + u64::from(config.baseline_gap_days));
        Windows {
            as_of,
            current_first: back(current.saturating_sub(1)),
            baseline_first: baseline_end
                .checked_sub_days(Days::new(u64::from(config.baseline_days).saturating_sub(1)))
                .unwrap_or(NaiveDate::MIN),
            baseline_end,
            year_first: back(YEAR_DAYS - 1),
            scope_after: as_of
                .checked_sub_months(Months::new(SCOPE_MONTHS))
                .unwrap_or(NaiveDate::MIN),
        }
    }
}

/// Scores one partner (trend left `Flat`: the caller compares with stored snapshots).
pub(super) fn score_partner(
    counts: &PartnerCounts,
    windows: &Windows,
    config: &HealthConfig,
    facility_conversion: Option<f64>,
) -> PartnerHealth {
    let window_days = config.current_window_days;
    let days_since_last_referral = counts
        .last_inbound
        .map(|last| (windows.as_of - last).num_days());

    // The baseline: from max(nominal start, first inbound referral) to the baseline end.
    let baseline = counts.first_inbound.and_then(|first| {
        let start = first.max(windows.baseline_first);
        let length = (windows.baseline_end - start).num_days() + 1;
        (length >= i64::from(config.min_baseline_history_days)).then(|| Baseline {
            start,
            rate_per_day: counts.inbound_baseline as f64 / length as f64,
        })
    });
    let no_baseline_reason = match counts.first_inbound {
        None => "no inbound referral on record".to_string(),
        Some(first) => format!("too new to judge: first referral {first}"),
    };
    let expected = baseline.map(|b| b.rate_per_day * f64::from(window_days));
    let per_month = baseline.map(|b| b.rate_per_day * DAYS_PER_MONTH);

    // Volume is a trend too: like decline, it is not scored below `min_baseline_per_month`,
    // where an empty window is ordinary (0 where 1.5 were expected happens 22% of the time).
    let volume = match (baseline, expected, per_month) {
        (Some(_), Some(_), Some(per_month)) if per_month < config.min_baseline_per_month => {
            not_applicable(
                ComponentKind::Volume,
                format!(
                    "fewer than {} a month: volume not scored",
                    referrals_f(config.min_baseline_per_month)
                ),
            )
        }
        (Some(_), Some(expected), Some(per_month)) if expected >= 1.0 => applies(
            ComponentKind::Volume,
            100.0 * (counts.inbound_current as f64 / expected).min(1.0),
            format!(
                "{} in the last {window_days} days vs {}/month baseline ({expected:.1} expected)",
                referrals(counts.inbound_current),
                one_decimal(per_month)
            ),
        ),
        (Some(_), Some(expected), Some(per_month)) => not_applicable(
            ComponentKind::Volume,
            format!(
                "{}/month baseline: {expected:.1} expected in {window_days} days is too few to judge",
                one_decimal(per_month)
            ),
        ),
        _ => not_applicable(ComponentKind::Volume, no_baseline_reason.clone()),
    };

    let mut decline_p = None;
    let mut silence_p = None;
    let decline = match (baseline, expected, per_month) {
        (Some(baseline), Some(expected), Some(per_month))
            if per_month >= config.min_baseline_per_month =>
        {
            let p = stats::poisson_lower_tail(counts.inbound_current, expected);
            let silent_days = match counts.last_inbound {
                Some(last) => (windows.as_of - last).num_days(),
                None => (windows.as_of - baseline.start).num_days(),
            };
            let p_silent = stats::silence_probability(baseline.rate_per_day, silent_days);
            decline_p = Some(p);
            silence_p = Some(p_silent);
            let (declining, silent) = (p < config.alpha, p_silent < config.alpha);
            let reason = if silent && (!declining || p_silent <= p) {
                format!(
                    "no referral for {silent_days} days; at {}/month that happens by chance with {}",
                    one_decimal(per_month),
                    p_value(p_silent)
                )
            } else if declining {
                format!(
                    "{} in {window_days} days where {expected:.1} were expected ({})",
                    referrals(counts.inbound_current),
                    p_value(p)
                )
            } else if p < 0.5 {
                // Below what the baseline predicts, but not beyond chance: the score shows how
                // far, the sentence that it is not (yet) a decline.
                format!(
                    "{} in {window_days} days vs {expected:.1} expected: lower, but within chance ({})",
                    referrals(counts.inbound_current),
                    p_value(p)
                )
            } else {
                format!(
                    "referrals in line with baseline ({} in {window_days} days, {expected:.1} expected)",
                    counts.inbound_current
                )
            };
            applies(
                ComponentKind::Decline,
                100.0 * (p.min(p_silent) / 0.5).min(1.0),
                reason,
            )
        }
        (Some(_), _, _) => not_applicable(
            ComponentKind::Decline,
            format!(
                "fewer than {} a month: trend not scored",
                referrals_f(config.min_baseline_per_month)
            ),
        ),
        _ => not_applicable(ComponentKind::Decline, no_baseline_reason),
    };
    let declining = decline_p.is_some_and(|p| p < config.alpha);
    let silent = silence_p.is_some_and(|p| p < config.alpha);

    let conversion = if counts.decided_year == 0 {
        not_applicable(
            ComponentKind::Conversion,
            "no admitted or not-admitted referral in the last 12 months".to_string(),
        )
    } else {
        match facility_conversion {
            Some(mean) if mean > 0.0 => {
                let shrunk = stats::shrunk_rate(
                    counts.admitted_year,
                    counts.decided_year,
                    mean,
                    config.conversion_prior_strength,
                );
                applies(
                    ComponentKind::Conversion,
                    100.0 * (shrunk / mean).min(1.0),
                    format!(
                        "{} of {} admitted (shrunk {} vs facility {})",
                        counts.admitted_year,
                        counts.decided_year,
                        percent(shrunk),
                        percent(mean)
                    ),
                )
            }
            _ => not_applicable(
                ComponentKind::Conversion,
                "no admission facility-wide in the last 12 months to compare with".to_string(),
            ),
        }
    };

    let touch_days = counts
        .last_touch
        .as_ref()
        .map(|(day, _)| (windows.as_of - *day).num_days());
    let recency = match (&counts.last_touch, touch_days) {
        (Some((day, kind)), Some(days)) => applies(
            ComponentKind::Recency,
            stats::recency_score(days, config.touch_full_days, config.touch_zero_days),
            format!("last touch {} ago ({kind} on {day})", days_text(days)),
        ),
        _ if counts.profile.is_some() => {
            applies(ComponentKind::Recency, 0.0, "no recorded touch".to_string())
        }
        _ => not_applicable(
            ComponentKind::Recency,
            "no CRM record or activity for this partner".to_string(),
        ),
    };

    let owned = counts
        .profile
        .as_ref()
        .map(|profile| profile.owner_id.is_some() && profile.owner_active != Some(false));
    let ownership = match &counts.profile {
        None => not_applicable(
            ComponentKind::Ownership,
            "no CRM record for this partner".to_string(),
        ),
        Some(profile) => {
            let owner = profile
                .owner_name
                .as_deref()
                .or(profile.owner_id.as_deref());
            match (owner, profile.owner_id.is_some(), profile.owner_active) {
                (Some(owner), true, Some(false)) => applies(
                    ComponentKind::Ownership,
                    0.0,
                    format!("owner {owner} is inactive"),
                ),
                (Some(owner), true, _) => {
                    applies(ComponentKind::Ownership, 100.0, format!("owned by {owner}"))
                }
                _ => applies(ComponentKind::Ownership, 0.0, "no rep assigned".to_string()),
            }
        }
    };

    let (sent, received) = (counts.outbound_year, counts.inbound_year);
    let reciprocity = if sent == 0 && received == 0 {
        not_applicable(
            ComponentKind::Reciprocity,
            "no referrals either way in the last 12 months".to_string(),
        )
    } else {
        applies(
            ComponentKind::Reciprocity,
            100.0 * sent.min(received) as f64 / sent.max(received) as f64,
            format!("we referred {sent}, they referred {received} (last 12 months)"),
        )
    };

    let mut components = vec![volume, decline, conversion, recency, ownership, reciprocity];
    for component in &mut components {
        component.weight = component.kind.weight(&config.weights);
    }
    let score = combined_score(&components);
    let state = if declining || silent || score.is_some_and(|s| s < config.at_risk_below) {
        HealthState::AtRisk
    } else if score.is_some_and(|s| s < config.watch_below) {
        HealthState::Watch
    } else {
        HealthState::Healthy
    };

    PartnerHealth {
        partner_id: counts.partner_id,
        name: counts.name.clone(),
        score,
        state,
        trend: Trend::Flat,
        components,
        facts: HealthFacts {
            baseline_per_month: per_month,
            referrals_current_window: counts.inbound_current,
            expected_current_window: expected,
            declining,
            decline_p,
            silent,
            silence_p,
            days_since_last_referral,
            first_referral: counts.first_inbound,
            last_referral: counts.last_inbound,
            referrals_last_365_days: counts.inbound_year,
            admitted_last_365_days: counts.admitted_year,
            decided_last_365_days: counts.decided_year,
            last_touch: counts.last_touch.as_ref().map(|(day, _)| *day),
            days_since_touch: touch_days,
            owned,
            sent_last_365_days: sent,
            received_last_365_days: received,
        },
    }
}

/// Σ w·score / Σ w over the components that apply and weigh more than 0.
pub(super) fn combined_score(components: &[Component]) -> Option<f64> {
    let (weighted, weights) = components
        .iter()
        .filter(|component| component.weight > 0.0)
        .filter_map(|component| component.score.map(|score| (score, component.weight)))
        .fold((0.0, 0.0), |(sum, total), (score, weight)| {
            (sum + weight * score, total + weight)
        });
    (weights > 0.0).then(|| weighted / weights)
}

#[derive(Debug, Clone, Copy)]
struct Baseline {
    start: NaiveDate,
    rate_per_day: f64,
}

fn applies(kind: ComponentKind, score: f64, reason: String) -> Component {
    Component {
        kind,
        score: Some(score),
        weight: 0.0,
        reason,
    }
}

fn not_applicable(kind: ComponentKind, reason: String) -> Component {
    Component {
        kind,
        score: None,
        weight: 0.0,
        reason,
    }
}

fn referrals(count: u64) -> String {
    if count == 1 {
        "1 referral".to_string()
    } else {
        format!("{count} referrals")
    }
}

/// "1 referral", "0.5 referrals", "2 referrals".
fn referrals_f(count: f64) -> String {
    if count == 1.0 {
        "1 referral".to_string()
    } else {
        format!("{} referrals", one_decimal(count))
    }
}

pub(super) fn days_text(days: i64) -> String {
    if days == 1 {
        "1 day".to_string()
    } else {
        format!("{days} days")
    }
}

/// One decimal, without a trailing ".0" for whole numbers ("4.2", "1").
fn one_decimal(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").map_or(text.clone(), str::to_string)
}

fn percent(share: f64) -> String {
    format!("{:.0}%", 100.0 * share)
}

/// "p = 0.03", "p = 0.0003", "p < 0.0001".
pub(super) fn p_value(p: f64) -> String {
    if p < 0.0001 {
        "p < 0.0001".to_string()
    } else if p < 0.01 {
        format!("p = {p:.4}")
    } else {
        format!("p = {p:.2}")
    }
}
