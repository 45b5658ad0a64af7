//! Discovery, JWKS and CORS for browser SDKs.

use crate::helpers::{ISSUER, spawn_app};

#[tokio::test]
async fn discovery_names_the_configured_issuer_and_its_endpoints() {
    let app = spawn_app().await;
    let doc = app.get("/.well-known/openid-configuration").await.body;
    assert_eq!(doc["issuer"], ISSUER);
    assert_eq!(doc["token_endpoint"], format!("{ISSUER}oauth/token"));
    assert_eq!(doc["jwks_uri"], format!("{ISSUER}.well-known/jwks.json"));
    let jwks = app.get("/.well-known/jwks.json").await.body;
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["alg"].as_str(), key["use"].as_str()),
        (Some("RSA"), Some("RS256"), Some("sig"))
    );
    assert!(key["kid"].as_str().is_some_and(|k| !k.is_empty()));
    assert!(key.get("d").is_none(), "no private part");
}

#[tokio::test]
async fn cors_preflight_is_answered_for_registered_origins_only() {
    let app = spawn_app().await;
    let preflight = |origin: &'static str| {
        app.http
            .request(reqwest::Method::OPTIONS, format!("{}/passwordless/start", app.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "auth0-client,content-type,x-request-language")
            .send()
    };
    let ok = preflight("https://spa-app.example").await.expect("preflight");
    assert_eq!(ok.status(), 204);
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://spa-app.example");
    assert_eq!(ok.headers()["access-control-allow-credentials"], "true");
    let allowed = ok.headers()["access-control-allow-headers"].to_str().expect("ascii");
    for h in ["auth0-client", "content-type", "x-request-language"] {
        assert!(allowed.contains(h), "{allowed}");
    }
    let evil = preflight("https://evil.example").await.expect("preflight");
    assert_eq!(evil.status(), 403);
    assert!(evil.headers().get("access-control-allow-origin").is_none());

    let start = app
        .http
        .post(format!("{}/passwordless/start", app.base))
        .header("origin", "https://spa-app.example")
        .header("auth0-client", "eyJuYW1lIjoiYXV0aDAuanMiLCJ2ZXJzaW9uIjoiMTAuMi4xIn0=")
        .json(&serde_json::json!({"client_id": "spa-app", "connection": "email", "email": "spa@example.com", "send": "code"}))
        .send()
        .await
        .expect("start");
    assert_eq!(start.status(), 200);
    assert_eq!(start.headers()["access-control-allow-origin"], "https://spa-app.example");
}
