//! `/oauth/token` errors (spec §5.3).

use serde_json::json;

use crate::helpers::{OTP_GRANT, TestApp, spawn_app};

#[tokio::test]
async fn an_spa_may_not_use_the_otp_grant() {
    let app = spawn_app().await;
    let reply = app.post_token(&TestApp::otp_body("spa-app", "email", "a@example.com", "123456")).await;
    reply.assert_error(
        403,
        "unauthorized_client",
        "Grant type 'http://auth0.com/oauth/grant-type/passwordless/otp' not allowed for the client.",
    );
    assert_eq!(reply.body["error_uri"], "https://auth0.com/docs/clients/client-grant-types");
}

#[tokio::test]
async fn missing_and_unsupported_parameters_are_named() {
    let app = spawn_app().await;
    let full = TestApp::otp_body("public-app", "email", "a@example.com", "123456");
    for field in ["grant_type", "realm", "username", "otp"] {
        let mut body = full.clone();
        body.as_object_mut().expect("object").remove(field);
        app.post_token(&body).await.assert_error(
            400,
            "invalid_request",
            &format!("Missing required parameter: {field}"),
        );
    }
    let mut body = full.clone();
    body.as_object_mut().expect("object").remove("client_id");
    app.post_token(&body).await.assert_error(400, "invalid_request", "Missing required parameter: client_id");
    let mut body = full.clone();
    body["grant_type"] = json!("password");
    app.post_token(&body).await.assert_error(400, "unsupported_grant_type", "Unsupported grant type: password");
    let mut body = full.clone();
    body["client_id"] = json!("nobody");
    app.post_token(&body).await.assert_error(401, "invalid_client", "Unknown client");
    let mut body = full.clone();
    body["realm"] = json!("carrier-pigeon");
    app.post_token(&body).await.assert_error(400, "invalid_request", "Connection does not exist");
    let body = TestApp::otp_body("email-only", "sms", "+14155552671", "123456");
    app.post_token(&body).await.assert_error(400, "invalid_request", "Connection is disabled");
    let mut body = full.clone();
    body["otp"] = json!(123_456);
    app.post_token(&body).await.assert_error(
        400,
        "invalid_request",
        "error in otp - invalid type: number (expected string)",
    );
    // A username that cannot have a code gets the same answer as a wrong code.
    let body = TestApp::otp_body("public-app", "email", "not an email", "123456");
    app.post_token(&body).await.assert_error(403, "invalid_grant", "Wrong email or verification code.");
    let reply = app.post_raw("/oauth/token", "application/json", "{oops").await;
    reply.assert_error(400, "invalid_request", "The request body must be JSON or application/x-www-form-urlencoded");
    let reply = app.post_token_form(&[("grant_type", OTP_GRANT), ("client_id", "public-app")]).await;
    reply.assert_error(400, "invalid_request", "Missing required parameter: realm");
}

#[tokio::test]
async fn userinfo_refuses_missing_and_forged_tokens() {
    let app = spawn_app().await;
    let reply = app.get("/userinfo").await;
    reply.assert_error(401, "invalid_token", "The access token is missing, invalid or expired.");
    for token in ["nonsense", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."] {
        let r = app.http.get(format!("{}/userinfo", app.base)).bearer_auth(token).send().await.expect("userinfo");
        assert_eq!(r.status(), 401, "{token}");
    }
}
