//! private_key_jwt on `/passwordless/start` and `/oauth/token`, with a real RSA key pair.

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::KeyPair as _;
use serde_json::{Value, json};
use sesame_api::config::ClientSettings;
use sesame_domain::{AppType, AuthMethod};

use crate::helpers::{ISSUER, OTP_GRANT, TestApp, spawn_app_configured};

pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub(crate) struct Keys {
    pub(crate) private_pem: String,
    pub(crate) public_pem: String,
}

pub(crate) fn rsa_keys() -> Keys {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("keygen");
    let private = pair.as_der().expect("pkcs8");
    let public = pair.public_key().as_der().expect("spki");
    Keys {
        private_pem: pem::encode(&pem::Pem::new("PRIVATE KEY", private.as_ref().to_vec())),
        public_pem: pem::encode(&pem::Pem::new("PUBLIC KEY", public.as_ref().to_vec())),
    }
}

pub(crate) fn assertion(keys: &Keys, claims: Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(keys.private_pem.as_bytes()).expect("key");
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &key).expect("signed")
}

fn claims(aud: &str, lifetime: i64, jti: &str) -> Value {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    json!({"iss": "jwt-app", "sub": "jwt-app", "aud": aud, "iat": now, "exp": now + lifetime, "jti": jti})
}

async fn app_with(keys: &Keys) -> TestApp {
    let public = keys.public_pem.clone();
    spawn_app_configured(move |s| {
        let mut c: ClientSettings =
            serde_json::from_value(json!({"client_id": "jwt-app", "name": "JWT app"})).expect("client");
        c.app_type = AppType::RegularWeb;
        c.auth_method = AuthMethod::PrivateKeyJwt;
        c.public_keys = vec![public];
        s.clients.push(c);
    })
    .await
}

#[tokio::test]
async fn a_backend_logs_in_with_private_key_jwt_and_each_assertion_works_once() {
    let keys = rsa_keys();
    let app = app_with(&keys).await;
    let to = "pkjwt@example.com";
    let start = |a: &str| {
        json!({"client_id": "jwt-app", "connection": "email", "email": to, "send": "code",
               "client_assertion": a, "client_assertion_type": JWT_BEARER})
    };
    let a1 = assertion(&keys, claims(ISSUER, 120, "jti-start-1"));
    assert_eq!(app.post_start(&start(&a1)).await.status, 200);
    app.post_start(&start(&a1)).await.assert_error(401, "invalid_client", "Invalid client credentials");
    let code = app.mailbox(to, 1).await[0]["code"].as_str().expect("code").to_owned();

    // The token endpoint URL is an accepted audience too; form body as node-auth0 sends it.
    let a2 = assertion(&keys, claims(&format!("{ISSUER}oauth/token"), 60, "jti-token-1"));
    let reply = app
        .post_token_form(&[
            ("grant_type", OTP_GRANT),
            ("client_id", "jwt-app"),
            ("realm", "email"),
            ("username", to),
            ("otp", &code),
            ("scope", "openid"),
            ("client_assertion", &a2),
            ("client_assertion_type", JWT_BEARER),
        ])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    app.verify_jwt(reply.body["id_token"].as_str().expect("id_token"), "jwt-app").await;
}

#[tokio::test]
async fn bad_assertions_are_refused_with_invalid_client() {
    let keys = rsa_keys();
    let other = rsa_keys();
    let app = app_with(&keys).await;
    let body = |a: &str, t: &str| {
        json!({"client_id": "jwt-app", "connection": "email", "email": "bad@example.com", "send": "code",
               "client_assertion": a, "client_assertion_type": t})
    };
    let cases = [
        ("wrong audience", assertion(&keys, claims("https://elsewhere.example/", 60, "j1"))),
        ("audience without trailing slash", assertion(&keys, claims(ISSUER.trim_end_matches('/'), 60, "j2"))),
        ("expired", assertion(&keys, claims(ISSUER, -60, "j3"))),
        ("exp too far", assertion(&keys, claims(ISSUER, 3600, "j4"))),
        ("unregistered key", assertion(&other, claims(ISSUER, 60, "j5"))),
        (
            "oversized",
            assertion(&keys, {
                let mut c = claims(ISSUER, 60, "j6");
                c["pad"] = json!("x".repeat(2100));
                c
            }),
        ),
    ];
    for (what, a) in cases {
        let r = app.post_start(&body(&a, JWT_BEARER)).await;
        assert_eq!((r.status, r.body["error"].as_str()), (401, Some("invalid_client")), "{what}: {}", r.body);
    }
    let good = assertion(&keys, claims(ISSUER, 60, "j7"));
    app.post_start(&body(&good, "urn:other")).await.assert_error(
        400,
        "bad.request",
        "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    );
    let no_auth = json!({"client_id": "jwt-app", "connection": "email", "email": "bad@example.com", "send": "code"});
    app.post_start(&no_auth).await.assert_error(403, "unauthorized_client", "Client authentication is required");
    let mut both = body(&good, JWT_BEARER);
    both["client_secret"] = json!("also-a-secret");
    app.post_start(&both).await.assert_error(
        400,
        "bad.request",
        "use either a client secret or a client assertion, not both",
    );
}
