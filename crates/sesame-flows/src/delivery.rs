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
