use std::time::Duration;

use sesame_ports::{LimitRule, RateLimiter, ReplayGuard, testkit};

use crate::TestRedis;

fn per_hour(key: &str, limit: u32) -> LimitRule {
    LimitRule::new(key, limit, Duration::from_secs(3600), 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_bucket() {
    let redis = TestRedis::new();
    let (a, b) = (redis.limiter().await, redis.limiter().await);
    let now = testkit::t0();
    let rule = [per_hour("ip:203.0.113.7", 5)];

    for i in 0..5u32 {
        let replica = if i % 2 == 0 { &a } else { &b };
        let d = replica.check(&rule, now).await.unwrap();
        assert!(d.allowed, "request {i}");
        assert_eq!(d.remaining, 4 - i, "request {i} sees the takes of both replicas");
    }
    let refused_by_a = a.check(&rule, now).await.unwrap();
    let refused_by_b = b.check(&rule, now).await.unwrap();

    assert!(!refused_by_a.allowed && !refused_by_b.allowed, "the sixth is refused whichever replica gets it");
    assert_eq!(refused_by_b.retry_after, Duration::from_secs(720));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_replay_guard() {
    let redis = TestRedis::new();
    let (a, b) = (redis.limiter().await, redis.limiter().await);
    let now = testkit::t0();
    let until = now + time::Duration::seconds(60);

    let first = a.first_use("jti-1", until, now).await.unwrap();
    let again = b.first_use("jti-1", until, now).await.unwrap();

    assert!(first);
    assert!(!again, "a jti used on one replica is refused on the other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_prefixes_do_not_share_buckets() {
    let (one, other) = (TestRedis::new(), TestRedis::new());
    let (a, b) = (one.limiter().await, other.limiter().await);
    let now = testkit::t0();
    let rule = [per_hour("client:app", 1)];

    assert!(a.check(&rule, now).await.unwrap().allowed);
    assert!(!a.check(&rule, now).await.unwrap().allowed);

    assert!(b.check(&rule, now).await.unwrap().allowed, "another prefix is another deployment");
}
