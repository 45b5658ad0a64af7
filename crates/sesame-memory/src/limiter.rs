use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use sesame_ports::{LimitDecision, LimitError, LimitRule, RateLimiter, ReplayGuard};
use time::OffsetDateTime;

/// Token buckets as GCRA (one "theoretical arrival time" per key), in process memory.
/// The Redis adapter runs the same arithmetic in a Lua script.
#[derive(Debug, Default)]
pub struct MemoryRateLimiter {
    tats: Mutex<Pruned<i128>>,
    seen: Mutex<Pruned<OffsetDateTime>>,
}

/// A map whose dead entries are dropped now and then: when it has doubled since the last
/// sweep (never below `FLOOR`), so a sweep costs O(1) per insert, amortized.
#[derive(Debug)]
struct Pruned<V> {
    map: HashMap<String, V>,
    sweep_at: usize,
}

impl<V> Default for Pruned<V> {
    fn default() -> Self {
        Self { map: HashMap::new(), sweep_at: 0 }
    }
}

impl<V> Pruned<V> {
    const FLOOR: usize = 100_000;

    fn maybe_sweep(&mut self, alive: impl Fn(&V) -> bool) {
        if self.map.len() > self.sweep_at.max(Self::FLOOR) {
            self.map.retain(|_, v| alive(v));
            self.sweep_at = self.map.len() * 2;
        }
    }
}

impl MemoryRateLimiter {
    pub fn new() -> Self {
        Self::default()
    }
}

struct Verdict {
    allowed: bool,
    limit: u32,
    remaining: u32,
    reset_at_ns: i128,
    retry_after_ns: i128,
    new_tat: i128,
    reported: bool,
}

/// GCRA for one bucket: emission interval `T = window / limit`, burst = `limit`.
/// `cost = 0` looks whether one more request would fit, without taking anything.
fn evaluate(rule: &LimitRule, tat: Option<i128>, now: i128) -> Verdict {
    let window = i128::try_from(rule.window.as_nanos()).unwrap_or(i128::MAX / 4);
    let limit = i128::from(rule.limit.max(1));
    let interval = (window / limit).max(1);
    let base = tat.unwrap_or(now).max(now);
    let take = i128::from(rule.cost.max(1)) * interval;
    let candidate = base + take;
    let allowed = candidate - now <= window;
    let (new_tat, occupied) = match (allowed, rule.cost) {
        (true, 0) => (base, base - now),
        (true, _) => (candidate, candidate - now),
        (false, _) => (base, base - now),
    };
    let remaining = ((window - occupied) / interval).clamp(0, limit);
    Verdict {
        allowed,
        limit: rule.limit,
        remaining: u32::try_from(remaining).unwrap_or(0),
        reset_at_ns: new_tat.max(now),
        retry_after_ns: if allowed { 0 } else { candidate - window - now },
        new_tat,
        reported: rule.reported,
    }
}

fn to_time(ns: i128) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ns).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Picks what to report: the refusal that waits longest, else the reported bucket with fewest
/// left (any bucket, when none is reported).
fn decide(verdicts: &[Verdict], now: i128) -> LimitDecision {
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
    let retry_secs = u64::try_from((v.retry_after_ns + 999_999_999) / 1_000_000_000).unwrap_or(0);
    LimitDecision {
        allowed: v.allowed,
        limit: v.limit,
        remaining: v.remaining,
        reset_at: to_time(v.reset_at_ns),
        retry_after: Duration::from_secs(retry_secs),
        refused_by,
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn check(&self, rules: &[LimitRule], now: OffsetDateTime) -> Result<LimitDecision, LimitError> {
        let now_ns = now.unix_timestamp_nanos();
        let mut tats = crate::lock(&self.tats);
        let verdicts: Vec<Verdict> = rules.iter().map(|r| evaluate(r, tats.map.get(&r.key).copied(), now_ns)).collect();
        let all_allowed = verdicts.iter().all(|v| v.allowed);
        if all_allowed {
            for (rule, v) in rules.iter().zip(&verdicts) {
                if rule.cost > 0 {
                    tats.map.insert(rule.key.clone(), v.new_tat);
                }
            }
        }
        // Buckets that are full again hold nothing worth keeping.
        tats.maybe_sweep(|tat| *tat > now_ns);
        Ok(decide(&verdicts, now_ns))
    }

    /// The buckets are in this process: if it answers, they do.
    async fn ping(&self) -> Result<(), LimitError> {
        Ok(())
    }
}

#[async_trait]
impl ReplayGuard for MemoryRateLimiter {
    async fn first_use(&self, key: &str, until: OffsetDateTime, now: OffsetDateTime) -> Result<bool, LimitError> {
        let mut seen = crate::lock(&self.seen);
        seen.maybe_sweep(|exp| *exp > now);
        match seen.map.get(key) {
            Some(exp) if *exp > now => Ok(false),
            _ => {
                seen.map.insert(key.to_owned(), until);
                Ok(true)
            }
        }
    }
}
