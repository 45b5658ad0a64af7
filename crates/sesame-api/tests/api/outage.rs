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

    proxy.up();
    let code = app.start_and_read_code("public-app", "email", "outage@example.com").await;
    let login = app.post_token(&TestApp::otp_body("public-app", "email", "outage@example.com", &code)).await;
    assert_eq!(login.status, 200, "recovered without a restart: {}", login.body);
}
