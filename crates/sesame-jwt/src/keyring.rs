//! Signing keys kept in the `KeyStore` and shared by every replica: one active key signs, older
//! ones stay in the JWKS until the tokens they signed have expired. Private keys are stored
//! sealed (AES-256-GCM under a key-encryption key, bound to the kid). Each replica reloads the
//! ring every `refresh`, and at once when it meets an unknown `kid`, so a rotation needs no
//! restart; signing itself never waits on the store.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use aws_lc_rs::aead;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde_json::{Value, json};
use sesame_ports::{Clock, KeyState, KeyStore, SigningKeyRecord, TokenError, TokenIssuer, TokenKind};
use time::OffsetDateTime;

use crate::RsaSigningKey;

/// Encrypts private keys at rest.
pub struct KeyEncryptionKey(aead::LessSafeKey);

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey(***)")
    }
}

impl KeyEncryptionKey {
    /// From 32 secret bytes.
    ///
    /// # Errors
    /// When `bytes` is not 32 bytes long.
    pub fn new(bytes: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(bytes.len() == 32, "the key-encryption key must be 32 bytes");
        let key = aead::UnboundKey::new(&aead::AES_256_GCM, bytes).map_err(|_| anyhow::anyhow!("bad key"))?;
        Ok(Self(aead::LessSafeKey::new(key)))
    }

    fn seal(&self, kid: &str, plain: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; aead::NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| anyhow::anyhow!("random"))?;
        let mut buf = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(kid.as_bytes()),
                &mut buf,
            )
            .map_err(|_| anyhow::anyhow!("sealing a signing key"))?;
        let mut out = nonce.to_vec();
        out.extend(buf);
        Ok(out)
    }

    fn open(&self, kid: &str, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        anyhow::ensure!(sealed.len() > aead::NONCE_LEN, "sealed key too short");
        let (nonce, body) = sealed.split_at(aead::NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| anyhow::anyhow!("nonce"))?;
        let mut buf = body.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, aead::Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| anyhow::anyhow!("signing key {kid} cannot be opened: wrong key-encryption key?"))?;
        Ok(plain.to_vec())
    }
}

struct Loaded {
    /// Active first, then the retiring ones.
    keys: Vec<Arc<RsaSigningKey>>,
    at: Instant,
}

/// The signing keys of the store, cached.
pub struct KeyRing {
    store: Arc<dyn KeyStore>,
    kek: KeyEncryptionKey,
    clock: Arc<dyn Clock>,
    refresh: Duration,
    loaded: RwLock<Loaded>,
    reloading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("refresh", &self.refresh).finish_non_exhaustive()
    }
}

/// A key as listed by `sesame keys list`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: String,
    pub state: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub retire_at: Option<OffsetDateTime>,
}

fn record(key: &RsaSigningKey, kek: &KeyEncryptionKey, now: OffsetDateTime) -> anyhow::Result<SigningKeyRecord> {
    Ok(SigningKeyRecord {
        kid: key.kid().to_owned(),
        alg: "RS256".into(),
        private_key: kek.seal(key.kid(), key.private_pem().as_bytes())?,
        public_jwk: key.public_jwk().clone(),
        created_at: now,
        state: KeyState::Active,
    })
}

impl KeyRing {
    /// Opens the ring; when the store has no active key, `initial` (a configured PEM) or a new
    /// key becomes the active one.
    ///
    /// # Errors
    /// When the store is unreachable or a stored key cannot be opened.
    pub async fn open(
        store: Arc<dyn KeyStore>,
        kek: KeyEncryptionKey,
        clock: Arc<dyn Clock>,
        refresh: Duration,
        initial: Option<RsaSigningKey>,
    ) -> anyhow::Result<Self> {
        if store.active().await.context("reading the active signing key")?.is_none() {
            let key = match initial {
                Some(k) => k,
                None => RsaSigningKey::generate()?,
            };
            let now = clock.now();
            store.activate(record(&key, &kek, now)?, now).await.context("storing the first signing key")?;
            tracing::info!(kid = key.kid(), "signing key stored as the active key");
        }
        let ring = Self {
            store,
            kek,
            clock,
            refresh,
            loaded: RwLock::new(Loaded { keys: Vec::new(), at: Instant::now() }),
            reloading: tokio::sync::Mutex::new(()),
        };
        ring.reload().await?;
        Ok(ring)
    }

    /// Reads the published keys again.
    ///
    /// # Errors
    /// When the store is unreachable or a key cannot be opened.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let _one_at_a_time = self.reloading.lock().await;
        let now = self.clock.now();
        let records = self.store.published(now).await.context("reading signing keys")?;
        let cached: Vec<Arc<RsaSigningKey>> = self.read().keys.clone();
        let mut keys = Vec::with_capacity(records.len());
        for r in records
            .iter()
            .filter(|r| r.state == KeyState::Active)
            .chain(records.iter().filter(|r| r.state != KeyState::Active))
        {
            if let Some(k) = cached.iter().find(|k| k.kid() == r.kid) {
                keys.push(Arc::clone(k));
                continue;
            }
            let pem =
                String::from_utf8(self.kek.open(&r.kid, &r.private_key)?).context("stored key is not PEM text")?;
            keys.push(Arc::new(RsaSigningKey::from_pem(&pem)?));
        }
        anyhow::ensure!(!keys.is_empty(), "no active signing key in the store");
        let mut loaded = self.loaded.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        *loaded = Loaded { keys, at: Instant::now() };
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Loaded> {
        self.loaded.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn fresh(&self) {
        if self.read().at.elapsed() >= self.refresh
            && let Err(e) = self.reload().await
        {
            // Keep signing with the keys we have; the store may be back next time.
            tracing::warn!(error = ?e, "signing keys could not be reloaded");
        }
    }

    /// Makes a new key active; the current one stays published until `retire_until`.
    ///
    /// # Errors
    /// When the store is unreachable.
    pub async fn rotate(&self, retire_until: OffsetDateTime) -> anyhow::Result<String> {
        let key = RsaSigningKey::generate()?;
        let now = self.clock.now();
        self.store.activate(record(&key, &self.kek, now)?, retire_until).await?;
        self.reload().await?;
        Ok(key.kid().to_owned())
    }

    /// Takes a retiring key out of the JWKS now.
    ///
    /// # Errors
    /// When the store is unreachable.
    pub async fn retire(&self, kid: &str) -> anyhow::Result<bool> {
        let retired = self.store.retire(kid).await?;
        self.reload().await?;
        Ok(retired)
    }

    /// The keys the JWKS shows, for `sesame keys list`.
    ///
    /// # Errors
    /// When the store is unreachable.
    pub async fn list(&self) -> anyhow::Result<Vec<KeyInfo>> {
        let now = self.clock.now();
        Ok(self
            .store
            .published(now)
            .await?
            .into_iter()
            .map(|r| {
                let (state, retire_at) = match r.state {
                    KeyState::Active => ("active", None),
                    KeyState::Retiring { until } => ("retiring", Some(until)),
                    KeyState::Retired => ("retired", None),
                };
                KeyInfo { kid: r.kid, alg: r.alg, state: state.into(), created_at: r.created_at, retire_at }
            })
            .collect())
    }
}

#[async_trait]
impl TokenIssuer for KeyRing {
    async fn sign(&self, kind: TokenKind, claims: &Value) -> Result<String, TokenError> {
        self.fresh().await;
        let key = self.read().keys.first().cloned().ok_or_else(|| anyhow::anyhow!("no signing key"))?;
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid().to_owned());
        header.typ = Some(match kind {
            TokenKind::IdToken => "JWT".into(),
            TokenKind::AccessToken => "at+jwt".into(),
        });
        jsonwebtoken::encode(&header, claims, key.encoding()).map_err(|e| TokenError::Unexpected(e.into()))
    }

    async fn verify(&self, token: &str) -> Result<Value, TokenError> {
        self.fresh().await;
        let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(TokenError::Invalid("unexpected algorithm".into()));
        }
        let kid = header.kid.ok_or_else(|| TokenError::Invalid("no kid".into()))?;
        let find = |ring: &Self| ring.read().keys.iter().find(|k| k.kid() == kid).cloned();
        let key = match find(self) {
            Some(k) => k,
            None => {
                // Another replica may have rotated: look again once.
                let _ = self.reload().await;
                find(self).ok_or_else(|| TokenError::Invalid("unknown kid".into()))?
            }
        };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_aud = false;
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Value>(token, key.decoding(), &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        Ok(data.claims)
    }

    async fn jwks(&self) -> Result<Value, TokenError> {
        self.fresh().await;
        Ok(json!({"keys": self.read().keys.iter().map(|k| k.public_jwk().clone()).collect::<Vec<_>>()}))
    }
}
