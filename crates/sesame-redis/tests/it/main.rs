//! The Redis adapters against the port contracts, on a real Redis (127.0.0.1:6379, or
//! `TEST_REDIS_URL`). Every test works under its own key prefix; nothing is flushed.
#![allow(clippy::expect_used, clippy::unwrap_used, reason = "tests fail loudly")]

mod cluster;
mod contract;
mod failures;
mod keys;
mod replicas;
mod tls;

use sesame_redis::{RedisConfig, RedisLimiter};

/// A unique key prefix on the test Redis: tests never see each other's keys.
#[derive(Debug)]
struct TestRedis {
    config: RedisConfig,
}

impl TestRedis {
    fn new() -> Self {
        let url = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let key_prefix = format!("{}:", sesame_ports::testkit::unique("sesame-test:"));
        // Generous: parallel tests on a busy CI machine must not fail on a slow reply.
        Self { config: RedisConfig { url, key_prefix, timeout_ms: 2_000, ..RedisConfig::default() } }
    }

    /// A limiter connected to the test Redis; fails the test, saying why, if Redis is not up.
    async fn limiter(&self) -> RedisLimiter {
        RedisLimiter::connect(&self.config).await.unwrap_or_else(|e| {
            panic!("these tests need a running Redis at {} (start one, or set TEST_REDIS_URL): {e:#}", self.config.url)
        })
    }

    /// A plain connection, to look at what the adapter stored.
    async fn raw(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.config.url.as_str()).unwrap();
        client.get_multiplexed_async_connection().await.unwrap_or_else(|e| {
            panic!("these tests need a running Redis at {} (or set TEST_REDIS_URL): {e:#}", self.config.url)
        })
    }
}
