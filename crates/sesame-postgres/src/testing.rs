//! `TestDatabase`: a uniquely named, migrated database for one test, dropped afterwards.
//! Point at another server with `TEST_DATABASE_URL` (an admin URL, e.g. `postgres://postgres@127.0.0.1:5432/postgres`).

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

use crate::{PgConfig, PgStore};

/// One test's database.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
    admin_url: String,
    config: PgConfig,
}

/// The server the tests use.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn with_database(url: &str, db: &str) -> String {
    match url.rfind('/') {
        Some(i) if url[..i].contains("://") && url[i..].len() > 1 || url.ends_with('/') => {
            let base = &url[..i];
            let query = url[i..].find('?').map(|q| &url[i + q..]).unwrap_or("");
            format!("{base}/{db}{query}")
        }
        _ => format!("{url}/{db}"),
    }
}

impl TestDatabase {
    /// Creates and migrates a new database.
    ///
    /// # Errors
    /// When Postgres is not reachable: the message says so, so a missing service fails loudly.
    pub async fn new() -> anyhow::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let name =
            format!("sesame_test_{}_{}_{:x}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos);
        let admin_url = admin_url();
        let mut admin = AsyncPgConnection::establish(&admin_url)
            .await
            .with_context(|| format!("PostgreSQL is not reachable at {admin_url} (set TEST_DATABASE_URL)"))?;
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.context("creating the test database")?;
        let config = PgConfig::new(with_database(&admin_url, &name));
        let db = Self { name, admin_url, config };
        db.store()?.migrate().await?;
        Ok(db)
    }

    pub fn config(&self) -> PgConfig {
        self.config.clone()
    }

    /// A new store (its own pool) on this database: two calls are like two replicas.
    ///
    /// # Errors
    /// When the pool cannot be built.
    pub fn store(&self) -> anyhow::Result<PgStore> {
        PgStore::connect(&self.config)
    }
}

impl PgStore {
    /// The generic plans (`plan_cache_mode = force_generic_plan`: what a connection keeps once
    /// it stops planning per call) of the outbox's per-message statements, made now, by name.
    ///
    /// # Errors
    /// When Postgres cannot be reached or a statement does not prepare.
    pub async fn outbox_generic_plans(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        #[derive(diesel::QueryableByName)]
        struct Line {
            #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
            line: String,
        }
        let statements = [
            (
                "settle",
                crate::challenges::SETTLE,
                "text[], text[], text[], text[], timestamptz[], text[], timestamptz",
                "'{a}', '{b}', '{failed}', '{NULL}', '{NULL}', '{NULL}', now()",
            ),
            ("claim", crate::challenges::CLAIM_ONE, "text, timestamptz, timestamptz", "'a', now(), now()"),
        ];
        let mut conn = self.conn().await.map_err(|e| anyhow::anyhow!("{e:#}"))?;
        conn.batch_execute("SET plan_cache_mode = force_generic_plan").await?;
        let mut plans = Vec::new();
        for (name, sql, types, args) in statements {
            conn.batch_execute(&format!("PREPARE plan_{name} ({types}) AS {sql}")).await?;
            let lines: Vec<Line> = diesel_async::RunQueryDsl::load(
                diesel::sql_query(format!("EXPLAIN EXECUTE plan_{name}({args})")),
                &mut conn,
            )
            .await?;
            conn.batch_execute(&format!("DEALLOCATE plan_{name}")).await?;
            plans.push((name, lines.into_iter().map(|l| l.line).collect::<Vec<_>>().join("\n")));
        }
        conn.batch_execute("RESET plan_cache_mode").await?;
        Ok(plans)
    }

    /// What one pooled connection holds prepared (`pg_prepared_statements`): with a pool of
    /// one, what the statements run so far have left there.
    ///
    /// # Errors
    /// When Postgres cannot be reached.
    pub async fn prepared_statements(&self) -> anyhow::Result<Vec<String>> {
        #[derive(diesel::QueryableByName)]
        struct Prepared {
            #[diesel(sql_type = diesel::sql_types::Text)]
            statement: String,
        }
        let mut conn = self.conn().await.map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let rows: Vec<Prepared> = diesel_async::RunQueryDsl::load(
            diesel::sql_query("SELECT statement FROM pg_prepared_statements ORDER BY prepare_time"),
            &mut conn,
        )
        .await?;
        Ok(rows.into_iter().map(|r| r.statement).collect())
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs outside async: do the async work on a thread of its own.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut admin = AsyncPgConnection::establish(&url).await.ok()?;
                admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            tracing::warn!(database = self.name, "test database was not dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_names_replace_the_path() {
        assert_eq!(super::with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(
            super::with_database("postgres://u@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(super::with_database("postgres://u@h:5432", "x"), "postgres://u@h:5432/x");
    }
}
