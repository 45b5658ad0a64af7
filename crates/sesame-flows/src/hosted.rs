//! The hosted login page's state: the browser session (a sealed cookie), the pending login of
//! one browser (a sealed cookie too), and the approval a magic link leaves for the browser that
//! asked for it. Nothing here is HTTP: `sesame-api` renders the pages and sets the cookies.
//!
//! - A **session** is sealed (AES-256-GCM, bound to its purpose) with the user's id and its
//!   times: no store row, nothing to read per request but the user (blocked or deleted users
//!   are refused at once). Logout clears it in the browser; its lifetime bounds the rest.
//! - A **pending login** remembers, in the browser that typed the address, which connection and
//!   identifier the code went to, and a random login id. The pages carry only the authorization
//!   request; the address never travels in a URL.
//! - An **approval** is what opening the magic link leaves behind: an opaque grant keyed by the
//!   login id's hash (the link carries that hash, never the id), holding the user. Only the
//!   browser holding the login id can turn it into a session.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sesame_domain::{Client, User, UserId};
use sesame_ports::{AuditEvent, AuditKind, AuthorizationCode, OpaqueToken};
use time::OffsetDateTime;

use crate::Sesame;
use crate::authorize::{Authorization, AuthorizationResponse, AuthorizeError, Redirectable};
use crate::crypto::random_b64;

const SESSION: &str = "hosted-session:v1";
const PENDING: &str = "hosted-login:v1";
/// How long an approval waits for the browser that asked.
const APPROVAL_SECS: i64 = 600;

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Session {
    #[serde(rename = "u")]
    pub user_id: String,
    /// When the user last proved a code or link (Unix seconds).
    #[serde(rename = "a")]
    pub auth_time: i64,
    #[serde(rename = "e")]
    pub expires_at: i64,
}

/// A login this browser started: where the code went, and the id its approval waits under.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingLogin {
    #[serde(rename = "l")]
    pub login_id: String,
    #[serde(rename = "k")]
    pub client_id: String,
    #[serde(rename = "c")]
    pub connection: String,
    #[serde(rename = "i")]
    pub identifier: String,
    #[serde(rename = "e")]
    pub expires_at: i64,
}

impl Sesame {
    fn seal_value<T: serde::Serialize>(&self, context: &str, value: &T) -> String {
        // Serialising these plain structs cannot fail.
        let plain = serde_json::to_vec(value).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(self.secrets().seal(&*self.ports.random, context, &plain))
    }

    fn open_value<T: serde::de::DeserializeOwned>(&self, context: &str, sealed: &str) -> Option<T> {
        let raw = URL_SAFE_NO_PAD.decode(sealed.trim()).ok()?;
        let plain = self.secrets().unseal(context, &raw).ok()?;
        serde_json::from_slice(&plain).ok()
    }

    /// A session cookie's value for `user`, living `lifetime`.
    pub fn seal_session(&self, user: &UserId, lifetime: time::Duration) -> String {
        let now = self.ports.clock.now();
        let session = Session {
            user_id: user.0.clone(),
            auth_time: now.unix_timestamp(),
            expires_at: (now + lifetime).unix_timestamp(),
        };
        self.seal_value(SESSION, &session)
    }

    /// The session a cookie holds, if it is ours and alive.
    pub fn open_session(&self, cookie: &str) -> Option<Session> {
        let s: Session = self.open_value(SESSION, cookie)?;
        (s.expires_at > self.ports.clock.now().unix_timestamp()).then_some(s)
    }

    /// A new pending login (its id is random; its hash goes into the link).
    pub fn new_pending(
        &self,
        client: &Client,
        connection: &str,
        identifier: &str,
        lifetime: time::Duration,
    ) -> PendingLogin {
        PendingLogin {
            login_id: random_b64(&*self.ports.random, 32),
            client_id: client.id.0.clone(),
            connection: connection.to_owned(),
            identifier: identifier.to_owned(),
            expires_at: (self.ports.clock.now() + lifetime).unix_timestamp(),
        }
    }

    /// A pending login's cookie value.
    pub fn seal_pending(&self, pending: &PendingLogin) -> String {
        self.seal_value(PENDING, pending)
    }

    /// The pending login a cookie holds, if it is ours and alive.
    pub fn open_pending(&self, cookie: &str) -> Option<PendingLogin> {
        let p: PendingLogin = self.open_value(PENDING, cookie)?;
        (p.expires_at > self.ports.clock.now().unix_timestamp()).then_some(p)
    }

    /// What a magic link carries to name its login: a hash of the login id, never the id.
    pub fn login_binding(&self, login_id: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.secrets().token_hash("hosted-login", login_id).0)
    }

    /// Leaves the proved user for the browser whose login `binding` names (a magic link was
    /// opened, on this browser or after a confirmation on another).
    ///
    /// # Errors
    /// `Unavailable` when the store is down.
    pub async fn approve_login(&self, client: &Client, binding: &str, user: &User) -> Result<(), AuthorizeError> {
        let now = self.ports.clock.now();
        let expires_at = now + time::Duration::seconds(APPROVAL_SECS);
        // Two grants: one the waiting page may look at as often as it likes, and one that is
        // taken (single use) when the browser continues.
        self.ports
            .grants
            .save_opaque(OpaqueToken {
                token_hash: self.secrets().token_hash("hosted-approval", binding),
                client_id: client.id.clone(),
                user_id: user.id.clone(),
                scope: String::new(),
                expires_at,
            })
            .await?;
        self.ports
            .grants
            .save_code(AuthorizationCode {
                code_hash: self.secrets().token_hash("hosted-approval-use", binding),
                client_id: client.id.clone(),
                user_id: user.id.clone(),
                redirect_uri: String::new(),
                scope: String::new(),
                audience: None,
                nonce: None,
                code_challenge: None,
                expires_at,
            })
            .await?;
        Ok(())
    }

    /// Whether a magic link approved this browser's pending login yet (looks, takes nothing).
    ///
    /// # Errors
    /// `Unavailable` when the store is down.
    pub async fn is_approved(&self, client: &Client, pending: &PendingLogin) -> Result<bool, AuthorizeError> {
        let now = self.ports.clock.now();
        let hash = self.secrets().token_hash("hosted-approval", &self.login_binding(&pending.login_id));
        Ok(self.ports.grants.find_opaque(&hash, now).await?.is_some_and(|g| g.client_id == client.id))
    }

    /// Takes the approval a magic link left for this browser's pending login (once: a second
    /// continue finds nothing). Only a user of the pending login's own connection and address,
    /// on a connection of the client, is answered.
    ///
    /// # Errors
    /// `Unavailable` when the store is down.
    pub async fn take_approval(&self, client: &Client, pending: &PendingLogin) -> Result<Option<User>, AuthorizeError> {
        let now = self.ports.clock.now();
        let hash = self.secrets().token_hash("hosted-approval-use", &self.login_binding(&pending.login_id));
        let Some(grant) = self.ports.grants.take_code(&hash, now).await? else {
            return Ok(None);
        };
        if grant.client_id != client.id {
            return Ok(None);
        }
        let user = self.ports.users.find_by_id(&grant.user_id).await?;
        Ok(user.filter(|u| {
            u.connection.as_str() == pending.connection
                && u.identifier.as_str() == pending.identifier
                && client.connection_enabled(&u.connection)
        }))
    }

    /// A second `/authorize` in a signed-in browser: the user of the session, unless they were
    /// deleted (`None`: show the page) or blocked (an error for the app).
    ///
    /// # Errors
    /// `Redirect` for a blocked user; `Unavailable` when a store is down.
    pub async fn session_user(
        &self,
        client: &Client,
        session: &Session,
        auth: &Authorization,
    ) -> Result<Option<User>, AuthorizeError> {
        let Some(user) = self.ports.users.find_by_id(&UserId(session.user_id.clone())).await? else {
            return Ok(None);
        };
        // A session answers only clients whose connections take its user: another client
        // asks for a login of its own.
        if !client.connection_enabled(&user.connection) {
            return Ok(None);
        }
        if user.blocked {
            return Err(AuthorizeError::Redirect(
                Redirectable { error: "unauthorized", description: "user is blocked".into() },
                Box::new(auth.clone()),
            ));
        }
        Ok(Some(user))
    }

    /// Answers `auth` for a user signed in by their session (audited as a login).
    ///
    /// # Errors
    /// `Unavailable` when a store is down.
    pub async fn authorize_by_session(
        &self,
        client: &Client,
        user: &User,
        auth: &Authorization,
        ip: Option<String>,
    ) -> Result<AuthorizationResponse, AuthorizeError> {
        let now: OffsetDateTime = self.ports.clock.now();
        let mut event = AuditEvent::new(AuditKind::LoginSucceeded, now);
        event.client_id = Some(client.id.0.clone());
        event.ip = ip;
        event.user_id = Some(user.id.0.clone());
        event.detail = Some("session".into());
        self.audit(event).await;
        self.authorize_user(client, user, auth).await
    }
}
