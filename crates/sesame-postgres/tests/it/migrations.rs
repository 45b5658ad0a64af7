use sesame_postgres::testing::TestDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_up_down_and_up_again() {
    let db = TestDatabase::new().await.expect("test database");
    let store = db.store().unwrap();
    assert!(store.migrate().await.unwrap().is_empty(), "already applied by TestDatabase");
    let reverted = store.revert_all().await.unwrap();
    assert!(!reverted.is_empty());
    let lookup = sesame_ports::ClientStore::list(&store).await;
    assert!(lookup.is_err(), "tables are gone after down.sql");
    let applied = store.migrate().await.unwrap();
    assert_eq!(applied.len(), reverted.len());
    assert!(sesame_ports::ClientStore::list(&store).await.unwrap().is_empty());
}
