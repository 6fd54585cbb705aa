//! Fault plans for the sandboxes: what share of responses fail, and how.
//!
//! Spelled on the command line (`--faults`) and at the sandboxes' admin endpoint as a comma list:
//! `429=0.05,500=0.02,503=0.02,reset=0.01,latency_ms=20,token_ttl_seconds=30,retry_after_seconds=1,seed=7`.
//! Each sandbox renders a drawn fault exactly as its real service would, and counts what it
//! injected ([`FaultCounts`]: drawn faults and requests refused for an expired token), which
//! `GET /__admin/faults` reports under the plan.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Random;

/// What to inject. All shares are probabilities per response, `0.0` (default) to `1.0`.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    /// Answered 429 with `Retry-After` (HubSpot: the ten-secondly policy body).
    pub rate_limited: f64,
    /// Answered 500.
    pub server_error: f64,
    /// Answered 503.
    pub unavailable: f64,
    /// Headers sent, then the connection reset part-way through the body.
    pub reset: f64,
    /// Added to every response.
    pub latency_ms: u64,
    /// Access tokens issued from now on expire after this many seconds.
    pub token_ttl_seconds: Option<u64>,
    /// The `Retry-After` value of injected 429s.
    pub retry_after_seconds: u64,
    /// Seed of the draws, so a faulty run can be repeated.
    pub seed: u64,
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan {
            rate_limited: 0.0,
            server_error: 0.0,
            unavailable: 0.0,
            reset: 0.0,
            latency_ms: 0,
            token_ttl_seconds: None,
            retry_after_seconds: 1,
            seed: 0,
        }
    }
}

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    RateLimited,
    ServerError,
    Unavailable,
    Reset,
}

/// Why a fault plan does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid fault plan item {item:?}: {reason} (expected e.g. 429=0.05,500=0.02,503=0.02,reset=0.01,latency_ms=20,token_ttl_seconds=30)"
)]
pub struct FaultPlanError {
    pub item: String,
    pub reason: String,
}

impl FromStr for FaultPlan {
    type Err = FaultPlanError;

    fn from_str(text: &str) -> Result<FaultPlan, FaultPlanError> {
        let mut plan = FaultPlan::default();
        for item in text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let error = |reason: &str| FaultPlanError {
                item: item.to_string(),
                reason: reason.to_string(),
            };
            let (key, value) = item.split_once('=').ok_or_else(|| error("missing `=`"))?;
            let share = || -> Result<f64, FaultPlanError> {
                let share: f64 = value.trim().parse().map_err(|_| error("not a number"))?;
                if (0.0..=1.0).contains(&share) {
                    Ok(share)
                } else {
                    Err(error("a share must be between 0 and 1"))
                }
            };
            let whole = || -> Result<u64, FaultPlanError> {
                value
                    .trim()
                    .parse()
                    .map_err(|_| error("not a whole number"))
            };
            match key.trim() {
                "429" => plan.rate_limited = share()?,
                "500" => plan.server_error = share()?,
                "503" => plan.unavailable = share()?,
                "reset" => plan.reset = share()?,
                "latency_ms" => plan.latency_ms = whole()?,
                "token_ttl_seconds" => plan.token_ttl_seconds = Some(whole()?),
                "retry_after_seconds" => plan.retry_after_seconds = whole()?,
                "seed" => plan.seed = whole()?,
                _ => return Err(error("unknown key")),
            }
        }
        let total = plan.rate_limited + plan.server_error + plan.unavailable + plan.reset;
        if total > 1.0 {
            return Err(FaultPlanError {
                item: text.to_string(),
                reason: "the shares add up to more than 1".to_string(),
            });
        }
        Ok(plan)
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "429={},500={},503={},reset={},latency_ms={},retry_after_seconds={},seed={}",
            self.rate_limited,
            self.server_error,
            self.unavailable,
            self.reset,
            self.latency_ms,
            self.retry_after_seconds,
            self.seed
        )?;
        if let Some(ttl) = self.token_ttl_seconds {
            write!(f, ",token_ttl_seconds={ttl}")?;
        }
        Ok(())
    }
}

/// What a sandbox injected since it started (a new plan does not reset the counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub rate_limited: u64,
    pub server_error: u64,
    pub unavailable: u64,
    pub reset: u64,
    /// Requests refused because their access token had expired (`token_ttl_seconds`, or
    /// `/__admin/expire-tokens`).
    pub expired_token: u64,
    /// Responses delayed by `latency_ms`.
    pub delayed: u64,
}

impl FaultCounts {
    /// Every failed response: drawn faults and expired-token refusals (delays are not failures).
    pub fn failures(&self) -> u64 {
        self.rate_limited + self.server_error + self.unavailable + self.reset + self.expired_token
    }
}

impl fmt::Display for FaultCounts {
    /// `injected 429=3,500=1,503=2,reset=1,expired_token=4,delayed=120`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "injected 429={},500={},503={},reset={},expired_token={},delayed={}",
            self.rate_limited,
            self.server_error,
            self.unavailable,
            self.reset,
            self.expired_token,
            self.delayed
        )
    }
}

impl FromStr for FaultCounts {
    type Err = FaultPlanError;

    /// Reads the line [`FaultCounts`]'s `Display` writes.
    fn from_str(text: &str) -> Result<FaultCounts, FaultPlanError> {
        let error = |item: &str, reason: &str| FaultPlanError {
            item: item.to_string(),
            reason: reason.to_string(),
        };
        let list = text
            .trim()
            .strip_prefix("injected ")
            .ok_or_else(|| error(text, "missing `injected `"))?;
        let mut counts = FaultCounts::default();
        for item in list.split(',') {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| error(item, "missing `=`"))?;
            let value: u64 = value
                .parse()
                .map_err(|_| error(item, "not a whole number"))?;
            match key {
                "429" => counts.rate_limited = value,
                "500" => counts.server_error = value,
                "503" => counts.unavailable = value,
                "reset" => counts.reset = value,
                "expired_token" => counts.expired_token = value,
                "delayed" => counts.delayed = value,
                _ => return Err(error(item, "unknown key")),
            }
        }
        Ok(counts)
    }
}

/// A plan and its draws, shared by a sandbox's request handlers, and what was injected.
#[derive(Debug)]
pub struct FaultInjector {
    state: Mutex<(FaultPlan, Random)>,
    /// 429, 500, 503, reset, expired token, delayed.
    counts: [AtomicU64; 6],
}

impl FaultInjector {
    pub fn new(plan: FaultPlan) -> FaultInjector {
        let random = Random::new(plan.seed);
        FaultInjector {
            state: Mutex::new((plan, random)),
            counts: Default::default(),
        }
    }

    /// What was injected so far.
    pub fn counts(&self) -> FaultCounts {
        let read = |index: usize| self.counts[index].load(Ordering::Relaxed);
        FaultCounts {
            rate_limited: read(0),
            server_error: read(1),
            unavailable: read(2),
            reset: read(3),
            expired_token: read(4),
            delayed: read(5),
        }
    }

    /// Counts a request refused because its access token had expired.
    pub fn count_expired_token(&self) {
        self.counts[4].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a response delayed by the plan's latency.
    pub fn count_delayed(&self) {
        self.counts[5].fetch_add(1, Ordering::Relaxed);
    }

    /// Replaces the plan (the admin endpoint); draws restart from the new plan's seed.
    pub fn set(&self, plan: FaultPlan) {
        let random = Random::new(plan.seed);
        *self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = (plan, random);
    }

    pub fn plan(&self) -> FaultPlan {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0
            .clone()
    }

    /// Draws the fault (if any) for the next response, and counts it.
    pub fn draw(&self) -> Option<Fault> {
        let fault = self.draw_uncounted();
        let index = match fault {
            Some(Fault::RateLimited) => 0,
            Some(Fault::ServerError) => 1,
            Some(Fault::Unavailable) => 2,
            Some(Fault::Reset) => 3,
            None => return None,
        };
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        fault
    }

    fn draw_uncounted(&self) -> Option<Fault> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (plan, random) = &mut *state;
        let roll = random.unit();
        let mut edge = plan.rate_limited;
        if roll < edge {
            return Some(Fault::RateLimited);
        }
        edge += plan.server_error;
        if roll < edge {
            return Some(Fault::ServerError);
        }
        edge += plan.unavailable;
        if roll < edge {
            return Some(Fault::Unavailable);
        }
        edge += plan.reset;
        if roll < edge {
            return Some(Fault::Reset);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_and_print_and_draw_their_shares() {
        let plan: FaultPlan = "429=0.25, 503=0.25,latency_ms=5,token_ttl_seconds=30,seed=3"
            .parse()
            .unwrap();
        assert_eq!(plan.rate_limited, 0.25);
        assert_eq!(plan.token_ttl_seconds, Some(30));
        assert_eq!(plan.to_string().parse::<FaultPlan>().unwrap(), plan);
        let injector = FaultInjector::new(plan);
        let draws: Vec<Option<Fault>> = (0..4000).map(|_| injector.draw()).collect();
        let count = |fault| draws.iter().filter(|d| **d == Some(fault)).count();
        assert!((800..1200).contains(&count(Fault::RateLimited)));
        let counted = injector.counts();
        assert_eq!(counted.rate_limited, count(Fault::RateLimited) as u64);
        assert_eq!(counted.unavailable, count(Fault::Unavailable) as u64);
        assert_eq!(
            counted.failures(),
            (count(Fault::RateLimited) + count(Fault::Unavailable)) as u64
        );
        assert_eq!(counted.to_string().parse::<FaultCounts>().unwrap(), counted);
        assert!((800..1200).contains(&count(Fault::Unavailable)));
        assert_eq!(count(Fault::ServerError), 0);
        assert!("429=2".parse::<FaultPlan>().is_err());
        assert!(
            "teapot=0.1"
                .parse::<FaultPlan>()
                .unwrap_err()
                .to_string()
                .contains("unknown key")
        );
        assert!("429=0.6,500=0.6".parse::<FaultPlan>().is_err());
    }
}
