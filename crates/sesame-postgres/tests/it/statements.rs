//! The statement cache: every connection prepares a statement once, then sends only its binds.

use sesame_domain::ClientId;
use sesame_ports::{ChallengeStore, ClientStore, ConnectionStore, testkit};
use sesame_postgres::PgStore;
use sesame_postgres::testing::TestDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hot_statements_are_prepared_once_per_connection() {
    let db = TestDatabase::new().await.expect("test database");
    let mut config = db.config();
    config.pool_size = 1;
    let store = PgStore::connect(&config).unwrap();
    let now = testkit::t0();
    for _ in 0..3 {
        let key = testkit::email_key("prepared");
        let challenge = testkit::challenge(&key, testkit::hash(1), None, now);
        store.start(challenge, testkit::message(&key, now), testkit::issued(now), None).await.unwrap();
        assert!(ClientStore::find(&store, &ClientId::new("nobody")).await.unwrap().is_none());
        assert!(ConnectionStore::find(&store, &sesame_domain::ConnectionName::new("nowhere")).await.unwrap().is_none());
    }
    let prepared = store.prepared_statements().await.unwrap();
    let count = |prefix: &str| prepared.iter().filter(|s| s.trim_start().starts_with(prefix)).count();
    assert_eq!(count("WITH blocked AS"), 1, "the start statement, once: {prepared:?}");
    assert_eq!(count("SELECT client_id"), 1, "the client lookup, once: {prepared:?}");
    assert_eq!(count("SELECT name, strategy"), 1, "the connection lookup, once: {prepared:?}");
}

/// A connection keeps a generic plan once it stops planning per call, made from the statistics
/// of that moment. The outbox's per-message statements must find their rows by message id
/// even in a plan made while the table was empty (the partial index of pending messages would
/// make every settle scan the whole backlog).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_statements_find_rows_by_message_id_in_a_plan_made_on_an_empty_table() {
    let db = TestDatabase::new().await.expect("test database");
    let store = db.store().unwrap();
    for (name, plan) in store.outbox_generic_plans().await.unwrap() {
        // A message lives on its challenge row (found by `challenges_message`) or, from the
        // previous release, in the outbox table (by its primary key).
        assert!(plan.contains("challenges_message"), "{name}: {plan}");
        assert!(plan.contains("outbox_pkey"), "{name}: {plan}");
        assert!(!plan.contains("challenges_pending"), "{name}: {plan}");
        assert!(!plan.contains("outbox_pending"), "{name}: {plan}");
    }
}
