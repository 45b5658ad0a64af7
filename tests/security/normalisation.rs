//! One identity per person: spellings of one address or number log into one user (or are
//! refused), and look-alikes of it — Unicode confusables, `+` sub-addresses — never log into
//! that user (they are refused or are someone else).

use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::stack::{Kind, on_both, stack};

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Refused,
    User(String),
}

/// Starts a code login for `raw` exactly as typed, reads the newest message in the mailbox,
/// exchanges it with the same `raw` as the username, and returns whose login it was.
async fn login(app: &TestApp, connection: &str, raw: &str) -> Outcome {
    let field = if connection == "sms" { "phone_number" } else { "email" };
    let r =
        app.post_start(&json!({"client_id": "public-app", "connection": connection, field: raw, "send": "code"})).await;
    if r.status == 400 {
        return Outcome::Refused;
    }
    assert_eq!(r.status, 200, "{raw:?}: {}", r.body);
    let newest = {
        let mut waited = 0;
        loop {
            let list: Vec<Value> =
                app.http.get(format!("{}/dev/mailbox", app.base)).send().await.unwrap().json().await.unwrap();
            if let Some(m) =
                list.first().filter(|m| m["code"].is_string() && !SEEN.with(|s| s.borrow().contains(&m.to_string())))
            {
                SEEN.with(|s| s.borrow_mut().push(m.to_string()));
                break m.clone();
            }
            waited += 1;
            assert!(waited < 1500, "no message for {raw:?}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    let code = newest["code"].as_str().unwrap();
    let t = app.post_token(&TestApp::otp_body("public-app", connection, raw, code)).await;
    if t.status != 200 {
        // The message went to the canonical identifier, and the exchange names it as typed.
        panic!("{raw:?}: the code sent for it does not log it in: {}", t.body);
    }
    let claims = app.verify_jwt(t.body["id_token"].as_str().unwrap(), "public-app").await;
    Outcome::User(claims["sub"].as_str().unwrap().to_owned())
}

thread_local! {
    static SEEN: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

async fn check(app: &TestApp, connection: &str, canonical: &str, same: &[&str], others: &[&str]) {
    let owner = login(app, connection, canonical).await;
    let Outcome::User(owner) = owner else { panic!("{canonical} must be accepted") };
    for raw in same {
        match login(app, connection, raw).await {
            Outcome::Refused => {}
            Outcome::User(sub) => assert_eq!(sub, owner, "{raw:?} is {canonical}: one user, not two"),
        }
    }
    for raw in others {
        match login(app, connection, raw).await {
            Outcome::Refused => {}
            Outcome::User(sub) => assert_ne!(sub, owner, "{raw:?} must never log into {canonical}'s account"),
        }
    }
}

async fn spellings_of_an_email_are_one_identity_and_look_alikes_are_not(kind: Kind) {
    let app = stack(kind, |s| {
        s.limits.start_per_ip = sesame_flows::limits::Rate { limit: 10_000, window_secs: 3600 };
    })
    .await;
    check(
        &app,
        "email",
        "jane.doe@example.com",
        &[
            "Jane.Doe@Example.COM",
            " jane.doe@example.com ",
            "jane.doe@EXAMPLE.com",
            "jane.doe@exａmple.com", // full-width a (UTS 46 maps it)
            "jane.doe@example.com.", // trailing dot of the DNS root
            "ｊane.doe@example.com", // full-width j in the local part (NFKC)
            "jane.doe＠example.com", // full-width @
        ],
        &[
            "jane.doe+news@example.com", // sub-address: its own identity (policy, docs/security.md)
            "jаne.doe@example.com",      // Cyrillic а in the local part
            "jane.doe@exаmple.com",      // Cyrillic а in the domain
            "jane.doe@examp1e.com",
            "jane.doe@example.co",
            "jane_doe@example.com",
            "janedoe@example.com",
            "jane.doe@example.com\u{200b}", // zero-width space
            "\"jane.doe\"@example.com",
        ],
    )
    .await;
}
on_both!(email_spellings_case, spellings_of_an_email_are_one_identity_and_look_alikes_are_not);

async fn spellings_of_a_phone_number_are_one_identity(kind: Kind) {
    let app = stack(kind, |s| {
        s.limits.start_per_ip = sesame_flows::limits::Rate { limit: 10_000, window_secs: 3600 };
        s.limits.sms_per_range = sesame_flows::limits::Rate { limit: 10_000, window_secs: 3600 };
        s.limits.start_per_identifier = sesame_flows::limits::Rate { limit: 10_000, window_secs: 3600 };
    })
    .await;
    check(
        &app,
        "sms",
        "+14155552671",
        &[
            "+1 415 555 2671",
            "+1-415-555-2671",
            "+1 (415) 555-2671",
            "+1.415.555.2671",
            "+１４１５５５５２６７１",
            " +14155552671 ",
            "0014155552671",
            "4155552671",
            "(415) 555-2671",
        ],
        &["+14155552672", "+144155552671", "+1415555267", "+141555526710"],
    )
    .await;
    check(
        &app,
        "sms",
        "+442079460958",
        &["+44 (0)20 7946 0958", "+44 020 7946 0958", "+44 20 7946 0958", "0044 20 7946 0958"],
        &["+4420794609580", "+44207946095"],
    )
    .await;
}
on_both!(phone_spellings_case, spellings_of_a_phone_number_are_one_identity);
