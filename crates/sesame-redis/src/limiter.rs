use std::future::Future;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use async_trait::async_trait;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, TlsCertificates, Value};
use sesame_ports::{LimitDecision, LimitError, LimitRule, RateLimiter, ReplayGuard};
use time::OffsetDateTime;

use crate::RedisConfig;
use crate::gcra::{self, Plan};

/// The script every check runs: GCRA over all the rules of one request, all or nothing.
const GCRA_LUA: &str = include_str!("gcra.lua");

/// The script every replay-guard call runs: first use wins, on the caller's clock.
const REPLAY_LUA: &str = include_str!("replay.lua");

/// Longest a replay-guard entry is kept: far beyond any assertion's lifetime, and well inside
/// what `PX` accepts.
const MAX_REMEMBER_MS: i128 = 100 * 365 * 86_400 * 1_000;

/// One Redis server (or a primary behind a failover endpoint), or a Redis Cluster: both
/// multiplexed, both reconnecting by themselves after Redis comes back.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    /// Slots are learnt from the seed node and followed through `MOVED`/`ASK`; every key of one
    /// script shares a hash tag, so a check is still one round trip to one node.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// [`RateLimiter`] and [`ReplayGuard`] over Redis, shared by every replica that points at the
/// same Redis and key prefix. Cheap to clone: clones share one multiplexed connection, which
/// reconnects by itself after Redis comes back.
#[derive(Clone)]
pub struct RedisLimiter {
    conn: Conn,
    gcra: Script,
    replay: Script,
    /// `{<prefix>rl}:`, put before every bucket key: the hash tag keeps all buckets in one slot.
    bucket_prefix: String,
    /// `<prefix>jti:`, put before every replay-guard key.
    jti_prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("bucket_prefix", &self.bucket_prefix)
            .field("jti_prefix", &self.jti_prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// Connects and loads the scripts, so that startup fails on a wrong URL or an unreachable
    /// Redis and the first call is already a single `EVALSHA`.
    ///
    /// # Errors
    /// A bad configuration, or Redis not answering within `timeout_ms`.
    pub async fn connect(config: &RedisConfig) -> anyhow::Result<Self> {
        let limiter = Self::connect_lazy(config)?;
        let mut conn = limiter.conn.clone();
        for script in [&limiter.gcra, &limiter.replay] {
            within(limiter.timeout, script.load_async(&mut conn))
                .await
                .with_context(|| format!("loading the limiter's scripts into Redis ({config:?})"))?;
        }
        Ok(limiter)
    }

    /// Builds the limiter without touching Redis: it connects on first use, so Sesame can start
    /// while Redis is down (each call then fails within `timeout_ms`) and recovers when it is up.
    /// Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// A bad configuration (URL, prefix, zero timeout), or no Tokio runtime.
    pub fn connect_lazy(config: &RedisConfig) -> anyhow::Result<Self> {
        if config.key_prefix.contains(['{', '}']) {
            bail!("redis.key_prefix may not contain '{{' or '}}': it goes inside a hash tag");
        }
        if config.timeout_ms == 0 {
            bail!("redis.timeout_ms must be at least 1");
        }
        if tokio::runtime::Handle::try_current().is_err() {
            bail!("the Redis limiter needs a Tokio runtime");
        }
        if config.url.starts_with("rediss://") {
            // rustls needs a process-wide provider; an earlier one (the AWS SDK's) stays.
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        let certs = if config.ca_file.is_empty() {
            None
        } else {
            anyhow::ensure!(config.url.starts_with("rediss://"), "redis.ca_file is set but redis.url is not rediss://");
            let root_cert =
                std::fs::read(&config.ca_file).with_context(|| format!("reading redis.ca_file {}", config.ca_file))?;
            Some(TlsCertificates { client_tls: None, root_cert: Some(root_cert) })
        };
        let timeout = Duration::from_millis(config.timeout_ms);
        let conn = if config.cluster { cluster(config, certs, timeout)? } else { single(config, certs, timeout)? };
        Ok(Self {
            conn,
            gcra: Script::new(GCRA_LUA),
            replay: Script::new(REPLAY_LUA),
            bucket_prefix: format!("{{{}rl}}:", config.key_prefix),
            jti_prefix: format!("{}jti:", config.key_prefix),
            timeout,
        })
    }

    /// Whether this limiter speaks the cluster protocol (`[redis] cluster = true`).
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    /// The Redis key of a bucket (for tests and operators).
    pub fn bucket_key(&self, key: &str) -> String {
        format!("{}{key}", self.bucket_prefix)
    }

    /// The Redis key of a replay-guard entry (for tests and operators).
    pub fn replay_key(&self, key: &str) -> String {
        format!("{}{key}", self.jti_prefix)
    }

    async fn run(&self, rules: &[LimitRule], now_ns: i128) -> anyhow::Result<LimitDecision> {
        let plans: Vec<Plan> = rules.iter().map(Plan::new).collect();
        let (secs, nanos) = gcra::split(now_ns);
        let mut call = self.gcra.prepare_invoke();
        call.arg(secs).arg(nanos);
        for (rule, plan) in rules.iter().zip(&plans) {
            call.key(self.bucket_key(&rule.key)).arg(plan.window).arg(plan.take).arg(u8::from(plan.writes));
        }
        let mut conn = self.conn.clone();
        let answer: Vec<i128> = within(self.timeout, call.invoke_async(&mut conn)).await?;
        let Some((&taken, offsets)) = answer.split_first() else {
            bail!("the rate-limit script returned nothing");
        };
        if offsets.len() != plans.len() {
            bail!("the rate-limit script returned {} offsets for {} rules", offsets.len(), plans.len());
        }
        let verdicts: Vec<_> = plans.iter().zip(offsets).map(|(p, &offset)| p.verdict(offset, now_ns)).collect();
        if (taken == 1) != verdicts.iter().all(|v| v.allowed) {
            bail!("the rate-limit script took tokens that this build would refuse, or the reverse");
        }
        Ok(gcra::decide(&verdicts, now_ns))
    }
}

fn single(config: &RedisConfig, certs: Option<TlsCertificates>, timeout: Duration) -> anyhow::Result<Conn> {
    let client = match certs {
        None => redis::Client::open(config.url.as_str()).context("redis.url is not a Redis URL")?,
        Some(certs) => {
            redis::Client::build_with_tls(config.url.as_str(), certs).context("redis.url or redis.ca_file")?
        }
    };
    // No retries inside a call: a call fails within its timeout, and the next call starts a
    // fresh connection attempt, so an outage costs each request at most `timeout_ms`.
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_number_of_retries(0);
    let conn =
        ConnectionManager::new_lazy_with_config(client, manager_config).context("setting up the Redis connection")?;
    Ok(Conn::Single(conn))
}

/// A cluster client seeded by `url` (ElastiCache's configuration endpoint): TLS, the CA and the
/// password of the seed apply to every node it learns of. It connects in the background, so
/// Sesame starts while the cluster is down; redirects (`MOVED`, `ASK`) are retried inside the
/// call, which `timeout_ms` still bounds as a whole.
fn cluster(config: &RedisConfig, certs: Option<TlsCertificates>, timeout: Duration) -> anyhow::Result<Conn> {
    let mut builder = ClusterClientBuilder::new([config.url.as_str()]);
    if let Some(certs) = certs {
        builder = builder.certs(certs);
    }
    let client = builder.build().context("redis.url (cluster seed) or redis.ca_file")?;
    let cluster_config = ClusterConfig::new().set_connection_timeout(timeout).set_response_timeout(timeout);
    Ok(Conn::Cluster(client.get_pending_async_connection_with_config(cluster_config)))
}

/// Bounds a whole Redis call (connecting, `NOSCRIPT` reload included) by `timeout`.
async fn within<T>(timeout: Duration, call: impl Future<Output = redis::RedisResult<T>>) -> anyhow::Result<T> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(anyhow::Error::from),
        Err(_) => Err(anyhow!("Redis did not answer within {} ms", timeout.as_millis())),
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    #[tracing::instrument(name = "redis.rate_limit", skip_all, fields(rules = rules.len()))]
    async fn check(&self, rules: &[LimitRule], now: OffsetDateTime) -> Result<LimitDecision, LimitError> {
        let now_ns = now.unix_timestamp_nanos();
        if rules.is_empty() {
            return Ok(gcra::decide(&[], now_ns));
        }
        self.run(rules, now_ns).await.context("checking rate limits in Redis").map_err(LimitError)
    }

    async fn ping(&self) -> Result<(), LimitError> {
        let mut conn = self.conn.clone();
        let pong: String = within(self.timeout, redis::cmd("PING").query_async(&mut conn))
            .await
            .context("pinging Redis")
            .map_err(LimitError)?;
        if pong == "PONG" { Ok(()) } else { Err(LimitError(anyhow!("Redis answered PING with {pong:?}"))) }
    }
}

#[async_trait]
impl ReplayGuard for RedisLimiter {
    #[tracing::instrument(name = "redis.replay_guard", skip_all)]
    async fn first_use(&self, key: &str, until: OffsetDateTime, now: OffsetDateTime) -> Result<bool, LimitError> {
        // Redis expires the entry on its own clock: give it the lifetime left on the caller's,
        // rounded up so it never goes early; the script judges expiry on the caller's clock.
        let (now_ns, until_ns) = (now.unix_timestamp_nanos(), until.unix_timestamp_nanos());
        let left_ms = ((until_ns - now_ns).max(0) + 999_999) / 1_000_000;
        let ((now_s, now_n), (until_s, until_n)) = (gcra::split(now_ns), gcra::split(until_ns));
        let mut call = self.replay.key(self.replay_key(key));
        call.arg(now_s).arg(now_n).arg(until_s).arg(until_n).arg(left_ms.clamp(1, MAX_REMEMBER_MS));
        let mut conn = self.conn.clone();
        let first: i64 = within(self.timeout, call.invoke_async(&mut conn))
            .await
            .context("recording a single-use value in Redis")
            .map_err(LimitError)?;
        Ok(first == 1)
    }
}
