//! SIGTERM in the middle of load, on the real binary with Postgres and SES (the local AWS
//! emulator): no request is cut, and every message of every answered start arrives exactly once
//! (a `sesame worker` started afterwards stands in for the other replicas).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sesame_postgres::testing::TestDatabase;

use crate::delivery::verified_sender_domain;
use crate::moto::Moto;
use crate::served::Served;

/// What became of one request.
#[derive(Debug)]
enum Fate {
    Answered(u16),
    /// Never connected: the listener was already closed.
    Refused,
    /// Connected, then no complete answer.
    Broken(String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_cuts_no_request_and_loses_or_doubles_no_message() {
    let db = TestDatabase::new().await.expect("test database");
    let moto = Moto::start().await;
    let domain = verified_sender_domain(&moto).await;
    let dir = std::env::temp_dir().join(format!("sesame-shutdown-{}", db.name));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("sesame.toml");
    std::fs::write(
        &config,
        format!(
            r#"
issuer = "https://sesame.shutdown.test/"
listen = "127.0.0.1:0"
log_format = "json"
server_secret = "shutdown-test-server-secret-0123456789abcdef"
store = "postgres"
email = "ses"
shutdown_grace_secs = 10

[database]
url = "{url}"
migrate_on_start = true

[ses]
from_address = "no-reply@{domain}"
endpoint_url = "{endpoint}"
region = "us-east-1"

[delivery]
poll_ms = 50

[limits]
start_per_ip = {{ limit = 1000000, window_secs = 3600 }}

[[clients]]
client_id = "load-app"
name = "Load"
connections = ["email"]
"#,
            url = db.config().url,
            endpoint = moto.endpoint(),
        ),
    )
    .expect("config");
    let aws = [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("RUST_LOG", "info")];
    let served = Served::start(&config, "serve", &aws);
    let base = served.base.clone();

    // Four clients start logins as fast as they can, a new connection each time (so a request
    // never lands on a kept-alive connection the server is closing), until the listener is gone.
    let stop = Arc::new(AtomicBool::new(false));
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let (http, base, domain, stop) = (http.clone(), base.clone(), domain.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut fates = Vec::new();
                for i in 0.. {
                    let to = format!("load{t}-{i}@{domain}");
                    let body = serde_json::json!({"client_id": "load-app", "connection": "email", "email": to, "send": "code"});
                    let fate = match http.post(format!("{base}/passwordless/start")).json(&body).send().await {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            match r.bytes().await {
                                Ok(_) => Fate::Answered(status),
                                Err(e) => Fate::Broken(format!("{e:?}")),
                            }
                        }
                        Err(e) if e.is_connect() => Fate::Refused,
                        Err(e) => Fate::Broken(format!("{e:?}")),
                    };
                    let done = matches!(fate, Fate::Refused) || stop.load(Ordering::Relaxed);
                    fates.push((to, fate));
                    if done {
                        break;
                    }
                }
                fates
            })
        })
        .collect();
    // Until the load is surely under way (a busy CI machine starts slowly), then SIGTERM.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let log = tokio::task::spawn_blocking(move || served.stop()).await.expect("stopped");
    stop.store(true, Ordering::Relaxed);
    let mut fates = Vec::new();
    for t in tasks {
        fates.extend(t.await.expect("load task"));
    }
    let answered: Vec<&str> =
        fates.iter().filter_map(|(to, f)| matches!(f, Fate::Answered(200)).then_some(to.as_str())).collect();
    let others: Vec<_> = fates.iter().filter(|(_, f)| !matches!(f, Fate::Answered(200) | Fate::Refused)).collect();
    eprintln!(
        "shutdown under load: {} answered 200, {} refused, {} other",
        answered.len(),
        fates.iter().filter(|(_, f)| matches!(f, Fate::Refused)).count(),
        others.len()
    );
    assert!(answered.len() >= 10, "load ran: {} answered; {:?}", answered.len(), &fates[..fates.len().min(5)]);
    assert!(log.iter().any(|l| l.contains("graceful shutdown")), "the server shut down gracefully: {log:?}");

    // Another replica's worker delivers whatever this one left in the outbox.
    let worker = Served::start(&config, "worker", &aws);
    let missing = moto.awaiting_emails(&answered, 300).await;
    // Time for a second copy to show up, if one were coming.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = tokio::task::spawn_blocking(move || worker.stop()).await;
    assert!(
        missing.is_empty(),
        "{} answered starts never got their email: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let counts = moto.emails_by_recipient().await;
    for to in &answered {
        assert_eq!(counts.get(*to), Some(&1), "{to} got its email exactly once");
    }
    // A request that broke off is one the server never took on: no message was made for it.
    for (to, fate) in &others {
        match fate {
            Fate::Broken(why) => {
                assert!(!counts.contains_key(to), "{to}: cut ({why}) after the server took it on");
            }
            other => panic!("{to}: answered {other:?} during shutdown"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
