use std::time::Duration;

use redis::AsyncCommands as _;
use sesame_ports::{LimitRule, RateLimiter, ReplayGuard, testkit};
use time::Duration as Span;

use crate::TestRedis;

fn rule(key: &str, limit: u32, window: Duration, cost: u32) -> LimitRule {
    LimitRule::new(key, limit, window, cost)
}

#[tokio::test]
async fn buckets_carry_the_prefix_and_expire_when_full_again() {
    let redis = TestRedis::new();
    let limiter = redis.limiter().await;
    let mut raw = redis.raw().await;
    let hour = Duration::from_secs(3600);

    limiter.check(&[rule("ip:a", 5, hour, 1), rule("ip:b", 5, hour, 1)], testkit::t0()).await.unwrap();
    limiter.check(&[rule("ip:b", 5, hour, 1)], testkit::t0()).await.unwrap();
    limiter.check(&[rule("ip:look", 5, hour, 0)], testkit::t0()).await.unwrap();

    let key = format!("{{{}rl}}:ip:a", redis.config.key_prefix);
    assert_eq!(limiter.bucket_key("ip:a"), key);
    let ttl_a: i64 = raw.pttl(&key).await.unwrap();
    let ttl_b: i64 = raw.pttl(limiter.bucket_key("ip:b")).await.unwrap();
    assert!((710_000..=720_000).contains(&ttl_a), "one token taken: full again in 720 s, not {ttl_a} ms");
    assert!((1_430_000..=1_440_000).contains(&ttl_b), "two tokens taken: full again in 1440 s, not {ttl_b} ms");
    let looked: bool = raw.exists(limiter.bucket_key("ip:look")).await.unwrap();
    assert!(!looked, "a look (cost 0) writes nothing");
}

#[tokio::test]
async fn replay_entries_carry_the_prefix_and_live_until_their_expiry() {
    let redis = TestRedis::new();
    let guard = redis.limiter().await;
    let mut raw = redis.raw().await;
    let now = testkit::t0();

    assert!(guard.first_use("jti-9", now + Span::seconds(60), now).await.unwrap());

    let key = format!("{}jti:jti-9", redis.config.key_prefix);
    assert_eq!(guard.replay_key("jti-9"), key);
    let ttl: i64 = raw.pttl(&key).await.unwrap();
    assert!((59_000..=60_000).contains(&ttl), "lives until `until` on the caller's clock, not {ttl} ms");
}

#[tokio::test]
async fn an_already_expired_value_is_accepted_and_forgotten_at_once() {
    let redis = TestRedis::new();
    let guard = redis.limiter().await;
    let now = testkit::t0();

    let first = guard.first_use("late", now - Span::seconds(1), now).await.unwrap();

    assert!(first);
    assert!(guard.first_use("late", now + Span::seconds(60), now + Span::seconds(5)).await.unwrap());
}

/// Sub-second windows and a `now` one nanosecond before a whole second: the stored
/// seconds:nanoseconds carry and every offset must come out exact, as in the memory adapter.
#[tokio::test]
async fn arithmetic_is_exact_to_the_nanosecond() {
    let limiter = TestRedis::new().limiter().await;
    let now = testkit::t0() + Span::nanoseconds(999_999_999);
    let second = [rule("sub-second", 3, Duration::from_secs(1), 1)];
    let ns = Span::nanoseconds;

    for left in [2, 1, 0] {
        let d = limiter.check(&second, now).await.unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, left);
    }
    let full = limiter.check(&second, now).await.unwrap();
    assert!(!full.allowed);
    assert_eq!(full.reset_at, now + ns(999_999_999), "three intervals of 333_333_333 ns");
    assert_eq!(full.retry_after, Duration::from_secs(1), "rounded up to whole seconds");

    // Three intervals leave the window 1 ns of slack, so the fourth fits 333_333_332 ns later, not 1 ns sooner.
    let early = limiter.check(&second, now + ns(333_333_331)).await.unwrap();
    assert!(!early.allowed);
    assert_eq!(early.retry_after, Duration::from_secs(1), "1 ns to wait, rounded up");
    let on_time = limiter.check(&second, now + ns(333_333_332)).await.unwrap();
    assert!(on_time.allowed);
    assert_eq!(on_time.remaining, 0);
    assert_eq!(on_time.reset_at, now + ns(999_999_999 + 333_333_333));
}

#[tokio::test]
async fn a_request_is_reported_by_its_tightest_bucket() {
    let limiter = TestRedis::new().limiter().await;
    let now = testkit::t0();
    let hour = Duration::from_secs(3600);
    let rules = [rule("ip", 50, hour, 1), rule("identifier", 10, hour, 1), rule("client", 1000, hour, 1)];

    let d = limiter.check(&rules, now).await.unwrap();

    assert!(d.allowed);
    assert_eq!((d.limit, d.remaining), (10, 9));
    assert_eq!(d.reset_at, now + Span::seconds(360));
    assert_eq!(d.retry_after, Duration::ZERO);
}

#[tokio::test]
async fn no_rules_allow_without_asking_redis() {
    let limiter = sesame_redis::RedisLimiter::connect_lazy(&sesame_redis::RedisConfig {
        url: "redis://127.0.0.1:1".into(),
        ..Default::default()
    })
    .unwrap();

    let d = limiter.check(&[], testkit::t0()).await.unwrap();

    assert!(d.allowed);
}
