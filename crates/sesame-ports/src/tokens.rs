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
