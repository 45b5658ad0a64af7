//! The holes an attack review found (issue 11), each as a black-box HTTP test: every test here
//! failed on the code before its fix. docs/security.md names the defence each one proves.

use std::sync::Arc;

use serde_json::{Value, json};
use sesame_api::config::{SenderKind, Settings};
use sesame_flows::limits::Rate;

use crate::helpers::{API, Proxy, Senders, TestApp, WEB_SECRET, spawn_app_configured, spawn_app_with_senders};
use crate::links::{CALLBACK, CHALLENGE, VERIFIER, link_for, location, params_after, query_of};

fn start_body(email: &str) -> Value {
    json!({"client_id": "public-app", "connection": "email", "email": email, "send": "code"})
}

async fn start_forwarded(app: &TestApp, forwarded: &str, email: &str) -> u16 {
    app.http
        .post(format!("{}/passwordless/start", app.base))
        .header("x-forwarded-for", forwarded)
        .json(&start_body(email))
        .send()
        .await
        .expect("start")
        .status()
        .as_u16()
}

fn two_starts_per_ip(s: &mut Settings) {
    s.limits.start_per_ip = Rate { limit: 2, window_secs: 3600 };
}

#[tokio::test]
async fn a_malformed_forwarded_chain_gives_no_fresh_ip_bucket() {
    let app = spawn_app_configured(|s| {
        two_starts_per_ip(s);
        s.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    // Each request names a new address left of a junk entry: read left to right, each one was a
    // bucket of its own. A chain with a bad hop is not believed past that hop.
    let mut statuses = Vec::new();
    for i in 0..3 {
        statuses.push(start_forwarded(&app, &format!("203.0.113.{i}, x"), &format!("m{i}@example.com")).await);
    }
    assert_eq!(statuses, vec![200, 200, 429]);
}

#[tokio::test]
async fn ipv6_clients_share_one_bucket_per_64() {
    let app = spawn_app_configured(|s| {
        two_starts_per_ip(s);
        s.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    assert_eq!(start_forwarded(&app, "2001:db8:0:1::1", "v1@example.com").await, 200);
    assert_eq!(start_forwarded(&app, "2001:db8:0:1:ffff::2", "v2@example.com").await, 200);
    assert_eq!(start_forwarded(&app, "2001:db8:0:1::3", "v3@example.com").await, 429, "same /64");
    assert_eq!(start_forwarded(&app, "2001:db8:0:2::1", "v4@example.com").await, 200, "another /64");
}

#[tokio::test]
async fn an_ipv4_mapped_peer_matches_ipv4_trusted_proxies() {
    // Listening on [::], an IPv4 load balancer's connections arrive as ::ffff:127.0.0.1.
    let app = spawn_app_configured(|s| {
        two_starts_per_ip(s);
        s.listen = "[::]:0".into();
        s.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    for i in 0..2 {
        assert_eq!(start_forwarded(&app, "198.51.100.1", &format!("p{i}@example.com")).await, 200);
    }
    assert_eq!(start_forwarded(&app, "198.51.100.1", "p2@example.com").await, 429);
    assert_eq!(start_forwarded(&app, "198.51.100.2", "p3@example.com").await, 200, "another client's bucket");
}

#[tokio::test]
async fn with_email_on_ses_the_dev_mailbox_is_gone_and_sms_without_a_provider_is_refused() {
    let stand_in: Arc<dyn sesame_ports::EmailSender> =
        Arc::new(sesame_memory::Mailbox::new(Arc::new(sesame_ports::SystemClock)));
    let app = spawn_app_with_senders(
        |s| {
            s.email = SenderKind::Ses;
            s.dev_mailbox = None;
        },
        Senders { email: Some(stand_in), sms: None },
    )
    .await;
    let mailbox = app.get("/dev/mailbox").await;
    assert_eq!(mailbox.status, 404, "{}", mailbox.body);
    let sms =
        app.post_start(&json!({"client_id": "public-app", "connection": "sms", "phone_number": "+14155552671"})).await;
    sms.assert_error(400, "bad.connection", "No SMS provider is configured on this server");
    let email = app.post_start(&start_body("ses@example.com")).await;
    assert_eq!(email.status, 200, "email still goes out through its provider: {}", email.body);
}

#[tokio::test]
async fn an_access_token_carries_only_scopes_that_were_granted() {
    let app = spawn_app_configured(|_| {}).await;
    let to = "scope@example.com";
    let code = app.start_and_read_code("public-app", "email", to).await;
    let mut body = TestApp::otp_body("public-app", "email", to, &code);
    body["scope"] = json!("openid delete:users admin");
    body["audience"] = json!(API);
    let tokens = app.post_token(&body).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    assert_eq!(tokens.body["scope"], "openid", "the client holds no grant on the API");
    let claims = app.verify_jwt(tokens.body["access_token"].as_str().expect("jwt"), API).await;
    assert_eq!(claims["scope"], "openid");

    let code = app.start_and_read_code("public-app", "email", to).await;
    let mut body = TestApp::otp_body("public-app", "email", to, &code);
    body["scope"] = json!("openid email delete:users");
    let opaque = app.post_token(&body).await;
    assert_eq!(opaque.body["scope"], "openid email", "without an audience only OIDC scopes: {}", opaque.body);
}

#[tokio::test]
async fn a_link_for_an_unknown_audience_is_refused_at_start() {
    let app = spawn_app_configured(|_| {}).await;
    let r = app
        .post_start(&json!({"client_id": "public-app", "connection": "email", "email": "aud@example.com", "send": "link",
            "authParams": {"redirect_uri": CALLBACK, "response_type": "code", "code_challenge": CHALLENGE, "audience": "https://evil.example/"}}))
        .await;
    r.assert_error(400, "bad.authParams", "error in authParams - Service not found: https://evil.example/");
}

#[tokio::test]
async fn a_magic_link_completes_with_the_authparams_of_its_start() {
    let app = spawn_app_configured(|_| {}).await;
    // The victim's app asked for the link with its own PKCE challenge (verifier unknown here).
    let victims = "Xv1ctimXv1ctimXv1ctimXv1ctimXv1ctimXv1ctim0";
    let link = link_for(
        &app,
        "bound@example.com",
        json!({"redirect_uri": CALLBACK, "response_type": "code", "code_challenge": victims, "state": "victim"}),
    )
    .await;
    // Whoever holds the link swaps in a challenge they know the verifier of, and their own state.
    let mut form = query_of(&link);
    form.insert("code_challenge".into(), CHALLENGE.into());
    form.insert("state".into(), "attacker".into());
    let form: Vec<(String, String)> = form.into_iter().collect();
    let resp =
        app.http.post(format!("{}/passwordless/verify_redirect", app.base)).form(&form).send().await.expect("confirm");
    let p = params_after(&location(&resp), '?');
    assert_eq!(p.get("state").map(String::as_str), Some("victim"), "the start's state: {p:?}");
    let code = p.get("code").expect("a code for the victim's app").clone();
    let stolen = app
        .post_token(&json!({"grant_type": "authorization_code", "client_id": "public-app", "code": code,
            "redirect_uri": CALLBACK, "code_verifier": VERIFIER}))
        .await;
    stolen.assert_error(403, "invalid_grant", "Failed to verify code verifier");
}

#[tokio::test]
async fn an_identifier_locked_at_the_token_endpoint_cannot_log_in_through_verify_redirect() {
    let app = spawn_app_configured(|s| s.limits.failed_per_identifier = Rate { limit: 2, window_secs: 3600 }).await;
    let to = "locked@example.com";
    let code = app.start_and_read_code("public-app", "email", to).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..2 {
        assert_eq!(app.post_token(&TestApp::otp_body("public-app", "email", to, wrong)).await.status, 403);
    }
    let locked = app.post_token(&TestApp::otp_body("public-app", "email", to, &code)).await;
    assert_eq!(locked.status, 429, "{}", locked.body);
    let form = [
        ("client_id", "public-app"),
        ("connection", "email"),
        ("email", to),
        ("verification_code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("response_type", "token"),
        ("state", "s"),
    ];
    let resp =
        app.http.post(format!("{}/passwordless/verify_redirect", app.base)).form(&form).send().await.expect("verify");
    let loc = location(&resp);
    assert!(!loc.contains("access_token"), "locked out here too: {loc}");
    assert_eq!(params_after(&loc, '#')["error"], "too_many_attempts", "{loc}");
}

#[tokio::test]
async fn wrong_guesses_without_a_live_code_do_not_lock_out_the_owner() {
    let app = spawn_app_configured(|s| s.limits.failed_per_identifier = Rate { limit: 5, window_secs: 3600 }).await;
    let to = "victim@example.com";
    for _ in 0..8 {
        let r = app.post_token(&TestApp::otp_body("public-app", "email", to, "123456")).await;
        r.assert_error(403, "invalid_grant", "Wrong email or verification code.");
    }
    let code = app.start_and_read_code("public-app", "email", to).await;
    let login = app.post_token(&TestApp::otp_body("public-app", "email", to, &code)).await;
    assert_eq!(login.status, 200, "the owner's own fresh code works: {}", login.body);
}

#[tokio::test]
async fn premium_rate_numbers_are_refused_and_one_number_range_is_capped() {
    let app = spawn_app_configured(|_| {}).await;
    let sms = |n: &str| json!({"client_id": "public-app", "connection": "sms", "phone_number": n});
    let premium = app.post_start(&sms("+449098765432")).await;
    premium.assert_error(400, "bad.phone_number", "SMS to this kind of number (premium rate) is not allowed");
    let mut statuses = Vec::new();
    for n in 0..12 {
        statuses.push(app.post_start(&sms(&format!("+141555526{n:02}"))).await.status);
    }
    assert_eq!(statuses[..10], [200; 10], "{statuses:?}");
    assert_eq!(statuses[10..], [429, 429], "ten numbers of one range an hour: {statuses:?}");
}

#[tokio::test]
async fn with_redis_down_open_paths_keep_a_local_floor() {
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let url = format!("redis://127.0.0.1:{}", proxy.port);
    let prefix = format!("sesame-test:floor:{}:", time::OffsetDateTime::now_utc().unix_timestamp_nanos());
    let app = spawn_app_configured(|s| {
        two_starts_per_ip(s);
        s.rate_limit = sesame_api::config::LimiterKind::Redis;
        s.redis =
            Some(serde_json::from_value(json!({"url": url, "key_prefix": prefix, "timeout_ms": 300})).expect("redis"));
    })
    .await;
    proxy.down().await;
    let statuses: Vec<u16> = [
        app.post_start(&start_body("f1@example.com")).await.status,
        app.post_start(&start_body("f2@example.com")).await.status,
        app.post_start(&start_body("f3@example.com")).await.status,
    ]
    .to_vec();
    assert_eq!(statuses, vec![200, 200, 429], "open is not unlimited");
    proxy.up();
}

#[tokio::test]
async fn bodies_other_than_json_and_forms_are_refused() {
    let app = spawn_app_configured(|_| {}).await;
    let body = start_body("plain@example.com").to_string();
    // A page on any origin can POST text/plain (or a typeless Blob) without a CORS preflight.
    let plain = app.post_raw("/passwordless/start", "text/plain;charset=UTF-8", body.clone()).await;
    plain.assert_error(400, "bad.request", "The request body must be a JSON object");
    let typeless = app.http.post(format!("{}/passwordless/start", app.base)).body(body).send().await.expect("post");
    assert_eq!(typeless.status(), 400);
    let token = app
        .post_raw(
            "/oauth/token",
            "text/plain",
            TestApp::otp_body("public-app", "email", "x@example.com", "1").to_string(),
        )
        .await;
    assert_eq!(token.status, 400, "{}", token.body);
}

#[tokio::test]
async fn a_refresh_token_shown_by_another_client_is_not_spent() {
    let app = spawn_app_configured(|_| {}).await;
    let to = "owner@example.com";
    let code = app.start_and_read_code("public-app", "email", to).await;
    let mut body = TestApp::otp_body("public-app", "email", to, &code);
    body["scope"] = json!("openid offline_access");
    let r1 = app.post_token(&body).await.body["refresh_token"].as_str().expect("refresh token").to_owned();
    let foreign = app
        .post_token(&json!({"grant_type": "refresh_token", "client_id": "web-app", "client_secret": WEB_SECRET, "refresh_token": r1}))
        .await;
    foreign.assert_error(403, "invalid_grant", "Unknown or invalid refresh token.");
    let own =
        app.post_token(&json!({"grant_type": "refresh_token", "client_id": "public-app", "refresh_token": r1})).await;
    assert_eq!(own.status, 200, "the owner's token still works: {}", own.body);
}

#[tokio::test]
async fn unicode_domains_are_one_user_and_quoted_local_parts_are_refused() {
    let app = spawn_app_configured(|_| {}).await;
    for raw in ["jane@exａmple.com", "Jane@EXAMPLE.com", "jane@example.com "] {
        let r = app.post_start(&start_body(raw)).await;
        assert_eq!((r.status, r.body["email"].as_str()), (200, Some("jane@example.com")), "{raw}: {}", r.body);
    }
    let idn = app.post_start(&start_body("jane@bücher.example")).await;
    assert_eq!(idn.body["email"], "jane@xn--bcher-kva.example", "{}", idn.body);
    let quoted = app.post_start(&start_body("\"jane\"@example.com")).await;
    assert_eq!((quoted.status, quoted.body["error"].as_str()), (400, Some("bad.email")), "{}", quoted.body);
}

#[tokio::test]
async fn auth0_forwarded_for_is_believed_only_from_a_client_trusted_for_it() {
    let app = spawn_app_configured(two_starts_per_ip).await;
    let start = |ip: &'static str, email: String| {
        app.http
            .post(format!("{}/passwordless/start", app.base))
            .header("auth0-forwarded-for", ip)
            .json(&json!({"client_id": "web-app", "client_secret": WEB_SECRET, "connection": "email", "email": email, "send": "code"}))
            .send()
    };
    let mut statuses = Vec::new();
    for (i, ip) in ["192.0.2.1", "192.0.2.2", "192.0.2.3"].into_iter().enumerate() {
        statuses.push(start(ip, format!("fwd{i}@example.com")).await.expect("start").status().as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 429], "a confidential client is not trusted for it by default");
}

#[test]
fn placeholder_and_low_entropy_server_secrets_are_refused() {
    for secret in ["…32+ random bytes, from your secret store…", &"a".repeat(40), "changeme-changeme-changeme-changeme"]
    {
        let env = [("SESAME__SERVER_SECRET".to_owned(), secret.to_owned())];
        let err = Settings::load_from(None, env.into_iter()).expect_err(secret);
        assert!(format!("{err:#}").contains("server_secret"), "{err:#}");
    }
}

#[tokio::test]
async fn a_strangers_guess_cannot_tell_an_expired_or_burnt_login_from_none() {
    let app = spawn_app_configured(|_| {}).await;
    let wrong_text = "Wrong email or verification code.";
    let guess = async |to: &str, code: &str| app.post_token(&TestApp::otp_body("public-app", "email", to, code)).await;
    let to = "expired@example.com";
    let code = app.start_and_read_code("public-app", "email", to).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    app.clock.advance(std::time::Duration::from_secs(181));
    guess(to, wrong).await.assert_error(403, "invalid_grant", wrong_text);
    guess(to, &code).await.assert_error(
        403,
        "invalid_grant",
        "The verification code has expired. Please try to login again.",
    );

    let to = "burnt@example.com";
    let code = app.start_and_read_code("public-app", "email", to).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let max = "You've reached the maximum number of attempts. Please try to login again.";
    for _ in 0..2 {
        guess(to, wrong).await.assert_error(403, "invalid_grant", wrong_text);
    }
    guess(to, wrong).await.assert_error(403, "invalid_grant", max);
    let other = if code == "424242" { "434343" } else { "424242" };
    guess(to, other).await.assert_error(403, "invalid_grant", wrong_text);
    guess(to, &code).await.assert_error(403, "invalid_grant", max);
}

#[tokio::test]
async fn rate_limit_headers_do_not_count_another_users_starts() {
    let app = spawn_app_configured(|s| s.trusted_proxies = vec!["127.0.0.1/32".into()]).await;
    let start_from = async |ip: &str| {
        let r = app
            .http
            .post(format!("{}/passwordless/start", app.base))
            .header("x-forwarded-for", ip)
            .json(&start_body("watched@example.com"))
            .send()
            .await
            .expect("start");
        assert_eq!(r.status(), 200);
        let header = |name: &str| r.headers()[name].to_str().expect("ascii").to_owned();
        (header("x-ratelimit-limit"), header("x-ratelimit-remaining"))
    };
    for _ in 0..3 {
        start_from("198.51.100.7").await;
    }
    // A stranger's first start for the same address: the headers are its own IP's bucket, not
    // a count of the victim's logins (10 per hour per address, 3 taken).
    assert_eq!(start_from("203.0.113.50").await, ("50".to_owned(), "49".to_owned()));
}
