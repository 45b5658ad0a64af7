//! Signing keys kept in the `KeyStore` and shared by every replica: one active key signs, older
//! ones stay in the JWKS until the tokens they signed have expired. Private keys are stored
//! sealed (AES-256-GCM under a key-encryption key, bound to the kid). Each replica reloads the
//! ring every `refresh`, and when it meets an unknown `kid` (at most once per
//! [`UNKNOWN_KID_RELOAD_GAP`], so tokens with made-up kids cannot turn every request into a
//! store read), so a rotation needs no restart; signing itself never waits on the store or on
//! a reload in progress.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_trait::async_trait;
use aws_lc_rs::aead;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Value, json};
use sesame_ports::{Clock, KeyState, KeyStore, SigningKeyRecord, TokenError, TokenIssuer, TokenKind};
use time::OffsetDateTime;

use crate::RsaSigningKey;

/// Shortest time between two reloads caused by a token whose `kid` is unknown.
pub const UNKNOWN_KID_RELOAD_GAP: Duration = Duration::from_secs(5);

/// Encrypts private keys at rest. It may carry an older key that only opens: keys sealed under
/// it stay readable while new ones are sealed under the current key.
pub struct KeyEncryptionKey {
    current: aead::LessSafeKey,
    opens_only: Option<aead::LessSafeKey>,
}

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
        Ok(Self { current: aead::LessSafeKey::new(key), opens_only: None })
    }

    /// This key, also opening what `older` sealed (after a change of how the key is derived).
    #[must_use]
    pub fn also_opening(mut self, older: Self) -> Self {
        self.opens_only = Some(older.current);
        self
    }

    fn seal(&self, kid: &str, plain: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; aead::NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| anyhow::anyhow!("random"))?;
        let mut buf = plain.to_vec();
        self.current
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
        let nonce = nonce.as_ref().to_owned();
        for key in std::iter::once(&self.current).chain(self.opens_only.as_ref()) {
            let mut buf = body.to_vec();
            let once = aead::Nonce::assume_unique_for_key(nonce);
            if let Ok(plain) = key.open_in_place(once, aead::Aad::from(kid.as_bytes()), &mut buf) {
                return Ok(plain.to_vec());
            }
        }
        anyhow::bail!("signing key {kid} cannot be opened: wrong key-encryption key?")
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
    /// Held during a reload; holds when the last ones were tried (whether they worked or not).
    reloading: tokio::sync::Mutex<Tries>,
}

struct Tries {
    last: Instant,
    /// The last reload an unknown `kid` caused.
    for_unknown_kid: Option<Instant>,
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
            reloading: tokio::sync::Mutex::new(Tries { last: Instant::now(), for_unknown_kid: None }),
        };
        ring.reload().await?;
        Ok(ring)
    }

    /// Reads the published keys again.
    ///
    /// # Errors
    /// When the store is unreachable or a key cannot be opened.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let mut tried = self.reloading.lock().await;
        self.reload_holding(&mut tried).await
    }

    async fn reload_holding(&self, tried: &mut Tries) -> anyhow::Result<()> {
        tried.last = Instant::now();
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

    /// Reloads when `refresh` has passed since the last try, unless a reload is already under
    /// way: then the keys at hand serve (signing never waits).
    async fn fresh(&self) {
        if self.read().at.elapsed() < self.refresh {
            return;
        }
        let Ok(mut tried) = self.reloading.try_lock() else { return };
        if tried.last.elapsed() < self.refresh {
            return;
        }
        if let Err(e) = self.reload_holding(&mut tried).await {
            // Keep signing with the keys we have; the store may be back next time.
            tracing::warn!(error = ?e, "signing keys could not be reloaded");
        }
    }

    /// Reloads for a `kid` not in the ring, at most once per [`UNKNOWN_KID_RELOAD_GAP`].
    async fn look_for_new_keys(&self) {
        let mut tried = self.reloading.lock().await;
        if tried.for_unknown_kid.is_some_and(|at| at.elapsed() < UNKNOWN_KID_RELOAD_GAP) {
            return;
        }
        tried.for_unknown_kid = Some(Instant::now());
        if let Err(e) = self.reload_holding(&mut tried).await {
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
        key.sign(kind, claims)
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
                // Another replica may have rotated: look again (rate-limited).
                self.look_for_new_keys().await;
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use base64::Engine as _;
    use sesame_ports::{StoreError, SystemClock};

    use super::*;

    /// A key store that counts its reads and can be made to hang.
    #[derive(Debug, Default)]
    struct CountingStore {
        keys: Mutex<Vec<SigningKeyRecord>>,
        reads: AtomicUsize,
        gate: tokio::sync::RwLock<()>,
    }

    #[async_trait]
    impl KeyStore for CountingStore {
        async fn active(&self) -> Result<Option<SigningKeyRecord>, StoreError> {
            Ok(self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner).first().cloned())
        }
        async fn published(&self, _: OffsetDateTime) -> Result<Vec<SigningKeyRecord>, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            let _open = self.gate.read().await;
            Ok(self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
        }
        async fn activate(&self, key: SigningKeyRecord, _: OffsetDateTime) -> Result<(), StoreError> {
            self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(0, key);
            Ok(())
        }
        async fn retire(&self, _: &str) -> Result<bool, StoreError> {
            Ok(false)
        }
    }

    async fn ring(store: &Arc<CountingStore>, refresh: Duration) -> KeyRing {
        let kek = KeyEncryptionKey::new(&[7u8; 32]).expect("kek");
        KeyRing::open(Arc::clone(store) as Arc<dyn KeyStore>, kek, Arc::new(SystemClock), refresh, None)
            .await
            .expect("ring")
    }

    /// `token` with its header swapped for one naming `kid`.
    fn with_kid(token: &str, kid: &str) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": kid}).to_string();
        let rest = token.split_once('.').expect("a JWT").1;
        format!("{}.{rest}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header))
    }

    #[tokio::test]
    async fn made_up_kids_cause_at_most_one_store_read_per_gap() {
        let store = Arc::new(CountingStore::default());
        let ring = ring(&store, Duration::from_secs(3600)).await;
        let token = ring.sign(TokenKind::IdToken, &json!({"sub": "x", "exp": 4_000_000_000_u64})).await.expect("sign");
        let before = store.reads.load(Ordering::SeqCst);
        for i in 0..50 {
            assert!(ring.verify(&with_kid(&token, &format!("made-up-{i}"))).await.is_err());
        }
        assert_eq!(store.reads.load(Ordering::SeqCst) - before, 1, "one reload for fifty unknown kids");
        assert!(ring.verify(&token).await.is_ok(), "the real key still verifies");
    }

    #[tokio::test]
    async fn signing_does_not_wait_for_a_reload_in_progress() {
        let store = Arc::new(CountingStore::default());
        let ring = Arc::new(ring(&store, Duration::ZERO).await);
        let token = ring.sign(TokenKind::IdToken, &json!({"sub": "x"})).await.expect("sign");
        let hang = store.gate.write().await;
        let before = store.reads.load(Ordering::SeqCst);
        let stuck = tokio::spawn({
            let ring = Arc::clone(&ring);
            async move { ring.verify(&with_kid(&token, "made-up")).await }
        });
        while store.reads.load(Ordering::SeqCst) == before {
            tokio::task::yield_now().await;
        }
        // A reload now hangs on the store, holding the reload lock; signing goes on without it.
        let signed = tokio::time::timeout(Duration::from_secs(30), ring.sign(TokenKind::IdToken, &json!({"sub": "y"})))
            .await
            .expect("signing waited for the reload");
        assert!(signed.is_ok());
        drop(hang);
        assert!(stuck.await.expect("task").is_err(), "the made-up kid is still unknown");
    }

    #[test]
    fn a_key_sealed_under_the_older_kek_still_opens() {
        let old = KeyEncryptionKey::new(&[1u8; 32]).expect("kek");
        let sealed = old.seal("kid-1", b"private").expect("seal");
        let new = KeyEncryptionKey::new(&[2u8; 32]).expect("kek");
        assert!(new.open("kid-1", &sealed).is_err(), "a different key does not open it");
        let both = new.also_opening(KeyEncryptionKey::new(&[1u8; 32]).expect("kek"));
        assert_eq!(both.open("kid-1", &sealed).expect("opens"), b"private");
        let resealed = both.seal("kid-1", b"private").expect("seal");
        assert!(old.open("kid-1", &resealed).is_err(), "new seals use the current key");
    }
}
