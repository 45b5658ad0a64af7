//! Token signing for Sesame: RS256 keys (from a PEM file or generated at start), the JWKS,
//! and verification of the tokens Sesame signed. `aws-lc-rs` generates the keys, reads their
//! public components and signs (with the key parsed once); `jsonwebtoken`, on its aws-lc-rs
//! backend, verifies.
//! [`assertion`] verifies the `private_key_jwt` client assertions confidential clients send.

pub mod assertion;
pub mod keyring;

pub use assertion::{
    AssertionError, AssertionRules, ClientKeyType, ClientPublicKey, KeyError, VerifiedAssertion,
    verify_client_assertion,
};

use std::sync::RwLock;

use anyhow::Context as _;
use async_trait::async_trait;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use sesame_ports::{TokenError, TokenIssuer, TokenKind};

/// One RSA signing key, ready to sign, with its public JWK.
pub struct RsaSigningKey {
    kid: String,
    /// Parsed once: signing through `jsonwebtoken::encode` parses and checks the DER key again
    /// for every token (`RsaKeyPair::from_der` runs `RSA_check_key`, and the fresh key has no
    /// cached Montgomery contexts), which more than doubled the cost of a signature.
    pair: aws_lc_rs::rsa::KeyPair,
    /// `{"alg":"RS256","typ":…,"kid":…}` in base64url, for ID tokens and for access tokens.
    id_token_header: String,
    access_token_header: String,
    decoding: DecodingKey,
    jwk: Value,
    pem: String,
}

impl std::fmt::Debug for RsaSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaSigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl RsaSigningKey {
    /// A new 2048-bit key (RS256, as Auth0 signs by default).
    ///
    /// # Errors
    /// When key generation fails.
    pub fn generate() -> anyhow::Result<Self> {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .map_err(|_| anyhow::anyhow!("RSA key generation failed"))?;
        let der = pair.as_der().map_err(|_| anyhow::anyhow!("RSA key encoding failed"))?;
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
        Self::from_pem(&pem)
    }

    /// Reads a PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`) PEM.
    ///
    /// # Errors
    /// When the PEM is not an RSA private key of at least 2048 bits.
    pub fn from_pem(pem_text: &str) -> anyhow::Result<Self> {
        let parsed = pem::parse(pem_text).context("signing key is not PEM")?;
        let pair = match parsed.tag() {
            "PRIVATE KEY" => aws_lc_rs::rsa::KeyPair::from_pkcs8(parsed.contents()),
            "RSA PRIVATE KEY" => aws_lc_rs::rsa::KeyPair::from_der(parsed.contents()),
            other => anyhow::bail!("signing key PEM is a {other}, expected PRIVATE KEY or RSA PRIVATE KEY"),
        }
        .map_err(|e| anyhow::anyhow!("signing key is not a usable RSA key: {e}"))?;
        anyhow::ensure!(pair.public_modulus_len() * 8 >= 2048, "the RSA signing key must have at least 2048 bits");
        let public = pair.public_key();
        let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
        let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
        // RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order.
        let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes()));
        let decoding = DecodingKey::from_rsa_components(&n, &e).context("public key rejected by jsonwebtoken")?;
        let jwk = json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e});
        let header = |typ: &str| URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "typ": typ, "kid": kid}).to_string());
        Ok(Self {
            id_token_header: header("JWT"),
            access_token_header: header("at+jwt"),
            kid,
            pair,
            decoding,
            jwk,
            pem: pem_text.to_owned(),
        })
    }

    /// `claims` as a compact RS256 JWS under this key (RFC 7515 §7.1), its header naming the
    /// key and the kind of token (`typ` `JWT` or `at+jwt`, RFC 9068).
    ///
    /// # Errors
    /// When the claims do not serialise or the signature fails.
    pub fn sign(&self, kind: TokenKind, claims: &Value) -> Result<String, TokenError> {
        let header = match kind {
            TokenKind::IdToken => &self.id_token_header,
            TokenKind::AccessToken => &self.access_token_header,
        };
        let payload = serde_json::to_vec(claims).map_err(|e| TokenError::Unexpected(e.into()))?;
        let mut token = String::with_capacity(header.len() + payload.len() * 4 / 3 + 350);
        token.push_str(header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                token.as_bytes(),
                &mut signature,
            )
            .map_err(|_| TokenError::Unexpected(anyhow::anyhow!("RS256 signature failed")))?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The private key as PEM, for storing (sealed) in a key store.
    pub fn private_pem(&self) -> &str {
        &self.pem
    }
}

/// Signs with the active key and verifies against every published one.
#[derive(Debug)]
pub struct JwtIssuer {
    /// The active key first, then keys still published during a rotation.
    keys: RwLock<Vec<RsaSigningKey>>,
}

impl JwtIssuer {
    pub fn new(active: RsaSigningKey) -> Self {
        Self { keys: RwLock::new(vec![active]) }
    }

    /// Makes `key` the active key; the previous keys stay published.
    pub fn rotate(&self, key: RsaSigningKey) {
        let mut keys = self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.insert(0, key);
    }

    /// Stops publishing the key `kid`, unless it is the active one.
    pub fn retire(&self, kid: &str) -> bool {
        let mut keys = self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = keys.len();
        let active = keys.first().map(|k| k.kid.clone());
        keys.retain(|k| Some(&k.kid) == active.as_ref() || k.kid != kid);
        keys.len() != before
    }

    pub fn active_kid(&self) -> String {
        let keys = self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.first().map(|k| k.kid.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl TokenIssuer for JwtIssuer {
    async fn sign(&self, kind: TokenKind, claims: &Value) -> Result<String, TokenError> {
        let keys = self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.first().ok_or_else(|| anyhow::anyhow!("no signing key"))?.sign(kind, claims)
    }

    async fn verify(&self, token: &str) -> Result<Value, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(TokenError::Invalid("unexpected algorithm".into()));
        }
        let keys = self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = keys
            .iter()
            .find(|k| header.kid.as_deref() == Some(k.kid.as_str()))
            .ok_or_else(|| TokenError::Invalid("unknown kid".into()))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_aud = false;
        validation.leeway = 0;
        let data = jsonwebtoken::decode::<Value>(token, &key.decoding, &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        Ok(data.claims)
    }

    async fn jwks(&self) -> Result<Value, TokenError> {
        let keys = self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signed_tokens_verify_with_the_published_key_and_survive_rotation() {
        let issuer = JwtIssuer::new(RsaSigningKey::generate().expect("key"));
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = json!({"sub": "email|1", "exp": now + 60, "iat": now});
        let token = issuer.sign(TokenKind::IdToken, &claims).await.expect("signed");
        assert_eq!(issuer.verify(&token).await.expect("verifies")["sub"], "email|1");

        let jwks = issuer.jwks().await.expect("jwks");
        let jwk = &jwks["keys"][0];
        let header = jsonwebtoken::decode_header(&token).expect("header");
        assert_eq!(header.kid.as_deref(), jwk["kid"].as_str());
        let key = DecodingKey::from_rsa_components(jwk["n"].as_str().expect("n"), jwk["e"].as_str().expect("e"))
            .expect("key");
        let mut v = Validation::new(Algorithm::RS256);
        v.validate_aud = false;
        assert!(jsonwebtoken::decode::<Value>(&token, &key, &v).is_ok(), "verifies from the JWKS alone");

        let old_kid = issuer.active_kid();
        issuer.rotate(RsaSigningKey::generate().expect("key"));
        assert_ne!(issuer.active_kid(), old_kid);
        assert!(issuer.verify(&token).await.is_ok(), "old tokens still verify");
        assert_eq!(issuer.jwks().await.expect("jwks")["keys"].as_array().map(Vec::len), Some(2));
        assert!(issuer.retire(&old_kid));
        assert!(issuer.verify(&token).await.is_err(), "retired key no longer verifies");
    }

    #[tokio::test]
    async fn tampered_and_unsigned_tokens_are_refused() {
        let issuer = JwtIssuer::new(RsaSigningKey::generate().expect("key"));
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let token = issuer.sign(TokenKind::AccessToken, &json!({"sub": "a", "exp": now + 60})).await.expect("signed");
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(br#"{"sub":"admin","exp":9999999999}"#);
        assert!(issuer.verify(&parts.join(".")).await.is_err());
        let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#), parts[1]);
        assert!(issuer.verify(&none).await.is_err());
    }

    #[test]
    fn a_token_is_a_compact_rs256_jws_naming_its_key_and_kind() {
        let key = RsaSigningKey::generate().expect("key");
        let claims = json!({"sub": "email|1", "email": "ünïcode@example.com", "n": 1});
        for (kind, typ) in [(TokenKind::IdToken, "JWT"), (TokenKind::AccessToken, "at+jwt")] {
            let token = key.sign(kind, &claims).expect("signed");
            let parts: Vec<&str> = token.split('.').collect();
            assert_eq!(parts.len(), 3, "{token}");
            let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
            assert_eq!(header, json!({"alg": "RS256", "typ": typ, "kid": key.kid()}));
            let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
            assert_eq!(payload, claims);
            // The signature checks out with the public key alone, by aws-lc-rs directly.
            let public = key.pair.public_key().as_ref().to_vec();
            let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("b64");
            let signed = format!("{}.{}", parts[0], parts[1]);
            aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256, &public)
                .verify(signed.as_bytes(), &signature)
                .expect("RS256 signature verifies");
            assert_eq!(signature.len(), 256);
        }
    }
}

/// The `ClientAssertionVerifier` port over `assertion::verify_client_assertion`.
#[derive(Debug, Default, Clone, Copy)]
pub struct AssertionVerifier;

impl sesame_ports::ClientAssertionVerifier for AssertionVerifier {
    fn verify(
        &self,
        assertion: &str,
        check: &sesame_ports::AssertionCheck<'_>,
    ) -> Result<sesame_ports::VerifiedClientAssertion, sesame_ports::AssertionRejected> {
        let mut keys = Vec::new();
        for text in check.public_keys {
            match ClientPublicKey::parse_all(text) {
                Ok(parsed) => keys.extend(parsed),
                // A bad registered key is a configuration error: skip it, say so, keep the rest.
                Err(e) => tracing::warn!(client_id = check.client_id, error = %e, "unusable public key registered"),
            }
        }
        let rules = AssertionRules::new(check.client_id, check.audiences, check.now.unix_timestamp());
        let verified = verify_client_assertion(assertion, &keys, &rules)
            .map_err(|e| sesame_ports::AssertionRejected(e.to_string()))?;
        let remember_until = time::OffsetDateTime::from_unix_timestamp(verified.remember_until)
            .map_err(|_| sesame_ports::AssertionRejected("exp out of range".into()))?;
        Ok(sesame_ports::VerifiedClientAssertion { jti: verified.jti, remember_until })
    }
}
