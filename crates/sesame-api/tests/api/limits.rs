//! Rate limits over HTTP: the 429 and its headers, the clock, the keys, the allow-list, the
//! trusted proxies, several instances on one Redis, and Redis going away.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use sesame_api::config::{LimiterKind, Settings};
use sesame_flows::limits::Rate;

use crate::helpers::{OTP_GRANT, Proxy, Reply, TestApp, spawn_app_configured};

fn start_body(email: &str) -> Value {
    json!({"client_id": "public-app", "connection": "email", "email": email, "send": "code"})
}

fn header<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.headers.get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().expect("ascii")
}

fn use_redis(settings: &mut Settings, url: &str, prefix: &str) {
    use_redis_with(settings, json!({"url": url, "key_prefix": prefix, "timeout_ms": 300}));
}

fn use_redis_with(settings: &mut Settings, redis: Value) {
    settings.rate_limit = LimiterKind::Redis;
    settings.redis = Some(serde_json::from_value(redis).expect("redis settings"));
}

fn unique_prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "sesame-test:{}:{}:{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    )
}

#[tokio::test]
async fn the_51st_start_from_one_ip_in_an_hour_gets_429_with_auth0_headers() {
    let app = spawn_app_configured(|_| {}).await;
    for i in 0..50 {
        let r = app.post_start(&start_body(&format!("ip{i}@example.com"))).await;
        assert_eq!(r.status, 200, "start {i}: {}", r.body);
        // The IP's bucket is reported, never the identifier's (docs/security.md: its count
        // would tell a stranger about someone's logins).
        assert_eq!(
            (header(&r, "x-ratelimit-limit"), header(&r, "x-ratelimit-remaining")),
            ("50", (49 - i).to_string().as_str()),
            "start {i}"
        );
        assert_eq!(header(&r, "retry-after"), "0");
        let reset: i64 = header(&r, "x-ratelimit-reset").parse().expect("integer epoch seconds");
        assert!(reset > time::OffsetDateTime::now_utc().unix_timestamp());
    }
    let refused = app.post_start(&start_body("ip50@example.com")).await;
    refused.assert_error(
        429,
        "too_many_requests",
        "Too many requests. Check the X-RateLimit-Limit, X-RateLimit-Remaining and X-RateLimit-Reset headers.",
    );
    assert_eq!(header(&refused, "x-ratelimit-limit"), "50");
    assert_eq!(header(&refused, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&refused, "retry-after"), "72", "one token every 3600/50 s");
    assert!(app.mailbox("ip49@example.com", 1).await.len() == 1);

    // The counter follows the clock: 72 s later one more start fits.
    app.clock.advance(Duration::from_secs(72));
    assert_eq!(app.post_start(&start_body("ip51@example.com")).await.status, 200);
    assert_eq!(app.post_start(&start_body("ip52@example.com")).await.status, 429);
}

#[tokio::test]
async fn one_identifier_gets_at_most_ten_messages_an_hour() {
    let app = spawn_app_configured(|_| {}).await;
    for _ in 0..10 {
        assert_eq!(app.post_start(&start_body("flood@example.com")).await.status, 200);
    }
    let r = app.post_start(&start_body("flood@example.com")).await;
    assert_eq!(r.status, 429);
    assert_eq!(header(&r, "x-ratelimit-limit"), "10");
    assert_eq!(app.mailbox("flood@example.com", 10).await.len(), 10, "the refused start sent nothing");
    assert_eq!(app.post_start(&start_body("other@example.com")).await.status, 200, "others are unaffected");
}

#[tokio::test]
async fn an_optional_cooldown_spaces_sends_to_one_identifier() {
    let app = spawn_app_configured(|s| s.limits.send_cooldown_secs = 60).await;
    assert_eq!(app.post_start(&start_body("cool@example.com")).await.status, 200);
    let r = app.post_start(&start_body("cool@example.com")).await;
    assert_eq!((r.status, header(&r, "retry-after")), (429, "60"));
    app.clock.advance(Duration::from_secs(60));
    assert_eq!(app.post_start(&start_body("cool@example.com")).await.status, 200);
}

#[tokio::test]
async fn failed_tries_per_identifier_are_capped_across_codes() {
    let app = spawn_app_configured(|s| s.limits.failed_per_identifier = Rate { limit: 5, window_secs: 3600 }).await;
    let to = "guess@example.com";
    for round in 0..2 {
        app.start_and_read_code("public-app", "email", to).await;
        for _ in 0..3 {
            let r = app.post_token(&TestApp::otp_body("public-app", "email", to, "0000000")).await;
            if round == 1 && r.status == 429 {
                break;
            }
            assert_eq!(r.status, 403);
        }
    }
    // Five failures spent the bucket: a new code does not reset it, even the right code waits.
    let code = app.start_and_read_code("public-app", "email", to).await;
    let r = app.post_token(&TestApp::otp_body("public-app", "email", to, &code)).await;
    r.assert_error(429, "too_many_attempts", "Too many failed attempts for this user. Please try again later.");
    assert!(r.headers.contains_key("x-ratelimit-limit"));
    // The same cap on every other path that checks a code.
    let verify =
        serde_json::json!({"client_id": "public-app", "connection": "email", "email": to, "verification_code": code});
    assert_eq!(app.post_json("/passwordless/verify", &verify).await.status, 429);
    let co = serde_json::json!({"client_id": "public-app", "credential_type": crate::helpers::OTP_GRANT,
                                "realm": "email", "username": to, "otp": code});
    assert_eq!(app.post_json("/co/authenticate", &co).await.status, 429);
    app.clock.advance(Duration::from_secs(720));
    let code = app.start_and_read_code("public-app", "email", to).await;
    assert_eq!(app.post_token(&TestApp::otp_body("public-app", "email", to, &code)).await.status, 200);
}

#[tokio::test]
async fn token_responses_carry_the_rate_limit_headers_too() {
    let app = spawn_app_configured(|_| {}).await;
    let code = app.start_and_read_code("public-app", "email", "hdr@example.com").await;
    let ok = app.post_token(&TestApp::otp_body("public-app", "email", "hdr@example.com", &code)).await;
    assert_eq!(ok.status, 200);
    assert!(ok.headers.contains_key("x-ratelimit-remaining") && ok.headers.contains_key("retry-after"));
    let wrong = app.post_token(&TestApp::otp_body("public-app", "email", "hdr@example.com", "999999")).await;
    assert_eq!(wrong.status, 403);
    assert!(wrong.headers.contains_key("x-ratelimit-limit"), "a 403 on a limited route has them as well");
}

#[tokio::test]
async fn sms_outside_the_country_allow_list_is_refused_and_nothing_is_sent() {
    let app = spawn_app_configured(|s| s.limits.sms_allowed_countries = vec!["US".into()]).await;
    let fr =
        app.post_start(&json!({"client_id": "public-app", "connection": "sms", "phone_number": "+33612345678"})).await;
    fr.assert_error(400, "bad.phone_number", "SMS to this phone number's country is not allowed");
    let us =
        app.post_start(&json!({"client_id": "public-app", "connection": "sms", "phone_number": "+14155552671"})).await;
    assert_eq!(us.status, 200);
    app.mailbox("+14155552671", 1).await;
    let list: Vec<Value> =
        app.http.get(format!("{}/dev/mailbox", app.base)).send().await.expect("mailbox").json().await.expect("json");
    assert!(list.iter().all(|m| m["to"] != "+33612345678"), "nothing went to the refused number");
}

#[tokio::test]
async fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    let spoof = |app: &TestApp, ip: &'static str, email: String| {
        app.http
            .post(format!("{}/passwordless/start", app.base))
            .header("x-forwarded-for", ip)
            .json(&start_body(&email))
            .send()
    };
    let limits = |s: &mut Settings| s.limits.start_per_ip = Rate { limit: 2, window_secs: 3600 };
    // Untrusted peer: the header is ignored, every request is the same IP.
    let app = spawn_app_configured(limits).await;
    let statuses: Vec<u16> = futures::future::join_all(
        (0..3).map(|i| spoof(&app, ["1.1.1.1", "2.2.2.2", "3.3.3.3"][i], format!("u{i}@example.com"))),
    )
    .await
    .into_iter()
    .map(|r| r.expect("start").status().as_u16())
    .collect();
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 1, "{statuses:?}");
    // Trusted peer (the load balancer): the forwarded client IPs get buckets of their own.
    let app = spawn_app_configured(|s| {
        limits(s);
        s.trusted_proxies = vec!["127.0.0.1/32".into()];
    })
    .await;
    for i in 0..3 {
        assert_eq!(
            spoof(&app, "1.1.1.1", format!("a{i}@example.com")).await.expect("start").status(),
            if i < 2 { 200 } else { 429 }
        );
    }
    assert_eq!(spoof(&app, "2.2.2.2", "b@example.com".into()).await.expect("start").status(), 200);
}

/// Two instances with these `[redis]` settings: 50 starts from one IP alternate between them,
/// and the 51st is refused whichever instance gets it.
async fn two_instances_share_the_limits(redis: Value) {
    let a = spawn_app_configured(|s| use_redis_with(s, redis.clone())).await;
    let b = spawn_app_configured(|s| use_redis_with(s, redis.clone())).await;
    for i in 0..50 {
        let app = if i % 2 == 0 { &a } else { &b };
        assert_eq!(app.post_start(&start_body(&format!("r{i}@example.com"))).await.status, 200, "start {i}");
    }
    assert_eq!(a.post_start(&start_body("r50@example.com")).await.status, 429);
    assert_eq!(b.post_start(&start_body("r51@example.com")).await.status, 429, "whichever instance gets it");
    let readiness = a.get("/readyz").await;
    assert_eq!(readiness.status, 200, "{}", readiness.body);
    assert_eq!(readiness.body["checks"]["limiter"]["status"], "up", "{}", readiness.body);
}

#[tokio::test]
async fn two_instances_on_one_redis_share_the_limits() {
    let redis_url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    two_instances_share_the_limits(json!({"url": redis_url, "key_prefix": unique_prefix(), "timeout_ms": 300})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_redis_over_tls_with_a_password_share_the_limits() {
    let redis = sesame_redis::testing::TlsRedis::start();
    let settings = json!({"url": redis.url(), "ca_file": redis.ca.file("ca.crt"), "key_prefix": unique_prefix(), "timeout_ms": 2000});
    two_instances_share_the_limits(settings).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_a_redis_cluster_over_tls_share_the_limits() {
    let cluster = sesame_redis::testing::RedisCluster::start(true);
    let settings = json!({
        "url": cluster.url(), "ca_file": cluster.ca.file("ca.crt"), "cluster": true,
        "key_prefix": unique_prefix(), "timeout_ms": 2000,
    });
    two_instances_share_the_limits(settings).await;
}

#[tokio::test]
async fn with_redis_down_email_falls_to_the_local_floor_sms_fails_closed_and_both_recover() {
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let url = format!("redis://127.0.0.1:{}", proxy.port);
    let prefix = unique_prefix();
    let app = spawn_app_configured(|s| use_redis(s, &url, &prefix)).await;
    let sms = json!({"client_id": "public-app", "connection": "sms", "phone_number": "+14155552671"});
    let ok = app.post_start(&start_body("redis@example.com")).await;
    assert_eq!(ok.status, 200);
    assert!(ok.headers.contains_key("x-ratelimit-limit"), "limited through Redis");

    proxy.down().await;
    let email = app.post_start(&start_body("redis-down@example.com")).await;
    assert_eq!(email.status, 200, "email fails open: {}", email.body);
    assert!(
        email.headers.contains_key("x-ratelimit-limit"),
        "open is never unlimited: the in-process floor limits and reports"
    );
    let down = app.post_start(&sms).await;
    down.assert_error(
        503,
        "temporarily_unavailable",
        "The service is temporarily unavailable. Please try again later.",
    );
    let code = app.mailbox("redis-down@example.com", 1).await[0]["code"].as_str().expect("code").to_owned();
    let login = app.post_token(&TestApp::otp_body("public-app", "email", "redis-down@example.com", &code)).await;
    assert_eq!(login.status, 200, "the exchange fails open");

    proxy.up();
    let mut recovered = false;
    for _ in 0..50 {
        let r = app.post_start(&sms).await;
        if r.status == 200 && r.headers.contains_key("x-ratelimit-limit") {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "SMS starts work again once Redis is back, without a restart");
    let _ = OTP_GRANT;
}
