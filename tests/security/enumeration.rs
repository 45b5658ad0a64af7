//! Who has an account? A start for a known and for an unknown identifier must give the same
//! status, body (but for its fresh `_id`) and headers (but for the date, the request id and the
//! caller's own rate-limit counters), with sign-up on and off, and median times within 5 ms
//! over 200 tries each; a wrong code tells nothing either.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sesame_api::config::Settings;
use sesame_flows::limits::Rate;

use crate::helpers::{Reply, TestApp, spawn_app_on};
use crate::stack::{Kind, on_both, stack};

const TRIES: usize = 200;

fn roomy(s: &mut Settings) {
    s.limits.start_per_ip = Rate { limit: 100_000, window_secs: 3600 };
    s.limits.exchange_per_ip = Rate { limit: 100_000, window_secs: 60 };
}

/// Same length, so that even `content-length` matches.
fn known(i: usize) -> String {
    format!("known-{i:04}@example.com")
}
fn unknown(i: usize) -> String {
    format!("nobody{i:04}@example.com")
}

fn start(email: &str) -> Value {
    json!({"client_id": "public-app", "connection": "email", "email": email, "send": "code"})
}

/// What may differ between two answers to two people: their own address and the start's id,
/// the date, the request id, and the caller's own IP bucket counters.
fn comparable(r: &Reply) -> (u16, Value, Vec<(String, String)>) {
    let mut body = r.body.clone();
    if let Some(o) = body.as_object_mut() {
        o.remove("_id");
        o.remove("email");
    }
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(n, _)| !matches!(n.as_str(), "date" | "x-request-id" | "x-ratelimit-remaining" | "x-ratelimit-reset"))
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("<binary>").to_owned()))
        .collect();
    headers.sort();
    (r.status, body, headers)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// 200 starts for known and 200 for unknown identifiers, interleaved: identical answers and
/// close medians. Returns the medians (known, unknown).
async fn measure(app: &TestApp, mailed: bool) -> (Duration, Duration) {
    let (mut k, mut u) = (Vec::new(), Vec::new());
    let mut reference = None;
    for i in 0..TRIES {
        for (email, times) in [(known(i), &mut k), (unknown(i), &mut u)] {
            let began = Instant::now();
            let r = app.post_start(&start(&email)).await;
            times.push(began.elapsed());
            let seen = comparable(&r);
            assert_eq!(seen.0, 200, "{email}: {}", r.body);
            match &reference {
                None => reference = Some(seen),
                Some(first) => assert_eq!(&seen, first, "{email} is answered differently"),
            }
        }
    }
    if !mailed {
        let list: Vec<Value> = app
            .http
            .get(format!("{}/dev/mailbox", app.base))
            .query(&[("to", unknown(0))])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(list.is_empty(), "nothing is sent to an unknown identifier with sign-up off");
    }
    let (mk, mu) = (median(k), median(u));
    let gap = mk.abs_diff(mu);
    assert!(gap < Duration::from_millis(5), "median known {mk:?} vs unknown {mu:?}");
    (mk, mu)
}

async fn make_users(app: &TestApp) {
    for i in 0..TRIES {
        let code = app.start_and_read_code("public-app", "email", &known(i)).await;
        let r = app.post_token(&TestApp::otp_body("public-app", "email", &known(i), &code)).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

async fn known_and_unknown_identifiers_get_the_same_start(kind: Kind) {
    let app = stack(kind, roomy).await;
    make_users(&app).await;
    let (k, u) = measure(&app, true).await;
    eprintln!("enumeration ({kind:?}, sign-up on): median start known {k:?}, unknown {u:?}");
}
on_both!(known_and_unknown_identifiers_get_the_same_start_case, known_and_unknown_identifiers_get_the_same_start);

/// Sign-up off needs users made while it was on: one server makes them, a second one on the
/// same database turns sign-up off. So this case runs on Postgres + Redis only (the embedded
/// store lives and dies with its one server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_signup_off_known_and_unknown_identifiers_get_the_same_start_postgres_redis() {
    let first = stack(Kind::PostgresRedis, roomy).await;
    make_users(&first).await;
    let url = first.db_url();
    let closed = spawn_app_on(url, |s| {
        roomy(s);
        s.connections = vec![
            serde_json::from_value(json!({"name": "email", "strategy": "email", "disable_signup": true})).unwrap(),
            serde_json::from_value(json!({"name": "sms", "strategy": "sms"})).unwrap(),
        ];
    })
    .await;
    let (k, u) = measure(&closed, false).await;
    eprintln!("enumeration (PostgresRedis, sign-up off): median start known {k:?}, unknown {u:?}");
}

async fn a_wrong_code_and_an_unknown_identifier_get_the_same_token_error(kind: Kind) {
    let app = stack(kind, roomy).await;
    let live = app.start_and_read_code("public-app", "email", &known(0)).await;
    let guess = crate::stack::wrong(&live, 0);
    let wrong_code = app.post_token(&TestApp::otp_body("public-app", "email", &known(0), &guess)).await;
    let no_login = app.post_token(&TestApp::otp_body("public-app", "email", &unknown(0), &guess)).await;
    assert_eq!((wrong_code.status, &wrong_code.body), (no_login.status, &no_login.body));
    wrong_code.assert_error(403, "invalid_grant", "Wrong email or verification code.");
}
on_both!(a_wrong_code_and_an_unknown_identifier_case, a_wrong_code_and_an_unknown_identifier_get_the_same_token_error);
