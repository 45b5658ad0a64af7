//! `POST /passwordless/start`: make a code (and link), store its hash with the message in one
//! step, and let the outbox deliver it after the response.

use anyhow::Context as _;
use sesame_domain::{
    AuthParams, ChallengeKey, Channel, Client, ConnectionName, Email, Identifier, IdentifierError, MessageId,
    NewChallenge, OutboxMessage, PhoneNumber, SealedMessage, Send, Strategy,
};
use sesame_ports::{AuditEvent, AuditKind, ClaimedMessage, LimitDecision};

use crate::crypto::{Drawn, generate_code, generate_link_token, random_object_id};
use crate::limits::Limited;
use crate::messages::magic_link;
use crate::templates::MessageContext;
use crate::{Sesame, delivery};

/// A start, after the client is authenticated and the body is well-formed.
#[derive(Debug)]
pub struct StartRequest {
    pub client: Client,
    pub connection: ConnectionName,
    pub email: Option<String>,
    pub phone_number: Option<String>,
    /// `None` when absent or null: a link for email, a code for SMS.
    pub send: Option<Send>,
    pub auth_params: AuthParams,
    /// The raw `x-request-language` value, else the raw `Accept-Language`.
    pub language: Option<String>,
    pub ip: Option<String>,
}

/// What the start response reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub id: String,
    pub identifier: Identifier,
    pub request_language: Option<String>,
}

/// Why a start was refused. Each maps to one of Auth0's `/passwordless/start` errors.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("connection does not exist")]
    ConnectionNotFound,
    #[error("connection is not enabled for the client")]
    ConnectionDisabled,
    /// The connection's channel has no provider on this server.
    #[error("no provider for this channel")]
    NoProvider(Strategy),
    #[error("email missing")]
    EmailMissing,
    #[error("email invalid")]
    EmailInvalid(String),
    #[error("phone number missing")]
    PhoneMissing,
    #[error("phone number invalid")]
    PhoneInvalid(IdentifierError),
    #[error("public signup is disabled")]
    SignupDisabled,
    /// The identifier's user is blocked (Auth0: 401 `unauthorized`, "user is blocked").
    #[error("user is blocked")]
    Blocked,
    #[error("SMS to this kind of number ({}) is not allowed", .0.label())]
    CostlyNumber(sesame_domain::CostlyKind),
    #[error("SMS to this country is not allowed")]
    CountryNotAllowed,
    /// The SMS provider refused the message for good on the first attempt.
    #[error("SMS provider refused the message: {0}")]
    SmsProviderError(String),
    /// The `authParams` of a link (or a `redirect_uri` anywhere) do not fit the client.
    #[error("bad authParams: {0}")]
    BadAuthParams(String),
    #[error("rate limited")]
    RateLimited,
    #[error("store unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

crate::store_errors_into!(StartError);

/// The AEAD context of an outbox message: a sealed body cannot be moved to another message.
pub(crate) fn seal_context(id: &MessageId) -> String {
    format!("outbox:{}", id.0)
}

impl Sesame {
    /// Starts a passwordless login.
    ///
    /// # Errors
    /// See `StartError`.
    #[tracing::instrument(skip_all, fields(client_id = %req.client.id.as_str(), connection = %req.connection.as_str()))]
    pub async fn start(&self, req: StartRequest) -> Limited<Started, StartError> {
        let mut limit = None;
        let result = self.start_limited(req, &mut limit).await;
        Limited::new(result, limit)
    }

    async fn start_limited(&self, req: StartRequest, limit: &mut Option<LimitDecision>) -> Result<Started, StartError> {
        let connection = self.ports.connections.find(&req.connection).await?.ok_or(StartError::ConnectionNotFound)?;
        check_auth_params(
            &req.client,
            &self.settings.apis,
            &req.auth_params,
            req.send.unwrap_or_else(|| Send::default_for(connection.strategy)),
        )?;
        if !req.client.connection_enabled(&connection.name) {
            return Err(StartError::ConnectionDisabled);
        }
        let provided = match connection.strategy {
            Strategy::Email => self.settings.email_enabled,
            Strategy::Sms => self.settings.sms_enabled,
        };
        if !provided {
            return Err(StartError::NoProvider(connection.strategy));
        }
        let identifier = match connection.strategy {
            Strategy::Email => {
                let raw = req.email.as_deref().ok_or(StartError::EmailMissing)?;
                Identifier::Email(Email::parse(raw).map_err(|_| StartError::EmailInvalid(raw.to_owned()))?)
            }
            Strategy::Sms => {
                let raw = req.phone_number.as_deref().ok_or(StartError::PhoneMissing)?;
                Identifier::Phone(PhoneNumber::parse(raw).map_err(StartError::PhoneInvalid)?)
            }
        };
        let limits = &self.settings.limits.for_connection(&connection.limits);
        if let Identifier::Phone(p) = &identifier
            && !limits.sms_country_allowed(p.country())
        {
            return Err(StartError::CountryNotAllowed);
        }
        if let Identifier::Phone(p) = &identifier
            && let Some(kind) = p.costly_kind()
            && !limits.sms_kind_allowed(Some(kind))
        {
            return Err(StartError::CostlyNumber(kind));
        }
        let now = self.ports.clock.now();
        let key = ChallengeKey { client_id: req.client.id.clone(), connection: connection.name.clone(), identifier };
        let decision = self
            .limit(
                &limits.start_rules(&key, &self.limit_tag(&key), req.ip.as_deref()),
                limits.fail_mode(connection.strategy),
                now,
            )
            .await
            .map_err(StartError::Unavailable)?;
        limit.clone_from(&decision);
        if decision.as_ref().is_some_and(|d| !d.allowed) {
            let mut event = AuditEvent::new(AuditKind::RateLimited, now);
            event.client_id = Some(key.client_id.0.clone());
            event.identifier = Some(key.identifier.masked());
            event.ip = req.ip;
            event.detail = Some("passwordless/start".into());
            self.audit(event).await;
            return Err(StartError::RateLimited);
        }
        let send = req.send.unwrap_or_else(|| Send::default_for(connection.strategy));
        let drawn = Drawn::new(&*self.ports.random);
        let random = &drawn;
        // A blocked user is refused by the store's start itself (no extra round trip); with
        // signup disabled the user is read anyway, and refused here.
        let existing = if connection.disable_signup {
            Some(self.ports.users.find(&connection.name, &key.identifier).await?)
        } else {
            None
        };
        if let Some(Some(user)) = existing.as_ref().filter(|u| u.as_ref().is_some_and(|u| u.blocked)) {
            self.audit_blocked(&key, Some(&user.id), req.ip.clone(), "passwordless/start", now).await;
            return Err(StartError::Blocked);
        }
        if matches!(existing, Some(None)) {
            if self.settings.reveal_disabled_signup {
                return Err(StartError::SignupDisabled);
            }
            // The answer a user gets (a fresh id, nothing else differs) and nothing sent: a
            // stranger cannot tell from the start whether the address has an account.
            // Auth0's tenant log: "Failed Login — Public signup is disabled".
            let mut event = AuditEvent::new(AuditKind::LoginFailed, now);
            event.client_id = Some(key.client_id.0.clone());
            event.connection = Some(key.connection.0.clone());
            event.identifier = Some(key.identifier.masked());
            event.ip = req.ip;
            event.detail = Some("Public signup is disabled".into());
            self.audit(event).await;
            tracing::info!(to = %key.identifier.masked(), "start for an unknown identifier with signup disabled: nothing sent");
            return Ok(Started {
                id: random_object_id(random),
                identifier: key.identifier,
                request_language: req.language,
            });
        }
        let code = generate_code(random, connection.policy.length());
        let link_token = generate_link_token(random);
        let link = magic_link(&self.settings.issuer, &key, &req.auth_params, link_token.expose());
        let lifetime = connection.policy.lifetime();
        let ctx = MessageContext {
            code: code.expose(),
            link: &link,
            send: send.as_str(),
            request_language: req.language.as_deref(),
            connection: connection.name.as_str(),
            application: &req.client.name,
            email: match &key.identifier {
                Identifier::Email(e) => Some(e.as_str()),
                Identifier::Phone(_) => None,
            },
            phone_number: match &key.identifier {
                Identifier::Phone(p) => Some(p.e164()),
                Identifier::Email(_) => None,
            },
            minutes: lifetime.as_secs().div_ceil(60),
        };
        let templates = &self.settings.templates;
        let (channel, rendered) = match connection.strategy {
            Strategy::Email => (Channel::Email, templates.render_email(req.client.id.as_str(), &ctx)?),
            Strategy::Sms => (Channel::Sms, templates.render_sms(req.client.id.as_str(), &ctx)?),
        };
        let message_id = MessageId(random_object_id(random));
        let plain = serde_json::to_vec(&rendered).context("serialising the message")?;
        let sealed = self.secrets().seal(random, &seal_context(&message_id), &plain);
        let expires_at = now + lifetime;
        let challenge = NewChallenge {
            id: random_object_id(random),
            code_hash: self.secrets().code_hash(&key, code.expose()),
            link_hash: Some(self.secrets().link_hash(&key, link_token.expose())),
            key: key.clone(),
            send,
            auth_params: req.auth_params,
            language: req.language.clone(),
            created_at: now,
            expires_at,
        };
        let message = OutboxMessage {
            id: message_id,
            channel,
            recipient: key.identifier.as_str().to_owned(),
            sealed: SealedMessage(sealed),
            created_at: now,
            expires_at,
        };
        let id = challenge.id.clone();
        let mut event = AuditEvent::new(AuditKind::CodeLinkSent, now);
        event.client_id = Some(key.client_id.0.clone());
        event.connection = Some(key.connection.0.clone());
        event.identifier = Some(key.identifier.masked());
        event.ip.clone_from(&req.ip);
        event.detail = Some(send.as_str().to_owned());
        // The message goes out from this replica: enqueued already claimed, so neither this worker
        // nor another one needs a claim write. Without room in the worker's queue (or with no
        // worker running here) it is enqueued unclaimed, for any worker's next claim.
        let wait_for_sms = channel == Channel::Sms && self.settings.sms_wait_first_attempt;
        let permit = if wait_for_sms { None } else { self.local.reserve() };
        let claimed_until = (wait_for_sms || permit.is_some()).then(|| now + self.settings.delivery.lease);
        // The challenge, its message and the audit record: one write.
        if self.ports.challenges.start(challenge, message.clone(), event, claimed_until).await?
            == sesame_ports::StartOutcome::Blocked
        {
            drop(permit);
            self.audit_blocked(&key, None, req.ip.clone(), "passwordless/start", now).await;
            return Err(StartError::Blocked);
        }
        // What this replica delivers itself: the message it holds the lease of, with its text.
        let handed = || delivery::Handed {
            claimed: ClaimedMessage { message, attempt: 1 },
            ready: Some((rendered, key.identifier.clone())),
        };
        if wait_for_sms {
            // Auth0 reports a provider's refusal of an SMS to the caller: try once, now.
            if let delivery::Delivered::Failed(reason) = self.deliver_one(handed()).await? {
                return Err(StartError::SmsProviderError(reason));
            }
        } else if let Some(permit) = permit {
            permit.send(handed());
        } else {
            delivery::wake(self);
        }
        crate::measures::started(key.connection.as_str(), send);
        tracing::info!(to = %key.identifier.masked(), send = send.as_str(), "code issued");
        Ok(Started { id, identifier: key.identifier, request_language: req.language })
    }
}

/// A link must carry an authorization request the client may make (exact callback, supported
/// response type and mode, PKCE for public clients using codes). A code start only has its
/// `redirect_uri` checked, if it has one (auth0.js sends its options along with every start).
fn check_auth_params(client: &Client, apis: &[crate::Api], params: &AuthParams, send: Send) -> Result<(), StartError> {
    let request = crate::authorize::AuthorizeParams::from_lookup(|k| params.get_str(k));
    if !send.is_link() {
        return match &request.redirect_uri {
            Some(uri) if !client.callback_allowed(uri) => {
                Err(StartError::BadAuthParams("redirect_uri is not an allowed callback URL of the client".into()))
            }
            _ => Ok(()),
        };
    }
    match crate::authorize::check_authorization(client, apis, &request) {
        Ok(_) => Ok(()),
        Err(crate::authorize::AuthorizeError::UntrustedRedirect) => Err(StartError::BadAuthParams(
            "redirect_uri must be one of the client's callback URLs (exact match)".into(),
        )),
        Err(crate::authorize::AuthorizeError::Redirect(r, _)) => Err(StartError::BadAuthParams(r.description)),
        Err(crate::authorize::AuthorizeError::Unavailable(e) | crate::authorize::AuthorizeError::Unexpected(e)) => {
            Err(StartError::Unexpected(e))
        }
    }
}
