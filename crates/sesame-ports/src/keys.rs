use async_trait::async_trait;
use time::OffsetDateTime;

use crate::StoreError;

/// The life of a signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Signs new tokens. Exactly one key is active.
    Active,
    /// No longer signs; still published until every token it signed has expired.
    Retiring { until: OffsetDateTime },
    /// Gone from the JWKS.
    Retired,
}

/// A signing key as stored. `private_key` is sealed (encrypted) by its owner before it gets here.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub alg: String,
    pub private_key: Vec<u8>,
    pub public_jwk: serde_json::Value,
    pub created_at: OffsetDateTime,
    pub state: KeyState,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Signing keys, shared by every replica.
///
/// Guarantee: after `activate`, `active` returns the new key everywhere, and the previous one
/// is `Retiring` (still in `published`) until its `until`.
#[async_trait]
pub trait KeyStore: Send + Sync + std::fmt::Debug {
    async fn active(&self) -> Result<Option<SigningKeyRecord>, StoreError>;
    /// Active and retiring keys at `now`: what the JWKS shows.
    async fn published(&self, now: OffsetDateTime) -> Result<Vec<SigningKeyRecord>, StoreError>;
    /// Adds `key` as the active key; the previously active one retires at `retire_until`.
    async fn activate(&self, key: SigningKeyRecord, retire_until: OffsetDateTime) -> Result<(), StoreError>;
    /// Takes a key out of the JWKS now. Returns whether it existed; the active key cannot be retired.
    async fn retire(&self, kid: &str) -> Result<bool, StoreError>;
}
