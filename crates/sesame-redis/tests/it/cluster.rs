//! `[redis] cluster = true` against a real three-node Redis Cluster made for the test, plain and
//! over TLS, with a password: the contracts hold, every bucket of a check lives in one slot
//! (one round trip), two replicas share their buckets, and a single-node client is refused by
//! the cluster for keys on other nodes, which shows the cluster client is what makes it work.

use std::sync::Arc;
use std::time::Duration;

use sesame_ports::{LimitRule, RateLimiter as _, ReplayGuard as _, testkit};
use sesame_redis::testing::RedisCluster;
use sesame_redis::{RedisConfig, RedisLimiter};

fn config(cluster: &RedisCluster) -> RedisConfig {
    RedisConfig {
        url: cluster.url(),
        ca_file: if cluster.url().starts_with("rediss://") { cluster.ca.file("ca.crt") } else { String::new() },
        cluster: true,
        key_prefix: format!("{}:", testkit::unique("sesame-cluster:")),
        timeout_ms: 2_000,
    }
}

async fn meets_the_contracts_and_shares_between_replicas(cluster: &RedisCluster) {
    let settings = config(cluster);
    let limiter = Arc::new(RedisLimiter::connect(&settings).await.expect("cluster connect"));
    assert!(limiter.is_cluster());
    limiter.ping().await.expect("PING reaches every primary");
    testkit::rate_limiter(Arc::clone(&limiter)).await;
    testkit::replay_guard(Arc::clone(&limiter)).await;

    // Two replicas, one bucket, whichever replica asks.
    let (a, b) = (RedisLimiter::connect(&settings).await.unwrap(), RedisLimiter::connect(&settings).await.unwrap());
    let rule = [LimitRule::new("ip:203.0.113.9", 4, Duration::from_secs(3600), 1)];
    let now = testkit::t0();
    for i in 0..4 {
        let replica = if i % 2 == 0 { &a } else { &b };
        assert!(replica.check(&rule, now).await.unwrap().allowed, "request {i}");
    }
    assert!(!a.check(&rule, now).await.unwrap().allowed && !b.check(&rule, now).await.unwrap().allowed);

    // Replay-guard keys carry no hash tag, so they spread over the nodes; each works.
    let until = now + time::Duration::seconds(60);
    for i in 0..20 {
        let key = format!("jti-{i}");
        assert!(a.first_use(&key, until, now).await.unwrap(), "{key}");
        assert!(!b.first_use(&key, until, now).await.unwrap(), "{key} on the other replica");
    }
    let slots: std::collections::BTreeSet<String> = (0..20)
        .map(|i| cluster.cli(0, &["cluster", "keyslot", &a.replay_key(&format!("jti-{i}"))]))
        .map(|slot| slot.trim().parse::<u16>().expect("a slot").to_string())
        .collect();
    assert!(slots.len() > 1, "replay-guard keys spread over slots: {slots:?}");

    // Every bucket of every request shares one slot, whatever its key.
    let bucket_slots: std::collections::BTreeSet<String> = ["ip:1.2.3.4", "email:a@example.com", "client:app"]
        .iter()
        .map(|k| cluster.cli(0, &["cluster", "keyslot", &a.bucket_key(k)]).trim().to_owned())
        .collect();
    assert_eq!(bucket_slots.len(), 1, "{bucket_slots:?}");

    // The same seed without the cluster protocol: the nodes that do not own the slot answer
    // MOVED, so some replay-guard calls must fail.
    let single = RedisLimiter::connect_lazy(&RedisConfig { cluster: false, ..settings }).unwrap();
    let mut failures = 0;
    for i in 0..20 {
        if single.first_use(&format!("other-{i}"), until, now).await.is_err() {
            failures += 1;
        }
    }
    assert!(failures > 0, "a single-node client must meet MOVED on a cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_three_node_cluster() {
    let cluster = RedisCluster::start(false);
    meets_the_contracts_and_shares_between_replicas(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_three_node_cluster_over_tls() {
    let cluster = RedisCluster::start(true);
    meets_the_contracts_and_shares_between_replicas(&cluster).await;
}
