//! Successful logins and the rules that end a code's life.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{API, ISSUER, OTP_GRANT, TestApp, WEB_SECRET, spawn_app};

#[tokio::test]
async fn email_code_login_for_a_public_client_returns_tokens_that_verify_against_the_jwks() {
    let app = spawn_app().await;
    let start = app
        .post_start(
            &json!({"client_id": "public-app", "connection": "email", "email": "  Jane@Example.COM ", "send": "code"}),
        )
        .await;
    assert_eq!(start.status, 200);
    assert_eq!(start.body["email"], "jane@example.com");
    assert_eq!(start.body["email_verified"], false);
    let id = start.body["_id"].as_str().expect("_id");
    assert!(id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");

    let messages = app.mailbox("jane@example.com", 1).await;
    let code = messages[0]["code"].as_str().expect("code");
    assert_eq!(code.len(), 6);

    let reply = app.post_token(&TestApp::otp_body("public-app", "email", "jane@example.com", code)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 86400);
    assert!(reply.body.get("refresh_token").is_none(), "no offline_access asked");
    assert_eq!(reply.headers["cache-control"], "no-store");
    let claims = app.verify_jwt(reply.body["id_token"].as_str().expect("id_token"), "public-app").await;
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], "public-app");
    assert!(claims["sub"].as_str().expect("sub").starts_with("email|"));
    assert_eq!(claims["email"], "jane@example.com");
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["nickname"], "jane");
    assert!(claims.get("nonce").is_none());

    // The opaque access token is good at /userinfo, for the same user.
    let info = app
        .http
        .get(format!("{}/userinfo", app.base))
        .bearer_auth(reply.body["access_token"].as_str().expect("access_token"))
        .send()
        .await
        .expect("userinfo");
    assert_eq!(info.status(), 200);
    let info: serde_json::Value = info.json().await.expect("json");
    assert_eq!(info["sub"], claims["sub"]);
    assert_eq!(info["email"], "jane@example.com");

    // A second login finds the same user.
    let code = app.start_and_read_code("public-app", "email", "jane@example.com").await;
    let again = app.post_token(&TestApp::otp_body("public-app", "email", "JANE@example.com", &code)).await;
    let claims2 = app.verify_jwt(again.body["id_token"].as_str().expect("id_token"), "public-app").await;
    assert_eq!(claims2["sub"], claims["sub"]);
}

#[tokio::test]
async fn sms_code_login_works_with_a_form_body() {
    let app = spawn_app().await;
    let phone = "+14155552671";
    let start = app.post_start(&json!({"client_id": "public-app", "connection": "sms", "phone_number": phone})).await;
    assert_eq!(start.status, 200);
    assert_eq!(start.body["phone_number"], phone);
    assert_eq!(start.body["phone_verified"], false);
    assert_eq!(start.body["request_language"], serde_json::Value::Null);
    let sms = &app.mailbox(phone, 1).await[0];
    assert_eq!(sms["channel"], "sms");
    let text = sms["text"].as_str().expect("text");
    let code = sms["code"].as_str().expect("code");
    assert_eq!(text, format!("Your verification code is: {code}"));

    let reply = app
        .post_token_form(&[
            ("grant_type", OTP_GRANT),
            ("client_id", "public-app"),
            ("realm", "sms"),
            ("username", phone),
            ("otp", code),
            ("scope", "openid profile phone"),
        ])
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let claims = app.verify_jwt(reply.body["id_token"].as_str().expect("id_token"), "public-app").await;
    assert!(claims["sub"].as_str().expect("sub").starts_with("sms|"));
    assert_eq!(claims["phone_number"], phone);
    assert_eq!(claims["name"], phone);
    assert!(claims.get("email").is_none());
}

#[tokio::test]
async fn a_confidential_client_must_authenticate_on_start_and_token() {
    let app = spawn_app().await;
    let to = "web@example.com";
    let body = json!({"client_id": "web-app", "connection": "email", "email": to, "send": "code"});
    app.post_start(&body).await.assert_error(403, "unauthorized_client", "Client authentication is required");
    let mut wrong = body.clone();
    wrong["client_secret"] = json!("not-the-secret");
    app.post_start(&wrong).await.assert_error(401, "invalid_client", "Invalid client credentials");
    let mut right = body.clone();
    right["client_secret"] = json!(WEB_SECRET);
    assert_eq!(app.post_start(&right).await.status, 200);
    let code = app.mailbox(to, 1).await[0]["code"].as_str().expect("code").to_owned();

    let token = TestApp::otp_body("web-app", "email", to, &code);
    app.post_token(&token).await.assert_error(403, "unauthorized_client", "Client authentication is required");
    let mut bad = token.clone();
    bad["client_secret"] = json!("nope");
    app.post_token(&bad).await.assert_error(401, "invalid_client", "Invalid client credentials");
    let mut good = token.clone();
    good["client_secret"] = json!(WEB_SECRET);
    let reply = app.post_token(&good).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    app.verify_jwt(reply.body["id_token"].as_str().expect("id_token"), "web-app").await;
}

#[tokio::test]
async fn client_secret_basic_authenticates_on_both_endpoints() {
    let app = spawn_app().await;
    let to = "basic@example.com";
    let start = app
        .http
        .post(format!("{}/passwordless/start", app.base))
        .basic_auth("basic-app", Some(WEB_SECRET))
        .json(&json!({"connection": "email", "email": to, "send": "code"}))
        .send()
        .await
        .expect("start");
    assert_eq!(start.status(), 200);
    let code = app.mailbox(to, 1).await[0]["code"].as_str().expect("code").to_owned();
    let mut body = TestApp::otp_body("basic-app", "email", to, &code);
    body.as_object_mut().expect("object").remove("client_id");
    let wrong = app
        .http
        .post(format!("{}/oauth/token", app.base))
        .basic_auth("basic-app", Some("wrong"))
        .json(&body)
        .send()
        .await
        .expect("token");
    assert_eq!(wrong.status(), 401);
    let token = app
        .http
        .post(format!("{}/oauth/token", app.base))
        .basic_auth("basic-app", Some(WEB_SECRET))
        .json(&body)
        .send()
        .await
        .expect("token");
    assert_eq!(token.status(), 200);
    let mismatch = app
        .http
        .post(format!("{}/oauth/token", app.base))
        .basic_auth("basic-app", Some(WEB_SECRET))
        .json(&json!({"client_id": "web-app", "grant_type": OTP_GRANT, "realm": "email", "username": to, "otp": "1"}))
        .send()
        .await
        .expect("token");
    assert_eq!(mismatch.status(), 401, "a body client_id that disagrees with Basic is refused");
}

#[tokio::test]
async fn a_wrong_code_gets_the_exact_auth0_error_and_three_burn_the_code() {
    let app = spawn_app().await;
    let to = "tries@example.com";
    let code = app.start_and_read_code("public-app", "email", to).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let try_code = async |c: &str| app.post_token(&TestApp::otp_body("public-app", "email", to, c)).await;
    try_code(wrong).await.assert_error(403, "invalid_grant", "Wrong email or verification code.");
    try_code(wrong).await.assert_error(403, "invalid_grant", "Wrong email or verification code.");
    let max = "You've reached the maximum number of attempts. Please try to login again.";
    try_code(wrong).await.assert_error(403, "invalid_grant", max);
    try_code(&code).await.assert_error(403, "invalid_grant", max);

    // A new start gives a fresh code with fresh tries.
    let fresh = app.start_and_read_code("public-app", "email", to).await;
    assert_eq!(try_code(&fresh).await.status, 200);
}

#[tokio::test]
async fn sms_wrong_code_names_the_phone_number() {
    let app = spawn_app().await;
    app.start_and_read_code("public-app", "sms", "+33612345678").await;
    let reply = app.post_token(&TestApp::otp_body("public-app", "sms", "+33612345678", "00000")).await;
    reply.assert_error(403, "invalid_grant", "Wrong phone number or verification code.");
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let app = spawn_app().await;
    let to = "late@example.com";
    let code = app.start_and_read_code("public-app", "email", to).await;
    app.clock.advance(Duration::from_secs(180));
    app.post_token(&TestApp::otp_body("public-app", "email", to, &code)).await.assert_error(
        403,
        "invalid_grant",
        "The verification code has expired. Please try to login again.",
    );
}

#[tokio::test]
async fn a_code_works_once() {
    let app = spawn_app().await;
    let to = "once@example.com";
    let code = app.start_and_read_code("public-app", "email", to).await;
    assert_eq!(app.post_token(&TestApp::otp_body("public-app", "email", to, &code)).await.status, 200);
    app.post_token(&TestApp::otp_body("public-app", "email", to, &code)).await.assert_error(
        403,
        "invalid_grant",
        "Wrong email or verification code.",
    );
}

#[tokio::test]
async fn a_second_start_makes_the_first_code_useless() {
    let app = spawn_app().await;
    let to = "twice@example.com";
    let first = app.start_and_read_code("public-app", "email", to).await;
    let second = app.start_and_read_code("public-app", "email", to).await;
    if first != second {
        app.post_token(&TestApp::otp_body("public-app", "email", to, &first)).await.assert_error(
            403,
            "invalid_grant",
            "Wrong email or verification code.",
        );
    }
    assert_eq!(app.post_token(&TestApp::otp_body("public-app", "email", to, &second)).await.status, 200);
}

#[tokio::test]
async fn a_code_is_bound_to_its_client() {
    let app = spawn_app().await;
    let to = "bound@example.com";
    let code = app.start_and_read_code("public-app", "email", to).await;
    app.post_token(&TestApp::otp_body("email-only", "email", to, &code)).await.assert_error(
        403,
        "invalid_grant",
        "Wrong email or verification code.",
    );
    assert_eq!(app.post_token(&TestApp::otp_body("public-app", "email", to, &code)).await.status, 200);
}

#[tokio::test]
async fn twenty_simultaneous_exchanges_of_one_code_give_one_token() {
    let app = spawn_app().await;
    let to = "race@example.com";
    let code = app.start_and_read_code("public-app", "email", to).await;
    let body = TestApp::otp_body("public-app", "email", to, &code);
    let replies = futures::future::join_all((0..20).map(|_| app.post_token(&body))).await;
    let ok = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 1, "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    assert!(replies.iter().all(|r| r.status == 200 || r.status == 403));
}

#[tokio::test]
async fn an_audience_gives_a_jwt_access_token_and_offline_access_a_refresh_token() {
    let app = spawn_app().await;
    let to = "api@example.com";
    let code = app.start_and_read_code("public-app", "email", to).await;
    let mut body = TestApp::otp_body("public-app", "email", to, &code);
    body["audience"] = json!(API);
    body["scope"] = json!("openid email offline_access");
    let reply = app.post_token(&body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body["refresh_token"].as_str().is_some_and(|t| t.len() >= 43));
    let access = reply.body["access_token"].as_str().expect("access_token");
    assert_eq!(jsonwebtoken::decode_header(access).expect("jwt").typ.as_deref(), Some("at+jwt"));
    let claims = app.verify_jwt(access, API).await;
    assert_eq!(claims["azp"], "public-app");
    assert_eq!(claims["scope"], "openid email offline_access");
    let aud = claims["aud"].as_array().expect("aud list");
    assert!(aud.contains(&json!(format!("{ISSUER}userinfo"))));
    let info = app.http.get(format!("{}/userinfo", app.base)).bearer_auth(access).send().await.expect("userinfo");
    assert_eq!(info.status(), 200);

    let code = app.start_and_read_code("public-app", "email", to).await;
    let mut unknown = TestApp::otp_body("public-app", "email", to, &code);
    unknown["audience"] = json!("https://unknown.example/");
    app.post_token(&unknown).await.assert_error(403, "access_denied", "Service not found: https://unknown.example/");
}

#[tokio::test]
async fn start_records_the_request_language() {
    let app = spawn_app().await;
    let reply = app
        .http
        .post(format!("{}/passwordless/start", app.base))
        .header("x-request-language", "fr-FR")
        .header("accept-language", "de-DE,de;q=0.9")
        .json(&json!({"client_id": "public-app", "connection": "sms", "phone_number": "+33612345678"}))
        .send()
        .await
        .expect("start");
    let body: serde_json::Value = reply.json().await.expect("json");
    assert_eq!(body["request_language"], "fr-FR");
    let reply = app
        .http
        .post(format!("{}/passwordless/start", app.base))
        .header("accept-language", "en-GB,en-US;q=0.9,en;q=0.8")
        .json(&json!({"client_id": "public-app", "connection": "sms", "phone_number": "+33612345678"}))
        .send()
        .await
        .expect("start");
    let body: serde_json::Value = reply.json().await.expect("json");
    assert_eq!(body["request_language"], "en-GB,en-US;q=0.9,en;q=0.8", "the raw header, as Auth0 logs it");
}

#[tokio::test]
async fn an_email_start_without_send_carries_a_magic_link_next_to_the_code() {
    let app = spawn_app().await;
    let to = "link+x@example.com";
    let reply = app
        .post_start(&json!({
            "client_id": "public-app", "connection": "email", "email": to,
            "authParams": {"scope": "openid email", "response_type": "code", "redirect_uri": "https://app.example.com/callback", "state": "s 1", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}
        }))
        .await;
    assert_eq!(reply.status, 200);
    let msg = &app.mailbox(to, 1).await[0];
    let link = msg["link"].as_str().expect("link in the message");
    let code = msg["code"].as_str().expect("code next to the link");
    let prefix = format!(
        "{ISSUER}passwordless/verify_redirect?scope=openid%20email&response_type=code&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcallback&state=s%201&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&verification_code="
    );
    assert!(link.starts_with(&prefix), "{link}");
    assert!(link.ends_with("&connection=email&client_id=public-app&email=link%2Bx%40example.com"), "{link}");
    let url = url::Url::parse(link).expect("url");
    let token = url.query_pairs().find(|(k, _)| k == "verification_code").expect("verification_code").1.into_owned();
    assert!(token.len() >= 43, "at least 256 bits, base64url");
    assert!(!token.contains(code));
    assert!(msg["subject"].as_str().expect("subject").starts_with("Sign in to"));
}
