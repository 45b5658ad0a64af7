//! `spawn_app()`: a Sesame on port 0 with the memory adapters, a manual clock and test clients.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sesame_api::config::{ClientSettings, DatabaseSettings, Settings, StoreKind};
use sesame_api::startup::{Application, Overrides};
use sesame_domain::{AppType, AuthMethod, GrantType};
use sesame_memory::ManualClock;
use sesame_postgres::testing::TestDatabase;

pub const ISSUER: &str = "https://sesame.test/";
pub const WEB_SECRET: &str = "web-secret-0123456789abcdef";
pub const API: &str = "https://api.example.com/";
pub const OTP_GRANT: &str = "http://auth0.com/oauth/grant-type/passwordless/otp";

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub clock: Arc<ManualClock>,
    /// The port of `metrics_listen`, when the test set one.
    pub metrics_port: Option<u16>,
    /// The test's own database when the suite runs on Postgres (`TEST_STORE=postgres`).
    pub _db: Option<TestDatabase>,
}

/// Which store the suite runs on: memory by default, Postgres with `TEST_STORE=postgres`.
pub fn on_postgres() -> bool {
    std::env::var("TEST_STORE").is_ok_and(|s| s == "postgres")
}

pub fn database_settings(url: String) -> DatabaseSettings {
    serde_json::from_value(serde_json::json!({"url": url, "connect_timeout_ms": 500})).expect("database settings")
}

fn client(id: &str, app_type: AppType, auth: AuthMethod, secret: Option<&str>, connections: &[&str]) -> ClientSettings {
    let mut c: ClientSettings =
        serde_json::from_value(serde_json::json!({"client_id": id, "name": format!("App {id}")}))
            .expect("client settings");
    c.app_type = app_type;
    c.auth_method = auth;
    c.client_secret = secret.map(str::to_owned);
    c.connections = connections.iter().map(|s| (*s).to_owned()).collect();
    c.callbacks = vec!["https://app.example.com/callback".into()];
    c.allowed_origins = vec![format!("https://{id}.example")];
    c.grant_types =
        vec![GrantType::PasswordlessOtp, GrantType::RefreshToken, GrantType::AuthorizationCode, GrantType::Implicit];
    c
}

pub async fn spawn_app() -> TestApp {
    spawn_app_configured(|_| {}).await
}

/// As `spawn_app`, with settings changed by `configure` last.
pub async fn spawn_app_configured(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with_senders(configure, Senders::default()).await
}

/// Senders to use instead of the settings' (the real SES/SNS adapters, built for the emulator).
#[derive(Default)]
pub struct Senders {
    pub email: Option<Arc<dyn sesame_ports::EmailSender>>,
    pub sms: Option<Arc<dyn sesame_ports::SmsSender>>,
}

pub async fn spawn_app_with_senders(configure: impl FnOnce(&mut Settings), senders: Senders) -> TestApp {
    let db = if on_postgres() { Some(TestDatabase::new().await.expect("test database")) } else { None };
    let url = db.as_ref().map(|d| d.config().url);
    spawn(url, db, configure, senders).await
}

/// A Sesame whose Postgres store is at `database_url` (memory when `None`).
pub async fn spawn_app_with(database_url: Option<String>, db: Option<TestDatabase>) -> TestApp {
    spawn(database_url, db, |_| {}, Senders::default()).await
}

/// As `spawn_app_with`, with settings changed by `configure`.
pub async fn spawn_app_on(database_url: String, configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn(Some(database_url), None, configure, Senders::default()).await
}

async fn spawn(
    database_url: Option<String>,
    db: Option<TestDatabase>,
    configure: impl FnOnce(&mut Settings),
    senders: Senders,
) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        sesame_api::telemetry::init(sesame_api::config::LogFormat::Compact);
    }
    let env = [
        ("SESAME__ISSUER", ISSUER),
        ("SESAME__LISTEN", "127.0.0.1:0"),
        ("SESAME__SERVER_SECRET", "test-server-secret-0123456789abcdef0123"),
        ("SESAME__DELIVERY__POLL_MS", "20"),
    ];
    let mut settings =
        Settings::load_from(None, env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))).expect("settings");
    settings.clients = vec![
        client("public-app", AppType::Native, AuthMethod::None, None, &["email", "sms"]),
        client("web-app", AppType::RegularWeb, AuthMethod::ClientSecretPost, Some(WEB_SECRET), &["email", "sms"]),
        client("basic-app", AppType::RegularWeb, AuthMethod::ClientSecretBasic, Some(WEB_SECRET), &["email", "sms"]),
        client("spa-app", AppType::Spa, AuthMethod::None, None, &["email", "sms"]),
        client("email-only", AppType::Native, AuthMethod::None, None, &["email"]),
    ];
    if let Some(url) = database_url {
        settings.store = StoreKind::Postgres;
        settings.database = Some(database_settings(url));
        // The tests read codes from the development mailbox: outside the embedded default it
        // must be asked for.
        settings.dev_mailbox = Some(true);
    }
    settings.apis =
        vec![sesame_flows::Api { identifier: API.into(), allow_offline_access: true, metadata_claims: None }];
    configure(&mut settings);
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let app = Application::build_with(
        settings,
        Overrides { clock: Some(clock.clone()), email: senders.email, sms: senders.sms },
    )
    .await
    .expect("app builds");
    let port = app.port();
    let metrics_port = app.metrics_port();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client"),
        clock,
        metrics_port,
        _db: db,
    }
}

/// A response as a test reads it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    async fn from(resp: reqwest::Response) -> Self {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("body is not JSON ({status}): {text:?}"));
        Self { status, headers, body }
    }

    /// Asserts an Auth0 error: status, `error`, `error_description`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, error: &str, description: &str) {
        assert_eq!(
            (self.status, self.body["error"].as_str(), self.body["error_description"].as_str()),
            (status, Some(error), Some(description)),
            "full body: {}",
            self.body
        );
    }
}

impl TestApp {
    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        Reply::from(self.http.post(format!("{}{path}", self.base)).json(body).send().await.expect("request")).await
    }

    pub async fn post_raw(&self, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> Reply {
        let req = self.http.post(format!("{}{path}", self.base)).header("content-type", content_type).body(body);
        Reply::from(req.send().await.expect("request")).await
    }

    pub async fn post_start(&self, body: &Value) -> Reply {
        self.post_json("/passwordless/start", body).await
    }

    pub async fn post_token(&self, body: &Value) -> Reply {
        self.post_json("/oauth/token", body).await
    }

    pub async fn post_token_form(&self, pairs: &[(&str, &str)]) -> Reply {
        Reply::from(self.http.post(format!("{}/oauth/token", self.base)).form(pairs).send().await.expect("request"))
            .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        Reply::from(self.http.get(format!("{}{path}", self.base)).send().await.expect("request")).await
    }

    /// The messages sent to `to`, newest first, waiting up to 15 s for at least `at_least`.
    pub async fn mailbox(&self, to: &str, at_least: usize) -> Vec<Value> {
        let url = format!("{}/dev/mailbox", self.base);
        for _ in 0..1500 {
            let list: Vec<Value> =
                self.http.get(&url).query(&[("to", to)]).send().await.expect("mailbox").json().await.expect("json");
            if list.len() >= at_least {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no message for {to} within 15 s");
    }

    /// Starts a code login and returns the code the user received.
    pub async fn start_and_read_code(&self, client_id: &str, connection: &str, to: &str) -> String {
        let before = self.mailbox_now(to).await;
        let field = if connection == "sms" { "phone_number" } else { "email" };
        let reply = self
            .post_start(
                &serde_json::json!({"client_id": client_id, "connection": connection, field: to, "send": "code"}),
            )
            .await;
        assert_eq!(reply.status, 200, "start: {}", reply.body);
        let list = self.mailbox(to, before + 1).await;
        list[0]["code"].as_str().expect("code in message").to_owned()
    }

    async fn mailbox_now(&self, to: &str) -> usize {
        let url = format!("{}/dev/mailbox", self.base);
        let list: Vec<Value> =
            self.http.get(&url).query(&[("to", to)]).send().await.expect("mailbox").json().await.expect("json");
        list.len()
    }

    pub fn otp_body(client_id: &str, realm: &str, username: &str, otp: &str) -> Value {
        serde_json::json!({
            "grant_type": OTP_GRANT, "client_id": client_id, "realm": realm,
            "username": username, "otp": otp, "scope": "openid profile email",
        })
    }

    /// Verifies an RS256 JWT against the served JWKS, with issuer and audience.
    pub async fn verify_jwt(&self, token: &str, audience: &str) -> Value {
        let header = jsonwebtoken::decode_header(token).expect("jwt header");
        assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
        let kid = header.kid.expect("kid in header");
        let jwks = self.get("/.well-known/jwks.json").await.body;
        let jwk =
            jwks["keys"].as_array().expect("keys").iter().find(|k| k["kid"] == kid.as_str()).expect("kid in JWKS");
        let key = jsonwebtoken::DecodingKey::from_rsa_components(
            jwk["n"].as_str().expect("n"),
            jwk["e"].as_str().expect("e"),
        )
        .expect("key");
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_issuer(&[ISSUER]);
        v.set_audience(&[audience]);
        jsonwebtoken::decode::<Value>(token, &key, &v).expect("token verifies").claims
    }
}

/// Forwards a loopback port to `upstream` while up; while down it drops every connection.
/// Tests use it to take Postgres or Redis away from Sesame and give them back.
pub struct Proxy {
    pub port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    links: Arc<tokio::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    pub async fn start(upstream: &str) -> Self {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let links: Arc<tokio::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (up2, links2, upstream) = (up.clone(), links.clone(), upstream.to_owned());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue;
                }
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                links2.lock().await.push(link);
            }
        });
        Self { port, up, links }
    }

    pub async fn down(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    pub fn up(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
