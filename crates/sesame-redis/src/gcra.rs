//! The GCRA arithmetic of the memory adapter, reproduced to the nanosecond on the offsets the
//! Lua script returns: the script decides and takes atomically, this module turns its answer
//! into a [`LimitDecision`] exactly as `sesame-memory` would.

use std::time::Duration;

use sesame_ports::{LimitDecision, LimitRule};
use time::OffsetDateTime;

/// The largest nanosecond count a Lua number (a double) holds exactly: about 104 days.
/// Longer windows are treated as this long, so the script and this module always agree.
pub(crate) const MAX_EXACT_NS: i128 = (1 << 53) - 1;

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// One rule as the script sees it: emission interval `T = window / limit`, burst = `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) limit: u32,
    pub(crate) window: i128,
    pub(crate) interval: i128,
    /// `max(cost, 1) * T`: a look (cost 0) asks whether one more request would fit.
    pub(crate) take: i128,
    /// Only rules with a cost write their bucket.
    pub(crate) writes: bool,
    /// See [`LimitRule::reported`].
    pub(crate) reported: bool,
}

impl Plan {
    pub(crate) fn new(rule: &LimitRule) -> Self {
        let window = i128::try_from(rule.window.as_nanos()).unwrap_or(MAX_EXACT_NS).min(MAX_EXACT_NS);
        let interval = (window / i128::from(rule.limit.max(1))).max(1);
        // One past the window is enough to refuse, and keeps the script's sums exact.
        let take = (i128::from(rule.cost.max(1)) * interval).min(MAX_EXACT_NS + 1);
        Self { limit: rule.limit, window, interval, take, writes: rule.cost > 0, reported: rule.reported }
    }

    /// The verdict for a bucket whose TAT was `offset` ns past now (0 when empty or stale).
    pub(crate) fn verdict(&self, offset: i128, now: i128) -> Verdict {
        let candidate = offset + self.take;
        let allowed = candidate <= self.window;
        let after = if allowed && self.writes { candidate } else { offset };
        let remaining = ((self.window - after) / self.interval).clamp(0, i128::from(self.limit.max(1)));
        Verdict {
            allowed,
            limit: self.limit,
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset_at_ns: now + after,
            retry_after_ns: if allowed { 0 } else { candidate - self.window },
            reported: self.reported,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub(crate) allowed: bool,
    pub(crate) limit: u32,
    pub(crate) remaining: u32,
    pub(crate) reset_at_ns: i128,
    pub(crate) retry_after_ns: i128,
    pub(crate) reported: bool,
}

/// `now` as the script takes it: whole Unix seconds and the nanoseconds past them.
pub(crate) fn split(now_ns: i128) -> (i128, i128) {
    (now_ns.div_euclid(NANOS_PER_SEC), now_ns.rem_euclid(NANOS_PER_SEC))
}

fn to_time(ns: i128) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ns).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Picks what to report: the refusal that waits longest, else the reported bucket with fewest
/// left (any bucket, when none is reported).
pub(crate) fn decide(verdicts: &[Verdict], now: i128) -> LimitDecision {
    let refused = verdicts.iter().enumerate().filter(|(_, v)| !v.allowed).max_by_key(|(_, v)| v.retry_after_ns);
    let refused_by = refused.map(|(i, _)| i);
    let refused = refused.map(|(_, v)| v);
    let tightest = verdicts.iter().filter(|v| v.reported).min_by_key(|v| v.remaining);
    let Some(v) = refused.or(tightest).or_else(|| verdicts.iter().min_by_key(|v| v.remaining)) else {
        return LimitDecision {
            allowed: true,
            limit: 0,
            remaining: 0,
            reset_at: to_time(now),
            retry_after: Duration::ZERO,
            refused_by: None,
        };
    };
    let retry_secs = u64::try_from((v.retry_after_ns + NANOS_PER_SEC - 1) / NANOS_PER_SEC).unwrap_or(0);
    LimitDecision {
        allowed: v.allowed,
        limit: v.limit,
        remaining: v.remaining,
        reset_at: to_time(v.reset_at_ns),
        retry_after: Duration::from_secs(retry_secs),
        refused_by,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(limit: u32, window: Duration, cost: u32) -> LimitRule {
        LimitRule::new("k", limit, window, cost)
    }

    #[test]
    fn an_empty_bucket_takes_one_interval() {
        let plan = Plan::new(&rule(5, Duration::from_secs(3600), 1));
        let v = plan.verdict(0, 1_000);
        assert!(v.allowed);
        assert_eq!((v.remaining, v.reset_at_ns, v.retry_after_ns), (4, 1_000 + 720 * NANOS_PER_SEC, 0));
    }

    #[test]
    fn a_full_bucket_refuses_until_one_interval_has_passed() {
        let plan = Plan::new(&rule(5, Duration::from_secs(3600), 1));
        let v = plan.verdict(3600 * NANOS_PER_SEC, 0);
        assert!(!v.allowed);
        assert_eq!((v.remaining, v.retry_after_ns), (0, 720 * NANOS_PER_SEC));
        assert_eq!(v.reset_at_ns, 3600 * NANOS_PER_SEC, "a refusal does not move the TAT");
    }

    #[test]
    fn a_look_reports_without_taking() {
        let plan = Plan::new(&rule(2, Duration::from_secs(60), 0));
        assert!(!plan.writes);
        let v = plan.verdict(30 * NANOS_PER_SEC, 0);
        assert!(v.allowed);
        assert_eq!((v.remaining, v.reset_at_ns), (1, 30 * NANOS_PER_SEC));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let plan = Plan::new(&rule(3, Duration::from_secs(1), 1));
        assert_eq!(plan.interval, 333_333_333);
        let v = plan.verdict(999_999_999, 0);
        let d = decide(&[v], 0);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_secs(1));
    }

    #[test]
    fn the_longest_refusal_is_reported_else_the_fewest_remaining() {
        let short = Plan::new(&rule(10, Duration::from_secs(10), 1)).verdict(10 * NANOS_PER_SEC, 0);
        let long = Plan::new(&rule(1, Duration::from_secs(60), 1)).verdict(60 * NANOS_PER_SEC, 0);
        let open = Plan::new(&rule(100, Duration::from_secs(60), 1)).verdict(0, 0);
        assert_eq!(decide(&[short.clone(), long, open.clone()], 0).retry_after, Duration::from_secs(60));
        let few = Plan::new(&rule(3, Duration::from_secs(60), 1)).verdict(0, 0);
        assert_eq!(decide(&[open, few], 0).remaining, 2);
    }

    #[test]
    fn windows_beyond_exact_doubles_are_capped_and_costs_beyond_them_refuse() {
        let plan = Plan::new(&rule(1, Duration::from_secs(400 * 86_400), u32::MAX));
        assert_eq!(plan.window, MAX_EXACT_NS);
        assert!(!plan.verdict(0, 0).allowed);
    }

    #[test]
    fn now_splits_into_seconds_and_nanoseconds_before_the_epoch_too() {
        assert_eq!(split(1_800_000_000_999_999_999), (1_800_000_000, 999_999_999));
        assert_eq!(split(-1), (-1, 999_999_999));
    }
}
