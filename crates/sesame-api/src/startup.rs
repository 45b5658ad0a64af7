//! Wiring at startup: the only place adapter types are named.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use sesame_domain::{
    AppType, AuthMethod, Client, ClientId, CodePolicy, Connection, ConnectionName, GrantType, Strategy,
};
use sesame_flows::cache::{CachedClients, CachedConnections};
use sesame_flows::delivery::RetryPolicy;
use sesame_flows::{FlowSettings, OsRandom, Ports, Secrets, Sesame};
use sesame_jwt::RsaSigningKey;
use sesame_jwt::keyring::{KeyEncryptionKey, KeyRing};
use sesame_memory::{Mailbox, MemoryRateLimiter, MemoryStore};
use sesame_ports::{
    AuditLog, ChallengeStore, ClientStore, Clock, ConnectionStore, GrantStore, LoginStore, Outbox, Random, RateLimiter,
    ReplayGuard, Retention, SystemClock, UserStore,
};
use sesame_ports::{EmailSender, KeyStore, SmsSender};
use sesame_postgres::PgStore;
use sesame_redis::RedisLimiter;
use sesame_ses::SesEmailSender;
use sesame_sns::SnsSmsSender;

use crate::config::{LimiterKind, SenderKind, Settings, StoreKind};
use crate::routes::{self, AppState};

/// The client the embedded default declares when the config declares none.
pub const DEV_CLIENT_ID: &str = "sesame-dev";

/// What tests (and embedders) may replace.
#[derive(Debug, Default)]
pub struct Overrides {
    pub clock: Option<Arc<dyn Clock>>,
    /// A sender to use instead of the one the settings name (tests build the real SES/SNS
    /// adapters with static credentials for the local emulator).
    pub email: Option<Arc<dyn EmailSender>>,
    pub sms: Option<Arc<dyn SmsSender>>,
}

/// A bound, ready-to-run Sesame.
pub struct Application {
    port: u16,
    metrics_port: Option<u16>,
    server: actix_web::dev::Server,
    metrics_server: Option<actix_web::dev::Server>,
    sesame: Sesame,
    mailbox: Arc<Mailbox>,
    delivery_stop: tokio::sync::oneshot::Sender<()>,
    delivery: tokio::task::JoinHandle<()>,
    sweeper_stop: tokio::sync::oneshot::Sender<()>,
    sweeper: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application").field("port", &self.port).finish_non_exhaustive()
    }
}

impl Application {
    /// Production wiring from settings.
    ///
    /// # Errors
    /// When a key, secret or adapter cannot be set up, or the address cannot be bound.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with(settings, Overrides::default()).await
    }

    /// As `build`, with parts replaced (tests move the clock).
    ///
    /// # Errors
    /// As `build`.
    pub async fn build_with(settings: Settings, overrides: Overrides) -> anyhow::Result<Self> {
        // One HTTP worker per core (actix's default), each with Postgres connections of its own.
        let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let Wired { sesame, keys, mailbox, mailbox_delivers, pg, retention } =
            wire_with(&settings, overrides, workers).await?;
        seed(&sesame, &settings).await.context("loading clients and connections")?;

        let listener = TcpListener::bind(&settings.listen).with_context(|| format!("binding {}", settings.listen))?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(AppState {
            sesame: sesame.clone(),
            mailbox: mailbox_delivers.then(|| mailbox.clone()),
            trusted_proxies: settings.trusted_proxy_nets()?,
            confirm_links: settings.magic_link.confirm,
            hosted: crate::hosted::Hosted::new(&settings.hosted, &settings.issuer),
        });
        let body_limit = settings.max_body_bytes;
        let scrape = settings
            .metrics
            .then(crate::monitoring::recorder)
            .flatten()
            .map(|handle| web::Data::new(crate::monitoring::Scrape { handle, sesame: sesame.clone(), keys }));
        // `/metrics` on its own address when one is set, so it need not be public.
        let (metrics_server, metrics_port) = match (&scrape, settings.metrics_listen.as_str()) {
            (Some(scrape), addr) if !addr.is_empty() => {
                let listener = TcpListener::bind(addr).with_context(|| format!("binding metrics_listen {addr}"))?;
                let port = listener.local_addr()?.port();
                let scrape = scrape.clone();
                let server = HttpServer::new(move || {
                    App::new().app_data(scrape.clone()).configure(crate::monitoring::configure)
                })
                .workers(1)
                .listen(listener)?
                .shutdown_timeout(1)
                .run();
                (Some(server), Some(port))
            }
            _ => (None, None),
        };
        let main_scrape = scrape.filter(|_| metrics_server.is_none());
        let server = HttpServer::new(move || {
            // Runs on each worker's thread as it starts.
            if let Some(pg) = &pg {
                pg.pin_thread();
            }
            let mut app = App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(body_limit))
                .wrap(actix_web::middleware::from_fn(crate::middleware::cors_and_errors))
                .configure(routes::configure);
            if let Some(scrape) = &main_scrape {
                app = app.app_data(scrape.clone()).configure(crate::monitoring::configure);
            }
            app
        })
        .workers(workers)
        .listen(listener)?
        .shutdown_timeout(settings.shutdown_grace_secs)
        .run();

        let (delivery_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = sesame.clone();
        let poll = Duration::from_millis(settings.delivery.poll_ms.max(10));
        let delivery = tokio::spawn(async move {
            worker
                .run_delivery(poll, async move {
                    let _ = stopped.await;
                })
                .await;
        });
        let (sweeper_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let sweeper = tokio::spawn(sesame_flows::retention::run(
            retention,
            Arc::clone(&sesame.ports.clock),
            settings.retention.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(Self {
            port,
            metrics_port,
            server,
            metrics_server,
            sesame,
            mailbox,
            delivery_stop,
            delivery,
            sweeper_stop,
            sweeper,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of `metrics_listen`, when `/metrics` has an address of its own.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    pub fn sesame(&self) -> &Sesame {
        &self.sesame
    }

    pub fn mailbox(&self) -> Arc<Mailbox> {
        Arc::clone(&self.mailbox)
    }

    /// Serves until the server stops (SIGINT/SIGTERM), then stops the delivery worker.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let metrics = self.metrics_server.map(|server| {
            let handle = server.handle();
            (handle, tokio::spawn(server))
        });
        let result = self.server.await;
        tracing::info!("HTTP server stopped: no longer accepting, in-flight requests done; stopping delivery");
        if let Some((handle, task)) = metrics {
            handle.stop(true).await;
            let _ = task.await;
        }
        let _ = self.sweeper_stop.send(());
        let _ = self.delivery_stop.send(());
        let _ = self.delivery.await;
        let _ = self.sweeper.await;
        tracing::info!("delivery worker stopped");
        result
    }
}

/// The use cases wired to the configured adapters, without an HTTP server (the admin commands
/// use this too).
#[derive(Debug)]
pub struct Wired {
    pub sesame: Sesame,
    /// The signing keys (also `sesame.ports.tokens`).
    pub keys: Arc<KeyRing>,
    pub mailbox: Arc<Mailbox>,
    /// Whether the mailbox is what delivers (so `/dev/mailbox` may be served).
    pub mailbox_delivers: bool,
    /// The Postgres store, when it is the store (HTTP workers pin their threads to it).
    pub pg: Option<PgStore>,
    /// The store's sweeper side.
    pub retention: Arc<dyn Retention>,
}

struct StorePorts {
    clients: Arc<dyn ClientStore>,
    connections: Arc<dyn ConnectionStore>,
    challenges: Arc<dyn ChallengeStore>,
    users: Arc<dyn UserStore>,
    outbox: Arc<dyn Outbox>,
    grants: Arc<dyn GrantStore>,
    audit: Arc<dyn AuditLog>,
    logins: Arc<dyn LoginStore>,
    keys: Arc<dyn KeyStore>,
    retention: Arc<dyn Retention>,
}

fn store_ports<S>(store: Arc<S>) -> StorePorts
where
    S: ClientStore
        + ConnectionStore
        + ChallengeStore
        + UserStore
        + Outbox
        + GrantStore
        + AuditLog
        + LoginStore
        + KeyStore
        + Retention
        + 'static,
{
    StorePorts {
        clients: store.clone(),
        connections: store.clone(),
        challenges: store.clone(),
        users: store.clone(),
        outbox: store.clone(),
        grants: store.clone(),
        audit: store.clone(),
        logins: store.clone(),
        keys: store.clone(),
        retention: store,
    }
}

/// Connects the adapters the settings name and builds the use cases.
///
/// # Errors
/// When a key, secret or adapter cannot be set up.
pub async fn wire(settings: &Settings, overrides: Overrides) -> anyhow::Result<Wired> {
    wire_with(settings, overrides, 0).await
}

/// As `wire`, with the Postgres pool split for `http_workers` pinned threads (0: not split).
async fn wire_with(settings: &Settings, overrides: Overrides, http_workers: usize) -> anyhow::Result<Wired> {
    let clock = overrides.clock.unwrap_or_else(|| Arc::new(SystemClock));
    let random: Arc<dyn Random> = Arc::new(OsRandom);
    let secret = server_secret(settings, &*random);
    let secrets = Secrets::new(&secret)?;
    let mut pg = None;
    let stores = match settings.store {
        StoreKind::Memory => store_ports(Arc::new(MemoryStore::new())),
        StoreKind::Postgres => {
            let db = settings.database.as_ref().context("store = \"postgres\" needs [database]")?;
            let store = PgStore::connect_sharded(&db.pg(), http_workers)?;
            pg = Some(store.clone());
            let pg = Arc::new(store);
            if db.migrate_on_start {
                let applied = pg.migrate().await.context("applying migrations")?;
                tracing::info!(?applied, "migrations applied");
            }
            let mut ports = store_ports(pg);
            if db.cache_ms > 0 {
                // Every request reads its client and connection: keep them for a few seconds.
                let ttl = Duration::from_millis(db.cache_ms);
                ports.clients = Arc::new(CachedClients::new(ports.clients, ttl));
                ports.connections = Arc::new(CachedConnections::new(ports.connections, ttl));
            }
            ports
        }
    };
    let kek = key_encryption_key(settings, &secret)?;
    let initial = configured_signing_key(settings)?;
    let refresh = Duration::from_secs(settings.signing_keys.refresh_secs);
    let keys = Arc::new(
        KeyRing::open(stores.keys.clone(), kek, Arc::clone(&clock), refresh, initial).await.context("signing keys")?,
    );
    // The replica's own limiter: the whole limiter in memory mode, the floor under Redis.
    let local = Arc::new(MemoryRateLimiter::new());
    let (limiter, replay): (Arc<dyn RateLimiter>, Arc<dyn ReplayGuard>) = match settings.rate_limit {
        LimiterKind::Memory => (local.clone(), local.clone()),
        LimiterKind::Redis => {
            let cfg = settings.redis.as_ref().context("rate_limit = \"redis\" needs [redis]")?;
            // Lazy: Sesame starts while Redis is down and behaves as `limits.fail` says until it is back.
            let l = Arc::new(RedisLimiter::connect_lazy(cfg).context("Redis settings")?);
            (l.clone(), l)
        }
    };
    let mailbox = Arc::new(Mailbox::new(Arc::clone(&clock)));
    let email: Arc<dyn EmailSender> = match (overrides.email, settings.email) {
        (Some(e), _) => e,
        (None, kind) => match kind {
            SenderKind::Ses => {
                let cfg = settings.ses.as_ref().context("email = \"ses\" needs [ses]")?;
                Arc::new(SesEmailSender::connect(cfg).await.context("Amazon SES settings")?)
            }
            _ if settings.email_enabled() => mailbox.clone(),
            _ => Arc::new(NoProvider),
        },
    };
    let sms: Arc<dyn SmsSender> = match (overrides.sms, settings.sms) {
        (Some(s), _) => s,
        (None, kind) => match kind {
            SenderKind::Sns => {
                let cfg = settings.sns.as_ref().context("sms = \"sns\" needs [sns]")?;
                Arc::new(SnsSmsSender::connect(cfg).await.context("Amazon SNS settings")?)
            }
            _ if settings.sms_enabled() => mailbox.clone(),
            _ => Arc::new(NoProvider),
        },
    };
    if settings.mailbox_delivers() && !settings.is_embedded_default() {
        tracing::warn!(
            "dev_mailbox = true: codes for the mailbox channels are published at GET /dev/mailbox; never do this in production"
        );
    }
    let ports = Ports {
        clients: stores.clients,
        connections: stores.connections,
        challenges: stores.challenges,
        users: stores.users,
        outbox: stores.outbox,
        grants: stores.grants,
        audit: stores.audit,
        logins: stores.logins,
        tokens: keys.clone(),
        assertions: Arc::new(sesame_jwt::AssertionVerifier),
        limiter,
        floor_limiter: local,
        replay,
        email,
        sms,
        clock,
        random,
    };
    let sesame = Sesame::new(ports, secrets, flow_settings(settings)?);
    Ok(Wired { sesame, keys, mailbox, mailbox_delivers: settings.mailbox_delivers(), pg, retention: stores.retention })
}

/// The sender of a channel that has no provider: starts on it are refused before anything is
/// stored (`FlowSettings::email_enabled`/`sms_enabled`), so this only ever sees a message left
/// in a durable outbox from before the change, and gives it up.
#[derive(Debug)]
struct NoProvider;

#[async_trait::async_trait]
impl EmailSender for NoProvider {
    async fn send(
        &self,
        _: &sesame_ports::OutgoingEmail,
    ) -> Result<sesame_ports::DeliveryReceipt, sesame_ports::SendError> {
        Err(sesame_ports::SendError::Rejected("no email provider is configured".into()))
    }
}

#[async_trait::async_trait]
impl SmsSender for NoProvider {
    async fn send(
        &self,
        _: &sesame_ports::OutgoingSms,
    ) -> Result<sesame_ports::DeliveryReceipt, sesame_ports::SendError> {
        Err(sesame_ports::SendError::Rejected("no SMS provider is configured".into()))
    }
}

fn server_secret(settings: &Settings, random: &dyn Random) -> Vec<u8> {
    if settings.server_secret.is_empty() {
        let mut secret = vec![0u8; 32];
        random.fill(&mut secret);
        tracing::warn!(
            "no server_secret configured: generated one for this process; codes and tokens do not survive a restart"
        );
        secret
    } else {
        settings.server_secret.as_bytes().to_vec()
    }
}

/// The configured key-encryption key, or one derived from the server secret with HKDF-SHA-256
/// (RFC 5869; salt `sesame`, info `sesame/kek/v2`). Keys sealed under the v1 derivation
/// (HMAC-SHA-256 of the label `sesame/kek/v1`) still open; new ones are sealed under v2.
fn key_encryption_key(settings: &Settings, server_secret: &[u8]) -> anyhow::Result<KeyEncryptionKey> {
    use aws_lc_rs::hkdf;
    use base64::Engine as _;
    if settings.signing_keys.kek.is_empty() {
        let mut derived = [0u8; 32];
        hkdf::Salt::new(hkdf::HKDF_SHA256, b"sesame")
            .extract(server_secret)
            .expand(&[b"sesame/kek/v2"], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut derived))
            .map_err(|_| anyhow::anyhow!("deriving the key-encryption key"))?;
        let root = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, server_secret);
        let v1 = KeyEncryptionKey::new(aws_lc_rs::hmac::sign(&root, b"sesame/kek/v1").as_ref())?;
        Ok(KeyEncryptionKey::new(&derived)?.also_opening(v1))
    } else {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(settings.signing_keys.kek.trim())
            .context("signing_keys.kek is not base64")?;
        KeyEncryptionKey::new(&bytes).context("signing_keys.kek")
    }
}

/// The key of `signing_key_path`, which becomes the active key of an empty store.
fn configured_signing_key(settings: &Settings) -> anyhow::Result<Option<RsaSigningKey>> {
    if settings.signing_key_path.is_empty() {
        return Ok(None);
    }
    let pem = std::fs::read_to_string(&settings.signing_key_path)
        .with_context(|| format!("reading signing key {}", settings.signing_key_path))?;
    let key = RsaSigningKey::from_pem(&pem).with_context(|| format!("signing key {}", settings.signing_key_path))?;
    tracing::info!(kid = key.kid(), "signing key loaded from signing_key_path");
    Ok(Some(key))
}

fn flow_settings(settings: &Settings) -> anyhow::Result<FlowSettings> {
    let mut flow = FlowSettings::new(settings.issuer.clone());
    flow.id_token_lifetime = Duration::from_secs(settings.tokens.id_token_lifetime_secs);
    flow.access_token_lifetime = Duration::from_secs(settings.tokens.access_token_lifetime_secs);
    flow.refresh_token_lifetime = Duration::from_secs(settings.tokens.refresh_token_lifetime_secs);
    flow.apis.clone_from(&settings.apis);
    flow.limits = settings.limits.clone();
    flow.templates = Arc::new(settings.compiled_templates()?);
    flow.sms_wait_first_attempt = settings.delivery.sms_wait_first_attempt;
    flow.reveal_disabled_signup = settings.reveal_disabled_signup;
    flow.email_enabled = settings.email_enabled();
    flow.sms_enabled = settings.sms_enabled();
    let d = &settings.delivery;
    flow.delivery = RetryPolicy {
        max_attempts: d.max_attempts.max(1),
        base_backoff: Duration::from_millis(d.base_backoff_ms),
        max_backoff: Duration::from_millis(d.max_backoff_ms),
        lease: Duration::from_secs(d.lease_secs.max(1)),
        ..RetryPolicy::default()
    };
    Ok(flow)
}

/// Puts the configured connections and clients into the stores; the embedded default gets the
/// `email` and `sms` connections and one public development client.
async fn seed(sesame: &Sesame, settings: &Settings) -> anyhow::Result<()> {
    let connections: Vec<Connection> = if settings.connections.is_empty() {
        // A durable store keeps the connections it has (managed there); an empty one gets the
        // two defaults, as the embedded store always does.
        let existing = sesame.ports.connections.list().await?;
        if existing.is_empty() {
            vec![Connection::default_for(Strategy::Email), Connection::default_for(Strategy::Sms)]
        } else {
            existing
        }
    } else {
        settings
            .connections
            .iter()
            .map(|c| {
                Ok(Connection {
                    name: ConnectionName::new(c.name.clone()),
                    strategy: c.strategy,
                    policy: CodePolicy::new(c.code_length, c.code_lifetime_secs)?,
                    disable_signup: c.disable_signup,
                    limits: c.limits.clone(),
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    for c in &connections {
        sesame.ports.connections.save(c).await?;
    }
    for c in &settings.clients {
        let client = Client {
            id: ClientId::new(c.client_id.clone()),
            name: c.name.clone(),
            app_type: c.app_type,
            auth_method: c.auth_method,
            secret_hash: c.client_secret.as_deref().map(|s| sesame.hash_client_secret(s)),
            connections: c.connections.iter().cloned().map(ConnectionName::new).collect(),
            callbacks: c.callbacks.clone(),
            allowed_origins: c.allowed_origins.clone(),
            grant_types: c.grant_types.clone(),
            public_keys: c.public_keys.clone(),
            api_scopes: c.api_scopes.clone(),
            trust_forwarded_for: c.trust_forwarded_for,
            allowed_logout_urls: c.allowed_logout_urls.clone(),
            require_pkce: c.require_pkce,
        };
        sesame.ports.clients.save(&client).await?;
    }
    if settings.clients.is_empty() && settings.store == StoreKind::Memory {
        let dev = Client {
            id: ClientId::new(DEV_CLIENT_ID),
            name: "Sesame development client".into(),
            app_type: AppType::Native,
            auth_method: AuthMethod::None,
            secret_hash: None,
            connections: connections.iter().map(|c| c.name.clone()).collect(),
            callbacks: vec!["http://localhost:3000/callback".into()],
            allowed_origins: vec!["http://localhost:3000".into()],
            grant_types: vec![GrantType::PasswordlessOtp, GrantType::AuthorizationCode, GrantType::RefreshToken],
            public_keys: vec![],
            api_scopes: Default::default(),
            trust_forwarded_for: false,
            allowed_logout_urls: vec![],
            require_pkce: true,
        };
        sesame.ports.clients.save(&dev).await?;
        tracing::info!(client_id = DEV_CLIENT_ID, "embedded default: public development client ready");
    }
    Ok(())
}
