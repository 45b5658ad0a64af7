//! Postgres going away and coming back, through a TCP proxy the test switches off and on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::json;
use sesame_postgres::testing::TestDatabase;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::helpers::{TestApp, spawn_app_with};

/// Forwards 127.0.0.1:port to Postgres while up; while down it drops every connection.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (up2, links2) = (up.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue;
                }
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                links2.lock().await.push(link);
            }
        });
        Self { port, up, links }
    }

    async fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_the_api_answers_503_and_recovers_by_itself() {
    let db = TestDatabase::new().await.expect("test database");
    let proxy = Proxy::start("127.0.0.1:5432".into()).await;
    let url = db.config().url.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    assert!(url.contains(&proxy.port.to_string()), "{url}");
    let app = spawn_app_with(Some(url), Some(db)).await;
    let start =
        json!({"client_id": "public-app", "connection": "email", "email": "outage@example.com", "send": "code"});
    assert_eq!(app.post_start(&start).await.status, 200);

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
