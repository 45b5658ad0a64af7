use std::sync::Arc;
use std::time::Duration;

use sesame_ports::testkit;
use sesame_ports::{ChallengeStore, Outbox};
use sesame_postgres::testing::TestDatabase;

async fn store() -> (TestDatabase, Arc<sesame_postgres::PgStore>) {
    let db = TestDatabase::new().await.expect("test database (is PostgreSQL running on 127.0.0.1:5432?)");
    let store = Arc::new(db.store().expect("pool"));
    (db, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn challenge_store_meets_the_contract() {
    let (_db, store) = store().await;
    testkit::challenge_store(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_store_meets_the_contract_in_one_statement() {
    let (_db, store) = store().await;
    testkit::login_store(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_exchanges_of_one_code_have_one_winner() {
    let (_db, store) = store().await;
    testkit::concurrent_single_use(&store, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outbox_meets_the_contract() {
    let (_db, store) = store().await;
    testkit::outbox(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_store_meets_the_contract() {
    let (_db, store) = store().await;
    testkit::user_store(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_admin_meets_the_contract() {
    let (_db, store) = store().await;
    testkit::user_admin(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_revocation_meets_the_contract() {
    let (_db, store) = store().await;
    testkit::refresh_revocation(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_store_meets_the_contract() {
    let (_db, store) = store().await;
    testkit::client_store(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grant_store_meets_the_contract() {
    let (_db, store) = store().await;
    testkit::grant_store(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_store_meets_the_contract() {
    let (_db, store) = store().await;
    testkit::key_store(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_meets_the_contract() {
    let (_db, store) = store().await;
    testkit::retention(store).await;
}

/// While another replica sweeps (holds the lock), a sweep does nothing and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_replica_sweeps_at_a_time() {
    use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
    use sesame_ports::Retention as _;
    let (db, store) = store().await;
    let now = testkit::t0();
    let cutoffs = sesame_ports::Cutoffs { challenges: now, grants: now, outbox: now, audit: Some(now) };
    let mut other = AsyncPgConnection::establish(&db.config().url).await.expect("connect");
    let lock = |f: &str| format!("SELECT {f}({})", sesame_postgres::RETENTION_LOCK);
    diesel::sql_query(lock("pg_advisory_lock")).execute(&mut other).await.expect("lock");
    assert_eq!(store.sweep(&cutoffs, 10).await.expect("sweep"), None, "another replica holds the lock");
    diesel::sql_query(lock("pg_advisory_unlock")).execute(&mut other).await.expect("unlock");
    assert!(store.sweep(&cutoffs, 10).await.expect("sweep").is_some(), "free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn audit_log_meets_the_contract() {
    let (_db, store) = store().await;
    testkit::audit_log(store).await;
}

/// Two replicas (two pools, as two processes would have) drain one outbox: no message twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_claiming_the_outbox_never_get_the_same_message() {
    let db = TestDatabase::new().await.expect("test database");
    let (a, b) = (Arc::new(db.store().unwrap()), Arc::new(db.store().unwrap()));
    let now = testkit::t0();
    let mut ids = Vec::new();
    for _ in 0..200 {
        let key = testkit::email_key("c");
        let m = testkit::message(&key, now);
        ids.push(m.id.clone());
        a.start(testkit::challenge(&key, testkit::hash(1), None, now), m, testkit::issued(now), None).await.unwrap();
    }
    let drain = |s: Arc<sesame_postgres::PgStore>| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = s.claim_due(now, 7, Duration::from_secs(600)).await.unwrap();
                if batch.is_empty() {
                    break got;
                }
                for c in batch {
                    s.mark_sent(&c.message.id, now).await.unwrap();
                    got.push(c.message.id);
                }
            }
        })
    };
    let (ga, gb) = (drain(a.clone()), drain(b.clone()));
    let (ga, gb) = (ga.await.unwrap(), gb.await.unwrap());
    assert!(!ga.is_empty() && !gb.is_empty(), "both replicas took part ({} / {})", ga.len(), gb.len());
    let mut all: Vec<_> = ga.into_iter().chain(gb).collect();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(total, all.len(), "a message was claimed twice");
    ids.sort();
    assert_eq!(all, ids, "every message sent once");
}

/// A claimer that dies holding a lease does not lose its messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_claimers_messages_are_claimed_again_after_the_lease() {
    let db = TestDatabase::new().await.expect("test database");
    let (crashed, survivor) = (db.store().unwrap(), db.store().unwrap());
    let now = testkit::t0();
    let key = testkit::email_key("c");
    let m = testkit::message(&key, now);
    crashed
        .start(testkit::challenge(&key, testkit::hash(1), None, now), m.clone(), testkit::issued(now), None)
        .await
        .unwrap();
    assert_eq!(crashed.claim_due(now, 10, Duration::from_secs(30)).await.unwrap().len(), 1);
    drop(crashed);
    assert!(
        survivor.claim_due(now + time::Duration::seconds(29), 10, Duration::from_secs(30)).await.unwrap().is_empty()
    );
    let again = survivor.claim_due(now + time::Duration::seconds(30), 10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(again.iter().map(|c| (&c.message.id, c.attempt)).collect::<Vec<_>>(), vec![(&m.id, 2)]);
}

/// With nothing listening, the store answers Unavailable quickly, never hangs or panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_reported_as_unavailable() {
    let mut config = sesame_postgres::PgConfig::new("postgres://postgres@127.0.0.1:1/none");
    config.connect_timeout_ms = 500;
    let store = sesame_postgres::PgStore::connect(&config).unwrap();
    let started = std::time::Instant::now();
    let err = sesame_ports::ClientStore::find(&store, &sesame_domain::ClientId::new("x")).await.unwrap_err();
    assert!(matches!(err, sesame_ports::StoreError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
