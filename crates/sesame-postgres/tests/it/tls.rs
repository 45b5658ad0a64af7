//! `sslmode` against a real Postgres that takes TLS only (a second server made for the test,
//! `TlsPostgres`), as RDS with `rds.force_ssl` does: `verify-full` with the CA from
//! `sslrootcert` or `ca_file` passes the store contracts; a plain connection, a CA that did not
//! sign the certificate and a host name the certificate does not name are refused; `verify-ca`
//! and `require` check what libpq's modes of those names check.

use std::sync::Arc;

use sesame_ports::testkit;
use sesame_postgres::testing::TlsPostgres;
use sesame_postgres::{PgConfig, PgStore};

/// Whether a store with these settings can open a connection (and apply the migrations).
async fn connects(url: String, ca_file: &str) -> Result<PgStore, String> {
    let config = PgConfig { ca_file: ca_file.to_owned(), connect_timeout_ms: 5_000, ..PgConfig::new(url) };
    let store = PgStore::connect(&config).map_err(|e| format!("{e:#}"))?;
    store.migrate().await.map_err(|e| format!("{e:#}"))?;
    Ok(store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_is_honoured_against_a_postgres_that_takes_tls_only() {
    let pg = TlsPostgres::start().expect("a TLS Postgres for the test");
    let ca = pg.file("ca.crt");

    // verify-full, the CA in the URL: the contracts hold over TLS.
    let store = connects(pg.url("localhost", &format!("sslmode=verify-full&sslrootcert={ca}")), "")
        .await
        .expect("verify-full with the right CA and name");
    let store = Arc::new(store);
    testkit::challenge_store(Arc::clone(&store)).await;
    testkit::outbox(store).await;

    // The CA from `[database] ca_file` instead.
    connects(pg.url("localhost", "sslmode=verify-full"), &ca).await.expect("verify-full with ca_file");

    // What must be refused.
    let refused = |r: Result<PgStore, String>, why: &str| {
        let err = r.err().unwrap_or_else(|| panic!("{why}: connected"));
        assert!(!err.is_empty(), "{why}");
        err
    };
    let plain = refused(connects(pg.url("localhost", "sslmode=disable"), "").await, "plain TCP");
    assert!(plain.contains("no encryption") || plain.contains("pg_hba"), "the server refused it: {plain}");
    refused(connects(pg.url("localhost", "sslmode=verify-full"), &pg.file("other.crt")).await, "an untrusted CA");
    let name =
        refused(connects(pg.url("127.0.0.1", "sslmode=verify-full"), &ca).await, "a name not on the certificate");
    assert!(name.to_lowercase().contains("certificate"), "{name}");
    refused(connects(pg.url("localhost", "sslmode=verify-ca"), &pg.file("other.crt")).await, "verify-ca, untrusted CA");
    refused(
        connects(pg.url("localhost", "sslmode=require"), &pg.file("other.crt")).await,
        "require with a CA checks it",
    );

    // verify-ca checks the chain only; require alone encrypts without checking (libpq's modes).
    connects(pg.url("127.0.0.1", "sslmode=verify-ca"), &ca).await.expect("verify-ca ignores the name");
    connects(pg.url("127.0.0.1", "sslmode=require"), "").await.expect("require without a CA");
    connects(pg.url("localhost", "sslmode=prefer"), "").await.expect("prefer takes the TLS on offer");
}
