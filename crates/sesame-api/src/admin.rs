//! Operator commands: `sesame migrate` and `sesame client …`, against the configured store.

use std::io::Write as _;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use sesame_domain::{AppType, AuthMethod, Client, ClientId, ConnectionName, GrantType};
use sesame_flows::crypto::random_b64;

use crate::config::{Settings, StoreKind};
use crate::startup::{Overrides, wire};

/// `sesame client …`
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register an application. `--name` alone makes a public native client with the email
    /// and sms connections and the passwordless OTP grant.
    Create(CreateArgs),
    /// List applications.
    List(JsonFlag),
    /// Show one application.
    Show {
        client_id: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Delete an application.
    Delete {
        client_id: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Set the scopes of one API that an application's access tokens may carry (replaces that
    /// API's list; no `--scope` takes them all away).
    Scopes {
        client_id: String,
        /// The API's identifier (its `audience`), as in `[[apis]]`.
        #[arg(long)]
        api: String,
        /// A scope (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Set where `/v2/logout` may send the browser back to (replaces the list).
    LogoutUrls {
        client_id: String,
        /// A URL (repeatable; none empties the list).
        #[arg(long = "url")]
        urls: Vec<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Whether a public application must send PKCE (S256) with `response_type=code`.
    RequirePkce {
        client_id: String,
        #[arg(action = clap::ArgAction::Set)]
        required: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Make a new secret for a confidential application; the old one stops working at once.
    RotateSecret {
        client_id: String,
        #[command(flatten)]
        json: JsonFlag,
    },
}

/// `sesame connection …`
#[derive(Debug, Subcommand)]
pub enum ConnectionCommand {
    /// List the passwordless connections.
    List(JsonFlag),
    /// Show one connection's settings.
    Show {
        name: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Change a connection's settings (every replica sees them on its next start request).
    Update {
        name: String,
        /// Digits per code, 4–40.
        #[arg(long)]
        code_length: Option<u32>,
        /// Seconds a code lives, 60–600.
        #[arg(long)]
        code_lifetime_secs: Option<u64>,
        /// Only existing users may log in.
        #[arg(long)]
        disable_signup: Option<bool>,
        /// Countries SMS may go to, e.g. `US,FR` (ISO 3166); `-` takes the service-wide list.
        #[arg(long)]
        sms_countries: Option<String>,
        /// Messages per identifier, as `LIMIT/SECONDS` (e.g. `5/3600`); `-` takes the service-wide value.
        #[arg(long)]
        start_per_identifier: Option<String>,
        /// Minimum seconds between sends to one identifier; `-` takes the service-wide value.
        #[arg(long)]
        send_cooldown_secs: Option<String>,
        #[command(flatten)]
        json: JsonFlag,
    },
}

/// `sesame keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// The keys in the JWKS: the active one and those still retiring.
    List(JsonFlag),
    /// Make a new signing key active at once, on every replica within `signing_keys.refresh_secs`.
    /// The current key keeps verifying until every token it signed has expired.
    Rotate {
        /// How long the current key stays in the JWKS (default: the longest token lifetime + 5 min).
        #[arg(long)]
        retire_after_secs: Option<u64>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Take a retiring key out of the JWKS now (tokens it signed stop verifying).
    Retire {
        /// The key id. Key ids are base64url and may begin with `-`; they are still read as the id.
        #[arg(allow_hyphen_values = true)]
        kid: String,
        #[command(flatten)]
        json: JsonFlag,
    },
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AppTypeArg {
    Native,
    Spa,
    RegularWeb,
    /// A backend calling APIs (the Management API among them) with its own token.
    NonInteractive,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AuthMethodArg {
    None,
    ClientSecretPost,
    ClientSecretBasic,
    PrivateKeyJwt,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long)]
    pub name: String,
    /// Application type (spa and native are public clients).
    #[arg(long = "type", value_enum, default_value = "native")]
    pub app_type: AppTypeArg,
    /// Client authentication; defaults to none for native and spa, client_secret_post for regular_web.
    #[arg(long, value_enum)]
    pub auth_method: Option<AuthMethodArg>,
    /// An explicit client id (default: 32 random characters).
    #[arg(long)]
    pub client_id: Option<String>,
    /// Allowed callback URL (repeatable).
    #[arg(long = "callback")]
    pub callbacks: Vec<String>,
    /// Allowed web origin for CORS (repeatable).
    #[arg(long = "origin")]
    pub origins: Vec<String>,
    /// Enabled connection (repeatable; default: email and sms).
    #[arg(long = "connection")]
    pub connections: Vec<String>,
    /// A file with a public key (PEM, X.509 certificate or JWK) for private_key_jwt (repeatable).
    #[arg(long = "public-key")]
    pub public_keys: Vec<std::path::PathBuf>,
    /// Scopes of an API the client's access tokens may carry, as `API=SCOPE,SCOPE` (repeatable).
    #[arg(long = "api-scopes")]
    pub api_scopes: Vec<String>,
    /// Believe this confidential client's `auth0-forwarded-for` header as the end user's IP.
    #[arg(long)]
    pub trust_forwarded_for: bool,
    /// A grant the client may use (repeatable): `http://auth0.com/oauth/grant-type/passwordless/otp`,
    /// `authorization_code`, `refresh_token`, `implicit`, `client_credentials`. Default: by type.
    #[arg(long = "grant", value_parser = grant_arg)]
    pub grants: Vec<GrantType>,
    /// Where `/v2/logout` may send the browser back to (repeatable).
    #[arg(long = "logout-url")]
    pub logout_urls: Vec<String>,
    /// Let this public client use `response_type=code` without PKCE, as Auth0 does (see
    /// docs/migrate-from-auth0.md for the trade-off).
    #[arg(long)]
    pub no_require_pkce: bool,
    #[command(flatten)]
    pub json: JsonFlag,
}

fn grant_arg(raw: &str) -> Result<GrantType, String> {
    GrantType::parse(raw).ok_or_else(|| format!("unknown grant type {raw:?}"))
}

pub(crate) fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}").context("writing to stdout")
}

pub(crate) async fn durable(settings: &Settings) -> anyhow::Result<crate::startup::Wired> {
    if settings.store == StoreKind::Memory {
        bail!("client and key commands need a durable store: set store = \"postgres\" and [database] in the config");
    }
    wire(settings, Overrides::default()).await
}

fn connection_json(c: &sesame_domain::Connection) -> serde_json::Value {
    json!({
        "name": c.name.as_str(),
        "strategy": c.strategy.as_str(),
        "code_length": c.policy.length(),
        "code_lifetime_secs": c.policy.lifetime().as_secs(),
        "disable_signup": c.disable_signup,
        "limits": c.limits,
    })
}

/// `LIMIT/SECONDS`, or `-` for "none of the connection's own".
fn rate_arg(raw: &str) -> anyhow::Result<Option<sesame_domain::Rate>> {
    if raw == "-" {
        return Ok(None);
    }
    let (limit, secs) = raw.split_once('/').context("a rate is LIMIT/SECONDS, e.g. 5/3600")?;
    let rate = sesame_domain::Rate { limit: limit.trim().parse()?, window_secs: secs.trim().parse()? };
    anyhow::ensure!(rate.limit > 0 && rate.window_secs > 0, "a rate needs a limit and a window above zero");
    Ok(Some(rate))
}

fn show_connection(c: &sesame_domain::Connection, json: bool) -> anyhow::Result<()> {
    if json {
        return out(&connection_json(c).to_string());
    }
    out(&format!(
        "name:               {}\nstrategy:           {}\ncode_length:        {}\ncode_lifetime_secs: {}\ndisable_signup:     {}\nlimits:             {}",
        c.name.as_str(),
        c.strategy.as_str(),
        c.policy.length(),
        c.policy.lifetime().as_secs(),
        c.disable_signup,
        serde_json::to_string(&c.limits)?,
    ))
}

/// Runs one `sesame connection …` command.
///
/// # Errors
/// When the store is not durable or unreachable, the connection does not exist, or a value is
/// out of range.
pub async fn connection(settings: &Settings, command: ConnectionCommand) -> anyhow::Result<()> {
    let sesame = durable(settings).await?.sesame;
    let store = &sesame.ports.connections;
    let find = async |name: &str| {
        store.find(&ConnectionName::new(name)).await?.with_context(|| format!("no connection {name}"))
    };
    match command {
        ConnectionCommand::List(flag) => {
            let all = store.list().await?;
            if flag.json {
                return out(&serde_json::Value::Array(all.iter().map(connection_json).collect()).to_string());
            }
            for c in &all {
                out(&format!("{}  {}", c.name.as_str(), c.strategy.as_str()))?;
            }
            Ok(())
        }
        ConnectionCommand::Show { name, json } => show_connection(&find(&name).await?, json.json),
        ConnectionCommand::Update {
            name,
            code_length,
            code_lifetime_secs,
            disable_signup,
            sms_countries,
            start_per_identifier,
            send_cooldown_secs,
            json,
        } => {
            let mut c = find(&name).await?;
            let length = code_length.unwrap_or(u32::try_from(c.policy.length()).unwrap_or(6));
            let lifetime = code_lifetime_secs.unwrap_or(c.policy.lifetime().as_secs());
            c.policy = sesame_domain::CodePolicy::new(length, lifetime)?;
            if let Some(d) = disable_signup {
                c.disable_signup = d;
            }
            if let Some(list) = sms_countries {
                c.limits.sms_allowed_countries = (list != "-").then(|| {
                    list.split(',').map(|s| s.trim().to_ascii_uppercase()).filter(|s| !s.is_empty()).collect()
                });
            }
            if let Some(rate) = start_per_identifier {
                c.limits.start_per_identifier = rate_arg(&rate)?;
            }
            if let Some(secs) = send_cooldown_secs {
                c.limits.send_cooldown_secs = if secs == "-" { None } else { Some(secs.parse()?) };
            }
            store.save(&c).await?;
            show_connection(&c, json.json)
        }
    }
}

/// Runs one `sesame keys …` command.
///
/// # Errors
/// When the store is not durable or unreachable, or the key does not exist.
pub async fn keys(settings: &Settings, command: KeysCommand) -> anyhow::Result<()> {
    let keys = durable(settings).await?.keys;
    match command {
        KeysCommand::List(flag) => {
            let all = keys.list().await?;
            if flag.json {
                return out(&serde_json::to_string(&all)?);
            }
            for k in &all {
                let until = k.retire_at.map(|t| format!("  retires {t}")).unwrap_or_default();
                out(&format!("{}  {}  {}{until}", k.kid, k.alg, k.state))?;
            }
            Ok(())
        }
        KeysCommand::Rotate { retire_after_secs, json } => {
            let t = &settings.tokens;
            let default = t.id_token_lifetime_secs.max(t.access_token_lifetime_secs) + 300;
            let secs = i64::try_from(retire_after_secs.unwrap_or(default)).unwrap_or(i64::MAX / 2);
            let until = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
            let kid = keys.rotate(until).await?;
            if json.json { out(&json!({"active": kid}).to_string()) } else { out(&format!("active key: {kid}")) }
        }
        KeysCommand::Retire { kid, json } => {
            if !keys.retire(&kid).await? {
                bail!("no retiring key {kid} (the active key cannot be retired; rotate first)");
            }
            if json.json { out(&json!({"retired": kid}).to_string()) } else { out(&format!("retired {kid}")) }
        }
    }
}

/// `sesame worker`: delivers the outbox until SIGINT/SIGTERM; a batch in flight is finished.
///
/// # Errors
/// When the adapters cannot be set up.
pub async fn worker(settings: &Settings) -> anyhow::Result<()> {
    if settings.store == StoreKind::Memory {
        bail!("a separate worker needs a shared store: set store = \"postgres\"");
    }
    let wired = wire(settings, Overrides::default()).await?;
    let sesame = wired.sesame;
    tracing::info!("delivery worker running");
    let poll = std::time::Duration::from_millis(settings.delivery.poll_ms.max(10));
    // One signal stops both: the sweeper's share of it is a watch.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let sweeper = tokio::spawn(sesame_flows::retention::run(
        wired.retention,
        std::sync::Arc::clone(&sesame.ports.clock),
        settings.retention.clone(),
        async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|s| *s).await;
        },
    ));
    sesame
        .run_delivery(poll, async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        })
        .await;
    let _ = sweeper.await;
    tracing::info!("delivery worker stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// `--api-scopes API=SCOPE,SCOPE` values.
fn api_scopes_arg(
    settings: &Settings,
    raw: &[String],
) -> anyhow::Result<std::collections::BTreeMap<String, Vec<String>>> {
    let mut map = std::collections::BTreeMap::new();
    for entry in raw {
        let (api, scopes) = entry.rsplit_once('=').context("--api-scopes is API=SCOPE,SCOPE")?;
        if !settings.api_known(api) {
            bail!(
                "no API {api:?} in [[apis]] of the config (nor the Management API, {})",
                settings.management_audience()
            );
        }
        let scopes: Vec<String> =
            scopes.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
        map.insert(api.to_owned(), scopes);
    }
    Ok(map)
}

/// `sesame migrate`: applies pending migrations.
///
/// # Errors
/// When the store is not Postgres, or a migration fails.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let db = settings.database.as_ref().context("migrate needs store = \"postgres\" and a [database] section")?;
    let applied = sesame_postgres::PgStore::connect(&db.pg())?.migrate().await?;
    if applied.is_empty() { out("database is up to date") } else { out(&format!("applied: {}", applied.join(", "))) }
}

fn client_json(c: &Client, secret: Option<&str>) -> serde_json::Value {
    let mut v = json!({
        "client_id": c.id.as_str(),
        "name": c.name,
        "app_type": c.app_type.as_str(),
        "token_endpoint_auth_method": c.auth_method.as_str(),
        "connections": c.connections.iter().map(ConnectionName::as_str).collect::<Vec<_>>(),
        "callbacks": c.callbacks,
        "allowed_origins": c.allowed_origins,
        "grant_types": c.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "public_keys": c.public_keys.len(),
        "api_scopes": c.api_scopes,
        "trust_forwarded_for": c.trust_forwarded_for,
        "allowed_logout_urls": c.allowed_logout_urls,
        "require_pkce": c.require_pkce,
    });
    if let Some(s) = secret {
        v["client_secret"] = json!(s);
    }
    v
}

fn client_text(c: &Client, secret: Option<&str>) -> String {
    let list = |v: &[String]| if v.is_empty() { "-".to_owned() } else { v.join(", ") };
    let mut text = format!(
        "client_id:    {}\nname:         {}\ntype:         {}\nauth_method:  {}\nconnections:  {}\ncallbacks:    {}\norigins:      {}\ngrant_types:  {}",
        c.id.as_str(),
        c.name,
        c.app_type.as_str(),
        c.auth_method.as_str(),
        list(&c.connections.iter().map(|n| n.0.clone()).collect::<Vec<_>>()),
        list(&c.callbacks),
        list(&c.allowed_origins),
        list(&c.grant_types.iter().map(|g| g.as_str().to_owned()).collect::<Vec<_>>()),
    );
    text.push_str(&format!("\nlogout_urls:  {}", list(&c.allowed_logout_urls)));
    if let Some(s) = secret {
        text.push_str(&format!("\nclient_secret: {s}\n(shown once: it is stored hashed and cannot be read back)"));
    }
    text
}

fn show(c: &Client, secret: Option<&str>, json: bool) -> anyhow::Result<()> {
    if json { out(&client_json(c, secret).to_string()) } else { out(&client_text(c, secret)) }
}

/// Runs one `sesame client …` command.
///
/// # Errors
/// When the store is not durable or unreachable, or the client does not exist.
pub async fn client(settings: &Settings, command: ClientCommand) -> anyhow::Result<()> {
    let sesame = durable(settings).await?.sesame;
    let clients = &sesame.ports.clients;
    let random = &*sesame.ports.random;
    match command {
        ClientCommand::Create(args) => {
            let app_type = match args.app_type {
                AppTypeArg::Native => AppType::Native,
                AppTypeArg::Spa => AppType::Spa,
                AppTypeArg::RegularWeb => AppType::RegularWeb,
                AppTypeArg::NonInteractive => AppType::NonInteractive,
            };
            let auth_method = match (args.auth_method, app_type) {
                (Some(AuthMethodArg::None), _) | (None, AppType::Native | AppType::Spa) => AuthMethod::None,
                (Some(AuthMethodArg::ClientSecretPost), _) | (None, _) => AuthMethod::ClientSecretPost,
                (Some(AuthMethodArg::ClientSecretBasic), _) => AuthMethod::ClientSecretBasic,
                (Some(AuthMethodArg::PrivateKeyJwt), _) => AuthMethod::PrivateKeyJwt,
            };
            if matches!(app_type, AppType::Native | AppType::Spa) && auth_method != AuthMethod::None {
                bail!("a {} client is public: it cannot keep a secret (use --type regular-web)", app_type.as_str());
            }
            let mut public_keys = Vec::new();
            for path in &args.public_keys {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                sesame_jwt::ClientPublicKey::parse_all(&text)
                    .map_err(|e| anyhow::anyhow!("{}: not a usable public key: {e}", path.display()))?;
                public_keys.push(text);
            }
            match (auth_method, public_keys.is_empty()) {
                (AuthMethod::PrivateKeyJwt, true) => bail!("private_key_jwt needs at least one --public-key"),
                (AuthMethod::PrivateKeyJwt, false) | (_, true) => {}
                (_, false) => bail!("--public-key is only for --auth-method private-key-jwt"),
            }
            let secret = matches!(auth_method, AuthMethod::ClientSecretPost | AuthMethod::ClientSecretBasic)
                .then(|| random_b64(random, 48));
            // Hex: a client id never starts with '-' (a shell flag) or holds '_' or '/'.
            let id = args.client_id.unwrap_or_else(|| {
                let mut bytes = [0u8; 16];
                random.fill(&mut bytes);
                hex::encode(bytes)
            });
            let connections =
                if args.connections.is_empty() { vec!["email".into(), "sms".into()] } else { args.connections };
            // SPAs may not use the OTP grant (Auth0): they log in through the browser flows.
            let grant_types = match app_type {
                _ if !args.grants.is_empty() => args.grants,
                AppType::Spa => vec![GrantType::AuthorizationCode],
                AppType::NonInteractive => vec![GrantType::ClientCredentials],
                _ => vec![GrantType::PasswordlessOtp, GrantType::RefreshToken],
            };
            if grant_types.contains(&GrantType::ClientCredentials) && auth_method == AuthMethod::None {
                bail!("client_credentials is only for confidential clients (give --auth-method)");
            }
            let client = Client {
                id: ClientId::new(id.clone()),
                name: args.name,
                app_type,
                auth_method,
                secret_hash: secret.as_deref().map(|s| sesame.hash_client_secret(s)),
                connections: connections.into_iter().map(ConnectionName::new).collect(),
                callbacks: args.callbacks,
                allowed_origins: args.origins,
                grant_types,
                public_keys,
                api_scopes: api_scopes_arg(settings, &args.api_scopes)?,
                trust_forwarded_for: args.trust_forwarded_for,
                allowed_logout_urls: args.logout_urls,
                require_pkce: !args.no_require_pkce,
            };
            if client.trust_forwarded_for && !client.is_confidential() {
                bail!("--trust-forwarded-for is only for confidential clients (a public one proves nothing)");
            }
            if clients.find(&client.id).await?.is_some() {
                bail!("a client with id {id} exists already");
            }
            clients.save(&client).await?;
            show(&client, secret.as_deref(), args.json.json)
        }
        ClientCommand::List(flag) => {
            let all = clients.list().await?;
            if flag.json {
                out(&serde_json::Value::Array(all.iter().map(|c| client_json(c, None)).collect()).to_string())
            } else if all.is_empty() {
                out("no clients")
            } else {
                for c in &all {
                    out(&format!(
                        "{}  {}  {}  {}",
                        c.id.as_str(),
                        c.app_type.as_str(),
                        c.auth_method.as_str(),
                        c.name
                    ))?;
                }
                Ok(())
            }
        }
        ClientCommand::Show { client_id, json } => {
            let c = clients
                .find(&ClientId::new(client_id.clone()))
                .await?
                .with_context(|| format!("no client {client_id}"))?;
            show(&c, None, json.json)
        }
        ClientCommand::Delete { client_id, json } => {
            if !clients.delete(&ClientId::new(client_id.clone())).await? {
                bail!("no client {client_id}");
            }
            if json.json {
                out(&json!({"deleted": client_id}).to_string())
            } else {
                out(&format!("deleted {client_id}"))
            }
        }
        ClientCommand::Scopes { client_id, api, scopes, json } => {
            let mut c = clients
                .find(&ClientId::new(client_id.clone()))
                .await?
                .with_context(|| format!("no client {client_id}"))?;
            if !settings.api_known(&api) {
                bail!(
                    "no API {api:?} in [[apis]] of the config (nor the Management API, {})",
                    settings.management_audience()
                );
            }
            if scopes.is_empty() {
                c.api_scopes.remove(&api);
            } else {
                c.api_scopes.insert(api, scopes);
            }
            clients.save(&c).await?;
            show(&c, None, json.json)
        }
        ClientCommand::LogoutUrls { client_id, urls, json } => {
            let mut c = clients
                .find(&ClientId::new(client_id.clone()))
                .await?
                .with_context(|| format!("no client {client_id}"))?;
            c.allowed_logout_urls = urls;
            clients.save(&c).await?;
            show(&c, None, json.json)
        }
        ClientCommand::RequirePkce { client_id, required, json } => {
            let mut c = clients
                .find(&ClientId::new(client_id.clone()))
                .await?
                .with_context(|| format!("no client {client_id}"))?;
            c.require_pkce = required;
            clients.save(&c).await?;
            show(&c, None, json.json)
        }
        ClientCommand::RotateSecret { client_id, json } => {
            let mut c = clients
                .find(&ClientId::new(client_id.clone()))
                .await?
                .with_context(|| format!("no client {client_id}"))?;
            if !matches!(c.auth_method, AuthMethod::ClientSecretPost | AuthMethod::ClientSecretBasic) {
                bail!("client {client_id} authenticates with {}: it has no secret", c.auth_method.as_str());
            }
            let secret = random_b64(random, 48);
            c.secret_hash = Some(sesame.hash_client_secret(&secret));
            clients.save(&c).await?;
            show(&c, Some(&secret), json.json)
        }
    }
}
