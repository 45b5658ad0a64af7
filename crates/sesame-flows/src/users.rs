//! The users behind the logins, for operators and backends: Auth0's Management API use cases
//! (create, change, block, delete) and the machine-to-machine `client_credentials` grant that
//! gives a backend its token for that API.

use serde_json::{Map, Value, json};
use sesame_domain::{Client, ConnectionName, GrantType, Identifier, Strategy, User, UserId, UserPatch};
use sesame_ports::{AuditEvent, AuditKind, LimitDecision, StoreError, TokenKind};

use crate::Sesame;
use crate::authorize::GrantError;
use crate::crypto::{random_b64, random_object_id};
use crate::tokens::TokenSet;

/// Why a change to a user was refused.
#[derive(Debug, thiserror::Error)]
pub enum UserAdminError {
    #[error("the user does not exist")]
    NotFound,
    #[error("the connection does not exist")]
    ConnectionNotFound,
    /// The identifier belongs to another user of the connection.
    #[error("the user already exists")]
    Conflict,
    /// A field does not fit the user or its connection.
    #[error("{0}")]
    Invalid(String),
    #[error("store unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl From<StoreError> for UserAdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(_) => Self::Conflict,
            StoreError::TooLarge(_) => Self::Invalid(
                "Payload validation error: 'user_metadata and app_metadata must each stay at most 16 KiB'.".into(),
            ),
            StoreError::Unavailable(e) => {
                crate::measures::dependency_error("store");
                Self::Unavailable(e)
            }
            other => Self::Unexpected(anyhow::Error::new(other)),
        }
    }
}

/// A user to create (`POST /api/v2/users`, `sesame user create`).
#[derive(Debug, Clone)]
pub struct NewUser {
    pub connection: ConnectionName,
    pub identifier: Identifier,
    /// The rest (verified flags, blocked, profile, metadata), as a patch over a fresh user.
    pub patch: UserPatch,
}

/// Who made a change, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub client_id: Option<String>,
    pub ip: Option<String>,
}

fn identifier_fits(strategy: Strategy, identifier: &Identifier) -> bool {
    matches!((strategy, identifier), (Strategy::Email, Identifier::Email(_)) | (Strategy::Sms, Identifier::Phone(_)))
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

impl Sesame {
    /// Auth0's Management API audience: `https://{domain}/api/v2/`.
    pub fn management_audience(&self) -> String {
        format!("{}api/v2/", self.settings.issuer)
    }

    /// Takes one Management API call from `client_id`'s budget (fails open to the replica's
    /// floor, as exchanges do). `Ok(Some(d))` with `!d.allowed` is a refusal.
    ///
    /// # Errors
    /// When neither the limiter nor the floor can answer.
    pub async fn management_limit(&self, client_id: &str) -> Result<Option<LimitDecision>, anyhow::Error> {
        let limits = &self.settings.limits;
        self.limit(&limits.management_rules(client_id), limits.fail.exchange, self.ports.clock.now()).await
    }

    async fn audit_change(&self, actor: &Actor, user: &UserId, what: &str) {
        let mut event = AuditEvent::new(AuditKind::ManagementApi, self.ports.clock.now());
        event.client_id.clone_from(&actor.client_id);
        event.ip.clone_from(&actor.ip);
        event.user_id = Some(user.0.clone());
        event.detail = Some(what.to_owned());
        self.audit(event).await;
    }

    /// Creates a user who has not logged in yet.
    ///
    /// # Errors
    /// `ConnectionNotFound`, `Invalid` (an address for an SMS connection…), `Conflict`.
    pub async fn create_user(&self, new: NewUser, actor: &Actor) -> Result<User, UserAdminError> {
        let connection =
            self.ports.connections.find(&new.connection).await?.ok_or(UserAdminError::ConnectionNotFound)?;
        if !identifier_fits(connection.strategy, &new.identifier) {
            return Err(UserAdminError::Invalid(match connection.strategy {
                Strategy::Email => "Payload validation error: 'Missing required property: email'.".into(),
                Strategy::Sms => "Payload validation error: 'Missing required property: phone_number'.".into(),
            }));
        }
        // Microseconds, as Postgres keeps them: the answer equals what a later GET reads.
        let now = self.ports.clock.now();
        let now = now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000).unwrap_or(now);
        let id = UserId(format!("{}|{}", connection.strategy.as_str(), random_object_id(&*self.ports.random)));
        let mut user = User::new(id, connection.name.clone(), new.identifier, now);
        user.apply(&UserPatch { identifier: None, ..new.patch }, now);
        user.updated_at = now;
        self.ports.users.create(&user).await?;
        self.audit_change(actor, &user.id, "Create a User").await;
        Ok(user)
    }

    /// Applies `patch` atomically. A new address or number must fit the user's connection, and
    /// is unverified unless the patch says otherwise (as at Auth0).
    ///
    /// # Errors
    /// `NotFound`, `Invalid`, `Conflict` (the identifier belongs to someone else).
    pub async fn update_user(&self, id: &UserId, mut patch: UserPatch, actor: &Actor) -> Result<User, UserAdminError> {
        if let Some(identifier) = &patch.identifier {
            let user = self.ports.users.find_by_id(id).await?.ok_or(UserAdminError::NotFound)?;
            let strategy = match user.identifier {
                Identifier::Email(_) => Strategy::Email,
                Identifier::Phone(_) => Strategy::Sms,
            };
            if !identifier_fits(strategy, identifier) {
                return Err(UserAdminError::Invalid(match strategy {
                    Strategy::Email => "Cannot set phone_number on a user of an email connection".into(),
                    Strategy::Sms => "Cannot set email on a user of an sms connection".into(),
                }));
            }
            if *identifier != user.identifier {
                match identifier {
                    Identifier::Email(_) => {
                        patch.email_verified.get_or_insert(false);
                    }
                    Identifier::Phone(_) => {
                        patch.phone_verified.get_or_insert(false);
                    }
                }
            }
        }
        let now = self.ports.clock.now();
        let user = self.ports.users.update(id, &patch, now).await?.ok_or(UserAdminError::NotFound)?;
        let what = match patch.blocked {
            Some(true) => "Update a User (blocked)",
            Some(false) => "Update a User (unblocked)",
            None => "Update a User",
        };
        self.audit_change(actor, id, what).await;
        Ok(user)
    }

    /// Deletes the user and everything held about them (see `UserStore::delete`); the deletion
    /// itself is logged without the user's id.
    ///
    /// # Errors
    /// `NotFound` when there is no such user.
    pub async fn delete_user(&self, id: &UserId, actor: &Actor) -> Result<(), UserAdminError> {
        if !self.ports.users.delete(id).await? {
            return Err(UserAdminError::NotFound);
        }
        // Who deleted someone, and when; not whom: nothing naming the user may outlive them.
        let mut event = AuditEvent::new(AuditKind::ManagementApi, self.ports.clock.now());
        event.client_id.clone_from(&actor.client_id);
        event.ip.clone_from(&actor.ip);
        event.detail = Some("Delete a User".into());
        self.audit(event).await;
        Ok(())
    }

    /// Everything Sesame holds about one user, for a subject-access request: the user, and its
    /// audit events (newest first, at most `events`).
    ///
    /// # Errors
    /// `NotFound`, or the store failing.
    pub async fn export_user(&self, id: &UserId, events: u64) -> Result<Value, UserAdminError> {
        let user = self.ports.users.find_by_id(id).await?.ok_or(UserAdminError::NotFound)?;
        let (log, _) = self.ports.audit.for_user(id.as_str(), 0, events).await?;
        Ok(json!({
            "user": user_json(&user),
            "logs": log.iter().map(|e| json!({
                "date": rfc3339(e.at),
                "kind": e.kind,
                "client_id": e.client_id,
                "connection": e.connection,
                "ip": e.ip,
                "detail": e.detail,
            })).collect::<Vec<_>>(),
        }))
    }

    /// Revokes `presented`'s refresh-token family if it is `client`'s; anything else changes
    /// nothing (RFC 7009 §2.2: the answer is the same).
    ///
    /// # Errors
    /// The store failing.
    pub async fn revoke_refresh_token(&self, client: &Client, presented: &str) -> Result<(), StoreError> {
        let hash = self.secrets().token_hash("refresh_token", presented);
        if self.ports.grants.revoke_refresh(&client.id, &hash).await? {
            let mut event = AuditEvent::new(AuditKind::ManagementApi, self.ports.clock.now());
            event.client_id = Some(client.id.0.clone());
            event.detail = Some("Revoke a refresh token".into());
            self.audit(event).await;
        }
        Ok(())
    }

    /// `grant_type=client_credentials`: a confidential client's own access token for an API
    /// it holds scopes of (Auth0's client grant). A requested scope the client does not hold is
    /// dropped; none requested grants all it holds.
    ///
    /// # Errors
    /// `GrantNotAllowed` for a public client or one without the grant; `AccessDenied` without
    /// an audience, for an unknown one, or one the client holds nothing of.
    pub async fn client_credentials(
        &self,
        client: &Client,
        audience: Option<&str>,
        scope: Option<&str>,
    ) -> Result<TokenSet, GrantError> {
        if !client.is_confidential() || !client.may_use(GrantType::ClientCredentials) {
            return Err(GrantError::GrantNotAllowed(GrantType::ClientCredentials));
        }
        let Some(audience) = audience.filter(|a| !a.is_empty()) else {
            return Err(GrantError::AccessDenied(
                "No audience parameter was provided, and no default audience has been configured".into(),
            ));
        };
        let known =
            audience == self.management_audience() || self.settings.apis.iter().any(|a| a.identifier == audience);
        if !known {
            return Err(GrantError::AccessDenied(format!("Service not found: {audience}")));
        }
        let Some(held) = client.api_scopes.get(audience) else {
            return Err(GrantError::AccessDenied(format!(
                "Client is not authorized to access \"{audience}\". You need to create a \"client-grant\" associated to this API."
            )));
        };
        let granted: Vec<&str> = match scope.map(str::trim).filter(|s| !s.is_empty()) {
            None => held.iter().map(String::as_str).collect(),
            Some(requested) => {
                let mut granted = Vec::new();
                for s in requested.split_whitespace() {
                    if held.iter().any(|h| h == s) && !granted.contains(&s) {
                        granted.push(s);
                    }
                }
                granted
            }
        };
        if granted.is_empty() && !held.is_empty() {
            return Err(GrantError::AccessDenied(format!(
                "Client has not been granted scopes: {}",
                scope.unwrap_or_default().trim()
            )));
        }
        let scope = granted.join(" ");
        let now = self.ports.clock.now();
        let limits = &self.settings.limits;
        let decision = self
            .limit(&limits.client_credentials_rules(client.id.as_str()), limits.fail.exchange, now)
            .await
            .map_err(GrantError::Unavailable)?;
        if decision.as_ref().is_some_and(|d| !d.allowed) {
            return Err(GrantError::RateLimited);
        }
        let iat = now.unix_timestamp();
        let ttl = self.settings.access_token_lifetime;
        let claims = json!({
            "iss": self.settings.issuer,
            "sub": format!("{}@clients", client.id.as_str()),
            "aud": audience,
            "iat": iat,
            "exp": iat + i64::try_from(ttl.as_secs()).unwrap_or(86_400),
            "scope": scope,
            "gty": "client-credentials",
            "azp": client.id.as_str(),
            "jti": random_b64(&*self.ports.random, 16),
        });
        let access_token = self
            .ports
            .tokens
            .sign(TokenKind::AccessToken, &claims)
            .await
            .map_err(|e| GrantError::Unexpected(anyhow::Error::new(e)))?;
        let mut event = AuditEvent::new(AuditKind::ClientCredentials, now);
        event.client_id = Some(client.id.0.clone());
        event.detail = Some(audience.to_owned());
        self.audit(event).await;
        Ok(TokenSet {
            access_token,
            id_token: None,
            refresh_token: None,
            scope: Some(scope),
            expires_in: ttl.as_secs(),
            token_type: "Bearer",
        })
    }
}

/// A user in Auth0's Management API shape.
pub fn user_json(user: &User) -> Value {
    let mut body = Map::new();
    body.insert("user_id".into(), json!(user.id.as_str()));
    let provider = match user.identifier {
        Identifier::Email(_) => "email",
        Identifier::Phone(_) => "sms",
    };
    if let Some(email) = user.email() {
        body.insert("email".into(), json!(email));
        body.insert("email_verified".into(), json!(user.email_verified));
    }
    if let Some(phone) = user.phone_number() {
        body.insert("phone_number".into(), json!(phone));
        body.insert("phone_verified".into(), json!(user.phone_verified));
    }
    body.insert("name".into(), json!(user.name()));
    body.insert("nickname".into(), json!(user.nickname()));
    if let Some(picture) = &user.profile.picture {
        body.insert("picture".into(), json!(picture));
    }
    body.insert(
        "identities".into(),
        json!([{
            "connection": user.connection.as_str(),
            "provider": provider,
            "user_id": user.id.local(),
            "isSocial": false,
        }]),
    );
    body.insert("created_at".into(), json!(rfc3339(user.created_at)));
    body.insert("updated_at".into(), json!(rfc3339(user.updated_at)));
    if let Some(last) = user.last_login {
        body.insert("last_login".into(), json!(rfc3339(last)));
    }
    body.insert("logins_count".into(), json!(user.logins_count));
    body.insert("blocked".into(), json!(user.blocked));
    body.insert("user_metadata".into(), Value::Object(user.user_metadata.clone()));
    body.insert("app_metadata".into(), Value::Object(user.app_metadata.clone()));
    Value::Object(body)
}
