//! Every `/passwordless/start` error of spec §4.5, byte for byte, and bad input of any kind.

use serde_json::{Value, json};

use crate::helpers::spawn_app;

fn email_start() -> Value {
    json!({"client_id": "public-app", "connection": "email", "email": "a@example.com", "send": "code"})
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    v.as_object_mut().expect("object").remove(key);
    v
}

#[tokio::test]
async fn every_documented_start_error_is_answered_exactly() {
    let app = spawn_app().await;
    let sms = json!({"client_id": "public-app", "connection": "sms", "phone_number": "+14155552671"});
    let cases: Vec<(Value, u16, &str, &str)> = vec![
        (without(email_start(), "client_id"), 400, "bad.client_id", "Missing required property: client_id"),
        (without(email_start(), "connection"), 400, "bad.connection", "Missing required property: connection"),
        (
            with(email_start(), "connection", json!("carrier-pigeon")),
            400,
            "bad.connection",
            "Connection does not exist",
        ),
        (
            json!({"client_id": "email-only", "connection": "sms", "phone_number": "+14155552671"}),
            400,
            "bad.connection",
            "Connection is disabled",
        ),
        (with(email_start(), "send", json!("fax")), 400, "bad.send", "error in send - No enum match for: fax"),
        (
            with(email_start(), "authParams", json!("x")),
            400,
            "bad.authParams",
            "error in authParams - invalid type: string (expected object)",
        ),
        (
            with(email_start(), "favourite_colour", json!("blue")),
            400,
            "bad.request",
            "the following properties are not allowed: favourite_colour",
        ),
        (without(email_start(), "email"), 400, "bad.email", "Missing required property: email"),
        (
            with(email_start(), "email", json!("not-an-email")),
            400,
            "bad.email",
            "error in email - email format validation failed: not-an-email",
        ),
        (without(sms.clone(), "phone_number"), 400, "bad.phone_number", "Missing required property: phone_number"),
        (
            with(sms.clone(), "phone_number", json!("0612345678")),
            400,
            "bad.phone_number",
            r"String does not match pattern: ^\+[0-9]{1,15}$",
        ),
        (
            with(sms.clone(), "phone_number", json!("+1 415 555 2671")),
            400,
            "bad.phone_number",
            r"String does not match pattern: ^\+[0-9]{1,15}$",
        ),
        (with(email_start(), "client_id", json!("nobody")), 400, "bad.client_id", "Unknown client"),
        (
            with(email_start(), "client_id", json!(42)),
            400,
            "bad.client_id",
            "error in client_id - invalid type: number (expected string)",
        ),
        (
            with(email_start(), "email", json!(["a@example.com"])),
            400,
            "bad.email",
            "error in email - invalid type: array (expected string)",
        ),
    ];
    for (body, status, error, description) in cases {
        let reply = app.post_start(&body).await;
        assert_eq!(
            (reply.status, reply.body["error"].as_str(), reply.body["error_description"].as_str()),
            (status, Some(error), Some(description)),
            "request {body}"
        );
    }
}

#[tokio::test]
async fn null_means_absent_and_sdk_extras_are_accepted() {
    let app = spawn_app().await;
    // auth0.js always sends authParams with whatever its options hold; auth0-python sends nulls.
    let body = json!({
        "client_id": "public-app", "connection": "email", "email": "extras@example.com", "send": null,
        "authParams": {"response_type": "token", "redirect_uri": "https://app.example.com/callback", "scope": "openid", "state": "x", "nonce": "y", "foo": "bar"},
        "client_secret": null,
    });
    let reply = app.post_start(&body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let msg = &app.mailbox("extras@example.com", 1).await[0];
    assert!(msg["link"].as_str().is_some_and(|l| l.contains("foo=bar")), "send null → a link, extras kept");
}

#[tokio::test]
async fn malformed_bodies_get_auth0_shaped_4xx_never_5xx() {
    let app = spawn_app().await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("application/json", b"{not json".to_vec()),
        ("application/json", b"[1,2,3]".to_vec()),
        ("application/json", b"\"a string\"".to_vec()),
        ("application/json", b"".to_vec()),
        ("application/json", vec![0xff, 0xfe, 0x00]),
        ("text/plain", b"hello".to_vec()),
    ];
    for (ct, body) in cases {
        let reply = app.post_raw("/passwordless/start", ct, body.clone()).await;
        reply.assert_error(400, "bad.request", "The request body must be a JSON object");
    }
    let huge =
        format!(r#"{{"client_id":"public-app","connection":"email","email":"{}@example.com"}}"#, "a".repeat(100_000));
    let reply = app.post_raw("/passwordless/start", "application/json", huge).await;
    reply.assert_error(413, "invalid_request", "Request body too large");
    let reply = app.get("/passwordless/start").await;
    assert_eq!(reply.status, 404, "only POST is routed");
    assert_eq!(reply.body["error"], "not_found");
}

#[tokio::test]
async fn unknown_and_known_identifiers_get_the_same_answer() {
    let app = spawn_app().await;
    let code = app.start_and_read_code("public-app", "email", "known@example.com").await;
    let login =
        app.post_token(&crate::helpers::TestApp::otp_body("public-app", "email", "known@example.com", &code)).await;
    assert_eq!(login.status, 200);
    let known = app
        .post_start(
            &json!({"client_id": "public-app", "connection": "email", "email": "known@example.com", "send": "code"}),
        )
        .await;
    let unknown = app
        .post_start(
            &json!({"client_id": "public-app", "connection": "email", "email": "stranger@example.com", "send": "code"}),
        )
        .await;
    assert_eq!((known.status, unknown.status), (200, 200));
    let keys = |v: &Value| v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    assert_eq!(keys(&known.body), keys(&unknown.body));
    assert_eq!(known.body["email_verified"], unknown.body["email_verified"], "verification state does not leak");
}

#[tokio::test]
async fn with_signup_disabled_and_revealed_as_at_auth0_only_existing_users_get_a_message() {
    let app = crate::helpers::spawn_app_configured(|s| {
        s.reveal_disabled_signup = true;
        s.connections = vec![
            serde_json::from_value(json!({"name": "email", "strategy": "email"})).expect("connection"),
            serde_json::from_value(json!({"name": "sms", "strategy": "sms", "disable_signup": true}))
                .expect("connection"),
        ];
    })
    .await;
    let start = |phone: &str| json!({"client_id": "public-app", "connection": "sms", "phone_number": phone});
    app.post_start(&start("+14155552671")).await.assert_error(400, "bad.connection", "Public signup is disabled");
    let list: Vec<Value> =
        app.http.get(format!("{}/dev/mailbox", app.base)).send().await.expect("mailbox").json().await.expect("json");
    assert!(list.is_empty(), "nothing was sent");
    // An existing user (made while signup was on, by another connection setting) still gets codes.
    let open = crate::helpers::spawn_app_configured(|_| {}).await;
    let code = open.start_and_read_code("public-app", "sms", "+14155552671").await;
    assert_eq!(
        open.post_token(&crate::helpers::TestApp::otp_body("public-app", "sms", "+14155552671", &code)).await.status,
        200
    );
}
