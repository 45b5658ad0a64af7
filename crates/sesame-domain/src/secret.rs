use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

/// A one-time code as the user types it: decimal digits. No `Display`: it reaches the
/// message text through `expose` only, and never a log.
#[derive(Clone)]
pub struct OtpCode(SecretString);

impl OtpCode {
    pub fn new(digits: String) -> Self {
        Self(SecretString::from(digits))
    }
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtpCode(***)")
    }
}

/// The secret of a magic link (at least 128 bits, base64url).
#[derive(Clone)]
pub struct LinkToken(SecretString);

impl LinkToken {
    pub fn new(token: String) -> Self {
        Self(SecretString::from(token))
    }
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkToken(***)")
    }
}

/// A keyed hash (HMAC-SHA-256) of a code, link token or other secret: the only form stored.
/// Equality is constant-time.
#[derive(Clone, Copy, Eq, serde::Serialize, serde::Deserialize)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// # Errors
    /// When the slice is not 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, std::array::TryFromSliceError> {
        Ok(Self(bytes.try_into()?))
    }
}

impl PartialEq for SecretHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::hash::Hash for SecretHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretHash({}…)", hex::encode(&self.0[..4]))
    }
}
