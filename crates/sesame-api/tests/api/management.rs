//! The Management API for users, machine-to-machine tokens, blocking, deletion, revocation and
//! logout, over real HTTP (on Postgres too, with `TEST_STORE=postgres`).

use serde_json::{Value, json};
use sesame_api::config::{ClientSettings, Settings};

use crate::helpers::{ISSUER, OTP_GRANT, Reply, TestApp, WEB_SECRET, spawn_app_configured};

const M2M_SECRET: &str = "m2m-secret-0123456789abcdef";
const ALL_SCOPES: &[&str] = &[
    "read:users",
    "update:users",
    "delete:users",
    "create:users",
    "read:users_app_metadata",
    "update:users_app_metadata",
    "read:logs",
];

fn audience() -> String {
    format!("{ISSUER}api/v2/")
}

fn m2m(id: &str, scopes: &[&str]) -> ClientSettings {
    serde_json::from_value(json!({
        "client_id": id,
        "name": format!("Backend {id}"),
        "app_type": "non_interactive",
        "auth_method": "client_secret_post",
        "client_secret": M2M_SECRET,
        "grant_types": ["client_credentials"],
        "api_scopes": { audience(): scopes },
    }))
    .expect("m2m client")
}

pub(crate) fn with_backends(s: &mut Settings) {
    s.clients.push(m2m("backend", ALL_SCOPES));
    s.clients.push(m2m("reader", &["read:users"]));
    s.clients.push(m2m("metadata-writer", &["read:users", "update:users_app_metadata"]));
    for c in &mut s.clients {
        if c.client_id == "web-app" {
            c.allowed_logout_urls = vec!["https://app.example.com/logged-out".into()];
        }
    }
}

async fn app() -> TestApp {
    spawn_app_configured(with_backends).await
}

pub(crate) async fn m2m_token(app: &TestApp, client: &str) -> String {
    let reply = app
        .post_token(&json!({
            "grant_type": "client_credentials", "client_id": client, "client_secret": M2M_SECRET,
            "audience": audience(),
        }))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["access_token"].as_str().expect("access_token").to_owned()
}

async fn call(app: &TestApp, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<&Value>) -> Reply {
    let mut req = app.http.request(method, format!("{}{path}", app.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON body") };
    Reply { status, headers, body }
}

async fn get(app: &TestApp, path: &str, token: &str) -> Reply {
    call(app, reqwest::Method::GET, path, Some(token), None).await
}

async fn patch(app: &TestApp, id: &str, token: &str, body: Value) -> Reply {
    call(app, reqwest::Method::PATCH, &format!("/api/v2/users/{}", enc(id)), Some(token), Some(&body)).await
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[track_caller]
fn assert_mgmt_error(reply: &Reply, status: u16, code: Option<&str>) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.body["statusCode"], json!(status), "{}", reply.body);
    assert!(reply.body["error"].is_string() && reply.body["message"].is_string(), "{}", reply.body);
    assert_eq!(reply.body["errorCode"].as_str(), code, "{}", reply.body);
}

/// A user logs in with a code through `web-app`, asking for a refresh token.
async fn login(app: &TestApp, email: &str) -> Reply {
    let before = app.get(&format!("/dev/mailbox?to={}", enc(email))).await.body.as_array().map_or(0, Vec::len);
    let start = app
        .post_start(&json!({"client_id": "web-app", "client_secret": WEB_SECRET, "connection": "email", "email": email, "send": "code"}))
        .await;
    assert_eq!(start.status, 200, "start: {}", start.body);
    let code = app.mailbox(email, before + 1).await[0]["code"].as_str().expect("code").to_owned();
    app.post_token(&json!({
        "grant_type": OTP_GRANT, "client_id": "web-app", "client_secret": WEB_SECRET, "realm": "email",
        "username": email, "otp": code, "scope": "openid profile email offline_access",
    }))
    .await
}

async fn refresh(app: &TestApp, token: &str) -> Reply {
    app.post_token(&json!({
        "grant_type": "refresh_token", "client_id": "web-app", "client_secret": WEB_SECRET, "refresh_token": token,
    }))
    .await
}

#[tokio::test]
async fn client_credentials_gives_a_backend_its_own_token_for_an_api_it_holds_scopes_of() {
    let app = app().await;
    let reply = app
        .post_token(&json!({
            "grant_type": "client_credentials", "client_id": "reader", "client_secret": M2M_SECRET,
            "audience": audience(), "scope": "read:users delete:users",
        }))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["scope"], "read:users", "a scope not held is dropped");
    assert!(reply.body.get("refresh_token").is_none() && reply.body.get("id_token").is_none());
    let claims = app.verify_jwt(reply.body["access_token"].as_str().unwrap(), &audience()).await;
    assert_eq!(claims["sub"], "reader@clients");
    assert_eq!(claims["gty"], "client-credentials");
    assert_eq!(claims["scope"], "read:users");

    // No scope asked: everything held.
    let all = app
        .post_token_form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "backend"),
            ("client_secret", M2M_SECRET),
            ("audience", &audience()),
        ])
        .await;
    assert_eq!(all.body["scope"], ALL_SCOPES.join(" "), "{}", all.body);

    let none_held = app
        .post_token(&json!({"grant_type": "client_credentials", "client_id": "reader", "client_secret": M2M_SECRET,
            "audience": audience(), "scope": "delete:users"}))
        .await;
    none_held.assert_error(403, "access_denied", "Client has not been granted scopes: delete:users");
    let unknown = app
        .post_token(&json!({"grant_type": "client_credentials", "client_id": "reader", "client_secret": M2M_SECRET,
            "audience": "https://nowhere.example/"}))
        .await;
    unknown.assert_error(403, "access_denied", "Service not found: https://nowhere.example/");
    let none = app
        .post_token(&json!({"grant_type": "client_credentials", "client_id": "reader", "client_secret": M2M_SECRET}))
        .await;
    assert_eq!((none.status, none.body["error"].as_str()), (403, Some("access_denied")), "{}", none.body);
    let not_granted = app
        .post_token(&json!({"grant_type": "client_credentials", "client_id": "reader", "client_secret": M2M_SECRET,
            "audience": crate::helpers::API}))
        .await;
    assert_eq!((not_granted.status, not_granted.body["error"].as_str()), (403, Some("access_denied")));
    let wrong_secret = app
        .post_token(&json!({"grant_type": "client_credentials", "client_id": "reader",
            "client_secret": "not-the-secret-0123456789", "audience": audience()}))
        .await;
    assert_eq!(wrong_secret.status, 401, "{}", wrong_secret.body);
    // A client without the grant (and a public one) may not.
    let web = app
        .post_token(&json!({"grant_type": "client_credentials", "client_id": "web-app", "client_secret": WEB_SECRET,
            "audience": audience()}))
        .await;
    assert_eq!((web.status, web.body["error"].as_str()), (403, Some("unauthorized_client")), "{}", web.body);
    let public = app
        .post_token(&json!({"grant_type": "client_credentials", "client_id": "public-app", "audience": audience()}))
        .await;
    assert_eq!((public.status, public.body["error"].as_str()), (403, Some("unauthorized_client")));
}

#[tokio::test]
async fn a_backend_finds_changes_blocks_and_deletes_a_user() {
    let app = app().await;
    let token = m2m_token(&app, "backend").await;
    let email = "mgmt-jane@example.com";
    let tokens = login(&app, email).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let refresh_token = tokens.body["refresh_token"].as_str().expect("refresh token").to_owned();
    let access_token = tokens.body["access_token"].as_str().unwrap().to_owned();

    let found = get(&app, &format!("/api/v2/users-by-email?email={}", enc(email)), &token).await;
    assert_eq!(found.status, 200, "{}", found.body);
    let users = found.body.as_array().expect("array");
    assert_eq!(users.len(), 1);
    let user = &users[0];
    let id = user["user_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("email|"));
    assert_eq!(user["email"], email);
    assert_eq!(user["email_verified"], true);
    assert_eq!(user["logins_count"], 1);
    assert_eq!(user["blocked"], false);
    assert_eq!(
        user["identities"],
        json!([{"connection": "email", "provider": "email", "user_id": &id[6..], "isSocial": false}])
    );
    assert_eq!((user["user_metadata"].clone(), user["app_metadata"].clone()), (json!({}), json!({})));
    // Case does not matter: the address is normalised as at start.
    let upper = get(&app, "/api/v2/users-by-email?email=MGMT-Jane%40Example.com", &token).await;
    assert_eq!(upper.body.as_array().map(Vec::len), Some(1), "{}", upper.body);

    let one = get(&app, &format!("/api/v2/users/{}", enc(&id)), &token).await;
    assert_eq!((one.status, &one.body), (200, user));
    assert_mgmt_error(
        &get(&app, "/api/v2/users/email%7C000000000000000000000000", &token).await,
        404,
        Some("inexistent_user"),
    );

    // Metadata merges at the root; null removes a key.
    assert_eq!(patch(&app, &id, &token, json!({"user_metadata": {"a": 1, "nested": {"x": 1}}})).await.status, 200);
    let merged = patch(
        &app,
        &id,
        &token,
        json!({"user_metadata": {"b": 2, "nested": {"y": 2}}, "app_metadata": {"plan": "pro"}}),
    )
    .await;
    assert_eq!(merged.body["user_metadata"], json!({"a": 1, "b": 2, "nested": {"y": 2}}), "{}", merged.body);
    let removed =
        patch(&app, &id, &token, json!({"user_metadata": {"a": null}, "name": "Jane", "nickname": "jj"})).await;
    assert_eq!(removed.body["user_metadata"], json!({"b": 2, "nested": {"y": 2}}));
    assert_eq!((removed.body["name"].as_str(), removed.body["nickname"].as_str()), (Some("Jane"), Some("jj")));
    let info = app.http.get(format!("{}/userinfo", app.base)).bearer_auth(&access_token).send().await.unwrap();
    let info: Value = info.json().await.unwrap();
    assert_eq!((info["app_metadata"].clone(), info["name"].clone()), (json!({"plan": "pro"}), json!("Jane")), "{info}");

    // Blocked: no start, no code exchange, no refresh.
    assert_eq!(patch(&app, &id, &token, json!({"blocked": true})).await.body["blocked"], true);
    let start = app.post_start(&json!({"client_id": "web-app", "client_secret": WEB_SECRET, "connection": "email", "email": email, "send": "code"})).await;
    start.assert_error(401, "unauthorized", "user is blocked");
    refresh(&app, &refresh_token).await.assert_error(401, "unauthorized", "user is blocked");
    let blocked_info = app.http.get(format!("{}/userinfo", app.base)).bearer_auth(&access_token).send().await.unwrap();
    assert_eq!(blocked_info.status(), 401);
    assert_eq!(patch(&app, &id, &token, json!({"blocked": false})).await.body["blocked"], false);
    let again = login(&app, email).await;
    assert_eq!(again.status, 200, "unblocked, the user logs in: {}", again.body);
    let second_refresh = again.body["refresh_token"].as_str().unwrap().to_owned();

    // The user's log, newest first.
    let logs = get(&app, &format!("/api/v2/users/{}/logs", enc(&id)), &token).await;
    assert_eq!(logs.status, 200, "{}", logs.body);
    let types: Vec<&str> = logs.body.as_array().unwrap().iter().filter_map(|l| l["type"].as_str()).collect();
    assert_eq!(types.first(), Some(&"s"), "the last login first: {types:?}");
    assert!(types.contains(&"sapi") && types.iter().filter(|t| **t == "s").count() == 2, "{types:?}");

    // Deleted: gone, its refresh token with it, and the address signs up as someone new.
    let deleted = call(&app, reqwest::Method::DELETE, &format!("/api/v2/users/{}", enc(&id)), Some(&token), None).await;
    assert_eq!((deleted.status, deleted.body.clone()), (204, Value::Null));
    assert_mgmt_error(&get(&app, &format!("/api/v2/users/{}", enc(&id)), &token).await, 404, Some("inexistent_user"));
    assert_eq!(get(&app, &format!("/api/v2/users-by-email?email={}", enc(email)), &token).await.body, json!([]));
    assert_eq!(refresh(&app, &second_refresh).await.status, 403, "a deleted user's refresh token is dead");
    assert!(get(&app, &format!("/api/v2/users/{}/logs", enc(&id)), &token).await.body.as_array().unwrap().is_empty());
    let reborn = login(&app, email).await;
    assert_eq!(reborn.status, 200);
    let reborn_id =
        get(&app, &format!("/api/v2/users-by-email?email={}", enc(email)), &token).await.body[0]["user_id"].clone();
    assert_ne!(reborn_id, json!(id), "a new user");
}

#[tokio::test]
async fn users_are_created_listed_in_pages_and_searched() {
    let app = app().await;
    let token = m2m_token(&app, "backend").await;
    let mut made = Vec::new();
    for i in 0..5 {
        let body = json!({"connection": "email", "email": format!("listed-{i}@example.com"), "email_verified": true, "app_metadata": {"n": i}});
        let created = call(&app, reqwest::Method::POST, "/api/v2/users", Some(&token), Some(&body)).await;
        assert_eq!(created.status, 201, "{}", created.body);
        assert_eq!(
            (created.body["email_verified"].clone(), created.body["logins_count"].clone()),
            (json!(true), json!(0))
        );
        made.push(created.body["user_id"].as_str().unwrap().to_owned());
        app.clock.advance(std::time::Duration::from_secs(1));
    }
    let phone = json!({"connection": "sms", "phone_number": "+14155550123"});
    let sms = call(&app, reqwest::Method::POST, "/api/v2/users", Some(&token), Some(&phone)).await;
    assert_eq!((sms.status, sms.body["phone_number"].as_str()), (201, Some("+14155550123")), "{}", sms.body);
    let dup = json!({"connection": "email", "email": "listed-0@example.com"});
    assert_mgmt_error(
        &call(&app, reqwest::Method::POST, "/api/v2/users", Some(&token), Some(&dup)).await,
        409,
        Some("auth0_idp_error"),
    );
    let mismatch = json!({"connection": "sms", "email": "x@example.com"});
    assert_eq!(call(&app, reqwest::Method::POST, "/api/v2/users", Some(&token), Some(&mismatch)).await.status, 400);
    let no_connection = json!({"connection": "nope", "email": "x@example.com"});
    assert_mgmt_error(
        &call(&app, reqwest::Method::POST, "/api/v2/users", Some(&token), Some(&no_connection)).await,
        400,
        Some("inexistent_connection"),
    );

    let mut seen = Vec::new();
    for page in 0..4 {
        let p = get(&app, &format!("/api/v2/users?page={page}&per_page=2&include_totals=true"), &token).await;
        assert_eq!(p.status, 200, "{}", p.body);
        assert_eq!(
            (p.body["start"].clone(), p.body["limit"].clone(), p.body["total"].clone()),
            (json!(page * 2), json!(2), json!(6))
        );
        let users = p.body["users"].as_array().unwrap();
        assert_eq!(p.body["length"], json!(users.len()));
        seen.extend(users.iter().map(|u| u["user_id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(seen.len(), 6, "each user once: {seen:?}");
    assert_eq!(&seen[..5], made.as_slice(), "oldest first");
    let plain = get(&app, "/api/v2/users?per_page=100", &token).await;
    assert_eq!(plain.body.as_array().map(Vec::len), Some(6), "without totals, an array");

    let q =
        get(&app, &format!("/api/v2/users?q={}&search_engine=v3", enc("email:\"listed-3@example.com\"")), &token).await;
    assert_eq!(
        q.body.as_array().map(|a| a.iter().map(|u| u["user_id"].clone()).collect::<Vec<_>>()),
        Some(vec![json!(made[3])])
    );
    let by_phone = get(&app, &format!("/api/v2/users?q={}", enc("phone_number:\"+14155550123\"")), &token).await;
    assert_eq!(by_phone.body.as_array().map(Vec::len), Some(1), "{}", by_phone.body);
    for bad in [
        "/api/v2/users?q=name%3Ajane",
        "/api/v2/users?per_page=101",
        "/api/v2/users?page=x",
        "/api/v2/users?include_totals=maybe",
        "/api/v2/users?nope=1",
        "/api/v2/users-by-email?email=not-an-address",
        "/api/v2/users-by-email",
    ] {
        let reply = get(&app, bad, &token).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
        assert!(reply.body["message"].is_string(), "{bad}: {}", reply.body);
    }
}

#[tokio::test]
async fn every_call_needs_a_backend_token_with_the_scope() {
    let app = app().await;
    let reader = m2m_token(&app, "reader").await;
    let created = {
        let token = m2m_token(&app, "backend").await;
        let body = json!({"connection": "email", "email": "scoped@example.com"});
        call(&app, reqwest::Method::POST, "/api/v2/users", Some(&token), Some(&body)).await
    };
    let id = created.body["user_id"].as_str().unwrap().to_owned();
    assert_eq!(get(&app, &format!("/api/v2/users/{}", enc(&id)), &reader).await.status, 200);
    let refused = patch(&app, &id, &reader, json!({"blocked": true})).await;
    assert_mgmt_error(&refused, 403, Some("insufficient_scope"));
    assert!(refused.body["message"].as_str().unwrap().starts_with("Insufficient scope"));
    let delete = call(&app, reqwest::Method::DELETE, &format!("/api/v2/users/{}", enc(&id)), Some(&reader), None).await;
    assert_mgmt_error(&delete, 403, Some("insufficient_scope"));
    assert_mgmt_error(
        &get(&app, &format!("/api/v2/users/{}/logs", enc(&id)), &reader).await,
        403,
        Some("insufficient_scope"),
    );

    // update:users_app_metadata changes metadata only.
    let writer = m2m_token(&app, "metadata-writer").await;
    assert_eq!(patch(&app, &id, &writer, json!({"app_metadata": {"plan": "pro"}})).await.status, 200);
    assert_mgmt_error(&patch(&app, &id, &writer, json!({"blocked": true})).await, 403, Some("insufficient_scope"));

    let path = format!("/api/v2/users/{}", enc(&id));
    let missing = call(&app, reqwest::Method::GET, &path, None, None).await;
    assert_mgmt_error(&missing, 401, None);
    assert_mgmt_error(&call(&app, reqwest::Method::GET, &path, Some("garbage"), None).await, 401, None);
    // A user's own tokens are not a backend's, whatever they say.
    let user = login(&app, "not-a-backend@example.com").await;
    for t in [user.body["id_token"].as_str().unwrap(), user.body["access_token"].as_str().unwrap()] {
        assert_mgmt_error(&call(&app, reqwest::Method::GET, &path, Some(t), None).await, 401, None);
    }

    // Bad bodies are 400s in Auth0's shape, never 500.
    let token = m2m_token(&app, "backend").await;
    let typed = patch(&app, &id, &token, json!({"blocked": "yes"})).await;
    assert_eq!(
        typed.body["message"],
        "Payload validation error: 'Expected type boolean but found type string' on property blocked.",
        "Auth0's wording"
    );
    for body in [
        json!({"blocked": "yes"}),
        json!({"user_metadata": []}),
        json!({"unknown": 1}),
        json!({"email": "not-an-address"}),
        json!({"phone_number": "+14155550123"}),
        json!({"name": 7}),
        json!(["not", "an", "object"]),
    ] {
        let reply = patch(&app, &id, &token, body.clone()).await;
        assert_mgmt_error(&reply, 400, Some("invalid_body"));
        let _ = body;
    }
    let raw = app
        .http
        .patch(format!("{}{path}", app.base))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_of_one_users_metadata_lose_no_key() {
    let app = std::sync::Arc::new(app().await);
    let token = m2m_token(&app, "backend").await;
    let body = json!({"connection": "email", "email": "busy@example.com"});
    let id = call(&app, reqwest::Method::POST, "/api/v2/users", Some(&token), Some(&body)).await.body["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let (app, token, id) = (app.clone(), token.clone(), id.clone());
            tokio::spawn(async move {
                patch(&app, &id, &token, json!({"user_metadata": {format!("k{i}"): i}})).await.status
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let user = get(&app, &format!("/api/v2/users/{}", enc(&id)), &token).await;
    let meta = user.body["user_metadata"].as_object().unwrap();
    assert_eq!(meta.len(), 32, "{meta:?}");
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_its_family_and_logout_returns_only_to_allowed_urls() {
    let app = app().await;
    let tokens = login(&app, "revoker@example.com").await;
    let rt = tokens.body["refresh_token"].as_str().unwrap().to_owned();
    let rotated = refresh(&app, &rt).await;
    assert_eq!(rotated.status, 200);
    let current = rotated.body["refresh_token"].as_str().unwrap().to_owned();
    let revoke = |token: String, client: &'static str| {
        let app = &app;
        async move {
            app.http
                .post(format!("{}/oauth/revoke", app.base))
                .json(&json!({"client_id": client, "client_secret": WEB_SECRET, "token": token}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Another client's revoke changes nothing, and is answered the same.
    assert_eq!(revoke(current.clone(), "basic-app").await, 200);
    assert_eq!(revoke("not-a-token".into(), "web-app").await, 200);
    // Revoking the first token of the family ends the current one too.
    assert_eq!(revoke(rt, "web-app").await, 200);
    refresh(&app, &current).await.assert_error(403, "invalid_grant", "Unknown or invalid refresh token.");
    let wrong = json!({"client_id": "web-app", "client_secret": "not-the-secret-0123456789", "token": "t"});
    app.post_json("/oauth/revoke", &wrong).await.assert_error(401, "invalid_client", "Invalid client credentials");
    let no_token = app
        .http
        .post(format!("{}/oauth/revoke", app.base))
        .json(&json!({"client_id": "web-app", "client_secret": WEB_SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), 400);

    let to = |q: &str| app.http.get(format!("{}/v2/logout?{q}", app.base)).send();
    let ok = to("client_id=web-app&returnTo=https%3A%2F%2Fapp.example.com%2Flogged-out").await.unwrap();
    assert_eq!(ok.status(), 302);
    assert_eq!(ok.headers()["location"], "https://app.example.com/logged-out");
    assert_eq!(to("client_id=web-app&returnTo=https%3A%2F%2Fevil.example%2F").await.unwrap().status(), 400);
    assert_eq!(
        to("returnTo=https%3A%2F%2Fapp.example.com%2Flogged-out").await.unwrap().status(),
        400,
        "no client, no redirect"
    );
    assert_eq!(to("client_id=nobody&returnTo=https%3A%2F%2Fapp.example.com%2Flogged-out").await.unwrap().status(), 400);
    assert_eq!(to("").await.unwrap().status(), 200);
}

#[tokio::test]
async fn an_api_that_asks_for_them_gets_the_metadata_as_namespaced_claims() {
    let app = spawn_app_configured(|s| {
        with_backends(s);
        s.apis[0].metadata_claims = Some("https://example.com/".into());
    })
    .await;
    let token = m2m_token(&app, "backend").await;
    let email = "claims@example.com";
    let body = json!({"connection": "email", "email": email, "user_metadata": {"lang": "fr"}, "app_metadata": {"plan": "pro"}});
    assert_eq!(call(&app, reqwest::Method::POST, "/api/v2/users", Some(&token), Some(&body)).await.status, 201);
    let code = app.start_and_read_code("public-app", "email", email).await;
    let mut otp = crate::helpers::TestApp::otp_body("public-app", "email", email, &code);
    otp["audience"] = json!(crate::helpers::API);
    let tokens = app.post_token(&otp).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    for (jwt, aud) in [(&tokens.body["access_token"], crate::helpers::API), (&tokens.body["id_token"], "public-app")] {
        let claims = app.verify_jwt(jwt.as_str().unwrap(), aud).await;
        assert_eq!(claims["https://example.com/user_metadata"], json!({"lang": "fr"}), "{claims}");
        assert_eq!(claims["https://example.com/app_metadata"], json!({"plan": "pro"}), "{claims}");
    }
    // Without an API that asks, no metadata in the tokens.
    let code = app.start_and_read_code("public-app", "email", email).await;
    let plain = app.post_token(&crate::helpers::TestApp::otp_body("public-app", "email", email, &code)).await;
    let claims = app.verify_jwt(plain.body["id_token"].as_str().unwrap(), "public-app").await;
    assert!(claims.get("https://example.com/app_metadata").is_none(), "{claims}");
}

#[tokio::test]
async fn a_backend_over_its_budget_gets_a_429_in_the_management_apis_shape() {
    let app = spawn_app_configured(|s| {
        with_backends(s);
        s.limits.management_per_client = sesame_domain::Rate { limit: 3, window_secs: 60 };
    })
    .await;
    let token = m2m_token(&app, "backend").await;
    for _ in 0..3 {
        assert_eq!(get(&app, "/api/v2/users", &token).await.status, 200);
    }
    let refused = get(&app, "/api/v2/users", &token).await;
    assert_mgmt_error(&refused, 429, Some("too_many_requests"));
    assert!(refused.headers["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    // The budget is the client's: another backend is not affected.
    let reader = m2m_token(&app, "reader").await;
    assert_eq!(get(&app, "/api/v2/users", &reader).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_the_management_api_answers_503_and_recovers() {
    let db = sesame_postgres::testing::TestDatabase::new().await.expect("test database");
    let proxy = crate::helpers::Proxy::start("127.0.0.1:5432").await;
    let url = db.config().url.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    let app = crate::helpers::spawn_app_on(url, with_backends).await;
    let token = m2m_token(&app, "backend").await;
    let body = json!({"connection": "email", "email": "down@example.com"});
    let id = call(&app, reqwest::Method::POST, "/api/v2/users", Some(&token), Some(&body)).await.body["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let user_path = format!("/api/v2/users/{}", enc(&id));

    proxy.down().await;
    let requests: Vec<(reqwest::Method, String, Option<Value>)> = vec![
        (reqwest::Method::GET, "/api/v2/users".into(), None),
        (reqwest::Method::GET, "/api/v2/users-by-email?email=down%40example.com".into(), None),
        (reqwest::Method::GET, user_path.clone(), None),
        (reqwest::Method::PATCH, user_path.clone(), Some(json!({"blocked": true}))),
        (reqwest::Method::POST, "/api/v2/users".into(), Some(json!({"connection": "email", "email": "x@example.com"}))),
        (reqwest::Method::DELETE, user_path.clone(), None),
        (reqwest::Method::GET, format!("{user_path}/logs"), None),
    ];
    for (method, path, body) in &requests {
        let reply = call(&app, method.clone(), path, Some(&token), body.as_ref()).await;
        assert_mgmt_error(&reply, 503, None);
        assert_eq!(reply.headers["retry-after"], "1", "{method} {path}");
    }
    let revoke = app
        .post_json("/oauth/revoke", &json!({"client_id": "web-app", "client_secret": WEB_SECRET, "token": "t"}))
        .await;
    assert_eq!(revoke.status, 503, "{}", revoke.body);
    let logout = app.get("/v2/logout?client_id=never-looked-up&returnTo=https%3A%2F%2Fapp.example.com%2F").await;
    assert_eq!(logout.status, 503, "{}", logout.body);

    proxy.up();
    let mut back = 0;
    for _ in 0..100 {
        back = get(&app, &user_path, &token).await.status;
        if back == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(back, 200, "the API recovers by itself");
}

/// Postgres cannot store a NUL character: every input that carries one is a 4xx, on both
/// stores, never a 500.
#[tokio::test]
async fn nul_characters_are_refused_with_a_4xx_never_a_500() {
    let app = app().await;
    let token = m2m_token(&app, "backend").await;
    let body = json!({"connection": "email", "email": "nul@example.com"});
    let id = call(&app, reqwest::Method::POST, "/api/v2/users", Some(&token), Some(&body)).await.body["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let nul = "a\u{0}b";
    let mut statuses = Vec::new();
    for (method, path, body) in [
        (reqwest::Method::GET, "/api/v2/users/email%7Ca%00b".to_owned(), None),
        (reqwest::Method::GET, "/api/v2/users/email%7Ca%00b/logs".to_owned(), None),
        (reqwest::Method::DELETE, "/api/v2/users/email%7Ca%00b".to_owned(), None),
        (reqwest::Method::PATCH, "/api/v2/users/email%7Ca%00b".to_owned(), Some(json!({"name": "x"}))),
        (reqwest::Method::GET, format!("/api/v2/users?q={}", enc("user_id:\"a\u{0}b\"")), None),
        (reqwest::Method::PATCH, format!("/api/v2/users/{}", enc(&id)), Some(json!({"name": nul}))),
        (reqwest::Method::PATCH, format!("/api/v2/users/{}", enc(&id)), Some(json!({"user_metadata": {nul: 1}}))),
        (reqwest::Method::PATCH, format!("/api/v2/users/{}", enc(&id)), Some(json!({"app_metadata": {"k": [nul]}}))),
        (reqwest::Method::POST, "/api/v2/users".to_owned(), Some(json!({"connection": nul, "email": "n@example.com"}))),
    ] {
        let reply = call(&app, method.clone(), &path, Some(&token), body.as_ref()).await;
        statuses.push((format!("{method} {path}"), reply.status));
    }
    for (path, body) in [
        ("/passwordless/start", json!({"client_id": nul, "connection": "email", "email": "n@example.com"})),
        ("/passwordless/start", json!({"client_id": "public-app", "connection": nul, "email": "n@example.com"})),
        (
            "/passwordless/start",
            json!({"client_id": "public-app", "connection": "email", "email": "n@example.com", "send": "link", "authParams": {"state": nul}}),
        ),
        ("/oauth/token", json!({"grant_type": "client_credentials", "client_id": nul, "client_secret": "x"})),
        (
            "/oauth/token",
            json!({"grant_type": OTP_GRANT, "client_id": "public-app", "realm": nul, "username": "n@example.com", "otp": "123456"}),
        ),
        ("/oauth/revoke", json!({"client_id": nul, "token": "t"})),
    ] {
        let reply = app.http.post(format!("{}{path}", app.base)).json(&body).send().await.unwrap();
        statuses.push((format!("POST {path} {body}"), reply.status().as_u16()));
    }
    for path in [
        "/v2/logout?client_id=%00&returnTo=https%3A%2F%2Fx.example%2F",
        "/authorize?client_id=%00&response_type=code&redirect_uri=https%3A%2F%2Fx.example%2F",
    ] {
        let reply = app.http.get(format!("{}{path}", app.base)).send().await.unwrap();
        statuses.push((format!("GET {path}"), reply.status().as_u16()));
    }
    let bad: Vec<_> = statuses.iter().filter(|(_, s)| !(400..500).contains(s) && *s != 204).collect();
    assert!(bad.is_empty(), "not a 4xx: {bad:?}");
}
