//! Verification of `private_key_jwt` client assertions (RFC 7523 §3, OIDC Core §9, Auth0's
//! "Authenticate with Private Key JWT").
//!
//! A confidential client proves who it is by sending a JWT signed with its private key as
//! `client_assertion`. This module checks such a JWT against the public keys registered for the
//! client ([`ClientPublicKey`]) and the rules of spec §3.1 ([`AssertionRules`]). It is pure: the
//! caller passes the clock (`now`) and remembers the `jti` (with the `ReplayGuard` port) until
//! [`VerifiedAssertion::remember_until`]; this module does neither I/O nor replay tracking.
//!
//! What is enforced, in order:
//! 1. the assertion is at most [`AssertionRules::max_len`] bytes, before anything is parsed;
//! 2. it is a compact JWS; its header is a JSON object whose `alg` is at most 16 characters and
//!    one of RS256, RS384, PS256, ES256 (never `none`, never HMAC); a `crit` header is refused;
//! 3. the key comes only from the registered keys: by `kid` when the header has one, otherwise
//!    every registered key that supports `alg` is tried. `jku`, `x5u`, `jwk` and `x5c` headers are
//!    ignored (never fetched, never used);
//! 4. the signature is checked by `jsonwebtoken` (its own time checks are switched off: every
//!    time check below uses the caller's clock and leeway);
//! 5. `iss` = `sub` = client_id (each at most 64 characters); `aud` (a string or an array)
//!    contains one of the accepted audiences; `exp` is present, not past (with leeway) and at most
//!    `max_lifetime + leeway` ahead; `iat`, when present, is not in the future and not older than
//!    `max_lifetime + leeway`, and `exp - iat` is at most `max_lifetime`; `nbf`, when present, has
//!    been reached (with leeway); `jti` is present, non-empty and at most 64 characters.
//!
//! Error messages never repeat any part of the assertion.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ParsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

pub use jsonwebtoken::Algorithm;

/// The `client_assertion_type` that goes with a JWT client assertion (RFC 7523 §2.2).
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Clock skew allowed on `exp`, `iat` and `nbf` (Auth0: 10 s).
pub const DEFAULT_LEEWAY_SECS: i64 = 10;
/// Longest allowed assertion lifetime (Auth0: 5 minutes).
pub const DEFAULT_MAX_LIFETIME_SECS: i64 = 300;
/// Longest allowed assertion, in bytes (Auth0: 2048).
pub const DEFAULT_MAX_ASSERTION_LEN: usize = 2048;
/// Longest allowed header `alg` value, in characters (Auth0: 16).
pub const MAX_ALG_LEN: usize = 16;
/// Longest allowed `iss`, `sub` and `jti`, in characters (Auth0: 64).
pub const MAX_CLAIM_LEN: usize = 64;
/// Smallest accepted RSA modulus, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest accepted RSA modulus, in bits.
pub const MAX_RSA_BITS: usize = 4096;

/// Largest key text [`ClientPublicKey::parse`] reads (a 4096-bit certificate chain fits easily).
const MAX_KEY_TEXT_LEN: usize = 64 * 1024;
/// Longest `kid` taken from a JWK or [`ClientPublicKey::with_kid`].
const MAX_KID_LEN: usize = 256;

const RSA_ALGORITHMS: &[Algorithm] = &[Algorithm::RS256, Algorithm::RS384, Algorithm::PS256];
const EC_P256_ALGORITHMS: &[Algorithm] = &[Algorithm::ES256];

/// Why a registered key could not be read. Messages are meant for the operator registering it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is neither a PEM block nor a JWK JSON object.
    #[error("the key is neither PEM nor a JWK JSON object")]
    UnknownFormat,
    /// The text is longer than any public key needs to be.
    #[error("the key text is too long")]
    TooLong,
    /// A PEM block of a kind this module does not read.
    #[error("a PEM block labelled {0:?} is not supported; use PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE")]
    UnsupportedPemLabel(String),
    /// Private key material was supplied (PEM private key, or a JWK with `d`).
    #[error("this is a private key; register the public key (or certificate) only")]
    PrivateKey,
    /// The key is not well-formed; the text says which part.
    #[error("the key is malformed: {0}")]
    Malformed(&'static str),
    /// A well-formed key of a type this module does not accept.
    #[error("unsupported key type: {0}; use RSA (2048 to 4096 bits) or EC P-256")]
    UnsupportedKeyType(&'static str),
    /// An RSA key outside 2048–4096 bits.
    #[error("RSA keys must have 2048 to 4096 bits; this one has {bits}")]
    RsaKeySize {
        /// Size of the modulus.
        bits: usize,
    },
    /// A JWK whose `alg` is not one this key type can be used with here.
    #[error("the JWK \"alg\" must be RS256, RS384 or PS256 for an RSA key, or ES256 for a P-256 key")]
    UnsupportedJwkAlgorithm,
    /// A JWK whose `use` or `key_ops` rule out signature verification.
    #[error("the JWK \"use\" / \"key_ops\" do not allow signature verification")]
    NotForSignatures,
    /// The crypto library refused the key (for example an invalid RSA exponent or a point that
    /// is not on the curve).
    #[error("the key was rejected by the crypto library: {0}")]
    Rejected(&'static str),
}

/// The kind of a registered key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKeyType {
    /// An RSA key, usable with RS256, RS384 and PS256.
    Rsa {
        /// Size of the modulus.
        bits: usize,
    },
    /// An EC key on P-256, usable with ES256.
    EcP256,
}

/// One public key registered for a client, parsed and checked once, ready to verify assertions.
#[derive(Clone)]
pub struct ClientPublicKey {
    kid: String,
    thumbprint: String,
    key_type: ClientKeyType,
    algorithms: Vec<Algorithm>,
    decoding: DecodingKey,
}

impl std::fmt::Debug for ClientPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientPublicKey")
            .field("kid", &self.kid)
            .field("thumbprint", &self.thumbprint)
            .field("key_type", &self.key_type)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl ClientPublicKey {
    /// Reads one public key: a PEM block (SPKI `PUBLIC KEY`, PKCS#1 `RSA PUBLIC KEY`, or an X.509
    /// `CERTIFICATE`, whose subject key is taken and whose dates and signature are not checked),
    /// or a JWK JSON object. Only RSA keys of 2048–4096 bits and EC P-256 keys are accepted.
    /// With several PEM blocks, the first one is read (the leaf of a certificate chain).
    ///
    /// A JWK's `alg`, when present, restricts the key to that algorithm; its `kid`, when present,
    /// becomes [`kid`](Self::kid). A JWK with `use` other than `sig`, or `key_ops` without
    /// `verify`, is refused; so is any private key material.
    ///
    /// # Errors
    /// [`KeyError`] says why the key is not usable.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        if text.len() > MAX_KEY_TEXT_LEN {
            return Err(KeyError::TooLong);
        }
        let trimmed = text.trim();
        if trimmed.starts_with('{') {
            let value: Value = serde_json::from_str(trimmed).map_err(|_| KeyError::Malformed("invalid JSON"))?;
            Self::from_jwk(&value)
        } else if trimmed.starts_with("-----BEGIN ") {
            let block = pem::parse(trimmed).map_err(|_| KeyError::Malformed("invalid PEM"))?;
            Self::from_pem_block(&block)
        } else {
            Err(KeyError::UnknownFormat)
        }
    }

    /// Reads every key in `text`: all PEM blocks, a JWK Set (`{"keys": [...]}`), or one JWK.
    ///
    /// # Errors
    /// The first key that is not usable, or [`KeyError::UnknownFormat`] when there is none.
    pub fn parse_all(text: &str) -> Result<Vec<Self>, KeyError> {
        if text.len() > MAX_KEY_TEXT_LEN {
            return Err(KeyError::TooLong);
        }
        let trimmed = text.trim();
        let keys = if trimmed.starts_with('{') {
            let value: Value = serde_json::from_str(trimmed).map_err(|_| KeyError::Malformed("invalid JSON"))?;
            match value.get("keys") {
                Some(Value::Array(items)) => items.iter().map(Self::from_jwk).collect::<Result<Vec<_>, _>>()?,
                Some(_) => return Err(KeyError::Malformed("\"keys\" is not an array")),
                None => vec![Self::from_jwk(&value)?],
            }
        } else if trimmed.starts_with("-----BEGIN ") {
            let blocks = pem::parse_many(trimmed).map_err(|_| KeyError::Malformed("invalid PEM"))?;
            blocks.iter().map(Self::from_pem_block).collect::<Result<Vec<_>, _>>()?
        } else {
            return Err(KeyError::UnknownFormat);
        };
        if keys.is_empty() { Err(KeyError::UnknownFormat) } else { Ok(keys) }
    }

    /// Replaces the key id (for example with the credential id handed to the client), which the
    /// assertion header `kid` may then name. The RFC 7638 thumbprint keeps matching too.
    ///
    /// # Errors
    /// [`KeyError::Malformed`] when `kid` is empty or longer than 256 characters.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Result<Self, KeyError> {
        let kid = kid.into();
        if kid.is_empty() || kid.chars().count() > MAX_KID_LEN {
            return Err(KeyError::Malformed("kid must be 1 to 256 characters"));
        }
        self.kid = kid;
        Ok(self)
    }

    /// The key id an assertion header `kid` is matched against: the JWK's `kid`, the id set by
    /// [`with_kid`](Self::with_kid), or else the RFC 7638 thumbprint. Always present.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url). A header `kid` equal to it also selects
    /// this key.
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// RSA or EC P-256 (with the RSA size).
    pub fn key_type(&self) -> ClientKeyType {
        self.key_type
    }

    /// The algorithms this key verifies: RS256, RS384, PS256 for RSA; ES256 for EC P-256
    /// (or only the JWK's `alg`, when it named one).
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// Whether this key verifies `alg`.
    pub fn supports(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(&alg)
    }

    fn matches_kid(&self, kid: &str) -> bool {
        self.kid == kid || self.thumbprint == kid
    }

    fn from_pem_block(block: &pem::Pem) -> Result<Self, KeyError> {
        match block.tag() {
            "PUBLIC KEY" => from_spki(block.contents()),
            "RSA PUBLIC KEY" => from_pkcs1(block.contents()),
            "CERTIFICATE" => from_spki(spki_of_certificate(block.contents())?),
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" | "OPENSSH PRIVATE KEY" => {
                Err(KeyError::PrivateKey)
            }
            other => Err(KeyError::UnsupportedPemLabel(other.chars().take(40).collect())),
        }
    }

    fn from_jwk(value: &Value) -> Result<Self, KeyError> {
        let jwk: JwkInput =
            serde_json::from_value(value.clone()).map_err(|_| KeyError::Malformed("not a JWK object"))?;
        if jwk.d.is_some() {
            return Err(KeyError::PrivateKey);
        }
        if jwk.use_.as_deref().is_some_and(|u| u != "sig")
            || jwk.key_ops.as_ref().is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
        {
            return Err(KeyError::NotForSignatures);
        }
        let mut key = match jwk.kty.as_str() {
            "RSA" => {
                let n = jwk_bytes(jwk.n.as_deref(), "JWK n is missing or not base64url")?;
                let e = jwk_bytes(jwk.e.as_deref(), "JWK e is missing or not base64url")?;
                from_rsa_components(&n, &e)?
            }
            "EC" => {
                if jwk.crv.as_deref() != Some("P-256") {
                    return Err(KeyError::UnsupportedKeyType("EC curve other than P-256"));
                }
                let x = jwk_bytes(jwk.x.as_deref(), "JWK x is missing or not base64url")?;
                let y = jwk_bytes(jwk.y.as_deref(), "JWK y is missing or not base64url")?;
                if x.len() != 32 || y.len() != 32 {
                    return Err(KeyError::Malformed("JWK x and y must be 32 bytes each for P-256"));
                }
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                from_ec_point(&point)?
            }
            "oct" => return Err(KeyError::UnsupportedKeyType("symmetric (oct) key")),
            "OKP" => return Err(KeyError::UnsupportedKeyType("OKP (EdDSA) key")),
            _ => return Err(KeyError::UnsupportedKeyType("unknown kty")),
        };
        if let Some(alg) = jwk.alg.as_deref() {
            let alg = allowed_algorithm(alg).filter(|a| key.supports(*a)).ok_or(KeyError::UnsupportedJwkAlgorithm)?;
            key.algorithms = vec![alg];
        }
        if let Some(kid) = jwk.kid {
            key = key.with_kid(kid)?;
        }
        Ok(key)
    }
}

/// The members of a JWK this module reads; anything else (`x5c`, `x5t`, ...) is ignored.
#[derive(Deserialize)]
struct JwkInput {
    kty: String,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    d: Option<Value>,
}

/// JWK members are base64url; tolerate `=` padding, which some tools add.
const JWK_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn jwk_bytes(value: Option<&str>, what: &'static str) -> Result<Vec<u8>, KeyError> {
    value.and_then(|v| JWK_BASE64.decode(v).ok()).filter(|b| !b.is_empty()).ok_or(KeyError::Malformed(what))
}

fn thumbprint(canonical_json: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical_json.as_bytes()))
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

/// An RSA key from its modulus and exponent (unsigned big-endian), checked for size and by
/// aws-lc (`RSA_check_key`).
fn from_rsa_components(n: &[u8], e: &[u8]) -> Result<ClientPublicKey, KeyError> {
    let n = strip_leading_zeros(n);
    let e = strip_leading_zeros(e);
    let Some(&first) = n.first() else {
        return Err(KeyError::Malformed("RSA modulus is zero"));
    };
    let bits = n.len() * 8 - first.leading_zeros() as usize;
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(KeyError::RsaKeySize { bits });
    }
    if e.is_empty() || e.len() > 8 || e.last().is_some_and(|b| b & 1 == 0) || e == [1] {
        return Err(KeyError::Rejected("the RSA public exponent is not valid"));
    }
    // Let aws-lc check the key the way it will use it.
    let pkcs1 = der::sequence(&[&der::unsigned_integer(n), &der::unsigned_integer(e)]);
    aws_lc_rs::rsa::PublicKey::from_der(&pkcs1).map_err(|_| KeyError::Rejected("invalid RSA public key"))?;
    let n_b64 = URL_SAFE_NO_PAD.encode(n);
    let e_b64 = URL_SAFE_NO_PAD.encode(e);
    let thumbprint = thumbprint(&format!(r#"{{"e":"{e_b64}","kty":"RSA","n":"{n_b64}"}}"#));
    Ok(ClientPublicKey {
        kid: thumbprint.clone(),
        thumbprint,
        key_type: ClientKeyType::Rsa { bits },
        algorithms: RSA_ALGORITHMS.to_vec(),
        decoding: DecodingKey::from_rsa_raw_components(n, e),
    })
}

/// An EC P-256 key from its uncompressed point (`04 || x || y`), checked to be on the curve.
fn from_ec_point(point: &[u8]) -> Result<ClientPublicKey, KeyError> {
    if point.len() != 65 || point.first() != Some(&0x04) {
        return Err(KeyError::Malformed("P-256 public point must be uncompressed (65 bytes)"));
    }
    ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .map_err(|_| KeyError::Rejected("the point is not on the P-256 curve"))?;
    let x = URL_SAFE_NO_PAD.encode(point.get(1..33).unwrap_or_default());
    let y = URL_SAFE_NO_PAD.encode(point.get(33..65).unwrap_or_default());
    let thumbprint = thumbprint(&format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#));
    let decoding = DecodingKey::from_ec_components(&x, &y).map_err(|_| KeyError::Malformed("invalid P-256 point"))?;
    Ok(ClientPublicKey {
        kid: thumbprint.clone(),
        thumbprint,
        key_type: ClientKeyType::EcP256,
        algorithms: EC_P256_ALGORITHMS.to_vec(),
        decoding,
    })
}

/// A PKCS#1 `RSAPublicKey`: `SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
fn from_pkcs1(input: &[u8]) -> Result<ClientPublicKey, KeyError> {
    const BAD: KeyError = KeyError::Malformed("invalid PKCS#1 RSA public key");
    let (seq, rest) = der::expect(input, der::SEQUENCE).ok_or(BAD)?;
    if !rest.is_empty() {
        return Err(BAD);
    }
    let (n, rest) = der::expect(seq.content, der::INTEGER).ok_or(BAD)?;
    let (e, rest) = der::expect(rest, der::INTEGER).ok_or(BAD)?;
    if !rest.is_empty() || der::is_negative(n.content) || der::is_negative(e.content) {
        return Err(BAD);
    }
    from_rsa_components(n.content, e.content)
}

/// An X.509 `SubjectPublicKeyInfo` holding an RSA (`rsaEncryption`) or EC P-256 key.
fn from_spki(input: &[u8]) -> Result<ClientPublicKey, KeyError> {
    const BAD: KeyError = KeyError::Malformed("invalid SubjectPublicKeyInfo");
    let (spki, rest) = der::expect(input, der::SEQUENCE).ok_or(BAD)?;
    if !rest.is_empty() {
        return Err(BAD);
    }
    let (algorithm, rest) = der::expect(spki.content, der::SEQUENCE).ok_or(BAD)?;
    let (bits, rest) = der::expect(rest, der::BIT_STRING).ok_or(BAD)?;
    if !rest.is_empty() {
        return Err(BAD);
    }
    let Some((&0, key)) = bits.content.split_first() else {
        return Err(BAD);
    };
    let (oid, params) = der::expect(algorithm.content, der::OID).ok_or(BAD)?;
    match oid.content {
        der::OID_RSA_ENCRYPTION => {
            if !(params.is_empty() || params == der::NULL) {
                return Err(BAD);
            }
            from_pkcs1(key)
        }
        der::OID_EC_PUBLIC_KEY => {
            let (curve, rest) = der::expect(params, der::OID).ok_or(BAD)?;
            if !rest.is_empty() {
                return Err(BAD);
            }
            if curve.content != der::OID_P256 {
                return Err(KeyError::UnsupportedKeyType("EC curve other than P-256"));
            }
            from_ec_point(key)
        }
        der::OID_RSASSA_PSS => Err(KeyError::UnsupportedKeyType("RSASSA-PSS-restricted key (use rsaEncryption)")),
        der::OID_ED25519 => Err(KeyError::UnsupportedKeyType("Ed25519")),
        _ => Err(KeyError::UnsupportedKeyType("unknown public key algorithm")),
    }
}

/// The `subjectPublicKeyInfo` (whole TLV) of an X.509 certificate. Dates, extensions and the
/// issuer's signature are not checked: the certificate is only a container for the key.
fn spki_of_certificate(input: &[u8]) -> Result<&[u8], KeyError> {
    const BAD: KeyError = KeyError::Malformed("invalid X.509 certificate");
    let (cert, _) = der::expect(input, der::SEQUENCE).ok_or(BAD)?;
    let (tbs, _) = der::expect(cert.content, der::SEQUENCE).ok_or(BAD)?;
    let mut rest = tbs.content;
    // version [0] EXPLICIT (absent for v1 certificates)
    if rest.first() == Some(&der::CONTEXT_0) {
        rest = der::read(rest).ok_or(BAD)?.1;
    }
    // serialNumber, signature, issuer, validity, subject
    for tag in [der::INTEGER, der::SEQUENCE, der::SEQUENCE, der::SEQUENCE, der::SEQUENCE] {
        rest = der::expect(rest, tag).ok_or(BAD)?.1;
    }
    let (spki, _) = der::expect(rest, der::SEQUENCE).ok_or(BAD)?;
    Ok(spki.raw)
}

/// A minimal, strict DER reader (and the two encoders needed to hand a PKCS#1 key to aws-lc).
mod der {
    pub(super) const INTEGER: u8 = 0x02;
    pub(super) const BIT_STRING: u8 = 0x03;
    pub(super) const OID: u8 = 0x06;
    pub(super) const SEQUENCE: u8 = 0x30;
    pub(super) const CONTEXT_0: u8 = 0xa0;
    pub(super) const NULL: &[u8] = &[0x05, 0x00];
    /// 1.2.840.113549.1.1.1
    pub(super) const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    /// 1.2.840.113549.1.1.10
    pub(super) const OID_RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
    /// 1.2.840.10045.2.1
    pub(super) const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    /// 1.2.840.10045.3.1.7 (secp256r1)
    pub(super) const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    /// 1.3.101.112
    pub(super) const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

    /// One tag-length-value element.
    pub(super) struct Tlv<'a> {
        pub(super) tag: u8,
        pub(super) content: &'a [u8],
        /// The whole element, header included.
        pub(super) raw: &'a [u8],
    }

    /// Reads one element (single-byte tags, definite minimal lengths up to 4 bytes); returns it
    /// and what follows.
    pub(super) fn read(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
        let (&tag, rest) = input.split_first()?;
        if tag & 0x1f == 0x1f {
            return None;
        }
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let (bytes, after) = rest.split_at(count);
            rest = after;
            if bytes.first() == Some(&0) {
                return None;
            }
            let len = bytes.iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            if len < 0x80 {
                return None;
            }
            len
        };
        if rest.len() < len {
            return None;
        }
        let (content, after) = rest.split_at(len);
        let header_len = input.len() - rest.len();
        let raw = input.get(..header_len + len)?;
        Some((Tlv { tag, content, raw }, after))
    }

    /// Reads one element that must carry `tag`.
    pub(super) fn expect(input: &[u8], tag: u8) -> Option<(Tlv<'_>, &[u8])> {
        read(input).filter(|(tlv, _)| tlv.tag == tag)
    }

    /// A DER INTEGER whose sign bit is set (or which is empty).
    pub(super) fn is_negative(content: &[u8]) -> bool {
        content.first().is_none_or(|b| b & 0x80 != 0)
    }

    fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.extend(u8::try_from(len));
        } else {
            let bytes = len.to_be_bytes();
            let significant = super::strip_leading_zeros(&bytes);
            out.extend(u8::try_from(0x80 | significant.len()));
            out.extend_from_slice(significant);
        }
        out.extend_from_slice(content);
        out
    }

    /// An INTEGER from unsigned big-endian bytes without leading zeros.
    pub(super) fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
        if magnitude.first().is_some_and(|b| b & 0x80 != 0) {
            let mut padded = Vec::with_capacity(magnitude.len() + 1);
            padded.push(0);
            padded.extend_from_slice(magnitude);
            encode(INTEGER, &padded)
        } else {
            encode(INTEGER, magnitude)
        }
    }

    /// A SEQUENCE of already-encoded elements.
    pub(super) fn sequence(items: &[&[u8]]) -> Vec<u8> {
        encode(SEQUENCE, &items.concat())
    }
}

/// What a client assertion is checked against. Build it with [`AssertionRules::new`] for the
/// Auth0 defaults, then adjust fields if needed.
#[derive(Debug, Clone, Copy)]
pub struct AssertionRules<'a> {
    /// The client the assertion must be for: `iss` and `sub` must both equal it.
    pub client_id: &'a str,
    /// Accepted `aud` values, compared as exact strings: the issuer URL with its trailing slash
    /// (`https://tenant.example.com/`), and the token endpoint URL.
    pub audiences: &'a [String],
    /// The current time, in Unix seconds.
    pub now: i64,
    /// Clock skew allowed on `exp`, `iat` and `nbf` (default 10 s).
    pub leeway_secs: i64,
    /// Longest allowed lifetime: `exp - now` may be at most this plus the leeway, and
    /// `exp - iat` at most this (default 300 s).
    pub max_lifetime_secs: i64,
    /// Longest allowed assertion, in bytes, checked before anything is parsed (default 2048).
    pub max_len: usize,
}

impl<'a> AssertionRules<'a> {
    /// Rules with Auth0's limits: 10 s leeway, 5 minutes lifetime, 2048 bytes.
    pub fn new(client_id: &'a str, audiences: &'a [String], now: i64) -> Self {
        Self {
            client_id,
            audiences,
            now,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
            max_len: DEFAULT_MAX_ASSERTION_LEN,
        }
    }
}

/// An assertion that passed every check. It is single-use: the caller must still refuse a
/// `jti` it has already seen for this client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    /// The assertion's `jti` (1 to 64 characters). Key the replay record by client *and* jti.
    pub jti: String,
    /// The assertion's `exp`, in Unix seconds.
    pub exp: i64,
    /// First instant (Unix seconds) at which this assertion is refused as expired, i.e.
    /// `exp + leeway + 1`: remember the `jti` at least until then (the `until` of
    /// `ReplayGuard::first_use`).
    pub remember_until: i64,
    /// The algorithm the assertion was signed with.
    pub algorithm: Algorithm,
    /// [`ClientPublicKey::kid`] of the registered key that verified it.
    pub key_id: String,
}

/// Why a client assertion was refused. Messages name the rule, never any part of the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    /// The assertion is longer than [`AssertionRules::max_len`].
    #[error("the client assertion is longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// Not a compact JWS, or a header / claims set that is not the expected JSON.
    #[error("the client assertion is malformed: {0}")]
    Malformed(&'static str),
    /// The header `alg` is longer than 16 characters.
    #[error("the client assertion header alg is longer than 16 characters")]
    AlgorithmTooLong,
    /// The header `alg` is not RS256, RS384, PS256 or ES256 (`none` and HMAC are never allowed).
    #[error("the client assertion algorithm is not allowed (use RS256, RS384, PS256 or ES256)")]
    AlgorithmNotAllowed,
    /// The header has `crit`: no JWS extension is understood here.
    #[error("the client assertion header has critical extensions, which are not supported")]
    CriticalHeader,
    /// The header `kid` names no registered key of this client.
    #[error("the client assertion kid does not name a key registered for this client")]
    UnknownKeyId,
    /// No registered key (the one named by `kid`, or any when there is no `kid`) supports the
    /// header `alg`.
    #[error("no key registered for this client can verify the client assertion algorithm")]
    NoKeyForAlgorithm,
    /// No candidate registered key verifies the signature.
    #[error("the client assertion signature does not verify with any key registered for this client")]
    InvalidSignature,
    /// A required claim is absent (or null).
    #[error("the client assertion has no {0} claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type, or is empty.
    #[error("the client assertion {0} claim is not valid")]
    InvalidClaim(&'static str),
    /// `iss`, `sub` or `jti` is longer than 64 characters.
    #[error("the client assertion {0} claim is longer than 64 characters")]
    ClaimTooLong(&'static str),
    /// `iss` is not the client id.
    #[error("the client assertion iss is not the client id")]
    WrongIssuer,
    /// `sub` is not the client id.
    #[error("the client assertion sub is not the client id")]
    WrongSubject,
    /// `aud` contains none of the accepted audiences.
    #[error("the client assertion aud is not this server's issuer (with a trailing slash) or token endpoint")]
    WrongAudience,
    /// `exp` is in the past by more than the leeway.
    #[error("the client assertion has expired")]
    Expired,
    /// `exp` is too far ahead, or `exp - iat` exceeds the maximum lifetime.
    #[error("the client assertion lifetime exceeds the maximum")]
    LifetimeTooLong,
    /// `iat` is in the future by more than the leeway.
    #[error("the client assertion iat is in the future")]
    IssuedInFuture,
    /// `iat` is older than the maximum lifetime plus the leeway.
    #[error("the client assertion iat is too old")]
    IssuedTooLongAgo,
    /// `nbf` is in the future by more than the leeway.
    #[error("the client assertion is not valid yet (nbf)")]
    NotYetValid,
}

/// The header members read before the signature is checked. Duplicate members are refused by
/// serde, so no two parsers can disagree on them.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    crit: Option<Value>,
}

/// The claims read after the signature is checked (duplicates refused, as above).
#[derive(Deserialize)]
struct RawClaims {
    iss: Option<Value>,
    sub: Option<Value>,
    aud: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
    iat: Option<Value>,
    jti: Option<Value>,
}

fn allowed_algorithm(alg: &str) -> Option<Algorithm> {
    match alg {
        "RS256" => Some(Algorithm::RS256),
        "RS384" => Some(Algorithm::RS384),
        "PS256" => Some(Algorithm::PS256),
        "ES256" => Some(Algorithm::ES256),
        _ => None,
    }
}

fn is_base64url(segment: &str) -> bool {
    segment.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks `assertion` (the `client_assertion` form field) for the client in `rules`, against
/// that client's registered `keys` only. See the module documentation for every rule.
///
/// # Errors
/// The first rule the assertion breaks, as an [`AssertionError`].
pub fn verify_client_assertion(
    assertion: &str,
    keys: &[ClientPublicKey],
    rules: &AssertionRules<'_>,
) -> Result<VerifiedAssertion, AssertionError> {
    if assertion.len() > rules.max_len {
        return Err(AssertionError::TooLong { max: rules.max_len });
    }
    let mut parts = assertion.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AssertionError::Malformed("not a compact JWS (three base64url parts)"));
    };
    if header_b64.is_empty()
        || payload_b64.is_empty()
        || ![header_b64, payload_b64, signature_b64].iter().all(|s| is_base64url(s))
    {
        return Err(AssertionError::Malformed("not a compact JWS (three base64url parts)"));
    }

    let header: RawHeader = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(AssertionError::Malformed("the header is not a JSON object with a string alg"))?;
    if header.alg.chars().count() > MAX_ALG_LEN {
        return Err(AssertionError::AlgorithmTooLong);
    }
    let alg = allowed_algorithm(&header.alg).ok_or(AssertionError::AlgorithmNotAllowed)?;
    if header.crit.is_some() {
        return Err(AssertionError::CriticalHeader);
    }

    // The key comes from the client's registry only; jku/x5u/jwk/x5c are never looked at.
    let candidates: Vec<&ClientPublicKey> = match header.kid.as_deref() {
        Some(kid) => {
            let key = keys.iter().find(|k| k.matches_kid(kid)).ok_or(AssertionError::UnknownKeyId)?;
            if !key.supports(alg) {
                return Err(AssertionError::NoKeyForAlgorithm);
            }
            vec![key]
        }
        None => keys.iter().filter(|k| k.supports(alg)).collect(),
    };
    if candidates.is_empty() {
        return Err(AssertionError::NoKeyForAlgorithm);
    }

    let claims: RawClaims = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(AssertionError::Malformed("the claims are not a JSON object"))?;

    // Signature only: every time and claim check is ours (jsonwebtoken's use its own clock and a
    // different leeway).
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    let mut verified_by = None;
    for key in candidates {
        match jsonwebtoken::decode::<serde::de::IgnoredAny>(assertion, &key.decoding, &validation) {
            Ok(_) => {
                verified_by = Some(key);
                break;
            }
            Err(e) => match e.kind() {
                ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => {
                    return Err(AssertionError::Malformed("the header or signature cannot be decoded"));
                }
                _ => {}
            },
        }
    }
    let key = verified_by.ok_or(AssertionError::InvalidSignature)?;

    check_claims(&claims, rules).map(|(jti, exp)| VerifiedAssertion {
        jti,
        exp,
        remember_until: exp.saturating_add(rules.leeway_secs.max(0)).saturating_add(1),
        algorithm: alg,
        key_id: key.kid.clone(),
    })
}

fn string_claim<'c>(value: Option<&'c Value>, name: &'static str) -> Result<&'c str, AssertionError> {
    let value = value.ok_or(AssertionError::MissingClaim(name))?;
    let text = value.as_str().filter(|s| !s.is_empty()).ok_or(AssertionError::InvalidClaim(name))?;
    if text.chars().count() > MAX_CLAIM_LEN {
        return Err(AssertionError::ClaimTooLong(name));
    }
    Ok(text)
}

/// A NumericDate: an integer, or a finite number (rounded down).
fn numeric_date(value: Option<&Value>, name: &'static str) -> Result<Option<i64>, AssertionError> {
    let Some(value) = value else { return Ok(None) };
    if let Some(n) = value.as_i64() {
        return Ok(Some(n));
    }
    if value.is_u64() {
        return Ok(Some(i64::MAX));
    }
    match value.as_f64() {
        // `as` saturates, which is what is wanted for absurd values.
        Some(f) if f.is_finite() => Ok(Some(f.floor() as i64)),
        _ => Err(AssertionError::InvalidClaim(name)),
    }
}

fn check_claims(claims: &RawClaims, rules: &AssertionRules<'_>) -> Result<(String, i64), AssertionError> {
    let iss = string_claim(claims.iss.as_ref(), "iss")?;
    if iss != rules.client_id {
        return Err(AssertionError::WrongIssuer);
    }
    let sub = string_claim(claims.sub.as_ref(), "sub")?;
    if sub != rules.client_id {
        return Err(AssertionError::WrongSubject);
    }

    let accepted = |aud: &str| rules.audiences.iter().any(|a| a == aud);
    let aud_ok = match claims.aud.as_ref() {
        None => return Err(AssertionError::MissingClaim("aud")),
        Some(Value::String(aud)) => accepted(aud),
        Some(Value::Array(items)) => {
            let mut any = false;
            for item in items {
                let aud = item.as_str().ok_or(AssertionError::InvalidClaim("aud"))?;
                any |= accepted(aud);
            }
            any
        }
        Some(_) => return Err(AssertionError::InvalidClaim("aud")),
    };
    if !aud_ok {
        return Err(AssertionError::WrongAudience);
    }

    let now = rules.now;
    let leeway = rules.leeway_secs.max(0);
    let max_lifetime = rules.max_lifetime_secs.max(0);
    let exp = numeric_date(claims.exp.as_ref(), "exp")?.ok_or(AssertionError::MissingClaim("exp"))?;
    if exp.saturating_add(leeway) < now {
        return Err(AssertionError::Expired);
    }
    if exp.saturating_sub(now) > max_lifetime.saturating_add(leeway) {
        return Err(AssertionError::LifetimeTooLong);
    }
    if let Some(iat) = numeric_date(claims.iat.as_ref(), "iat")? {
        if iat > now.saturating_add(leeway) {
            return Err(AssertionError::IssuedInFuture);
        }
        if now.saturating_sub(iat) > max_lifetime.saturating_add(leeway) {
            return Err(AssertionError::IssuedTooLongAgo);
        }
        if exp.saturating_sub(iat) > max_lifetime {
            return Err(AssertionError::LifetimeTooLong);
        }
    }
    if let Some(nbf) = numeric_date(claims.nbf.as_ref(), "nbf")?
        && nbf > now.saturating_add(leeway)
    {
        return Err(AssertionError::NotYetValid);
    }

    let jti = string_claim(claims.jti.as_ref(), "jti")?;
    Ok((jti.to_owned(), exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_reader_refuses_truncated_and_non_minimal_lengths() {
        assert!(der::read(&[]).is_none());
        assert!(der::read(&[0x30]).is_none());
        assert!(der::read(&[0x30, 0x05, 0x00]).is_none(), "content shorter than the length");
        assert!(der::read(&[0x30, 0x81, 0x05, 0, 0, 0, 0, 0]).is_none(), "long form for a short length");
        assert!(der::read(&[0x30, 0x82, 0x00, 0x80]).is_none(), "leading zero length byte");
        assert!(der::read(&[0x30, 0x80]).is_none(), "indefinite length");
        assert!(der::read(&[0x1f, 0x01, 0x00]).is_none(), "multi-byte tag");
        let (tlv, rest) = der::read(&[0x02, 0x01, 0x05, 0xff]).expect("valid");
        assert_eq!((tlv.tag, tlv.content, tlv.raw, rest), (0x02, &[0x05][..], &[0x02, 0x01, 0x05][..], &[0xff][..]));
    }

    #[test]
    fn der_encoding_round_trips_long_integers() {
        let n = vec![0xc5; 300];
        let encoded = der::sequence(&[&der::unsigned_integer(&n), &der::unsigned_integer(&[1, 0, 1])]);
        let (seq, rest) = der::expect(&encoded, der::SEQUENCE).expect("sequence");
        assert!(rest.is_empty());
        let (int, rest) = der::expect(seq.content, der::INTEGER).expect("n");
        assert_eq!(int.content.len(), 301, "sign byte added");
        assert!(!der::is_negative(int.content));
        let (e, rest) = der::expect(rest, der::INTEGER).expect("e");
        assert_eq!(e.content, &[1, 0, 1]);
        assert!(rest.is_empty());
    }

    #[test]
    fn garbage_keys_are_refused_without_panicking() {
        for text in [
            "",
            "hello",
            "{",
            "{}",
            r#"{"kty":"RSA"}"#,
            r#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#,
            "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----\n",
            "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n",
            "-----BEGIN RSA PUBLIC KEY-----\nMAYCAQECAQM=\n-----END RSA PUBLIC KEY-----\n",
        ] {
            assert!(ClientPublicKey::parse(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn rfc_7638_example_thumbprint() {
        // RFC 7638 §3.1.
        let jwk = r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256"}"#;
        let key = ClientPublicKey::parse(jwk).expect("RFC 7638 example key");
        assert_eq!(key.thumbprint(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        assert_eq!(key.kid(), key.thumbprint(), "no kid in the JWK: the thumbprint is the kid");
        assert_eq!(key.algorithms(), &[Algorithm::RS256]);
        assert_eq!(key.key_type(), ClientKeyType::Rsa { bits: 2048 });
    }
}
