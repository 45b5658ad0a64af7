//! Sesame's use cases, written only against the ports: authenticate a client, start a
//! passwordless login, exchange a code for tokens, deliver the outbox. No HTTP, no SQL.

/// `From<StoreError>` for a use case's error enum: `Unavailable` stays unavailable (a 503),
/// anything else is unexpected (a 500).
#[macro_export]
#[doc(hidden)]
macro_rules! store_errors_into {
    ($error:ty) => {
        impl From<sesame_ports::StoreError> for $error {
            fn from(e: sesame_ports::StoreError) -> Self {
                match e {
                    sesame_ports::StoreError::Unavailable(e) => {
                        $crate::measures::dependency_error("store");
                        Self::Unavailable(e)
                    }
                    other => Self::Unexpected(anyhow::Error::new(other)),
                }
            }
        }
    };
}

pub mod authorize;
pub mod cache;
pub mod client_auth;
pub mod crypto;
pub mod delivery;
pub mod exchange;
pub mod health;
pub mod hosted;
pub mod limits;
mod measures;
pub mod messages;
pub mod retention;
pub mod start;
pub mod templates;
pub mod tokens;
pub mod users;

use std::sync::Arc;
use std::time::Duration;

use sesame_ports::{
    AuditEvent, AuditLog, ChallengeStore, ClientAssertionVerifier, ClientStore, Clock, ConnectionStore, EmailSender,
    GrantStore, LoginStore, Outbox, Random, RateLimiter, ReplayGuard, SmsSender, TokenIssuer, UserStore,
};

pub use crypto::{OsRandom, Secrets};

/// Every port the flows use. `sesame-api` fills it from configuration; tests fill it with the
/// memory adapters.
#[derive(Debug, Clone)]
pub struct Ports {
    pub clients: Arc<dyn ClientStore>,
    pub connections: Arc<dyn ConnectionStore>,
    pub challenges: Arc<dyn ChallengeStore>,
    pub users: Arc<dyn UserStore>,
    pub outbox: Arc<dyn Outbox>,
    pub grants: Arc<dyn GrantStore>,
    pub audit: Arc<dyn AuditLog>,
    /// The OTP grant's writes in one step (the challenge, user, grant and audit stores' rows).
    pub logins: Arc<dyn LoginStore>,
    pub tokens: Arc<dyn TokenIssuer>,
    pub assertions: Arc<dyn ClientAssertionVerifier>,
    pub limiter: Arc<dyn RateLimiter>,
    /// This replica's own limiter, the floor while `limiter` cannot be reached: a path that
    /// fails open is limited per replica instead of not at all. (With the memory limiter as
    /// `limiter`, the same one.)
    pub floor_limiter: Arc<dyn RateLimiter>,
    pub replay: Arc<dyn ReplayGuard>,
    pub email: Arc<dyn EmailSender>,
    pub sms: Arc<dyn SmsSender>,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
}

/// An API (resource server) that access tokens may be issued for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    pub identifier: String,
    /// Whether `offline_access` yields a refresh token for this API (Auth0's "Allow Offline Access").
    #[serde(default)]
    pub allow_offline_access: bool,
    /// With a namespace (`https://example.com/`), tokens for this API (the access token, and
    /// the id_token of the same response) carry `{ns}user_metadata` and `{ns}app_metadata`.
    #[serde(default)]
    pub metadata_claims: Option<String>,
}

/// Settings the flows need.
#[derive(Debug, Clone)]
pub struct FlowSettings {
    /// `https://auth.example.com/`, with the trailing slash Auth0's SDKs expect.
    pub issuer: String,
    pub id_token_lifetime: Duration,
    pub access_token_lifetime: Duration,
    pub refresh_token_lifetime: Duration,
    pub apis: Vec<Api>,
    pub delivery: delivery::RetryPolicy,
    pub limits: limits::LimitSettings,
    /// Compiled at load, so a broken template stops the start-up, not a login.
    pub templates: Arc<templates::Templates>,
    /// For SMS, wait for the first delivery attempt so that a permanent refusal by the provider
    /// reaches the caller as Auth0's `sms_provider_error`.
    pub sms_wait_first_attempt: bool,
    /// With `disable_signup`, refuse an unknown identifier as Auth0 does (400), revealing that
    /// it has no account; off, it gets the answer a user gets and nothing is sent.
    pub reveal_disabled_signup: bool,
    /// Whether each channel has a provider; a start on a channel without one is refused.
    pub email_enabled: bool,
    pub sms_enabled: bool,
}

impl FlowSettings {
    pub fn new(issuer: impl Into<String>) -> Self {
        let mut issuer = issuer.into();
        if !issuer.ends_with('/') {
            issuer.push('/');
        }
        Self {
            issuer,
            id_token_lifetime: Duration::from_secs(36_000),
            access_token_lifetime: Duration::from_secs(86_400),
            refresh_token_lifetime: Duration::from_secs(30 * 86_400),
            apis: Vec::new(),
            delivery: delivery::RetryPolicy::default(),
            limits: limits::LimitSettings::default(),
            templates: Arc::new(templates::Templates::builtin()),
            sms_wait_first_attempt: true,
            reveal_disabled_signup: false,
            email_enabled: true,
            sms_enabled: true,
        }
    }
}

/// The use cases, sharing ports, secrets and settings.
#[derive(Debug, Clone)]
pub struct Sesame {
    pub ports: Ports,
    secrets: Arc<Secrets>,
    pub settings: Arc<FlowSettings>,
    wake_delivery: Arc<tokio::sync::Notify>,
    /// Messages this replica enqueued already claimed, on their way to its own worker.
    local: Arc<delivery::LocalQueue>,
    /// Email and SMS providers' circuit breakers.
    breakers: Arc<(delivery::Breaker, delivery::Breaker)>,
}

impl Sesame {
    pub fn new(ports: Ports, secrets: Secrets, settings: FlowSettings) -> Self {
        Self {
            ports,
            secrets: Arc::new(secrets),
            settings: Arc::new(settings),
            wake_delivery: Arc::new(tokio::sync::Notify::new()),
            local: Arc::new(delivery::LocalQueue::new()),
            breakers: Arc::default(),
        }
    }

    /// The circuit breaker of a channel's provider.
    pub(crate) fn breaker(&self, channel: sesame_domain::Channel) -> &delivery::Breaker {
        match channel {
            sesame_domain::Channel::Email => &self.breakers.0,
            sesame_domain::Channel::Sms => &self.breakers.1,
        }
    }

    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// Checks `rules` at once. When the limiter fails and `mode` is open, the replica's own
    /// floor limiter decides (`Ok(None)` only if that fails too).
    async fn limit(
        &self,
        rules: &[sesame_ports::LimitRule],
        mode: limits::FailMode,
        now: time::OffsetDateTime,
    ) -> Result<Option<sesame_ports::LimitDecision>, anyhow::Error> {
        let checked = self.ports.limiter.check(rules, now).await;
        if checked.is_err() {
            measures::dependency_error("limiter");
            measures::limiter_failed(mode);
        }
        let decision = match checked {
            Ok(d) => Some(d),
            Err(e) if mode == limits::FailMode::Open => {
                tracing::warn!(error = ?e, limiter_failure = true, "rate limiter unavailable; failing open to the local floor");
                self.ports.floor_limiter.check(rules, now).await.ok()
            }
            Err(e) => return Err(anyhow::Error::new(e).context("rate limiter unavailable; failing closed")),
        };
        if let Some(rule) = decision.as_ref().and_then(|d| d.refused_by).and_then(|i| rules.get(i)) {
            measures::refused(&rule.key);
        }
        Ok(decision)
    }

    /// `rules` on the shared limiter, or on the local floor while it cannot be reached.
    async fn check_or_floor(
        &self,
        rules: &[sesame_ports::LimitRule],
        now: time::OffsetDateTime,
    ) -> Result<sesame_ports::LimitDecision, sesame_ports::LimitError> {
        match self.ports.limiter.check(rules, now).await {
            Ok(d) => Ok(d),
            Err(_) => {
                measures::dependency_error("limiter");
                self.ports.floor_limiter.check(rules, now).await
            }
        }
    }

    /// Takes a token for a failed try.
    async fn count_failure(&self, rule: &sesame_ports::LimitRule, now: time::OffsetDateTime) {
        if let Err(e) = self.check_or_floor(std::slice::from_ref(rule), now).await {
            tracing::warn!(error = ?e, limiter_failure = true, "could not count a failed try");
        }
    }

    /// A stand-in for an identifier in rate-limit keys: a keyed hash, so the limiter's store
    /// never holds an email address or phone number.
    fn limit_tag(&self, key: &sesame_domain::ChallengeKey) -> String {
        let id = format!("{}:{}", key.connection.as_str(), key.identifier.as_str());
        hex::encode(&self.secrets().token_hash("limit", &id).as_bytes()[..16])
    }

    /// Records an audit event; a failure to record is logged, never passed on.
    async fn audit(&self, event: AuditEvent) {
        if let Err(e) = self.ports.audit.record(event).await {
            tracing::warn!(error = ?e, "audit record failed");
        }
    }

    /// A login refused because its user is blocked (Auth0's tenant log: "user is blocked").
    async fn audit_blocked(
        &self,
        key: &sesame_domain::ChallengeKey,
        user: Option<&sesame_domain::UserId>,
        ip: Option<String>,
        at: &str,
        now: time::OffsetDateTime,
    ) {
        let mut event = AuditEvent::new(sesame_ports::AuditKind::UserBlocked, now);
        event.user_id = user.map(|u| u.0.clone());
        event.client_id = Some(key.client_id.0.clone());
        event.connection = Some(key.connection.0.clone());
        event.identifier = Some(key.identifier.masked());
        event.ip = ip;
        event.detail = Some(format!("user is blocked ({at})"));
        self.audit(event).await;
    }
}
