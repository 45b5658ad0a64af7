//! `POST /oauth/token` with the passwordless OTP grant: check-and-consume, find-or-create the
//! user, sign tokens.

use sesame_domain::{
    ChallengeKey, CheckOutcome, Client, ConnectionName, Email, GrantType, Identifier, PhoneNumber, Proof, Strategy,
    UserId,
};
use sesame_ports::{AuditEvent, AuditKind, LimitDecision, LimitRule, TokenError};

use crate::Sesame;
use crate::crypto::random_object_id;
use crate::limits::Limited;
use crate::measures::Exchange;
use crate::tokens::{TokenRequest, TokenSet};

/// An OTP exchange, after client authentication.
#[derive(Debug)]
pub struct OtpExchange {
    pub client: Client,
    pub realm: String,
    pub username: String,
    pub otp: String,
    pub scope: Option<String>,
    pub audience: Option<String>,
    pub ip: Option<String>,
}

/// Why an exchange was refused. Each maps to one of Auth0's token-endpoint errors.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("the client may not use the passwordless OTP grant")]
    GrantNotAllowed,
    #[error("the realm names no connection")]
    RealmNotFound,
    #[error("the realm is not enabled for this client")]
    RealmDisabled,
    /// Wrong, used or replaced code, or an identifier that cannot have a code.
    #[error("wrong code")]
    WrongCode(Strategy),
    #[error("too many wrong tries")]
    Exhausted,
    #[error("code expired")]
    Expired,
    #[error("unknown audience")]
    AudienceNotFound(String),
    /// Too many exchanges from this client IP.
    #[error("rate limited")]
    RateLimited,
    /// Too many failed tries for this identifier, across its codes.
    #[error("too many failed attempts")]
    TooManyAttempts,
    /// The user is blocked: the code was right, but no login.
    #[error("user is blocked")]
    Blocked,
    #[error("store unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

crate::store_errors_into!(ExchangeError);

impl From<TokenError> for ExchangeError {
    fn from(e: TokenError) -> Self {
        Self::Unexpected(anyhow::Error::new(e))
    }
}

impl Sesame {
    /// Exchanges a one-time code for tokens.
    ///
    /// # Errors
    /// See `ExchangeError`.
    #[tracing::instrument(skip_all, fields(client_id = %req.client.id.as_str(), realm = %req.realm))]
    pub async fn exchange_otp(&self, req: OtpExchange) -> Limited<TokenSet, ExchangeError> {
        let mut limit = None;
        let result = self.exchange_limited(req, &mut limit).await;
        Limited::new(result, limit)
    }

    /// The legacy `/passwordless/verify`: checks a code without consuming it (auth0.js then
    /// sends the same code to `/passwordless/verify_redirect`). Wrong tries count as usual.
    ///
    /// # Errors
    /// As `exchange_otp`.
    pub async fn verify_otp(&self, req: OtpExchange) -> Limited<(), ExchangeError> {
        let mut limit = None;
        let result = match self.check_otp(&req, Presented::Code, false, false, &mut limit).await {
            // A right code of a blocked user is no success either.
            Ok(Checked { connection, key, .. }) => match self.ports.users.find(&connection.name, &key.identifier).await
            {
                Ok(Some(user)) if user.blocked => {
                    let now = self.ports.clock.now();
                    self.audit_blocked(&key, Some(&user.id), req.ip.clone(), "passwordless/verify", now).await;
                    Err(ExchangeError::Blocked)
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e),
        };
        Limited::new(result, limit)
    }

    /// `POST /co/authenticate` (auth0.js `passwordlessLogin` from a page on another origin):
    /// checks the code like the OTP grant and answers a login ticket — single use, 60 s, bound
    /// to the client — that `GET /authorize` turns into the authorization response.
    ///
    /// # Errors
    /// As `exchange_otp`.
    pub async fn cross_origin_authenticate(&self, req: OtpExchange) -> Limited<String, ExchangeError> {
        let mut limit = None;
        let result = self.ticket_for(&req, &mut limit).await;
        Limited::new(result, limit)
    }

    async fn ticket_for(&self, req: &OtpExchange, limit: &mut Option<LimitDecision>) -> Result<String, ExchangeError> {
        // Browser logins (SPAs above all) come this way; the grant that matters is the one
        // `/authorize` checks for the response type, not the OTP grant of the token endpoint.
        let Checked { connection, key, .. } = self.check_otp(req, Presented::Code, true, false, limit).await?;
        let now = self.ports.clock.now();
        let random = &*self.ports.random;
        let new_id = UserId(format!("{}|{}", connection.strategy.as_str(), random_object_id(random)));
        let user = self.ports.users.record_login(&connection.name, &key.identifier, new_id, now).await?;
        if user.blocked {
            self.audit_blocked(&key, Some(&user.id), req.ip.clone(), "co/authenticate", now).await;
            return Err(ExchangeError::Blocked);
        }
        let ticket = crate::crypto::random_b64(random, 32);
        self.ports
            .grants
            .save_code(sesame_ports::AuthorizationCode {
                code_hash: self.secrets().token_hash("login_ticket", &ticket),
                client_id: req.client.id.clone(),
                user_id: user.id.clone(),
                redirect_uri: String::new(),
                scope: String::new(),
                audience: None,
                nonce: None,
                code_challenge: None,
                expires_at: now + time::Duration::seconds(60),
            })
            .await?;
        let mut event = AuditEvent::new(AuditKind::LoginSucceeded, now);
        event.client_id = Some(key.client_id.0.clone());
        event.identifier = Some(key.identifier.masked());
        event.user_id = Some(user.id.0.clone());
        event.detail = Some("co/authenticate".into());
        self.audit(event).await;
        Ok(ticket)
    }

    async fn exchange_limited(
        &self,
        req: OtpExchange,
        limit: &mut Option<LimitDecision>,
    ) -> Result<TokenSet, ExchangeError> {
        let now = self.ports.clock.now();
        let random = &*self.ports.random;
        // The opaque access token is made before the check, so that the check, the user, the
        // token and the event are one write (one statement on Postgres).
        let scope = req.scope.as_deref().unwrap_or("");
        let opaque = req.audience.is_none().then(|| crate::crypto::random_b64(random, 32));
        let access_token = opaque.as_ref().map(|token| sesame_ports::OpaqueToken {
            token_hash: self.secrets().token_hash("access_token", token),
            client_id: req.client.id.clone(),
            user_id: UserId(String::new()),
            scope: crate::tokens::granted_scope(&req.client, None, scope),
            expires_at: now + self.settings.access_token_lifetime,
        });
        let parts = LoginParts { new_user_suffix: random_object_id(random), access_token };
        let checked = self.check_otp_with(&req, Presented::Code, true, true, limit, Some(parts)).await?;
        let Checked { key, user, .. } = checked;
        let user = user.ok_or_else(|| ExchangeError::Unexpected(anyhow::anyhow!("the login wrote no user")))?;
        if user.blocked {
            self.audit_blocked(&key, Some(&user.id), req.ip.clone(), "oauth/token", now).await;
            return Err(ExchangeError::Blocked);
        }
        Ok(self
            .issue_tokens(TokenRequest {
                client: &req.client,
                user: &user,
                scope,
                audience: req.audience.as_deref(),
                nonce: None,
                refresh_allowed: true,
                implicit: false,
                with_id_token: true,
                stored_access_token: opaque,
            })
            .await?)
    }

    /// Everything up to and including the code check, for every path that checks a code or a
    /// link (`/oauth/token`, `/co/authenticate`, `/passwordless/verify`, magic links): grant,
    /// realm, audience, limits, the atomic check (consuming or not), and counting a failure.
    ///
    /// A failure counts against the identifier only when it was a try against a live code (a
    /// wrong proof, or the one that used the last attempt): tries where no code exists, or
    /// against a dead or expired one, cannot guess anything, so they must not lock out an owner
    /// who has not even asked for a code yet.
    pub(crate) async fn check_otp(
        &self,
        req: &OtpExchange,
        presented: Presented,
        consume: bool,
        otp_grant: bool,
        limit: &mut Option<LimitDecision>,
    ) -> Result<Checked, ExchangeError> {
        self.check_otp_with(req, presented, consume, otp_grant, limit, None).await
    }

    /// As `check_otp`; with `login`, an accepted code is consumed and the login recorded in the
    /// same step (`LoginStore::check_and_login`): the user, the access token, the event.
    async fn check_otp_with(
        &self,
        req: &OtpExchange,
        presented: Presented,
        consume: bool,
        otp_grant: bool,
        limit: &mut Option<LimitDecision>,
        login: Option<LoginParts>,
    ) -> Result<Checked, ExchangeError> {
        if otp_grant && !req.client.may_use(GrantType::PasswordlessOtp) {
            return Err(ExchangeError::GrantNotAllowed);
        }
        let name = ConnectionName::new(req.realm.clone());
        let connection = self.ports.connections.find(&name).await?.ok_or(ExchangeError::RealmNotFound)?;
        if !req.client.connection_enabled(&connection.name) {
            return Err(ExchangeError::RealmDisabled);
        }
        let strategy = connection.strategy;
        if let Some(aud) = &req.audience
            && !self.settings.apis.iter().any(|a| &a.identifier == aud)
        {
            return Err(ExchangeError::AudienceNotFound(aud.clone()));
        }
        // An identifier that does not parse cannot hold a code: same answer as a wrong code.
        let identifier = match strategy {
            Strategy::Email => Email::parse(&req.username).map(Identifier::Email),
            Strategy::Sms => PhoneNumber::parse(&req.username).map(Identifier::Phone),
        }
        .map_err(|_| ExchangeError::WrongCode(strategy))?;
        let key = ChallengeKey { client_id: req.client.id.clone(), connection: connection.name.clone(), identifier };
        let secret = req.otp.trim();
        // A typed code is digits; our links carry a 256-bit token.
        let by_link = presented == Presented::CodeOrLink && !secret.bytes().all(|b| b.is_ascii_digit());
        let proof = if by_link {
            Proof::Link(self.secrets().link_hash(&key, secret))
        } else {
            Proof::Code(self.secrets().code_hash(&key, secret))
        };
        let now = self.ports.clock.now();
        let limits = &self.settings.limits.for_connection(&connection.limits);
        let tag = self.limit_tag(&key);
        let decision = self
            .limit(&limits.exchange_rules(&tag, req.ip.as_deref()), limits.fail.exchange, now)
            .await
            .map_err(ExchangeError::Unavailable)?;
        limit.clone_from(&decision);
        if decision.as_ref().is_some_and(|d| !d.allowed) {
            // Which bucket refused? Only on this path is it worth a second look.
            let failures = self.check_or_floor(&[LimitRule { cost: 0, ..limits.failure_rule(&tag) }], now).await;
            let mut event = AuditEvent::new(AuditKind::RateLimited, now);
            event.client_id = Some(key.client_id.0.clone());
            event.identifier = Some(key.identifier.masked());
            event.ip = req.ip.clone();
            event.detail = Some(if by_link { "magic link" } else { "code check" }.into());
            self.audit(event).await;
            crate::measures::exchanged(Exchange::RateLimited, by_link);
            return Err(match failures {
                Ok(f) if !f.allowed => ExchangeError::TooManyAttempts,
                _ => ExchangeError::RateLimited,
            });
        }
        let (outcome, user) = match login {
            Some(parts) => {
                let mut success = AuditEvent::new(AuditKind::LoginSucceeded, now);
                success.client_id = Some(key.client_id.0.clone());
                success.connection = Some(key.connection.0.clone());
                success.identifier = Some(key.identifier.masked());
                success.ip = req.ip.clone();
                let write = sesame_ports::LoginWrite {
                    key: key.clone(),
                    proof,
                    now,
                    new_user_id: UserId(format!("{}|{}", strategy.as_str(), parts.new_user_suffix)),
                    access_token: parts.access_token,
                    event: success,
                };
                match self.ports.logins.check_and_login(write).await? {
                    sesame_ports::LoginOutcome::LoggedIn(user) => (None, Some(user)),
                    sesame_ports::LoginOutcome::Refused(outcome) => (Some(outcome), None),
                }
            }
            None => (Some(self.ports.challenges.check(&key, proof, consume, now).await?), None),
        };
        let Some(outcome) = outcome else {
            crate::measures::exchanged(Exchange::Ok, by_link);
            return Ok(Checked { connection, key, challenge: None, by_link, user });
        };
        let mut event = AuditEvent::new(AuditKind::LoginFailed, now);
        event.client_id = Some(key.client_id.0.clone());
        event.connection = Some(key.connection.0.clone());
        event.identifier = Some(key.identifier.masked());
        event.ip = req.ip.clone();
        let (err, counts, measured) = match outcome {
            CheckOutcome::Accepted(challenge) => {
                crate::measures::exchanged(Exchange::Ok, by_link);
                return Ok(Checked { connection, key, challenge: Some(challenge), by_link, user: None });
            }
            CheckOutcome::Wrong { attempts_left: 0 } => (ExchangeError::Exhausted, true, Exchange::Exhausted),
            CheckOutcome::Wrong { .. } => (ExchangeError::WrongCode(strategy), true, Exchange::Wrong),
            CheckOutcome::NotFound => (ExchangeError::WrongCode(strategy), false, Exchange::Burnt),
            CheckOutcome::Exhausted => (ExchangeError::Exhausted, false, Exchange::Exhausted),
            CheckOutcome::Expired => (ExchangeError::Expired, false, Exchange::Expired),
        };
        crate::measures::exchanged(measured, by_link);
        if counts {
            // Count the failure against the identifier, across all its codes; with the shared
            // limiter down, the local one counts it.
            self.count_failure(&limits.failure_rule(&tag), now).await;
        }
        event.detail = Some(if by_link { format!("magic link: {err}") } else { err.to_string() });
        self.audit(event).await;
        Err(err)
    }
}

/// How a secret may be presented at a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presented {
    /// Only a typed code (the token endpoint and its relatives).
    Code,
    /// A typed code or a magic link's token (`/passwordless/verify_redirect`).
    CodeOrLink,
}

/// A proof that was accepted.
#[derive(Debug)]
pub(crate) struct Checked {
    pub connection: sesame_domain::Connection,
    pub key: ChallengeKey,
    /// The challenge as stored, with the `authParams` of its start (not read back when the
    /// login was recorded in the same step).
    pub challenge: Option<Box<sesame_domain::Challenge>>,
    /// Whether the proof was a link token (not a typed code).
    pub by_link: bool,
    /// The user, when the login was recorded in the same step as the check.
    pub user: Option<Box<sesame_domain::User>>,
}

/// What the one-step login writes besides the check.
#[derive(Debug)]
pub(crate) struct LoginParts {
    /// A first login's user gets `<strategy>|<suffix>`.
    pub new_user_suffix: String,
    pub access_token: Option<sesame_ports::OpaqueToken>,
}
