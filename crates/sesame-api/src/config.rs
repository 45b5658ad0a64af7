//! Settings: defaults compiled in → an optional TOML file (`--config`) → `SESAME__SECTION__KEY`
//! environment variables.

use std::path::Path;

use anyhow::Context as _;
use serde::Deserialize;

/// Which adapter serves a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    Memory,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimiterKind {
    Memory,
    Redis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SenderKind {
    Mailbox,
    Ses,
    Sns,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Compact,
    Json,
}

/// Everything `sesame serve` reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The public issuer URL, with a trailing slash. Tokens carry it as `iss`; links start with it.
    pub issuer: String,
    /// `host:port` to bind; port 0 takes any free port.
    pub listen: String,
    /// At least 32 bytes. Keys the hashes of codes and secrets and seals the outbox. Empty: a
    /// random one is made at start (fine for the embedded default, whose state dies with it).
    #[serde(default)]
    pub server_secret: String,
    /// A PEM file with the RS256 signing key. Empty: a key is generated at start.
    #[serde(default)]
    pub signing_key_path: String,
    pub store: StoreKind,
    pub rate_limit: LimiterKind,
    pub email: SenderKind,
    pub sms: SenderKind,
    /// Whether the development mailbox may stand in for a provider (and `GET /dev/mailbox`
    /// publish what it holds). Unset: only in the embedded default (`store`, `email` and `sms`
    /// all at their defaults); anywhere else a channel whose provider is `mailbox` is disabled
    /// unless this is `true`. Also read as `allow_dev_mailbox`.
    #[serde(default, alias = "allow_dev_mailbox")]
    pub dev_mailbox: Option<bool>,
    pub log_format: LogFormat,
    /// Whether Prometheus metrics are recorded and served at `GET /metrics`.
    #[serde(default = "yes")]
    pub metrics: bool,
    /// `host:port` where `GET /metrics` is served instead of `listen`, so it need not be
    /// public. Empty: on `listen`.
    #[serde(default)]
    pub metrics_listen: String,
    /// On SIGTERM/SIGINT, how long in-flight requests may run before their connections close.
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// With a connection's `disable_signup`, answer a start for an unknown identifier as Auth0
    /// does (400 `bad.connection` "Public signup is disabled"), which tells anyone whether an
    /// address has an account. Off: the same 200 as for a user, and nothing is sent.
    #[serde(default)]
    pub reveal_disabled_signup: bool,
    /// Amazon SES, for `email = "ses"`.
    #[serde(default)]
    pub ses: Option<sesame_ses::SesConfig>,
    /// Amazon SNS, for `sms = "sns"`.
    #[serde(default)]
    pub sns: Option<sesame_sns::SnsConfig>,
    /// Message templates per connection, client and language (built-in: en, fr, de, es).
    #[serde(default)]
    pub templates: sesame_flows::templates::TemplateSettings,
    /// Redis, for `rate_limit = "redis"`.
    #[serde(default)]
    pub redis: Option<sesame_redis::RedisConfig>,
    pub magic_link: MagicLinkSettings,
    /// The hosted login page behind `GET /authorize`.
    #[serde(default)]
    pub hosted: HostedSettings,
    pub signing_keys: SigningKeySettings,
    /// Rate limits (defaults: docs/configuration.md).
    #[serde(default)]
    pub limits: sesame_flows::limits::LimitSettings,
    /// What the sweeper deletes, and when (docs/operations.md).
    #[serde(default)]
    pub retention: sesame_flows::retention::RetentionSettings,
    /// Proxies (IPs or CIDRs, e.g. the load balancer's subnet) whose `X-Forwarded-For` is
    /// believed. Empty: the client IP is the socket's peer.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Postgres, for `store = "postgres"`.
    #[serde(default)]
    pub database: Option<DatabaseSettings>,
    pub tokens: TokenSettings,
    pub delivery: DeliverySettings,
    #[serde(default)]
    pub apis: Vec<sesame_flows::Api>,
    #[serde(default)]
    pub connections: Vec<ConnectionSettings>,
    #[serde(default)]
    pub clients: Vec<ClientSettings>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://user:password@host:5432/database`, with `sslmode` / `sslrootcert` for TLS.
    pub url: String,
    /// CA bundle for `sslmode=verify-ca|verify-full` (RDS: `global-bundle.pem`).
    #[serde(default)]
    pub ca_file: String,
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// How long a request waits for a connection before answering 503.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// The planner's random-read cost on Sesame's connections (SSD storage: 1.1).
    #[serde(default = "default_random_page_cost")]
    pub random_page_cost: f64,
    /// Apply pending migrations when `serve` starts (otherwise run `sesame migrate`).
    #[serde(default)]
    pub migrate_on_start: bool,
    /// How long each replica reuses a client or connection it has read (0: read on every
    /// request). A change made elsewhere (another replica, `sesame client …`) is seen within
    /// this time.
    #[serde(default = "default_cache_ms")]
    pub cache_ms: u64,
}

fn default_pool_size() -> usize {
    16
}
fn default_statement_timeout_ms() -> u64 {
    5_000
}
fn default_connect_timeout_ms() -> u64 {
    2_000
}
fn default_random_page_cost() -> f64 {
    sesame_postgres::DEFAULT_RANDOM_PAGE_COST
}
fn default_cache_ms() -> u64 {
    5_000
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("DatabaseSettings").field("pool_size", &self.pool_size).finish_non_exhaustive()
    }
}

impl DatabaseSettings {
    pub fn pg(&self) -> sesame_postgres::PgConfig {
        sesame_postgres::PgConfig {
            url: self.url.clone(),
            ca_file: self.ca_file.clone(),
            pool_size: self.pool_size,
            statement_timeout_ms: self.statement_timeout_ms,
            connect_timeout_ms: self.connect_timeout_ms,
            random_page_cost: self.random_page_cost,
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeySettings {
    /// Base64 of 32 random bytes that encrypt private keys in the store. Empty: derived from
    /// `server_secret`.
    #[serde(default)]
    pub kek: String,
    /// How often each replica reloads the keys (a rotation reaches every replica within it).
    pub refresh_secs: u64,
}

impl std::fmt::Debug for SigningKeySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeySettings").field("refresh_secs", &self.refresh_secs).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MagicLinkSettings {
    /// Opening a link shows a confirmation page whose button completes the login, so mail
    /// scanners that prefetch links burn nothing. `false`: the GET completes at once (Auth0).
    pub confirm: bool,
}

/// The hosted login page (`GET /authorize` without a login ticket).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostedSettings {
    /// A second `/authorize` in a signed-in browser skips the code (single sign-on). `false`:
    /// every `/authorize` asks for a code, and the session lives only as long as a code.
    pub remember_login: bool,
    /// How long a hosted-login session lasts, in seconds (Auth0's default: 3 days).
    pub session_lifetime_secs: u64,
    /// Per-client looks of the page.
    pub branding: Vec<BrandingSettings>,
}

impl Default for HostedSettings {
    fn default() -> Self {
        Self { remember_login: true, session_lifetime_secs: 259_200, branding: Vec::new() }
    }
}

/// How the hosted page looks for one client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrandingSettings {
    pub client_id: String,
    /// Shown instead of the client's name.
    #[serde(default)]
    pub name: Option<String>,
    /// An https image URL (the page's CSP allows images from its origin only).
    #[serde(default)]
    pub logo_url: Option<String>,
    /// `#rrggbb`: buttons and links.
    #[serde(default)]
    pub primary_color: Option<String>,
    /// `#rrggbb`: the page background.
    #[serde(default)]
    pub background_color: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    pub id_token_lifetime_secs: u64,
    pub access_token_lifetime_secs: u64,
    pub refresh_token_lifetime_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    pub max_attempts: u32,
    pub base_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub lease_secs: u64,
    /// How often the worker looks for retries when nothing wakes it.
    pub poll_ms: u64,
    /// SMS starts wait for the first delivery attempt, so a permanent refusal by the provider
    /// answers the start with Auth0's `sms_provider_error`. Email never waits.
    pub sms_wait_first_attempt: bool,
}

/// A passwordless connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSettings {
    pub name: String,
    pub strategy: sesame_domain::Strategy,
    #[serde(default = "default_code_length")]
    pub code_length: u32,
    #[serde(default = "default_code_lifetime")]
    pub code_lifetime_secs: u64,
    #[serde(default)]
    pub disable_signup: bool,
    /// This connection's own limits (each one left out takes `[limits]`).
    #[serde(default)]
    pub limits: sesame_domain::ConnectionLimits,
}

fn default_code_length() -> u32 {
    6
}
fn default_code_lifetime() -> u64 {
    180
}

/// An application declared in the config file.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    pub client_id: String,
    pub name: String,
    #[serde(default = "default_app_type")]
    pub app_type: sesame_domain::AppType,
    #[serde(default = "default_auth_method")]
    pub auth_method: sesame_domain::AuthMethod,
    /// The secret in the clear (it is hashed at load); for confidential clients.
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default = "default_connections")]
    pub connections: Vec<String>,
    #[serde(default)]
    pub callbacks: Vec<String>,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    #[serde(default = "default_grants")]
    pub grant_types: Vec<sesame_domain::GrantType>,
    /// PEM or JWK public keys for `private_key_jwt`.
    #[serde(default)]
    pub public_keys: Vec<String>,
    /// The scopes of each API (by identifier) this client's access tokens may carry.
    #[serde(default)]
    pub api_scopes: std::collections::BTreeMap<String, Vec<String>>,
    /// Believe `auth0-forwarded-for` from this confidential client as the end user's IP.
    #[serde(default)]
    pub trust_forwarded_for: bool,
    /// Where `/v2/logout` may send the browser back to (exact match).
    #[serde(default)]
    pub allowed_logout_urls: Vec<String>,
    /// A public client must send PKCE (S256) with `response_type=code` (default true).
    #[serde(default = "yes")]
    pub require_pkce: bool,
}

impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSettings").field("client_id", &self.client_id).finish_non_exhaustive()
    }
}

fn default_shutdown_grace_secs() -> u64 {
    10
}
fn yes() -> bool {
    true
}
fn default_app_type() -> sesame_domain::AppType {
    sesame_domain::AppType::Native
}
fn default_auth_method() -> sesame_domain::AuthMethod {
    sesame_domain::AuthMethod::None
}
fn default_connections() -> Vec<String> {
    vec!["email".into(), "sms".into()]
}
fn default_grants() -> Vec<sesame_domain::GrantType> {
    use sesame_domain::GrantType;
    vec![GrantType::PasswordlessOtp, GrantType::AuthorizationCode, GrantType::RefreshToken]
}

/// The compiled-in defaults: the embedded, zero-setup configuration.
pub const DEFAULTS: &str = r#"
issuer = "http://127.0.0.1:8080/"
listen = "127.0.0.1:8080"
server_secret = ""
signing_key_path = ""
store = "memory"
rate_limit = "memory"
email = "mailbox"
sms = "mailbox"
log_format = "compact"
metrics = true
metrics_listen = ""
shutdown_grace_secs = 10
max_body_bytes = 16384
reveal_disabled_signup = false

[magic_link]
confirm = true

[signing_keys]
kek = ""
refresh_secs = 30

[tokens]
id_token_lifetime_secs = 36000
access_token_lifetime_secs = 86400
refresh_token_lifetime_secs = 2592000

[delivery]
max_attempts = 5
base_backoff_ms = 2000
max_backoff_ms = 60000
lease_secs = 30
poll_ms = 1000
sms_wait_first_attempt = true
"#;

impl Settings {
    /// Loads the layers. `file` is optional; environment variables win.
    ///
    /// # Errors
    /// When the file cannot be read, a value has the wrong type (the message names the key), or
    /// a key is unknown.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_from(file, std::env::vars())
    }

    /// As `load`, with the environment given (for tests).
    ///
    /// # Errors
    /// As `load`.
    pub fn load_from(file: Option<&Path>, env: impl Iterator<Item = (String, String)>) -> anyhow::Result<Self> {
        let mut builder =
            config::Config::builder().add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(path) = file {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        let env: std::collections::HashMap<String, String> = env.filter(|(k, _)| k.starts_with("SESAME__")).collect();
        let source = config::Environment::with_prefix("SESAME")
            .prefix_separator("__")
            .separator("__")
            .ignore_empty(true)
            .try_parsing(true)
            .source(Some(env));
        let settings: Self = builder
            .add_source(source)
            .build()
            .context("reading settings")?
            .try_deserialize()
            .context("invalid settings")?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let url = self.issuer.as_str();
        anyhow::ensure!(
            (url.starts_with("https://") || url.starts_with("http://")) && url.ends_with('/'),
            "issuer must be an http(s) URL ending in '/', got {url:?}"
        );
        anyhow::ensure!(
            self.server_secret.is_empty() || self.server_secret.len() >= sesame_flows::Secrets::MIN_LEN,
            "server_secret must be at least {} bytes",
            sesame_flows::Secrets::MIN_LEN
        );
        if !self.server_secret.is_empty() {
            check_secret_strength(&self.server_secret)?;
        }
        anyhow::ensure!(self.max_body_bytes >= 1024, "max_body_bytes must be at least 1024");
        anyhow::ensure!(
            self.rate_limit != LimiterKind::Redis || self.redis.is_some(),
            "rate_limit = \"redis\" needs a [redis] section with a url"
        );
        self.trusted_proxy_nets()?;
        anyhow::ensure!(
            matches!(self.email, SenderKind::Mailbox | SenderKind::Ses),
            "email must be \"mailbox\" or \"ses\""
        );
        anyhow::ensure!(
            matches!(self.sms, SenderKind::Mailbox | SenderKind::Sns),
            "sms must be \"mailbox\" or \"sns\""
        );
        anyhow::ensure!(self.email != SenderKind::Ses || self.ses.is_some(), "email = \"ses\" needs a [ses] section");
        anyhow::ensure!(self.sms != SenderKind::Sns || self.sns.is_some(), "sms = \"sns\" needs a [sns] section");
        for b in &self.hosted.branding {
            for (key, colour) in [("primary_color", &b.primary_color), ("background_color", &b.background_color)] {
                if let Some(c) = colour {
                    anyhow::ensure!(
                        c.len() == 7 && c.starts_with('#') && c[1..].bytes().all(|x| x.is_ascii_hexdigit()),
                        "hosted.branding {}: {key} must be #rrggbb, got {c:?}",
                        b.client_id
                    );
                }
            }
            if let Some(logo) = &b.logo_url {
                anyhow::ensure!(
                    logo.starts_with("https://") && !logo.contains(['"', '\'', '<', '>', ' ', ';']),
                    "hosted.branding {}: logo_url must be an https URL, got {logo:?}",
                    b.client_id
                );
            }
        }
        anyhow::ensure!(
            (60..=34_560_000).contains(&self.hosted.session_lifetime_secs),
            "hosted.session_lifetime_secs must be from 60 to 34560000 (400 days)"
        );
        // Templates compile now: a broken one stops the start-up, never a login.
        self.compiled_templates()?;
        if self.store == StoreKind::Postgres {
            anyhow::ensure!(self.database.is_some(), "store = \"postgres\" needs a [database] section with a url");
            // Hashes written by one process must verify in every other: a per-process secret
            // would make every stored code and client secret unusable after a restart.
            anyhow::ensure!(
                !self.server_secret.is_empty(),
                "store = \"postgres\" needs server_secret (at least 32 bytes)"
            );
        }
        for c in &self.connections {
            sesame_domain::CodePolicy::new(c.code_length, c.code_lifetime_secs)
                .with_context(|| format!("connection {:?}", c.name))?;
        }
        for a in &self.apis {
            anyhow::ensure!(
                a.identifier != self.management_audience(),
                "[[apis]] {:?} is the Management API, which is built in: remove it from [[apis]]",
                a.identifier
            );
        }
        for c in &self.clients {
            anyhow::ensure!(
                c.auth_method == sesame_domain::AuthMethod::None
                    || c.auth_method == sesame_domain::AuthMethod::PrivateKeyJwt
                    || c.client_secret.as_ref().is_some_and(|s| s.len() >= 16),
                "client {:?}: a {} client needs a client_secret of at least 16 characters",
                c.client_id,
                c.auth_method.as_str()
            );
            // A public client's requests come from the user's device: a header it sets proves
            // nothing, so it may never name the end user's IP.
            anyhow::ensure!(
                !c.trust_forwarded_for || c.auth_method != sesame_domain::AuthMethod::None,
                "client {:?}: trust_forwarded_for needs a confidential client (auth_method other than \"none\")",
                c.client_id
            );
            for api in c.api_scopes.keys() {
                anyhow::ensure!(
                    self.api_known(api),
                    "client {:?}: api_scopes names {api:?}, which is not an [[apis]] identifier (nor the Management API, {})",
                    c.client_id,
                    self.management_audience()
                );
            }
            anyhow::ensure!(
                !c.grant_types.contains(&sesame_domain::GrantType::ClientCredentials)
                    || c.auth_method != sesame_domain::AuthMethod::None,
                "client {:?}: client_credentials needs a confidential client (auth_method other than \"none\")",
                c.client_id
            );
        }
        Ok(())
    }

    /// Auth0's Management API audience, `https://{domain}/api/v2/`: built in, never in `[[apis]]`.
    pub fn management_audience(&self) -> String {
        let issuer = if self.issuer.ends_with('/') { self.issuer.clone() } else { format!("{}/", self.issuer) };
        format!("{issuer}api/v2/")
    }

    /// Whether `api` is an audience tokens may be granted for: an `[[apis]]` one or the
    /// Management API.
    pub fn api_known(&self, api: &str) -> bool {
        api == self.management_audience() || self.apis.iter().any(|a| a.identifier == api)
    }

    /// What `serve` refuses beyond `validate`: a production-shaped configuration that is unsafe
    /// or cannot log anyone in. Each error is one line naming the key to change.
    ///
    /// # Errors
    /// An `http://` issuer on a listen address that is not loopback (tokens and links would
    /// travel in clear); Postgres with both channels on the mailbox and no `dev_mailbox`
    /// (nothing could deliver a code).
    pub fn check_serve(&self) -> anyhow::Result<()> {
        let loopback = listen_is_loopback(&self.listen);
        anyhow::ensure!(
            !self.issuer.starts_with("http://") || loopback,
            "issuer {:?} is http:// but listen = {:?} is not a loopback address: set issuer to the https:// URL \
             users reach (TLS ends at the load balancer), or listen on 127.0.0.1 for local use",
            self.issuer,
            self.listen
        );
        anyhow::ensure!(
            !(self.store == StoreKind::Postgres
                && self.email == SenderKind::Mailbox
                && self.sms == SenderKind::Mailbox
                && self.dev_mailbox.is_none()),
            "store = \"postgres\" with email = \"mailbox\" and sms = \"mailbox\": no code can be delivered; set \
             email = \"ses\" and/or sms = \"sns\" (or dev_mailbox = true for a test environment, never in production)"
        );
        Ok(())
    }

    /// The message templates, compiled and test-rendered.
    ///
    /// # Errors
    /// When a template does not parse or uses an unknown variable.
    pub fn compiled_templates(&self) -> anyhow::Result<sesame_flows::templates::Templates> {
        sesame_flows::templates::Templates::compile(&self.templates).context("templates")
    }

    /// The embedded default: everything in memory, both channels in the development mailbox.
    pub fn is_embedded_default(&self) -> bool {
        self.store == StoreKind::Memory && self.email == SenderKind::Mailbox && self.sms == SenderKind::Mailbox
    }

    /// Whether the development mailbox may deliver (`dev_mailbox`, else the embedded default).
    pub fn mailbox_allowed(&self) -> bool {
        self.dev_mailbox.unwrap_or_else(|| self.is_embedded_default())
    }

    /// Whether email can be sent: a real provider, or the mailbox where it is allowed.
    pub fn email_enabled(&self) -> bool {
        self.email != SenderKind::Mailbox || self.mailbox_allowed()
    }

    /// Whether SMS can be sent: a real provider, or the mailbox where it is allowed.
    pub fn sms_enabled(&self) -> bool {
        self.sms != SenderKind::Mailbox || self.mailbox_allowed()
    }

    /// Whether the development mailbox delivers anything (then `/dev/mailbox` is served).
    pub fn mailbox_delivers(&self) -> bool {
        self.mailbox_allowed() && (self.email == SenderKind::Mailbox || self.sms == SenderKind::Mailbox)
    }

    /// `trusted_proxies` parsed; a bare IP is a /32 (or /128).
    ///
    /// # Errors
    /// When an entry is neither an IP nor a CIDR.
    pub fn trusted_proxy_nets(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        self.trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .with_context(|| format!("trusted_proxies: {p:?} is not an IP address or CIDR"))
            })
            .collect()
    }

    /// The `SESAME__*` variables no setting reads, to warn about (a typo otherwise goes unseen).
    pub fn unknown_env_keys(env: impl Iterator<Item = (String, String)>) -> Vec<String> {
        const TOP: &[&str] = &[
            "ISSUER",
            "LISTEN",
            "SERVER_SECRET",
            "SIGNING_KEY_PATH",
            "STORE",
            "RATE_LIMIT",
            "EMAIL",
            "SMS",
            "DEV_MAILBOX",
            "ALLOW_DEV_MAILBOX",
            "LOG_FORMAT",
            "MAX_BODY_BYTES",
            "TOKENS",
            "DELIVERY",
        ];
        env.map(|(k, _)| k)
            .filter(|k| k.starts_with("SESAME__"))
            .filter(|k| {
                let first = k.trim_start_matches("SESAME__").split("__").next().unwrap_or("");
                !TOP.contains(&first)
            })
            .collect()
    }
}

/// Words found in example and placeholder secrets (README text, templates); a secret that holds
/// one was pasted, not generated.
const PLACEHOLDER_WORDS: &[&str] = &[
    "…",
    "...",
    "changeme",
    "change-me",
    "change_me",
    "replace",
    "placeholder",
    "random bytes",
    "secret store",
    "your-secret",
    "your_secret",
    "xxxxxxxx",
];

/// Fewest distinct bytes a generated secret of 32+ bytes has (64 hex digits have 16; 32 random
/// bytes in base64 about 27); fewer means a typed or repeated string.
const MIN_DISTINCT_SECRET_BYTES: usize = 12;

/// Refuses placeholder and low-entropy server secrets.
/// Whether `listen` binds only the loopback interface (`127.0.0.0/8`, `::1`, `localhost`).
fn listen_is_loopback(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<std::net::SocketAddr>() {
        return addr.ip().is_loopback();
    }
    listen.rsplit_once(':').is_some_and(|(host, _)| host == "localhost")
}

fn check_secret_strength(secret: &str) -> anyhow::Result<()> {
    let lower = secret.to_lowercase();
    if let Some(word) = PLACEHOLDER_WORDS.iter().find(|w| lower.contains(**w)) {
        anyhow::bail!(
            "server_secret looks like a placeholder (it contains {word:?}): set it to 32+ random bytes, \
             e.g. `openssl rand -base64 32`"
        );
    }
    let distinct = secret.bytes().collect::<std::collections::BTreeSet<u8>>().len();
    anyhow::ensure!(
        distinct >= MIN_DISTINCT_SECRET_BYTES,
        "server_secret has only {distinct} distinct characters, too few for a random secret: set it to 32+ \
         random bytes, e.g. `openssl rand -base64 32`"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn defaults_are_the_embedded_setup() {
        let s = Settings::load_from(None, env(&[])).expect("defaults load");
        assert_eq!(s.listen, "127.0.0.1:8080");
        assert_eq!(s.store, StoreKind::Memory);
        assert_eq!(s.email, SenderKind::Mailbox);
        assert!(s.clients.is_empty());
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let s = Settings::load_from(
            None,
            env(&[("SESAME__ISSUER", "https://auth.example.com/"), ("SESAME__TOKENS__ID_TOKEN_LIFETIME_SECS", "600")]),
        )
        .expect("loads");
        assert_eq!(s.issuer, "https://auth.example.com/");
        assert_eq!(s.tokens.id_token_lifetime_secs, 600);
    }

    #[test]
    fn bad_values_name_the_key() {
        let err =
            Settings::load_from(None, env(&[("SESAME__ISSUER", "https://no-slash.example")])).expect_err("refused");
        assert!(format!("{err:#}").contains("issuer"), "{err:#}");
        let err = Settings::load_from(None, env(&[("SESAME__STORE", "mongo")])).expect_err("refused");
        assert!(format!("{err:#}").contains("mongo"), "{err:#}");
        assert_eq!(
            Settings::unknown_env_keys(env(&[("SESAME__ISUER", "x"), ("SESAME__STORE", "memory")])),
            vec!["SESAME__ISUER"]
        );
    }

    #[test]
    fn a_config_file_declares_clients_and_connections() {
        let dir = std::env::temp_dir().join(format!("sesame-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("sesame.toml");
        std::fs::write(
            &path,
            r#"
issuer = "https://auth.example.com/"
[[connections]]
name = "email"
strategy = "email"
code_length = 8
[[clients]]
client_id = "web"
name = "Web"
app_type = "regular_web"
auth_method = "client_secret_post"
client_secret = "0123456789abcdef0123"
callbacks = ["https://app.example.com/callback"]
"#,
        )
        .expect("write");
        let s = Settings::load_from(Some(&path), env(&[])).expect("loads");
        assert_eq!(s.connections[0].code_length, 8);
        assert_eq!(s.clients[0].connections, vec!["email", "sms"]);
        std::fs::write(&path, "[[clients]]\nclient_id = \"x\"\nname = \"X\"\nauth_method = \"client_secret_post\"\n")
            .expect("write");
        assert!(
            Settings::load_from(Some(&path), env(&[])).is_err(),
            "a confidential client without a secret is refused"
        );
        std::fs::write(
            &path,
            "[[clients]]\nclient_id = \"x\"\nname = \"X\"\nauth_method = \"none\"\ntrust_forwarded_for = true\n",
        )
        .expect("write");
        let err = Settings::load_from(Some(&path), env(&[])).expect_err("a public client may not vouch for IPs");
        assert!(format!("{err:#}").contains("trust_forwarded_for"), "{err:#}");
        std::fs::write(
            &path,
            "[[apis]]\nidentifier = \"https://api.example.com/\"\n[[clients]]\nclient_id = \"x\"\nname = \"X\"\n\
             auth_method = \"none\"\napi_scopes = { \"https://api.example.com/\" = [\"read:a\"] }\n",
        )
        .expect("write");
        Settings::load_from(Some(&path), env(&[])).expect("scopes of a declared API load");
        std::fs::write(
            &path,
            "[[clients]]\nclient_id = \"x\"\nname = \"X\"\nauth_method = \"none\"\n\
             api_scopes = { \"https://typo.example.com/\" = [\"read:a\"] }\n",
        )
        .expect("write");
        let err = Settings::load_from(Some(&path), env(&[])).expect_err("scopes of an unknown API are refused");
        assert!(format!("{err:#}").contains("typo.example.com"), "{err:#}");
        std::fs::write(&path, "colour = \"blue\"\n").expect("write");
        assert!(Settings::load_from(Some(&path), env(&[])).is_err(), "unknown keys are refused");
    }
}

/// docs/configuration.md names every key `Settings` reads, in the section it belongs to: the
/// keys come from serde itself (the field list of an unknown-field error), so a new key without
/// documentation fails here.
#[cfg(test)]
mod documented {
    use serde::de::DeserializeOwned;

    const DOC: &str = include_str!("../../../docs/configuration.md");

    /// The keys a struct accepts (aliases included), as serde lists them.
    fn keys<T: DeserializeOwned>() -> Vec<String> {
        let probe = serde_json::json!({"\u{0}probe": 0});
        let Err(e) = serde_json::from_value::<T>(probe) else {
            panic!("{} accepts an unknown key", std::any::type_name::<T>());
        };
        let message = e.to_string();
        let list = message
            .split_once("expected one of ")
            .or_else(|| message.split_once("expected "))
            .map_or_else(|| panic!("unexpected serde message: {message}"), |(_, l)| l);
        list.split(", ")
            .flat_map(|k| k.split(" or "))
            .map(|k| k.trim_matches(|c: char| c == '`' || c.is_whitespace()).to_owned())
            .collect()
    }

    /// The text of the section whose heading contains `heading`, up to the next `## `.
    fn section(heading: &str) -> &'static str {
        let start = DOC
            .match_indices("\n## ")
            .map(|(i, _)| i + 1)
            .find(|&i| DOC[i..].lines().next().is_some_and(|l| l.contains(heading)))
            .unwrap_or_else(|| panic!("docs/configuration.md has no section {heading:?}"));
        let rest = &DOC[start + 3..];
        &DOC[start..start + 3 + rest.find("\n## ").unwrap_or(rest.len())]
    }

    /// In a table (`` `key` ``, `` `fail.key` ``), as a section (`[key]`, `[[templates.key]]`)
    /// or in an example (`key = …`).
    fn documented(text: &str, key: &str) -> bool {
        let word_before = |i: usize| text[..i].chars().next_back().is_some_and(|c| c.is_alphanumeric() || c == '_');
        [format!("`{key}`"), format!("`{key}."), format!(".{key}`"), format!("[{key}]"), format!(".{key}]")]
            .iter()
            .any(|p| text.contains(p.as_str()))
            || text.match_indices(&format!("{key} =")).any(|(i, _)| !word_before(i))
    }

    fn check<T: DeserializeOwned>(heading: &str, missing: &mut Vec<String>) {
        let text = section(heading);
        for key in keys::<T>() {
            if !documented(text, &key) {
                missing.push(format!("{key} (in {heading}, from {})", std::any::type_name::<T>()));
            }
        }
    }

    #[test]
    fn every_config_key_is_in_docs_configuration_md() {
        let mut missing = Vec::new();
        check::<super::Settings>("Top level", &mut missing);
        check::<super::DatabaseSettings>("`[database]`", &mut missing);
        check::<sesame_redis::RedisConfig>("`[redis]`", &mut missing);
        check::<sesame_flows::limits::LimitSettings>("`[limits]`", &mut missing);
        check::<sesame_flows::limits::FailModes>("`[limits]`", &mut missing);
        check::<sesame_flows::retention::RetentionSettings>("`[retention]`", &mut missing);
        check::<super::DeliverySettings>("`[delivery]`", &mut missing);
        check::<sesame_ses::SesConfig>("`[ses]`", &mut missing);
        check::<sesame_sns::SnsConfig>("`[sns]`", &mut missing);
        check::<super::MagicLinkSettings>("`[magic_link]`", &mut missing);
        check::<super::HostedSettings>("`[hosted]`", &mut missing);
        check::<super::BrandingSettings>("`[hosted]`", &mut missing);
        check::<sesame_flows::templates::TemplateSettings>("`[templates]`", &mut missing);
        check::<sesame_flows::templates::EmailTemplate>("`[templates]`", &mut missing);
        check::<sesame_flows::templates::SmsTemplate>("`[templates]`", &mut missing);
        check::<super::TokenSettings>("`[tokens]`", &mut missing);
        check::<super::SigningKeySettings>("`[signing_keys]`", &mut missing);
        check::<super::ConnectionSettings>("Connections, clients, APIs", &mut missing);
        check::<sesame_domain::ConnectionLimits>("Connections, clients, APIs", &mut missing);
        check::<super::ClientSettings>("Connections, clients, APIs", &mut missing);
        check::<sesame_flows::Api>("Connections, clients, APIs", &mut missing);
        assert!(missing.is_empty(), "keys missing from docs/configuration.md:\n{}", missing.join("\n"));
    }
}
