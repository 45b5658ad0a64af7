//! Signing-key rotation with tokens in flight, seen by two replicas without a restart.

use std::process::Command;

use serde_json::Value;
use sesame_postgres::testing::TestDatabase;

use crate::helpers::{TestApp, spawn_app_on};

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).expect("header").kid.expect("kid")
}

async fn jwks_kids(app: &TestApp) -> Vec<String> {
    app.get("/.well-known/jwks.json").await.body["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

/// Logs in through `app`. The replicas share one outbox, so either one's worker may deliver the
/// code, into its own in-process mailbox: look in both.
async fn login(app: &TestApp, other: &TestApp, to: &str) -> String {
    let start = serde_json::json!({"client_id": "public-app", "connection": "email", "email": to, "send": "code"});
    assert_eq!(app.post_start(&start).await.status, 200);
    let mut code = None;
    for _ in 0..1500 {
        for replica in [app, other] {
            let list: Vec<Value> = replica
                .http
                .get(format!("{}/dev/mailbox", replica.base))
                .query(&[("to", to)])
                .send()
                .await
                .expect("mailbox")
                .json()
                .await
                .expect("json");
            code = code.or_else(|| list.first().and_then(|m| m["code"].as_str()).map(str::to_owned));
        }
        if code.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let code = code.expect("the code was delivered by one of the replicas");
    let r = app.post_token(&TestApp::otp_body("public-app", "email", to, &code)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body["id_token"].as_str().expect("id_token").to_owned()
}

fn keys_cli(config: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sesame"))
        .arg("--config")
        .arg(config)
        .arg("keys")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run sesame");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_reaches_every_replica_and_old_tokens_verify_until_retired() {
    let db = TestDatabase::new().await.expect("test database");
    let url = db.config().url;
    // refresh_secs = 0: each replica rereads the ring whenever it signs or serves the JWKS.
    let a = spawn_app_on(url.clone(), |s| s.signing_keys.refresh_secs = 0).await;
    let b = spawn_app_on(url.clone(), |s| s.signing_keys.refresh_secs = 0).await;
    let t1 = login(&a, &b, "keys-a@example.com").await;
    let k1 = kid_of(&t1);
    assert_eq!(jwks_kids(&b).await, vec![k1.clone()], "both replicas share one active key");

    let dir = std::env::temp_dir().join(format!("sesame-keys-{}", db.name));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("sesame.toml");
    std::fs::write(
        &config,
        format!("store = \"postgres\"\nserver_secret = \"test-server-secret-0123456789abcdef0123\"\n[database]\nurl = \"{url}\"\n"),
    )
    .expect("config");
    let rotated: Value = serde_json::from_str(&keys_cli(&config, &["rotate", "--json"])).expect("json");
    let k2 = rotated["active"].as_str().expect("new kid").to_owned();
    assert_ne!(k1, k2);

    let t2 = login(&b, &a, "keys-b@example.com").await;
    assert_eq!(kid_of(&t2), k2, "replica B signs with the new key, no restart");
    let kids = jwks_kids(&a).await;
    assert!(kids.contains(&k1) && kids.contains(&k2), "{kids:?}");
    assert_eq!(a.verify_jwt(&t1, "public-app").await["sub"].as_str().map(|s| s.starts_with("email|")), Some(true));
    let listed: Value = serde_json::from_str(&keys_cli(&config, &["list", "--json"])).expect("json");
    let states: Vec<(&str, &str)> = listed
        .as_array()
        .expect("list")
        .iter()
        .map(|k| (k["kid"].as_str().unwrap_or(""), k["state"].as_str().unwrap_or("")))
        .collect();
    assert!(states.contains(&(k1.as_str(), "retiring")) && states.contains(&(k2.as_str(), "active")), "{states:?}");

    keys_cli(&config, &["retire", &k1]);
    assert_eq!(jwks_kids(&a).await, vec![k2.clone()]);
    assert_eq!(jwks_kids(&b).await, vec![k2]);
    let _ = std::fs::remove_dir_all(&dir);
}
