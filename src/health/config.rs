//! `[health]`: the windows, thresholds and weights of partner health, with their defaults and
//! the problems a value can have.
//!
//! Only the model of the TOML section and its checks live here; the config loader
//! (`crate::config`) reports the problems with their line. Nothing here reads the ledger.

use serde::{Deserialize, Serialize};

/// `[health]`. `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// The current window: this many days ending on the as-of day.
    pub current_window_days: u32,
    /// Days left out between the baseline and the current window, so that a drop that has just
    /// begun does not lower the baseline it is measured against.
    pub baseline_gap_days: u32,
    /// The baseline: this many days before the gap (clipped to the partner's first referral).
    pub baseline_days: u32,
    /// A partner with fewer days of baseline history than this has no baseline ("too new").
    pub min_baseline_history_days: u32,
    /// Volume, decline and silence are scored only for partners whose baseline is at least this
    /// many inbound referrals a month.
    pub min_baseline_per_month: f64,
    /// Significance level of the decline and silence tests.
    pub alpha: f64,
    /// Pseudo-referrals at the facility's conversion rate added to each partner's own.
    pub conversion_prior_strength: f64,
    /// A touch at most this many days old scores 100.
    pub touch_full_days: u32,
    /// A touch this many days old (or older) scores 0; linear in between.
    pub touch_zero_days: u32,
    /// Below this score a partner is at risk.
    pub at_risk_below: f64,
    /// Below this score (and not at risk) a partner is on watch.
    pub watch_below: f64,
    /// `[health.weights]`
    pub weights: HealthWeights,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            current_window_days: 90,
            baseline_gap_days: 30,
            baseline_days: 365,
            min_baseline_history_days: 60,
            min_baseline_per_month: 1.0,
            alpha: 0.05,
            conversion_prior_strength: 5.0,
            touch_full_days: 30,
            touch_zero_days: 120,
            at_risk_below: 40.0,
            watch_below: 60.0,
            weights: HealthWeights::default(),
        }
    }
}

/// `[health.weights]`: how much each component counts in the combined score. Components that do
/// not apply to a partner are left out and the rest re-weighted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthWeights {
    pub volume: f64,
    pub decline: f64,
    pub conversion: f64,
    pub recency: f64,
    pub ownership: f64,
    /// 0 by default: reciprocity is shown, not scored.
    pub reciprocity: f64,
}

impl Default for HealthWeights {
    fn default() -> Self {
        HealthWeights {
            volume: 0.30,
            decline: 0.25,
            conversion: 0.15,
            recency: 0.20,
            ownership: 0.10,
            reciprocity: 0.0,
        }
    }
}

impl HealthWeights {
    /// (key, weight) in component order.
    pub fn entries(&self) -> [(&'static str, f64); 6] {
        [
            ("volume", self.volume),
            ("decline", self.decline),
            ("conversion", self.conversion),
            ("recency", self.recency),
            ("ownership", self.ownership),
            ("reciprocity", self.reciprocity),
        ]
    }
}

impl HealthConfig {
    /// Every problem, as (key path below `[health]`, message).
    pub fn problems(&self) -> Vec<(Vec<String>, String)> {
        let mut problems = Vec::new();
        let mut add = |path: &[&str], message: String| {
            problems.push((path.iter().map(|p| p.to_string()).collect(), message));
        };
        for (key, days) in [
            ("current_window_days", self.current_window_days),
            ("baseline_days", self.baseline_days),
            ("min_baseline_history_days", self.min_baseline_history_days),
        ] {
            if days == 0 {
                add(&[key], "must be at least 1".to_string());
            }
        }
        if self.min_baseline_history_days > self.baseline_days {
            add(
                &["min_baseline_history_days"],
                format!(
                    "must not exceed baseline_days ({}), or no partner would ever have a baseline",
                    self.baseline_days
                ),
            );
        }
        if !(self.min_baseline_per_month.is_finite() && self.min_baseline_per_month >= 0.0) {
            add(
                &["min_baseline_per_month"],
                "must be a number ≥ 0".to_string(),
            );
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            add(
                &["alpha"],
                "must be between 0 and 1 (exclusive), e.g. 0.05".to_string(),
            );
        }
        if !(self.conversion_prior_strength.is_finite() && self.conversion_prior_strength >= 0.0) {
            add(
                &["conversion_prior_strength"],
                "must be a number ≥ 0".to_string(),
            );
        }
        if self.touch_zero_days <= self.touch_full_days {
            add(
                &["touch_zero_days"],
                format!(
                    "must be greater than touch_full_days ({})",
                    self.touch_full_days
                ),
            );
        }
        for (key, value) in [
            ("at_risk_below", self.at_risk_below),
            ("watch_below", self.watch_below),
        ] {
            if !(0.0..=100.0).contains(&value) {
                add(&[key], "must be a score from 0 to 100".to_string());
            }
        }
        if self.watch_below < self.at_risk_below {
            add(
                &["watch_below"],
                format!("must be at least at_risk_below ({})", self.at_risk_below),
            );
        }
        let entries = self.weights.entries();
        for (key, weight) in entries {
            if !(weight.is_finite() && weight >= 0.0) {
                add(&["weights", key], "must be a number ≥ 0".to_string());
            }
        }
        if entries.iter().all(|(_, weight)| *weight == 0.0) {
            add(
                &["weights"],
                "at least one weight must be above 0, or no partner gets a score".to_string(),
            );
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_bad_values_are_each_reported() {
        assert!(HealthConfig::default().problems().is_empty());
        let check = |change: fn(&mut HealthConfig), key: &str, message: &str| {
            let mut config = HealthConfig::default();
            change(&mut config);
            let problems = config.problems();
            assert!(
                problems
                    .iter()
                    .any(|(path, text)| path.join(".") == key && text.contains(message)),
                "{key}: {problems:?}"
            );
        };
        check(
            |c| c.current_window_days = 0,
            "current_window_days",
            "at least 1",
        );
        check(|c| c.baseline_days = 0, "baseline_days", "at least 1");
        check(
            |c| c.min_baseline_history_days = 400,
            "min_baseline_history_days",
            "must not exceed baseline_days",
        );
        check(|c| c.alpha = 0.0, "alpha", "between 0 and 1");
        check(|c| c.alpha = 1.0, "alpha", "between 0 and 1");
        check(
            |c| c.touch_zero_days = 30,
            "touch_zero_days",
            "greater than",
        );
        check(
            |c| c.watch_below = 30.0,
            "watch_below",
            "at least at_risk_below",
        );
        check(|c| c.at_risk_below = 140.0, "at_risk_below", "0 to 100");
        check(|c| c.weights.recency = -0.2, "weights.recency", "≥ 0");
        check(
            |c| c.conversion_prior_strength = f64::NAN,
            "conversion_prior_strength",
            "≥ 0",
        );
        check(
            |c| {
                c.weights = HealthWeights {
                    volume: 0.0,
                    decline: 0.0,
                    conversion: 0.0,
                    recency: 0.0,
                    ownership: 0.0,
                    reciprocity: 0.0,
                }
            },
            "weights",
            "at least one weight",
        );
    }
}
