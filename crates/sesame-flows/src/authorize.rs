//! The OIDC authorization response of a magic link (spec §7), authorization codes with PKCE,
//! and refresh-token rotation.

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sesame_domain::{Client, GrantType, SecretHash, Strategy, UserId};
use sesame_ports::{AuditEvent, AuditKind, AuthorizationCode, RefreshOutcome};
use subtle::ConstantTimeEq as _;

use crate::Sesame;
use crate::crypto::{random_b64, random_object_id};
use crate::tokens::{TokenIssueError, TokenRequest, TokenSet};

/// `response_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseType {
    Code,
    Token,
    IdToken,
    TokenIdToken,
}

impl ResponseType {
    pub fn parse(raw: &str) -> Option<Self> {
        let mut parts: Vec<&str> = raw.split_whitespace().collect();
        parts.sort_unstable();
        match parts.as_slice() {
            ["code"] => Some(Self::Code),
            ["token"] => Some(Self::Token),
            ["id_token"] => Some(Self::IdToken),
            ["id_token", "token"] => Some(Self::TokenIdToken),
            _ => None,
        }
    }

    fn returns_access_token(self) -> bool {
        matches!(self, Self::Token | Self::TokenIdToken)
    }

    fn returns_id_token(self) -> bool {
        matches!(self, Self::IdToken | Self::TokenIdToken)
    }
}

/// `response_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMode {
    Query,
    Fragment,
    FormPost,
}

impl ResponseMode {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "query" => Some(Self::Query),
            "fragment" => Some(Self::Fragment),
            "form_post" => Some(Self::FormPost),
            _ => None,
        }
    }
}

/// The authorization request carried by a link (or by auth0.js's redirect).
#[derive(Debug, Clone)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub response_mode: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub audience: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
}

impl AuthorizeParams {
    /// Reads the parameters by name (from a query, a form or a start's `authParams`).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            response_type: get("response_type"),
            response_mode: get("response_mode"),
            redirect_uri: get("redirect_uri"),
            scope: get("scope"),
            state: get("state"),
            nonce: get("nonce"),
            audience: get("audience"),
            code_challenge: get("code_challenge"),
            code_challenge_method: get("code_challenge_method"),
        }
    }
}

/// A checked authorization request.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub response_type: ResponseType,
    pub mode: ResponseMode,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub audience: Option<String>,
    pub code_challenge: Option<String>,
}

/// A refusal that may be sent back to the (trusted) redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirectable {
    pub error: &'static str,
    pub description: String,
}

/// Why an authorization request cannot go ahead.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    /// The redirect target is not registered (or missing): show an error page, never redirect.
    #[error("redirect_uri is not a registered callback of the client")]
    UntrustedRedirect,
    /// Anything else goes back to the redirect URI as `error` / `error_description` / `state`.
    #[error("{}", .0.description)]
    Redirect(Redirectable, Box<Authorization>),
    #[error("store unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// What a refused link or verify_redirect sends back to the app (`Ok`), or the error that may
/// not be redirected (`Err`).
fn link_refusal(e: crate::exchange::ExchangeError) -> Result<Redirectable, AuthorizeError> {
    use crate::exchange::ExchangeError as E;
    Ok(match e {
        E::RealmNotFound => redirectable("invalid_request", "Connection does not exist"),
        E::RealmDisabled => redirectable("invalid_request", "Connection is disabled"),
        E::GrantNotAllowed => redirectable("unauthorized_client", "Grant type not allowed for the client."),
        E::AudienceNotFound(aud) => redirectable("access_denied", format!("Service not found: {aud}")),
        E::WrongCode(Strategy::Email) => redirectable("unauthorized", "Wrong email or verification code."),
        E::WrongCode(Strategy::Sms) => redirectable("unauthorized", "Wrong phone number or verification code."),
        E::Exhausted => {
            redirectable("unauthorized", "You've reached the maximum number of attempts. Please try to login again.")
        }
        E::Expired => redirectable("unauthorized", "The verification code has expired. Please try to login again."),
        E::RateLimited => redirectable("too_many_requests", "Too many requests. Please try again later."),
        E::TooManyAttempts => {
            redirectable("too_many_attempts", "Too many failed attempts for this user. Please try again later.")
        }
        E::Blocked => redirectable("unauthorized", "user is blocked"),
        E::Unavailable(e) => return Err(AuthorizeError::Unavailable(e)),
        E::Unexpected(e) => return Err(AuthorizeError::Unexpected(e)),
    })
}

fn redirectable(error: &'static str, description: impl Into<String>) -> Redirectable {
    Redirectable { error, description: description.into() }
}

/// Checks an authorization request against the client (RFC 9700: exact redirect match, PKCE
/// S256 for public clients using codes; OIDC: a nonce for implicit id_tokens).
///
/// The `audience`, if any, must be one of `apis`: a token is never signed for an unknown one.
///
/// # Errors
/// `UntrustedRedirect` when the redirect target cannot be trusted; otherwise a redirectable error.
pub fn check_authorization(
    client: &Client,
    apis: &[crate::Api],
    p: &AuthorizeParams,
) -> Result<Authorization, AuthorizeError> {
    let redirect_uri = match &p.redirect_uri {
        Some(uri) if client.callback_allowed(uri) => uri.clone(),
        Some(_) => return Err(AuthorizeError::UntrustedRedirect),
        // No target given: the client's only callback is unambiguous; several are not.
        None => match client.callbacks.as_slice() {
            [only] => only.clone(),
            _ => return Err(AuthorizeError::UntrustedRedirect),
        },
    };
    let state = p.state.clone();
    let fallback = Authorization {
        response_type: ResponseType::Code,
        mode: ResponseMode::Query,
        redirect_uri: redirect_uri.clone(),
        scope: String::new(),
        state: state.clone(),
        nonce: None,
        audience: None,
        code_challenge: None,
    };
    let fail = |r: Redirectable, mode: ResponseMode| {
        Err(AuthorizeError::Redirect(r, Box::new(Authorization { mode, ..fallback.clone() })))
    };
    let response_type = match p.response_type.as_deref() {
        None | Some("") => {
            if p.code_challenge.is_some() || client.is_confidential() {
                ResponseType::Code
            } else {
                ResponseType::Token
            }
        }
        Some(raw) => match ResponseType::parse(raw) {
            Some(rt) => rt,
            None => {
                return fail(
                    redirectable("unsupported_response_type", format!("Unsupported response type: {raw}")),
                    ResponseMode::Query,
                );
            }
        },
    };
    let default_mode = if response_type == ResponseType::Code { ResponseMode::Query } else { ResponseMode::Fragment };
    let mode = match p.response_mode.as_deref() {
        None | Some("") => default_mode,
        Some(raw) => match ResponseMode::parse(raw) {
            // Tokens never go in a query string (OAuth 2.0 Multiple Response Types §5).
            Some(ResponseMode::Query) if response_type != ResponseType::Code => {
                return fail(
                    redirectable("invalid_request", "response_mode=query is not allowed for tokens"),
                    default_mode,
                );
            }
            Some(m) => m,
            None => {
                return fail(
                    redirectable("invalid_request", format!("Unsupported response mode: {raw}")),
                    default_mode,
                );
            }
        },
    };
    let grant = if response_type == ResponseType::Code { GrantType::AuthorizationCode } else { GrantType::Implicit };
    if !client.may_use(grant) {
        return fail(
            redirectable("unauthorized_client", format!("Grant type '{}' not allowed for the client.", grant.as_str())),
            mode,
        );
    }
    let code_challenge = match (&p.code_challenge, p.code_challenge_method.as_deref()) {
        (Some(c), Some("S256") | None) if response_type == ResponseType::Code => {
            if c.len() < 43 || c.len() > 128 {
                return fail(redirectable("invalid_request", "code_challenge must be 43 to 128 characters"), mode);
            }
            Some(c.clone())
        }
        (Some(_), Some(other)) if response_type == ResponseType::Code => {
            return fail(
                redirectable("invalid_request", format!("Unsupported code_challenge_method: {other} (use S256)")),
                mode,
            );
        }
        _ => None,
    };
    if response_type == ResponseType::Code
        && code_challenge.is_none()
        && !client.is_confidential()
        && client.require_pkce
    {
        return fail(
            redirectable("invalid_request", "PKCE (code_challenge with S256) is required for public clients"),
            mode,
        );
    }
    if response_type.returns_id_token() && p.nonce.as_deref().is_none_or(str::is_empty) {
        return fail(redirectable("invalid_request", "nonce is required when an id_token is returned"), mode);
    }
    let audience = p.audience.clone().filter(|a| !a.is_empty());
    if let Some(aud) = &audience
        && !apis.iter().any(|a| &a.identifier == aud)
    {
        return fail(redirectable("access_denied", format!("Service not found: {aud}")), mode);
    }
    Ok(Authorization {
        response_type,
        mode,
        redirect_uri,
        scope: p.scope.clone().unwrap_or_else(|| "openid".into()),
        state,
        nonce: p.nonce.clone(),
        audience,
        code_challenge,
    })
}

/// Opening a magic link (or auth0.js's verify_redirect with a typed code).
#[derive(Debug)]
pub struct LinkCompletion {
    pub client: Client,
    pub connection: String,
    pub email: Option<String>,
    pub phone_number: Option<String>,
    pub verification_code: String,
    pub authorization: Authorization,
    pub ip: Option<String>,
}

/// A proved code or link: who logged in, and the authorization request to answer.
#[derive(Debug)]
pub struct Proven {
    pub client: Client,
    pub user: sesame_domain::User,
    /// The request the proof answers: the link's own (stored with its start) or the one the
    /// typed code came with.
    pub authorization: Authorization,
    pub by_link: bool,
    /// The `authParams` stored with the start.
    pub stored: sesame_domain::AuthParams,
}

/// Why a proof was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    /// A wrong, used, expired or limited proof, or a blocked user.
    #[error(transparent)]
    Refused(crate::exchange::ExchangeError),
    #[error(transparent)]
    Authorize(AuthorizeError),
}

/// Where the browser goes next: `params` go in the query, the fragment, or an auto-posted form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationResponse {
    pub redirect_uri: String,
    pub mode: ResponseMode,
    pub params: Vec<(String, String)>,
}

impl AuthorizationResponse {
    /// An error response for a trusted redirect target.
    pub fn error(auth: &Authorization, r: &Redirectable) -> Self {
        let mut params =
            vec![("error".to_owned(), r.error.to_owned()), ("error_description".to_owned(), r.description.clone())];
        if let Some(state) = &auth.state {
            params.push(("state".into(), state.clone()));
        }
        Self { redirect_uri: auth.redirect_uri.clone(), mode: auth.mode, params }
    }
}

/// The `at_hash` of OIDC Core §3.2.2.10: the left half of SHA-256 of the access token.
pub fn at_hash(access_token: &str) -> String {
    let d = digest::digest(&digest::SHA256, access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&d.as_ref()[..16])
}

/// PKCE S256: `BASE64URL(SHA256(verifier)) == challenge`, compared in constant time.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let valid_chars = verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !(43..=128).contains(&verifier.len()) || !valid_chars {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref());
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

/// Why a token request with a code or a refresh token was refused.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("grant type not allowed for the client")]
    GrantNotAllowed(GrantType),
    #[error("{0}")]
    InvalidGrant(&'static str),
    /// The user is blocked (Auth0: 401 `unauthorized`, "user is blocked").
    #[error("user is blocked")]
    Blocked,
    #[error("rate limited")]
    RateLimited,
    /// Auth0's 403 `access_denied` (an audience that cannot be granted).
    #[error("{0}")]
    AccessDenied(String),
    #[error("store unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

crate::store_errors_into!(GrantError);

impl From<TokenIssueError> for GrantError {
    fn from(e: TokenIssueError) -> Self {
        match e {
            TokenIssueError::Store(s) => s.into(),
            TokenIssueError::Token(t) => Self::Unexpected(anyhow::Error::new(t)),
        }
    }
}

crate::store_errors_into!(AuthorizeError);

impl Sesame {
    /// Completes a magic link (or auth0.js's verify_redirect with a typed code): checks it on the
    /// same path as the OTP grant (limits, the per-identifier failure count, newest only, expiry,
    /// single use, tries), then answers the authorization request. A link token answers the
    /// authorization request of its own start (`authParams` stored with the challenge): the
    /// parameters it is opened with only decide where an error may go, so whoever holds a link
    /// cannot swap its PKCE challenge, redirect, state, scope or audience. A typed code answers
    /// the request it comes with (the browser that typed it made that request).
    ///
    /// # Errors
    /// A redirectable error for a wrong, used, expired or limited proof; `Unavailable` when a
    /// store is down.
    pub async fn complete_link(&self, req: LinkCompletion) -> Result<AuthorizationResponse, AuthorizeError> {
        let auth = req.authorization.clone();
        let proven = match self.prove(req, "verify_redirect").await {
            // A hosted login's link answers only through the hosted page (its start stored the
            // login's binding): with the binding stripped from the URL it would otherwise sign
            // in whoever opened it.
            Ok(p) if p.stored.get_str("sesame_login").is_some() => {
                return Err(AuthorizeError::Redirect(
                    redirectable("invalid_request", "This link belongs to a login page: open it as it was sent"),
                    Box::new(auth),
                ));
            }
            Ok(p) => p,
            Err(ProveError::Refused(e)) => {
                return Err(link_refusal(e).map_or_else(|e| e, |r| AuthorizeError::Redirect(r, Box::new(auth))));
            }
            Err(ProveError::Authorize(e)) => return Err(e),
        };
        let now = self.ports.clock.now();
        self.authorization_response(&proven.client, &proven.user, &proven.authorization, now).await
    }

    /// Checks a typed code or a link token and records the login (the user is made on first
    /// login), without answering anything yet: the magic link and the hosted login page both
    /// start here. `detail` names the path in the audit record of a typed code.
    ///
    /// # Errors
    /// `Refused` for a wrong, used, expired or limited proof or a blocked user; `Authorize` when
    /// a link's stored request no longer fits its client, or a store is down.
    pub async fn prove(&self, req: LinkCompletion, detail: &str) -> Result<Proven, ProveError> {
        let exchange = crate::exchange::OtpExchange {
            realm: req.connection.clone(),
            username: req.email.clone().or(req.phone_number.clone()).unwrap_or_default(),
            otp: req.verification_code.clone(),
            scope: None,
            audience: None,
            ip: req.ip.clone(),
            client: req.client,
        };
        let mut limit = None;
        let checked = self.check_otp(&exchange, crate::exchange::Presented::CodeOrLink, true, false, &mut limit).await;
        let crate::exchange::Checked { connection, key, challenge, by_link, .. } =
            checked.map_err(ProveError::Refused)?;
        let client = exchange.client;
        let stored = challenge.map(|c| c.challenge.auth_params.clone()).unwrap_or_default();
        let authorization = if by_link {
            let params = AuthorizeParams::from_lookup(|k| stored.get_str(k).filter(|v| !v.is_empty()));
            check_authorization(&client, &self.settings.apis, &params).map_err(ProveError::Authorize)?
        } else {
            req.authorization
        };
        let now = self.ports.clock.now();
        let new_id = UserId(format!("{}|{}", connection.strategy.as_str(), random_object_id(&*self.ports.random)));
        let user = self
            .ports
            .users
            .record_login(&connection.name, &key.identifier, new_id, now)
            .await
            .map_err(|e| ProveError::Authorize(e.into()))?;
        if user.blocked {
            self.audit_blocked(&key, Some(&user.id), exchange.ip.clone(), "magic link", now).await;
            return Err(ProveError::Refused(crate::exchange::ExchangeError::Blocked));
        }
        let mut event = AuditEvent::new(AuditKind::LoginSucceeded, now);
        event.client_id = Some(key.client_id.0.clone());
        event.connection = Some(key.connection.0.clone());
        event.identifier = Some(key.identifier.masked());
        event.ip = exchange.ip.clone();
        event.user_id = Some(user.id.0.clone());
        event.detail = Some(if by_link { "magic link" } else { detail }.into());
        self.audit(event).await;
        Ok(Proven { client, user, authorization, by_link, stored })
    }

    /// The authorization response for a user who has proved who they are (a code, a link, a
    /// login ticket or a hosted-login session): a single-use code, or the implicit tokens.
    ///
    /// # Errors
    /// `Unavailable` when a store is down.
    pub async fn authorize_user(
        &self,
        client: &Client,
        user: &sesame_domain::User,
        auth: &Authorization,
    ) -> Result<AuthorizationResponse, AuthorizeError> {
        self.authorization_response(client, user, auth, self.ports.clock.now()).await
    }

    /// `GET /authorize?login_ticket=…` (auth0.js after `/co/authenticate`): the ticket is single
    /// use, lives 60 s and is bound to its client.
    ///
    /// # Errors
    /// A redirectable `access_denied` for an unknown, used, expired or foreign ticket.
    pub async fn authorize_with_ticket(
        &self,
        client: &Client,
        ticket: &str,
        auth: Authorization,
    ) -> Result<AuthorizationResponse, AuthorizeError> {
        let now = self.ports.clock.now();
        let denied = |auth: &Authorization| {
            AuthorizeError::Redirect(
                redirectable("access_denied", "Invalid or expired login ticket"),
                Box::new(auth.clone()),
            )
        };
        let hash = self.secrets().token_hash("login_ticket", ticket);
        let Some(grant) = self.ports.grants.take_code(&hash, now).await? else {
            return Err(denied(&auth));
        };
        if grant.client_id != client.id {
            return Err(denied(&auth));
        }
        let Some(user) = self.ports.users.find_by_id(&grant.user_id).await? else {
            return Err(denied(&auth));
        };
        if user.blocked {
            return Err(AuthorizeError::Redirect(redirectable("unauthorized", "user is blocked"), Box::new(auth)));
        }
        self.authorization_response(client, &user, &auth, now).await
    }

    /// The authorization response for a user who just proved a code or link (or a login ticket).
    async fn authorization_response(
        &self,
        client: &Client,
        user: &sesame_domain::User,
        auth: &Authorization,
        now: time::OffsetDateTime,
    ) -> Result<AuthorizationResponse, AuthorizeError> {
        let mut params: Vec<(String, String)> = Vec::new();
        if auth.response_type == ResponseType::Code {
            let code = random_b64(&*self.ports.random, 32);
            self.ports
                .grants
                .save_code(AuthorizationCode {
                    code_hash: self.secrets().token_hash("authorization_code", &code),
                    client_id: client.id.clone(),
                    user_id: user.id.clone(),
                    redirect_uri: auth.redirect_uri.clone(),
                    scope: auth.scope.clone(),
                    audience: auth.audience.clone(),
                    nonce: auth.nonce.clone(),
                    code_challenge: auth.code_challenge.clone(),
                    // Single use within a minute (ASVS 10.4.2/10.4.3 at L3).
                    expires_at: now + time::Duration::seconds(60),
                })
                .await?;
            params.push(("code".into(), code));
        } else {
            let tokens = self
                .issue_tokens(TokenRequest {
                    client,
                    user,
                    scope: &auth.scope,
                    audience: auth.audience.as_deref(),
                    nonce: auth.nonce.as_deref(),
                    refresh_allowed: false,
                    implicit: true,
                    with_id_token: auth.response_type.returns_id_token(),
                    stored_access_token: None,
                })
                .await
                .map_err(|e| match GrantError::from(e) {
                    GrantError::Unavailable(e) => AuthorizeError::Unavailable(e),
                    other => AuthorizeError::Unexpected(anyhow::Error::new(other)),
                })?;
            if auth.response_type.returns_access_token() {
                params.push(("access_token".into(), tokens.access_token));
                params.push(("token_type".into(), "Bearer".into()));
                params.push(("expires_in".into(), tokens.expires_in.to_string()));
                if let Some(scope) = tokens.scope {
                    params.push(("scope".into(), scope));
                }
            }
            if let Some(id_token) = tokens.id_token {
                params.push(("id_token".into(), id_token));
            }
        }
        if let Some(state) = &auth.state {
            params.push(("state".into(), state.clone()));
        }
        Ok(AuthorizationResponse { redirect_uri: auth.redirect_uri.clone(), mode: auth.mode, params })
    }

    /// `grant_type=authorization_code`: single use, bound to client and redirect_uri, PKCE.
    ///
    /// # Errors
    /// `InvalidGrant` for a bad, used, expired or foreign code, a redirect_uri mismatch or a
    /// failed PKCE check.
    pub async fn exchange_code(
        &self,
        client: &Client,
        code: &str,
        redirect_uri: Option<&str>,
        code_verifier: Option<&str>,
    ) -> Result<TokenSet, GrantError> {
        if !client.may_use(GrantType::AuthorizationCode) {
            return Err(GrantError::GrantNotAllowed(GrantType::AuthorizationCode));
        }
        let now = self.ports.clock.now();
        let hash = self.secrets().token_hash("authorization_code", code);
        let Some(grant) = self.ports.grants.take_code(&hash, now).await? else {
            return Err(GrantError::InvalidGrant("Invalid authorization code"));
        };
        if grant.client_id != client.id {
            return Err(GrantError::InvalidGrant("Invalid authorization code"));
        }
        if redirect_uri != Some(grant.redirect_uri.as_str()) {
            return Err(GrantError::InvalidGrant("redirect_uri does not match the one of the authorization request"));
        }
        match (&grant.code_challenge, code_verifier) {
            (Some(challenge), Some(verifier)) if pkce_matches(verifier, challenge) => {}
            (Some(_), _) => return Err(GrantError::InvalidGrant("Failed to verify code verifier")),
            (None, Some(_)) => {
                return Err(GrantError::InvalidGrant("code_verifier given but no code_challenge was sent"));
            }
            (None, None) => {}
        }
        let user = self
            .ports
            .users
            .find_by_id(&grant.user_id)
            .await?
            .ok_or(GrantError::InvalidGrant("Invalid authorization code"))?;
        if user.blocked {
            return Err(GrantError::Blocked);
        }
        Ok(self
            .issue_tokens(TokenRequest {
                client,
                user: &user,
                scope: &grant.scope,
                audience: grant.audience.as_deref(),
                nonce: grant.nonce.as_deref(),
                refresh_allowed: true,
                implicit: false,
                with_id_token: true,
                stored_access_token: None,
            })
            .await?)
    }

    /// `grant_type=refresh_token`: rotates the token; a reused one revokes its family.
    ///
    /// # Errors
    /// `InvalidGrant` for an unknown, expired, revoked, reused or foreign refresh token.
    pub async fn refresh(&self, client: &Client, presented: &str) -> Result<TokenSet, GrantError> {
        if !client.may_use(GrantType::RefreshToken) {
            return Err(GrantError::GrantNotAllowed(GrantType::RefreshToken));
        }
        let now = self.ports.clock.now();
        let random = &*self.ports.random;
        let next_token = random_b64(random, 32);
        let next_hash: SecretHash = self.secrets().token_hash("refresh_token", &next_token);
        let next_expires_at = now + self.settings.refresh_token_lifetime;
        let presented_hash = self.secrets().token_hash("refresh_token", presented);
        let rotated =
            self.ports.grants.rotate_refresh(&client.id, &presented_hash, next_hash, next_expires_at, now).await?;
        let current = match rotated {
            RefreshOutcome::Rotated(current) => current,
            RefreshOutcome::Reused => {
                let mut event = AuditEvent::new(AuditKind::LoginFailed, now);
                event.client_id = Some(client.id.0.clone());
                event.detail = Some("refresh token reused: family revoked".into());
                self.audit(event).await;
                return Err(GrantError::InvalidGrant("Unknown or invalid refresh token."));
            }
            RefreshOutcome::Invalid => return Err(GrantError::InvalidGrant("Unknown or invalid refresh token.")),
        };
        let user = self
            .ports
            .users
            .find_by_id(&current.user_id)
            .await?
            .ok_or(GrantError::InvalidGrant("Unknown or invalid refresh token."))?;
        if user.blocked {
            // The presented token is spent already: a blocked user's family ends here.
            return Err(GrantError::Blocked);
        }
        let mut tokens = self
            .issue_tokens(TokenRequest {
                client,
                user: &user,
                scope: &current.scope,
                audience: current.audience.as_deref(),
                nonce: None,
                refresh_allowed: false,
                implicit: false,
                with_id_token: true,
                stored_access_token: None,
            })
            .await?;
        tokens.refresh_token = Some(next_token);
        Ok(tokens)
    }
}
