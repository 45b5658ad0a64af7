//! `ClientPublicKey::parse` / `parse_all`: the keys a private_key_jwt client registers (PEM SPKI,
//! PKCS#1, X.509 certificate, JWK, JWK Set), through Sesame's own strict DER reader.
//!
//! Input: either the key text as registered, or `der:LABEL` on the first line followed by raw
//! DER bytes, which the target wraps in a PEM block of that label (to reach the DER reader
//! with any bytes).
//!
//! Properties:
//! - no panic; a key that parses is RSA of 2048–4096 bits (RS256/RS384/PS256) or P-256 (ES256),
//!   with a 43-character base64url RFC 7638 thumbprint and a kid of 1–256 characters;
//! - `parse_all` of a single PEM key or JWK gives that key (same thumbprint, kid, algorithms);
//! - parsing is deterministic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sesame_jwt::assertion::{Algorithm, ClientKeyType, ClientPublicKey};

fuzz_target!(|data: &[u8]| {
    let text = if let Some(rest) = data.strip_prefix(b"der:") {
        let nl = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let Ok(label) = std::str::from_utf8(&rest[..nl]) else { return };
        let der = rest.get(nl + 1..).unwrap_or_default();
        pem::encode(&pem::Pem::new(label.trim(), der.to_vec()))
    } else {
        let Some(t) = sesame_fuzz::text(data) else { return };
        t.to_owned()
    };
    let one = ClientPublicKey::parse(&text);
    let all = ClientPublicKey::parse_all(&text);
    if let Ok(k) = &one {
        check(k);
        let again = ClientPublicKey::parse(&text).expect("deterministic");
        assert_eq!((again.thumbprint(), again.kid()), (k.thumbprint(), k.kid()));
    }
    if let Ok(keys) = &all {
        assert!(!keys.is_empty());
        keys.iter().for_each(check);
        let single = if text.trim_start().starts_with('{') {
            serde_json::from_str::<serde_json::Value>(text.trim()).is_ok_and(|v| v.get("keys").is_none())
        } else {
            text.matches("-----BEGIN ").count() == 1
        };
        if single {
            let k = one.as_ref().unwrap_or_else(|e| panic!("parse_all accepts one key that parse refuses: {e}"));
            let first = &keys[0];
            assert_eq!(
                (k.thumbprint(), k.kid(), k.algorithms()),
                (first.thumbprint(), first.kid(), first.algorithms())
            );
        }
    }
});

fn check(k: &ClientPublicKey) {
    let t = k.thumbprint();
    assert!(t.len() == 43 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{t:?}");
    let kid = k.kid().chars().count();
    assert!((1..=256).contains(&kid), "kid of {kid} characters");
    assert!(!k.algorithms().is_empty());
    match k.key_type() {
        ClientKeyType::Rsa { bits } => {
            assert!((2048..=4096).contains(&bits), "RSA of {bits} bits");
            assert!(k.algorithms().iter().all(|a| matches!(a, Algorithm::RS256 | Algorithm::RS384 | Algorithm::PS256)));
        }
        ClientKeyType::EcP256 => assert_eq!(k.algorithms(), &[Algorithm::ES256]),
    }
}
