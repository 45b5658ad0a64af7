//! The two stacks every case runs on, and `on_both!`, which makes a case into two tests.

use serde_json::json;
use sesame_api::config::{LimiterKind, Settings};
use sesame_postgres::testing::TestDatabase;

use crate::helpers::{TestApp, spawn_app_configured, spawn_app_on};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Memory store and limiter: `sesame serve` with nothing configured.
    Embedded,
    /// Postgres store (a database of its own) and Redis limiter (a key prefix of its own).
    PostgresRedis,
}

/// A running Sesame; its database (if any) is dropped with it.
pub struct Stack {
    pub app: TestApp,
    _db: Option<TestDatabase>,
}

impl std::ops::Deref for Stack {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl Stack {
    /// The URL of this stack's database (Postgres + Redis only).
    pub fn db_url(&self) -> String {
        self._db.as_ref().expect("a stack with a database").config().url
    }
}

/// Starts `kind` with the test clients, settings changed by `configure`.
pub async fn stack(kind: Kind, configure: impl FnOnce(&mut Settings)) -> Stack {
    match kind {
        Kind::Embedded => Stack { app: spawn_app_configured(configure).await, _db: None },
        Kind::PostgresRedis => {
            let db = TestDatabase::new().await.expect("a test database (is PostgreSQL on 127.0.0.1:5432?)");
            let redis = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
            let prefix = format!("{}:", unique("sesame-security:"));
            let app = spawn_app_on(db.config().url, |s| {
                s.rate_limit = LimiterKind::Redis;
                s.redis = Some(
                    serde_json::from_value(json!({"url": redis, "key_prefix": prefix, "timeout_ms": 2000}))
                        .expect("redis settings"),
                );
                configure(s);
            })
            .await;
            Stack { app, _db: Some(db) }
        }
    }
}

/// `on_both!(name, case)`: `name::embedded` and `name::postgres_redis`, each running
/// `case(kind).await`.
macro_rules! on_both {
    ($name:ident, $case:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$case(crate::stack::Kind::Embedded).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres_redis() {
                super::$case(crate::stack::Kind::PostgresRedis).await;
            }
        }
    };
}
pub(crate) use on_both;

/// A string no other test (here or in another process) uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{prefix}{}-{}-{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A code that is not `code`, of the same length.
pub fn wrong(code: &str, n: u32) -> String {
    let len = code.len();
    let mut guess = n;
    loop {
        let candidate = format!("{:0len$}", guess % 10u32.pow(len as u32));
        if candidate != code {
            return candidate;
        }
        guess = guess.wrapping_add(7_919);
    }
}
