use std::sync::Arc;

use sesame_ports::testkit;

use crate::TestRedis;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limiter_meets_the_contract() {
    testkit::rate_limiter(Arc::new(TestRedis::new().limiter().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_guard_meets_the_contract() {
    testkit::replay_guard(Arc::new(TestRedis::new().limiter().await)).await;
}
