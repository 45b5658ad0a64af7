//! An EC P-256 key that signs `private_key_jwt` assertions (ES256), and its public JWK for the
//! client registry.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub struct Signer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
    jwk: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("jwk", &self.jwk).finish_non_exhaustive()
    }
}

impl Signer {
    /// A fresh key.
    pub fn generate() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("EC key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).expect("EC key");
        let point = key.public_key().as_ref().to_vec();
        assert_eq!(point.len(), 65, "uncompressed P-256 point");
        let jwk = serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        })
        .to_string();
        Self { key, rng, jwk }
    }

    /// The public key as a JWK (what a client registers).
    pub fn jwk(&self) -> &str {
        &self.jwk
    }

    /// `b64(header).b64(claims).b64(ES256 signature)` over the given JSON texts, as they are.
    pub fn sign(&self, header: &[u8], claims: &[u8]) -> String {
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let sig = self.key.sign(&self.rng, input.as_bytes()).expect("ES256 signature");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    /// An assertion as the Auth0 SDKs make one: `{"alg":"ES256","typ":"JWT"}`, `iss` = `sub` =
    /// the client, `aud` the issuer, 2 minutes, a fresh `jti`.
    pub fn assertion(&self, client_id: &str, aud: &str, now: i64) -> String {
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).expect("random jti");
        let claims = serde_json::json!({
            "iss": client_id,
            "sub": client_id,
            "aud": aud,
            "iat": now,
            "exp": now + 120,
            "jti": URL_SAFE_NO_PAD.encode(jti),
        });
        self.sign(br#"{"alg":"ES256","typ":"JWT"}"#, claims.to_string().as_bytes())
    }
}
