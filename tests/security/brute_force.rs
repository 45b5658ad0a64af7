//! Guessing codes: 3 tries per code, 100 failures per identifier per hour across new starts,
//! and a per-IP ceiling on exchanges; no wrong guess is ever let through.

use std::time::Duration;

use sesame_flows::limits::Rate;

use crate::helpers::TestApp;
use crate::stack::{Kind, on_both, stack, wrong};

fn guess(email: &str, otp: &str) -> serde_json::Value {
    TestApp::otp_body("public-app", "email", email, otp)
}

async fn three_wrong_codes_burn_the_code(kind: Kind) {
    let app = stack(kind, |_| {}).await;
    let email = "burn@example.com";
    let code = app.start_and_read_code("public-app", "email", email).await;
    for n in 0..3 {
        let r = app.post_token(&guess(email, &wrong(&code, n))).await;
        assert_eq!((r.status, r.body["error"].as_str()), (403, Some("invalid_grant")), "guess {n}: {}", r.body);
    }
    let r = app.post_token(&guess(email, &code)).await;
    assert_eq!(r.status, 403, "the right code after three wrong ones must not work: {}", r.body);
    // A new start gives a new, working code.
    let code = app.start_and_read_code("public-app", "email", email).await;
    assert_eq!(app.post_token(&guess(email, &code)).await.status, 200);
}
on_both!(three_wrong_codes_burn_the_code_case, three_wrong_codes_burn_the_code);

async fn a_hundred_failures_an_hour_lock_the_identifier_across_new_starts(kind: Kind) {
    let app = stack(kind, |s| {
        s.limits.start_per_identifier = Rate { limit: 1_000, window_secs: 3600 };
        s.limits.start_per_ip = Rate { limit: 1_000, window_secs: 3600 };
        s.limits.exchange_per_ip = Rate { limit: 10_000, window_secs: 60 };
    })
    .await;
    let email = "victim@example.com";
    let mut failures = 0u32;
    while failures < 100 {
        let code = app.start_and_read_code("public-app", "email", email).await;
        for n in 0..3 {
            if failures == 100 {
                break;
            }
            let r = app.post_token(&guess(email, &wrong(&code, failures * 3 + n))).await;
            assert_ne!(r.status, 200, "a wrong guess was let through");
            failures += 1;
        }
    }
    // The 101st try, with the right code of a fresh start, is refused for the rest of the hour.
    let code = app.start_and_read_code("public-app", "email", email).await;
    let locked = app.post_token(&guess(email, &code)).await;
    assert_eq!(locked.status, 429, "{}", locked.body);
    assert_eq!(locked.body["error"], "too_many_attempts", "{}", locked.body);
    // Another identifier is not affected, and the owner gets in once the hour has passed.
    let other = app.start_and_read_code("public-app", "email", "bystander@example.com").await;
    assert_eq!(app.post_token(&guess("bystander@example.com", &other)).await.status, 200);
    app.clock.advance(Duration::from_secs(3600));
    let code = app.start_and_read_code("public-app", "email", email).await;
    assert_eq!(app.post_token(&guess(email, &code)).await.status, 200, "the owner after the hour");
}
on_both!(a_hundred_failures_per_identifier_case, a_hundred_failures_an_hour_lock_the_identifier_across_new_starts);

async fn one_ip_guessing_many_identifiers_is_stopped(kind: Kind) {
    let app = stack(kind, |s| s.limits.exchange_per_ip = Rate { limit: 20, window_secs: 60 }).await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let email = format!("spray{i}@example.com");
        let code = app.start_and_read_code("public-app", "email", &email).await;
        for n in 0..3 {
            statuses.push(app.post_token(&guess(&email, &wrong(&code, n))).await.status);
        }
    }
    assert!(!statuses.contains(&200), "a wrong guess was let through");
    assert!(statuses[..20].iter().all(|&s| s == 403), "{statuses:?}");
    assert!(statuses[20..].iter().all(|&s| s == 429), "the 21st exchange in a minute from one IP: {statuses:?}");
    // The per-IP window passes; the IP may try again.
    app.clock.advance(Duration::from_secs(61));
    let code = app.start_and_read_code("public-app", "email", "after@example.com").await;
    assert_eq!(app.post_token(&guess("after@example.com", &code)).await.status, 200);
}
on_both!(one_ip_guessing_many_identifiers_case, one_ip_guessing_many_identifiers_is_stopped);
