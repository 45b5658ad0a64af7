//! `rediss://` with a password, as ElastiCache with in-transit encryption and AUTH is reached:
//! a local `redis-server` on a TLS port only, with a certificate from a CA made for the test
//! (`openssl`), trusted through `ca_file`. The limiter and the replay guard meet their contracts
//! over it; plain `redis://`, an untrusted certificate and a wrong password all fail.

use std::sync::Arc;

use sesame_ports::RateLimiter as _;
use sesame_ports::testkit;
use sesame_redis::testing::{PASSWORD, TlsRedis};
use sesame_redis::{RedisConfig, RedisLimiter};

fn config(redis: &TlsRedis, url: String, ca: &str) -> RedisConfig {
    RedisConfig {
        url,
        ca_file: redis.ca.file(ca),
        key_prefix: format!("{}:", testkit::unique("sesame-tls:")),
        timeout_ms: 2_000,
        ..RedisConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_a_password_the_limiter_and_replay_guard_meet_their_contracts() {
    let redis = TlsRedis::start();
    let limiter = Arc::new(RedisLimiter::connect(&config(&redis, redis.url(), "ca.crt")).await.expect("TLS connect"));
    testkit::rate_limiter(Arc::clone(&limiter)).await;
    testkit::replay_guard(limiter).await;

    // The ways it must not work.
    let plain = format!("redis://:{PASSWORD}@localhost:{}/", redis.port);
    let plain = RedisLimiter::connect_lazy(&RedisConfig { ca_file: String::new(), ..config(&redis, plain, "ca.crt") });
    assert!(plain.expect("lazy").ping().await.is_err(), "plain TCP to a TLS port");
    let untrusted = RedisLimiter::connect_lazy(&config(&redis, redis.url(), "other.crt")).expect("lazy");
    assert!(untrusted.ping().await.is_err(), "a certificate from a CA not trusted");
    let wrong = format!("rediss://:not-the-password@localhost:{}/", redis.port);
    let wrong = RedisLimiter::connect_lazy(&config(&redis, wrong, "ca.crt")).expect("lazy");
    assert!(wrong.ping().await.is_err(), "a wrong password");
}
