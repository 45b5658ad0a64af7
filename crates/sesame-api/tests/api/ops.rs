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
