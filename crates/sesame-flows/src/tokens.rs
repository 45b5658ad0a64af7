//! What goes into tokens (spec §11): id_token claims by scope, access tokens as JWTs for an
//! API or opaque for `/userinfo`, refresh tokens for `offline_access`.

use serde_json::{Map, Value, json};
use sesame_domain::{Client, User};
use sesame_ports::{OpaqueToken, RefreshToken, StoreError, TokenError, TokenKind};

use crate::Sesame;
use crate::crypto::random_b64;

/// The token response body of `/oauth/token`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenSet {
    pub access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub expires_in: u64,
    pub token_type: &'static str,
}

/// What a token response is for.
#[derive(Debug)]
pub struct TokenRequest<'a> {
    pub client: &'a Client,
    pub user: &'a User,
    pub scope: &'a str,
    pub audience: Option<&'a str>,
    pub nonce: Option<&'a str>,
    /// False for the implicit magic-link response, which never carries a refresh token.
    pub refresh_allowed: bool,
    /// The implicit response of a magic link: 7200 s access tokens (Auth0) and `at_hash`.
    pub implicit: bool,
    /// Whether an id_token is wanted (with `openid` in the scope).
    pub with_id_token: bool,
    /// An opaque access token stored already, with the login that made it (the OTP grant's
    /// one-step write): used as it is instead of making and storing one.
    pub stored_access_token: Option<String>,
}

/// The scopes OpenID Connect defines: any client may ask for them.
pub const OIDC_SCOPES: &[&str] = &["openid", "profile", "email", "phone", "address", "offline_access"];

/// What of `requested` a token may carry: the OIDC scopes, and of an API's own scopes only those
/// the client holds for that audience (`Client::api_scopes`). Anything else is dropped, as Auth0
/// drops scopes that are not granted; the response's `scope` says what was granted.
pub fn granted_scope(client: &Client, audience: Option<&str>, requested: &str) -> String {
    let held = audience.map_or(&[][..], |aud| client.api_scopes(aud));
    let mut granted: Vec<&str> = Vec::new();
    for s in requested.split_whitespace() {
        if (OIDC_SCOPES.contains(&s) || held.iter().any(|h| h == s)) && !granted.contains(&s) {
            granted.push(s);
        }
    }
    granted.join(" ")
}

fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split_whitespace().any(|s| s == wanted)
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// The user's claims that the scope allows (OIDC Core §5.4, Auth0's profile shape).
pub fn profile_claims(user: &User, scope: &str) -> Map<String, Value> {
    let mut claims = Map::new();
    if has_scope(scope, "profile") {
        claims.insert("name".into(), json!(user.name()));
        claims.insert("nickname".into(), json!(user.nickname()));
        if let Some(picture) = &user.profile.picture {
            claims.insert("picture".into(), json!(picture));
        }
        claims.insert("updated_at".into(), json!(rfc3339(user.updated_at)));
    }
    if has_scope(scope, "email")
        && let Some(email) = user.email()
    {
        claims.insert("email".into(), json!(email));
        claims.insert("email_verified".into(), json!(user.email_verified));
    }
    if has_scope(scope, "phone")
        && let Some(phone) = user.phone_number()
    {
        claims.insert("phone_number".into(), json!(phone));
        claims.insert("phone_verified".into(), json!(user.phone_verified));
    }
    claims
}

/// `{ns}user_metadata` and `{ns}app_metadata`, as an Auth0 Action would add them.
pub fn metadata_claims(user: &User, namespace: &str) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert(format!("{namespace}user_metadata"), Value::Object(user.user_metadata.clone()));
    claims.insert(format!("{namespace}app_metadata"), Value::Object(user.app_metadata.clone()));
    claims
}

impl Sesame {
    /// The namespace of the metadata claims for tokens of `audience`, when its API asks for them.
    fn metadata_namespace(&self, audience: Option<&str>) -> Option<&str> {
        let aud = audience?;
        self.settings.apis.iter().find(|a| a.identifier == aud)?.metadata_claims.as_deref()
    }

    /// Signs and stores the tokens of one successful login.
    ///
    /// # Errors
    /// When signing or storing fails.
    pub async fn issue_tokens(&self, req: TokenRequest<'_>) -> Result<TokenSet, TokenIssueError> {
        let now = self.ports.clock.now();
        let iat = now.unix_timestamp();
        let settings = &self.settings;
        let random = &*self.ports.random;
        let scope = granted_scope(req.client, req.audience, req.scope);
        let openid = has_scope(&scope, "openid");
        let access_ttl =
            if req.implicit { std::time::Duration::from_secs(7200) } else { settings.access_token_lifetime };

        let access_token = match req.audience {
            Some(aud) => {
                let audience = if openid { json!([aud, format!("{}userinfo", settings.issuer)]) } else { json!(aud) };
                let claims = json!({
                    "iss": settings.issuer,
                    "sub": req.user.id.as_str(),
                    "aud": audience,
                    "iat": iat,
                    "exp": iat + i64::try_from(access_ttl.as_secs()).unwrap_or(86_400),
                    "scope": scope,
                    "azp": req.client.id.as_str(),
                    "client_id": req.client.id.as_str(),
                    "jti": random_b64(random, 16),
                });
                let mut claims = claims;
                if let (Some(ns), Value::Object(map)) = (self.metadata_namespace(req.audience), &mut claims) {
                    map.extend(metadata_claims(req.user, ns));
                }
                self.ports.tokens.sign(TokenKind::AccessToken, &claims).await?
            }
            None if req.stored_access_token.is_some() => req.stored_access_token.clone().unwrap_or_default(),
            None => {
                let token = random_b64(random, 32);
                self.ports
                    .grants
                    .save_opaque(OpaqueToken {
                        token_hash: self.secrets().token_hash("access_token", &token),
                        client_id: req.client.id.clone(),
                        user_id: req.user.id.clone(),
                        scope: scope.clone(),
                        expires_at: now + access_ttl,
                    })
                    .await?;
                token
            }
        };

        let id_token = if openid && req.with_id_token {
            let mut claims = Map::new();
            claims.insert("iss".into(), json!(settings.issuer));
            claims.insert("sub".into(), json!(req.user.id.as_str()));
            claims.insert("aud".into(), json!(req.client.id.as_str()));
            claims.insert("iat".into(), json!(iat));
            claims.insert(
                "exp".into(),
                json!(iat + i64::try_from(settings.id_token_lifetime.as_secs()).unwrap_or(36_000)),
            );
            claims.insert("sid".into(), json!(random_b64(random, 16)));
            if let Some(nonce) = req.nonce {
                claims.insert("nonce".into(), json!(nonce));
            }
            if req.implicit {
                claims.insert("at_hash".into(), json!(crate::authorize::at_hash(&access_token)));
            }
            claims.extend(profile_claims(req.user, &scope));
            if let Some(ns) = self.metadata_namespace(req.audience) {
                claims.extend(metadata_claims(req.user, ns));
            }
            Some(self.ports.tokens.sign(TokenKind::IdToken, &Value::Object(claims)).await?)
        } else {
            None
        };

        let offline_ok = match req.audience {
            None => true,
            Some(aud) => settings.apis.iter().any(|a| a.identifier == aud && a.allow_offline_access),
        };
        let refresh_token = if req.refresh_allowed && offline_ok && has_scope(&scope, "offline_access") {
            let token = random_b64(random, 32);
            self.ports
                .grants
                .save_refresh(RefreshToken {
                    token_hash: self.secrets().token_hash("refresh_token", &token),
                    family_id: random_b64(random, 16),
                    client_id: req.client.id.clone(),
                    user_id: req.user.id.clone(),
                    scope: scope.clone(),
                    audience: req.audience.map(str::to_owned),
                    expires_at: now + settings.refresh_token_lifetime,
                })
                .await?;
            Some(token)
        } else {
            None
        };

        Ok(TokenSet {
            access_token,
            id_token,
            refresh_token,
            scope: (!scope.is_empty()).then_some(scope),
            expires_in: access_ttl.as_secs(),
            token_type: "Bearer",
        })
    }
}

/// Signing or storing a token failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenIssueError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TokenIssueError> for crate::exchange::ExchangeError {
    fn from(e: TokenIssueError) -> Self {
        match e {
            TokenIssueError::Store(s) => s.into(),
            TokenIssueError::Token(t) => t.into(),
        }
    }
}
