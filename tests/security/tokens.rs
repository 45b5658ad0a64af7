//! Forged, altered, expired and replayed tokens: the id_token passes a strict verifier;
//! `alg: none` and HS256 keyed with the public key are refused as client assertions and as
//! access tokens; expired and future assertions are refused, and each assertion works once
//! (on Redis too); refresh tokens altered by one character, made up, or reused are refused.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use serde_json::{Value, json};
use sesame_api::config::ClientSettings;
use sesame_domain::{AppType, AuthMethod};

use crate::helpers::{API, ISSUER, TestApp};
use crate::stack::{Kind, Stack, on_both, stack};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

struct Keys {
    private_pem: String,
    public_pem: String,
}

fn rsa_keys() -> Keys {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    Keys {
        private_pem: pem::encode(&pem::Pem::new("PRIVATE KEY", pair.as_der().unwrap().as_ref().to_vec())),
        public_pem: pem::encode(&pem::Pem::new("PUBLIC KEY", pair.public_key().as_der().unwrap().as_ref().to_vec())),
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn claims(lifetime: i64, jti: &str) -> Value {
    json!({"iss": "jwt-app", "sub": "jwt-app", "aud": ISSUER, "iat": now(), "exp": now() + lifetime, "jti": jti})
}

fn rs256(keys: &Keys, claims: &Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(keys.private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), claims, &key).unwrap()
}

/// `alg: none`, no signature.
fn unsigned(claims: &Value) -> String {
    format!("{}.{}.", b64(br#"{"alg":"none","typ":"JWT"}"#), b64(claims.to_string().as_bytes()))
}

/// HS256 with the public key as the HMAC secret: the classic algorithm-confusion forgery.
fn hs256_with(public: &[u8], claims: &Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(public);
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), claims, &key).unwrap()
}

async fn with_jwt_client(kind: Kind, keys: &Keys) -> Stack {
    let public = keys.public_pem.clone();
    stack(kind, move |s| {
        let mut c: ClientSettings = serde_json::from_value(json!({"client_id": "jwt-app", "name": "JWT app"})).unwrap();
        c.app_type = AppType::RegularWeb;
        c.auth_method = AuthMethod::PrivateKeyJwt;
        c.public_keys = vec![public];
        s.clients.push(c);
    })
    .await
}

async fn forged_client_assertions_are_refused(kind: Kind) {
    let keys = rsa_keys();
    let app = with_jwt_client(kind, &keys).await;
    let start = |a: &str| {
        json!({"client_id": "jwt-app", "connection": "email", "email": "pk@example.com", "send": "code",
               "client_assertion": a, "client_assertion_type": JWT_BEARER})
    };
    let future = json!({"iss": "jwt-app", "sub": "jwt-app", "aud": ISSUER, "iat": now() + 600, "nbf": now() + 600, "exp": now() + 660, "jti": "f1"});
    let mut no_jti = claims(60, "x");
    no_jti.as_object_mut().unwrap().remove("jti");
    let mut other_iss = claims(60, "i1");
    other_iss["iss"] = json!("public-app");
    other_iss["sub"] = json!("public-app");
    let forged = [
        ("alg none", unsigned(&claims(60, "n1"))),
        (
            "alg none, capitalised",
            format!("{}.{}.", b64(br#"{"alg":"None"}"#), b64(claims(60, "n2").to_string().as_bytes())),
        ),
        ("HS256 keyed with the PEM public key", hs256_with(keys.public_pem.as_bytes(), &claims(60, "h1"))),
        ("expired", rs256(&keys, &claims(-30, "e1"))),
        ("issued in the future", rs256(&keys, &future)),
        ("without jti", rs256(&keys, &no_jti)),
        ("for another client", rs256(&keys, &other_iss)),
        ("signature of another token", {
            let a = rs256(&keys, &claims(60, "s1"));
            let b = rs256(&keys, &claims(60, "s2"));
            let (ah, _) = a.rsplit_once('.').unwrap();
            format!("{ah}.{}", b.rsplit_once('.').unwrap().1)
        }),
        ("garbage", "a.b.c".to_owned()),
    ];
    for (what, a) in forged {
        let r = app.post_start(&start(&a)).await;
        assert_eq!((r.status, r.body["error"].as_str()), (401, Some("invalid_client")), "{what}: {}", r.body);
    }
    // A good one works once, on every replica's shared replay guard.
    let good = rs256(&keys, &claims(60, &format!("once-{}", crate::stack::unique(""))));
    assert_eq!(app.post_start(&start(&good)).await.status, 200);
    assert_eq!(app.post_start(&start(&good)).await.status, 401, "replayed");
}
on_both!(forged_client_assertions_case, forged_client_assertions_are_refused);

async fn login_tokens(app: &TestApp, email: &str) -> Value {
    let code = app.start_and_read_code("public-app", "email", email).await;
    let mut body = TestApp::otp_body("public-app", "email", email, &code);
    body["audience"] = json!(API);
    body["scope"] = json!("openid email offline_access");
    body["nonce"] = json!("n-0S6_WzA2Mj");
    let r = app.post_token(&body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

async fn tokens_pass_a_strict_verifier_and_forgeries_do_not(kind: Kind) {
    let app = stack(kind, |_| {}).await;
    let tokens = login_tokens(&app, "strict@example.com").await;
    let id_token = tokens["id_token"].as_str().unwrap();

    // Strict: RS256 only, the kid in the JWKS, exact iss and aud, exp/iat/sub required, no leeway.
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let jwks = app.get("/.well-known/jwks.json").await.body;
    let jwk =
        jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == header.kid.as_deref().unwrap()).expect("kid");
    assert_eq!((jwk["kty"].as_str(), jwk["use"].as_str()), (Some("RSA"), Some("sig")));
    assert!(jwk.get("d").is_none() && jwk.get("p").is_none(), "no private part in the JWKS");
    let key =
        jsonwebtoken::DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.leeway = 0;
    v.validate_nbf = true;
    v.set_issuer(&[ISSUER]);
    v.set_audience(&["public-app"]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let c = jsonwebtoken::decode::<Value>(id_token, &key, &v).expect("a strict verifier accepts it").claims;
    assert!(c["iat"].as_i64().unwrap() <= now() + 1 && c["exp"].as_i64().unwrap() > now());
    let mut other_aud = v.clone();
    other_aud.set_audience(&["spa-app"]);
    assert!(jsonwebtoken::decode::<Value>(id_token, &key, &other_aud).is_err(), "bound to its client");

    // Access tokens forged from the public JWKS are refused at /userinfo.
    let access = tokens["access_token"].as_str().unwrap();
    let mut payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(access.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    payload["sub"] = json!("email|someone-else");
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    let mut expired = payload.clone();
    expired["exp"] = json!(now() - 10);
    for (what, token) in [
        ("genuine", access.to_owned()),
        ("alg none", unsigned(&payload)),
        ("HS256 keyed with the modulus", hs256_with(&n, &payload)),
        ("HS256 keyed with the JWKS JSON", hs256_with(jwks.to_string().as_bytes(), &payload)),
        ("altered payload", {
            let parts: Vec<&str> = access.split('.').collect();
            format!("{}.{}.{}", parts[0], b64(payload.to_string().as_bytes()), parts[2])
        }),
        ("expired, unsigned", unsigned(&expired)),
        ("the id_token", id_token.to_owned()),
    ] {
        let r = app.http.get(format!("{}/userinfo", app.base)).bearer_auth(&token).send().await.unwrap();
        let want = if what == "genuine" { 200 } else { 401 };
        assert_eq!(r.status().as_u16(), want, "{what}");
    }

    // Refresh tokens: altered, made up or reused are refused; the genuine one rotates once.
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let grant = |t: &str| json!({"grant_type": "refresh_token", "client_id": "public-app", "refresh_token": t});
    let mut altered = refresh.clone().into_bytes();
    let last = altered.len() - 1;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    for (what, t) in [
        ("altered by one character", altered.as_str()),
        ("made up", "x".repeat(refresh.len()).as_str()),
        ("empty", ""),
        ("a JWT with alg none", unsigned(&json!({"sub": "email|x", "exp": now() + 3600})).as_str()),
        ("the access token", access),
    ] {
        let r = app.post_token(&grant(t)).await;
        assert!(matches!(r.status, 400 | 401 | 403), "{what}: {} {}", r.status, r.body);
        assert!(r.body["error"].is_string(), "{what}: {}", r.body);
    }
    let rotated = app.post_token(&grant(&refresh)).await;
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    assert_eq!(app.post_token(&grant(&refresh)).await.status, 403, "a spent refresh token is refused");
}
on_both!(tokens_and_forgeries_case, tokens_pass_a_strict_verifier_and_forgeries_do_not);
