//! Postgres going away and coming back, through a TCP proxy the test switches off and on.

use serde_json::json;
use sesame_postgres::testing::TestDatabase;

use crate::helpers::{Proxy, TestApp, spawn_app_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_the_api_answers_503_and_recovers_by_itself() {
    let db = TestDatabase::new().await.expect("test database");
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let url = db.config().url.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    assert!(url.contains(&proxy.port.to_string()), "{url}");
    let app = spawn_app_with(Some(url), Some(db)).await;
    let start =
        json!({"client_id": "public-app", "connection": "email", "email": "outage@example.com", "send": "code"});
    assert_eq!(app.post_start(&start).await.status, 200);
    // Let that message out first, so the code read after recovery is the new one.
    app.mailbox("outage@example.com", 1).await;

    proxy.down().await;
    for _ in 0..3 {
        let reply = app.post_start(&start).await;
        reply.assert_error(
            503,
            "temporarily_unavailable",
            "The service is temporarily unavailable. Please try again later.",
        );
        assert_eq!(reply.headers["retry-after"], "1");
    }
    let token = app.post_token(&TestApp::otp_body("public-app", "email", "outage@example.com", "123456")).await;
    token.assert_error(
        503,
        "temporarily_unavailable",
        "The service is temporarily unavailable. Please try again later.",
    );

    // Every other path that reads the store answers 503 too (a page for the browser paths), never
    // a 500: what docs/operations.md and /openapi.json promise.
    let otp = "http://auth0.com/oauth/grant-type/passwordless/otp";
    let verify = json!({"client_id": "public-app", "connection": "email", "email": "outage@example.com", "verification_code": "123456"});
    app.post_json("/passwordless/verify", &verify).await.assert_error(
        503,
        "temporarily_unavailable",
        "The service is temporarily unavailable. Please try again later.",
    );
    let co = json!({"client_id": "public-app", "credential_type": otp, "realm": "email", "username": "outage@example.com", "otp": "123456"});
    assert_eq!(app.post_json("/co/authenticate", &co).await.status, 503);
    let userinfo = app.http.get(format!("{}/userinfo", app.base)).bearer_auth("opaque-token").send().await;
    assert_eq!(userinfo.expect("userinfo").status(), 503);
    let form = [
        ("client_id", "public-app"),
        ("connection", "email"),
        ("email", "outage@example.com"),
        ("verification_code", "0123456789abcdef0123456789abcdef0123456789a"),
        ("response_type", "code"),
        ("redirect_uri", "https://app.example.com/callback"),
        ("code_challenge", crate::links::CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    let page = app.http.post(format!("{}/passwordless/verify_redirect", app.base)).form(&form).send().await;
    let page = page.expect("confirm");
    let location = page.headers().get("location").map(|l| l.to_str().expect("ascii").to_owned());
    assert_eq!((page.status().as_u16(), location), (503, None), "the link page says to come back");
    assert_eq!(page.headers()["retry-after"], "1");
    let authorize = app
        .http
        .get(format!("{}/authorize", app.base))
        .query(&[
            ("client_id", "public-app"),
            ("response_type", "code"),
            ("redirect_uri", "https://app.example.com/callback"),
            ("login_ticket", "a-ticket-from-co-authenticate"),
            ("state", "s"),
            ("code_challenge", crate::links::CHALLENGE),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .expect("authorize");
    let location = authorize.headers().get("location").map(|l| l.to_str().expect("ascii").to_owned());
    assert_eq!((authorize.status().as_u16(), location), (503, None));
    // The hosted page's start: a page saying to come back, never a redirect or a 500.
    let hosted = app
        .http
        .post(format!("{}/u/start", app.base))
        .header("cookie", "__Host-sesame_csrf=outage-token")
        .form(&[
            ("csrf", "outage-token"),
            ("client_id", "public-app"),
            ("response_type", "code"),
            ("redirect_uri", "https://app.example.com/callback"),
            ("code_challenge", crate::links::CHALLENGE),
            ("code_challenge_method", "S256"),
            ("identifier", "outage@example.com"),
        ])
        .send()
        .await
        .expect("hosted start");
    let location = hosted.headers().get("location").map(|l| l.to_str().expect("ascii").to_owned());
    assert_eq!((hosted.status().as_u16(), location), (503, None));
    assert_eq!(hosted.headers()["retry-after"], "1");

    proxy.up();
    let code = app.start_and_read_code("public-app", "email", "outage@example.com").await;
    let login = app.post_token(&TestApp::otp_body("public-app", "email", "outage@example.com", &code)).await;
    assert_eq!(login.status, 200, "recovered without a restart: {}", login.body);
}
