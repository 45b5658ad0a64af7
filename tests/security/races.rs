//! One secret, many hands at once: 50 concurrent exchanges of one code and 50 concurrent
//! completions of one magic link have one winner; concurrent first logins of one new identifier
//! (through three applications, each with a live code) make one user.

use futures::future::join_all;
use serde_json::json;

use crate::helpers::{ISSUER, TestApp};
use crate::stack::{Kind, on_both, stack};

async fn fifty_exchanges_of_one_code_have_one_winner(kind: Kind) {
    let app = stack(kind, |_| {}).await;
    let email = "race@example.com";
    let code = app.start_and_read_code("public-app", "email", email).await;
    let body = TestApp::otp_body("public-app", "email", email, &code);
    let replies = join_all((0..50).map(|_| app.post_token(&body))).await;
    let won = replies.iter().filter(|r| r.status == 200).count();
    assert_eq!(won, 1, "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    assert!(replies.iter().all(|r| r.status == 200 || r.status == 403), "losers get invalid_grant, never a 500");
}
on_both!(fifty_exchanges_of_one_code_case, fifty_exchanges_of_one_code_have_one_winner);

async fn fifty_completions_of_one_link_have_one_winner(kind: Kind) {
    let app = stack(kind, |s| s.magic_link.confirm = false).await;
    let email = "link-race@example.com";
    let r = app
        .post_start(&json!({"client_id": "public-app", "connection": "email", "email": email, "send": "link",
            "authParams": {"response_type": "code", "redirect_uri": "https://app.example.com/callback",
                           "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let link =
        app.mailbox(email, 1).await[0]["link"].as_str().expect("link").replacen(ISSUER, &format!("{}/", app.base), 1);
    let replies = join_all((0..50).map(|_| app.http.get(&link).send())).await;
    let locations: Vec<String> = replies
        .iter()
        .map(|r| {
            let r = r.as_ref().expect("response");
            assert!(r.status().as_u16() < 500, "never a 5xx: {}", r.status());
            r.headers().get("location").map(|l| l.to_str().expect("ascii").to_owned()).unwrap_or_default()
        })
        .collect();
    let won = locations.iter().filter(|l| l.contains("code=")).count();
    assert_eq!(won, 1, "one authorization code for one link: {locations:?}");
}
on_both!(fifty_completions_of_one_link_case, fifty_completions_of_one_link_have_one_winner);

async fn concurrent_first_logins_of_one_identifier_make_one_user(kind: Kind) {
    let app = stack(kind, |_| {}).await;
    for round in 0..5 {
        let email = format!("first{round}@example.com");
        let mut bodies = Vec::new();
        for client in ["public-app", "web-app", "email-only"] {
            let mut start = json!({"client_id": client, "connection": "email", "email": email, "send": "code"});
            let mut body = TestApp::otp_body(client, "email", &email, "");
            if client == "web-app" {
                start["client_secret"] = json!(crate::helpers::WEB_SECRET);
                body["client_secret"] = json!(crate::helpers::WEB_SECRET);
            }
            let sent_before = bodies.len();
            let r = app.post_start(&start).await;
            assert_eq!(r.status, 200, "{client}: {}", r.body);
            body["otp"] = app.mailbox(&email, sent_before + 1).await[0]["code"].clone();
            bodies.push((client, body));
        }
        let replies = join_all(bodies.iter().map(|(_, b)| app.post_token(b))).await;
        let mut subs = Vec::new();
        for ((client, _), r) in bodies.iter().zip(&replies) {
            assert_eq!(r.status, 200, "{client}: {}", r.body);
            let claims = app.verify_jwt(r.body["id_token"].as_str().expect("id_token"), client).await;
            subs.push(claims["sub"].as_str().expect("sub").to_owned());
        }
        subs.dedup();
        assert_eq!(subs.len(), 1, "round {round}: one identifier, one user: {subs:?}");
    }
}
on_both!(concurrent_first_logins_case, concurrent_first_logins_of_one_identifier_make_one_user);
