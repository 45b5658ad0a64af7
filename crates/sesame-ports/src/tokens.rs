use async_trait::async_trait;

/// Which kind of JWT is signed (it sets the `typ` header: RFC 8725 §3.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    IdToken,
    /// An access token for an API (`typ: at+jwt`, RFC 9068).
    AccessToken,
}

/// Signing failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token could not be verified: {0}")]
    Invalid(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

/// Signs tokens with the active key and publishes the verification keys.
#[async_trait]
pub trait TokenIssuer: Send + Sync + std::fmt::Debug {
    /// Signs `claims` (a JSON object) as a JWT of `kind`, with the active key's `kid`.
    async fn sign(&self, kind: TokenKind, claims: &serde_json::Value) -> Result<String, TokenError>;
    /// Verifies a JWT this issuer signed (any published key) and returns its claims.
    /// The caller checks `aud`, `iss` and the rest.
    async fn verify(&self, token: &str) -> Result<serde_json::Value, TokenError>;
    /// The JWKS document: `{"keys": [...]}`.
    async fn jwks(&self) -> Result<serde_json::Value, TokenError>;
}

/// What a client assertion must satisfy (RFC 7523 §3, Auth0's private_key_jwt rules).
#[derive(Debug, Clone)]
pub struct AssertionCheck<'a> {
    pub client_id: &'a str,
    /// The client's registered public keys (PEM, certificate or JWK text).
    pub public_keys: &'a [String],
    /// Accepted `aud` values: the issuer (trailing slash) and the token endpoint URL.
    pub audiences: &'a [String],
    pub now: time::OffsetDateTime,
}

/// A verified assertion: its `jti` must now be remembered until `remember_until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClientAssertion {
    pub jti: String,
    pub remember_until: time::OffsetDateTime,
}

/// Why an assertion was refused (the text never repeats the token).
#[derive(Debug, thiserror::Error)]
#[error("client assertion refused: {0}")]
pub struct AssertionRejected(pub String);

/// Verifies `private_key_jwt` client assertions against the client's registered keys only.
pub trait ClientAssertionVerifier: Send + Sync + std::fmt::Debug {
    /// # Errors
    /// When the assertion breaks any rule: size, algorithm, key, signature, claims, lifetime.
    fn verify(&self, assertion: &str, check: &AssertionCheck<'_>)
    -> Result<VerifiedClientAssertion, AssertionRejected>;
}
