//! Readiness: whether this replica can serve a login now, dependency by dependency.

use std::time::{Duration, Instant};

use sesame_domain::Channel;
use sesame_ports::Backlog;

use crate::Sesame;

/// How long a probe waits for one dependency: a load balancer's probe has a timeout of its own
/// (an ALB's default is 5 s), and a slow answer must come back as "down", not as no answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One dependency's state.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Up {
        ms: f64,
    },
    /// Not answering; the reason is for the log, never for the response.
    Down {
        reason: String,
    },
}

impl Check {
    pub fn is_up(&self) -> bool {
        matches!(self, Self::Up { .. })
    }
}

/// What `/readyz` reports.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// A round trip to the store (counting the outbox's backlog).
    pub store: Check,
    pub backlog: Option<Backlog>,
    /// A round trip to the shared limiter (Redis), or the replica's own.
    pub limiter: Check,
    /// How long each provider's circuit breaker still holds calls back (`None`: closed).
    pub email_breaker: Option<Duration>,
    pub sms_breaker: Option<Duration>,
    /// Verification keys published (an active key signs).
    pub signing_keys: usize,
}

impl Readiness {
    /// Whether a login can be served: the store answers and there is a key to sign with.
    /// A limiter that is down is not enough to refuse traffic (`limits.fail` decides what a
    /// request does then, per rule), and an open breaker means a provider is failing, which
    /// taking this replica out of the load balancer would not cure.
    pub fn ready(&self) -> bool {
        self.store.is_up() && self.signing_keys > 0
    }

    /// Ready, yet something a login uses is failing.
    pub fn degraded(&self) -> bool {
        !self.limiter.is_up() || self.email_breaker.is_some() || self.sms_breaker.is_some()
    }
}

async fn timed<T, E: std::fmt::Display>(call: impl Future<Output = Result<T, E>>) -> (Check, Option<T>) {
    let started = Instant::now();
    match tokio::time::timeout(PROBE_TIMEOUT, call).await {
        Ok(Ok(v)) => (Check::Up { ms: started.elapsed().as_secs_f64() * 1000.0 }, Some(v)),
        Ok(Err(e)) => (Check::Down { reason: format!("{e:#}") }, None),
        Err(_) => (Check::Down { reason: format!("no answer within {} ms", PROBE_TIMEOUT.as_millis()) }, None),
    }
}

impl Sesame {
    /// Asks every dependency at once, each bounded by a timeout.
    pub async fn readiness(&self) -> Readiness {
        let ((store, backlog), (limiter, _), (_, jwks)) = tokio::join!(
            timed(self.ports.outbox.backlog()),
            timed(self.ports.limiter.ping()),
            timed(self.ports.tokens.jwks()),
        );
        let signing_keys = jwks.as_ref().and_then(|j| j["keys"].as_array()).map_or(0, Vec::len);
        Readiness {
            store,
            backlog,
            limiter,
            email_breaker: self.breaker(Channel::Email).holding(),
            sms_breaker: self.breaker(Channel::Sms).holding(),
            signing_keys,
        }
    }
}
