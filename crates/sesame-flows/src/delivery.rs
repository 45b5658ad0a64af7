//! The outbox worker: sends each message once, retries transient failures with backoff and
//! jitter, gives up on permanent ones, drops messages whose code has expired.

use std::time::Duration;

use futures::StreamExt as _;

use sesame_domain::{Channel, Email, Identifier, PhoneNumber};
use sesame_ports::{AuditEvent, AuditKind, ClaimedMessage, OutgoingEmail, OutgoingSms, SendError, Settled, Settlement};

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
    /// Messages claimed (or taken from this replica's starts) and settled per round.
    pub batch: usize,
    /// Messages of a round handed to the providers at the same time.
    pub concurrency: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(60),
            lease: Duration::from_secs(30),
            batch: 256,
            concurrency: 32,
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

/// A message a worker holds the lease of, with its text and recipient when the start that
/// made it passed them along (then the sealed copy need not be opened, nor the address parsed).
#[derive(Debug)]
pub(crate) struct Handed {
    pub(crate) claimed: ClaimedMessage,
    pub(crate) ready: Option<(Rendered, Identifier)>,
}

/// One attempt at one message: what became of it, and what to record.
#[derive(Debug)]
struct Attempt {
    delivered: Delivered,
    settled: Settled,
    event: Option<AuditEvent>,
}

impl Sesame {
    /// Claims what is due and delivers it. Returns how many messages were handled.
    ///
    /// The bookkeeping of a batch is two writes whatever its size: one `Outbox::settle` and one
    /// `AuditLog::record_many`.
    ///
    /// # Errors
    /// When the outbox cannot be read.
    pub async fn deliver_due(&self) -> anyhow::Result<usize> {
        let policy = &self.settings.delivery;
        let now = self.ports.clock.now();
        let claimed = self.ports.outbox.claim_due(now, policy.batch, policy.lease).await?;
        let n = claimed.len();
        self.deliver_claimed(claimed.into_iter().map(|claimed| Handed { claimed, ready: None }).collect()).await;
        Ok(n)
    }

    /// Delivers one claimed message and records the outcome.
    pub(crate) async fn deliver_one(&self, handed: Handed) -> anyhow::Result<Delivered> {
        let attempt = self.attempt(handed).await;
        let delivered = attempt.delivered.clone();
        self.settle(vec![attempt]).await?;
        Ok(delivered)
    }

    /// Writes what became of `attempts`: the outbox first (it must not send twice), then the
    /// audit log (best effort, as everywhere).
    async fn settle(&self, attempts: Vec<Attempt>) -> anyhow::Result<()> {
        let now = self.ports.clock.now();
        let (settled, events): (Vec<Settled>, Vec<Option<AuditEvent>>) =
            attempts.into_iter().map(|a| (a.settled, a.event)).unzip();
        // A message just sent whose outcome cannot be written would be sent again by the next
        // claim once its lease runs out: keep trying to write it while the lease still holds
        // (a store outage shorter than the lease then doubles nothing; found by the fault suite).
        let deadline = tokio::time::Instant::now() + self.settings.delivery.lease.mul_f64(0.8);
        let mut pause = Duration::from_millis(50);
        loop {
            match self.ports.outbox.settle(&settled, now).await {
                Ok(()) => break,
                Err(e) if tokio::time::Instant::now() + pause < deadline => {
                    tracing::warn!(error = %e, "recording deliveries failed; retrying while the lease holds");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let events: Vec<AuditEvent> = events.into_iter().flatten().collect();
        if !events.is_empty()
            && let Err(e) = self.ports.audit.record_many(events).await
        {
            tracing::warn!(error = ?e, "audit record failed");
        }
        Ok(())
    }

    /// Tries to hand one message to its provider, and counts what came of it. Touches no store.
    async fn attempt(&self, handed: Handed) -> Attempt {
        let channel = handed.claimed.message.channel;
        let attempt = self.try_provider(handed).await;
        crate::measures::delivered(channel, &attempt.delivered);
        attempt
    }

    async fn try_provider(&self, handed: Handed) -> Attempt {
        let Handed { claimed, ready } = handed;
        let (rendered, to) = ready.map_or((None, None), |(r, to)| (Some(r), Some(to)));
        let msg = &claimed.message;
        let now = self.ports.clock.now();
        let mut event = AuditEvent::new(AuditKind::NotificationFailed, now);
        event.detail = Some(msg.channel.as_str().to_owned());
        let done = |delivered: Delivered, outcome: Settlement, event: Option<AuditEvent>| Attempt {
            delivered,
            settled: Settled { id: msg.id.clone(), outcome },
            event,
        };
        if now >= msg.expires_at {
            event.detail = Some("dropped: the code expired before delivery".into());
            return done(Delivered::Dropped, Settlement::Dropped, Some(event));
        }
        let rendered: Rendered = match rendered.map_or_else(
            || {
                self.secrets()
                    .unseal(&seal_context(&msg.id), &msg.sealed.0)
                    .map_err(anyhow::Error::new)
                    .and_then(|plain| serde_json::from_slice(&plain).map_err(anyhow::Error::new))
            },
            Ok,
        ) {
            Ok(r) => r,
            Err(e) => {
                let reason = format!("message cannot be opened: {e}");
                return done(Delivered::Failed(reason.clone()), Settlement::Failed(reason), None);
            }
        };
        let breaker = self.breaker(msg.channel);
        if let Some(wait) = breaker.holding() {
            // The provider failed again and again just now: reschedule without calling it.
            let at = now + wait.max(self.settings.delivery.base_backoff);
            let error = "provider unavailable (circuit open)".to_owned();
            return done(Delivered::Retrying, Settlement::Retry { at, error }, None);
        }
        let sent = match msg.channel {
            Channel::Email => match email_of(to).map_or_else(|| Email::parse(&msg.recipient), Ok) {
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
            Channel::Sms => match phone_of(to).map_or_else(|| PhoneNumber::parse(&msg.recipient), Ok) {
                Ok(to) => self.ports.sms.send(&OutgoingSms { to, text: rendered.text }).await,
                Err(_) => Err(SendError::Rejected("invalid recipient number".into())),
            },
        };
        match &sent {
            Err(SendError::Unavailable(_)) => {
                crate::measures::dependency_error(match msg.channel {
                    Channel::Email => "email",
                    Channel::Sms => "sms",
                });
                breaker.failed();
            }
            _ => breaker.succeeded(),
        }
        match sent {
            // As at Auth0 (`cls` at the start, `fn` on a failure), a success is no audit event of
            // its own: the message just leaves the outbox.
            Ok(_) => done(Delivered::Sent, Settlement::Sent, None),
            Err(SendError::Rejected(reason)) => {
                event.detail = Some(format!("rejected: {reason}"));
                done(Delivered::Failed(reason.clone()), Settlement::Failed(reason), Some(event))
            }
            Err(SendError::Unavailable(e)) if claimed.attempt >= self.settings.delivery.max_attempts => {
                let reason = format!("gave up after {} attempts: {e:#}", claimed.attempt);
                event.detail = Some(reason.clone());
                done(Delivered::Failed(reason.clone()), Settlement::Failed(reason), Some(event))
            }
            Err(SendError::Unavailable(e)) => {
                let mut jitter = [0u8; 1];
                self.ports.random.fill(&mut jitter);
                let at = self.ports.clock.now() + self.settings.delivery.backoff(claimed.attempt, jitter[0]);
                tracing::info!(attempt = claimed.attempt, error = %format!("{e:#}"), "delivery will be retried");
                done(Delivered::Retrying, Settlement::Retry { at, error: format!("{e:#}") }, None)
            }
        }
    }

    /// Runs the worker until `shutdown` resolves. It delivers what this replica's starts hand it
    /// (already claimed) as it comes, in batches, and claims from the outbox what is left
    /// (retries, lapsed leases, messages enqueued unclaimed) when woken and at least every
    /// `poll`. On shutdown it delivers what it was handed before it returns.
    pub async fn run_delivery(&self, poll: Duration, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut local = self.local.open();
        let batch = self.settings.delivery.batch;
        let mut handed = Vec::with_capacity(batch);
        let mut claim_now = true;
        loop {
            if claim_now {
                match self.deliver_due().await {
                    // A full batch means there may be more waiting: go again at once.
                    Ok(n) if n >= batch => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = ?e, "outbox unavailable; delivery will retry"),
                }
                claim_now = false;
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = self.wake_delivery.notified() => claim_now = true,
                () = tokio::time::sleep(poll) => claim_now = true,
                n = recv_many(&mut local, &mut handed, batch) => {
                    if n == 0 {
                        local = None;
                    } else {
                        if n < batch && let Some(rx) = local.as_mut() {
                            // Under load more follow at once: a moment's wait makes one round
                            // (and one settle) of many, instead of a wake-up per message.
                            tokio::time::sleep(GATHER).await;
                            while handed.len() < batch && let Ok(more) = rx.try_recv() {
                                handed.push(more);
                            }
                        }
                        self.deliver_claimed(std::mem::take(&mut handed)).await;
                    }
                }
            }
        }
        if let Some(mut rx) = local {
            // No more hand-offs; what was handed over goes out now. (A start that reserved its
            // place just before may still pass a message after this: it stays claimed in the
            // outbox until its lease lapses, and then any worker delivers it.)
            self.local.stop();
            let mut rest = Vec::new();
            while let Ok(claimed) = rx.try_recv() {
                rest.push(claimed);
            }
            self.deliver_claimed(rest).await;
            self.local.put_back(rx);
        }
    }

    /// Delivers messages this worker holds the lease of, and settles them in one step.
    async fn deliver_claimed(&self, claimed: Vec<Handed>) {
        if claimed.is_empty() {
            return;
        }
        let attempts: Vec<Attempt> = futures::stream::iter(claimed.into_iter().map(|c| self.attempt(c)))
            .buffer_unordered(self.settings.delivery.concurrency.max(1))
            .collect()
            .await;
        if let Err(e) = self.settle(attempts).await {
            tracing::warn!(error = ?e, "outbox bookkeeping failed; the leases will expire and the messages be retried");
        }
    }
}

fn email_of(to: Option<Identifier>) -> Option<Email> {
    match to {
        Some(Identifier::Email(e)) => Some(e),
        _ => None,
    }
}

fn phone_of(to: Option<Identifier>) -> Option<PhoneNumber> {
    match to {
        Some(Identifier::Phone(p)) => Some(p),
        _ => None,
    }
}

/// How long the worker lets handed-over messages gather before a round.
const GATHER: Duration = Duration::from_millis(2);

/// `recv_many` on the local queue, or never when this worker has none.
async fn recv_many(rx: &mut Option<tokio::sync::mpsc::Receiver<Handed>>, buf: &mut Vec<Handed>, limit: usize) -> usize {
    match rx {
        Some(rx) => rx.recv_many(buf, limit).await,
        None => std::future::pending().await,
    }
}

/// The hand-off from a replica's starts to its own worker: a start that can reserve a place
/// enqueues its message already claimed and passes it here. Only while a worker runs in this
/// process (`run_delivery`) is there a place to reserve.
#[derive(Debug)]
pub(crate) struct LocalQueue {
    tx: tokio::sync::mpsc::Sender<Handed>,
    rx: std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<Handed>>>,
    open: std::sync::atomic::AtomicBool,
}

impl LocalQueue {
    /// Messages in flight to the worker at most; more are enqueued unclaimed.
    const CAPACITY: usize = 4096;

    pub(crate) fn new() -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(Self::CAPACITY);
        Self { tx, rx: std::sync::Mutex::new(Some(rx)), open: std::sync::atomic::AtomicBool::new(false) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<tokio::sync::mpsc::Receiver<Handed>>> {
        self.rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A place for one message, while a worker takes them.
    pub(crate) fn reserve(&self) -> Option<tokio::sync::mpsc::Permit<'_, Handed>> {
        if !self.open.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        self.tx.try_reserve().ok()
    }

    /// The receiving end, for one worker at a time (`None` for a second one).
    fn open(&self) -> Option<tokio::sync::mpsc::Receiver<Handed>> {
        let rx = self.lock().take();
        if rx.is_some() {
            self.open.store(true, std::sync::atomic::Ordering::Release);
        }
        rx
    }

    /// Its worker is stopping: starts no longer hand messages over.
    fn stop(&self) {
        self.open.store(false, std::sync::atomic::Ordering::Release);
    }

    /// Gives the receiving end back for the next worker.
    fn put_back(&self, rx: tokio::sync::mpsc::Receiver<Handed>) {
        *self.lock() = Some(rx);
    }
}

#[cfg(test)]
mod tests {

    use std::sync::Arc;

    use sesame_domain::{
        AppType, AuthMethod, Client, ClientId, CodePolicy, Connection, ConnectionName, GrantType, Strategy,
    };
    use sesame_memory::{Mailbox, MemoryRateLimiter, MemoryStore};
    use sesame_ports::{AuditLog, ClientStore, ConnectionStore, DeliveryState, Outbox, SystemClock};

    use super::*;
    use crate::start::StartRequest;
    use crate::{FlowSettings, OsRandom, Ports, Secrets};

    async fn sesame() -> (Sesame, Arc<MemoryStore>, Arc<Mailbox>) {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(SystemClock);
        let mailbox = Arc::new(Mailbox::new(clock.clone()));
        let limiter = Arc::new(MemoryRateLimiter::new());
        let ports = Ports {
            clients: store.clone(),
            connections: store.clone(),
            challenges: store.clone(),
            users: store.clone(),
            outbox: store.clone(),
            grants: store.clone(),
            audit: store.clone(),
            logins: store.clone(),
            tokens: Arc::new(sesame_jwt::JwtIssuer::new(sesame_jwt::RsaSigningKey::generate().unwrap())),
            assertions: Arc::new(sesame_jwt::AssertionVerifier),
            limiter: limiter.clone(),
            floor_limiter: limiter.clone(),
            replay: limiter,
            email: mailbox.clone(),
            sms: mailbox.clone(),
            clock,
            random: Arc::new(OsRandom),
        };
        let connection = Connection {
            name: ConnectionName::new("email"),
            strategy: Strategy::Email,
            policy: CodePolicy::default(),
            disable_signup: false,
            limits: sesame_domain::ConnectionLimits::default(),
        };
        ConnectionStore::save(&*store, &connection).await.unwrap();
        let client = Client {
            id: ClientId::new("app"),
            name: "App".into(),
            app_type: AppType::Native,
            auth_method: AuthMethod::None,
            secret_hash: None,
            connections: vec![ConnectionName::new("email")],
            callbacks: vec![],
            allowed_origins: vec![],
            grant_types: vec![GrantType::PasswordlessOtp],
            public_keys: vec![],
            api_scopes: Default::default(),
            trust_forwarded_for: false,
            allowed_logout_urls: vec![],
            require_pkce: true,
        };
        ClientStore::save(&*store, &client).await.unwrap();
        let sesame = Sesame::new(ports, Secrets::new(&[7u8; 32]).unwrap(), FlowSettings::new("https://sesame.test/"));
        (sesame, store, mailbox)
    }

    async fn start(sesame: &Sesame, email: &str) -> String {
        let client = ClientStore::find(&*sesame.ports.clients, &ClientId::new("app")).await.unwrap().unwrap();
        let request = StartRequest {
            client,
            connection: ConnectionName::new("email"),
            email: Some(email.into()),
            phone_number: None,
            send: Some(sesame_domain::Send::Code),
            auth_params: sesame_domain::AuthParams::default(),
            language: None,
            ip: None,
        };
        sesame.start(request).await.result.unwrap().id
    }

    #[tokio::test]
    async fn a_start_hands_its_message_to_the_running_worker_claimed() {
        let (sesame, store, mailbox) = sesame().await;

        // No worker here: the message is enqueued unclaimed, for any worker's claim.
        start(&sesame, "idle@example.com").await;
        let now = sesame.ports.clock.now();
        let claimed = store.claim_due(now, 100, Duration::from_secs(30)).await.unwrap();
        assert_eq!(claimed.iter().map(|c| c.attempt).collect::<Vec<_>>(), vec![1], "unclaimed until now");
        store.mark_sent(&claimed[0].message.id, now).await.unwrap();

        // A worker that claims from the outbox only once an hour still delivers at once: the
        // start hands it the message, already claimed.
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = sesame.clone();
        let running = tokio::spawn(async move {
            worker
                .run_delivery(Duration::from_secs(3600), async move {
                    let _ = stopped.await;
                })
                .await;
        });
        while !sesame.local.open.load(std::sync::atomic::Ordering::Acquire) {
            tokio::task::yield_now().await;
        }
        start(&sesame, "handed@example.com").await;
        for _ in 0..500 {
            if !mailbox.list(Some("handed@example.com")).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(mailbox.list(Some("handed@example.com")).len(), 1, "delivered without a claim");
        let later = sesame.ports.clock.now() + time::Duration::hours(1);
        assert!(store.claim_due(later, 100, Duration::from_secs(30)).await.unwrap().is_empty(), "nothing left over");
        let sent = store.recent(10).await.unwrap();
        assert!(sent.iter().all(|e| e.kind != AuditKind::NotificationSent), "a success is the outbox row's to record");

        // Stopped, the worker hands nothing more over: a start falls back to the outbox.
        stop.send(()).unwrap();
        running.await.unwrap();
        start(&sesame, "after@example.com").await;
        let claimed = store.claim_due(sesame.ports.clock.now(), 100, Duration::from_secs(30)).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].message.recipient, "after@example.com");
        assert_eq!(store.state(&claimed[0].message.id).await.unwrap(), Some(DeliveryState::Pending));
    }

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
