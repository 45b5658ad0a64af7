use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

/// One token bucket to check: `limit` tokens, refilled evenly over `window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitRule {
    pub key: String,
    pub limit: u32,
    pub window: Duration,
    /// Tokens this request takes: 1 for a request, 0 to only look (e.g. failed tries are
    /// looked at before an exchange and taken after a failure).
    pub cost: u32,
    /// Whether this bucket may be the one the answer reports while the request is allowed.
    /// `false` for buckets keyed by an email address or phone number: their remaining count
    /// would tell anyone who asks how many logins that user started or failed. A refusal
    /// always reports the bucket that refused.
    pub reported: bool,
}

impl LimitRule {
    /// A rule whose state may be reported.
    pub fn new(key: impl Into<String>, limit: u32, window: Duration, cost: u32) -> Self {
        Self { key: key.into(), limit, window, cost, reported: true }
    }

    /// This rule, never reported while the request is allowed.
    #[must_use]
    pub fn unreported(self) -> Self {
        Self { reported: false, ..self }
    }
}

/// The answer for all the rules of one request: the refusal that waits longest, else the
/// tightest of the reported buckets (of all buckets when none is reported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitDecision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// When the tightest bucket is full again.
    pub reset_at: OffsetDateTime,
    /// How long until the request would be allowed; zero when allowed.
    pub retry_after: Duration,
    /// When refused: the index in `rules` of the rule reported (the one that waits longest).
    pub refused_by: Option<usize>,
}

/// The limiter's backing service failed.
#[derive(Debug, thiserror::Error)]
#[error("rate limiter unavailable")]
pub struct LimitError(#[source] pub anyhow::Error);

/// Rate limits shared by every replica.
///
/// Guarantee: all rules of one call are checked and taken atomically: the request is allowed
/// only if every bucket holds `cost` tokens, and then every bucket gives them; otherwise none do.
#[async_trait]
pub trait RateLimiter: Send + Sync + std::fmt::Debug {
    async fn check(&self, rules: &[LimitRule], now: OffsetDateTime) -> Result<LimitDecision, LimitError>;
    /// A round trip to where the buckets live (`/readyz`), changing nothing.
    async fn ping(&self) -> Result<(), LimitError>;
}

/// Remembers single-use values (client-assertion `jti`s) until they expire.
///
/// Guarantee: of any number of concurrent calls with one key before `until`, exactly one gets `true`.
#[async_trait]
pub trait ReplayGuard: Send + Sync + std::fmt::Debug {
    async fn first_use(&self, key: &str, until: OffsetDateTime, now: OffsetDateTime) -> Result<bool, LimitError>;
}
