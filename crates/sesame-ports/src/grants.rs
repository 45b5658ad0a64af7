use async_trait::async_trait;
use sesame_domain::{ClientId, SecretHash, UserId};
use time::OffsetDateTime;

use crate::StoreError;

/// An authorization code (magic-link `response_type=code`), stored by hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuthorizationCode {
    pub code_hash: SecretHash,
    pub client_id: ClientId,
    pub user_id: UserId,
    pub redirect_uri: String,
    pub scope: String,
    pub audience: Option<String>,
    pub nonce: Option<String>,
    /// PKCE S256 challenge, when the authorization carried one.
    pub code_challenge: Option<String>,
    pub expires_at: OffsetDateTime,
}

/// An opaque access token (no `audience`), good only at `/userinfo`, stored by hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpaqueToken {
    pub token_hash: SecretHash,
    pub client_id: ClientId,
    pub user_id: UserId,
    pub scope: String,
    pub expires_at: OffsetDateTime,
}

/// A refresh token, stored by hash, in a family that rotation extends.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RefreshToken {
    pub token_hash: SecretHash,
    pub family_id: String,
    pub client_id: ClientId,
    pub user_id: UserId,
    pub scope: String,
    pub audience: Option<String>,
    pub expires_at: OffsetDateTime,
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The token was current: it is now spent and the new one is current. Carries the
    /// presented token's record.
    Rotated(RefreshToken),
    /// The token was already spent: the whole family is revoked.
    Reused,
    /// Unknown, expired or revoked.
    Invalid,
}

/// Authorization codes, opaque access tokens and refresh-token families.
///
/// Guarantees: a code is taken once (concurrent takes: one winner); presenting a spent refresh
/// token revokes its family, so the current one stops working too.
#[async_trait]
pub trait GrantStore: Send + Sync + std::fmt::Debug {
    async fn save_code(&self, code: AuthorizationCode) -> Result<(), StoreError>;
    /// Returns and deletes the code if it exists and is not expired.
    async fn take_code(&self, hash: &SecretHash, now: OffsetDateTime) -> Result<Option<AuthorizationCode>, StoreError>;
    async fn save_opaque(&self, token: OpaqueToken) -> Result<(), StoreError>;
    async fn find_opaque(&self, hash: &SecretHash, now: OffsetDateTime) -> Result<Option<OpaqueToken>, StoreError>;
    async fn save_refresh(&self, token: RefreshToken) -> Result<(), StoreError>;
    /// Revokes the family of the refresh token `presented` if it is `client`'s (RFC 7009: a
    /// client revokes only its own tokens). Returns whether a family was revoked.
    async fn revoke_refresh(&self, client: &ClientId, presented: &SecretHash) -> Result<bool, StoreError>;
    /// Spends `presented` and makes a new token current, atomically: `next_hash`, with the
    /// family, client, user, scope and audience of `presented`, expiring at `next_expires_at`
    /// or when `presented` does, whichever comes first (a family's lifetime is absolute:
    /// rotation never extends it).
    ///
    /// A token of another client than `client` is `Invalid` and left untouched: a client that
    /// merely holds someone else's token cannot spend it (nor revoke its family).
    async fn rotate_refresh(
        &self,
        client: &ClientId,
        presented: &SecretHash,
        next_hash: SecretHash,
        next_expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<RefreshOutcome, StoreError>;
}
