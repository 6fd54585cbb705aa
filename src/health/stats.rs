//! Pure statistics for partner health: the Poisson lower tail, the silence probability, the
//! shrunk conversion rate and the touch-recency ramp.
//!
//! Numbers in, numbers out: nothing here reads the ledger, knows a partner, or writes a sentence.
//! Everything is computed exactly (no normal approximation) and stays finite for any input a
//! ledger can produce, so that a large partner never turns into NaN or infinity.

/// Days in an average month (365.25 / 12), to turn a daily rate into a monthly one.
pub const DAYS_PER_MONTH: f64 = 30.44;

/// P(X ≤ `observed`) for X ~ Poisson(`mean`): the lower-sided test of "fewer referrals than
/// expected". Summed term by term in log space (log pmf(i) = −μ + i·ln μ − ln i!), so it stays
/// accurate for large means where e^−μ underflows on its own. A mean ≤ 0 (or not finite) gives 1.
pub fn poisson_lower_tail(observed: u64, mean: f64) -> f64 {
    if !mean.is_finite() || mean <= 0.0 {
        return 1.0;
    }
    let log_mean = mean.ln();
    // Streaming log-sum-exp: `log_max` is the largest log term so far, `scaled` the sum of every
    // term divided by e^log_max.
    let mut log_term = -mean;
    let mut log_max = log_term;
    let mut scaled = 1.0_f64;
    for i in 1..=observed {
        log_term += log_mean - (i as f64).ln();
        if log_term > log_max {
            scaled = scaled * (log_max - log_term).exp() + 1.0;
            log_max = log_term;
        } else {
            scaled += (log_term - log_max).exp();
        }
        // Past the mode the terms only shrink; once they stop mattering, stop.
        if (i as f64) > mean && log_term - log_max < -40.0 {
            break;
        }
    }
    (log_max + scaled.ln()).exp().clamp(0.0, 1.0)
}

/// P(no event in `days` days) at `rate_per_day`: e^(−λd), the silence test.
pub fn silence_probability(rate_per_day: f64, days: i64) -> f64 {
    if rate_per_day <= 0.0 || days <= 0 {
        return 1.0;
    }
    (-rate_per_day * days as f64).exp()
}

/// The conversion rate `admitted / decided`, shrunk toward `facility_mean` with the weight of
/// `prior_strength` pseudo-referrals: (a + k·m) / (n + k). With no data it is the facility mean.
pub fn shrunk_rate(admitted: u64, decided: u64, facility_mean: f64, prior_strength: f64) -> f64 {
    let denominator = decided as f64 + prior_strength;
    if denominator <= 0.0 {
        return facility_mean;
    }
    (admitted as f64 + prior_strength * facility_mean) / denominator
}

/// 100 up to `full_days`, falling linearly to 0 at `zero_days`, 0 beyond.
pub fn recency_score(days: i64, full_days: u32, zero_days: u32) -> f64 {
    let (full, zero) = (i64::from(full_days), i64::from(zero_days));
    if days <= full {
        100.0
    } else if days >= zero {
        0.0
    } else {
        100.0 * (zero - days) as f64 / (zero - full) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative error of `found` against `expected` (absolute below 1e-300).
    fn close(found: f64, expected: f64, tolerance: f64) -> bool {
        if expected.abs() < 1e-300 {
            return found.abs() < 1e-300;
        }
        ((found - expected) / expected).abs() <= tolerance
    }

    #[test]
    fn the_poisson_lower_tail_matches_exact_values() {
        // Reference values computed with 80-digit decimal arithmetic.
        let check = |observed: u64, mean: f64, expected: f64| {
            let found = poisson_lower_tail(observed, mean);
            assert!(
                found.is_finite(),
                "P(X ≤ {observed} | μ = {mean}) = {found}"
            );
            assert!(
                close(found, expected, 1e-9),
                "P(X ≤ {observed} | μ = {mean}) = {found}, expected {expected}"
            );
        };
        check(0, 3.0, (-3.0_f64).exp());
        check(0, 3.0, 4.978_706_836_786_394e-2);
        check(2, 2.0, 6.766_764_161_830_635e-1);
        check(0, 0.5, 6.065_306_597_126_334e-1);
        check(5, 12.6, 1.390_305_771_089_116e-2);
        check(1, 12.6, 4.585_940_718_429_29e-5);
        check(20, 40.0, 3.683_005_567_854_922e-4);
        // Large means: e^-μ alone underflows, the tail does not.
        check(100, 100.0, 5.265_621_985_299_984e-1);
        check(900, 1000.0, 6.977_673_277_963_068e-4);
        check(1000, 1000.0, 5.084_093_671_685_06e-1);
        check(4000, 5000.0, 6.961_364_285_110_186e-49);
        // Far above the mean the tail is 1; no mean means nothing is unlikely.
        check(10_000, 3.0, 1.0);
        check(0, 0.0, 1.0);
    }

    #[test]
    fn silence_is_exponential_in_the_days_without_a_referral() {
        let check = |rate: f64, days: i64, expected: f64| {
            let found = silence_probability(rate, days);
            assert!(
                close(found, expected, 1e-12),
                "{rate}/day, {days} days: {found}"
            );
        };
        // 3 a month, 60 days silent: e^-5.9 ≈ 0.0027.
        check(
            3.0 / DAYS_PER_MONTH,
            60,
            (-3.0 * 60.0 / DAYS_PER_MONTH).exp(),
        );
        check(0.1, 0, 1.0);
        check(0.0, 400, 1.0);
    }

    #[test]
    fn small_counts_are_shrunk_toward_the_facility_mean() {
        let check = |admitted: u64, decided: u64, mean: f64, k: f64, expected: f64| {
            let found = shrunk_rate(admitted, decided, mean, k);
            assert!(
                (found - expected).abs() < 1e-12,
                "{admitted}/{decided} toward {mean} with k = {k}: {found}"
            );
        };
        check(1, 1, 0.5, 5.0, 3.5 / 6.0); // 1 of 1 is 58%, not 100%
        check(0, 1, 0.5, 5.0, 2.5 / 6.0);
        check(300, 400, 0.5, 5.0, 302.5 / 405.0); // large counts keep their own rate
        check(0, 0, 0.48, 5.0, 0.48);
        check(3, 4, 0.48, 0.0, 0.75); // no prior: the raw rate
    }

    #[test]
    fn recency_falls_linearly_between_the_full_and_zero_days() {
        let check = |days: i64, expected: f64| {
            assert_eq!(recency_score(days, 30, 120), expected, "{days} days");
        };
        check(0, 100.0);
        check(30, 100.0);
        check(75, 50.0);
        check(120, 0.0);
        check(400, 0.0);
    }
}
