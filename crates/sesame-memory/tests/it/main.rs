//! The memory adapters against the port contracts.
use std::sync::Arc;

use sesame_memory::{MemoryRateLimiter, MemoryStore};
use sesame_ports::testkit;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn challenge_store_meets_the_contract() {
    testkit::challenge_store(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outbox_meets_the_contract() {
    testkit::outbox(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_store_meets_the_contract() {
    testkit::user_store(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_store_meets_the_contract() {
    testkit::client_store(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grant_store_meets_the_contract() {
    testkit::grant_store(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_store_meets_the_contract() {
    testkit::key_store(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_meets_the_contract() {
    testkit::retention(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_log_meets_the_contract() {
    testkit::audit_log(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limiter_meets_the_contract() {
    testkit::rate_limiter(Arc::new(MemoryRateLimiter::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_guard_meets_the_contract() {
    testkit::replay_guard(Arc::new(MemoryRateLimiter::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_admin_meets_the_contract() {
    testkit::user_admin(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn refresh_revocation_meets_the_contract() {
    testkit::refresh_revocation(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn login_store_meets_the_contract() {
    testkit::login_store(Arc::new(MemoryStore::new())).await;
}
