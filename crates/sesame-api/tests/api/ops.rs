//! What an operator relies on: probes, request ids, metrics.

use serde_json::json;
use sesame_postgres::testing::TestDatabase;

use crate::helpers::{Proxy, spawn_app, spawn_app_configured, spawn_app_with};

#[tokio::test]
async fn healthz_answers_without_io_and_health_is_its_alias() {
    let app = spawn_app().await;
    for path in ["/healthz", "/health"] {
        let r = app.get(path).await;
        assert_eq!((r.status, &r.body), (200, &json!({"status": "ok"})), "{path}");
    }
}

#[tokio::test]
async fn readyz_reports_each_dependency() {
    let app = spawn_app().await;
    let r = app.get("/readyz").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "ok", "{}", r.body);
    let checks = &r.body["checks"];
    assert_eq!(checks["store"]["status"], "up");
    assert!(checks["store"]["ms"].is_number());
    assert_eq!(checks["limiter"]["status"], "up");
    assert_eq!(checks["email_provider"]["status"], "closed");
    assert_eq!(checks["sms_provider"]["status"], "closed");
    assert_eq!(checks["signing_keys"]["status"], "up");
    assert!(checks["signing_keys"]["published"].as_u64() >= Some(1));
    assert_eq!(r.headers["cache-control"], "no-store");
}

#[tokio::test]
async fn with_redis_down_readyz_is_degraded_but_still_200() {
    // Nothing listens on port 1: the limiter cannot connect. `limits.fail` decides what a
    // request does then, so the replica stays in service.
    let app = spawn_app_configured(|s| {
        s.rate_limit = sesame_api::config::LimiterKind::Redis;
        s.redis = Some(
            serde_json::from_value(
                json!({"url": "redis://127.0.0.1:1/", "key_prefix": "sesame-ready:", "timeout_ms": 200}),
            )
            .expect("redis settings"),
        );
    })
    .await;
    let r = app.get("/readyz").await;
    assert_eq!((r.status, r.body["status"].as_str()), (200, Some("degraded")), "{}", r.body);
    assert_eq!(r.body["checks"]["limiter"], json!({"status": "down"}), "no reason in the response: {}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_readyz_is_503_and_ready_again_when_it_is_back() {
    let db = TestDatabase::new().await.expect("test database");
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let url = db.config().url.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    let app = spawn_app_with(Some(url), Some(db)).await;
    assert_eq!(app.get("/readyz").await.status, 200);

    proxy.down().await;
    let r = app.get("/readyz").await;
    assert_eq!((r.status, r.body["status"].as_str()), (503, Some("unavailable")), "{}", r.body);
    assert_eq!(r.body["checks"]["store"], json!({"status": "down"}));
    assert_eq!(app.get("/healthz").await.status, 200, "liveness does not depend on the store");

    proxy.up();
    let mut ready = false;
    for _ in 0..50 {
        if app.get("/readyz").await.status == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "ready again once Postgres is back");
}

#[tokio::test]
async fn a_request_id_is_taken_from_the_caller_or_made_and_always_echoed() {
    let app = spawn_app().await;
    let sent = app.http.get(format!("{}/healthz", app.base)).header("x-request-id", "lb-1234.abc_Z").send().await;
    assert_eq!(sent.expect("reply").headers()["x-request-id"], "lb-1234.abc_Z");

    let mut seen = std::collections::HashSet::new();
    for bad in ["", "has space", "quote\"", &"x".repeat(129)] {
        let reply = app.http.get(format!("{}/healthz", app.base)).header("x-request-id", bad).send().await;
        let id = reply.expect("reply").headers()["x-request-id"].to_str().expect("ascii").to_owned();
        assert_eq!(id.len(), 32, "an unsafe id is replaced by a fresh one: {id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        seen.insert(id);
    }
    assert_eq!(seen.len(), 4, "fresh ids differ");
    // Errors carry one too.
    let missing = app.http.get(format!("{}/nowhere", app.base)).send().await.expect("reply");
    assert_eq!(missing.status(), 404);
    assert!(missing.headers().contains_key("x-request-id"));
}

/// One scrape: each sample line (`name{labels}`) to its value.
async fn scrape(http: &reqwest::Client, url: &str) -> (String, std::collections::HashMap<String, f64>) {
    let reply = http.get(url).send().await.expect("scrape");
    assert_eq!(reply.status(), 200);
    let content_type = reply.headers()["content-type"].to_str().expect("ascii").to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = reply.text().await.expect("text");
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(k, v)| (k.to_owned(), v.parse().expect("a number")))
        .collect();
    (text, samples)
}

fn moved(
    before: &std::collections::HashMap<String, f64>,
    after: &std::collections::HashMap<String, f64>,
    key: &str,
) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_a_full_login_and_no_label_holds_an_identifier_or_secret() {
    let app = spawn_app_configured(|s| s.limits.send_cooldown_secs = 60).await;
    let url = format!("{}/metrics", app.base);
    let (_, before) = scrape(&app.http, &url).await;

    let email = "metrics.user@example.com";
    let code = app.start_and_read_code("public-app", "email", email).await;
    let again = app.post_start(&json!({"client_id": "public-app", "connection": "email", "email": email})).await;
    assert_eq!(again.status, 429, "the cooldown refuses a second send: {}", again.body);
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let body = |otp: &str| crate::helpers::TestApp::otp_body("public-app", "email", email, otp);
    assert_eq!(app.post_token(&body(wrong)).await.status, 403);
    assert_eq!(app.post_token(&body(&code)).await.status, 200);
    assert_eq!(app.post_token(&body(&code)).await.status, 403, "a used code is burnt");

    // The delivery is counted once the provider has answered, just after the mailbox has it.
    let key = r#"sesame_deliveries_total{channel="email",outcome="sent"}"#;
    let (mut text, mut after) = scrape(&app.http, &url).await;
    for _ in 0..100 {
        if moved(&before, &after, key) >= 1.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        (text, after) = scrape(&app.http, &url).await;
    }
    for (key, at_least) in [
        (r#"sesame_starts_total{connection="email",send="code"}"#, 1.0),
        (r#"sesame_exchanges_total{outcome="wrong",proof="code"}"#, 1.0),
        (r#"sesame_exchanges_total{outcome="ok",proof="code"}"#, 1.0),
        (r#"sesame_exchanges_total{outcome="burnt",proof="code"}"#, 1.0),
        (r#"sesame_rate_limit_refusals_total{rule="start:cooldown"}"#, 1.0),
        (key, 1.0),
        (r#"sesame_http_requests_total{route="/passwordless/start",method="POST",status="200"}"#, 1.0),
        (r#"sesame_http_requests_total{route="/passwordless/start",method="POST",status="429"}"#, 1.0),
        (r#"sesame_http_requests_total{route="/oauth/token",method="POST",status="403"}"#, 2.0),
        (r#"sesame_http_request_duration_seconds_count{route="/oauth/token",method="POST"}"#, 3.0),
    ] {
        assert!(moved(&before, &after, key) >= at_least, "{key} moved by {}", moved(&before, &after, key));
    }
    assert!(after.contains_key("sesame_outbox_pending"), "outbox depth is read at scrape");
    assert!(after.contains_key("sesame_outbox_oldest_pending_seconds"));
    assert!(after.get("sesame_signing_key_age_seconds").is_some_and(|age| *age >= 0.0));
    for secret in [email, "metrics.user", &code, crate::helpers::WEB_SECRET, "127.0.0.1"] {
        assert!(!text.contains(secret), "{secret:?} appears in /metrics");
    }
}

#[tokio::test]
async fn metrics_count_a_fail_open_limiter_and_its_errors() {
    let app = spawn_app_configured(|s| {
        s.rate_limit = sesame_api::config::LimiterKind::Redis;
        s.redis = Some(
            serde_json::from_value(
                json!({"url": "redis://127.0.0.1:1/", "key_prefix": "sesame-metrics:", "timeout_ms": 200}),
            )
            .expect("redis settings"),
        );
    })
    .await;
    let url = format!("{}/metrics", app.base);
    let (_, before) = scrape(&app.http, &url).await;
    // Email fails open by default: the start goes through on the local floor.
    app.start_and_read_code("public-app", "email", "open.limiter@example.com").await;
    let (_, after) = scrape(&app.http, &url).await;
    assert!(moved(&before, &after, r#"sesame_limiter_failures_total{mode="open"}"#) >= 1.0);
    assert!(moved(&before, &after, r#"sesame_dependency_errors_total{adapter="limiter"}"#) >= 1.0);
}

#[tokio::test]
async fn metrics_listen_serves_metrics_apart_from_the_public_listener() {
    let app = spawn_app_configured(|s| s.metrics_listen = "127.0.0.1:0".into()).await;
    assert_eq!(app.get("/healthz").await.status, 200);
    let public = app.http.get(format!("{}/metrics", app.base)).send().await.expect("reply");
    assert_eq!(public.status(), 404, "not on the public listener");
    let port = app.metrics_port.expect("a metrics port");
    let (_, samples) = scrape(&app.http, &format!("http://127.0.0.1:{port}/metrics")).await;
    assert!(samples.keys().any(|k| k.starts_with("sesame_http_requests_total{route=\"/healthz\"")), "{samples:?}");
}

#[tokio::test]
async fn metrics_can_be_turned_off() {
    let app = spawn_app_configured(|s| s.metrics = false).await;
    let reply = app.http.get(format!("{}/metrics", app.base)).send().await.expect("reply");
    assert_eq!(reply.status(), 404);
}

#[tokio::test]
async fn the_sweeper_deletes_expired_challenges_and_counts_them() {
    let app = spawn_app_configured(|s| {
        s.retention.interval_secs = 1;
        s.retention.challenge_grace_secs = 600;
    })
    .await;
    let (_, before) = scrape(&app.http, &format!("{}/metrics", app.base)).await;
    let email = "swept@example.com";
    let code = app.start_and_read_code("public-app", "email", email).await;
    let body = crate::helpers::TestApp::otp_body("public-app", "email", email, &code);
    // Expired but within the grace: the challenge is still there, and says so.
    app.clock.advance(std::time::Duration::from_secs(300));
    let expired = app.post_token(&body).await;
    assert_eq!(
        expired.body["error_description"].as_str().map(|d| d.contains("expired")),
        Some(true),
        "{}",
        expired.body
    );
    // Past the grace: the sweeper (every second) deletes it; the code is then unknown.
    app.clock.advance(std::time::Duration::from_secs(600));
    let mut gone = false;
    for _ in 0..50 {
        let r = app.post_token(&body).await;
        if r.body["error_description"] == "Wrong email or verification code." {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "the expired challenge was swept");
    let (_, after) = scrape(&app.http, &format!("{}/metrics", app.base)).await;
    assert!(moved(&before, &after, r#"sesame_retention_deleted_total{kind="challenges"}"#) >= 1.0);
}
