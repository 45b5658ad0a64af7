use crate::{ConnectionName, SecretHash};

/// An application's public identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ClientId(pub String);

impl ClientId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Auth0's application types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppType {
    Native,
    Spa,
    RegularWeb,
    NonInteractive,
}

impl AppType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Spa => "spa",
            Self::RegularWeb => "regular_web",
            Self::NonInteractive => "non_interactive",
        }
    }
}

/// How a client proves who it is at the token endpoint (and at start, when confidential).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    None,
    ClientSecretPost,
    ClientSecretBasic,
    PrivateKeyJwt,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretPost => "client_secret_post",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// The grants a client may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum GrantType {
    #[serde(rename = "http://auth0.com/oauth/grant-type/passwordless/otp")]
    PasswordlessOtp,
    #[serde(rename = "authorization_code")]
    AuthorizationCode,
    #[serde(rename = "implicit")]
    Implicit,
    #[serde(rename = "refresh_token")]
    RefreshToken,
    /// Machine to machine: a confidential client's own token for an API (no user).
    #[serde(rename = "client_credentials")]
    ClientCredentials,
}

impl GrantType {
    pub const PASSWORDLESS_OTP: &'static str = "http://auth0.com/oauth/grant-type/passwordless/otp";

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            Self::PASSWORDLESS_OTP => Some(Self::PasswordlessOtp),
            "authorization_code" => Some(Self::AuthorizationCode),
            "implicit" => Some(Self::Implicit),
            "refresh_token" => Some(Self::RefreshToken),
            "client_credentials" => Some(Self::ClientCredentials),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordlessOtp => Self::PASSWORDLESS_OTP,
            Self::AuthorizationCode => "authorization_code",
            Self::Implicit => "implicit",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }
}

/// An application registered with Sesame.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Client {
    pub id: ClientId,
    pub name: String,
    pub app_type: AppType,
    pub auth_method: AuthMethod,
    /// Keyed hash of the client secret; `None` for public clients.
    pub secret_hash: Option<SecretHash>,
    pub connections: Vec<ConnectionName>,
    pub callbacks: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub grant_types: Vec<GrantType>,
    /// PEM or JWK public keys for `private_key_jwt`.
    pub public_keys: Vec<String>,
    /// The scopes of each API (by its identifier) that this client's access tokens may carry,
    /// beyond the OpenID Connect ones. An API the client has no entry for grants it none.
    #[serde(default)]
    pub api_scopes: std::collections::BTreeMap<String, Vec<String>>,
    /// Whether this confidential client's `auth0-forwarded-for` header is believed as the end
    /// user's IP (Auth0's "Trust Token Endpoint IP Header"). Off unless set.
    #[serde(default)]
    pub trust_forwarded_for: bool,
    /// Where `/v2/logout` may send the browser back to (exact match, as the callbacks).
    #[serde(default)]
    pub allowed_logout_urls: Vec<String>,
    /// Whether this public client must send PKCE (S256) with `response_type=code`, in
    /// `/authorize` and in a magic link's `authParams`. On by default (RFC 9700); off restores
    /// Auth0's behaviour for an app that sends none (docs/migrate-from-auth0.md).
    #[serde(default = "yes")]
    pub require_pkce: bool,
}

fn yes() -> bool {
    true
}

impl Client {
    /// A confidential client must authenticate; public ones (native, SPA) cannot keep a secret.
    pub fn is_confidential(&self) -> bool {
        self.auth_method != AuthMethod::None
    }

    pub fn connection_enabled(&self, name: &ConnectionName) -> bool {
        self.connections.contains(name)
    }

    /// SPAs may never use the OTP grant (Auth0), whatever their grant list says.
    pub fn may_use(&self, grant: GrantType) -> bool {
        let spa_forbidden = self.app_type == AppType::Spa && grant == GrantType::PasswordlessOtp;
        !spa_forbidden && self.grant_types.contains(&grant)
    }

    /// The scopes of `api` this client may be granted.
    pub fn api_scopes(&self, api: &str) -> &[String] {
        self.api_scopes.get(api).map_or(&[], Vec::as_slice)
    }

    /// Exact string match against the registered callbacks (RFC 9700 §2.1).
    pub fn callback_allowed(&self, redirect_uri: &str) -> bool {
        self.callbacks.iter().any(|c| c == redirect_uri)
    }

    /// Exact string match against the registered logout URLs.
    pub fn logout_url_allowed(&self, return_to: &str) -> bool {
        self.allowed_logout_urls.iter().any(|c| c == return_to)
    }
}
