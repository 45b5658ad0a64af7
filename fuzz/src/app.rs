//! The real actix app (routes, middleware, flows) on the memory adapters, in process, with a
//! manual clock: what `sesame serve` runs with the embedded default, without a socket.
//!
//! State (store, limiter) lives across runs and is rebuilt every [`REBUILD_EVERY`] runs to keep
//! memory bounded; before each run the clock moves on two hours, so every rate limit has
//! refilled and a run does not depend on how many came before it.

use std::cell::RefCell;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_web::test::{self, TestRequest};
use actix_web::{App, web};
use serde_json::Value;
use sesame_api::config::Settings;
use sesame_api::routes::AppState;
use sesame_api::startup::{Overrides, Wired};
use sesame_domain::{
    AppType, AuthMethod, AuthParams, Client, ClientId, Connection, ConnectionName, GrantType, Send, Strategy,
};
use sesame_flows::Sesame;
use sesame_flows::start::StartRequest;
use sesame_memory::{Mailbox, ManualClock};

use crate::request::{RawRequest, Reply};
use crate::signer::Signer;

pub const REBUILD_EVERY: u32 = 4096;
pub const WEB_SECRET: &str = "web-secret-0123456789abcdef";
pub const API: &str = "https://api.example.com/";
/// Who the harness starts logins for, whose codes fill `{{code}}` and `{{sms_code}}`.
pub const EMAIL: &str = "jane@example.com";
pub const PHONE: &str = "+14155552671";
/// Client ids the seeds use.
pub const CLIENTS: &[&str] = &["public-app", "web-app", "basic-app", "jwt-app", "email-only"];

type Call = Box<dyn Fn(TestRequest) -> Pin<Box<dyn Future<Output = Reply>>>>;

struct Instance {
    call: Call,
    sesame: Sesame,
    mailbox: Arc<Mailbox>,
    clock: Arc<ManualClock>,
}

pub struct Harness {
    system: actix_web::rt::SystemRunner,
    instance: Option<Instance>,
    runs: u32,
    signer: Signer,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness").field("runs", &self.runs).finish_non_exhaustive()
    }
}

thread_local! {
    /// Never dropped: at exit, actix's own thread-locals may already be gone.
    static HARNESS: RefCell<ManuallyDrop<Option<Harness>>> = const { RefCell::new(ManuallyDrop::new(None)) };
}

/// Runs `f` with this thread's harness, set for a new run (clock moved on, state rebuilt when due).
pub fn with_harness<R>(f: impl FnOnce(&mut Harness) -> R) -> R {
    HARNESS.with(|cell| {
        let mut slot = cell.borrow_mut();
        let harness = slot.get_or_insert_with(Harness::new);
        harness.next_run();
        f(harness)
    })
}

fn client(id: &str, app_type: AppType, auth: AuthMethod, connections: &[&str]) -> Client {
    Client {
        id: ClientId::new(id),
        name: format!("App {id}"),
        app_type,
        auth_method: auth,
        secret_hash: None,
        connections: connections.iter().map(|c| ConnectionName::new(*c)).collect(),
        callbacks: vec!["https://app.example.com/callback".into()],
        allowed_origins: vec![format!("https://{id}.example")],
        grant_types: vec![
            GrantType::PasswordlessOtp,
            GrantType::RefreshToken,
            GrantType::AuthorizationCode,
            GrantType::Implicit,
        ],
        public_keys: Vec::new(),
        api_scopes: std::collections::BTreeMap::new(),
        trust_forwarded_for: false,
        allowed_logout_urls: vec![],
        require_pkce: true,
    }
}

impl Harness {
    fn new() -> Self {
        let system = actix_web::rt::System::new();
        Self { system, instance: None, runs: 0, signer: Signer::generate() }
    }

    fn next_run(&mut self) {
        if self.runs % REBUILD_EVERY == 0 {
            self.instance = None;
            let instance = self.system.block_on(build(&self.signer));
            self.instance = Some(instance);
        }
        self.runs = self.runs.wrapping_add(1);
        self.instance().clock.advance(Duration::from_secs(2 * 3600));
    }

    fn instance(&self) -> &Instance {
        self.instance.as_ref().expect("built in next_run")
    }

    pub fn sesame(&self) -> &Sesame {
        &self.instance().sesame
    }

    pub fn now(&self) -> i64 {
        self.sesame().ports.clock.now().unix_timestamp()
    }

    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// POSTs `req` to `path` through the whole app (middleware included).
    pub fn send(&self, path: &str, req: &RawRequest) -> Reply {
        let fut = (self.instance().call)(req.test_request(path));
        let reply = self.system.block_on(fut);
        if crate::debug() {
            eprintln!("{path} -> {} {}", reply.status, reply.text());
        }
        reply
    }

    /// Starts a code login of `client_id` for [`EMAIL`] (email) or [`PHONE`] (sms) through the
    /// flows and returns the code the mailbox received.
    /// `None` when the client may not start one (a connection it does not have).
    pub fn issue_code(&self, client_id: &str, email: bool) -> Option<String> {
        let i = self.instance();
        let sesame = &i.sesame;
        let started = self.system.block_on(async {
            let client =
                sesame.ports.clients.find(&ClientId::new(client_id)).await.expect("store").expect("a seeded client");
            let out = sesame
                .start(StartRequest {
                    client,
                    connection: ConnectionName::new(if email { "email" } else { "sms" }),
                    email: email.then(|| EMAIL.to_owned()),
                    phone_number: (!email).then(|| PHONE.to_owned()),
                    send: Some(Send::Code),
                    auth_params: AuthParams::default(),
                    language: None,
                    ip: None,
                })
                .await;
            if out.result.is_err() {
                return false;
            }
            if email {
                sesame.deliver_due().await.expect("delivery");
            }
            true
        });
        if !started {
            return None;
        }
        let to = if email { EMAIL } else { PHONE };
        let entry = i.mailbox.list(Some(to)).into_iter().next().expect("a message");
        Some(code_in(&entry.text).expect("a code in the message"))
    }

    /// Verifies a token Sesame signed; its claims.
    pub fn verify_token(&self, token: &str) -> Value {
        let sesame = self.sesame();
        self.system.block_on(sesame.ports.tokens.verify(token)).expect("a token Sesame issued verifies")
    }

    /// `data` with its placeholders filled: `{{code}}` and `{{sms_code}}` (a live code for
    /// [`EMAIL`] / [`PHONE`], issued now for the client the request names), `{{assertion}}` (a fresh private_key_jwt assertion of
    /// `jwt-app`, `aud` the issuer), `{{assertion_token}}` (the same, `aud` the token endpoint).
    pub fn fill(&self, data: &[u8], codes: &mut Codes) -> Vec<u8> {
        let mut out = data.to_vec();
        let token_aud = format!("{}oauth/token", crate::ISSUER);
        while contains(&out, b"{{assertion_token}}") {
            let a = self.signer.assertion("jwt-app", &token_aud, self.now());
            out = replace_first(&out, b"{{assertion_token}}", a.as_bytes());
        }
        while contains(&out, b"{{assertion}}") {
            let a = self.signer.assertion("jwt-app", crate::ISSUER, self.now());
            out = replace_first(&out, b"{{assertion}}", a.as_bytes());
        }
        for (placeholder, email) in [(&b"{{code}}"[..], true), (&b"{{sms_code}}"[..], false)] {
            if !contains(&out, placeholder) {
                continue;
            }
            let slot = if email { &mut codes.email } else { &mut codes.sms };
            if slot.is_none() {
                // Codes are bound to the client: issue it for the one the request names.
                let client = request_client(&out);
                *slot = Some(self.issue_code(&client, email).unwrap_or_else(|| "000000".into()));
            }
            let code = slot.clone().unwrap_or_default();
            out = replace(&out, placeholder, code.as_bytes());
        }
        out
    }
}

/// The registered client a request names (`client_id`, else its Basic credentials), or
/// `public-app`.
fn request_client(data: &[u8]) -> String {
    use base64::Engine as _;
    let req = RawRequest::parse(data);
    let from_body = req.object().and_then(|m| m.get("client_id").and_then(Value::as_str).map(str::to_owned));
    let from_basic = || {
        let (_, v) = req.headers.iter().find(|(n, _)| *n == actix_web::http::header::AUTHORIZATION)?;
        let b64 = v.to_str().ok()?.strip_prefix("Basic ")?;
        let text = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?).ok()?;
        Some(text.split_once(':')?.0.to_owned())
    };
    from_body.or_else(from_basic).filter(|c| CLIENTS.contains(&c.as_str())).unwrap_or_else(|| "public-app".into())
}

/// Codes issued for one run (a replay of the run's request reuses them).
#[derive(Debug, Default)]
pub struct Codes {
    pub email: Option<String>,
    pub sms: Option<String>,
}

/// Whether `data` holds any placeholder [`Harness::fill`] fills.
pub fn has_placeholder(data: &[u8]) -> bool {
    contains(data, b"{{code}}")
        || contains(data, b"{{sms_code}}")
        || contains(data, b"{{assertion}}")
        || contains(data, b"{{assertion_token}}")
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn replace_first(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    match hay.windows(needle.len()).position(|w| w == needle) {
        Some(i) => [&hay[..i], with, &hay[i + needle.len()..]].concat(),
        None => hay.to_vec(),
    }
}

fn replace(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// The first whitespace-separated run of 4 to 40 digits (what the dev mailbox finds).
fn code_in(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || c == '<' || c == '>')
        .map(|t| t.trim_end_matches(['.', ',', ':']))
        .find(|t| (4..=40).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
}

async fn build(signer: &Signer) -> Instance {
    let env = [
        ("SESAME__ISSUER", crate::ISSUER),
        ("SESAME__LISTEN", "127.0.0.1:0"),
        ("SESAME__SERVER_SECRET", "fuzz-server-secret-7f3a9c2e81b64d05a9e1c3f7"),
        ("SESAME__METRICS", "false"),
    ];
    let mut settings: Settings =
        Settings::load_from(None, env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))).expect("settings");
    settings.apis = vec![sesame_flows::Api { identifier: API.into(), allow_offline_access: true, metadata_claims: None }];
    settings.trusted_proxies = vec!["10.0.0.0/8".into()];
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time")));
    let Wired { sesame, mailbox, .. } = sesame_api::startup::wire(
        &settings,
        Overrides { clock: Some(clock.clone() as Arc<dyn sesame_ports::Clock>), email: None, sms: None },
    )
    .await
    .expect("wired");

    let mut closed = Connection::default_for(Strategy::Email);
    closed.name = ConnectionName::new("email-closed");
    closed.disable_signup = true;
    for c in [Connection::default_for(Strategy::Email), Connection::default_for(Strategy::Sms), closed] {
        sesame.ports.connections.save(&c).await.expect("connection");
    }
    let all = ["email", "sms", "email-closed"];
    let mut web_app = client("web-app", AppType::RegularWeb, AuthMethod::ClientSecretPost, &all);
    web_app.secret_hash = Some(sesame.hash_client_secret(WEB_SECRET));
    web_app.api_scopes.insert(API.into(), vec!["read:things".into()]);
    web_app.trust_forwarded_for = true;
    let mut basic_app = client("basic-app", AppType::RegularWeb, AuthMethod::ClientSecretBasic, &all);
    basic_app.secret_hash = Some(sesame.hash_client_secret(WEB_SECRET));
    let mut jwt_app = client("jwt-app", AppType::RegularWeb, AuthMethod::PrivateKeyJwt, &all);
    jwt_app.public_keys = vec![signer.jwk().to_owned()];
    for c in [
        client("public-app", AppType::Native, AuthMethod::None, &all),
        web_app,
        basic_app,
        jwt_app,
        client("email-only", AppType::Spa, AuthMethod::None, &["email"]),
    ] {
        sesame.ports.clients.save(&c).await.expect("client");
    }

    let state = web::Data::new(AppState {
        sesame: sesame.clone(),
        mailbox: Some(mailbox.clone()),
        trusted_proxies: settings.trusted_proxy_nets().expect("proxies"),
        confirm_links: true,
        hosted: sesame_api::hosted::Hosted::new(&settings.hosted, &settings.issuer),
    });
    let service = test::init_service(
        App::new()
            .app_data(state)
            .app_data(web::PayloadConfig::new(settings.max_body_bytes))
            .wrap(actix_web::middleware::from_fn(sesame_api::middleware::cors_and_errors))
            .configure(sesame_api::routes::configure),
    )
    .await;
    let service = Rc::new(service);
    let call: Call = Box::new(move |req: TestRequest| {
        let service = Rc::clone(&service);
        Box::pin(async move {
            let (status, headers, raw) = match test::try_call_service(&*service, req.to_request()).await {
                Ok(res) => {
                    let status = res.status().as_u16();
                    let headers = res.headers().clone();
                    (status, headers, test::read_body(res).await.to_vec())
                }
                Err(e) => {
                    let res = e.as_response_error().error_response();
                    let status = res.status().as_u16();
                    let headers = res.headers().clone();
                    let body = actix_web::body::to_bytes(res.into_body()).await.map(|b| b.to_vec()).unwrap_or_default();
                    (status, headers, body)
                }
            };
            let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
            Reply { status, headers, body, raw }
        })
    });
    Instance { call, sesame, mailbox, clock }
}
