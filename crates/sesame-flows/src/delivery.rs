//! The outbox worker: sends each message once, retries transient failures with backoff and
//! jitter, gives up on permanent ones, drops messages whose code has expired.

use std::time::Duration;

use sesame_domain::{Channel, Email, PhoneNumber};
use sesame_ports::{AuditEvent, AuditKind, ClaimedMessage, DeliveryState, OutgoingEmail, OutgoingSms, SendError};

use crate::Sesame;
use crate::start::seal_context;
use crate::templates::Rendered;

/// How the worker retries.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts before giving up (Kratos: 5).
    pub max_attempts: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// How long a claim holds a message before another worker may take it.
    pub lease: Duration,
    /// Messages claimed per round.
    pub batch: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
            lease: Duration::from_secs(30),
            batch: 32,
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with full jitter in [base·2ⁿ⁻¹ / 2, base·2ⁿ⁻¹], capped.
    pub fn backoff(&self, attempt: u32, jitter: u8) -> Duration {
        let exp = self.base_backoff.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(self.max_backoff);
        let half = exp / 2;
        half + half.mul_f64(f64::from(jitter) / 255.0)
    }
}

/// A circuit breaker per channel: after `THRESHOLD` failures in a row that say "unavailable",
/// the provider is left alone (messages are rescheduled without a call) until the breaker's
/// wait is over; then one message probes it. A provider that is down thus costs the API no CPU.
#[derive(Debug, Default)]
pub struct Breaker {
    failures: std::sync::atomic::AtomicU32,
    /// Milliseconds since `epoch` before which no call is made.
    open_until_ms: std::sync::atomic::AtomicU64,
    epoch: std::sync::OnceLock<std::time::Instant>,
}

impl Breaker {
    const THRESHOLD: u32 = 5;
    const MAX_OPEN: Duration = Duration::from_secs(30);

    fn now_ms(&self) -> u64 {
        let epoch = *self.epoch.get_or_init(std::time::Instant::now);
        u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How long calls are still held back; `None` when a call may go (closed, or time to probe).
    pub fn holding(&self) -> Option<Duration> {
        let until = self.open_until_ms.load(std::sync::atomic::Ordering::Relaxed);
        let now = self.now_ms();
        (until > now).then(|| Duration::from_millis(until - now))
    }

    fn succeeded(&self) {
        self.failures.store(0, std::sync::atomic::Ordering::Relaxed);
        self.open_until_ms.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    fn failed(&self) {
        let n = self.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if n >= Self::THRESHOLD {
            let wait = Duration::from_millis(250).saturating_mul(1 << (n - Self::THRESHOLD).min(8)).min(Self::MAX_OPEN);
            let until = self.now_ms() + u64::try_from(wait.as_millis()).unwrap_or(0);
            self.open_until_ms.store(until, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Wakes the worker: a message was just enqueued.
pub(crate) fn wake(sesame: &Sesame) {
    sesame.wake_delivery.notify_one();
}

/// What one message's delivery came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    Sent,
    Retrying,
    Failed(String),
    Dropped,
}

impl Sesame {
    /// Claims what is due and delivers it. Returns how many messages were handled.
    ///
    /// # Errors
    /// When the outbox cannot be read.
    pub async fn deliver_due(&self) -> anyhow::Result<usize> {
        let policy = &self.settings.delivery;
        let now = self.ports.clock.now();
        let claimed = self.ports.outbox.claim_due(now, policy.batch, policy.lease).await?;
        let n = claimed.len();
        let sends = claimed.into_iter().map(|c| self.deliver_one(c));
        for result in futures::future::join_all(sends).await {
            if let Err(e) = result {
                tracing::warn!(error = ?e, "outbox bookkeeping failed; the lease will expire and the message be retried");
            }
        }
        Ok(n)
    }

    pub(crate) async fn deliver_one(&self, claimed: ClaimedMessage) -> anyhow::Result<Delivered> {
        let outbox = &self.ports.outbox;
        let msg = &claimed.message;
        let now = self.ports.clock.now();
        let mut event = AuditEvent::new(AuditKind::NotificationFailed, now);
        event.detail = Some(msg.channel.as_str().to_owned());
        if now >= msg.expires_at {
            outbox.finish(&msg.id, DeliveryState::Dropped, now).await?;
            event.detail = Some("dropped: the code expired before delivery".into());
            self.audit(event).await;
            return Ok(Delivered::Dropped);
        }
        let rendered: Rendered = match self
            .secrets()
            .unseal(&seal_context(&msg.id), &msg.sealed.0)
            .map_err(anyhow::Error::new)
            .and_then(|plain| serde_json::from_slice(&plain).map_err(anyhow::Error::new))
        {
            Ok(r) => r,
            Err(e) => {
                let reason = format!("message cannot be opened: {e}");
                outbox.finish(&msg.id, DeliveryState::Failed(reason.clone()), now).await?;
                return Ok(Delivered::Failed(reason));
            }
        };
        let breaker = match msg.channel {
            Channel::Email => &self.breakers.0,
            Channel::Sms => &self.breakers.1,
        };
        if let Some(wait) = breaker.holding() {
            // The provider failed again and again just now: reschedule without calling it.
            let at = now + wait.max(self.settings.delivery.base_backoff);
            outbox.retry_at(&msg.id, at, "provider unavailable (circuit open)").await?;
            return Ok(Delivered::Retrying);
        }
        let sent = match msg.channel {
            Channel::Email => match Email::parse(&msg.recipient) {
                Ok(to) => {
                    let email = OutgoingEmail {
                        to,
                        subject: rendered.subject.unwrap_or_default(),
                        text: rendered.text,
                        html: rendered.html,
                    };
                    self.ports.email.send(&email).await
                }
                Err(_) => Err(SendError::Rejected("invalid recipient address".into())),
            },
            Channel::Sms => match PhoneNumber::parse(&msg.recipient) {
                Ok(to) => self.ports.sms.send(&OutgoingSms { to, text: rendered.text }).await,
                Err(_) => Err(SendError::Rejected("invalid recipient number".into())),
            },
        };
        let now = self.ports.clock.now();
        match &sent {
            Err(SendError::Unavailable(_)) => breaker.failed(),
            _ => breaker.succeeded(),
        }
        let outcome = match sent {
            Ok(_) => {
                outbox.mark_sent(&msg.id, now).await?;
                event.kind = AuditKind::NotificationSent;
                Delivered::Sent
            }
            Err(SendError::Rejected(reason)) => {
                outbox.finish(&msg.id, DeliveryState::Failed(reason.clone()), now).await?;
                event.detail = Some(format!("rejected: {reason}"));
                Delivered::Failed(reason)
            }
            Err(SendError::Unavailable(e)) if claimed.attempt >= self.settings.delivery.max_attempts => {
                let reason = format!("gave up after {} attempts: {e:#}", claimed.attempt);
                outbox.finish(&msg.id, DeliveryState::Failed(reason.clone()), now).await?;
                event.detail = Some(reason.clone());
                Delivered::Failed(reason)
            }
            Err(SendError::Unavailable(e)) => {
                let mut jitter = [0u8; 1];
                self.ports.random.fill(&mut jitter);
                let at = now + self.settings.delivery.backoff(claimed.attempt, jitter[0]);
                outbox.retry_at(&msg.id, at, &format!("{e:#}")).await?;
                tracing::info!(attempt = claimed.attempt, error = %format!("{e:#}"), "delivery will be retried");
                return Ok(Delivered::Retrying);
            }
        };
        self.audit(event).await;
        Ok(outcome)
    }

    /// Runs the worker until `shutdown` resolves: wakes on each new message, and at least every
    /// `poll` to pick up retries and lapsed leases.
    pub async fn run_delivery(&self, poll: Duration, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.deliver_due().await {
                // A full batch means there may be more waiting: go again at once.
                Ok(n) if n >= self.settings.delivery.batch => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = ?e, "outbox unavailable; delivery will retry"),
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = self.wake_delivery.notified() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_five_unavailable_in_a_row_and_closes_on_success() {
        let b = Breaker::default();
        for _ in 0..4 {
            b.failed();
            assert!(b.holding().is_none());
        }
        b.failed();
        let wait = b.holding().unwrap_or_default();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(250), "{wait:?}");
        b.succeeded();
        assert!(b.holding().is_none());
        for _ in 0..30 {
            b.failed();
        }
        assert!(b.holding().is_some_and(|w| w <= Breaker::MAX_OPEN));
    }
}
