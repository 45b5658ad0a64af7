//! Postgres adapter (Diesel 2 + diesel-async over tokio-postgres: pure Rust, no libpq) for
//! ClientStore, ConnectionStore, ChallengeStore, Outbox, UserStore, GrantStore, KeyStore and
//! AuditLog. Every guarantee of the ports holds in SQL, across any number of replicas:
//!
//! - `start` is one statement writing one row: the challenge carries its sealed message
//!   (claimed by the caller when it asks) and its audit event; one round trip, one commit. The
//!   outbox is that row's delivery columns (a partial index of pending messages), and the
//!   audit listing reads the event from the row until retention moves it to `audit_events`;
//! - `check` is one `UPDATE … RETURNING` that counts the try and consumes on a match, so
//!   concurrent checks of one code serialise on the row and exactly one wins;
//! - first logins upsert with `ON CONFLICT`;
//! - outbox claims use `FOR UPDATE SKIP LOCKED` with a lease.
//!
//! Statements are written as SQL with typed binds: the atomic ones do not fit Diesel's DSL, and
//! one style for all keeps them reviewable side by side. Each is a constant run through
//! `prepared!`, so every connection prepares it once and then sends only its binds.

/// A challenge row's event columns (its start's `code_link_sent`), as a `RETURNING` or `SELECT`
/// list.
macro_rules! row_event_columns {
    () => {
        "event_at, event_kind, event_client_id, event_connection, event_identifier, event_ip, event_detail"
    };
}

/// The row's event as one `jsonb` object, the element of `prior_events` it becomes when a new
/// start of the key overwrites the row (`challenges::START`). `$row` names the row: `challenges`
/// in an `ON CONFLICT DO UPDATE`, the existing row there.
macro_rules! row_event_as_json {
    ($row:literal) => {
        concat!(
            "jsonb_build_object('at', ",
            $row,
            ".event_at, 'kind', ",
            $row,
            ".event_kind, 'client_id', ",
            $row,
            ".event_client_id, 'connection', ",
            $row,
            ".event_connection, 'identifier', ",
            $row,
            ".event_identifier, 'ip', ",
            $row,
            ".event_ip, 'detail', ",
            $row,
            ".event_detail)"
        )
    };
}

/// The events of the starts that the challenge rows in `$from` replaced (their `prior_events`,
/// see `challenges::START`) as `audit_events` rows (`at, kind, client_id, connection,
/// identifier, user_id, ip, detail`; they name no user).
macro_rules! prior_events_as_audit {
    ($from:literal) => {
        concat!(
            "SELECT (e->>'at')::timestamptz AS at, e->>'kind' AS kind, e->>'client_id' AS client_id, \
               e->>'connection' AS connection, e->>'identifier' AS identifier, NULL::text AS user_id, \
               e->>'ip' AS ip, e->>'detail' AS detail FROM ",
            $from,
            " r, jsonb_array_elements(r.prior_events) e WHERE r.prior_events IS NOT NULL"
        )
    };
}

/// Every event that the challenge rows in `$from` hold, as `prior_events_as_audit!` gives them:
/// its own start's, and those of the starts it replaced. `$from` is `challenges` or a CTE
/// returning `row_event_columns!()` and `prior_events`.
macro_rules! row_events_as_audit {
    ($from:literal) => {
        concat!(
            prior_events_as_audit!($from),
            " UNION ALL SELECT event_at, event_kind, event_client_id, event_connection, event_identifier, NULL::text, \
               event_ip, event_detail FROM ",
            $from,
            " WHERE event_at IS NOT NULL"
        )
    };
}

/// `INSERT INTO audit_events` of the rows of `$events` (a SELECT of `at, kind, client_id,
/// connection, identifier, user_id, ip, detail`, such as `row_events_as_audit!`) that `$and` (a
/// condition over those columns, after `AND`) keeps: how a challenge row's events
/// move into the log when the row goes (retention, a user's deletion) or retention empties its
/// `prior_events`.
macro_rules! archive_events {
    ($and:literal, $($events:tt)+) => {
        concat!(
            "INSERT INTO audit_events (at, kind, client_id, connection, identifier, user_id, ip, detail) \
             SELECT at, kind, client_id, connection, identifier, user_id, ip, detail FROM (",
            $($events)+,
            ") ev WHERE true ",
            $and
        )
    };
}

mod challenges;
mod clients;
mod grants;
mod prepared;
mod retention;
mod tls;
pub use retention::RETENTION_LOCK;
#[cfg(feature = "testing")]
pub mod testing;
mod users;

use std::time::Duration;

use anyhow::Context as _;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::deadpool::{Object, Pool, PoolError};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncMigrationHarness, AsyncPgConnection, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use sesame_ports::StoreError;

/// The schema, embedded in the binary; `sesame migrate` applies it.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Connection settings.
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgConfig {
    /// `postgres://user:pass@host:5432/db`, with libpq's `sslmode` (`require`, `verify-ca`,
    /// `verify-full`, …) and `sslrootcert` for TLS (see the `tls` module).
    pub url: String,
    /// A PEM bundle of the CAs to trust for `sslmode=verify-ca|verify-full` (for RDS, Amazon's
    /// `global-bundle.pem`); `sslrootcert` in the URL wins. Empty: the system roots.
    #[serde(default)]
    pub ca_file: String,
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Server-side limit on one statement.
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// How long a request waits for a connection (or for a new one to open) before the store
    /// answers "unavailable".
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// The planner's cost of a random page read on Sesame's connections (`SET random_page_cost`).
    /// 1.1 is AWS's advice for RDS and Aurora (SSD) storage, and what keeps the plans a
    /// connection caches while a table is still small on their indexes once it is large: the
    /// delivery's per-message statements find their challenge rows by message id
    /// (`tests/it/statements.rs`). Postgres's own default, 4, is for spinning disks.
    #[serde(default = "default_random_page_cost")]
    pub random_page_cost: f64,
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("PgConfig").field("pool_size", &self.pool_size).finish_non_exhaustive()
    }
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
    DEFAULT_RANDOM_PAGE_COST
}

/// `PgConfig::random_page_cost` when not set: AWS's advice for SSD storage.
pub const DEFAULT_RANDOM_PAGE_COST: f64 = 1.1;

impl PgConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ca_file: String::new(),
            pool_size: default_pool_size(),
            statement_timeout_ms: default_statement_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            random_page_cost: default_random_page_cost(),
        }
    }
}

/// Every store port over Postgres connection pools: one, or (`connect_sharded`) one per HTTP
/// worker thread and one for every other thread. tokio-postgres drives each connection in a
/// task on the thread that opened it, so a query from another thread costs two cross-thread
/// wake-ups (an eventfd write and a context switch each); with a pool per worker a query stays
/// on its thread.
#[derive(Clone)]
pub struct PgStore {
    /// The pinned threads' shards, then the shared one (the last).
    pools: std::sync::Arc<[Pool<AsyncPgConnection>]>,
    next_pin: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Where the sweeper goes on in each table it walks by block range.
    sweep_at: std::sync::Arc<retention::Cursors>,
}

thread_local! {
    /// The shard `PgStore::pin_thread` gave this thread.
    static PINNED: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (size, available) =
            self.pools.iter().map(Pool::status).fold((0, 0), |(s, a), st| (s + st.size, a + st.available));
        f.debug_struct("PgStore")
            .field("shards", &self.pools.len())
            .field("size", &size)
            .field("available", &available)
            .finish()
    }
}

impl PgStore {
    /// Builds the pool. Connections open lazily, so this succeeds while Postgres is down; the
    /// first query then answers `StoreError::Unavailable` until it is back.
    ///
    /// # Errors
    /// When the configuration is unusable.
    pub fn connect(config: &PgConfig) -> anyhow::Result<Self> {
        Self::connect_sharded(config, 0)
    }

    /// As `connect`, with `pool_size` split into a pool for each of `pinned` threads (each one
    /// calls `pin_thread`: the HTTP workers) and a pool for every other thread (start-up,
    /// delivery, key refresh), which gets an eighth of the connections, at least 2. With
    /// `pinned` 0, or a pool too small to split, one pool.
    ///
    /// # Errors
    /// When the configuration is unusable.
    pub fn connect_sharded(config: &PgConfig, pinned: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(
            config.random_page_cost.is_finite() && config.random_page_cost > 0.0,
            "[database] random_page_cost must be a positive number"
        );
        let size = config.pool_size.max(1);
        let shared = (size / 8).max(2);
        let sizes: Vec<usize> = if pinned == 0 || size < shared + pinned {
            vec![size]
        } else {
            let each = size - shared;
            (0..pinned).map(|i| each / pinned + usize::from(i < each % pinned)).chain([shared]).collect()
        };
        let target = std::sync::Arc::new(tls::Target::new(&config.url, &config.ca_file)?);
        tracing::debug!(tls = target.uses_tls(), "Postgres connections");
        let pools = sizes
            .into_iter()
            .map(|n| Self::pool(config, std::sync::Arc::clone(&target), n))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self { pools: pools.into(), next_pin: std::sync::Arc::default(), sweep_at: std::sync::Arc::default() })
    }

    fn pool(
        config: &PgConfig,
        target: std::sync::Arc<tls::Target>,
        size: usize,
    ) -> anyhow::Result<Pool<AsyncPgConnection>> {
        let statement_timeout = config.statement_timeout_ms;
        let random_page_cost = config.random_page_cost;
        let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
        // No `SELECT 1` at every checkout (a round trip per statement on the hot paths): a
        // connection that died fails its next statement, which maps to `Unavailable`, and
        // deadpool drops it (the outage test covers the recovery).
        manager_config.recycling_method = diesel_async::pooled_connection::RecyclingMethod::Fast;
        manager_config.custom_setup = Box::new(move |_url| {
            let target = std::sync::Arc::clone(&target);
            Box::pin(async move {
                let mut conn = target.connect().await?;
                conn.batch_execute(&format!(
                    "SET statement_timeout = {statement_timeout}; SET random_page_cost = {random_page_cost}"
                ))
                .await
                .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
                Ok(conn)
            })
        });
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(&config.url, manager_config);
        let wait = Duration::from_millis(config.connect_timeout_ms.max(1));
        Pool::builder(manager)
            .max_size(size)
            .wait_timeout(Some(wait))
            .create_timeout(Some(wait))
            .recycle_timeout(Some(wait))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .context("building the Postgres pool")
    }

    /// Gives the calling thread a pool of its own (of `connect_sharded`'s `pinned`), so that
    /// its queries run on connections it drives. Call it once on each HTTP worker thread.
    pub fn pin_thread(&self) {
        let next = self.next_pin.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        PINNED.with(|p| p.set(Some(next)));
    }

    /// The pool for the calling thread.
    fn pool_here(&self) -> &Pool<AsyncPgConnection> {
        let (n, shared) = (self.pools.len(), self.pools.len() - 1);
        let shard = match PINNED.with(std::cell::Cell::get) {
            Some(i) if n > 1 => i % shared,
            _ => shared,
        };
        &self.pools[shard]
    }

    pub(crate) async fn conn(&self) -> Result<Object<AsyncPgConnection>, StoreError> {
        self.pool_here().get().await.map_err(|e| match e {
            PoolError::Timeout(_) | PoolError::Backend(_) | PoolError::Closed | PoolError::NoRuntimeSpecified => {
                StoreError::Unavailable(anyhow::anyhow!("Postgres connection: {e}"))
            }
            PoolError::PostCreateHook(_) => StoreError::Unavailable(anyhow::anyhow!("Postgres connection setup: {e}")),
        })
    }

    /// Applies every pending migration. Returns the versions applied.
    ///
    /// # Errors
    /// When Postgres cannot be reached or a migration fails.
    pub async fn migrate(&self) -> anyhow::Result<Vec<String>> {
        self.with_harness(|h| h.run_pending_migrations(MIGRATIONS).map(|v| v.iter().map(ToString::to_string).collect()))
            .await
    }

    /// Reverts every applied migration (for tests of `down.sql`). Returns the versions reverted.
    ///
    /// # Errors
    /// When Postgres cannot be reached or a migration fails.
    pub async fn revert_all(&self) -> anyhow::Result<Vec<String>> {
        self.with_harness(|h| h.revert_all_migrations(MIGRATIONS).map(|v| v.iter().map(ToString::to_string).collect()))
            .await
    }

    async fn with_harness<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut AsyncMigrationHarness<AsyncPgConnection>) -> Result<T, Box<dyn std::error::Error + Send + Sync>>
        + Send
        + 'static,
    ) -> anyhow::Result<T> {
        let conn = self.conn().await.map_err(anyhow::Error::from)?;
        let conn = Object::take(conn);
        // The harness blocks (diesel's migration API is sync): keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            let mut harness = AsyncMigrationHarness::new(conn);
            f(&mut harness).map_err(|e| anyhow::anyhow!("migration failed: {e}"))
        })
        .await
        .context("migration task")?
    }
}

/// Sorts Diesel errors into the port's error kinds.
pub(crate) fn db_err(context: &'static str) -> impl Fn(DieselError) -> StoreError {
    move |e| match &e {
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
            StoreError::Conflict(format!("{context}: {}", info.message()))
        }
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) | DieselError::BrokenTransactionManager => {
            StoreError::Unavailable(anyhow::Error::new(e).context(context))
        }
        DieselError::DatabaseError(_, info) if is_transient(info.message()) => {
            StoreError::Unavailable(anyhow::anyhow!("{context}: {}", info.message()))
        }
        _ => StoreError::Unexpected(anyhow::Error::new(e).context(context)),
    }
}

/// Messages of failures worth a retry: timeouts, shutdown, lost connections.
fn is_transient(message: &str) -> bool {
    const MARKERS: &[&str] = &[
        "statement timeout",
        "connection",
        "terminating",
        "shutting down",
        "the database system is starting up",
        "Connection closed",
    ];
    MARKERS.iter().any(|m| message.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(store: &PgStore) -> Vec<usize> {
        store.pools.iter().map(|p| p.status().max_size).collect()
    }

    #[test]
    fn the_pool_splits_across_pinned_threads_with_an_eighth_for_the_rest() {
        // Pools open their connections lazily: nothing listens here, nothing is tried.
        let mut config = PgConfig::new("postgres://nobody@127.0.0.1:1/none");
        config.pool_size = 32;
        assert_eq!(sizes(&PgStore::connect(&config).unwrap()), vec![32]);
        let store = PgStore::connect_sharded(&config, 2).unwrap();
        assert_eq!(sizes(&store), vec![14, 14, 4]);
        config.pool_size = 3;
        assert_eq!(sizes(&PgStore::connect_sharded(&config, 2).unwrap()), vec![3], "too small to split");

        // Unpinned threads share the last pool; each pinned one gets its own, in turn.
        let shared = std::ptr::from_ref(&store.pools[2]);
        assert!(std::ptr::eq(store.pool_here(), shared));
        let picked: Vec<usize> = (0..3)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    store.pin_thread();
                    store.pools.iter().position(|p| std::ptr::eq(p, store.pool_here())).unwrap_or(99)
                })
                .join()
                .unwrap_or(99)
            })
            .collect();
        assert_eq!(picked, vec![0, 1, 0]);
    }
}
