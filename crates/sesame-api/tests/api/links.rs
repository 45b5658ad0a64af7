//! Magic links, the authorization response, codes with PKCE, refresh rotation, legacy verify.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{ISSUER, OTP_GRANT, TestApp, spawn_app, spawn_app_configured};

pub(crate) const CALLBACK: &str = "https://app.example.com/callback";
// RFC 7636 appendix B.
pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub(crate) const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// Starts a link login and returns the link as the user got it, pointed at the test server.
pub(crate) async fn link_for(app: &TestApp, email: &str, auth_params: Value) -> String {
    let before = app.http.get(format!("{}/dev/mailbox?to={email}", app.base)).send().await.expect("mailbox");
    let n = before.json::<Vec<Value>>().await.expect("json").len();
    let r = app
        .post_start(&json!({"client_id": "public-app", "connection": "email", "email": email, "send": "link", "authParams": auth_params}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let msg = &app.mailbox(email, n + 1).await[0];
    msg["link"].as_str().expect("link").replacen(ISSUER, &format!("{}/", app.base), 1)
}

pub(crate) fn query_of(url: &str) -> HashMap<String, String> {
    url::Url::parse(url).expect("url").query_pairs().into_owned().collect()
}

pub(crate) fn location(resp: &reqwest::Response) -> String {
    resp.headers().get("location").expect("a redirect").to_str().expect("ascii").to_owned()
}

pub(crate) fn params_after(location: &str, sep: char) -> HashMap<String, String> {
    let part = location.split_once(sep).map(|(_, p)| p).unwrap_or("");
    url::form_urlencoded::parse(part.as_bytes()).into_owned().collect()
}

pub(crate) async fn confirm(app: &TestApp, link: &str) -> reqwest::Response {
    let form: Vec<(String, String)> = query_of(link).into_iter().collect();
    app.http.post(format!("{}/passwordless/verify_redirect", app.base)).form(&form).send().await.expect("confirm")
}

#[tokio::test]
async fn opening_a_link_shows_a_confirmation_page_and_consumes_nothing() {
    let app = spawn_app().await;
    let link = link_for(
        &app,
        "page@example.com",
        json!({"redirect_uri": CALLBACK, "response_type": "code", "code_challenge": CHALLENGE, "state": "st"}),
    )
    .await;
    for _ in 0..2 {
        let page = app.http.get(&link).send().await.expect("GET link");
        assert_eq!(page.status(), 200);
        let h = page.headers().clone();
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["cache-control"], "no-store");
        let csp = h["content-security-policy"].to_str().expect("csp");
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        let html = page.text().await.expect("html");
        assert!(html.contains("<form method=\"post\"") && html.contains("id=\"confirm\""));
        assert!(!html.contains("http://") || !html.contains("<script"), "no third-party assets");
    }
    let done = confirm(&app, &link).await;
    assert_eq!(done.status(), 302, "the link still works after two GETs");
}

#[tokio::test]
async fn a_code_link_redirects_with_code_and_state_and_pkce_guards_the_exchange() {
    let app = spawn_app().await;
    let link = link_for(
        &app,
        "code@example.com",
        json!({"scope": "openid email offline_access", "response_type": "code", "redirect_uri": CALLBACK, "state": "xyz 1", "nonce": "n-1", "code_challenge": CHALLENGE, "code_challenge_method": "S256"}),
    )
    .await;
    let resp = confirm(&app, &link).await;
    assert_eq!(resp.status(), 302);
    let loc = location(&resp);
    assert!(loc.starts_with(&format!("{CALLBACK}?")), "{loc}");
    let p = params_after(&loc, '?');
    assert_eq!(p["state"], "xyz 1");
    let code = p["code"].clone();

    let exchange = |verifier: Option<&str>, code: &str| {
        let mut body = json!({"grant_type": "authorization_code", "client_id": "public-app", "code": code, "redirect_uri": CALLBACK});
        if let Some(v) = verifier {
            body["code_verifier"] = json!(v);
        }
        body
    };
    let ok = app.post_token(&exchange(Some(VERIFIER), &code)).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let claims = app.verify_jwt(ok.body["id_token"].as_str().expect("id_token"), "public-app").await;
    assert_eq!(claims["nonce"], "n-1");
    assert_eq!(claims["email"], "code@example.com");
    assert!(ok.body["refresh_token"].is_string(), "offline_access through the code flow");
    app.post_token(&exchange(Some(VERIFIER), &code)).await.assert_error(
        403,
        "invalid_grant",
        "Invalid authorization code",
    );

    // Wrong and missing verifiers, and a redirect_uri that differs, are refused.
    for (verifier, redirect, want) in [
        (Some("wrong-verifier-wrong-verifier-wrong-verifier-x"), CALLBACK, "Failed to verify code verifier"),
        (None, CALLBACK, "Failed to verify code verifier"),
        (
            Some(VERIFIER),
            "https://app.example.com/other",
            "redirect_uri does not match the one of the authorization request",
        ),
    ] {
        let link = link_for(
            &app,
            "code@example.com",
            json!({"response_type": "code", "redirect_uri": CALLBACK, "code_challenge": CHALLENGE}),
        )
        .await;
        let code = params_after(&location(&confirm(&app, &link).await), '?')["code"].clone();
        let mut body = exchange(verifier, &code);
        body["redirect_uri"] = json!(redirect);
        app.post_token(&body).await.assert_error(403, "invalid_grant", want);
    }
}

#[tokio::test]
async fn an_implicit_link_puts_tokens_in_the_fragment_with_nonce_and_at_hash() {
    let app = spawn_app().await;
    let link = link_for(
        &app,
        "implicit@example.com",
        json!({"scope": "openid email offline_access", "response_type": "token id_token", "redirect_uri": CALLBACK, "state": "s", "nonce": "nn"}),
    )
    .await;
    let loc = location(&confirm(&app, &link).await);
    assert!(loc.starts_with(&format!("{CALLBACK}#")), "{loc}");
    let p = params_after(&loc, '#');
    assert_eq!((p["token_type"].as_str(), p["expires_in"].as_str(), p["state"].as_str()), ("Bearer", "7200", "s"));
    assert!(!p.contains_key("refresh_token"), "never through the implicit response");
    let claims = app.verify_jwt(&p["id_token"], "public-app").await;
    assert_eq!(claims["nonce"], "nn");
    let expected = sesame_flows::authorize::at_hash(&p["access_token"]);
    assert_eq!(claims["at_hash"], expected);
    let info =
        app.http.get(format!("{}/userinfo", app.base)).bearer_auth(&p["access_token"]).send().await.expect("userinfo");
    assert_eq!(info.status(), 200);
}

#[tokio::test]
async fn form_post_answers_with_an_auto_posting_form() {
    let app = spawn_app().await;
    let link = link_for(
        &app,
        "post@example.com",
        json!({"response_type": "code", "response_mode": "form_post", "redirect_uri": CALLBACK, "state": "s<1>", "code_challenge": CHALLENGE}),
    )
    .await;
    let resp = confirm(&app, &link).await;
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"].to_str().expect("csp").to_owned();
    assert!(csp.contains("form-action https://app.example.com"), "{csp}");
    let html = resp.text().await.expect("html");
    assert!(html.contains(&format!("action=\"{CALLBACK}\"")));
    assert!(html.contains("name=\"code\"") && html.contains("value=\"s&lt;1&gt;\""), "escaped: {html}");
}

#[tokio::test]
async fn used_wrong_and_expired_links_go_back_as_errors_with_state() {
    let app = spawn_app().await;
    let params =
        json!({"response_type": "code", "redirect_uri": CALLBACK, "state": "keep", "code_challenge": CHALLENGE});
    let link = link_for(&app, "err@example.com", params.clone()).await;
    assert_eq!(confirm(&app, &link).await.status(), 302);
    let again = params_after(&location(&confirm(&app, &link).await), '?');
    assert_eq!(
        (again["error"].as_str(), again["error_description"].as_str(), again["state"].as_str()),
        ("unauthorized", "Wrong email or verification code.", "keep")
    );
    let link = link_for(&app, "err@example.com", params.clone()).await;
    let tampered = link.replace("verification_code=", "verification_code=X");
    assert_eq!(params_after(&location(&confirm(&app, &tampered).await), '?')["error"], "unauthorized");
    let link = link_for(&app, "late@example.com", params).await;
    app.clock.advance(Duration::from_secs(181));
    let expired = params_after(&location(&confirm(&app, &link).await), '?');
    assert_eq!(expired["error_description"], "The verification code has expired. Please try to login again.");
}

#[tokio::test]
async fn an_untrusted_redirect_gets_an_error_page_never_a_redirect() {
    let app = spawn_app().await;
    let link = link_for(
        &app,
        "trust@example.com",
        json!({"response_type": "code", "redirect_uri": CALLBACK, "code_challenge": CHALLENGE}),
    )
    .await;
    let evil = link.replace("https%3A%2F%2Fapp.example.com%2Fcallback", "https%3A%2F%2Fevil.example%2Fcallback");
    assert_ne!(evil, link);
    for resp in [app.http.get(&evil).send().await.expect("get"), confirm(&app, &evil).await] {
        assert_eq!(resp.status(), 400);
        assert!(resp.headers().get("location").is_none(), "no open redirect");
        let html = resp.text().await.expect("html");
        assert!(html.contains("not a registered callback"), "{html}");
    }
}

#[tokio::test]
async fn every_bad_redirect_uri_variant_is_refused_at_start() {
    let app = spawn_app().await;
    for bad in [
        "https://app.example.com/callback/",
        "https://app.example.com/callback?x=1",
        "https://app.example.com/callbackx",
        "https://app.example.com/callback#frag",
        "https://APP.example.com/callback",
        "http://app.example.com/callback",
        "//evil.com",
        "https://app.example.com@evil.com/callback",
        "https://evil.com/https://app.example.com/callback",
        "https://app.example.com.evil.com/callback",
        "javascript:alert(1)",
        "",
    ] {
        for send in ["link", "code"] {
            let r = app
                .post_start(
                    &json!({"client_id": "public-app", "connection": "email", "email": "r@example.com", "send": send,
                    "authParams": {"redirect_uri": bad, "response_type": "code", "code_challenge": CHALLENGE}}),
                )
                .await;
            if bad.is_empty() && send == "code" {
                continue;
            }
            assert_eq!(
                (r.status, r.body["error"].as_str()),
                (400, Some("bad.authParams")),
                "{send} {bad:?}: {}",
                r.body
            );
        }
    }
    let no_pkce = app
        .post_start(&json!({"client_id": "public-app", "connection": "email", "email": "r@example.com", "send": "link",
            "authParams": {"redirect_uri": CALLBACK, "response_type": "code"}}))
        .await;
    no_pkce.assert_error(
        400,
        "bad.authParams",
        "error in authParams - PKCE (code_challenge with S256) is required for public clients",
    );
    let bad_type = app
        .post_start(&json!({"client_id": "public-app", "connection": "email", "email": "r@example.com", "send": "link",
            "authParams": {"redirect_uri": CALLBACK, "response_type": "code token"}}))
        .await;
    bad_type.assert_error(400, "bad.authParams", "error in authParams - Unsupported response type: code token");
}

#[tokio::test]
async fn with_confirmation_off_the_get_completes_at_once() {
    let app = spawn_app_configured(|s| s.magic_link.confirm = false).await;
    let link = link_for(
        &app,
        "once@example.com",
        json!({"response_type": "code", "redirect_uri": CALLBACK, "code_challenge": CHALLENGE, "state": "z"}),
    )
    .await;
    let resp = app.http.get(&link).send().await.expect("get");
    assert_eq!(resp.status(), 302);
    assert!(params_after(&location(&resp), '?').contains_key("code"));
}

#[tokio::test]
async fn auth0_js_verifies_a_typed_code_then_redirects_with_it() {
    let app = spawn_app().await;
    let to = "typed@example.com";
    let code = app.start_and_read_code("public-app", "email", to).await;
    let verify =
        |c: &str| json!({"connection": "email", "verification_code": c, "email": to, "client_id": "public-app"});
    let wrong = app.post_json("/passwordless/verify", &verify("000000x")).await;
    wrong.assert_error(401, "invalid_user_password", "Wrong email or verification code.");
    let ok = app.post_json("/passwordless/verify", &verify(&code)).await;
    assert_eq!((ok.status, &ok.body), (200, &json!({})), "checks without consuming");
    let missing = app
        .post_json("/passwordless/verify", &json!({"connection": "email", "verification_code": code, "email": to}))
        .await;
    missing.assert_error(400, "bad.client_id", "Missing required property: client_id");
    // auth0.js then navigates to verify_redirect with the same code and its WebAuth options.
    let url = format!(
        "{}/passwordless/verify_redirect?client_id=public-app&response_type=token&redirect_uri={}&scope=openid&connection=email&email={}&verification_code={code}&state=st",
        app.base,
        url::form_urlencoded::byte_serialize(CALLBACK.as_bytes()).collect::<String>(),
        url::form_urlencoded::byte_serialize(to.as_bytes()).collect::<String>(),
    );
    let form: Vec<(String, String)> = query_of(&url).into_iter().collect();
    let resp =
        app.http.post(format!("{}/passwordless/verify_redirect", app.base)).form(&form).send().await.expect("post");
    let p = params_after(&location(&resp), '#');
    assert!(p.contains_key("access_token"), "{p:?}");
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_family() {
    let app = spawn_app().await;
    let to = "rotate@example.com";
    let code = app.start_and_read_code("public-app", "email", to).await;
    let mut body = TestApp::otp_body("public-app", "email", to, &code);
    body["scope"] = json!("openid offline_access");
    let first = app.post_token(&body).await;
    let r1 = first.body["refresh_token"].as_str().expect("refresh token").to_owned();
    let refresh = |t: &str| json!({"grant_type": "refresh_token", "client_id": "public-app", "refresh_token": t});
    let second = app.post_token(&refresh(&r1)).await;
    assert_eq!(second.status, 200, "{}", second.body);
    let r2 = second.body["refresh_token"].as_str().expect("rotated").to_owned();
    assert_ne!(r1, r2);
    app.verify_jwt(second.body["id_token"].as_str().expect("id_token"), "public-app").await;
    let foreign =
        app.post_token(&json!({"grant_type": "refresh_token", "client_id": "email-only", "refresh_token": r2})).await;
    assert_eq!(foreign.status, 403, "another client cannot use it");
    let reuse = app.post_token(&refresh(&r1)).await;
    reuse.assert_error(403, "invalid_grant", "Unknown or invalid refresh token.");
    app.post_token(&refresh(&r2)).await.assert_error(403, "invalid_grant", "Unknown or invalid refresh token.");
    let _ = OTP_GRANT;
}

#[tokio::test]
async fn auth0_js_cross_origin_login_trades_a_code_for_a_ticket_and_the_ticket_for_tokens() {
    let app = spawn_app().await;
    let to = "co@example.com";
    let code = app.start_and_read_code("public-app", "email", to).await;
    let co = |otp: &str| {
        app.http
            .post(format!("{}/co/authenticate", app.base))
            .header("origin", "https://public-app.example")
            .json(&json!({"client_id": "public-app", "credential_type": OTP_GRANT, "realm": "email", "username": to, "otp": otp}))
            .send()
    };
    let wrong = co("000000x").await.expect("co");
    assert_eq!(wrong.status(), 403);
    let body: Value = wrong.json().await.expect("json");
    assert_eq!(
        (body["error"].as_str(), body["error_description"].as_str()),
        (Some("access_denied"), Some("Wrong email or verification code."))
    );
    let ok = co(&code).await.expect("co");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://public-app.example");
    assert_eq!(ok.headers()["access-control-allow-credentials"], "true");
    let body: Value = ok.json().await.expect("json");
    let ticket = body["login_ticket"].as_str().expect("login_ticket").to_owned();
    assert!(body["co_verifier"].is_string() && body["co_id"].is_string());

    let authorize = |ticket: &str| {
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("client_id", "public-app"),
                ("response_type", "token id_token"),
                ("redirect_uri", CALLBACK),
                ("scope", "openid email"),
                ("realm", "email"),
                ("state", "co-state"),
                ("nonce", "co-nonce"),
                ("login_ticket", ticket),
            ])
            .finish();
        app.http.get(format!("{}/authorize?{q}", app.base)).send()
    };
    let done = authorize(&ticket).await.expect("authorize");
    let p = params_after(&location(&done), '#');
    assert_eq!(p["state"], "co-state");
    let claims = app.verify_jwt(&p["id_token"], "public-app").await;
    assert_eq!((claims["nonce"].as_str(), claims["email"].as_str()), (Some("co-nonce"), Some(to)));
    let again = params_after(&location(&authorize(&ticket).await.expect("authorize")), '#');
    assert_eq!(
        (again["error"].as_str(), again["state"].as_str()),
        ("access_denied", "co-state"),
        "a ticket works once"
    );
    // Without a ticket, the hosted login page.
    let page = authorize("").await.expect("authorize");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("html").contains("action=\"/u/start\""));
}

#[tokio::test]
async fn an_spa_logs_in_through_co_authenticate_though_the_otp_grant_is_closed_to_it() {
    let app = spawn_app().await;
    let to = "spa@example.com";
    let code = app.start_and_read_code("spa-app", "email", to).await;
    app.post_token(&TestApp::otp_body("spa-app", "email", to, &code)).await.assert_error(
        403,
        "unauthorized_client",
        "Grant type 'http://auth0.com/oauth/grant-type/passwordless/otp' not allowed for the client.",
    );
    let co = app
        .post_json("/co/authenticate", &json!({"client_id": "spa-app", "credential_type": OTP_GRANT, "realm": "email", "username": to, "otp": code}))
        .await;
    assert_eq!(co.status, 200, "{}", co.body);
    assert!(co.body["login_ticket"].is_string());
}

/// `require_pkce = false` restores Auth0's behaviour for one public client: a code link without
/// PKCE works, and its code is exchanged without a verifier. Every other public client still
/// needs PKCE.
#[tokio::test]
async fn a_client_with_require_pkce_off_uses_codes_without_pkce_as_at_auth0() {
    let app = spawn_app_configured(|s| {
        for c in &mut s.clients {
            if c.client_id == "email-only" {
                c.require_pkce = false;
            }
        }
    })
    .await;
    let params = json!({"redirect_uri": CALLBACK, "response_type": "code", "state": "legacy"});
    let start = |client: &str| json!({"client_id": client, "connection": "email", "email": "legacy@example.com", "send": "link", "authParams": params});
    app.post_start(&start("public-app")).await.assert_error(
        400,
        "bad.authParams",
        "error in authParams - PKCE (code_challenge with S256) is required for public clients",
    );
    let before = app.get("/dev/mailbox?to=legacy%40example.com").await.body.as_array().map_or(0, Vec::len);
    let started = app.post_start(&start("email-only")).await;
    assert_eq!(started.status, 200, "{}", started.body);
    let link = app.mailbox("legacy@example.com", before + 1).await[0]["link"].as_str().expect("link").replacen(
        ISSUER,
        &format!("{}/", app.base),
        1,
    );
    let resp = confirm(&app, &link).await;
    assert_eq!(resp.status(), 302);
    let p = params_after(&location(&resp), '?');
    assert_eq!(p["state"], "legacy");
    let tokens = app
        .post_token(&json!({"grant_type": "authorization_code", "client_id": "email-only", "code": p["code"],
            "redirect_uri": CALLBACK}))
        .await;
    assert_eq!(tokens.status, 200, "no verifier needed: {}", tokens.body);
    assert!(tokens.body["access_token"].is_string());
}
