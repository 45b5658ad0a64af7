//! Keyed hashes, sealing and randomness. One server secret feeds every key through HMAC
//! with a distinct label, so no two uses share a key.

use aws_lc_rs::{aead, hmac, rand as lc_rand};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sesame_domain::{ChallengeKey, LinkToken, OtpCode, SecretHash};
use sesame_ports::Random;

/// The production randomness: the OS CSPRNG through aws-lc.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&self, dest: &mut [u8]) {
        // The OS generator does not fail on a working system; if it did, carrying on with
        // predictable bytes would be far worse than stopping.
        #[expect(clippy::expect_used, reason = "no safe way to continue without randomness")]
        lc_rand::fill(dest).expect("OS random number generator failed");
    }
}

/// The random bytes one request needs, drawn from `source` in one call and handed out in
/// order, each byte once; what is left is wiped on drop. (A call into the CSPRNG costs about as
/// much as a hundred bytes from it; a start makes six.) A request that wants more than is left
/// gets it from `source` directly.
#[derive(Debug)]
pub struct Drawn<'a> {
    source: &'a dyn Random,
    pool: std::sync::Mutex<([u8; DRAWN], usize)>,
}

/// Bytes a `Drawn` holds: a start takes 132 (code 64, link 32, two ids 24, nonce 12).
const DRAWN: usize = 192;

impl<'a> Drawn<'a> {
    pub fn new(source: &'a dyn Random) -> Self {
        let mut bytes = [0u8; DRAWN];
        source.fill(&mut bytes);
        Self { source, pool: std::sync::Mutex::new((bytes, 0)) }
    }
}

impl Random for Drawn<'_> {
    fn fill(&self, dest: &mut [u8]) {
        let mut pool = self.pool.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (bytes, used) = &mut *pool;
        match bytes.get_mut(*used..*used + dest.len()) {
            Some(next) => {
                dest.copy_from_slice(next);
                next.fill(0);
                *used += dest.len();
            }
            None => self.source.fill(dest),
        }
    }
}

impl Drop for Drawn<'_> {
    fn drop(&mut self) {
        let pool = self.pool.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        pool.0.fill(0);
    }
}

/// A uniformly random decimal code of `len` digits (rejection sampling: no modulo bias).
pub fn generate_code(random: &dyn Random, len: usize) -> OtpCode {
    let mut digits = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while digits.len() < len {
        random.fill(&mut buf);
        for b in buf {
            // 250 = 25 × 10: bytes 250..=255 would favour 0–5.
            if b < 250 && digits.len() < len {
                digits.push(char::from(b'0' + b % 10));
            }
        }
    }
    OtpCode::new(digits)
}

/// A magic-link secret: 256 random bits, base64url.
pub fn generate_link_token(random: &dyn Random) -> LinkToken {
    LinkToken::new(random_b64(random, 32))
}

/// `n` random bytes as base64url without padding.
pub fn random_b64(random: &dyn Random, n: usize) -> String {
    let mut bytes = vec![0u8; n];
    random.fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// 24 hex digits, Auth0's id shape.
pub fn random_object_id(random: &dyn Random) -> String {
    let mut bytes = [0u8; 12];
    random.fill(&mut bytes);
    sesame_domain::object_id(bytes)
}

/// The server secret and everything derived from it.
pub struct Secrets {
    hash_key: hmac::Key,
    seal_key: aead::LessSafeKey,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(***)")
    }
}

/// Sealed data could not be opened (wrong key or tampered).
#[derive(Debug, thiserror::Error)]
#[error("sealed data could not be opened")]
pub struct UnsealError;

impl Secrets {
    /// The minimum length of the server secret, in bytes (256 bits).
    pub const MIN_LEN: usize = 32;

    /// Derives the keys from the server secret.
    ///
    /// # Errors
    /// When the secret is shorter than 32 bytes.
    pub fn new(server_secret: &[u8]) -> anyhow::Result<Self> {
        anyhow::ensure!(server_secret.len() >= Self::MIN_LEN, "the server secret must be at least 32 bytes");
        let root = hmac::Key::new(hmac::HMAC_SHA256, server_secret);
        let derive = |label: &str| hmac::sign(&root, label.as_bytes());
        let hash_key = hmac::Key::new(hmac::HMAC_SHA256, derive("sesame/hash/v1").as_ref());
        let seal = derive("sesame/seal/v1");
        let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, seal.as_ref())
            .map_err(|_| anyhow::anyhow!("AES-256-GCM key setup failed"))?;
        Ok(Self { hash_key, seal_key: aead::LessSafeKey::new(unbound) })
    }

    /// HMAC-SHA-256 over length-prefixed parts, so no two part lists hash alike.
    fn hash_parts(&self, parts: &[&[u8]]) -> SecretHash {
        let mut ctx = hmac::Context::with_key(&self.hash_key);
        for part in parts {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let tag = ctx.sign();
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        SecretHash(out)
    }

    fn bound(&self, purpose: &str, key: &ChallengeKey, secret: &str) -> SecretHash {
        self.hash_parts(&[
            purpose.as_bytes(),
            key.client_id.as_str().as_bytes(),
            key.connection.as_str().as_bytes(),
            key.identifier.as_str().as_bytes(),
            secret.as_bytes(),
        ])
    }

    /// The stored form of a one-time code, bound to its client, connection and identifier.
    pub fn code_hash(&self, key: &ChallengeKey, code: &str) -> SecretHash {
        self.bound("otp", key, code)
    }

    /// The stored form of a magic-link token, bound like a code.
    pub fn link_hash(&self, key: &ChallengeKey, token: &str) -> SecretHash {
        self.bound("link", key, token)
    }

    /// The stored form of a client secret, an authorization code, a refresh or opaque token.
    pub fn token_hash(&self, purpose: &str, token: &str) -> SecretHash {
        self.hash_parts(&[purpose.as_bytes(), token.as_bytes()])
    }

    /// Encrypts `plain` (AES-256-GCM, random nonce first), bound to `context`.
    pub fn seal(&self, random: &dyn Random, context: &str, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; aead::NONCE_LEN];
        random.fill(&mut nonce);
        let mut out = plain.to_vec();
        let sealed = self.seal_key.seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(context.as_bytes()),
            &mut out,
        );
        // Sealing only fails for inputs over GCM's 64 GiB bound, which a message never nears.
        #[expect(clippy::expect_used, reason = "unreachable for message-sized input")]
        sealed.expect("AES-GCM seal");
        let mut result = nonce.to_vec();
        result.extend_from_slice(&out);
        result
    }

    /// Opens what `seal` made with the same `context`.
    ///
    /// # Errors
    /// When the data was sealed with another key or context, or altered.
    pub fn unseal(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, UnsealError> {
        if sealed.len() < aead::NONCE_LEN + aead::AES_256_GCM.tag_len() {
            return Err(UnsealError);
        }
        let (nonce, body) = sealed.split_at(aead::NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| UnsealError)?;
        let mut buf = body.to_vec();
        let plain = self
            .seal_key
            .open_in_place(nonce, aead::Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| UnsealError)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sesame_domain::{ClientId, ConnectionName, Email, Identifier};

    fn key(client: &str) -> ChallengeKey {
        ChallengeKey {
            client_id: ClientId::new(client),
            connection: ConnectionName::new("email"),
            identifier: Identifier::Email(Email::parse("a@example.com").unwrap_or_else(|_| unreachable!())),
        }
    }

    /// Counts bytes out: 1, 2, 3, … (and how many calls were made).
    #[derive(Debug, Default)]
    struct Counting(std::sync::Mutex<(u8, usize)>);

    impl Random for Counting {
        fn fill(&self, dest: &mut [u8]) {
            let mut state = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            state.1 += 1;
            for b in dest {
                state.0 = state.0.wrapping_add(1);
                *b = state.0;
            }
        }
    }

    #[test]
    fn drawn_bytes_come_from_one_call_each_once_and_in_order() {
        let source = Counting::default();
        let drawn = Drawn::new(&source);
        let (mut a, mut b) = ([0u8; 100], [0u8; 92]);
        drawn.fill(&mut a);
        drawn.fill(&mut b);
        assert_eq!(a[0], 1);
        assert_eq!(b[0], 101, "no byte handed out twice");
        assert_eq!(b[91], 192);
        assert_eq!(source.0.lock().map(|s| s.1).unwrap_or(0), 1, "one call for 192 bytes");
        let mut c = [0u8; 8];
        drawn.fill(&mut c);
        assert_eq!(c[0], 193, "the pool is spent: straight from the source");
        assert_eq!(source.0.lock().map(|s| s.1).unwrap_or(0), 2);
        assert_eq!(generate_code(&Drawn::new(&OsRandom), 40).expose().len(), 40, "more than the pool holds");
    }

    #[test]
    fn codes_are_digits_of_the_asked_length_and_spread_evenly() {
        let mut counts = [0u32; 10];
        for _ in 0..2000 {
            let code = generate_code(&OsRandom, 6);
            assert_eq!(code.expose().len(), 6);
            for c in code.expose().bytes() {
                assert!(c.is_ascii_digit());
                counts[usize::from(c - b'0')] += 1;
            }
        }
        // 12,000 digits: each should be near 1,200; 1,000–1,400 is over 5 sigma wide.
        assert!(counts.iter().all(|n| (1000..1400).contains(n)), "{counts:?}");
        assert_eq!(generate_code(&OsRandom, 40).expose().len(), 40);
    }

    #[test]
    fn hashes_are_keyed_and_bound_to_the_challenge() {
        let s1 = Secrets::new(&[7u8; 32]).unwrap_or_else(|_| unreachable!());
        let s2 = Secrets::new(&[8u8; 32]).unwrap_or_else(|_| unreachable!());
        assert_eq!(s1.code_hash(&key("a"), "123456"), s1.code_hash(&key("a"), "123456"));
        assert_ne!(s1.code_hash(&key("a"), "123456"), s2.code_hash(&key("a"), "123456"), "keyed");
        assert_ne!(s1.code_hash(&key("a"), "123456"), s1.code_hash(&key("b"), "123456"), "bound to client");
        assert_ne!(s1.code_hash(&key("a"), "123456"), s1.link_hash(&key("a"), "123456"), "purpose separated");
        assert!(Secrets::new(&[1u8; 31]).is_err());
    }

    #[test]
    fn sealing_round_trips_and_detects_tampering() {
        let s = Secrets::new(&[7u8; 32]).unwrap_or_else(|_| unreachable!());
        let sealed = s.seal(&OsRandom, "m1", b"code 123456");
        assert!(!sealed.windows(6).any(|w| w == b"123456"), "no plaintext inside");
        assert_eq!(s.unseal("m1", &sealed).ok().as_deref(), Some(&b"code 123456"[..]));
        assert!(s.unseal("m2", &sealed).is_err(), "bound to its context");
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(s.unseal("m1", &bad).is_err());
    }
}
